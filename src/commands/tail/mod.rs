//! `cdcctl tail`: read CDC topics, decoded.
//!
//! 1. Resolve what to read: tables name their topics (`users` → `<prefix>.public.users`),
//!    `--topic` and `--pattern` name topics directly, nothing means every table topic of the prefix.
//! 2. Assign every partition at the start position, without a consumer group (nothing is ever
//!    committed, so a running loader is not disturbed).
//! 3. Decode each message (`cdc::event`), filter (`--op`, `--key`, `--where`), print it as a
//!    `pretty` line, a `json` object or the `raw` value, until `--count` events are printed, every
//!    partition is caught up (`--until-end`), or Ctrl-C (`--follow`). Without filters a `json`
//!    line is written straight from the message bytes when it can be
//!    ([`Decoder::transcode_json`]: the same line, about twice as fast).
//!
//! A message that cannot be decoded is reported on stderr with its coordinates and skipped; the
//! exit code is then 1. A closed stdout (`cdcctl tail | head`) ends quietly with 0.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rdkafka::Message;
use rdkafka::message::BorrowedMessage;

use crate::cdc::event::{ChangeEvent, Decoded, Decoder, MessageRef, Op, Row, Value, json};
use crate::cdc::topics::Selection;
use crate::cli::{TailArgs, TailFormat};
use crate::clients::kafka::{Kafka, Reader, StartAt};
use crate::config::{Config, parse_duration};
use crate::error::{CliError, Outcome};
use crate::output::Output;

mod format;

use format::{pretty_line, pretty_tombstone, raw_line};

/// Output is flushed when this much is buffered, and whenever the reader is idle.
const FLUSH_BYTES: usize = 256 * 1024;

/// Runs `cdcctl tail`.
pub async fn run(args: &TailArgs, config: &Config, out: &Output) -> Result<Outcome> {
    let plan = Plan::from_args(args, out, Utc::now())?;
    let kafka = Kafka::new(&config.kafka);
    let prefix = config.kafka.topic_prefix.clone();
    let out = out.clone();
    tokio::task::spawn_blocking(move || tail(&kafka, &prefix, &plan, &out))
        .await
        .context("the reader thread failed")?
}

/// Everything `tail` was asked to do, checked.
#[derive(Debug)]
struct Plan {
    selection: Selection,
    start: StartAt,
    follow: bool,
    count: Option<u64>,
    filter: Filter,
    tombstones: bool,
    format: TailFormat,
    color: bool,
}

impl Plan {
    fn from_args(args: &TailArgs, out: &Output, now: DateTime<Utc>) -> Result<Plan, CliError> {
        let follow = if args.follow {
            true
        } else if args.until_end {
            false
        } else {
            out.stdout_is_terminal()
        };
        let start = match &args.from {
            Some(raw) => parse_start(raw, now)?,
            None if follow => StartAt::End,
            None => StartAt::Beginning,
        };
        let format = args.format.unwrap_or(if out.is_json() {
            TailFormat::Json
        } else {
            TailFormat::Pretty
        });
        Ok(Plan {
            selection: Selection::new(&args.tables, &args.topic, args.pattern.as_deref())?,
            start,
            follow,
            count: args.count,
            filter: Filter::parse(&args.op, &args.key, &args.where_)?,
            tombstones: args.tombstones,
            format,
            color: out.color_stdout(),
        })
    }
}

/// Parses `--from`.
fn parse_start(raw: &str, now: DateTime<Utc>) -> Result<StartAt, CliError> {
    let usage = |message: String| CliError::Usage {
        message,
        hint: Some(
            "use `beginning`, `end`, `offset:N`, `offset:-N`, `time:2026-01-31T12:00:00Z` or \
             `-5m`"
                .into(),
        ),
    };
    let raw = raw.trim();
    if raw == "beginning" {
        return Ok(StartAt::Beginning);
    }
    if raw == "end" {
        return Ok(StartAt::End);
    }
    if let Some(n) = raw.strip_prefix("offset:") {
        let n: i64 = n
            .parse()
            .map_err(|_| usage(format!("--from `{raw}`: `{n}` is not an offset")))?;
        return Ok(if n < 0 {
            StartAt::Last(-n)
        } else {
            StartAt::Offset(n)
        });
    }
    if let Some(t) = raw.strip_prefix("time:") {
        let at = DateTime::parse_from_rfc3339(t)
            .map_err(|e| usage(format!("--from `{raw}`: not an RFC 3339 time ({e})")))?;
        return Ok(StartAt::Time(at.timestamp_millis()));
    }
    if let Some(ago) = raw.strip_prefix('-') {
        let ago = parse_duration(ago).map_err(|e| usage(format!("--from `{raw}`: {e}")))?;
        let ago = chrono::Duration::from_std(ago)
            .map_err(|_| usage(format!("--from `{raw}`: too far back")))?;
        return Ok(StartAt::Time((now - ago).timestamp_millis()));
    }
    Err(usage(format!("--from `{raw}` is not a start position")))
}

