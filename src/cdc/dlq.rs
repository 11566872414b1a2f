//! The dead-letter queue's record format (pure). A message `load` cannot apply (poison) is
//! produced to the DLQ topic (`<prefix>.dlq` by default) **unchanged** — same key, value and
//! headers — plus these headers, which `replay-dlq` reads back:
//!
//! | header | value |
//! |---|---|
//! | `cdcctl.error.class` | why, as a class: `invalid_json`, `not_a_change_event`, `invalid_schema`, `type_mismatch`, `invalid_value`, `out_of_range`, `missing_field`, `unknown_op` |
//! | `cdcctl.error.message` | the decoder's message, naming the field |
//! | `cdcctl.original.topic` / `.partition` / `.offset` | where the message was read |
//! | `cdcctl.source.table` | `schema.table` of the topic, when it is a table topic |
//! | `cdcctl.failed.at` | when it first failed (RFC 3339, UTC) |
//! | `cdcctl.attempts` | how many times it failed (1, then +1 per failed replay) |
//! | `cdcctl.version` | the cdcctl version that wrote it |
//!
//! Earlier `cdcctl.*` headers of a message that fails again are replaced, except the first
//! failure time, which is kept.

use chrono::{DateTime, SecondsFormat, Utc};

/// Header names.
pub const ERROR_CLASS: &str = "cdcctl.error.class";
/// Header: the error message.
pub const ERROR_MESSAGE: &str = "cdcctl.error.message";
/// Header: original topic.
pub const ORIGINAL_TOPIC: &str = "cdcctl.original.topic";
/// Header: original partition.
pub const ORIGINAL_PARTITION: &str = "cdcctl.original.partition";
/// Header: original offset.
pub const ORIGINAL_OFFSET: &str = "cdcctl.original.offset";
/// Header: source table.
pub const SOURCE_TABLE: &str = "cdcctl.source.table";
/// Header: first failure time.
pub const FAILED_AT: &str = "cdcctl.failed.at";
/// Header: attempts.
pub const ATTEMPTS: &str = "cdcctl.attempts";
/// Header: writer version.
pub const VERSION: &str = "cdcctl.version";

/// Kafka headers as cdcctl keeps them: name and optional value, in order.
pub type Headers = Vec<(String, Option<Vec<u8>>)>;

/// The DLQ topic of a topic prefix.
pub fn default_topic(prefix: &str) -> String {
    format!("{prefix}.dlq")
}

/// Why and where a message failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Error class (module doc).
    pub class: String,
    /// Error message.
    pub message: String,
    /// Original topic.
    pub topic: String,
    /// Original partition.
    pub partition: i32,
    /// Original offset.
    pub offset: i64,
    /// `schema.table`, when known.
    pub table: Option<String>,
    /// First failure.
    pub failed_at: DateTime<Utc>,
    /// Failures so far.
    pub attempts: u32,
}

impl DeadLetter {
    /// The headers of the DLQ record: the original headers without earlier `cdcctl.*` ones,
    /// then this letter's.
    pub fn headers(&self, original: &[(String, Option<Vec<u8>>)]) -> Headers {
        let mut headers: Headers = original
            .iter()
            .filter(|(name, _)| !name.starts_with("cdcctl."))
            .cloned()
            .collect();
        let mut add = |name: &str, value: String| {
            headers.push((name.to_string(), Some(value.into_bytes())));
        };
        add(ERROR_CLASS, self.class.clone());
        add(ERROR_MESSAGE, self.message.clone());
        add(ORIGINAL_TOPIC, self.topic.clone());
        add(ORIGINAL_PARTITION, self.partition.to_string());
        add(ORIGINAL_OFFSET, self.offset.to_string());
        if let Some(table) = &self.table {
            add(SOURCE_TABLE, table.clone());
        }
        add(
            FAILED_AT,
            self.failed_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        );
        add(ATTEMPTS, self.attempts.to_string());
        add(VERSION, env!("CARGO_PKG_VERSION").to_string());
        headers
    }

