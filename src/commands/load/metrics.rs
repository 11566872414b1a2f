//! What `load` measures, and where it shows it: a status line on a terminal, a JSON file
//! (`--metrics-file`, rewritten every `--metrics-interval` and at exit), and a Prometheus text
//! endpoint (`--metrics-addr`).
//!
//! Latencies are per event: Kafka append time → warehouse commit, and source commit time
//! (`source.ts_ms`) → warehouse commit. Batch times run from the batch's hand-over to the sink
//! to the offset commit.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cdc::batch::{BatchStats, OpCounts};

/// Counters and histograms of one loader run.
pub struct Metrics {
    started: Instant,
    events: u64,
    batches: u64,
    rows_changed: u64,
    statements: u64,
    changes_recorded: u64,
    dead_letters: u64,
    retries: u64,
    breaker: &'static str,
    tables: BTreeMap<String, OpCounts>,
    batch_ms: Histogram<u64>,
    kafka_to_commit_ms: Histogram<u64>,
    source_to_commit_ms: Histogram<u64>,
    last_batch: Option<LastBatch>,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct LastBatch {
    events: u64,
    ms: u64,
    /// Rows the warehouse changed and statements it ran for the batch.
    rows_changed: u64,
    statements: u64,
    /// Source commit → warehouse commit of the batch's newest event: how far behind the source
    /// the warehouse was at that commit.
    source_lag_ms: Option<u64>,
}

/// Shared between the sink thread (which records) and the reporters.
pub type Shared = Arc<Mutex<Metrics>>;

/// Locks the metrics, whatever a panicking holder left (they are counters).
pub fn lock(shared: &Shared) -> MutexGuard<'_, Metrics> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

fn histogram() -> Histogram<u64> {
    // 1 ms .. 1 day, 3 significant digits. The bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 86_400_000, 3).expect("valid histogram bounds")
}

/// One committed batch, as the sink thread reports it.
pub struct Committed<'a> {
    /// The batch's counters.
    pub stats: &'a BatchStats,
    /// Rows the MERGEs changed.
    pub rows_changed: u64,
    /// Statements the warehouse ran for the batch.
    pub statements: u64,
    /// Rows appended to changes tables (`--history`).
    pub changes_recorded: u64,
    /// Kafka append times of the batch's messages (ms since epoch).
    pub kafka_ts_ms: &'a [i64],
    /// Source commit times of the batch's change events (ms since epoch).
    pub source_ts_ms: &'a [i64],
    /// When the batch was handed to the sink.
    pub handed_over: Instant,
    /// The wall clock at the warehouse commit (ms since epoch).
    pub committed_at_ms: i64,
}

impl Metrics {
    /// A fresh run.
    pub fn new() -> Shared {
        Arc::new(Mutex::new(Metrics {
            started: Instant::now(),
            events: 0,
            batches: 0,
            rows_changed: 0,
            statements: 0,
            changes_recorded: 0,
            dead_letters: 0,
            retries: 0,
            breaker: "closed",
            tables: BTreeMap::new(),
            batch_ms: histogram(),
            kafka_to_commit_ms: histogram(),
            source_to_commit_ms: histogram(),
            last_batch: None,
        }))
    }

    /// Records a failed attempt at a batch the warehouse could not take.
    pub fn record_retry(&mut self) {
        self.retries += 1;
    }

    /// The warehouse circuit breaker's state: `closed`, `open` or `half-open`.
    pub fn set_breaker(&mut self, state: &'static str) {
        self.breaker = state;
    }

    /// Records messages sent to the dead-letter queue.
    pub fn record_dead_letters(&mut self, n: u64) {
        self.dead_letters += n;
    }

