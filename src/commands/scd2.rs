//! `cdcctl scd2`: a Type 2 history table from the changes `load --history` keeps.
//!
//! 1. Find `<table>__changes` (the loaded table's changes table) and the history table
//!    (`<table>_history`, or `--history-table`); the key, the tracked columns and
//!    `--keep-deleted` come from the flags, else from the previous run (the state table
//!    `_cdc_scd2_state`), else the tracked columns are every non-key column. A run that asks for
//!    another key, other tracked columns or another delete mode than the history was built
//!    with is refused (exit 2) unless `--rebuild`.
//! 2. Update (the default): recompute the versions of the keys with changes appended since the
//!    watermark, apply the difference to the history table, move the watermark — in one
//!    transaction in DuckDB; in Snowflake as idempotent statements with the watermark last
//!    (`cdc::scd2`, "Incremental runs"). `--rebuild` starts from an empty history.
//! 3. `--as-of TIMESTAMP` prints the key and tracked columns of the versions valid at that
//!    instant; `--check` runs the rules of `cdc::scd2::check_sql` and lists each violation
//!    (exit 1 on any).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Serialize;

use crate::cdc::scd2::{
    self, Count, Param, STATE_TABLE, Spec, apply_sql, as_of_sql, check_sql, create_history_sql,
    create_state_sql, delete_state_sql, high_water_sql, insert_state_sql, pending_sql,
    read_state_sql,
};
use crate::cdc::schema::{Dialect, TableName, WarehouseType, is_metadata_column};
use crate::cli::Scd2Args;
use crate::clients::warehouse::{SqlSession, SqlValue};
use crate::config::Config;
use crate::error::{CliError, Outcome};
use crate::output::Output;

/// Runs `cdcctl scd2`.
pub async fn run(args: &Scd2Args, config: &Config, out: &Output) -> Result<Outcome> {
    let request = Request::from_args(args)?;
    let config = config.clone();
    let out = out.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut session = open_session(&config, runtime)?;
        request.run(&mut *session, &out)
    })
    .await
    .context("the scd2 thread failed")?
}

/// The warehouse the loader writes to.
fn open_session(config: &Config, runtime: tokio::runtime::Handle) -> Result<Box<dyn SqlSession>> {
    Ok(match config.load.sink.as_str() {
        "snowflake" => Box::new(crate::clients::snowflake_sink::open_session(
            &config.snowflake,
            runtime,
        )?),
        _ => Box::new(crate::clients::duckdb::open_session(&config.duckdb.path)?),
    })
}

/// What to do, checked before anything is opened.
#[derive(Debug)]
struct Request {
    table: TableName,
    history: TableName,
    key: Vec<String>,
    track: Vec<String>,
    keep_deleted: bool,
    rebuild: bool,
    mode: Mode,
    limit: usize,
}

#[derive(Debug)]
enum Mode {
    Update,
    AsOf { micros: i64, text: String },
    Check,
}

impl Request {
    fn from_args(args: &Scd2Args) -> Result<Request, CliError> {
        let table = parse_table(&args.table, None).ok_or_else(|| CliError::Usage {
            message: format!("--table `{}` is not a table name", args.table),
            hint: Some("write `users` or `schema.table`".into()),
        })?;
        let history = match &args.history_table {
            Some(raw) => {
                parse_table(raw, table.schema.as_deref()).ok_or_else(|| CliError::Usage {
                    message: format!("--history-table `{raw}` is not a table name"),
                    hint: Some("write `users_history` or `schema.table`".into()),
                })?
            }
            None => table.with_suffix("_history"),
        };
        let mode = match (&args.as_of, args.check) {
            (Some(raw), _) => Mode::AsOf {
                micros: parse_instant(raw)?,
                text: raw.clone(),
            },
            (None, true) => Mode::Check,
            (None, false) => Mode::Update,
        };
        let names = |raw: &[String]| -> Vec<String> {
            raw.iter()
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect()
        };
        Ok(Request {
            table,
            history,
            key: names(&args.key),
            track: names(&args.track),
            keep_deleted: args.keep_deleted,
            rebuild: args.rebuild,
            mode,
            limit: args.limit.max(1),
        })
    }

