//! What the sinks of `cdcctl load` share, whatever the warehouse: the [`Sink`] trait the
//! loader drives, and preparing a target table for a batch ([`Tables::prepare`]): create it on
//! first sight from the Connect schema, evolve it (`ADD COLUMN`, widening), keep columns the
//! source dropped, and refuse an incompatible type change with the statement to run.
//! DuckDB ([`super::duckdb`]) and Snowflake ([`super::snowflake_sink`]) differ only in how they
//! stage rows and run statements.

use std::collections::HashMap;

use anyhow::{Context, Result};

use crate::cdc::batch::{TablePlan, Upsert};
use crate::cdc::event::{Row, Value};
use crate::cdc::schema::{
    self, Dialect, SchemaChange, TableName, TableOptions, WarehouseColumn, WarehouseType,
    create_table_sql, is_metadata_column, quote_ident, warehouse_name,
};
use crate::error::CliError;

/// A warehouse the loader writes to.
pub trait Sink: Send {
    /// Where the rows go, for messages: the DuckDB file, the Snowflake endpoint and database.
    fn describe(&self) -> String;
    /// The SQL dialect, for naming tables in messages.
    fn dialect(&self) -> Dialect;
    /// Applies one batch in one transaction: all of it lands, or none of it.
    fn apply(&mut self, writes: &[TableWrite<'_>]) -> Result<Applied>;
    /// The number of rows of a target table; `None` when it does not exist.
    fn row_count(&mut self, table: &TableName) -> Result<Option<u64>>;
}

/// A value bound to a [`SqlSession`] statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    /// An integer.
    Int(Option<i64>),
    /// Text.
    Text(Option<String>),
    /// A boolean.
    Bool(Option<bool>),
}

/// A warehouse session for commands that run their own statements (`scd2`): DuckDB's
/// connection, or a Snowflake session.
pub trait SqlSession: Catalog {
    /// Runs a statement; returns the rows it inserted, updated or deleted.
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64>;
    /// Runs a query whose columns are all text (cast them), returning its rows.
    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<Option<String>>>>;
    /// Whether `BEGIN`/`COMMIT` make several statements one transaction (DuckDB). Without,
    /// every statement commits on its own, so callers order idempotent statements.
    fn transactions(&self) -> bool;
}

/// One table's part of a batch: where it goes and what to apply.
#[derive(Debug, Clone, Copy)]
pub struct TableWrite<'a> {
    /// The target table.
    pub target: &'a TableName,
    /// The compacted events of the table.
    pub plan: &'a TablePlan,
}

/// What one [`Sink::apply`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Tables created.
    pub created: Vec<TableName>,
    /// `ALTER TABLE` statements run.
    pub altered: Vec<String>,
    /// Target columns the source no longer sends: kept, reported (table, column).
    pub dropped_in_source: Vec<(TableName, String)>,
    /// Rows inserted, updated or deleted.
    pub rows_changed: u64,
    /// Truncates applied.
    pub truncates: u64,
    /// Statements run against the warehouse (transaction control not counted).
    pub statements: u64,
    /// Rows appended to changes tables (`load --history`).
    pub changes_recorded: u64,
}

impl Applied {
    /// Adds what another apply did.
    pub fn add(&mut self, other: Applied) {
        self.created.extend(other.created);
        self.altered.extend(other.altered);
        self.dropped_in_source.extend(other.dropped_in_source);
        self.rows_changed += other.rows_changed;
        self.truncates += other.truncates;
        self.statements += other.statements;
        self.changes_recorded += other.changes_recorded;
    }
}

/// The catalog side of a warehouse: what [`Tables::prepare`] needs.
pub trait Catalog {
    /// The dialect of the statements.
    fn dialect(&self) -> Dialect;
    /// The schema of target names without one.
    fn default_schema(&self) -> &str;
    /// The columns of a table (name, parsed type), or `None` when it does not exist.
    fn read_columns(&mut self, table: &TableName) -> Result<Option<Vec<(String, WarehouseType)>>>;
    /// Runs one DDL statement.
    fn execute_ddl(&mut self, sql: &str) -> Result<()>;
}