    /// Records a committed batch.
    pub fn record(&mut self, batch: &Committed<'_>) {
        let stats = batch.stats;
        self.events += stats.events_in;
        self.batches += 1;
        self.rows_changed += batch.rows_changed;
        self.statements += batch.statements;
        self.changes_recorded += batch.changes_recorded;
        for (table, counts) in &stats.per_table {
            let total = self.tables.entry(table.to_string()).or_default();
            total.create += counts.create;
            total.read += counts.read;
            total.update += counts.update;
            total.delete += counts.delete;
            total.truncate += counts.truncate;
        }
        let ms = batch.handed_over.elapsed().as_millis() as u64;
        self.batch_ms.saturating_record(ms.max(1));
        let at = batch.committed_at_ms;
        for &ts in batch.kafka_ts_ms {
            self.kafka_to_commit_ms
                .saturating_record((at - ts).max(1) as u64);
        }
        for &ts in batch.source_ts_ms {
            self.source_to_commit_ms
                .saturating_record((at - ts).max(1) as u64);
        }
        self.last_batch = Some(LastBatch {
            events: stats.events_in,
            ms,
            rows_changed: batch.rows_changed,
            statements: batch.statements,
            source_lag_ms: stats.source_ts_ms_max.map(|ts| (at - ts).max(0) as u64),
        });
    }

    /// Change events loaded per source table (`schema.table`).
    pub fn table_events(&self) -> BTreeMap<String, u64> {
        self.tables
            .iter()
            .map(|(name, counts)| (name.clone(), counts.total()))
            .collect()
    }

    /// The run's events per second so far.
    pub fn events_per_second(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.events as f64 / secs
        } else {
            0.0
        }
    }

    /// The one-line status shown on a terminal.
    pub fn status_line(&self) -> String {
        let mut line = format!(
            "{} events, {:.0}/s, {} batches",
            self.events,
            self.events_per_second(),
            self.batches
        );
        if self.breaker != "closed" {
            line.push_str(&format!(", warehouse breaker {}", self.breaker));
        }
        if let Some(last) = self.last_batch {
            line.push_str(&format!(
                ", last batch {} events in {} ms",
                last.events, last.ms
            ));
            if let Some(lag) = last.source_lag_ms {
                line.push_str(&format!(", {:.1}s behind the source", lag as f64 / 1000.0));
            }
        }
        line
    }

    /// The JSON document of `--metrics-file` (and `--output json` at exit).
    pub fn snapshot(&self) -> Snapshot {
        let tables = self
            .tables
            .iter()
            .map(|(name, c)| {
                let counts = TableCounts {
                    c: c.create,
                    r: c.read,
                    u: c.update,
                    d: c.delete,
                    t: c.truncate,
                };
                (name.clone(), counts)
            })
            .collect();
        Snapshot {
            events: self.events,
            events_per_second: (self.events_per_second() * 10.0).round() / 10.0,
            batches: self.batches,
            rows_changed: self.rows_changed,
            statements: self.statements,
            changes_recorded: self.changes_recorded,
            dead_letters: self.dead_letters,
            warehouse: Warehouse {
                breaker: self.breaker,
                retries: self.retries,
            },
            elapsed_s: (self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            batch_ms: Percentiles::of(&self.batch_ms),
            latency_ms: Latencies {
                kafka_to_commit: Percentiles::of(&self.kafka_to_commit_ms),
                source_to_commit: Percentiles::of(&self.source_to_commit_ms),
            },
            last_batch: self.last_batch,
            tables,
        }
    }

    /// The Prometheus text exposition of the counters and quantiles.
    pub fn prometheus(&self) -> String {
        let s = self.snapshot();
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, help: &str, kind: &str, lines: Vec<(String, f64)>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, value) in lines {
                out.push_str(&format!("{name}{labels} {value}\n"));
            }
        };
        metric(
            "cdcctl_load_events_total",
            "Kafka messages loaded (committed).",
            "counter",
            vec![(String::new(), s.events as f64)],
        );
        metric(
            "cdcctl_load_batches_total",
            "Micro-batches committed.",
            "counter",
            vec![(String::new(), s.batches as f64)],
        );
        metric(
            "cdcctl_load_rows_changed_total",
            "Warehouse rows inserted, updated or deleted.",
            "counter",
            vec![(String::new(), s.rows_changed as f64)],
        );
        metric(
            "cdcctl_load_changes_recorded_total",
            "Rows appended to changes tables (load --history).",
            "counter",
            vec![(String::new(), s.changes_recorded as f64)],
        );
        metric(
            "cdcctl_load_warehouse_retries_total",
            "Failed attempts at batches the warehouse could not take (retried).",
            "counter",
            vec![(String::new(), s.warehouse.retries as f64)],
        );
        metric(
            "cdcctl_load_warehouse_breaker_open",
            "1 while the warehouse circuit breaker is open or half-open.",
            "gauge",
            vec![(
                String::new(),
                f64::from(u8::from(s.warehouse.breaker != "closed")),
            )],
        );
        metric(
            "cdcctl_load_dead_letters_total",
            "Messages sent to the dead-letter queue.",
            "counter",
            vec![(String::new(), s.dead_letters as f64)],
        );
        metric(
            "cdcctl_load_statements_total",
            "Warehouse statements run (transaction control not counted).",
            "counter",
            vec![(String::new(), s.statements as f64)],
        );
        let mut per_op = Vec::new();
        for (table, c) in &s.tables {
            for (op, n) in [("c", c.c), ("r", c.r), ("u", c.u), ("d", c.d), ("t", c.t)] {
                let table = table.replace('\\', "\\\\").replace('"', "\\\"");
                per_op.push((format!("{{table=\"{table}\",op=\"{op}\"}}"), n as f64));
            }
        }
        metric(
            "cdcctl_load_table_events_total",
            "Change events loaded per source table and operation.",
            "counter",
            per_op,
        );
        for (name, help, p) in [
            (
                "cdcctl_load_batch_milliseconds",
                "Time from batch hand-over to offset commit.",
                &s.batch_ms,
            ),
            (
                "cdcctl_load_kafka_to_commit_milliseconds",
                "Kafka append to warehouse commit, per event.",
                &s.latency_ms.kafka_to_commit,
            ),
            (
                "cdcctl_load_source_to_commit_milliseconds",
                "Source commit to warehouse commit, per event.",
                &s.latency_ms.source_to_commit,
            ),
        ] {
            metric(
                name,
                help,
                "summary",
                vec![
                    ("{quantile=\"0.5\"}".into(), p.p50 as f64),
                    ("{quantile=\"0.95\"}".into(), p.p95 as f64),
                    ("{quantile=\"0.99\"}".into(), p.p99 as f64),
                ],
            );
        }
        out
    }
}

