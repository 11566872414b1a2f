//! Snowflake as the sink of `cdcctl load --sink snowflake` ([`SnowflakeSink`]).
//!
//! Per batch and table: the target is created or evolved (DDL, which Snowflake commits at once;
//! safe to repeat), the compacted rows are staged into a session-private temporary table with
//! bound values ([`crate::cdc::sql::stage_values_sql`]), the table's truncate (if any) is
//! applied, and one `MERGE` ([`crate::cdc::sql::merge_sql`]: deletes, LSN-guarded updates,
//! inserts) applies the rows: one statement, so one transaction, per table. Every statement is
//! idempotent — a MERGE or truncate applied again changes nothing — and the loader commits its
//! Kafka offsets only after the last table of the batch is applied, so a crash anywhere replays
//! the batch with an exactly-once effect. (Several tables are not applied in one multi-statement
//! transaction: nothing needs it, and the fakesnow emulator cannot run a second `MERGE` in one.)
//!
//! The loader's threads are not async: the sink drives the async [`Snowflake`] client on the
//! tokio runtime it was created in.

use anyhow::{Context, Result};
use tokio::runtime::Handle;

use super::snowflake::{Bind, Retry, Snowflake, hex};
use super::warehouse::{Applied, Catalog, Prepared, Sink, SqlValue, TableWrite, Tables, value_of};
use crate::cdc::batch::{Delete, Upsert};
use crate::cdc::event::{Op, Value};
use crate::cdc::schema::{Dialect, TableName, TableOptions, WarehouseType, warehouse_name};
use crate::cdc::sql::{
    MAX_BINDS_PER_STATEMENT, MergeSpec, StageKind, changes_insert_sql, changes_truncate_sql,
    merge_sql, stage_values_sql, staging_width, truncate_sql,
};
use crate::config::SnowflakeConfig;

const DIALECT: Dialect = Dialect::Snowflake;

/// A Snowflake session used by the loader.
pub struct SnowflakeSink {
    session: Session,
    tables: Tables,
    /// The changes tables (`load --history`).
    change_tables: Tables,
}

/// A Snowflake session driven from a blocking thread: the client and the runtime that drives
/// it. Logs out when dropped.
pub struct Session {
    client: Snowflake,
    runtime: Handle,
}

impl Session {
    fn run(
        &self,
        sql: &str,
        binds: &[Bind],
        retry: Retry,
    ) -> Result<super::snowflake::QueryResult> {
        self.runtime.block_on(self.client.query(sql, binds, retry))
    }
}

impl SnowflakeSink {
    /// Logs in (so bad credentials fail before anything is read) with the session's database
    /// and schema. Call from a thread of the tokio runtime's blocking pool, or any thread
    /// outside it, never from an async task.
    pub fn open(config: &SnowflakeConfig, opts: TableOptions, runtime: Handle) -> Result<Self> {
        let session = open_session(config, runtime)?;
        Ok(SnowflakeSink {
            session,
            tables: Tables::new(opts),
            change_tables: Tables::new(TableOptions::change_log()),
        })
    }

    /// One table of a batch (module doc): prepare, stage, truncate, MERGE.
    fn apply_table(
        &mut self,
        index: usize,
        write: &TableWrite<'_>,
        applied: &mut Applied,
    ) -> Result<()> {
        let (target, plan) = (write.target, write.plan);
        let soft_delete = self.tables.opts().soft_delete;
        let prepared = self.tables.prepare(&mut self.session, write, applied)?;
        let staging = staging_name(index);
        if self.tables.opts().history {
            self.record_changes(&staging, write, applied)?;
        }
        let spec = merge_spec(target, &staging, &prepared, soft_delete);
        let rows = !(plan.upserts.is_empty() && plan.deletes.is_empty());
        if rows {
            let staged = staged_rows(&spec, &plan.upserts, &plan.deletes, soft_delete);
            applied.statements += self
                .stage(&spec, &staged)
                .with_context(|| format!("cannot stage the batch of {}", plan.table))?;
        }
        if let Some(truncate) = &plan.truncate {
            let sql = truncate_sql(DIALECT, target, soft_delete, truncate.lsn.is_some());
            let binds: Vec<Bind> = truncate
                .lsn
                .map(|l| Bind::Fixed(Some(l)))
                .into_iter()
                .collect();
            // LSN-guarded: applying it twice deletes nothing more.
            self.session.run(&sql, &binds, Retry::Idempotent)?;
            applied.truncates += 1;
            applied.statements += 1;
        }
        if rows {
            let merged = self
                .session
                .run(&merge_sql(DIALECT, &spec), &[], Retry::Idempotent)
                .with_context(|| format!("cannot apply the batch to {}", target.sql(DIALECT)))?;
            applied.rows_changed += merged.rows_affected();
            applied.statements += 1;
        }
        Ok(())
    }

