//! `cdcctl load`: keep warehouse tables equal to the source tables.
//!
//! 1. Resolve the topics (like `tail`: tables, `--topic`, `--pattern`, or every table topic of
//!    the prefix) and open the consumer group: each partition starts at the group's committed
//!    offset, or `--from` where there is none.
//! 2. Read and decode in parallel; assemble the events in read order into a micro-batch until
//!    `--batch-size` events, `--flush-interval`, or (after `--linger`) the topics have been
//!    read to their end (`cdc::batch` compacts it per key).
//! 3. The sink applies the batch in one transaction (`clients::duckdb`); the offsets of applied
//!    batches are committed every `--commit-interval` and at the end (never before their batch
//!    is in the warehouse: a replay after a crash changes nothing). The next batch is assembled meanwhile; at most one
//!    waits, so memory stays bounded (back-pressure stops the reading).
//! 4. Until every partition is caught up (`--until-caught-up`) or Ctrl-C / SIGTERM: then the
//!    batch in hand is applied and committed, and the exit code is 0.
//!
//! A message that cannot be decoded stops the loader after the events before it are applied and
//! committed: its offset is never committed, so nothing is lost (exit 1, with its coordinates).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cdc::batch::TableId;
use crate::cdc::schema::{TableName, TableOptions};
use crate::cdc::topics::Selection;
use crate::cli::{LoadArgs, LoadFrom};
use crate::config::{Config, parse_duration};
use crate::error::{CliError, Outcome};
use crate::output::Output;

pub(crate) mod isolate;
mod metrics;
mod pipeline;

/// Runs `cdcctl load`.
pub async fn run(args: &LoadArgs, config: &Config, out: &Output) -> Result<Outcome> {
    let plan = Plan::from_args(args, config)?;
    let stop = Arc::new(AtomicBool::new(false));
    let signals = tokio::spawn(wait_for_signal(stop.clone()));
    let out = out.clone();
    let config = config.clone();
    let result = tokio::task::spawn_blocking(move || pipeline::load(plan, &config, &out, &stop))
        .await
        .context("the loader thread failed")?;
    signals.abort();
    result
}

/// Sets `stop` on the first Ctrl-C or SIGTERM; the loader then finishes its batch and exits.
/// A second one exits at once: nothing that did not land is committed (offsets are only ever
/// committed after their batch), so the batch in hand is read again next time.
async fn wait_for_signal(stop: Arc<AtomicBool>) {
    if !signal().await {
        return;
    }
    stop.store(true, Ordering::Relaxed);
    if signal().await {
        eprintln!("interrupted again: exiting now; the batch in hand is read again next time");
        std::process::exit(i32::from(crate::error::EXIT_INTERRUPTED));
    }
}

/// Waits for Ctrl-C or SIGTERM; false when they cannot be listened to.
async fn signal() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return false;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        true
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.is_ok()
    }
}

/// Everything `load` was asked to do, checked.
#[derive(Debug)]
pub(crate) struct Plan {
    selection: Selection,
    group: String,
    otherwise_beginning: bool,
    flush: pipeline::Flush,
    until_caught_up: bool,
    sink: SinkChoice,
    /// The dead-letter topic; `None` with `--no-dlq`.
    dlq_topic: Option<String>,
    /// The runtime the blocking loader drives async clients on (Snowflake, Kafka admin).
    runtime: tokio::runtime::Handle,
    /// Retries of a batch the warehouse could not take.
    backoff: crate::retry::Backoff,
    /// Breaker threshold and open time.
    breaker: (u32, Duration),
    table_options: TableOptions,
    targets: Targets,
    metrics_file: Option<PathBuf>,
    metrics_interval: Duration,
    metrics_addr: Option<String>,
    commit_interval: Duration,
}