/// `--op`, `--key` and `--where`.
#[derive(Debug, Default)]
struct Filter {
    ops: Option<BTreeSet<&'static str>>,
    key: Vec<(Option<String>, String)>,
    row: Vec<(String, String)>,
}

impl Filter {
    fn parse(ops: &[String], key: &[String], row: &[String]) -> Result<Filter, CliError> {
        let ops = if ops.is_empty() {
            None
        } else {
            let mut set = BTreeSet::new();
            for op in ops {
                let code = match op.trim().to_ascii_lowercase().as_str() {
                    "c" | "create" | "insert" => "c",
                    "r" | "read" | "snapshot" => "r",
                    "u" | "update" => "u",
                    "d" | "delete" => "d",
                    "t" | "truncate" => "t",
                    "m" | "message" => "m",
                    other => {
                        return Err(CliError::Usage {
                            message: format!("--op `{other}` is not an operation"),
                            hint: Some("use c, r, u, d, t or m (comma separated)".into()),
                        });
                    }
                };
                set.insert(code);
            }
            Some(set)
        };
        let key = key
            .iter()
            .map(|k| match k.split_once('=') {
                Some((col, value)) => (Some(col.to_string()), value.to_string()),
                None => (None, k.clone()),
            })
            .collect();
        let row = row
            .iter()
            .map(|w| {
                w.split_once('=')
                    .map(|(c, v)| (c.to_string(), v.to_string()))
                    .ok_or_else(|| CliError::Usage {
                        message: format!("--where `{w}` is not COLUMN=VALUE"),
                        hint: Some("for example `--where status=paid`".into()),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Filter { ops, key, row })
    }

    fn is_empty(&self) -> bool {
        self.ops.is_none() && self.key.is_empty() && self.row.is_empty()
    }

    fn accepts(&self, event: &ChangeEvent) -> bool {
        if let Some(ops) = &self.ops
            && !ops.contains(event.op.code())
        {
            return false;
        }
        if !self.key_matches(event.key.as_ref()) {
            return false;
        }
        if !self.row.is_empty() {
            let image = match event.op {
                Op::Delete => event.before.as_ref(),
                _ => event.after.as_ref(),
            };
            let Some(image) = image else {
                return false;
            };
            return self.row.iter().all(|(column, wanted)| {
                image.get(column).is_some_and(|v| matches_text(v, wanted))
            });
        }
        true
    }

    /// A tombstone has only a key: it passes when no filter needs more than the key.
    fn accepts_tombstone(&self, key: Option<&Row>) -> bool {
        self.ops.is_none() && self.row.is_empty() && self.key_matches(key)
    }

    /// Every `--key` matches (`COL=VALUE`, or `VALUE` for a one-column key).
    fn key_matches(&self, key: Option<&Row>) -> bool {
        if self.key.is_empty() {
            return true;
        }
        let Some(key) = key else {
            return false;
        };
        self.key.iter().all(|(column, wanted)| match column {
            Some(column) => key.get(column).is_some_and(|v| matches_text(v, wanted)),
            None => key.len() == 1 && key.iter().all(|(_, v)| matches_text(v, wanted)),
        })
    }
}

/// A value matches the text given on the command line when it prints as that text (`null` matches
/// NULL).
fn matches_text(value: &Value, wanted: &str) -> bool {
    match value {
        Value::Null => wanted == "null",
        Value::Unavailable => false,
        Value::String(s) => s == wanted,
        other => other.to_string() == wanted,
    }
}

/// A decoded batch: the printed text, where each printed event ends (for `--count`), and the
/// messages that could not be decoded (with where their warning goes in the text).
struct Rendered {
    seq: u64,
    text: Vec<u8>,
    ends: Vec<usize>,
    undecodable: Vec<(usize, String)>,
}

/// Text buffers handed back by the writer for the next batches: a fresh half-megabyte buffer per
/// batch costs page faults (the allocator maps and unmaps buffers that size) in every batch.
#[derive(Default)]
struct BufferPool(Mutex<Vec<Vec<u8>>>);

impl BufferPool {
    fn take(&self) -> Vec<u8> {
        let reused = self.0.lock().ok().and_then(|mut free| free.pop());
        reused.unwrap_or_else(|| Vec::with_capacity(BATCH_MESSAGES * 512))
    }

    fn put(&self, mut text: Vec<u8>) {
        text.clear();
        if let Ok(mut free) = self.0.lock()
            && free.len() < 16
        {
            free.push(text);
        }
    }
}

/// Messages a worker takes at once: big enough to amortise the hand-offs, small enough to keep
/// latency low when following (a partial batch is taken as soon as no message is waiting).
const BATCH_MESSAGES: usize = 1024;

/// The read loop. Each worker thread takes a batch of messages from librdkafka under the order
/// lock (which numbers the batches), decodes and formats them in place without copying, and
/// hands the text to one writer that prints batches in order. Reading a backlog is then bound by
/// the broker, like kcat, rather than by JSON decoding on one core.
fn tail(kafka: &Kafka, prefix: &str, plan: &Plan, out: &Output) -> Result<Outcome> {
    let session = kafka.open()?;
    let all = session.topics()?;
    let topics = plan.selection.resolve(prefix, &all)?;
    let reader = session.reader(&topics, plan.start)?;
    if plan.follow && !out.is_quiet() {
        let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        let from = match plan.start {
            StartAt::End => " (new changes only; `--from beginning` reads the history)",
            _ => "",
        };
        let _ = writeln!(
            io::stderr(),
            "reading {}{from}; Ctrl-C to stop",
            names.join(", ")
        );
    }
    if !plan.follow && reader.caught_up() {
        return Ok(Outcome::Ok);
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    let stop = AtomicBool::new(false);
    // The next batch number; held while a worker takes its batch so numbers follow read order.
    let order = Mutex::new(0_u64);
    let pool = BufferPool::default();

    std::thread::scope(|scope| -> Result<Outcome> {
        let (text_tx, text_rx) = mpsc::sync_channel::<Rendered>(workers * 2);
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let text_tx = text_tx.clone();
            let (reader, pool, order, stop) = (&reader, &pool, &order, &stop);
            let worker = std::thread::Builder::new().name("tail-decode".into());
            handles.push(worker.spawn_scoped(scope, move || {
                let result = decode_batches(reader, pool, order, stop, plan, &text_tx);
                if result.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                result
            })?);
        }
        drop(text_tx);
        let writer = std::thread::Builder::new().name("tail-write".into());
        let writer =
            writer.spawn_scoped(scope, || write_in_order(text_rx, &pool, plan, out, &stop))?;

        let read = crate::commands::join_workers(handles, "a decode thread");
        let written = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
        // A writer error (a closed pipe) explains why reading stopped: report it first.
        let undecodable = written?;
        read?;
        if undecodable > 0 {
            out.warn(&format!(
                "{undecodable} message(s) could not be decoded (shown above); `--format raw` \
                 prints them as stored"
            ));
            return Ok(Outcome::Failed);
        }
        Ok(Outcome::Ok)
    })
}

/// One worker: take a numbered batch, render it, pass it on; until caught up (without
/// `--follow`), stopped, or the writer is gone.
fn decode_batches(
    reader: &Reader,
    pool: &BufferPool,
    order: &Mutex<u64>,
    stop: &AtomicBool,
    plan: &Plan,
    rendered: &mpsc::SyncSender<Rendered>,
) -> Result<()> {
    let mut decoder = Decoder::new();
    let mut messages = Vec::with_capacity(BATCH_MESSAGES);
    while let Some(taken) =
        reader.take_batch(order, &mut messages, BATCH_MESSAGES, !plan.follow, stop)?
    {
        let text = render(&mut decoder, pool, plan, taken.seq, &messages);
        messages.clear();
        // After the last batch the other workers see the end too: every poll reports it.
        if rendered.send(text).is_err() || taken.last {
            break;
        }
    }
    Ok(())
}

/// Decodes, filters and formats one batch.
fn render(
    decoder: &mut Decoder,
    pool: &BufferPool,
    plan: &Plan,
    seq: u64,
    messages: &[BorrowedMessage<'_>],
) -> Rendered {
    let mut rendered = Rendered {
        seq,
        text: pool.take(),
        ends: Vec::with_capacity(messages.len()),
        undecodable: Vec::new(),
    };
    let now = Utc::now();
    for message in messages {
        let raw = MessageRef {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key: message.key(),
            value: message.payload(),
        };
        let buf = &mut rendered.text;
        // Raw without filters needs no decoding: every message is shown as stored.
        if plan.format == TailFormat::Raw && plan.filter.is_empty() {
            if raw.value.is_some() || plan.tombstones {
                raw_line(buf, raw.value);
                rendered.ends.push(buf.len());
            }
            continue;
        }
        // Without filters, a JSON line is written straight from the bytes when it can be.
        if plan.format == TailFormat::Json
            && plan.filter.is_empty()
            && decoder.transcode_json(&raw, buf)
        {
            rendered.ends.push(buf.len());
            continue;
        }
        let shown = match decoder.decode(&raw) {
            Ok(Decoded::Change(event)) => {
                if !plan.filter.accepts(&event) {
                    continue;
                }
                match plan.format {
                    TailFormat::Pretty => pretty_line(buf, &event, plan.color, now),
                    TailFormat::Json => json::write_event(buf, &event),
                    TailFormat::Raw => raw_line(buf, raw.value),
                }
                true
            }
            Ok(Decoded::Tombstone { key, .. }) => {
                if !plan.tombstones || !plan.filter.accepts_tombstone(key.as_ref()) {
                    continue;
                }
                match plan.format {
                    TailFormat::Pretty => pretty_tombstone(buf, &raw, key.as_ref(), plan.color),
                    TailFormat::Json => json::write_tombstone(buf, &raw, key.as_ref()),
                    TailFormat::Raw => raw_line(buf, None),
                }
                true
            }
            Err(e) => {
                rendered.undecodable.push((
                    rendered.text.len(),
                    format!(
                        "{}/{}@{}: cannot decode: {e}",
                        raw.topic, raw.partition, raw.offset
                    ),
                ));
                false
            }
        };
        if shown {
            rendered.ends.push(rendered.text.len());
        }
    }
    rendered
}

/// Prints rendered batches in read order; stops everything after `--count` events. Returns the
/// number of undecodable messages.
fn write_in_order(
    rendered: mpsc::Receiver<Rendered>,
    pool: &BufferPool,
    plan: &Plan,
    out: &Output,
    stop: &AtomicBool,
) -> io::Result<u64> {
    let stdout = io::stdout();
    let mut sink = io::BufWriter::with_capacity(FLUSH_BYTES, stdout.lock());
    let mut waiting: BTreeMap<u64, Rendered> = BTreeMap::new();
    let mut next = 0;
    let mut printed: u64 = 0;
    let mut undecodable: u64 = 0;
    let result = (|| {
        for batch in rendered {
            waiting.insert(batch.seq, batch);
            while let Some(batch) = waiting.remove(&next) {
                next += 1;
                let mut shown_until = batch.text.len();
                let mut limit_reached = false;
                if let Some(count) = plan.count {
                    let left = (count - printed) as usize;
                    if batch.ends.len() >= left {
                        shown_until = if left == 0 { 0 } else { batch.ends[left - 1] };
                        limit_reached = true;
                    }
                }
                let mut at = 0;
                for (position, warning) in &batch.undecodable {
                    if *position > shown_until {
                        break;
                    }
                    sink.write_all(&batch.text[at..*position])?;
                    at = *position;
                    sink.flush()?;
                    undecodable += 1;
                    out.warn(warning);
                }
                sink.write_all(&batch.text[at..shown_until])?;
                printed += batch.ends.iter().filter(|&&e| e <= shown_until).count() as u64;
                pool.put(batch.text);
                if limit_reached {
                    stop.store(true, Ordering::Relaxed);
                    sink.flush()?;
                    return Ok(());
                }
            }
            // Nothing else is ready: show what there is (following, changes trickle in).
            if waiting.is_empty() {
                sink.flush()?;
            }
        }
        sink.flush()
    })();
    if result.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    result.map(|()| undecodable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn start_positions_parse() {
        assert_eq!(parse_start("beginning", now()).unwrap(), StartAt::Beginning);
        assert_eq!(parse_start("end", now()).unwrap(), StartAt::End);
        assert_eq!(
            parse_start("offset:42", now()).unwrap(),
            StartAt::Offset(42)
        );
        assert_eq!(parse_start("offset:-10", now()).unwrap(), StartAt::Last(10));
        assert_eq!(
            parse_start("time:2026-12-03T11:00:00+00:00", now()).unwrap(),
            StartAt::Time(now().timestamp_millis() - 3_600_000)
        );
        assert_eq!(
            parse_start("-5m", now()).unwrap(),
            StartAt::Time(now().timestamp_millis() - 300_000)
        );
        for bad in ["yesterday", "offset:x", "time:noon", "-5y"] {
            let err = parse_start(bad, now()).unwrap_err();
            assert_eq!(err.exit_code(), crate::error::EXIT_USAGE, "{bad}");
            assert!(err.to_string().contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn filters_parse_and_reject_nonsense() {
        let f = Filter::parse(
            &["c".into(), "update".into()],
            &["id=42".into(), "7".into()],
            &["status=paid".into()],
        )
        .unwrap();
        assert_eq!(
            f.ops.unwrap().into_iter().collect::<Vec<_>>(),
            vec!["c", "u"]
        );
        assert_eq!(
            f.key,
            vec![(Some("id".into()), "42".into()), (None, "7".into())]
        );
        assert_eq!(f.row, vec![("status".into(), "paid".into())]);
        assert!(Filter::parse(&["x".into()], &[], &[]).is_err());
        assert!(Filter::parse(&[], &[], &["status".into()]).is_err());
    }
}
