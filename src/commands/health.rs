//! `cdcctl health`: is the pipeline healthy? One row per check, from every layer.
//!
//! 1. Kafka Connect: the worker answers (version); the pipeline's connector and each task are
//!    RUNNING (a FAILED one shows the first line of its trace). The connector's config names its
//!    slot and topic prefix.
//! 2. Then, concurrently, each layer with a timeout:
//!    - Postgres: reachable, `wal_level = logical`, the connector's slot exists, is active and
//!      retains less WAL than the thresholds; inactive slots of the database that no connector on
//!      the worker uses (orphans, retaining WAL until the disk fills).
//!    - Kafka: reachable; the change topics exist; the loader group's lag per partition and in
//!      total;
//!      the dead letters not yet replayed.
//!    - The warehouse (DuckDB or Snowflake): reachable; per table the age of the last load
//!      (`_cdc_processed_at`).
//! 3. Exit 0 when every check is ok (warnings too, unless `--strict`), 1 when one fails, 3 when a
//!    required service does not answer.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cdc::topics::table_of_topic;
use crate::cli::HealthArgs;
use crate::clients::connect::{ConnectClient, State};
use crate::clients::kafka::Kafka;
use crate::clients::postgres::Postgres;
use crate::config::{Config, parse_duration};
use crate::error::{CliError, EXIT_UNREACHABLE, Outcome};
use crate::output::Output;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Worth a look (fails with `--strict`).
    Warn,
    /// Broken.
    Fail,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    component: &'static str,
    check: String,
    status: Status,
    value: String,
    threshold: String,
    hint: Option<String>,
    /// The service did not answer (exit 3).
    #[serde(skip)]
    unreachable: bool,
    /// A count behind the value (pending dead letters), for growth between `--watch` rounds.
    #[serde(skip)]
    count: Option<i64>,
}

fn check(
    component: &'static str,
    name: impl Into<String>,
    status: Status,
    value: impl Into<String>,
) -> Check {
    Check {
        component,
        check: name.into(),
        status,
        value: value.into(),
        threshold: String::new(),
        hint: None,
        unreachable: false,
        count: None,
    }
}

impl Check {
    fn threshold(mut self, t: impl Into<String>) -> Check {
        self.threshold = t.into();
        self
    }

    fn hint(mut self, h: impl Into<String>) -> Check {
        self.hint = Some(h.into());
        self
    }

    fn unreachable(component: &'static str, err: &anyhow::Error) -> Check {
        let mut c = check(
            component,
            "reachable",
            Status::Fail,
            crate::error::one_line(err),
        );
        c.unreachable =
            crate::error::find_cli_error(err).is_some_and(|e| e.exit_code() == EXIT_UNREACHABLE);
        c.hint = crate::error::find_cli_error(err).and_then(CliError::hint);
        c
    }
}

/// The thresholds.
#[derive(Debug, Clone, Copy)]
struct Thresholds {
    slot_warn: u64,
    slot_fail: u64,
    lag_warn: i64,
    lag_fail: i64,
    fresh_warn: Duration,
    fresh_fail: Duration,
    timeout: Duration,
}