    /// Reads a letter back from a DLQ record's headers.
    pub fn from_headers(headers: &[(String, Option<Vec<u8>>)]) -> Result<DeadLetter, String> {
        let get = |name: &str| -> Option<String> {
            headers
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.as_deref())
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let need = |name: &str| get(name).ok_or_else(|| format!("no `{name}` header"));
        let number = |name: &str| -> Result<i64, String> {
            need(name)?
                .parse()
                .map_err(|_| format!("header `{name}` is not a number"))
        };
        Ok(DeadLetter {
            class: need(ERROR_CLASS)?,
            message: get(ERROR_MESSAGE).unwrap_or_default(),
            topic: need(ORIGINAL_TOPIC)?,
            partition: i32::try_from(number(ORIGINAL_PARTITION)?)
                .map_err(|_| "partition out of range".to_string())?,
            offset: number(ORIGINAL_OFFSET)?,
            table: get(SOURCE_TABLE),
            failed_at: get(FAILED_AT)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map_or_else(Utc::now, |t| t.with_timezone(&Utc)),
            attempts: get(ATTEMPTS).and_then(|a| a.parse().ok()).unwrap_or(1),
        })
    }

    /// The letter of the same message failing again: one more attempt, the new reason, the
    /// first failure time kept.
    pub fn failed_again(&self, class: &str, message: &str) -> DeadLetter {
        DeadLetter {
            class: class.to_string(),
            message: message.to_string(),
            attempts: self.attempts.saturating_add(1),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter() -> DeadLetter {
        DeadLetter {
            class: "invalid_json".into(),
            message: "value is not JSON: EOF at line 1".into(),
            topic: "cdc.public.users".into(),
            partition: 2,
            offset: 41,
            table: Some("public.users".into()),
            failed_at: DateTime::parse_from_rfc3339("2026-12-04T10:00:00.123Z")
                .unwrap()
                .with_timezone(&Utc),
            attempts: 1,
        }
    }

    #[test]
    fn headers_keep_the_originals_and_round_trip() {
        let original: Headers = vec![
            ("trace".into(), Some(b"abc".to_vec())),
            ("empty".into(), None),
            (ERROR_CLASS.into(), Some(b"old".to_vec())),
        ];
        let headers = letter().headers(&original);
        assert_eq!(headers[0], ("trace".into(), Some(b"abc".to_vec())));
        assert_eq!(headers[1], ("empty".into(), None));
        assert_eq!(
            headers.iter().filter(|(n, _)| n == ERROR_CLASS).count(),
            1,
            "an earlier letter's headers are replaced"
        );
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.clone())
                .map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(
            value(FAILED_AT).as_deref(),
            Some("2026-12-04T10:00:00.123Z")
        );
        assert_eq!(value(ORIGINAL_OFFSET).as_deref(), Some("41"));
        assert_eq!(value(VERSION).as_deref(), Some(env!("CARGO_PKG_VERSION")));
        assert_eq!(DeadLetter::from_headers(&headers).unwrap(), letter());
    }

    #[test]
    fn a_second_failure_counts_and_keeps_the_first_time() {
        let again = letter().failed_again("unknown_op", "op `x`");
        assert_eq!(again.attempts, 2);
        assert_eq!(again.failed_at, letter().failed_at);
        assert_eq!(again.class, "unknown_op");
    }

    #[test]
    fn records_without_letters_are_refused_with_the_reason() {
        let err = DeadLetter::from_headers(&[]).unwrap_err();
        assert!(err.contains(ERROR_CLASS), "{err}");
        let mut headers = letter().headers(&[]);
        headers.retain(|(n, _)| n != ORIGINAL_OFFSET);
        assert!(
            DeadLetter::from_headers(&headers)
                .unwrap_err()
                .contains("offset")
        );
    }

    #[test]
    fn the_default_topic_follows_the_prefix() {
        assert_eq!(default_topic("cdc"), "cdc.dlq");
    }
}