    /// Appends the batch's changes of one table to its changes table (`load --history`,
    /// `cdc::sql` module doc, "Changes"), before the target is changed. Idempotent: a changes
    /// table keeps one row per (key, LSN), so a retried statement appends nothing twice.
    fn record_changes(
        &mut self,
        staging: &str,
        write: &TableWrite<'_>,
        applied: &mut Applied,
    ) -> Result<()> {
        let plan = write.plan;
        let (changes, prepared) =
            self.change_tables
                .prepare_changes(&mut self.session, write, applied)?;
        let history = &plan.history;
        let context = || format!("cannot append to {}", changes.sql(DIALECT));
        if !history.is_empty() {
            let spec = MergeSpec {
                target: &changes,
                staging,
                columns: &prepared.columns,
                key: &prepared.key,
                unavailable: &prepared.unavailable,
                soft_delete: false,
            };
            let staged = staged_rows(&spec, &history.upserts, &history.deletes, false);
            applied.statements += self
                .stage(&spec, &staged)
                .with_context(|| format!("cannot stage the changes of {}", plan.table))?;
            let appended = self
                .session
                .run(
                    &changes_insert_sql(DIALECT, &spec, write.target),
                    &[],
                    Retry::Idempotent,
                )
                .with_context(context)?;
            applied.changes_recorded += appended.rows_affected();
            applied.statements += 1;
        }
        if let Some(truncate) = plan.truncate.as_ref().filter(|t| t.lsn.is_some()) {
            let binds = [
                Bind::Fixed(truncate.source_ts_ms),
                Bind::Fixed(truncate.lsn),
                Bind::Fixed(truncate.lsn),
            ];
            let appended = self
                .session
                .run(
                    &changes_truncate_sql(DIALECT, &changes),
                    &binds,
                    Retry::Idempotent,
                )
                .with_context(context)?;
            applied.changes_recorded += appended.rows_affected();
            applied.statements += 1;
        }
        Ok(())
    }

    /// Stages rows (in staging column order, as text) for `spec`; returns the statements run.
    fn stage(&self, spec: &MergeSpec<'_>, rows: &[Vec<Option<String>>]) -> Result<u64> {
        let width = staging_width(spec);
        let per_statement = (MAX_BINDS_PER_STATEMENT / width.max(1)).max(1);
        let mut statements = 0;
        for (i, chunk) in rows.chunks(per_statement).enumerate() {
            let sql = stage_values_sql(DIALECT, spec, chunk.len(), i == 0);
            let binds: Vec<Bind> = chunk
                .iter()
                .flat_map(|row| row.iter().cloned().map(Bind::Text))
                .collect();
            // Re-creating or re-filling a session's temporary table is safe to repeat only for
            // the first chunk; later chunks add rows.
            let retry = if i == 0 {
                Retry::Idempotent
            } else {
                Retry::Once
            };
            self.session.run(&sql, &binds, retry)?;
            statements += 1;
        }
        Ok(statements)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.runtime.block_on(self.client.logout());
    }
}

/// Logs in for a command's own statements (`scd2`). Call from a blocking thread.
pub fn open_session(config: &SnowflakeConfig, runtime: Handle) -> Result<Session> {
    let client = Snowflake::new(config)?;
    let session = Session { client, runtime };
    session
        .run("SELECT CURRENT_VERSION()", &[], Retry::Idempotent)
        .context("cannot open a Snowflake session")?;
    Ok(session)
}

impl super::warehouse::SqlSession for Session {
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64> {
        let binds: Vec<Bind> = params.iter().map(bind_of).collect();
        // The statements of `scd2` are idempotent.
        Ok(self.run(sql, &binds, Retry::Idempotent)?.rows_affected())
    }

    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<Option<String>>>> {
        let binds: Vec<Bind> = params.iter().map(bind_of).collect();
        Ok(self.run(sql, &binds, Retry::Idempotent)?.rows)
    }

    fn transactions(&self) -> bool {
        false
    }
}

fn bind_of(value: &SqlValue) -> Bind {
    match value {
        SqlValue::Int(v) => Bind::Fixed(*v),
        SqlValue::Text(v) => Bind::Text(v.clone()),
        SqlValue::Bool(v) => Bind::Boolean(*v),
    }
}

