//! Waiting for a connector to reach a state after a change, with a spinner on a terminal, and
//! the state report (connector, tasks, trace summaries) every connector command prints.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::spec::trace_summary;
use crate::clients::connect::{ConnectClient, ConnectorStatus, State};
use crate::output::{Output, progress_style};

/// Time between two status polls.
const POLL: Duration = Duration::from_millis(400);
/// How long RUNNING must hold before the wait ends: a task that cannot start usually fails
/// within a second or two of saying RUNNING.
pub const SETTLE: Duration = Duration::from_secs(2);

/// The state to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Connector and at least one task RUNNING, for [`SETTLE`].
    Running,
    /// Connector and every task PAUSED.
    Paused,
    /// Connector STOPPED, no tasks.
    Stopped,
}

impl Goal {
    fn word(self) -> &'static str {
        match self {
            Goal::Running => "RUNNING",
            Goal::Paused => "PAUSED",
            Goal::Stopped => "STOPPED",
        }
    }

    fn reached(self, s: &ConnectorStatus) -> bool {
        match self {
            Goal::Running => s.is_running(),
            Goal::Paused => {
                s.connector.state == State::Paused
                    && s.tasks.iter().all(|t| t.state == State::Paused)
            }
            Goal::Stopped => s.connector.state == State::Stopped && s.tasks.is_empty(),
        }
    }
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitOutcome {
    /// The goal state was reached.
    Reached,
    /// The connector or a task FAILED.
    Failed,
    /// `--timeout` passed first.
    TimedOut,
}

/// A finished wait.
#[derive(Debug, Clone, Serialize)]
pub struct WaitReport {
    /// `reached`, `failed` or `timed_out`.
    pub outcome: WaitOutcome,
    /// The state waited for: `RUNNING`, `PAUSED` or `STOPPED`.
    pub goal: &'static str,
    /// How long it took, in milliseconds.
    pub waited_ms: u64,
    /// The `--timeout`, in milliseconds.
    pub timeout_ms: u64,
}

/// The state of a connector and its tasks, as printed (traces cut to their meaningful lines).
#[derive(Debug, Clone, Serialize)]
pub struct StateReport {
    /// Connector state: RUNNING, PAUSED, STOPPED, FAILED, UNASSIGNED, RESTARTING.
    pub state: State,
    /// Worker running the connector, `host:port`.
    pub worker_id: String,
    /// The connector's trace when it FAILED: the exception and each cause.
    pub trace: Vec<String>,
    /// Each task.
    pub tasks: Vec<TaskReport>,
}

/// One task of a [`StateReport`].
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    /// Task number.
    pub id: u32,
    /// Task state.
    pub state: State,
    /// Worker running it.
    pub worker_id: String,
    /// The task's trace when it FAILED: the exception and each cause.
    pub trace: Vec<String>,
}