/// A size: `512MB`, `1GB`, `4096`.
fn parse_bytes(raw: &str) -> Result<u64, String> {
    let t = raw.trim().to_ascii_uppercase();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{raw}` is not a size"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "K" => 1 << 10,
        "MB" | "M" => 1 << 20,
        "GB" | "G" => 1 << 30,
        "TB" | "T" => 1 << 40,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{raw}` (B, KB, MB, GB, TB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{raw}` is too large"))
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn grade<T: PartialOrd>(value: T, warn: T, fail: T) -> Status {
    if value >= fail {
        Status::Fail
    } else if value >= warn {
        Status::Warn
    } else {
        Status::Ok
    }
}

/// The report.
#[derive(Debug, Serialize)]
struct Report {
    status: Status,
    checks: Vec<Check>,
}

/// Runs `cdcctl health`.
pub async fn run(args: &HealthArgs, config: &Config, out: &Output) -> Result<Outcome> {
    let usage = |flag: &str, e: String| CliError::Usage {
        message: format!("{flag}: {e}"),
        hint: Some("sizes like `1GB`, durations like `5m`".into()),
    };
    let h = &config.health;
    let t = Thresholds {
        slot_warn: parse_bytes(&h.slot_warn).map_err(|e| usage("health.slot_warn", e))?,
        slot_fail: parse_bytes(&h.slot_fail).map_err(|e| usage("health.slot_fail", e))?,
        lag_warn: i64::try_from(h.lag_warn).unwrap_or(i64::MAX),
        lag_fail: i64::try_from(h.lag_fail).unwrap_or(i64::MAX),
        fresh_warn: h.freshness_warn,
        fresh_fail: h.freshness_fail,
        timeout: parse_duration(&args.timeout).map_err(|e| usage("--timeout", e))?,
    };
    let watch = match &args.watch {
        None => None,
        Some(raw) => Some(parse_duration(raw).map_err(|e| usage("--watch", e))?),
    };
    let Some(interval) = watch else {
        let report = collect(config, t, args.loader_metrics.as_deref()).await;
        print(out, &report)?;
        return Ok(outcome(&report, args.strict));
    };
    // --watch: check, print (redrawn on a terminal), wait; until Ctrl-C. The exit code is the
    // last report's.
    let mut previous: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let last = loop {
        let mut report = collect(config, t, args.loader_metrics.as_deref()).await;
        for c in &mut report.checks {
            if let Some(n) = c.count
                && let Some(before) = previous.insert(c.check.clone(), n)
            {
                c.value = format!("{} ({:+} since the last check)", c.value, n - before);
            }
        }
        if out.is_json() {
            out.json_line("health", &report)?;
        } else {
            if out.stdout_is_terminal() {
                print!("\x1b[2J\x1b[H");
            }
            println!("{}", chrono::Local::now().format("%Y-%m-%d %H:%M:%S"));
            print(out, &report)?;
        }
        let code = outcome(&report, args.strict);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => break code,
        }
    };
    Ok(last)
}

/// Every check, Connect first (its config names the slot and the topic prefix), then the other
/// layers concurrently, each within the timeout.
async fn collect(
    config: &Config,
    t: Thresholds,
    loader_metrics: Option<&std::path::Path>,
) -> Report {
    let (mut checks, pipeline) = connect_checks(config, t).await;
    let prefix = pipeline
        .topic_prefix
        .clone()
        .unwrap_or_else(|| config.kafka.topic_prefix.clone());
    let kafka_task = {
        let (config, prefix) = (config.clone(), prefix.clone());
        tokio::task::spawn_blocking(move || kafka_checks(&config, &prefix, t))
    };
    let warehouse_task = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || warehouse_checks(&config, t))
    };
    checks.extend(timed("postgres", t.timeout, postgres_checks(config, &pipeline, t)).await);
    let joined = |task: tokio::task::JoinHandle<Vec<Check>>| async move {
        task.await.unwrap_or_else(|e| {
            vec![check(
                "cdcctl",
                "checks",
                Status::Fail,
                format!("a check panicked: {e}"),
            )]
        })
    };
    checks.extend(timed("kafka", t.timeout, joined(kafka_task)).await);
    checks.extend(timed("warehouse", t.timeout, joined(warehouse_task)).await);
    if let Some(path) = loader_metrics {
        checks.extend(loader_checks(path));
    }
    Report {
        status: checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok),
        checks,
    }
}

/// The running loader, from its `--metrics-file`: its warehouse circuit breaker, and whether it
/// still writes the file.
fn loader_checks(path: &std::path::Path) -> Vec<Check> {
    let read = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let Some(metrics) = read else {
        return vec![
            check(
                "loader",
                "metrics file",
                Status::Fail,
                format!("cannot read `{}`", path.display()),
            )
            .hint("start the loader with `--metrics-file` at that path"),
        ];
    };
    let mut checks = Vec::new();
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| m.elapsed().ok())
        .unwrap_or_default();
    let s = if age > Duration::from_secs(60) {
        Status::Warn
    } else {
        Status::Ok
    };
    let mut c = check(
        "loader",
        "metrics file",
        s,
        format!("written {} s ago", age.as_secs()),
    )
    .threshold("60 s");
    if s != Status::Ok {
        c.hint = Some("is the loader still running?".into());
    }
    checks.push(c);
    let breaker = metrics["warehouse"]["breaker"]
        .as_str()
        .unwrap_or("unknown");
    let retries = metrics["warehouse"]["retries"].as_u64().unwrap_or(0);
    let s = match breaker {
        "closed" => Status::Ok,
        "half-open" => Status::Warn,
        _ => Status::Fail,
    };
    let mut c = check(
        "loader",
        "warehouse circuit breaker",
        s,
        format!("{breaker}, {retries} retries so far"),
    )
    .threshold("closed");
    if s != Status::Ok {
        c.hint =
            Some("the warehouse is unavailable to the loader; no offsets move meanwhile".into());
    }
    checks.push(c);
    checks
}

/// The exit outcome of a report.
fn outcome(report: &Report, strict: bool) -> Outcome {
    if report.checks.iter().any(|c| c.unreachable) {
        return Outcome::Unreachable;
    }
    match report.status {
        Status::Fail => Outcome::Failed,
        Status::Warn if strict => Outcome::Failed,
        _ => Outcome::Ok,
    }
}

fn print(out: &Output, report: &Report) -> Result<()> {
    out.report(report, |w| {
        let mut table = out.table(["COMPONENT", "CHECK", "STATUS", "VALUE", "THRESHOLD", "HINT"]);
        for c in &report.checks {
            table.add_row([
                c.component.to_string(),
                c.check.clone(),
                c.status.name().to_string(),
                c.value.clone(),
                c.threshold.clone(),
                c.hint.clone().unwrap_or_default(),
            ]);
        }
        write!(w, "{}", out.render_table(&table))?;
        let count = |s: Status| report.checks.iter().filter(|c| c.status == s).count();
        writeln!(
            w,
            "{}: {} ok, {} warn, {} fail",
            report.status.name(),
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Fail)
        )
    })?;
    Ok(())
}

/// Runs a layer's checks with a timeout; a layer that does not answer fails.
async fn timed(
    component: &'static str,
    timeout: Duration,
    checks: impl std::future::Future<Output = Vec<Check>>,
) -> Vec<Check> {
    match tokio::time::timeout(timeout, checks).await {
        Ok(c) => c,
        Err(_) => vec![
            check(
                component,
                "checks",
                Status::Fail,
                format!("no answer within {} s", timeout.as_secs()),
            )
            .threshold("--timeout"),
        ],
    }
}

/// What the connector's config says about the pipeline.
#[derive(Debug, Default)]
struct Pipeline {
    slot: Option<String>,
    /// `publication.name`, and the tables of `table.include.list`.
    publication: Option<String>,
    tables: Vec<crate::clients::postgres::TableName>,
    topic_prefix: Option<String>,
    /// Slots named by any connector on the worker.
    claimed_slots: BTreeSet<String>,
    /// The worker answered.
    connect_up: bool,
}

async fn connect_checks(config: &Config, t: Thresholds) -> (Vec<Check>, Pipeline) {
    let mut checks = Vec::new();
    let mut pipeline = Pipeline::default();
    let client = match ConnectClient::new(&config.connect) {
        Ok(c) => c,
        Err(e) => {
            checks.push(check("connect", "reachable", Status::Fail, e.to_string()));
            return (checks, pipeline);
        }
    };
    let root = tokio::time::timeout(t.timeout, client.root()).await;
    match root {
        Ok(Ok(info)) => {
            pipeline.connect_up = true;
            checks.push(check(
                "connect",
                "reachable",
                Status::Ok,
                format!("Kafka Connect {}", info.version),
            ));
        }
        Ok(Err(e)) => {
            let e = anyhow::Error::new(e);
            checks.push(Check::unreachable("connect", &e));
            return (checks, pipeline);
        }
        Err(_) => {
            checks.push(
                check("connect", "reachable", Status::Fail, "no answer").threshold("--timeout"),
            );
            return (checks, pipeline);
        }
    }
    let name = &config.connect.connector;
    if let Ok(all) = client.connectors_expanded().await {
        for expanded in all.values() {
            if let Some(slot) = expanded
                .info
                .as_ref()
                .and_then(|i| i.config.get("slot.name"))
            {
                pipeline.claimed_slots.insert(slot.clone());
            }
        }
    }
    match client.find_config(name).await {
        Ok(Some(cfg)) => {
            pipeline.slot = cfg.get("slot.name").cloned();
            pipeline.publication = cfg.get("publication.name").cloned();
            pipeline.tables = cfg
                .get("table.include.list")
                .map(|list| included_tables(list))
                .unwrap_or_default();
            pipeline.topic_prefix = cfg.get("topic.prefix").cloned();
        }
        Ok(None) => {
            checks.push(
                check(
                    "connect",
                    format!("connector {name}"),
                    Status::Fail,
                    "does not exist",
                )
                .hint("create it: `cdcctl create-connector`"),
            );
            return (checks, pipeline);
        }
        Err(e) => {
            checks.push(check(
                "connect",
                format!("connector {name}"),
                Status::Fail,
                e.to_string(),
            ));
            return (checks, pipeline);
        }
    }
    match client.status(name).await {
        Ok(status) => {
            let state = &status.connector.state;
            let (s, hint) = match state {
                State::Running => (Status::Ok, None),
                State::Paused | State::Stopped => (
                    Status::Fail,
                    Some(format!("resume it: `cdcctl connector resume {name}`")),
                ),
                State::Failed => (
                    Status::Fail,
                    Some(format!(
                        "see the trace, fix, then `cdcctl connector restart {name}`"
                    )),
                ),
                _ => (
                    Status::Warn,
                    Some("starting or rebalancing; check again".to_string()),
                ),
            };
            let mut value = state.to_string();
            if let Some(trace) = &status.connector.trace {
                value = format!("{value}: {}", first_line(trace));
            }
            let mut c =
                check("connect", format!("connector {name}"), s, value).threshold("RUNNING");
            c.hint = hint;
            checks.push(c);
            if status.tasks.is_empty() && *state == State::Running {
                checks
                    .push(check("connect", "tasks", Status::Fail, "no task").threshold("RUNNING"));
            }
            for task in &status.tasks {
                let s = match task.state {
                    State::Running => Status::Ok,
                    State::Failed | State::Paused | State::Stopped => Status::Fail,
                    _ => Status::Warn,
                };
                let mut value = task.state.to_string();
                if let Some(trace) = &task.trace {
                    value = format!("{value}: {}", first_line(trace));
                }
                let mut c =
                    check("connect", format!("task {}", task.id), s, value).threshold("RUNNING");
                if task.state == State::Failed {
                    c.hint = Some(format!(
                        "fix the cause, then `cdcctl connector restart {name} --include-tasks`"
                    ));
                }
                checks.push(c);
            }
        }
        Err(e) => checks.push(check(
            "connect",
            format!("connector {name}"),
            Status::Fail,
            e.to_string(),
        )),
    }
    (checks, pipeline)
}

/// The tables of a `table.include.list` that names tables (`public.users`, `public\\.users`);
/// patterns that are real regexes are skipped.
fn included_tables(list: &str) -> Vec<crate::clients::postgres::TableName> {
    list.split(',')
        .filter_map(|item| {
            let plain = item.trim().replace("\\.", ".");
            if plain.chars().any(|c| "*+?[](){}|^$\\".contains(c)) {
                return None;
            }
            let (schema, table) = plain.split_once('.')?;
            Some(crate::clients::postgres::TableName::new(schema, table))
        })
        .collect()
}

fn first_line(trace: &str) -> String {
    let line = trace.lines().next().unwrap_or_default();
    match line.char_indices().nth(160) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

async fn postgres_checks(config: &Config, pipeline: &Pipeline, t: Thresholds) -> Vec<Check> {
    let mut checks = Vec::new();
    let pg = match Postgres::connect(&config.postgres).await {
        Ok(pg) => pg,
        Err(e) => {
            checks.push(Check::unreachable("postgres", &e));
            return checks;
        }
    };
    let db = pg.client();
    let version: String = db
        .query_one("SHOW server_version", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or_default();
    checks.push(check(
        "postgres",
        "reachable",
        Status::Ok,
        format!("PostgreSQL {version}"),
    ));
    match db.query_one("SHOW wal_level", &[]).await {
        Ok(row) => {
            let level: String = row.get(0);
            let s = if level == "logical" {
                Status::Ok
            } else {
                Status::Fail
            };
            let mut c = check("postgres", "wal_level", s, level).threshold("logical");
            if s == Status::Fail {
                c.hint =
                    Some("`ALTER SYSTEM SET wal_level = logical`, then restart Postgres".into());
            }
            checks.push(c);
        }
        Err(e) => checks.push(check("postgres", "wal_level", Status::Fail, e.to_string())),
    }
    if let Some(name) = &pipeline.publication {
        match crate::clients::postgres::find_publication(db, name).await {
            Ok(None) => checks.push(
                check(
                    "postgres",
                    format!("publication {name}"),
                    Status::Fail,
                    "does not exist",
                )
                .hint("`cdcctl setup-source` creates it"),
            ),
            Ok(Some(publication)) => {
                let missing: Vec<String> = pipeline
                    .tables
                    .iter()
                    .filter(|t| !publication.covers(std::slice::from_ref(*t)))
                    .map(|t| format!("{}.{}", t.schema, t.name))
                    .collect();
                checks.push(if missing.is_empty() {
                    check(
                        "postgres",
                        format!("publication {name}"),
                        Status::Ok,
                        if publication.all_tables {
                            "all tables".to_string()
                        } else {
                            format!("covers the {} captured table(s)", pipeline.tables.len())
                        },
                    )
                } else {
                    check(
                        "postgres",
                        format!("publication {name}"),
                        Status::Fail,
                        format!("does not publish {}", missing.join(", ")),
                    )
                    .hint(format!(
                        "their changes never reach Kafka: `cdcctl setup-source --tables {}`",
                        missing.join(",")
                    ))
                });
            }
            Err(e) => checks.push(check(
                "postgres",
                format!("publication {name}"),
                Status::Fail,
                crate::error::one_line(&e),
            )),
        }
    }
    let rows = db
        .query(
            "SELECT slot_name::text, active, \
                    COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint \
             FROM pg_replication_slots \
             WHERE slot_type = 'logical' AND database = current_database() ORDER BY slot_name",
            &[],
        )
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            checks.push(check(
                "postgres",
                "replication slots",
                Status::Fail,
                e.to_string(),
            ));
            return checks;
        }
    };
    let threshold = format!(
        "warn {}, fail {}",
        human_bytes(t.slot_warn),
        human_bytes(t.slot_fail)
    );
    if let Some(slot) = &pipeline.slot {
        match rows.iter().find(|r| r.get::<_, String>(0) == *slot) {
            None => checks.push(
                check(
                    "postgres",
                    format!("slot {slot}"),
                    Status::Fail,
                    "does not exist",
                )
                .hint("`cdcctl setup-source` creates it; the connector also makes it on start"),
            ),
            Some(row) => {
                let active: bool = row.get(1);
                let retained = row.get::<_, i64>(2).max(0) as u64;
                let mut s = grade(retained, t.slot_warn, t.slot_fail);
                if !active && s == Status::Ok {
                    s = Status::Warn;
                }
                let mut c = check(
                    "postgres",
                    format!("slot {slot}"),
                    s,
                    format!(
                        "{}, retains {} of WAL",
                        if active { "active" } else { "inactive" },
                        human_bytes(retained)
                    ),
                )
                .threshold(threshold.clone());
                if s != Status::Ok {
                    c.hint = Some(if active {
                        "the slot's position lags: a behind connector, or a quiet database while \
                         others write WAL (set the connector's `heartbeat.action.query`)"
                            .into()
                    } else {
                        "no connector reads it: resume or restart the connector".into()
                    });
                }
                checks.push(c);
            }
        }
    }
    for row in &rows {
        let name: String = row.get(0);
        let active: bool = row.get(1);
        if active || Some(&name) == pipeline.slot.as_ref() || !pipeline.connect_up {
            continue;
        }
        if pipeline.claimed_slots.contains(&name) {
            continue;
        }
        let retained = row.get::<_, i64>(2).max(0) as u64;
        let s = grade(retained, t.slot_warn, t.slot_fail).max(Status::Warn);
        checks.push(
            check(
                "postgres",
                format!("orphaned slot {name}"),
                s,
                format!(
                    "inactive, no connector uses it, retains {}",
                    human_bytes(retained)
                ),
            )
            .threshold(threshold.clone())
            .hint(format!(
                "it keeps WAL until the disk fills: `SELECT pg_drop_replication_slot('{name}')` \
                 if nothing needs it"
            )),
        );
    }
    checks
}

fn kafka_checks(config: &Config, prefix: &str, t: Thresholds) -> Vec<Check> {
    let mut checks = Vec::new();
    let kafka = Kafka::new(&config.kafka);
    let session = match kafka.open_group(&config.load.group) {
        Ok(s) => s,
        Err(e) => return vec![Check::unreachable("kafka", &e)],
    };
    let topics = match session.topics() {
        Ok(t) => t,
        Err(e) => return vec![Check::unreachable("kafka", &e)],
    };
    checks.push(check(
        "kafka",
        "reachable",
        Status::Ok,
        config.kafka.brokers.clone(),
    ));
    let change: Vec<_> = topics
        .iter()
        .filter(|t| table_of_topic(prefix, &t.name).is_some())
        .cloned()
        .collect();
    if change.is_empty() {
        checks.push(
            check(
                "kafka",
                "change topics",
                Status::Fail,
                format!("none with prefix `{prefix}`"),
            )
            .hint("the connector creates them once it runs; `cdcctl connector status`"),
        );
    } else {
        checks.push(check(
            "kafka",
            "change topics",
            Status::Ok,
            format!("{} with prefix `{prefix}`", change.len()),
        ));
        match session.positions(&change) {
            Ok(positions) => {
                let threshold = format!("warn {}, fail {}", t.lag_warn, t.lag_fail);
                let mut total = 0;
                // One row per partition (named `topic/partition` when a topic has several).
                for p in &positions {
                    let lag = p.lag();
                    total += lag;
                    let several = change
                        .iter()
                        .any(|t| t.name == p.topic && t.partitions.len() > 1);
                    let name = if several {
                        format!("lag {}/{}", p.topic, p.partition)
                    } else {
                        format!("lag {}", p.topic)
                    };
                    checks.push(
                        check(
                            "kafka",
                            name,
                            grade(lag, t.lag_warn, t.lag_fail),
                            format!("{lag} messages"),
                        )
                        .threshold(threshold.clone()),
                    );
                }
                let mut c = check(
                    "kafka",
                    format!("lag of group {}", config.load.group),
                    grade(total, t.lag_warn, t.lag_fail),
                    format!("{total} messages"),
                )
                .threshold(threshold);
                if c.status != Status::Ok {
                    c.hint = Some("is the loader running? `cdcctl load`".into());
                }
                checks.push(c);
            }
            Err(e) => checks.push(check(
                "kafka",
                "lag",
                Status::Fail,
                crate::error::one_line(&e),
            )),
        }
    }
    let dlq = crate::cdc::dlq::default_topic(prefix);
    if let Some(info) = topics.iter().find(|t| t.name == dlq) {
        let pending = kafka
            .open_group("cdcctl-replay-dlq")
            .and_then(|s| s.positions(std::slice::from_ref(info)));
        match pending {
            Ok(positions) => {
                let n: i64 = positions.iter().map(|p| p.lag()).sum();
                let s = if n > 0 { Status::Warn } else { Status::Ok };
                let mut c = check(
                    "kafka",
                    format!("dead letters {dlq}"),
                    s,
                    format!("{n} pending"),
                )
                .threshold("0");
                c.count = Some(n);
                if n > 0 {
                    c.hint = Some("`cdcctl replay-dlq` lists them".into());
                }
                checks.push(c);
            }
            Err(e) => checks.push(check(
                "kafka",
                "dead letters",
                Status::Fail,
                crate::error::one_line(&e),
            )),
        }
    }
    checks
}

fn warehouse_checks(config: &Config, t: Thresholds) -> Vec<Check> {
    let threshold = format!(
        "warn {} s, fail {} s",
        t.fresh_warn.as_secs(),
        t.fresh_fail.as_secs()
    );
    let ages = match config.load.sink.as_str() {
        "snowflake" => snowflake_ages(config),
        _ => duckdb_ages(config),
    };
    let ages = match ages {
        Ok(Some(ages)) => ages,
        Ok(None) => {
            return vec![check(
                "warehouse",
                "reachable",
                Status::Ok,
                "in use by a running loader (freshness not readable meanwhile)",
            )];
        }
        Err(e) => return vec![Check::unreachable("warehouse", &e)],
    };
    let mut checks = vec![check(
        "warehouse",
        "reachable",
        Status::Ok,
        config.load.sink.clone(),
    )];
    if ages.is_empty() {
        checks.push(
            check("warehouse", "tables", Status::Warn, "no loaded table yet")
                .hint("run `cdcctl load`"),
        );
    }
    for (table, age) in ages {
        let s = grade(age, t.fresh_warn, t.fresh_fail);
        let mut c = check(
            "warehouse",
            format!("freshness {table}"),
            s,
            format!("last load {} s ago", age.as_secs()),
        )
        .threshold(threshold.clone());
        if s != Status::Ok {
            c.hint =
                Some("nothing loaded lately: is the loader running, is the source quiet?".into());
        }
        checks.push(c);
    }
    checks
}

/// Per loaded DuckDB table, the time since its last load; `None` when a loader holds the file.
fn duckdb_ages(config: &Config) -> Result<Option<Vec<(String, Duration)>>> {
    let path = &config.duckdb.path;
    if !path.exists() {
        anyhow::bail!(
            "the DuckDB file `{}` does not exist (nothing loaded yet?)",
            path.display()
        );
    }
    let conn = match duckdb::Connection::open_with_flags(
        path,
        duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly)?,
    ) {
        Ok(c) => c,
        Err(e) if e.to_string().contains("lock") => return Ok(None),
        Err(e) => return Err(e).context("cannot open the DuckDB file"),
    };
    let tables: Vec<(String, String)> = conn
        .prepare(&crate::cdc::schema::loaded_tables_sql(
            crate::cdc::schema::Dialect::DuckDb,
        ))
        .context("cannot list the loaded tables")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()
        .context("cannot list the loaded tables")?;
    let mut ages = Vec::new();
    for (schema, table) in tables {
        let q = |s: &str| crate::cdc::schema::quote_ident(crate::cdc::schema::Dialect::DuckDb, s);
        // epoch_us of a TIMESTAMPTZ needs no ICU (which the bundled DuckDB lacks).
        let last: Option<i64> = conn
            .query_row(
                &format!(
                    "SELECT max(epoch_us(_cdc_processed_at)) FROM {}.{}",
                    q(&schema),
                    q(&table)
                ),
                [],
                |r| r.get(0),
            )
            .with_context(|| format!("cannot read when {schema}.{table} was last loaded"))?;
        if let Some(last) = last {
            let age_us = (chrono::Utc::now().timestamp_micros() - last).max(0);
            ages.push((
                format!("{schema}.{table}"),
                Duration::from_micros(age_us as u64),
            ));
        }
    }
    Ok(Some(ages))
}

/// Per loaded Snowflake table, the time since its last load.
fn snowflake_ages(config: &Config) -> Result<Option<Vec<(String, Duration)>>> {
    use crate::clients::snowflake::{Retry, Snowflake};
    let runtime = tokio::runtime::Handle::current();
    let sf = Snowflake::new(&config.snowflake)?;
    runtime.block_on(async {
        let tables = sf
            .query(
                &crate::cdc::schema::loaded_tables_sql(crate::cdc::schema::Dialect::Snowflake),
                &[],
                Retry::Idempotent,
            )
            .await?;
        let mut ages = Vec::new();
        for row in &tables.rows {
            let (Some(schema), Some(table)) = (row[0].clone(), row[1].clone()) else {
                continue;
            };
            let q = |s: &str| crate::cdc::schema::quote_ident(crate::cdc::schema::Dialect::DuckDb, s);
            let r = sf
                .query(
                    &format!(
                        "SELECT DATEDIFF('second', max(\"_CDC_PROCESSED_AT\"), CURRENT_TIMESTAMP()) \
                         FROM {}.{}",
                        q(&schema),
                        q(&table)
                    ),
                    &[],
                    Retry::Idempotent,
                )
                .await?;
            if let Some(secs) = r.scalar().and_then(|s| s.parse::<f64>().ok()) {
                ages.push((format!("{schema}.{table}"), Duration::from_secs_f64(secs.max(0.0))));
            }
        }
        sf.logout().await;
        Ok(Some(ages))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn included_tables_are_read_from_names_not_patterns() {
        let t = included_tables("public.users, public\\.orders,commerce.*,x");
        let names: Vec<String> = t
            .iter()
            .map(|t| format!("{}.{}", t.schema, t.name))
            .collect();
        assert_eq!(names, ["public.users", "public.orders"]);
    }

    #[test]
    fn sizes_and_grades() {
        assert_eq!(parse_bytes("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512mb").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("1XB").is_err());
        assert!(parse_bytes("GB").is_err());
        assert_eq!(human_bytes(3 << 20), "3.0 MB");
        assert_eq!(grade(5, 10, 20), Status::Ok);
        assert_eq!(grade(10, 10, 20), Status::Warn);
        assert_eq!(grade(25, 10, 20), Status::Fail);
        assert!(Status::Fail > Status::Warn && Status::Warn > Status::Ok);
        assert_eq!(first_line("org.Foo: boom\n\tat x"), "org.Foo: boom");
    }
}