/// `--metrics-file` contents.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    events: u64,
    events_per_second: f64,
    batches: u64,
    rows_changed: u64,
    /// Warehouse statements run (transaction control not counted).
    statements: u64,
    /// Rows appended to changes tables (`--history`).
    changes_recorded: u64,
    /// Messages sent to the dead-letter queue.
    dead_letters: u64,
    /// The warehouse's circuit breaker and the failed attempts so far.
    warehouse: Warehouse,
    elapsed_s: f64,
    batch_ms: Percentiles,
    latency_ms: Latencies,
    last_batch: Option<LastBatch>,
    tables: BTreeMap<String, TableCounts>,
}

#[derive(Debug, Serialize)]
struct Warehouse {
    breaker: &'static str,
    retries: u64,
}

#[derive(Debug, Serialize)]
struct Latencies {
    kafka_to_commit: Percentiles,
    source_to_commit: Percentiles,
}

#[derive(Debug, Serialize)]
struct TableCounts {
    c: u64,
    r: u64,
    u: u64,
    d: u64,
    t: u64,
}

#[derive(Debug, Serialize)]
struct Percentiles {
    p50: u64,
    p95: u64,
    p99: u64,
    max: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

/// Writes the snapshot to `path` atomically (a temporary file renamed over it).
pub fn write_file(shared: &Shared, path: &Path) -> Result<()> {
    let json = serde_json::to_vec_pretty(&lock(shared).snapshot())?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write the metrics file `{}`", path.display()))
}

/// Binds the Prometheus endpoint now (so a bad address fails before loading starts) and serves
/// it from a background thread for the rest of the process.
pub fn serve(shared: Shared, addr: &str) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr).map_err(|e| crate::error::CliError::Usage {
        message: format!("cannot listen on --metrics-addr `{addr}`: {e}"),
        hint: Some("use a free HOST:PORT such as 127.0.0.1:9187".into()),
    })?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("load-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = respond(stream, &shared);
            }
        })?;
    Ok(bound)
}

