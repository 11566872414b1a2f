//! The verbs of `cdcctl connector`: `list`, `status`, `restart`, `pause`, `resume` and
//! `delete` (with `--drop-slot`: stop, reset offsets, delete, wait for the slot to be released,
//! drop it; with `--drop-publication`: drop the publication no other connector uses).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use tokio_postgres::Client;

use super::spec::{self, format_lsn};
use super::wait::{self, Goal, StateReport, WaitOutcome, WaitReport};
use super::{connect_client, usage};
use crate::cli::{ConnectorDeleteArgs, ConnectorVerb, WaitArgs};
use crate::clients::connect::{ConnectClient, ConnectError, ConnectorConfig, Restart};
use crate::clients::postgres::{Postgres, quote_ident};
use crate::commands::setup_source::human_bytes;
use crate::config::{Config, PostgresConfig};
use crate::error::{CliError, Outcome};
use crate::output::Output;

/// How long `delete --drop-slot` waits for the worker to stop the connector and release the
/// slot.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one verb.
pub async fn run(verb: &ConnectorVerb, config: &Config, out: &Output) -> Result<Outcome> {
    let connect = connect_client(config)?;
    let name = config.connect.connector.clone();
    match verb {
        ConnectorVerb::List(_) => list(&connect, out).await,
        ConnectorVerb::Status(_) => status(&connect, &name, out).await,
        ConnectorVerb::Restart(a) => {
            let options = Restart {
                include_tasks: true,
                only_failed: !a.all,
            };
            let restarted = connect
                .restart(&name, options)
                .await
                .with_context(|| format!("cannot restart connector `{name}`"))?;
            let what = if a.all {
                "the connector and every task".to_string()
            } else {
                match restarted.as_ref().map(|s| {
                    s.tasks
                        .iter()
                        .filter(|t| t.state.as_str() == "RESTARTING")
                        .count()
                }) {
                    Some(0) => "nothing: no task had failed".to_string(),
                    Some(n) => format!("{n} failed task{}", if n == 1 { "" } else { "s" }),
                    None => "the connector".to_string(),
                }
            };
            changed(
                &connect,
                &name,
                "restart",
                what,
                Goal::Running,
                &a.wait,
                out,
            )
            .await
        }
        ConnectorVerb::Pause(a) => {
            connect
                .pause(&name)
                .await
                .with_context(|| format!("cannot pause connector `{name}`"))?;
            let what = "its slot retains WAL until it resumes".to_string();
            changed(&connect, &name, "pause", what, Goal::Paused, &a.wait, out).await
        }
        ConnectorVerb::Resume(a) => {
            connect
                .resume(&name)
                .await
                .with_context(|| format!("cannot resume connector `{name}`"))?;
            changed(
                &connect,
                &name,
                "resume",
                String::new(),
                Goal::Running,
                &a.wait,
                out,
            )
            .await
        }
        ConnectorVerb::Delete(a) => delete(&connect, &name, a, config, out).await,
    }
}

/// One connector of `cdcctl connector list -o json`.
#[derive(Debug, Serialize)]
pub struct ListedConnector {
    /// Name.
    pub name: String,
    /// Connector state (null when the worker has none yet).
    pub state: Option<String>,
    /// Tasks RUNNING.
    pub tasks_running: usize,
    /// Tasks in all.
    pub tasks_total: usize,
    /// `source` or `sink`.
    pub kind: Option<String>,
    /// `connector.class`.
    pub class: Option<String>,
    /// `topic.prefix`.
    pub topic_prefix: Option<String>,
    /// `slot.name`.
    pub slot: Option<String>,
    /// `table.include.list`.
    pub tables: Option<String>,
}

/// `cdcctl connector list -o json`.
#[derive(Debug, Serialize)]
pub struct ListReport {
    /// Kafka Connect URL.
    pub connect_url: String,
    /// Every connector, by name.
    pub connectors: Vec<ListedConnector>,
}