/// A target table ready for the batch: the source columns to stage (target names and types),
/// target columns the source no longer sends, the key, and the columns that carried Debezium's
/// unavailable-value placeholder in this batch (indexes into `columns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Source columns, in staging order.
    pub columns: Vec<WarehouseColumn>,
    /// Target columns not sent by the source any more (carried over from the stored row).
    pub kept: Vec<String>,
    /// Key columns; empty when the batch has no row for the table (only a truncate).
    pub key: Vec<String>,
    /// Columns with an unavailable value in some upsert.
    pub unavailable: Vec<usize>,
}

/// The columns of the target tables seen so far, per sink.
#[derive(Debug)]
pub struct Tables {
    opts: TableOptions,
    known: HashMap<TableName, Vec<(String, WarehouseType)>>,
}

impl Tables {
    /// No table known yet.
    pub fn new(opts: TableOptions) -> Self {
        Tables {
            opts,
            known: HashMap::new(),
        }
    }

    /// The table options (`--soft-delete`, `--primary-key`).
    pub fn opts(&self) -> TableOptions {
        self.opts
    }

    /// Forgets what is known: after a rollback, the batch's DDL may be undone.
    pub fn forget(&mut self) {
        self.known.clear();
    }

    /// Creates or evolves the target of `write` for its schema (module doc) and works out the
    /// key and the unavailable columns.
    pub fn prepare(
        &mut self,
        db: &mut impl Catalog,
        write: &TableWrite<'_>,
        applied: &mut Applied,
    ) -> Result<Prepared> {
        let (target, plan) = (write.target, write.plan);
        let dialect = db.dialect();
        if !plan.keyless.is_empty() {
            return Err(CliError::Failed {
                message: format!(
                    "source table {} has no primary key: its changes cannot be merged into {}",
                    plan.table,
                    target.sql(dialect)
                ),
                hint: Some(
                    "add a primary key to the source table, or set `message.key.columns` in \
                     the connector so Debezium keys its messages"
                        .into(),
                ),
            }
            .into());
        }
        let (columns, kept) = self.layout(db, target, plan, applied)?;
        let key: Vec<String> = match (plan.upserts.first(), plan.deletes.first()) {
            (Some(u), _) => u.key.names().map(str::to_owned).collect(),
            (None, Some(d)) => d.key.names().map(str::to_owned).collect(),
            (None, None) => Vec::new(),
        };
        if let Some(missing) = key.iter().find(|k| !columns.iter().any(|c| &c.name == *k)) {
            anyhow::bail!(
                "key column `{missing}` of {} is not a column of its row schema",
                plan.table
            );
        }
        let unavailable = unavailable_columns(&columns, &plan.upserts);
        Ok(Prepared {
            columns,
            kept,
            key,
            unavailable,
        })
    }

    /// Creates or evolves the changes table of `write`'s target (`load --history`,
    /// [`TableName::changes_table`]) like [`Tables::prepare`]; its unavailable columns are those
    /// of any change of the batch ([`TablePlan::history`]), not only of the final rows.
    pub fn prepare_changes(
        &mut self,
        db: &mut impl Catalog,
        write: &TableWrite<'_>,
        applied: &mut Applied,
    ) -> Result<(TableName, Prepared)> {
        let changes = write.target.changes_table();
        let change_write = TableWrite {
            target: &changes,
            plan: write.plan,
        };
        let mut prepared = self.prepare(db, &change_write, applied)?;
        prepared.unavailable = unavailable_columns(&prepared.columns, &write.plan.history.upserts);
        Ok((changes, prepared))
    }