fn respond(mut stream: std::net::TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    // The request itself does not matter: every path gets the metrics.
    let mut request = [0_u8; 1024];
    let _ = stream.read(&mut request)?;
    let body = lock(shared).prometheus();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::batch::TableId;

    fn stats(events: u64, table: &str, updates: u64) -> BatchStats {
        let mut stats = BatchStats {
            events_in: events,
            source_ts_ms_max: Some(1_000),
            ..BatchStats::default()
        };
        stats.per_table.insert(
            TableId {
                schema: Some("public".into()),
                name: table.into(),
            },
            OpCounts {
                update: updates,
                ..OpCounts::default()
            },
        );
        stats
    }

    #[test]
    fn records_counts_per_table_and_latency_per_event() {
        let shared = Metrics::new();
        let mut m = lock(&shared);
        let kafka: Vec<i64> = (0..100).map(|i| 10_000 - i * 10).collect();
        m.record(&Committed {
            stats: &stats(100, "users", 90),
            rows_changed: 80,
            statements: 2,
            changes_recorded: 0,
            kafka_ts_ms: &kafka,
            source_ts_ms: &[9_000],
            handed_over: Instant::now(),
            committed_at_ms: 10_000,
        });
        m.record(&Committed {
            stats: &stats(10, "users", 10),
            rows_changed: 10,
            statements: 2,
            changes_recorded: 0,
            kafka_ts_ms: &[],
            source_ts_ms: &[],
            handed_over: Instant::now(),
            committed_at_ms: 10_000,
        });
        let s = serde_json::to_value(m.snapshot()).unwrap();
        assert_eq!(s["events"], 110);
        assert_eq!(s["batches"], 2);
        assert_eq!(s["rows_changed"], 90);
        assert_eq!(s["tables"]["public.users"]["u"], 100);
        // Kafka latencies 1 (clamped from 0), 10, 20, ... 990 ms.
        let p99 = s["latency_ms"]["kafka_to_commit"]["p99"].as_u64().unwrap();
        assert!((975..=995).contains(&p99), "{p99}");
        assert_eq!(s["latency_ms"]["source_to_commit"]["max"], 1_000);
        assert_eq!(s["last_batch"]["source_lag_ms"], 9_000);
        assert_eq!(m.table_events()["public.users"], 100);
        assert!(
            m.status_line().starts_with("110 events, "),
            "{}",
            m.status_line()
        );
    }

    #[test]
    fn prometheus_text_has_help_type_and_labelled_samples() {
        let shared = Metrics::new();
        let mut m = lock(&shared);
        m.record(&Committed {
            stats: &stats(5, "we\"ird", 5),
            rows_changed: 5,
            statements: 2,
            changes_recorded: 0,
            kafka_ts_ms: &[],
            source_ts_ms: &[],
            handed_over: Instant::now(),
            committed_at_ms: 0,
        });
        let text = m.prometheus();
        assert!(
            text.contains("# TYPE cdcctl_load_events_total counter\ncdcctl_load_events_total 5\n"),
            "{text}"
        );
        assert!(text.contains("cdcctl_load_statements_total 2\n"), "{text}");
        assert!(
            text.contains("cdcctl_load_table_events_total{table=\"public.we\\\"ird\",op=\"u\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE cdcctl_load_batch_milliseconds summary"),
            "{text}"
        );
    }
}
