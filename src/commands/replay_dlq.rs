//! `cdcctl replay-dlq`: the dead-letter topic of `load`, inspected and replayed.
//!
//! 1. Read the dead-letter topic (`<prefix>.dlq`) from the replay group's committed offsets
//!    (`--all`: from the beginning) up to its end; each record's `cdcctl.*` headers say why and
//!    where it failed (`cdc::dlq`). Filters: `--table`, `--error-class`, `--since`, `--offset`.
//! 2. `list` groups them by error class and table; `show` prints them one by one, with whether
//!    they decode now.
//! 3. `replay` decodes each selected record again: those that decode are applied to the
//!    warehouse like `load` does (same tables, LSN-guarded, so a replay twice changes nothing),
//!    or with `--to-source-topic` produced to their original topic unchanged; those that still
//!    fail are appended to the dead-letter topic again with one more attempt. Then the replay
//!    group commits, per partition, up to the first record that was not selected: a handled
//!    record is not pending any more, an unselected one stays.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rdkafka::Message;
use serde::Serialize;

use crate::cdc::batch::Batch;
use crate::cdc::dlq::{self, DeadLetter};
use crate::cdc::event::{Decoded, Decoder, MessageRef};
use crate::cdc::schema::TableOptions;
use crate::cli::{DlqAction, ReplayDlqArgs};
use crate::clients::kafka::{Kafka, OutMessage, Polled, StartAt};
use crate::commands::load::isolate::{self, Refused};
use crate::commands::load::{SinkChoice, Targets, open_sink};
use crate::config::{Config, parse_duration};
use crate::error::{CliError, Outcome};
use crate::output::Output;

/// Replaying more than this many records asks first on a terminal (`--yes` answers).
const CONFIRM_ABOVE: usize = 5;

/// Runs `cdcctl replay-dlq`.
pub async fn run(args: &ReplayDlqArgs, config: &Config, out: &Output) -> Result<Outcome> {
    let filter = Filter::parse(args, Utc::now())?;
    let topic = args
        .dlq_topic
        .clone()
        .unwrap_or_else(|| dlq::default_topic(&config.kafka.topic_prefix));
    let runtime = tokio::runtime::Handle::current();
    let (args_group, all) = (args.group.clone(), args.all);
    let config_owned = config.clone();
    let read = {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || read(&config_owned, &topic, &args_group, all))
            .await
            .context("the reader thread failed")??
    };
    let Some(pending) = read else {
        out.report(&Listing::empty(&topic), |w| {
            writeln!(
                w,
                "the dead-letter topic `{topic}` does not exist: nothing was dead-lettered"
            )
        })?;
        return Ok(Outcome::Ok);
    };
    let mut decoder = Decoder::new();
    let records: Vec<Record> = pending
        .into_iter()
        .map(|raw| Record::new(raw, &mut decoder))
        .collect();
    let selected: Vec<&Record> = records.iter().filter(|r| filter.accepts(r)).collect();
    match &args.action {
        None | Some(DlqAction::List) => list(&topic, &selected, out),
        Some(DlqAction::Show { limit }) => show(&topic, &selected, *limit, out),
        Some(DlqAction::Replay {
            to_source_topic,
            dry_run,
            target_schema,
            table_map,
            soft_delete,
            history,
            ..
        }) => {
            let mut plan = ReplayPlan {
                topic,
                group: args.group.clone(),
                to_source_topic: *to_source_topic,
                dry_run: *dry_run,
                targets: Targets::parse(target_schema.as_deref(), table_map)?,
                table_options: TableOptions {
                    soft_delete: *soft_delete,
                    history: *history,
                    ..TableOptions::default()
                },
            };
            let config = config.clone();
            let out = out.clone();
            tokio::task::spawn_blocking(move || {
                replay(&mut plan, &records, &filter, &config, &out, &runtime)
            })
            .await
            .context("the replay thread failed")?
        }
    }
}

/// `--table`, `--error-class`, `--since`, `--offset`.
struct Filter {
    table: Option<String>,
    class: Option<String>,
    since: Option<DateTime<Utc>>,
    offset: Option<i64>,
}