    /// Creates or evolves the table; returns the source columns to stage and the target
    /// columns the source no longer sends.
    fn layout(
        &mut self,
        db: &mut impl Catalog,
        target: &TableName,
        plan: &TablePlan,
        applied: &mut Applied,
    ) -> Result<(Vec<WarehouseColumn>, Vec<String>)> {
        let dialect = db.dialect();
        let current = match self.known.get(target) {
            Some(columns) => Some(columns.clone()),
            None => db.read_columns(target)?,
        };
        let Some(source) = &plan.schema else {
            // Schemas disabled: the existing table says what the columns are.
            let Some(current) = current else {
                return Err(CliError::Failed {
                    message: format!(
                        "the messages of {} carry no schema, so {} cannot be created",
                        plan.table,
                        target.sql(dialect)
                    ),
                    hint: Some(
                        "enable schemas in the connector (`value.converter.schemas.enable=true`, \
                         `cdcctl create-connector` does), or create the table yourself"
                            .into(),
                    ),
                }
                .into());
            };
            let columns = current
                .into_iter()
                .filter(|(name, _)| !is_metadata_column(name))
                .map(|(name, ty)| WarehouseColumn { name, ty })
                .collect();
            return Ok((columns, Vec::new()));
        };
        let wanted =
            schema::target_columns(dialect, source, self.opts).map_err(|e| CliError::Failed {
                message: format!("cannot lay out {} in {}: {e}", plan.table, name_of(dialect)),
                hint: Some("rename the source column".into()),
            })?;
        let mut kept = Vec::new();
        match current {
            None => {
                let schema_name = target
                    .schema
                    .clone()
                    .unwrap_or_else(|| db.default_schema().to_string());
                // A role allowed to create tables in an existing schema need not be allowed to
                // create schemas (Snowflake checks that even when the schema exists): if this
                // fails and the schema is really missing, CREATE TABLE says so.
                if let Err(e) = db.execute_ddl(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {}",
                    quote_ident(dialect, &schema_name)
                )) {
                    tracing::debug!("CREATE SCHEMA IF NOT EXISTS failed: {e:#}");
                }
                let ddl = create_table_sql(dialect, target, source, self.opts)?;
                db.execute_ddl(&ddl)
                    .with_context(|| format!("cannot create {}", target.sql(dialect)))?;
                applied.created.push(target.clone());
                // As the warehouse reports them (Snowflake upper-cases names).
                self.known.insert(
                    target.clone(),
                    wanted
                        .iter()
                        .map(|c| (warehouse_name(dialect, &c.name), c.ty.normalize(dialect)))
                        .collect(),
                );
            }
            Some(current) => {
                let change = schema::compare(dialect, &current, source, self.opts)?;
                evolve(db, target, plan, &change, applied)?;
                kept.clone_from(&change.dropped_in_source);
                if change.added.is_empty() && change.widened.is_empty() {
                    self.known.insert(target.clone(), current);
                } else {
                    self.known.remove(target);
                }
            }
        }
        let columns = wanted
            .into_iter()
            .filter(|c| !is_metadata_column(&c.name))
            .collect();
        Ok((columns, kept))
    }
}

fn name_of(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::DuckDb => "DuckDB",
        Dialect::Snowflake => "Snowflake",
    }
}

fn evolve(
    db: &mut impl Catalog,
    target: &TableName,
    plan: &TablePlan,
    change: &SchemaChange,
    applied: &mut Applied,
) -> Result<()> {
    let dialect = db.dialect();
    if let Some(first) = change.incompatible.first() {
        let all: Vec<String> = change
            .incompatible
            .iter()
            .map(|c| format!("`{}` {} → {}", c.column, c.from, c.to))
            .collect();
        return Err(CliError::Failed {
            message: format!(
                "the source schema of {} changed incompatibly for {}: {} (cdcctl never casts \
                 silently)",
                plan.table,
                target.sql(dialect),
                all.join(", ")
            ),
            hint: Some(format!(
                "migrate the column yourself (e.g. `ALTER TABLE {} ALTER COLUMN {} SET DATA \
                 TYPE {}` in {}), or load the table into a new target with --table-map",
                target.sql(dialect),
                quote_ident(dialect, &first.column),
                first.to.sql(dialect),
                name_of(dialect)
            )),
        }
        .into());
    }
    for statement in change.alter_statements(dialect, target) {
        db.execute_ddl(&statement)
            .with_context(|| format!("cannot evolve {}", target.sql(dialect)))?;
        applied.altered.push(statement);
    }
    for column in &change.dropped_in_source {
        applied
            .dropped_in_source
            .push((target.clone(), column.clone()));
    }
    Ok(())
}

/// The indexes of `columns` that are unavailable in some of `upserts`.
fn unavailable_columns(columns: &[WarehouseColumn], upserts: &[Upsert]) -> Vec<usize> {
    (0..columns.len())
        .filter(|&i| {
            upserts
                .iter()
                .any(|u| value_of(&u.row, i, &columns[i].name).is_some_and(Value::is_unavailable))
        })
        .collect()
}

/// The value of column `name`, found at `index` when the row has the schema's column order.
pub fn value_of<'r>(row: &'r Row, index: usize, name: &str) -> Option<&'r Value> {
    match row.iter().nth(index) {
        Some((n, v)) if n == name => Some(v),
        _ => row.get(name),
    }
}
