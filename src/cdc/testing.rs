//! Test support for the pure core: the Debezium fixtures under `tests/fixtures/debezium/`
//! (embedded at compile time), read as the `kcat -J` lines they are.

use serde_json::Value as Json;

use super::event::{Decoded, Decoder, MessageRef};

/// A fixture under `tests/fixtures/debezium/`, embedded at compile time.
macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/debezium/",
            $path
        ))
    };
}
pub(crate) use fixture;

/// One message as printed by `kcat -J`: key and value are the raw bytes as JSON strings.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) ts: Option<i64>,
    pub(crate) key: Option<String>,
    pub(crate) value: Option<String>,
}

impl Line {
    /// The message as the decoder takes it.
    pub(crate) fn msg(&self) -> MessageRef<'_> {
        MessageRef {
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            timestamp_ms: self.ts,
            key: self.key.as_deref().map(str::as_bytes),
            value: self.value.as_deref().map(str::as_bytes),
        }
    }

    /// The same message with another value.
    pub(crate) fn with_value(&self, value: impl Into<String>) -> Line {
        Line {
            value: Some(value.into()),
            ..self.clone()
        }
    }
}

/// The messages of a fixture.
pub(crate) fn lines(text: &str) -> Vec<Line> {
    text.lines()
        .map(|l| {
            let j: Json = serde_json::from_str(l).unwrap();
            Line {
                topic: j["topic"].as_str().unwrap().to_owned(),
                partition: j["partition"].as_i64().unwrap() as i32,
                offset: j["offset"].as_i64().unwrap(),
                ts: j["ts"].as_i64(),
                key: j["key"].as_str().map(str::to_owned),
                value: j["payload"].as_str().map(str::to_owned),
            }
        })
        .collect()
}

/// Decodes every message of a fixture with `decoder`; panics naming the message that fails.
pub(crate) fn decode_with(decoder: &mut Decoder, text: &str) -> Vec<Decoded> {
    lines(text)
        .iter()
        .map(|l| {
            decoder
                .decode(&l.msg())
                .unwrap_or_else(|e| panic!("{} @{}: {e}", l.topic, l.offset))
        })
        .collect()
}

/// Decodes every message of a fixture with a fresh decoder.
pub(crate) fn decode_all(text: &str) -> Vec<Decoded> {
    decode_with(&mut Decoder::new(), text)
}