async fn list(connect: &ConnectClient, out: &Output) -> Result<Outcome> {
    let all = connect
        .connectors_expanded()
        .await
        .context("cannot list connectors")?;
    let connectors: Vec<ListedConnector> = all
        .into_iter()
        .map(|(name, c)| {
            let config = c.info.as_ref().map(|i| &i.config);
            let get = |k: &str| config.and_then(|c| c.get(k)).cloned();
            let tasks = c.status.as_ref().map(|s| s.tasks.as_slice()).unwrap_or(&[]);
            ListedConnector {
                state: c.status.as_ref().map(|s| s.connector.state.to_string()),
                tasks_running: tasks
                    .iter()
                    .filter(|t| t.state.as_str() == "RUNNING")
                    .count(),
                tasks_total: tasks.len(),
                kind: c
                    .status
                    .as_ref()
                    .and_then(|s| s.kind.clone())
                    .or_else(|| c.info.as_ref().and_then(|i| i.kind.clone())),
                class: get("connector.class"),
                topic_prefix: get("topic.prefix"),
                slot: get("slot.name"),
                tables: get("table.include.list"),
                name,
            }
        })
        .collect();
    let report = ListReport {
        connect_url: connect.endpoint().to_string(),
        connectors,
    };
    out.report(&report, |w| {
        if report.connectors.is_empty() {
            return writeln!(w, "no connectors on {}", report.connect_url);
        }
        let mut table = out.table(["NAME", "STATE", "TASKS", "TOPIC PREFIX", "SLOT", "TABLES"]);
        for c in &report.connectors {
            table.add_row([
                c.name.clone(),
                c.state.clone().unwrap_or_else(|| "-".into()),
                format!("{}/{} running", c.tasks_running, c.tasks_total),
                c.topic_prefix.clone().unwrap_or_default(),
                c.slot.clone().unwrap_or_default(),
                c.tables.clone().unwrap_or_default(),
            ]);
        }
        write!(w, "{}", out.render_table(&table))
    })
    .context("cannot write the report")?;
    Ok(Outcome::Ok)
}

/// `cdcctl connector status -o json`.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// Connector name.
    pub connector: String,
    /// `source` or `sink`.
    pub kind: Option<String>,
    /// True when the connector and every task are RUNNING (exit 0; else exit 1).
    pub running: bool,
    /// The state of the connector and each task.
    pub state: StateReport,
    /// The source offsets Connect stored: per source partition (Debezium: `{"server":
    /// <topic.prefix>}`), the offset (Debezium: `lsn`, `txId`, `ts_usec`, snapshot flags).
    pub offsets: Vec<serde_json::Value>,
}