impl Filter {
    fn parse(args: &ReplayDlqArgs, now: DateTime<Utc>) -> Result<Filter, CliError> {
        let since = match &args.since {
            None => None,
            Some(raw) => Some(match raw.strip_prefix('-') {
                Some(ago) => {
                    let ago = parse_duration(ago).map_err(|e| CliError::Usage {
                        message: format!("--since `{raw}`: {e}"),
                        hint: Some("for example `-2h` or `2026-01-31T12:00:00Z`".into()),
                    })?;
                    now - chrono::Duration::from_std(ago).unwrap_or_default()
                }
                None => DateTime::parse_from_rfc3339(raw)
                    .map_err(|e| CliError::Usage {
                        message: format!("--since `{raw}` is not an RFC 3339 time ({e})"),
                        hint: Some("for example `-2h` or `2026-01-31T12:00:00Z`".into()),
                    })?
                    .with_timezone(&Utc),
            }),
        };
        let table = args.table.as_ref().map(|t| {
            if t.contains('.') {
                t.clone()
            } else {
                format!("public.{t}")
            }
        });
        Ok(Filter {
            table,
            class: args.error_class.clone(),
            since,
            offset: args.offset,
        })
    }

    fn accepts(&self, record: &Record) -> bool {
        let Some(letter) = &record.letter else {
            // Not a dead letter of cdcctl: only an explicit offset selects it.
            return self.offset == Some(record.raw.offset)
                && self.table.is_none()
                && self.class.is_none();
        };
        self.table
            .as_ref()
            .is_none_or(|t| letter.table.as_deref() == Some(t.as_str()))
            && self.class.as_ref().is_none_or(|c| &letter.class == c)
            && self.since.is_none_or(|s| letter.failed_at >= s)
            && self.offset.is_none_or(|o| record.raw.offset == o)
    }
}

/// A record of the dead-letter topic, as read.
#[derive(Debug, Clone)]
struct RawRecord {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: dlq::Headers,
}

/// Reads the pending records (module doc, step 1); `None` when the topic does not exist.
fn read(config: &Config, topic: &str, group: &str, all: bool) -> Result<Option<Vec<RawRecord>>> {
    let session = Kafka::new(&config.kafka).open_group(group)?;
    let topics = session.topics()?;
    let Some(info) = topics.into_iter().find(|t| t.name == topic) else {
        return Ok(None);
    };
    let start = if all {
        StartAt::Beginning
    } else {
        StartAt::Committed {
            otherwise_beginning: true,
        }
    };
    let reader = session.reader(&[info], start)?;
    let mut records = Vec::new();
    if reader.caught_up() {
        return Ok(Some(records));
    }
    loop {
        match reader.poll(std::time::Duration::from_millis(500))? {
            Polled::Message(m) => records.push(RawRecord {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: crate::clients::kafka::headers_of(&m),
            }),
            Polled::CaughtUp => break,
            Polled::Idle => {}
        }
    }
    Ok(Some(records))
}

/// A record with its letter and whether it decodes now.
struct Record {
    raw: RawRecord,
    letter: Option<DeadLetter>,
    /// `Ok` with the decoded message, or why it still fails: (class, message).
    now: std::result::Result<Decoded, (String, String)>,
}

impl Record {
    fn new(raw: RawRecord, decoder: &mut Decoder) -> Record {
        let letter = DeadLetter::from_headers(&raw.headers).ok();
        let now = match &letter {
            None => Err(("not_a_dead_letter".into(), "no cdcctl.* headers".into())),
            Some(letter) => decoder
                .decode(&MessageRef {
                    topic: &letter.topic,
                    partition: letter.partition,
                    offset: letter.offset,
                    timestamp_ms: None,
                    key: raw.key.as_deref(),
                    value: raw.value.as_deref(),
                })
                .map_err(|e| (e.kind().as_str().to_string(), e.to_string())),
        };
        Record { raw, letter, now }
    }

    fn class(&self) -> &str {
        self.letter.as_ref().map_or("-", |l| l.class.as_str())
    }

    fn table(&self) -> &str {
        self.letter
            .as_ref()
            .and_then(|l| l.table.as_deref())
            .unwrap_or("-")
    }
}

/// A time as RFC 3339 (UTC, milliseconds) in JSON output.
fn rfc3339<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        None => s.serialize_none(),
    }
}

/// `list` output.
#[derive(Debug, Serialize)]
struct Listing {
    topic: String,
    total: usize,
    groups: Vec<Group>,
}