impl Plan {
    fn from_args(args: &LoadArgs, config: &Config) -> Result<Plan, CliError> {
        let sink = match config.load.sink.as_str() {
            "snowflake" => SinkChoice::Snowflake,
            _ => SinkChoice::DuckDb {
                path: config.duckdb.path.clone(),
                memory_limit: args.memory_limit.clone(),
            },
        };
        let metrics_interval =
            parse_duration(&args.metrics_interval).map_err(|e| CliError::Usage {
                message: format!("--metrics-interval `{}`: {e}", args.metrics_interval),
                hint: Some("for example `5s` or `500ms`".into()),
            })?;
        let duration = |flag: &str, raw: &str| {
            parse_duration(raw).map_err(|e| CliError::Usage {
                message: format!("{flag} `{raw}`: {e}"),
                hint: Some("for example `500ms`, `30s` or `15m`".into()),
            })
        };
        let backoff = crate::retry::Backoff {
            base: duration("--retry-base", &args.retry_base)?.max(Duration::from_millis(1)),
            cap: duration("--retry-cap", &args.retry_cap)?,
            max_elapsed: duration("--retry-max-elapsed", &args.retry_max_elapsed)?,
        };
        let breaker = (
            args.breaker_threshold,
            duration("--breaker-open", &args.breaker_open)?,
        );
        let commit_interval =
            parse_duration(&args.commit_interval).map_err(|e| CliError::Usage {
                message: format!("--commit-interval `{}`: {e}", args.commit_interval),
                hint: Some("for example `5s`, or `0s` to commit after every batch".into()),
            })?;
        Ok(Plan {
            selection: Selection::new(&args.tables, &args.topic, args.pattern.as_deref())?,
            group: config.load.group.clone(),
            otherwise_beginning: args.from == LoadFrom::Beginning,
            flush: pipeline::Flush {
                batch_size: config.load.batch_size.max(1),
                interval: config.load.flush_interval.max(Duration::from_millis(1)),
                linger: duration("--linger", &args.linger)?,
            },
            until_caught_up: args.until_caught_up,
            sink,
            backoff,
            breaker,
            runtime: tokio::runtime::Handle::try_current().map_err(|_| CliError::Usage {
                message: "the loader needs the async runtime".into(),
                hint: None,
            })?,
            dlq_topic: (!args.no_dlq).then(|| {
                args.dlq_topic
                    .clone()
                    .unwrap_or_else(|| crate::cdc::dlq::default_topic(&config.kafka.topic_prefix))
            }),
            table_options: TableOptions {
                soft_delete: args.soft_delete,
                primary_key: args.primary_key,
                history: args.history,
                change_log: false,
            },
            targets: Targets::parse(args.target_schema.as_deref(), &args.table_map)?,
            metrics_file: args.metrics_file.clone(),
            metrics_interval: metrics_interval.max(Duration::from_millis(100)),
            metrics_addr: args.metrics_addr.clone(),
            commit_interval,
        })
    }
}

/// Where `load` writes.
#[derive(Debug)]
pub(crate) enum SinkChoice {
    /// A DuckDB file, with DuckDB's memory limit.
    DuckDb { path: PathBuf, memory_limit: String },
    /// Snowflake (`config.snowflake`).
    Snowflake,
}

/// Opens the sink `choice` (logs in to Snowflake, locks the DuckDB file).
pub(crate) fn open_sink(
    choice: SinkChoice,
    config: &Config,
    opts: TableOptions,
    runtime: &tokio::runtime::Handle,
) -> Result<Box<dyn crate::clients::warehouse::Sink>> {
    Ok(match choice {
        SinkChoice::DuckDb { path, memory_limit } => Box::new(
            crate::clients::duckdb::DuckDb::open(&path, opts, Some(&memory_limit))?,
        ),
        SinkChoice::Snowflake => Box::new(crate::clients::snowflake_sink::SnowflakeSink::open(
            &config.snowflake,
            opts,
            runtime.clone(),
        )?),
    })
}

/// Applies a compacted batch to the targets of its tables (one [`Sink::apply`]).
///
/// [`Sink::apply`]: crate::clients::warehouse::Sink::apply
pub(crate) fn apply_compacted(
    db: &mut dyn crate::clients::warehouse::Sink,
    targets: &mut Targets,
    compacted: &crate::cdc::batch::Compacted,
) -> Result<crate::clients::warehouse::Applied> {
    let names = compacted
        .tables
        .iter()
        .map(|plan| targets.target(&plan.table))
        .collect::<Result<Vec<_>, _>>()?;
    let writes: Vec<crate::clients::warehouse::TableWrite<'_>> = compacted
        .tables
        .iter()
        .zip(&names)
        .map(|(plan, target)| crate::clients::warehouse::TableWrite { target, plan })
        .collect();
    db.apply(&writes)
}

/// Source table → target table: `--table-map` first, then `--target-schema` (or the source
/// table's own schema) with the source table's name.
#[derive(Debug, Default)]
pub(crate) struct Targets {
    schema: Option<String>,
    map: Vec<(String, String, TableName)>,
    /// Targets handed out so far, case-folded (DuckDB matches names case-insensitively and
    /// Snowflake upper-cases them), with their source: two sources never share a target.
    given: HashMap<TableName, (TableId, TableName)>,
}

impl Targets {
    pub(crate) fn parse(schema: Option<&str>, map: &[String]) -> Result<Targets, CliError> {
        let usage = |raw: &str, why: &str| CliError::Usage {
            message: format!("--table-map `{raw}`: {why}"),
            hint: Some(
                "write SOURCE=TARGET, e.g. `public.users=app_users` or \
                        `commerce.users=shop.customers`"
                    .into(),
            ),
        };
        let mut parsed = Vec::with_capacity(map.len());
        for raw in map {
            let (source, target) = raw.split_once('=').ok_or_else(|| usage(raw, "no `=`"))?;
            let (source_schema, source_table) = split_name(source.trim());
            let (target_schema, target_table) = split_name(target.trim());
            if source_table.is_empty() || target_table.is_empty() {
                return Err(usage(raw, "a table name is empty"));
            }
            let target = TableName {
                schema: target_schema
                    .map(str::to_owned)
                    .or_else(|| schema.map(str::to_owned))
                    .or_else(|| Some(source_schema.unwrap_or("public").to_owned())),
                table: target_table.to_owned(),
            };
            parsed.push((
                source_schema.unwrap_or("public").to_owned(),
                source_table.to_owned(),
                target,
            ));
        }
        Ok(Targets {
            schema: schema.map(str::to_owned),
            map: parsed,
            given: HashMap::new(),
        })
    }