impl StateReport {
    /// From a status answer.
    pub fn new(s: &ConnectorStatus) -> Self {
        StateReport {
            state: s.connector.state.clone(),
            worker_id: s.connector.worker_id.clone(),
            trace: s
                .connector
                .trace
                .as_deref()
                .map(trace_summary)
                .unwrap_or_default(),
            tasks: s
                .tasks
                .iter()
                .map(|t| TaskReport {
                    id: t.id,
                    state: t.state.clone(),
                    worker_id: t.worker_id.clone(),
                    trace: t.trace.as_deref().map(trace_summary).unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// True when the connector and every task (at least one) are RUNNING.
    pub fn is_running(&self) -> bool {
        self.state == State::Running
            && !self.tasks.is_empty()
            && self.tasks.iter().all(|t| t.state == State::Running)
    }

    /// `connector RUNNING, task 0 FAILED`.
    pub fn summary(&self) -> String {
        let mut s = format!("connector {}", self.state);
        if self.tasks.is_empty() {
            s.push_str(", no tasks");
        }
        for t in &self.tasks {
            s.push_str(&format!(", task {} {}", t.id, t.state));
        }
        s
    }

    /// The connector line and a table of tasks with the trace lines of failed ones.
    pub fn write(&self, out: &Output, name: &str, w: &mut dyn Write) -> io::Result<()> {
        writeln!(w, "connector {name}: {} on {}", self.state, self.worker_id)?;
        for line in &self.trace {
            writeln!(w, "  {line}")?;
        }
        if self.tasks.is_empty() {
            writeln!(w, "no tasks")?;
            return Ok(());
        }
        let mut table = out.table(["TASK", "STATE", "WORKER", "TRACE"]);
        for t in &self.tasks {
            table.add_row([
                t.id.to_string(),
                t.state.to_string(),
                t.worker_id.clone(),
                t.trace.join("\n"),
            ]);
        }
        write!(w, "{}", out.render_table(&table))
    }
}

/// What a wait must see before it trusts the status.
#[derive(Debug, Clone, Default)]
pub struct Fresh {
    /// Tasks must first run with these keys (`None`: without the key), so that the status of
    /// tasks that ran the old config is not taken for the new one.
    pub expect: BTreeMap<String, Option<String>>,
    /// A FAILED state counts only once something else was seen, or this long after the start:
    /// right after a restart or an update the worker may still report the old failure.
    pub grace: Duration,
}

/// Time a changed connector gets to leave an old FAILED state.
pub const GRACE: Duration = Duration::from_secs(4);

/// Polls the status until `goal`, a failure, or `timeout`.
pub async fn wait_for(
    client: &ConnectClient,
    name: &str,
    goal: Goal,
    timeout: Duration,
    out: &Output,
    fresh: &Fresh,
) -> Result<(WaitReport, Option<StateReport>)> {
    let expect = &fresh.expect;
    let started = Instant::now();
    let bar = out.progress(
        None,
        &format!("waiting for connector `{name}` to be {}", goal.word()),
    );
    if let Some(style) = progress_style("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut config_seen = expect.is_empty();
    let mut seen_healthy = fresh.grace.is_zero();
    let mut reached_since: Option<Instant> = None;
    let mut last: Option<StateReport> = None;
    let outcome = loop {
        if !config_seen {
            let tasks = match client.tasks(name).await {
                Ok(t) => t,
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot read the tasks of connector `{name}`"));
                }
            };
            config_seen = !tasks.is_empty()
                && tasks.iter().all(|t| {
                    expect
                        .iter()
                        .all(|(k, v)| t.config.get(k).map(String::as_str) == v.as_deref())
                });
        }
        if config_seen {
            match client.status(name).await {
                Ok(status) => {
                    let report = StateReport::new(&status);
                    bar.set_message(format!(
                        "waiting for connector `{name}` to be {}: {}",
                        goal.word(),
                        report.summary()
                    ));
                    let failed = status.has_failure();
                    let reached = goal.reached(&status);
                    last = Some(report);
                    seen_healthy |= !failed;
                    // Stopping a failed connector is fine: only the other goals fail.
                    if failed
                        && goal != Goal::Stopped
                        && (seen_healthy || started.elapsed() >= fresh.grace)
                    {
                        break WaitOutcome::Failed;
                    }
                    if reached {
                        let since = *reached_since.get_or_insert_with(Instant::now);
                        if goal != Goal::Running || since.elapsed() >= SETTLE {
                            break WaitOutcome::Reached;
                        }
                    } else {
                        reached_since = None;
                    }
                }
                // Right after a create the status may not be there yet.
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot read the status of connector `{name}`"));
                }
            }
        }
        if started.elapsed() >= timeout {
            break WaitOutcome::TimedOut;
        }
        tokio::time::sleep(POLL.min(timeout.saturating_sub(started.elapsed()))).await;
    };
    bar.finish_and_clear();
    Ok((
        WaitReport {
            outcome,
            goal: goal.word(),
            waited_ms: started.elapsed().as_millis() as u64,
            timeout_ms: timeout.as_millis() as u64,
        },
        last,
    ))
}

/// One line saying how a wait ended.
pub fn wait_line(wait: &WaitReport, state: Option<&StateReport>) -> String {
    let secs = wait.waited_ms as f64 / 1000.0;
    match wait.outcome {
        WaitOutcome::Reached => format!("{} after {secs:.1} s", wait.goal),
        WaitOutcome::Failed => format!(
            "FAILED after {secs:.1} s: {}",
            state.map_or("no status".into(), StateReport::summary)
        ),
        WaitOutcome::TimedOut => format!(
            "not {} after {:.0} s (`--timeout`): {}",
            wait.goal,
            wait.timeout_ms as f64 / 1000.0,
            state.map_or("no status yet".into(), StateReport::summary)
        ),
    }
}