/// The staged rows of a table, as text in staging column order: upserts, then deletes.
fn staged_rows(
    spec: &MergeSpec<'_>,
    upserts: &[Upsert],
    deletes: &[Delete],
    soft_delete: bool,
) -> Vec<Vec<Option<String>>> {
    let columns = spec.columns;
    let kinds: Vec<StageKind> = columns.iter().map(|c| StageKind::of(&c.ty)).collect();
    let mut rows = Vec::with_capacity(upserts.len() + deletes.len());
    for upsert in upserts {
        let mut row: Vec<Option<String>> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| value_of(&upsert.row, i, &c.name).and_then(|v| stage_text(kinds[i], v)))
            .collect();
        row.push(Some(upsert.op.code().to_string()));
        row.push(upsert.lsn.map(|l| l.to_string()));
        row.push(upsert.source_ts_ms.map(|t| t.to_string()));
        for &i in spec.unavailable {
            let flagged =
                value_of(&upsert.row, i, &columns[i].name).is_some_and(Value::is_unavailable);
            row.push(Some(flagged.to_string()));
        }
        rows.push(row);
    }
    for delete in deletes {
        // The before image (soft delete keeps it), else the key alone.
        let image = match &delete.before {
            Some(before) if soft_delete => before,
            _ => &delete.key,
        };
        let mut row: Vec<Option<String>> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                value_of(image, i, &c.name)
                    .or_else(|| delete.key.get(&c.name))
                    .filter(|v| !v.is_unavailable())
                    .and_then(|v| stage_text(kinds[i], v))
            })
            .collect();
        row.push(Some(Op::Delete.code().to_string()));
        row.push(delete.lsn.map(|l| l.to_string()));
        row.push(delete.source_ts_ms.map(|t| t.to_string()));
        row.extend(spec.unavailable.iter().map(|_| Some("false".to_string())));
        rows.push(row);
    }
    rows
}

/// A value as the text its Snowflake cast reads exactly (see `cdc::sql`, "Staging"); `None`
/// for NULL and unavailable values.
pub fn stage_text(kind: StageKind, value: &Value) -> Option<String> {
    Some(match (kind, value) {
        (_, Value::Null | Value::Unavailable) => return None,
        (_, Value::Bool(b)) => b.to_string(),
        (_, Value::Int(i)) => i.to_string(),
        (_, Value::Float(x)) => x.to_string(),
        (_, Value::Date(d)) => d.format("%Y-%m-%d").to_string(),
        (_, Value::Time(t)) => t.format("%H:%M:%S%.f").to_string(),
        (_, Value::Timestamp(ts)) => ts.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
        (_, Value::TimestampTz(ts)) => ts.format("%Y-%m-%d %H:%M:%S%.f%:z").to_string(),
        (StageKind::Blob, Value::Bytes(b)) => hex(b),
        (_, Value::String(s) | Value::BigDecimal(s)) => s.clone(),
        (_, Value::Json(j)) => j.to_string(),
        (_, Value::Uuid(u)) => u.hyphenated().to_string(),
        (_, Value::Array(_) | Value::Map(_) | Value::Struct(_)) => {
            serde_json::to_string(value).unwrap_or_default()
        }
        (_, other) => other.to_string(),
    })
}

/// The staging table of the `index`-th table of a batch.
fn staging_name(index: usize) -> String {
    format!("__cdcctl_staging_{index}")
}

impl Catalog for Session {
    fn dialect(&self) -> Dialect {
        DIALECT
    }

    fn default_schema(&self) -> &str {
        self.client.schema()
    }

    fn read_columns(&mut self, table: &TableName) -> Result<Option<Vec<(String, WarehouseType)>>> {
        let schema = table
            .schema
            .as_deref()
            .unwrap_or_else(|| self.client.schema());
        let result = self.run(
            "SELECT column_name, data_type, numeric_precision, numeric_scale, \
             character_maximum_length FROM information_schema.columns \
             WHERE table_catalog = CURRENT_DATABASE() AND table_schema = ? AND table_name = ? \
             ORDER BY ordinal_position",
            &[
                Bind::Text(Some(warehouse_name(DIALECT, schema))),
                Bind::Text(Some(warehouse_name(DIALECT, &table.table))),
            ],
            Retry::Idempotent,
        )?;
        let columns: Vec<(String, WarehouseType)> = result
            .rows
            .iter()
            .filter_map(|row| {
                let cell = |i: usize| row.get(i).cloned().flatten();
                let name = cell(0)?;
                let ty = type_text(&cell(1)?, cell(2), cell(3), cell(4));
                Some((name, WarehouseType::parse(DIALECT, &ty)))
            })
            .collect();
        Ok((!columns.is_empty()).then_some(columns))
    }

    fn execute_ddl(&mut self, sql: &str) -> Result<()> {
        self.run(sql, &[], Retry::Idempotent)?;
        Ok(())
    }
}