    fn run(self, db: &mut dyn SqlSession, out: &Output) -> Result<Outcome> {
        let dialect = db.dialect();
        let changes = self.table.changes_table();
        let Some(columns) = db.read_columns(&changes)? else {
            return Err(CliError::Failed {
                message: format!(
                    "there is no changes table {} for {}",
                    display(&changes),
                    display(&self.table)
                ),
                hint: Some(
                    "load the table with `cdcctl load --history` first: it keeps every change \
                     in `<table>__changes`"
                        .into(),
                ),
            }
            .into());
        };
        let source: Vec<(String, WarehouseType)> = columns
            .into_iter()
            .filter(|(name, _)| !is_metadata_column(name))
            .collect();
        // Only an update writes; --as-of and --check leave the warehouse as it is.
        let state = if matches!(self.mode, Mode::Update) {
            db.execute_ddl(&create_state_sql(dialect, &self.history.schema))?;
            State::read(db, &self.history)?
        } else if db
            .read_columns(&scd2::state_table(&self.history.schema))?
            .is_some()
        {
            State::read(db, &self.history)?
        } else {
            None
        };
        let spec = self.spec(dialect, &changes, &source, state.as_ref())?;
        match self.mode {
            Mode::Update => update(db, &spec, &self.history, state, self.rebuild, out),
            Mode::AsOf { micros, ref text } => as_of(db, &spec, micros, text, out),
            Mode::Check => check(db, &spec, state.as_ref(), self.limit, out),
        }
    }

    /// The key, tracked columns and delete mode: flags, else the previous run's, else defaults;
    /// a difference from the previous run needs `--rebuild`.
    fn spec(
        &self,
        dialect: Dialect,
        changes: &TableName,
        source: &[(String, WarehouseType)],
        state: Option<&State>,
    ) -> Result<Spec, CliError> {
        // The previous run's choices are the defaults; only a rebuild may change them.
        let previous = state;
        let key = match (&self.key[..], previous) {
            ([], Some(state)) => state.key.clone(),
            ([], None) => {
                return Err(CliError::Usage {
                    message: format!(
                        "which columns are the key of {}? The first run needs --key",
                        display(&self.table)
                    ),
                    hint: Some(format!(
                        "pass the source table's primary key, e.g. `--key {}`",
                        source.first().map_or("id", |(c, _)| c.as_str())
                    )),
                });
            }
            (given, _) => given.to_vec(),
        };
        let key = resolve(&key, source, changes)?;
        let track = match (&self.track[..], previous) {
            ([], Some(state)) => resolve(&state.tracked, source, changes)?,
            ([], None) => source
                .iter()
                .filter(|(c, _)| !key.iter().any(|(k, _)| k == c))
                .cloned()
                .collect(),
            (given, _) => resolve(given, source, changes)?,
        };
        if let Some((column, _)) = track.iter().find(|(c, _)| key.iter().any(|(k, _)| k == c)) {
            return Err(CliError::Usage {
                message: format!("`{column}` is a key column: it cannot be tracked too"),
                hint: Some("leave the key columns out of --track".into()),
            });
        }
        let keep_deleted = if self.rebuild {
            self.keep_deleted
        } else {
            self.keep_deleted || previous.is_some_and(|s| s.keep_deleted)
        };
        if let Some(state) = previous.filter(|_| !self.rebuild) {
            let names = |cols: &[(String, WarehouseType)]| -> Vec<String> {
                cols.iter().map(|(c, _)| c.to_ascii_lowercase()).collect()
            };
            let lower = |cols: &[String]| -> Vec<String> {
                cols.iter().map(|c| c.to_ascii_lowercase()).collect()
            };
            if names(&key) != lower(&state.key)
                || names(&track) != lower(&state.tracked)
                || keep_deleted != state.keep_deleted
            {
                return Err(CliError::Usage {
                    message: format!(
                        "{} was built with key ({}), tracking ({}){}; this run asks for key ({}), \
                         tracking ({}){}",
                        display(&self.history),
                        state.key.join(", "),
                        state.tracked.join(", "),
                        if state.keep_deleted {
                            ", --keep-deleted"
                        } else {
                            ""
                        },
                        names(&key).join(", "),
                        names(&track).join(", "),
                        if keep_deleted { ", --keep-deleted" } else { "" },
                    ),
                    hint: Some("add --rebuild to rebuild the history that way".into()),
                });
            }
        }
        Ok(Spec {
            dialect,
            changes: changes.clone(),
            history: self.history.clone(),
            key,
            tracked: track,
            keep_deleted,
        })
    }
}

