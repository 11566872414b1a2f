//! How `tail` prints an event: `pretty` (one line for people) and `raw` (the value as stored).
//! The `json` lines are the event's JSON form, [`crate::cdc::event::json`].

use chrono::{DateTime, Utc};

use crate::cdc::event::{ChangeEvent, MessageRef, Op, Row, Value};

/// Longest value shown in a `pretty` line before it is cut with `…`.
pub(super) const PRETTY_VALUE_WIDTH: usize = 48;

pub(super) fn raw_line(buf: &mut Vec<u8>, value: Option<&[u8]>) {
    if let Some(value) = value {
        buf.extend_from_slice(value);
    }
    buf.push(b'\n');
}

/// `2026-12-03 22:41:05.123  u  public.users  id=3  email: "a@x" → "b@x"  lag 1.2s`
pub(super) fn pretty_line(buf: &mut Vec<u8>, event: &ChangeEvent, color: bool, now: DateTime<Utc>) {
    let mut line = String::with_capacity(160);
    let commit = event.source.ts_ms.or(event.ts_ms);
    line.push_str(&commit.map(format_time).unwrap_or_else(|| "-".repeat(23)));
    line.push_str("  ");
    let code = event.op.code();
    if color {
        line.push_str(&format!("\x1b[{}m{code}\x1b[0m", op_color(event.op)));
    } else {
        line.push_str(code);
    }
    line.push_str("  ");
    line.push_str(&event.qualified_table());
    if let Some(key) = &event.key {
        line.push_str("  ");
        line.push_str(&columns_text(key, &[]));
    }
    let key_columns: Vec<&str> = event
        .key
        .as_ref()
        .map(|k| k.iter().map(|(c, _)| c).collect())
        .unwrap_or_default();
    let details = match event.op {
        Op::Create | Op::Read => event
            .after
            .as_ref()
            .map(|after| columns_text(after, &key_columns)),
        Op::Update => match (&event.before, &event.after) {
            (Some(before), Some(after)) => Some(changes_text(before, after, &key_columns)),
            (None, Some(after)) => Some(columns_text(after, &key_columns)),
            _ => None,
        },
        Op::Delete | Op::Truncate => None,
        Op::Message => event.message.as_ref().map(|m| {
            format!(
                "{}: {}",
                m.prefix,
                shorten(&m.content.to_string(), PRETTY_VALUE_WIDTH * 2)
            )
        }),
    };
    if let Some(details) = details.filter(|d| !d.is_empty()) {
        line.push_str("  ");
        line.push_str(&details);
    }
    if let Some(ts) = event.source.ts_ms {
        line.push_str("  lag ");
        line.push_str(&format_lag(now.timestamp_millis() - ts));
    }
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
}

pub(super) fn pretty_tombstone(
    buf: &mut Vec<u8>,
    raw: &MessageRef<'_>,
    key: Option<&Row>,
    color: bool,
) {
    let time = raw
        .timestamp_ms
        .map(format_time)
        .unwrap_or_else(|| "-".repeat(23));
    let label = if color {
        "\x1b[2mtombstone\x1b[0m"
    } else {
        "tombstone"
    };
    let key = key.map(|k| columns_text(k, &[])).unwrap_or_default();
    let line = format!("{time}  {label}  {}  {key}", raw.topic);
    buf.extend_from_slice(line.trim_end().as_bytes());
    buf.push(b'\n');
}

fn op_color(op: Op) -> &'static str {
    match op {
        Op::Create => "32",
        Op::Read => "34",
        Op::Update => "33",
        Op::Delete => "31",
        Op::Truncate => "35",
        Op::Message => "36",
    }
}

/// `col=value col=value`, skipping `skip` columns.
fn columns_text(row: &Row, skip: &[&str]) -> String {
    row.iter()
        .filter(|(c, _)| !skip.contains(c))
        .map(|(c, v)| format!("{c}={}", value_text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `col: before → after` for the columns that differ.
fn changes_text(before: &Row, after: &Row, skip: &[&str]) -> String {
    let changes: Vec<String> = after
        .iter()
        .filter(|(c, _)| !skip.contains(c))
        .filter_map(|(column, new)| {
            let old = before.get(column);
            if matches!(new, Value::Unavailable) || old == Some(new) {
                return None;
            }
            let old = old.map(value_text).unwrap_or_else(|| "∅".into());
            Some(format!("{column}: {old} → {}", value_text(new)))
        })
        .collect();
    if changes.is_empty() {
        "(no column changed)".into()
    } else {
        changes.join(", ")
    }
}

/// A value as shown in a `pretty` line: strings quoted when they would be ambiguous, long values
/// cut.
fn value_text(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Unavailable => "(unchanged)".into(),
        Value::String(s) => {
            let plain = !s.is_empty()
                && s != "null"
                && !s.chars().any(|c| c.is_whitespace() || c == '"' || c == '=');
            let text = if plain {
                s.clone()
            } else {
                serde_json::to_string(s).unwrap_or_default()
            };
            shorten(&text, PRETTY_VALUE_WIDTH)
        }
        other => shorten(&other.to_string(), PRETTY_VALUE_WIDTH),
    }
}

fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

/// `2026-12-03 22:41:05.123` (UTC).
fn format_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// `850ms`, `1.2s`, `3m12s`, `2h05m`, `3d04h`.
fn format_lag(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        return format!("{:.1}s", ms as f64 / 1000.0);
    }
    let s = ms / 1000;
    if s < 3600 {
        return format!("{}m{:02}s", s / 60, s % 60);
    }
    if s < 86_400 {
        return format!("{}h{:02}m", s / 3600, (s % 3600) / 60);
    }
    format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_reads_like_a_duration() {
        assert_eq!(format_lag(-5), "0ms");
        assert_eq!(format_lag(850), "850ms");
        assert_eq!(format_lag(1_250), "1.2s");
        assert_eq!(format_lag(192_000), "3m12s");
        assert_eq!(format_lag(7_500_000), "2h05m");
        assert_eq!(format_lag(3 * 86_400_000 + 4 * 3_600_000), "3d04h");
    }

    #[test]
    fn long_and_ambiguous_values_are_quoted_and_cut() {
        assert_eq!(value_text(&Value::String("plain".into())), "plain");
        assert_eq!(
            value_text(&Value::String("two words".into())),
            "\"two words\""
        );
        assert_eq!(value_text(&Value::String(String::new())), "\"\"");
        assert_eq!(value_text(&Value::String("null".into())), "\"null\"");
        assert_eq!(value_text(&Value::Null), "null");
        assert_eq!(value_text(&Value::Unavailable), "(unchanged)");
        let long = value_text(&Value::String("x".repeat(500)));
        assert_eq!(long.chars().count(), PRETTY_VALUE_WIDTH);
        assert!(long.ends_with('…'));
    }
}