    /// The target of a source table; fails when another source table already goes there.
    pub(crate) fn target(&mut self, table: &TableId) -> Result<TableName, CliError> {
        let source_schema = table.schema.as_deref();
        let mapped = self.map.iter().find(|(schema, name, _)| {
            name == &*table.name && Some(schema.as_str()) == source_schema
        });
        let target = match mapped {
            Some((_, _, target)) => target.clone(),
            None => TableName {
                schema: self
                    .schema
                    .clone()
                    .or_else(|| source_schema.map(str::to_owned)),
                table: table.name.to_string(),
            },
        };
        let key = TableName {
            schema: target.schema.as_deref().map(str::to_ascii_uppercase),
            table: target.table.to_ascii_uppercase(),
        };
        match self.given.get(&key).map(|(source, _)| source) {
            Some(other) if other != table => Err(CliError::Usage {
                message: format!(
                    "source tables {other} and {table} would both load into {}",
                    target.sql(crate::cdc::schema::Dialect::DuckDb)
                ),
                hint: Some(format!(
                    "give one of them another target: `--table-map {table}=OTHER_NAME`"
                )),
            }),
            Some(_) => Ok(target),
            None => {
                self.given.insert(key, (table.clone(), target.clone()));
                Ok(target)
            }
        }
    }
}

impl Targets {
    /// Every (source, target) pair handed out, by source.
    fn pairs(&self) -> Vec<(TableId, TableName)> {
        let mut pairs: Vec<(TableId, TableName)> = self
            .given
            .values()
            .map(|(source, target)| (source.clone(), target.clone()))
            .collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs
    }
}

fn split_name(name: &str) -> (Option<&str>, &str) {
    match name.split_once('.') {
        Some((schema, table)) => (Some(schema), table),
        None => (None, name),
    }
}

/// The summary printed at exit.
#[derive(Debug, Serialize)]
struct Summary {
    /// Where the rows went: the DuckDB file, or the Snowflake database and endpoint.
    warehouse: String,
    group: String,
    /// Every table this run wrote to, with its row count after the run.
    targets: Vec<TargetRows>,
    #[serde(flatten)]
    metrics: metrics::Snapshot,
}

#[derive(Debug, Serialize)]
struct TargetRows {
    source: String,
    target: String,
    /// Change events of the source table loaded by this run.
    events: u64,
    /// Rows in the target table now (soft-deleted ones included); `None` before it exists.
    rows: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(schema: &str, name: &str) -> TableId {
        TableId {
            schema: Some(schema.into()),
            name: name.into(),
        }
    }

    #[test]
    fn targets_follow_the_source_schema_unless_mapped() {
        let mut t = Targets::parse(None, &["commerce.users=shop.customers".into()]).unwrap();
        assert_eq!(
            t.target(&id("public", "users")).unwrap(),
            TableName::qualified("public", "users")
        );
        assert_eq!(
            t.target(&id("commerce", "users")).unwrap(),
            TableName::qualified("shop", "customers")
        );
    }

    #[test]
    fn one_target_schema_makes_same_named_tables_collide_with_a_hint() {
        let mut t = Targets::parse(Some("raw"), &[]).unwrap();
        assert_eq!(
            t.target(&id("public", "users")).unwrap(),
            TableName::qualified("raw", "users")
        );
        // The same source again is fine.
        assert!(t.target(&id("public", "users")).is_ok());
        let err = t.target(&id("commerce", "users")).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::EXIT_USAGE);
        assert!(err.hint().unwrap().contains("--table-map commerce.users="));
    }

    #[test]
    fn names_differing_only_in_case_collide() {
        // DuckDB matches names case-insensitively, Snowflake upper-cases them: one table.
        let mut t = Targets::parse(None, &["public.Users=people".into()]).unwrap();
        assert!(t.target(&id("public", "PEOPLE")).is_ok());
        let err = t.target(&id("public", "Users")).unwrap_err();
        assert!(err.to_string().contains("would both load into"), "{err}");
    }

    #[test]
    fn a_table_map_without_equals_is_a_usage_error() {
        let err = Targets::parse(None, &["users".into()]).unwrap_err();
        assert!(err.to_string().contains("no `=`"), "{err}");
        assert!(Targets::parse(None, &["users=".into()]).is_err());
    }

    #[test]
    fn an_unqualified_map_source_means_public() {
        let mut t = Targets::parse(Some("raw"), &["users=app_users".into()]).unwrap();
        assert_eq!(
            t.target(&id("public", "users")).unwrap(),
            TableName::qualified("raw", "app_users")
        );
    }
}