/// A table as messages name it: `public.users`.
fn display(table: &TableName) -> String {
    State::name(table)
}

/// `users` → `public.users`; `a.b` → `a.b`; an unqualified name takes `schema` (else `public`,
/// where `load` puts the source tables of schema `public`).
fn parse_table(raw: &str, schema: Option<&str>) -> Option<TableName> {
    let raw = raw.trim();
    let (s, t) = match raw.split_once('.') {
        Some((s, t)) => (s.to_owned(), t),
        None => (schema.unwrap_or("public").to_owned(), raw),
    };
    (!s.is_empty() && !t.is_empty() && !t.contains('.')).then(|| TableName::qualified(s, t))
}

/// Columns named by the user, as the changes table has them.
fn resolve(
    names: &[String],
    source: &[(String, WarehouseType)],
    changes: &TableName,
) -> Result<Vec<(String, WarehouseType)>, CliError> {
    names
        .iter()
        .map(|name| {
            source
                .iter()
                .find(|(c, _)| c.eq_ignore_ascii_case(name))
                .cloned()
                .ok_or_else(|| CliError::Usage {
                    message: format!("{} has no column `{name}`", display(changes)),
                    hint: Some(format!(
                        "its columns: {}",
                        source
                            .iter()
                            .map(|(c, _)| c.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                })
        })
        .collect()
}

/// An instant: RFC 3339, or `YYYY-MM-DD[ HH:MM:SS[.f]]` in UTC; microseconds since the epoch.
fn parse_instant(raw: &str) -> Result<i64, CliError> {
    let raw = raw.trim();
    let parsed = DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f"))
                .map(|t| t.and_utc())
        })
        .or_else(|_| {
            NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        });
    parsed
        .map(|t| t.timestamp_micros())
        .map_err(|_| CliError::Usage {
            message: format!("--as-of `{raw}` is not a timestamp"),
            hint: Some(
                "write RFC 3339 (`2026-12-04T10:00:00Z`) or `2026-12-04 10:00:00` (UTC)".into(),
            ),
        })
}

/// A history table's row in the state table.
#[derive(Debug, Clone)]
struct State {
    key: Vec<String>,
    tracked: Vec<String>,
    keep_deleted: bool,
    watermark: i64,
}

impl State {
    /// The name a history table has in the state table.
    fn name(history: &TableName) -> String {
        match &history.schema {
            Some(schema) => format!("{schema}.{}", history.table),
            None => history.table.clone(),
        }
    }

    fn read(db: &mut dyn SqlSession, history: &TableName) -> Result<Option<State>> {
        let sql = read_state_sql(db.dialect(), &history.schema);
        let rows = db.query(&sql, &[SqlValue::Text(Some(State::name(history)))])?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let list = |text: String| -> Result<Vec<String>> {
            serde_json::from_str(&text)
                .with_context(|| format!("the state of {} is damaged: `{text}`", STATE_TABLE))
        };
        Ok(Some(State {
            key: list(cell(0))?,
            tracked: list(cell(1))?,
            keep_deleted: cell(2).eq_ignore_ascii_case("true"),
            watermark: cell(3).parse().unwrap_or(0),
        }))
    }
}

/// What an update did (`--output json` field names).
#[derive(Debug, Default, Serialize)]
struct UpdateReport {
    history_table: String,
    changes_table: String,
    key: Vec<String>,
    tracked: Vec<String>,
    keep_deleted: bool,
    rebuilt: bool,
    /// Changes read by this run.
    changes_read: u64,
    /// Keys whose versions were recomputed.
    keys: u64,
    /// New versions.
    inserted: u64,
    /// Versions changed (closed by a new change, or renumbered by a late one).
    updated: u64,
    /// Versions removed (a late change made them no-ops).
    removed: u64,
    watermark_from: i64,
    watermark_to: i64,
    /// Rows in the history table now.
    history_rows: u64,
}

fn update(
    db: &mut dyn SqlSession,
    spec: &Spec,
    history: &TableName,
    state: Option<State>,
    rebuild: bool,
    out: &Output,
) -> Result<Outcome> {
    let d = spec.dialect;
    let name = State::name(history);
    let state_params = |watermark: i64, lsn: Option<i64>| {
        let names = |cols: &[(String, WarehouseType)]| {
            serde_json::to_string(&cols.iter().map(|(c, _)| c).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        vec![
            SqlValue::Text(Some(name.clone())),
            SqlValue::Text(Some(State::name(&spec.changes))),
            SqlValue::Text(Some(names(&spec.key))),
            SqlValue::Text(Some(names(&spec.tracked))),
            SqlValue::Bool(Some(spec.keep_deleted)),
            SqlValue::Int(Some(watermark)),
            SqlValue::Int(lsn),
        ]
    };
    if rebuild {
        db.execute_ddl(&format!("DROP TABLE IF EXISTS {}", history.sql(d)))?;
        db.execute(
            &delete_state_sql(d, &history.schema),
            &[SqlValue::Text(Some(name.clone()))],
        )?;
    }
    db.execute_ddl(&create_history_sql(spec))?;
    let watermark = if rebuild {
        0
    } else {
        state.as_ref().map_or(0, |s| s.watermark)
    };
    let high_row = db.query(&high_water_sql(spec), &[])?;
    let (high, high_lsn) = (number(&high_row, 0).unwrap_or(0), number(&high_row, 1));
    let mut report = UpdateReport {
        history_table: display(history),
        changes_table: display(&spec.changes),
        key: spec.key.iter().map(|(c, _)| c.clone()).collect(),
        tracked: spec.tracked.iter().map(|(c, _)| c.clone()).collect(),
        keep_deleted: spec.keep_deleted,
        rebuilt: rebuild,
        watermark_from: watermark,
        watermark_to: watermark.max(high),
        ..UpdateReport::default()
    };
    if high > watermark {
        let bounds = [SqlValue::Int(Some(watermark)), SqlValue::Int(Some(high))];
        let pending = db.query(&pending_sql(spec), &bounds)?;
        report.changes_read = number(&pending, 0).unwrap_or(0);
        let all_keys = number::<u64>(&pending, 1).unwrap_or(0) > 0;
        let transaction = db.transactions();
        if transaction {
            db.execute("BEGIN TRANSACTION", &[])?;
        }
        let result = apply(db, spec, watermark, high, all_keys, &mut report).and_then(|()| {
            db.execute(
                &delete_state_sql(d, &history.schema),
                &[SqlValue::Text(Some(name.clone()))],
            )?;
            db.execute(
                &insert_state_sql(d, &history.schema),
                &state_params(high, high_lsn),
            )?;
            if transaction {
                db.execute("COMMIT", &[])?;
            }
            Ok(())
        });
        if let Err(e) = result {
            if transaction {
                let _ = db.execute("ROLLBACK", &[]);
            }
            return Err(e.context(format!("cannot update {}", display(history))));
        }
    } else if state.is_none() || rebuild {
        db.execute(
            &insert_state_sql(d, &history.schema),
            &state_params(watermark, high_lsn),
        )?;
    }
    report.history_rows = count_rows(db, history)?;
    out.report(&report, |w| {
        if report.changes_read == 0 {
            return writeln!(
                w,
                "{}: up to date ({} rows; no change after watermark {})",
                report.history_table, report.history_rows, report.watermark_from
            );
        }
        writeln!(
            w,
            "{}: {} change(s) read from {}, {} key(s) recomputed: {} version(s) added, {} \
             updated, {} removed; {} rows; watermark {} → {}",
            report.history_table,
            report.changes_read,
            report.changes_table,
            report.keys,
            report.inserted,
            report.updated,
            report.removed,
            report.history_rows,
            report.watermark_from,
            report.watermark_to
        )
    })?;
    Ok(Outcome::Ok)
}

/// The statements of one run (`cdc::scd2::apply_sql`), counting what they did.
fn apply(
    db: &mut dyn SqlSession,
    spec: &Spec,
    watermark: i64,
    high: i64,
    all_keys: bool,
    report: &mut UpdateReport,
) -> Result<()> {
    for (i, step) in apply_sql(spec, all_keys).into_iter().enumerate() {
        let params: Vec<SqlValue> = step
            .params
            .iter()
            .map(|p| {
                SqlValue::Int(Some(match p {
                    Param::Watermark => watermark,
                    Param::High => high,
                }))
            })
            .collect();
        let n = db.execute(&step.sql, &params)?;
        match step.counts {
            Some(Count::Removed) => report.removed = n,
            Some(Count::Updated) => report.updated = n,
            Some(Count::Inserted) => report.inserted = n,
            None if i == 0 => report.keys = count_rows(db, &scd2::keys_table())?,
            None => {}
        }
    }
    Ok(())
}

fn count_rows(db: &mut dyn SqlSession, table: &TableName) -> Result<u64> {
    let sql = format!(
        "SELECT CAST(COUNT(*) AS VARCHAR) FROM {}",
        table.sql(db.dialect())
    );
    Ok(number(&db.query(&sql, &[])?, 0).unwrap_or(0))
}

/// Column `i` of the first row of a query's text result, as a number.
fn number<T: std::str::FromStr>(rows: &[Vec<Option<String>>], i: usize) -> Option<T> {
    rows.first()?.get(i)?.as_deref()?.parse().ok()
}

#[derive(Debug, Serialize)]
struct AsOfReport {
    history_table: String,
    as_of: String,
    rows: Vec<BTreeMap<String, Option<String>>>,
}

fn as_of(
    db: &mut dyn SqlSession,
    spec: &Spec,
    micros: i64,
    text: &str,
    out: &Output,
) -> Result<Outcome> {
    if db.read_columns(&spec.history)?.is_none() {
        return Err(no_history(spec).into());
    }
    let params = [SqlValue::Int(Some(micros)), SqlValue::Int(Some(micros))];
    let rows = db.query(&as_of_sql(spec), &params)?;
    let names: Vec<String> = spec
        .key
        .iter()
        .chain(&spec.tracked)
        .map(|(c, _)| c.clone())
        .collect();
    let report = AsOfReport {
        history_table: display(&spec.history),
        as_of: text.to_owned(),
        rows: rows
            .iter()
            .map(|row| names.iter().cloned().zip(row.iter().cloned()).collect())
            .collect(),
    };
    out.report(&report, |w| {
        let mut table = out.table(names.iter().map(String::as_str));
        for row in &rows {
            table.add_row(
                row.iter()
                    .map(|v| v.clone().unwrap_or_else(|| "NULL".into())),
            );
        }
        write!(w, "{}", out.render_table(&table))?;
        writeln!(w, "{} row(s) as of {text}", rows.len())
    })?;
    Ok(Outcome::Ok)
}

fn no_history(spec: &Spec) -> CliError {
    CliError::Failed {
        message: format!("there is no history table {}", display(&spec.history)),
        hint: Some(format!(
            "build it first: `cdcctl scd2 --table {}`",
            spec.changes.table.trim_end_matches("__changes")
        )),
    }
}

/// One violation found by `--check`.
#[derive(Debug, Serialize)]
struct Violation {
    rule: &'static str,
    key: Option<String>,
    version: Option<String>,
    detail: Option<String>,
}

#[derive(Debug, Serialize)]
struct CheckReport {
    history_table: String,
    ok: bool,
    /// Changes appended after the watermark: not in the history yet.
    changes_behind: u64,
    violations: Vec<Violation>,
}

fn check(
    db: &mut dyn SqlSession,
    spec: &Spec,
    state: Option<&State>,
    limit: usize,
    out: &Output,
) -> Result<Outcome> {
    if db.read_columns(&spec.history)?.is_none() {
        return Err(no_history(spec).into());
    }
    let watermark = state.map_or(0, |s| s.watermark);
    let mut violations = Vec::new();
    for rule in check_sql(spec) {
        let params: Vec<SqlValue> = rule
            .params
            .iter()
            .map(|_| SqlValue::Int(Some(watermark)))
            .collect();
        let rows = db
            .query(&rule.sql, &params)
            .with_context(|| format!("cannot check rule `{}`", rule.rule))?;
        violations.extend(rows.into_iter().take(limit).map(|row| {
            let mut cells = row.into_iter();
            Violation {
                rule: rule.rule,
                key: cells.next().flatten(),
                version: cells.next().flatten(),
                detail: cells.next().flatten(),
            }
        }));
    }
    let bounds = [
        SqlValue::Int(Some(watermark)),
        SqlValue::Int(Some(i64::MAX)),
    ];
    let behind = number(&db.query(&pending_sql(spec), &bounds)?, 0).unwrap_or(0);
    let report = CheckReport {
        history_table: display(&spec.history),
        ok: violations.is_empty(),
        changes_behind: behind,
        violations,
    };
    out.report(&report, |w| {
        if !report.violations.is_empty() {
            let mut table = out.table(["RULE", "KEY", "VERSION", "DETAIL"]);
            for v in &report.violations {
                table.add_row([
                    v.rule.to_owned(),
                    v.key.clone().unwrap_or_default(),
                    v.version.clone().unwrap_or_default(),
                    v.detail.clone().unwrap_or_default(),
                ]);
            }
            write!(w, "{}", out.render_table(&table))?;
        }
        if report.changes_behind > 0 {
            writeln!(
                w,
                "note: {} change(s) are not in the history yet: run `cdcctl scd2` to add them",
                report.changes_behind
            )?;
        }
        if report.ok {
            writeln!(w, "{}: ok, every rule holds", report.history_table)
        } else {
            writeln!(
                w,
                "{}: {} violation(s)",
                report.history_table,
                report.violations.len()
            )
        }
    })?;
    Ok(if report.ok {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_default_to_public_and_the_tables_schema() {
        assert_eq!(
            parse_table("users", None),
            Some(TableName::qualified("public", "users"))
        );
        assert_eq!(
            parse_table("raw.users_history", Some("x")),
            Some(TableName::qualified("raw", "users_history"))
        );
        assert_eq!(
            parse_table("h", Some("raw")),
            Some(TableName::qualified("raw", "h"))
        );
        assert_eq!(parse_table("a.b.c", None), None);
        assert_eq!(parse_table(".x", None), None);
    }

    #[test]
    fn instants_are_rfc3339_or_utc_wall_time() {
        let z = parse_instant("2026-12-04T10:00:00Z").unwrap();
        assert_eq!(parse_instant("2026-12-04 10:00:00").unwrap(), z);
        assert_eq!(parse_instant("2026-12-04T11:00:00+01:00").unwrap(), z);
        assert_eq!(parse_instant("2026-12-04 10:00:00.000001").unwrap(), z + 1);
        assert_eq!(parse_instant("2026-12-04").unwrap(), z - 10 * 3_600_000_000);
        let err = parse_instant("yesterday").unwrap_err();
        assert_eq!(err.exit_code(), crate::error::EXIT_USAGE);
    }
}
