//! The JSON form of a change event: one line of `cdcctl tail -o json`. Its field names are an
//! interface, documented in the README ("tail"):
//!
//! ```text
//! {"op":"u","table":"public.users","key":{"id":3},"before":{..},"after":{..},
//!  "source":{"ts_ms":..,"lsn":..,"tx_id":..,"snapshot":false,"database":"app","schema":"public","table":"users"},
//!  "kafka":{"topic":"cdc.public.users","partition":0,"offset":41,"timestamp_ms":..}}
//! ```
//!
//! `unavailable` (columns TOAST left out, omitted when none) and `message` (logical messages)
//! are added when there is something to say. [`write_event`] writes it from a decoded
//! [`ChangeEvent`]; [`super::Decoder::transcode_json`] writes the same bytes straight from a
//! message (the common case, several times faster; see `transcode.rs`).

use serde::Serialize;

use super::{ChangeEvent, MessageRef, Row, Value};

/// One event. Field names are part of the interface (README, "tail").
#[derive(Serialize)]
struct JsonEvent<'a> {
    op: &'static str,
    table: String,
    key: Option<&'a Row>,
    before: Option<&'a Row>,
    after: Option<&'a Row>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unavailable: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<JsonMessage<'a>>,
    source: JsonSource<'a>,
    kafka: JsonKafka<'a>,
}

#[derive(Serialize)]
struct JsonMessage<'a> {
    prefix: &'a str,
    content: &'a Value,
}

#[derive(Serialize)]
struct JsonSource<'a> {
    ts_ms: Option<i64>,
    lsn: Option<i64>,
    tx_id: Option<i64>,
    snapshot: bool,
    database: Option<&'a str>,
    schema: Option<&'a str>,
    table: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonKafka<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
}

/// Appends the event's JSON line (with its `\n`).
pub fn write_event(buf: &mut Vec<u8>, event: &ChangeEvent) {
    let mut unavailable: Vec<&str> = Vec::new();
    for row in [&event.after, &event.before].into_iter().flatten() {
        for column in row.unavailable_columns() {
            if !unavailable.contains(&column) {
                unavailable.push(column);
            }
        }
    }
    let line = JsonEvent {
        op: event.op.code(),
        table: event.qualified_table(),
        key: event.key.as_ref(),
        before: event.before.as_ref(),
        after: event.after.as_ref(),
        unavailable,
        message: event.message.as_ref().map(|m| JsonMessage {
            prefix: &m.prefix,
            content: &m.content,
        }),
        source: JsonSource {
            ts_ms: event.source.ts_ms,
            lsn: event.source.lsn,
            tx_id: event.source.tx_id,
            snapshot: event.source.is_snapshot(),
            database: event.source.database.as_deref(),
            schema: event.source.schema.as_deref(),
            table: event.source.table.as_deref(),
        },
        kafka: JsonKafka {
            topic: &event.kafka.topic,
            partition: event.kafka.partition,
            offset: event.kafka.offset,
            timestamp_ms: event.kafka.timestamp_ms,
        },
    };
    write_json(buf, &line);
}

/// Appends one JSON line. Writing these types to memory cannot fail; if it ever did, the line
/// is replaced by an error object rather than cut.
fn write_json(buf: &mut Vec<u8>, value: &impl Serialize) {
    let start = buf.len();
    if let Err(e) = serde_json::to_writer(&mut *buf, value) {
        buf.truncate(start);
        let error = serde_json::json!({ "error": e.to_string() });
        buf.extend_from_slice(error.to_string().as_bytes());
    }
    buf.push(b'\n');
}

/// Appends the JSON line of a tombstone (a message with a key and a null value).
pub fn write_tombstone(buf: &mut Vec<u8>, raw: &MessageRef<'_>, key: Option<&Row>) {
    #[derive(Serialize)]
    struct Tombstone<'a> {
        op: &'static str,
        key: Option<&'a Row>,
        kafka: JsonKafka<'a>,
    }
    write_json(
        buf,
        &Tombstone {
            op: "tombstone",
            key,
            kafka: JsonKafka {
                topic: raw.topic,
                partition: raw.partition,
                offset: raw.offset,
                timestamp_ms: raw.timestamp_ms,
            },
        },
    );
}