impl Listing {
    fn empty(topic: &str) -> Listing {
        Listing {
            topic: topic.to_string(),
            total: 0,
            groups: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Group {
    error_class: String,
    table: String,
    count: usize,
    #[serde(serialize_with = "rfc3339")]
    first_failed: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339")]
    last_failed: Option<DateTime<Utc>>,
    /// How many of them decode now (would replay).
    decode_now: usize,
}

fn list(topic: &str, records: &[&Record], out: &Output) -> Result<Outcome> {
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for r in records {
        let key = (r.class().to_string(), r.table().to_string());
        let g = groups.entry(key.clone()).or_insert(Group {
            error_class: key.0,
            table: key.1,
            count: 0,
            first_failed: None,
            last_failed: None,
            decode_now: 0,
        });
        g.count += 1;
        if let Some(l) = &r.letter {
            g.first_failed = Some(g.first_failed.map_or(l.failed_at, |f| f.min(l.failed_at)));
            g.last_failed = Some(g.last_failed.map_or(l.failed_at, |f| f.max(l.failed_at)));
        }
        g.decode_now += usize::from(r.now.is_ok());
    }
    let listing = Listing {
        topic: topic.to_string(),
        total: records.len(),
        groups: groups.into_values().collect(),
    };
    out.report(&listing, |w| {
        if listing.groups.is_empty() {
            return writeln!(w, "no pending dead letters in `{topic}`");
        }
        let mut table = out.table([
            "ERROR CLASS",
            "TABLE",
            "COUNT",
            "FIRST FAILED",
            "LAST FAILED",
            "DECODE NOW",
        ]);
        let time = |t: Option<DateTime<Utc>>| {
            t.map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        };
        for g in &listing.groups {
            table.add_row([
                g.error_class.clone(),
                g.table.clone(),
                g.count.to_string(),
                time(g.first_failed),
                time(g.last_failed),
                g.decode_now.to_string(),
            ]);
        }
        write!(w, "{}", out.render_table(&table))?;
        writeln!(
            w,
            "{} pending dead letter(s) in `{topic}`; `cdcctl replay-dlq show` lists them",
            listing.total
        )
    })?;
    Ok(Outcome::Ok)
}

/// One dead letter in `show` and `replay --dry-run` output.
#[derive(Debug, Serialize)]
struct Shown {
    dlq_partition: i32,
    dlq_offset: i64,
    error_class: String,
    error_message: String,
    source_topic: Option<String>,
    source_partition: Option<i32>,
    source_offset: Option<i64>,
    table: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    first_failed: Option<DateTime<Utc>>,
    attempts: Option<u32>,
    /// `null` when it decodes now, else why it still fails.
    fails_now: Option<String>,
    key: Option<String>,
    value_bytes: usize,
    /// The original value when it is UTF-8 and short; `value_bytes` says how long it was.
    value: Option<String>,
    headers: BTreeMap<String, Option<String>>,
}

impl Shown {
    fn of(r: &Record) -> Shown {
        let l = r.letter.as_ref();
        let text = |b: &Option<Vec<u8>>| {
            b.as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        Shown {
            dlq_partition: r.raw.partition,
            dlq_offset: r.raw.offset,
            error_class: r.class().to_string(),
            error_message: l.map(|l| l.message.clone()).unwrap_or_default(),
            source_topic: l.map(|l| l.topic.clone()),
            source_partition: l.map(|l| l.partition),
            source_offset: l.map(|l| l.offset),
            table: l.and_then(|l| l.table.clone()),
            first_failed: l.map(|l| l.failed_at),
            attempts: l.map(|l| l.attempts),
            fails_now: r.now.as_ref().err().map(|(c, m)| format!("{c}: {m}")),
            key: text(&r.raw.key),
            value_bytes: r.raw.value.as_ref().map_or(0, Vec::len),
            value: r
                .raw
                .value
                .as_deref()
                .filter(|v| v.len() <= 4096)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned),
            headers: r
                .raw
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), text(v)))
                .collect(),
        }
    }

    fn write_text(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        writeln!(
            w,
            "dlq/{}@{}: {} ({} from {}/{}@{}, attempt {}, first failed {})",
            self.dlq_partition,
            self.dlq_offset,
            self.error_class,
            or(&self.table),
            or(&self.source_topic),
            self.source_partition.map_or("-".into(), |p| p.to_string()),
            self.source_offset.map_or("-".into(), |o| o.to_string()),
            self.attempts.map_or("-".into(), |a| a.to_string()),
            self.first_failed
                .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
        )?;
        writeln!(w, "  error: {}", self.error_message)?;
        match &self.fails_now {
            None => writeln!(w, "  now:   decodes (would replay)")?,
            Some(why) => writeln!(w, "  now:   still fails: {why}")?,
        }
        writeln!(w, "  key:   {}", or(&self.key))?;
        match &self.value {
            Some(v) => writeln!(w, "  value: {v}")?,
            None => writeln!(w, "  value: ({} bytes)", self.value_bytes)?,
        }
        Ok(())
    }
}