/// The type text of an `information_schema.columns` row: `NUMBER(p,s)`, `VARCHAR(n)` (`TEXT`
/// when unbounded), or the type name.
fn type_text(
    data_type: &str,
    precision: Option<String>,
    scale: Option<String>,
    length: Option<String>,
) -> String {
    match data_type.to_ascii_uppercase().as_str() {
        "NUMBER" | "DECIMAL" | "NUMERIC" => match (precision, scale) {
            (Some(p), Some(s)) => format!("NUMBER({p},{s})"),
            _ => "NUMBER(38,0)".into(),
        },
        "TEXT" | "VARCHAR" => match length.and_then(|l| l.parse::<u64>().ok()) {
            Some(n) if n < 16_777_216 => format!("VARCHAR({n})"),
            _ => "TEXT".into(),
        },
        other => other.to_string(),
    }
}

impl Sink for SnowflakeSink {
    fn describe(&self) -> String {
        format!(
            "Snowflake {}.{} at {}",
            self.session.client.database(),
            self.session.client.schema(),
            self.session.client.endpoint()
        )
    }

    fn dialect(&self) -> Dialect {
        DIALECT
    }

    fn apply(&mut self, writes: &[TableWrite<'_>]) -> Result<Applied> {
        let mut applied = Applied::default();
        let result = writes
            .iter()
            .enumerate()
            .try_for_each(|(index, write)| self.apply_table(index, write, &mut applied));
        if result.is_err() {
            // A failed ALTER may have left the table as it was: read it again next time.
            self.tables.forget();
        }
        result.map(|()| applied)
    }

    fn row_count(&mut self, table: &TableName) -> Result<Option<u64>> {
        if self.session.read_columns(table)?.is_none() {
            return Ok(None);
        }
        let result = self.session.run(
            &format!("SELECT count(*) FROM {}", table.sql(DIALECT)),
            &[],
            Retry::Idempotent,
        )?;
        Ok(result.scalar().and_then(|n| n.parse().ok()))
    }
}

fn merge_spec<'a>(
    target: &'a TableName,
    staging: &'a str,
    p: &'a Prepared,
    soft_delete: bool,
) -> MergeSpec<'a> {
    MergeSpec {
        target,
        staging,
        columns: &p.columns,
        key: &p.key,
        unavailable: &p.unavailable,
        soft_delete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_staged_as_exact_text() {
        use chrono::{NaiveDate, TimeZone, Utc};
        let date = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        let cases: Vec<(StageKind, Value, Option<&str>)> = vec![
            (StageKind::Int, Value::Int(-42), Some("-42")),
            (StageKind::Bool, Value::Bool(true), Some("true")),
            (
                StageKind::Text,
                Value::BigDecimal("12345678901234567890.12".into()),
                Some("12345678901234567890.12"),
            ),
            (StageKind::Date, Value::Date(date), Some("2024-02-29")),
            (
                StageKind::Timestamp,
                Value::Timestamp(date.and_hms_micro_opt(1, 2, 3, 4).unwrap()),
                Some("2024-02-29 01:02:03.000004"),
            ),
            (
                StageKind::UtcTimestamp,
                Value::TimestampTz(
                    Utc.with_ymd_and_hms(2024, 2, 29, 23, 0, 0)
                        .unwrap()
                        .fixed_offset(),
                ),
                Some("2024-02-29 23:00:00+00:00"),
            ),
            (
                StageKind::Blob,
                Value::Bytes(vec![0, 15, 255]),
                Some("000fff"),
            ),
            (StageKind::Text, Value::Null, None),
            (StageKind::Text, Value::Unavailable, None),
            (
                StageKind::Text,
                Value::String("it's \"quoted\"".into()),
                Some("it's \"quoted\""),
            ),
        ];
        for (kind, value, want) in cases {
            assert_eq!(stage_text(kind, &value).as_deref(), want, "{value:?}");
        }
    }

    #[test]
    fn information_schema_types_are_rebuilt() {
        assert_eq!(
            type_text("NUMBER", Some("12".into()), Some("2".into()), None),
            "NUMBER(12,2)"
        );
        assert_eq!(
            type_text("TEXT", None, None, Some("16777216".into())),
            "TEXT"
        );
        assert_eq!(
            type_text("TEXT", None, None, Some("20".into())),
            "VARCHAR(20)"
        );
        assert_eq!(type_text("TIMESTAMP_TZ", None, None, None), "TIMESTAMP_TZ");
        assert_eq!(
            WarehouseType::parse(
                DIALECT,
                &type_text("NUMBER", Some("38".into()), Some("0".into()), None)
            ),
            WarehouseType::Decimal {
                precision: 38,
                scale: 0
            }
        );
    }
}