async fn status(connect: &ConnectClient, name: &str, out: &Output) -> Result<Outcome> {
    let status = connect.status(name).await.map_err(|e| not_found(e, name))?;
    let offsets = match connect.offsets(name).await {
        Ok(o) => o
            .offsets
            .into_iter()
            .map(|p| serde_json::json!({"partition": p.partition, "offset": p.offset}))
            .collect(),
        // Offsets are informative; a worker that cannot give them does not fail the status.
        Err(e) => {
            tracing::info!("no offsets for `{name}`: {e}");
            Vec::new()
        }
    };
    let state = StateReport::new(&status);
    let report = StatusReport {
        connector: name.to_string(),
        kind: status.kind.clone(),
        running: state.is_running(),
        state,
        offsets,
    };
    out.report(&report, |w| {
        report.state.write(out, name, w)?;
        for o in &report.offsets {
            if let Some(line) = offset_line(&o["offset"]) {
                writeln!(w, "source offset: {line}")?;
            }
        }
        Ok(())
    })
    .context("cannot write the report")?;
    Ok(if report.running {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}

/// `lsn 0/1D47358, snapshot completed` from a Debezium Postgres offset.
fn offset_line(offset: &serde_json::Value) -> Option<String> {
    let lsn = offset.get("lsn")?.as_u64()?;
    let mut line = format!("lsn {}", format_lsn(lsn));
    if offset.get("snapshot_completed").and_then(|v| v.as_bool()) == Some(true)
        || offset.get("last_snapshot_record").and_then(|v| v.as_bool()) == Some(true)
    {
        line.push_str(", snapshot completed");
    } else if offset.get("snapshot").is_some() {
        line.push_str(", snapshot in progress");
    }
    Some(line)
}

/// A 404 from the worker is a usage error (exit 2) naming the connector and how to find the
/// right one.
fn not_found(e: ConnectError, name: &str) -> anyhow::Error {
    if let ConnectError::Api {
        status: 404,
        message,
        ..
    } = &e
    {
        anyhow::Error::new(CliError::Usage {
            message: format!("there is no connector `{name}` (Kafka Connect: {message})"),
            hint: Some("`cdcctl connector list` shows the connectors".into()),
        })
    } else {
        anyhow::Error::new(e).context(format!("cannot read the status of connector `{name}`"))
    }
}

/// `cdcctl connector restart|pause|resume -o json`.
#[derive(Debug, Serialize)]
pub struct ChangeReport {
    /// Connector name.
    pub connector: String,
    /// `restart`, `pause` or `resume`.
    pub action: &'static str,
    /// What it touched, in words.
    pub detail: String,
    /// How `--wait` ended; null without it.
    pub wait: Option<WaitReport>,
    /// The state after the wait, or right after the request without it.
    pub state: Option<StateReport>,
}

async fn changed(
    connect: &ConnectClient,
    name: &str,
    action: &'static str,
    detail: String,
    goal: Goal,
    wait_args: &WaitArgs,
    out: &Output,
) -> Result<Outcome> {
    let (waited, state) = if wait_args.enabled(out.stdout_is_terminal()) {
        let fresh = wait::Fresh {
            expect: BTreeMap::new(),
            grace: wait::GRACE,
        };
        let (w, s) = wait::wait_for(connect, name, goal, wait_args.timeout, out, &fresh).await?;
        (Some(w), s)
    } else {
        let s = connect.status(name).await.map_err(|e| not_found(e, name))?;
        (None, Some(StateReport::new(&s)))
    };
    let outcome = match &waited {
        Some(w) if w.outcome != WaitOutcome::Reached => Outcome::Failed,
        _ => Outcome::Ok,
    };
    let report = ChangeReport {
        connector: name.to_string(),
        action,
        detail,
        wait: waited,
        state,
    };
    out.report(&report, |w| {
        let past = match action {
            "restart" => "restarted",
            "pause" => "paused",
            _ => "resumed",
        };
        if report.detail.is_empty() {
            writeln!(w, "{past} connector {name}")?;
        } else {
            writeln!(w, "{past} connector {name}: {}", report.detail)?;
        }
        if let Some(waited) = &report.wait {
            writeln!(w, "{}", wait::wait_line(waited, report.state.as_ref()))?;
        }
        if let Some(state) = &report.state {
            state.write(out, name, w)?;
        }
        Ok(())
    })
    .context("cannot write the report")?;
    Ok(outcome)
}

/// What happened to one object in `delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteStatus {
    /// Offsets reset.
    Reset,
    /// The connector was deleted.
    Deleted,
    /// The slot or publication was dropped.
    Dropped,
    /// There was nothing to delete or drop.
    Absent,
    /// Left alone, see the detail.
    Kept,
}

/// One row of `delete`.
#[derive(Debug, Serialize)]
pub struct DeleteAction {
    /// `connector`, `offsets`, `slot` or `publication`.
    pub object: &'static str,
    /// Its name.
    pub name: String,
    /// What happened.
    pub status: DeleteStatus,
    /// More about it (WAL the slot retained, why something was kept).
    pub detail: String,
}

/// `cdcctl connector delete -o json`.
#[derive(Debug, Serialize)]
pub struct DeleteReport {
    /// Connector name.
    pub connector: String,
    /// Every step, in order.
    pub actions: Vec<DeleteAction>,
}

async fn delete(
    connect: &ConnectClient,
    name: &str,
    args: &ConnectorDeleteArgs,
    config: &Config,
    out: &Output,
) -> Result<Outcome> {
    let current = connect
        .find_config(name)
        .await
        .with_context(|| format!("cannot read connector `{name}`"))?;
    let get = |k: &str| current.as_ref().and_then(|c| c.get(k)).cloned();
    // Without the connector its slot is unknown: the name cdcctl would have derived, so that a
    // delete interrupted after the connector went can be re-run.
    let slot = get("slot.name").unwrap_or_else(|| spec::derived_name(name));
    let publication = get("publication.name");
    let mut what = Vec::new();
    if current.is_some() {
        what.push(format!("connector `{name}`"));
    }
    if args.drop_slot {
        what.push(format!("slot `{slot}`"));
    }
    if let (true, Some(p)) = (args.drop_publication, &publication) {
        what.push(format!("publication `{p}`"));
    }
    if current.is_none() && !args.drop_slot {
        let report = DeleteReport {
            connector: name.to_string(),
            actions: vec![DeleteAction {
                object: "connector",
                name: name.to_string(),
                status: DeleteStatus::Absent,
                detail: "no such connector".into(),
            }],
        };
        print_delete(out, &report)?;
        return Ok(Outcome::Ok);
    }
    let verb = if current.is_some() { "delete" } else { "drop" };
    if !out.confirm(&format!("{verb} {}?", what.join(" and ")))? {
        return Err(usage(
            "delete cancelled; nothing was changed",
            "re-run and answer yes, or pass `--yes`",
        )
        .into());
    }

    let mut actions = Vec::new();
    match &current {
        Some(_) if args.drop_slot => {
            // Offsets point into the slot about to be dropped: reset them (the connector must
            // be STOPPED for that), so a connector of the same name starts with a snapshot.
            connect
                .stop(name)
                .await
                .with_context(|| format!("cannot stop connector `{name}`"))?;
            let (waited, _) = wait::wait_for(
                connect,
                name,
                Goal::Stopped,
                RELEASE_TIMEOUT,
                out,
                &wait::Fresh::default(),
            )
            .await?;
            if waited.outcome == WaitOutcome::Reached {
                let message = connect
                    .reset_offsets(name)
                    .await
                    .with_context(|| format!("cannot reset the offsets of connector `{name}`"))?;
                tracing::info!("{message}");
                actions.push(DeleteAction {
                    object: "offsets",
                    name: name.to_string(),
                    status: DeleteStatus::Reset,
                    detail: "a connector of this name starts with a new snapshot".into(),
                });
            } else {
                actions.push(DeleteAction {
                    object: "offsets",
                    name: name.to_string(),
                    status: DeleteStatus::Kept,
                    detail: format!(
                        "the connector did not stop within {} s",
                        RELEASE_TIMEOUT.as_secs()
                    ),
                });
            }
        }
        _ => {}
    }
    if current.is_some() {
        connect
            .delete(name)
            .await
            .with_context(|| format!("cannot delete connector `{name}`"))?;
        actions.push(DeleteAction {
            object: "connector",
            name: name.to_string(),
            status: DeleteStatus::Deleted,
            detail: String::new(),
        });
    } else {
        actions.push(DeleteAction {
            object: "connector",
            name: name.to_string(),
            status: DeleteStatus::Absent,
            detail: "no such connector".into(),
        });
    }

    if args.drop_slot || args.drop_publication {
        let pg_cfg = PostgresConfig {
            database: get("database.dbname").unwrap_or_else(|| config.postgres.database.clone()),
            ..config.postgres.clone()
        };
        if let Some(host) = get("database.hostname")
            && (host != pg_cfg.host
                || get("database.port").is_some_and(|p| p != pg_cfg.port.to_string()))
        {
            out.warn(&format!(
                "the connector read Postgres at `{host}`; cdcctl drops through `{}` (the \
                 profile's), which must be the same server",
                pg_cfg.redacted_url()
            ));
        }
        let pg = Postgres::connect(&pg_cfg).await?;
        let db = pg.client();
        if args.drop_slot {
            actions.push(drop_slot(db, &slot).await?);
        }
        if args.drop_publication {
            actions.push(match &publication {
                Some(p) => drop_publication(connect, db, name, p, current.as_ref()).await?,
                None => DeleteAction {
                    object: "publication",
                    name: String::new(),
                    status: DeleteStatus::Absent,
                    detail: "the connector named none".into(),
                },
            });
        }
    }
    let report = DeleteReport {
        connector: name.to_string(),
        actions,
    };
    print_delete(out, &report)?;
    Ok(Outcome::Ok)
}

/// Waits until no process holds the slot (the worker stops the task asynchronously), then drops
/// it, reporting the WAL it retained.
async fn drop_slot(db: &Client, slot: &str) -> Result<DeleteAction> {
    let started = Instant::now();
    loop {
        let row = db
            .query_opt(
                "SELECT active_pid, \
                        pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .context("cannot read replication slots")?;
        let Some(row) = row else {
            return Ok(DeleteAction {
                object: "slot",
                name: slot.to_string(),
                status: DeleteStatus::Absent,
                detail: "no such slot".into(),
            });
        };
        let pid: Option<i32> = row.get(0);
        let retained: Option<i64> = row.get(1);
        match pid {
            Some(pid) if started.elapsed() >= RELEASE_TIMEOUT => {
                return Err(usage(
                    format!(
                        "slot `{slot}` is still in use by the process with pid {pid} after {} s",
                        RELEASE_TIMEOUT.as_secs()
                    ),
                    "another connector or client reads it; stop it, then re-run with \
                     `--drop-slot`",
                )
                .into());
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            None => {
                // Bound parameter: the slot name is a value here, never SQL text.
                db.query_one("SELECT pg_drop_replication_slot($1)", &[&slot])
                    .await
                    .with_context(|| format!("cannot drop replication slot `{slot}`"))?;
                return Ok(DeleteAction {
                    object: "slot",
                    name: slot.to_string(),
                    status: DeleteStatus::Dropped,
                    detail: format!(
                        "was retaining {} of WAL",
                        human_bytes(retained.unwrap_or(0))
                    ),
                });
            }
        }
    }
}

/// Drops the publication unless another connector of the worker reads it in the same database.
async fn drop_publication(
    connect: &ConnectClient,
    db: &Client,
    name: &str,
    publication: &str,
    current: Option<&ConnectorConfig>,
) -> Result<DeleteAction> {
    let dbname = current.and_then(|c| c.get("database.dbname"));
    let others = connect
        .connectors_expanded()
        .await
        .context("cannot list connectors")?;
    let users: Vec<String> = others
        .into_iter()
        .filter(|(n, _)| n != name)
        .filter(|(_, c)| {
            c.info.as_ref().is_some_and(|i| {
                i.config.get("publication.name").map(String::as_str) == Some(publication)
                    && i.config.get("database.dbname") == dbname
            })
        })
        .map(|(n, _)| format!("`{n}`"))
        .collect();
    if !users.is_empty() {
        return Ok(DeleteAction {
            object: "publication",
            name: publication.to_string(),
            status: DeleteStatus::Kept,
            detail: format!("used by {}", users.join(", ")),
        });
    }
    let exists = db
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .context("cannot read publications")?
        .is_some();
    if !exists {
        return Ok(DeleteAction {
            object: "publication",
            name: publication.to_string(),
            status: DeleteStatus::Absent,
            detail: "no such publication".into(),
        });
    }
    db.batch_execute(&format!("DROP PUBLICATION {}", quote_ident(publication)))
        .await
        .with_context(|| format!("cannot drop publication `{publication}`"))?;
    Ok(DeleteAction {
        object: "publication",
        name: publication.to_string(),
        status: DeleteStatus::Dropped,
        detail: String::new(),
    })
}

fn print_delete(out: &Output, report: &DeleteReport) -> Result<()> {
    out.report(report, |w| {
        let mut table = out.table(["OBJECT", "NAME", "STATUS", "DETAIL"]);
        for a in &report.actions {
            let status = match a.status {
                DeleteStatus::Reset => "reset",
                DeleteStatus::Deleted => "deleted",
                DeleteStatus::Dropped => "dropped",
                DeleteStatus::Absent => "absent",
                DeleteStatus::Kept => "kept",
            };
            table.add_row([
                a.object.to_string(),
                a.name.clone(),
                status.to_string(),
                a.detail.clone(),
            ]);
        }
        write!(w, "{}", out.render_table(&table))
    })
    .context("cannot write the report")
}