fn show(topic: &str, records: &[&Record], limit: usize, out: &Output) -> Result<Outcome> {
    let shown: Vec<Shown> = records.iter().take(limit).map(|r| Shown::of(r)).collect();
    #[derive(Serialize)]
    struct Showing<'a> {
        topic: &'a str,
        total: usize,
        records: &'a [Shown],
    }
    let report = Showing {
        topic,
        total: records.len(),
        records: &shown,
    };
    out.report(&report, |w| {
        for s in &shown {
            s.write_text(w)?;
        }
        if records.len() > shown.len() {
            writeln!(
                w,
                "… {} more (use --limit or a filter)",
                records.len() - shown.len()
            )?;
        }
        if records.is_empty() {
            writeln!(w, "no pending dead letters in `{topic}` match")?;
        }
        Ok(())
    })?;
    Ok(Outcome::Ok)
}

/// What `replay` was asked to do.
struct ReplayPlan {
    topic: String,
    group: String,
    to_source_topic: bool,
    dry_run: bool,
    /// Where applied rows go (the loader's `--target-schema`/`--table-map`).
    targets: Targets,
    /// The loader's `--soft-delete` and `--history`.
    table_options: TableOptions,
}

/// `replay` output.
#[derive(Debug, Serialize)]
struct Replayed {
    topic: String,
    /// Selected records that decode now: applied (or sent to their topic).
    replayed: usize,
    /// Selected records that still fail: back in the dead-letter topic, one more attempt.
    failed_again: usize,
    /// Pending records not selected: left pending.
    not_selected: usize,
    /// Rows the warehouse changed (apply path).
    rows_changed: u64,
    dry_run: bool,
    records: Vec<Shown>,
}

fn replay(
    plan: &mut ReplayPlan,
    records: &[Record],
    filter: &Filter,
    config: &Config,
    out: &Output,
    runtime: &tokio::runtime::Handle,
) -> Result<Outcome> {
    let selected: Vec<&Record> = records.iter().filter(|r| filter.accepts(r)).collect();
    let ok: Vec<&Record> = selected.iter().copied().filter(|r| r.now.is_ok()).collect();
    // What fails again, with its class and message: those that do not decode, then those the
    // warehouse refuses.
    let mut failing: Vec<(&Record, String, String)> = selected
        .iter()
        .filter_map(|r| {
            r.now
                .as_ref()
                .err()
                .map(|(c, m)| (*r, c.clone(), m.clone()))
        })
        .collect();
    let mut report = Replayed {
        topic: plan.topic.clone(),
        replayed: ok.len(),
        failed_again: failing.len(),
        not_selected: records.len() - selected.len(),
        rows_changed: 0,
        dry_run: plan.dry_run,
        records: if plan.dry_run {
            selected.iter().map(|r| Shown::of(r)).collect()
        } else {
            Vec::new()
        },
    };
    if plan.dry_run || selected.is_empty() {
        out.report(&report, |w| {
            for s in &report.records {
                s.write_text(w)?;
            }
            writeln!(
                w,
                "{}would replay {} dead letter(s); {} still fail; {} not selected",
                if plan.dry_run { "dry run: " } else { "" },
                report.replayed,
                report.failed_again,
                report.not_selected
            )
        })?;
        return Ok(Outcome::Ok);
    }
    if selected.len() > CONFIRM_ABOVE
        && !out.confirm(&format!(
            "replay {} dead letter(s) from `{}`{}?",
            selected.len(),
            plan.topic,
            if plan.to_source_topic {
                " to their source topics"
            } else {
                " into the warehouse"
            }
        ))?
    {
        return Err(CliError::Usage {
            message: "replay not confirmed; nothing changed".into(),
            hint: Some("pass `--yes` to confirm without a prompt".into()),
        }
        .into());
    }

    let bar = out.progress(Some(selected.len() as u64), "replaying");
    let kafka = Kafka::new(&config.kafka);
    let producer = kafka.producer()?;
    let timeout = std::time::Duration::from_secs(60);
    if plan.to_source_topic {
        let mut by_topic: BTreeMap<&str, Vec<OutMessage<'_>>> = BTreeMap::new();
        let headers: Vec<dlq::Headers> = ok
            .iter()
            .map(|r| {
                r.raw
                    .headers
                    .iter()
                    .filter(|(n, _)| !n.starts_with("cdcctl."))
                    .cloned()
                    .collect()
            })
            .collect();
        for (r, headers) in ok.iter().zip(&headers) {
            let Some(letter) = &r.letter else { continue };
            by_topic
                .entry(letter.topic.as_str())
                .or_default()
                .push(OutMessage {
                    key: r.raw.key.as_deref(),
                    value: r.raw.value.as_deref(),
                    headers,
                });
        }
        for (topic, messages) in by_topic {
            producer.send_all(topic, &messages, timeout)?;
        }
    } else if !ok.is_empty() {
        let (rows, refused) = apply(&ok, &mut plan.targets, plan.table_options, config, runtime)?;
        report.rows_changed = rows;
        refused_again(&ok, &refused, &mut failing);
        report.replayed = selected.len() - failing.len();
        report.failed_again = failing.len();
    }
    bar.inc(ok.len() as u64);
    // Still failing: back in the dead-letter topic, one more attempt.
    let again: Vec<dlq::Headers> = failing
        .iter()
        .map(|(r, class, message)| match &r.letter {
            Some(letter) => letter.failed_again(class, message).headers(&r.raw.headers),
            None => r.raw.headers.clone(),
        })
        .collect();
    let messages: Vec<OutMessage<'_>> = failing
        .iter()
        .zip(&again)
        .map(|((r, _, _), headers)| OutMessage {
            key: r.raw.key.as_deref(),
            value: r.raw.value.as_deref(),
            headers,
        })
        .collect();
    producer.send_all(&plan.topic, &messages, timeout)?;
    bar.inc(failing.len() as u64);

    commit(plan, records, filter, config)?;
    bar.finish_and_clear();
    out.report(&report, |w| {
        writeln!(
            w,
            "replayed {} dead letter(s){}; {} still fail (back in `{}`, one more attempt); {} \
             not selected (still pending)",
            report.replayed,
            if plan.to_source_topic {
                " to their source topics".to_string()
            } else {
                format!(" into the warehouse ({} rows changed)", report.rows_changed)
            },
            report.failed_again,
            plan.topic,
            report.not_selected
        )
    })?;
    Ok(Outcome::Ok)
}

/// Adds to `failing` the replayed records whose events the warehouse refused.
fn refused_again<'a>(
    replayed: &[&'a Record],
    refused: &[Refused],
    failing: &mut Vec<(&'a Record, String, String)>,
) {
    let reasons: BTreeMap<(&str, i32, i64), (&str, &str)> = refused
        .iter()
        .flat_map(|r| {
            r.positions
                .iter()
                .map(|(t, p, o)| ((t.as_str(), *p, *o), (r.class, r.reason.as_str())))
        })
        .collect();
    for r in replayed {
        let Some(letter) = &r.letter else { continue };
        if let Some((class, reason)) =
            reasons.get(&(letter.topic.as_str(), letter.partition, letter.offset))
        {
            failing.push((r, class.to_string(), (*reason).to_string()));
        }
    }
}

/// Applies decoded dead letters to the warehouse like `load` (same target naming). What the
/// warehouse refuses is isolated (`load::isolate`) and returned; the rest lands.
fn apply(
    records: &[&Record],
    targets: &mut Targets,
    opts: TableOptions,
    config: &Config,
    runtime: &tokio::runtime::Handle,
) -> Result<(u64, Vec<Refused>)> {
    let choice = match config.load.sink.as_str() {
        "snowflake" => SinkChoice::Snowflake,
        _ => SinkChoice::DuckDb {
            path: config.duckdb.path.clone(),
            memory_limit: "256MB".into(),
        },
    };
    let mut sink = open_sink(choice, config, opts, runtime)?;
    let mut batch = if opts.history {
        Batch::with_history()
    } else {
        Batch::new()
    };
    for r in records {
        if let Ok(decoded) = &r.now {
            batch.push(decoded.clone());
        }
    }
    let (applied, refused) = isolate::apply(sink.as_mut(), targets, &batch.finish())?;
    Ok((applied.rows_changed, refused))
}

/// Commits the replay group per partition up to the first record not selected (module doc).
fn commit(plan: &ReplayPlan, records: &[Record], filter: &Filter, config: &Config) -> Result<()> {
    let mut next: BTreeMap<i32, (i64, bool)> = BTreeMap::new();
    for r in records {
        let entry = next.entry(r.raw.partition).or_insert((r.raw.offset, false));
        if entry.1 {
            continue;
        }
        if filter.accepts(r) {
            entry.0 = r.raw.offset + 1;
        } else {
            entry.1 = true;
        }
    }
    let session = Kafka::new(&config.kafka).open_group(&plan.group)?;
    let topics = session.topics()?;
    let Some(info) = topics.into_iter().find(|t| t.name == plan.topic) else {
        return Ok(());
    };
    let reader = session.reader(&[info], StartAt::End)?;
    reader.commit(
        next.iter()
            .map(|(partition, (offset, _))| (plan.topic.as_str(), *partition, *offset)),
    )
}
