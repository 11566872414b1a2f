//! The statements a sink runs to apply one compacted batch to a target table (DESIGN.md,
//! "Delivery semantics of `load`"). Pure: statement text only; values are never in it (they go
//! through a staging table or bound parameters), and every identifier is quoted.
//!
//! # Staging
//!
//! The batch's rows for one table ([`Upsert`](super::batch::Upsert)s and
//! [`Delete`](super::batch::Delete)s, one per key) are appended to a temporary staging table
//! ([`staging_table_sql`]): the source columns, each in a [`StageKind`] the sink can append
//! natively, then the event's operation ([`STAGE_OP`]), LSN ([`STAGE_LSN`]) and source commit time
//! in milliseconds ([`STAGE_TS_MS`]), then one boolean per column that carried Debezium's
//! unavailable-value placeholder in this batch ([`unavailable_flag`]).
//!
//! Snowflake stages every value as **text** instead ([`stage_values_sql`]): one
//! `CREATE OR REPLACE TEMPORARY TABLE … AS SELECT … FROM VALUES (?, …), …` whose values are
//! all bound parameters, in the text form the MERGE's casts read exactly (decimals as written,
//! timestamps with zone as `… +00:00`, binary as hex, semi-structured values as JSON text).
//! So a batch costs Snowflake two statements per table (stage, MERGE) plus transaction
//! control; more only when a batch needs more than [`MAX_BINDS_PER_STATEMENT`] values.
//!
//! # MERGE
//!
//! One `MERGE` ([`merge_sql`]) per table and batch, keyed on the key columns. The source is a
//! `SELECT` that casts every staged column to its target type (exact: decimals and timestamps
//! with zone are staged as text and epoch microseconds, never as floats). `newer` is
//! "the staged event's LSN is above the stored `_cdc_source_lsn`, or either is unknown":
//!
//! | stored row | staged op | effect |
//! |---|---|---|
//! | present, `newer` | `d` | `DELETE` (soft delete: `_cdc_deleted = true`, values kept) |
//! | present, `newer` | `c`/`r`/`u` | `UPDATE` every non-key column; a column flagged unavailable keeps the stored value |
//! | present, not `newer` | any | nothing: a replayed or late event never overwrites a newer row |
//! | absent | `c`/`r`/`u` | `INSERT` |
//! | absent | `d` | nothing (soft delete: `INSERT` of the before image, `_cdc_deleted = true`) |
//!
//! A column flagged unavailable is resolved in the MERGE's source (a left join of the stored
//! row), so the `UPDATE` only assigns source columns.
//!
//! The MERGE's source keeps one row per key (the highest LSN, `QUALIFY ROW_NUMBER() …`):
//! the batch is compacted per key already, and real Snowflake refuses a nondeterministic MERGE
//! (error 100090) if it ever were not.
//!
//! Replaying any batch again therefore changes nothing, which makes the effect of at-least-once
//! delivery exactly once.
//!
//! # Replace: the same effect without `UPDATE` (DuckDB)
//!
//! DuckDB's `UPDATE` of wide rows gets slower with every batch (measured: a MERGE of 12k rows of
//! ~3 KB into a 20k-row table took 0.1 s on the first batch and 2.7 s by the sixth), while a
//! delete plus an insert of the same rows stays at ~0.1 s. So DuckDB applies the table above as
//! [`replace_sql`]: (1) the staged rows that change something — absent, or `newer` — are
//! resolved against the stored rows into a temporary table (unavailable columns and, for a soft
//! delete, the stored values are taken from the stored row; target columns the source no longer
//! sends are carried over), (2) the stored rows of those keys are deleted, (3) the resolved rows
//! are inserted (hard delete: all but deletes). Same table, same outcome, in one transaction.
//!
//! # Changes (`load --history`)
//!
//! A table loaded with `--history` also gets a changes table, `<table>__changes`: the source
//! columns and metadata columns, plus `_cdc_seq`, one row per change (no key). The batch's
//! changes ([`History`](super::batch::History)) are staged like its rows, then
//! [`changes_insert_sql`] appends those not recorded yet — idempotent by (key,
//! `_cdc_source_lsn`), so a replayed batch appends nothing — **before** the target is changed:
//! a column still unavailable takes the value stored in the target, the row as it stood before
//! the batch. `_cdc_seq` numbers the appended rows after the highest one stored, in LSN order:
//! a reader (`cdcctl scd2`) that remembers the highest `_cdc_seq` it has read sees exactly the
//! rows appended since, whatever their LSN (partitions interleave LSNs). A truncate is recorded
//! as a row with op `t`, null columns, and its own LSN ([`changes_truncate_sql`]).
//!
//! # Truncate
//!
//! [`truncate_sql`] deletes (soft delete: flags) the rows stored with an LSN below the truncate's,
//! so changes committed after the truncate and loaded by an earlier batch survive.

use std::fmt::Write as _;

use super::schema::{
    CDC_DELETED, CDC_OPERATION, CDC_PROCESSED_AT, CDC_SEQ, CDC_SOURCE_LSN, CDC_TIMESTAMP, Dialect,
    TableName, WarehouseColumn, WarehouseType, quote_ident,
};

/// Staging column of the event's operation code (`c`, `r`, `u`, `d`).
pub const STAGE_OP: &str = "__cdcctl_op";
/// Staging column of the event's `source.lsn`.
pub const STAGE_LSN: &str = "__cdcctl_lsn";
/// Staging column of the event's `source.ts_ms`.
pub const STAGE_TS_MS: &str = "__cdcctl_ts_ms";

/// The staging column flagging rows whose source column number `index` was unavailable.
pub fn unavailable_flag(index: usize) -> String {
    format!("__cdcctl_unavailable_{index}")
}

/// How a column's values are staged: a type the sink appends without conversion, from which
/// the MERGE casts to the target type exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    /// `BOOLEAN`.
    Bool,
    /// `BIGINT` (every integer width).
    Int,
    /// `DOUBLE` (`REAL` too).
    Double,
    /// `DATE`.
    Date,
    /// `TIME`, microseconds.
    Time,
    /// `TIMESTAMP`, microseconds.
    Timestamp,
    /// `TIMESTAMP` microseconds of a timestamp with zone's UTC instant (DuckDB reads a
    /// `TIMESTAMP` as UTC when cast to `TIMESTAMPTZ`).
    UtcTimestamp,
    /// `BLOB`.
    Blob,
    /// `VARCHAR` cast to the target type: text, decimals (exact text), json, uuid, time with
    /// zone.
    Text,
    /// `VARCHAR` holding JSON, cast through JSON to a list, map or struct type.
    JsonText,
}

impl StageKind {
    /// The staging kind of a target column type.
    pub fn of(ty: &WarehouseType) -> Self {
        use WarehouseType as W;
        match ty {
            W::Boolean => Self::Bool,
            W::TinyInt | W::SmallInt | W::Integer | W::BigInt => Self::Int,
            W::Real | W::Double => Self::Double,
            W::Date => Self::Date,
            W::Time => Self::Time,
            W::Timestamp => Self::Timestamp,
            W::TimestampTz => Self::UtcTimestamp,
            W::Blob => Self::Blob,
            W::List(_) | W::Map(..) | W::Struct(_) => Self::JsonText,
            W::Decimal { .. }
            | W::Text
            | W::Varchar(_)
            | W::TimeTz
            | W::Json
            | W::Uuid
            | W::Variant
            | W::Object
            | W::Other(_) => Self::Text,
        }
    }

    /// The staging column type.
    fn sql(self) -> &'static str {
        match self {
            Self::Bool => "BOOLEAN",
            Self::Int => "BIGINT",
            Self::Double => "DOUBLE",
            Self::Date => "DATE",
            Self::Time => "TIME",
            Self::Timestamp | Self::UtcTimestamp => "TIMESTAMP",
            Self::Blob => "BLOB",
            Self::Text | Self::JsonText => "VARCHAR",
        }
    }
}

/// What one MERGE of a batch into one target table needs.
#[derive(Debug, Clone, Copy)]
pub struct MergeSpec<'a> {
    /// The target table.
    pub target: &'a TableName,
    /// The staging table's (unqualified) name.
    pub staging: &'a str,
    /// The source columns staged, in staging order, with their target types.
    pub columns: &'a [WarehouseColumn],
    /// The key columns (names among `columns`).
    pub key: &'a [String],
    /// Indexes into `columns` of the columns that have an unavailable flag in this batch.
    pub unavailable: &'a [usize],
    /// `--soft-delete`.
    pub soft_delete: bool,
}

impl MergeSpec<'_> {
    fn is_key(&self, column: &str) -> bool {
        self.key.iter().any(|k| k == column)
    }

    /// Column `index` of the staged row `staged`, or, when the column is flagged unavailable
    /// (never a key column), the value of the stored row `stored`.
    fn value_or_stored(
        &self,
        dialect: Dialect,
        index: usize,
        staged: &str,
        stored: &str,
    ) -> String {
        let name = quote_ident(dialect, &self.columns[index].name);
        if self.unavailable.contains(&index) && !self.is_key(&self.columns[index].name) {
            let flag = quote_ident(dialect, &unavailable_flag(index));
            format!("CASE WHEN {staged}.{flag} THEN {stored}.{name} ELSE {staged}.{name} END")
        } else {
            format!("{staged}.{name}")
        }
    }

    /// `t.k1 = other.k1 AND ...` over the key columns.
    fn key_match(&self, dialect: Dialect, other: &str) -> String {
        let q = |name: &str| quote_ident(dialect, name);
        let parts: Vec<String> = self
            .key
            .iter()
            .map(|k| format!("t.{} = {other}.{}", q(k), q(k)))
            .collect();
        parts.join(" AND ")
    }
}

/// The staging table's columns, in order: the source columns, the operation, LSN and source
/// time, then the unavailable flags (module doc, "Staging").
fn staging_columns(spec: &MergeSpec<'_>) -> Vec<(String, &'static str)> {
    let mut columns: Vec<(String, &'static str)> = spec
        .columns
        .iter()
        .map(|c| (c.name.clone(), StageKind::of(&c.ty).sql()))
        .collect();
    columns.push((STAGE_OP.into(), "VARCHAR"));
    columns.push((STAGE_LSN.into(), "BIGINT"));
    columns.push((STAGE_TS_MS.into(), "BIGINT"));
    for &i in spec.unavailable {
        columns.push((unavailable_flag(i), "BOOLEAN"));
    }
    columns
}

/// The number of values in one row of the staging table.
pub fn staging_width(spec: &MergeSpec<'_>) -> usize {
    spec.columns.len() + 3 + spec.unavailable.len()
}

/// `CREATE OR REPLACE TEMP TABLE` for the staging table (module doc, "Staging").
pub fn staging_table_sql(dialect: Dialect, spec: &MergeSpec<'_>) -> String {
    let q = |name: &str| quote_ident(dialect, name);
    let columns: Vec<String> = staging_columns(spec)
        .iter()
        .map(|(name, ty)| format!("{} {ty}", q(name)))
        .collect();
    let temp = temporary(dialect);
    format!(
        "CREATE OR REPLACE {temp} TABLE {} ({})",
        q(spec.staging),
        columns.join(", ")
    )
}

/// Most bound values in one statement of Snowflake staging: its statement text (~3 bytes a
/// placeholder) stays far below Snowflake's 1 MB limit.
pub const MAX_BINDS_PER_STATEMENT: usize = 100_000;

/// Snowflake staging of `rows` rows whose values are bound as text, row by row in
/// [`staging_columns`] order (module doc, "Staging"): `create` makes the staging table from
/// them, otherwise they are added to it.
pub fn stage_values_sql(
    dialect: Dialect,
    spec: &MergeSpec<'_>,
    rows: usize,
    create: bool,
) -> String {
    let q = |name: &str| quote_ident(dialect, name);
    let names: Vec<String> = staging_columns(spec).into_iter().map(|(n, _)| n).collect();
    let row = format!("({})", vec!["?"; names.len()].join(", "));
    let mut values = String::with_capacity(rows * (row.len() + 2));
    for i in 0..rows {
        if i > 0 {
            values.push_str(", ");
        }
        values.push_str(&row);
    }
    if create {
        let select: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("column{} AS {}", i + 1, q(name)))
            .collect();
        format!(
            "CREATE OR REPLACE {} TABLE {} AS SELECT {} FROM VALUES {values}",
            temporary(dialect),
            q(spec.staging),
            select.join(", ")
        )
    } else {
        let columns: Vec<String> = names.iter().map(|n| q(n)).collect();
        format!(
            "INSERT INTO {} ({}) VALUES {values}",
            q(spec.staging),
            columns.join(", ")
        )
    }
}

/// The expression reading staged column `name` of `kind` as target type `ty`.
fn cast_expr(dialect: Dialect, name: &str, ty: &WarehouseType, kind: StageKind) -> String {
    let col = quote_ident(dialect, name);
    let target = ty.sql(dialect);
    let semi_structured = matches!(
        ty,
        WarehouseType::Variant | WarehouseType::Object | WarehouseType::Json
    );
    match dialect {
        Dialect::DuckDb => match kind {
            StageKind::JsonText => format!("CAST(CAST({col} AS JSON) AS {target})"),
            _ => format!("CAST({col} AS {target})"),
        },
        // Staged as text (module doc, "Staging").
        Dialect::Snowflake => match kind {
            StageKind::Blob => format!("TO_BINARY({col}, 'HEX')"),
            _ if semi_structured || kind == StageKind::JsonText => match ty {
                WarehouseType::Variant | WarehouseType::Json => format!("PARSE_JSON({col})"),
                _ => format!("CAST(PARSE_JSON({col}) AS {target})"),
            },
            _ => format!("CAST({col} AS {target})"),
        },
    }
}

/// The select list reading the staging table: every staged column cast to its target type,
/// the operation, the LSN, the source commit time as `_cdc_timestamp`, and the flags.
fn staged_select(dialect: Dialect, spec: &MergeSpec<'_>) -> Vec<String> {
    let q = |name: &str| quote_ident(dialect, name);
    let mut select: Vec<String> = spec
        .columns
        .iter()
        .map(|c| {
            let kind = StageKind::of(&c.ty);
            format!(
                "{} AS {}",
                cast_expr(dialect, &c.name, &c.ty, kind),
                q(&c.name)
            )
        })
        .collect();
    select.push(q(STAGE_OP));
    let flag = |i: usize| q(&unavailable_flag(i));
    match dialect {
        Dialect::DuckDb => {
            select.push(q(STAGE_LSN));
            select.push(format!("{} AS {}", event_time(dialect), q(CDC_TIMESTAMP)));
            select.extend(spec.unavailable.iter().map(|&i| flag(i)));
        }
        // Staged as text.
        Dialect::Snowflake => {
            select.push(format!(
                "CAST({lsn} AS NUMBER(38,0)) AS {lsn}",
                lsn = q(STAGE_LSN)
            ));
            select.push(format!("{} AS {}", event_time(dialect), q(CDC_TIMESTAMP)));
            select.extend(
                spec.unavailable
                    .iter()
                    .map(|&i| format!("CAST({f} AS BOOLEAN) AS {f}", f = flag(i))),
            );
        }
    }
    select
}

/// `TEMP` / `TEMPORARY`: the temporary-table keyword of the dialect.
fn temporary(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::DuckDb => "TEMP",
        Dialect::Snowflake => "TEMPORARY",
    }
}

/// The current time, for `_cdc_processed_at`.
fn now(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::DuckDb => "now()",
        Dialect::Snowflake => "CURRENT_TIMESTAMP()",
    }
}

/// The metadata columns every insert writes, in this order: the staged operation, source
/// commit time, LSN, and [`now`].
const WRITTEN_METADATA: [&str; 4] = [
    CDC_OPERATION,
    CDC_TIMESTAMP,
    CDC_SOURCE_LSN,
    CDC_PROCESSED_AT,
];

/// The source commit time of the staged event as a timestamp with zone.
fn event_time(dialect: Dialect) -> String {
    millis_to_timestamptz(dialect, &quote_ident(dialect, STAGE_TS_MS))
}

/// `ms` (an expression of milliseconds since the epoch) as a timestamp with zone.
pub fn millis_to_timestamptz(dialect: Dialect, ms: &str) -> String {
    match dialect {
        Dialect::DuckDb => format!("CAST(epoch_ms(CAST({ms} AS BIGINT)) AS TIMESTAMPTZ)"),
        Dialect::Snowflake => format!("TO_TIMESTAMP_TZ(CAST({ms} AS NUMBER(38,0)), 3)"),
    }
}

/// The appending of the staged changes to a changes table (module doc, "Changes"):
/// `spec.target` is the changes table, `stored` the table whose stored row fills columns still
/// unavailable. Changes without an LSN are not recorded (they could not be told apart).
pub fn changes_insert_sql(dialect: Dialect, spec: &MergeSpec<'_>, stored: &TableName) -> String {
    let q = |name: &str| quote_ident(dialect, name);
    let (op, lsn) = (q(STAGE_OP), q(STAGE_LSN));
    let changes = spec.target.sql(dialect);
    let mut columns: Vec<String> = Vec::with_capacity(spec.columns.len() + 5);
    let mut values: Vec<String> = Vec::with_capacity(spec.columns.len() + 5);
    for (i, c) in spec.columns.iter().enumerate() {
        let name = q(&c.name);
        columns.push(name.clone());
        values.push(spec.value_or_stored(dialect, i, "s", "t"));
    }
    columns.extend(WRITTEN_METADATA.iter().map(|c| q(c)));
    columns.push(q(CDC_SEQ));
    values.extend([
        format!("s.{op}"),
        format!("s.{}", q(CDC_TIMESTAMP)),
        format!("s.{lsn}"),
        now(dialect).to_string(),
    ]);
    let base = q("__cdcctl_base");
    values.push(format!(
        "m.{base} + ROW_NUMBER() OVER (ORDER BY s.{lsn}, s.{op})"
    ));
    let keys: Vec<String> = spec.key.iter().map(|k| q(k)).collect();
    let recorded: Vec<String> = spec
        .key
        .iter()
        .map(|k| format!("c.{} = s.{}", q(k), q(k)))
        .chain([format!("c.{} = s.{lsn}", q(CDC_SOURCE_LSN))])
        .collect();
    format!(
        "INSERT INTO {changes} ({}) SELECT {} FROM (SELECT * FROM (SELECT {} FROM {})          QUALIFY ROW_NUMBER() OVER (PARTITION BY {}, {lsn} ORDER BY {op}) = 1) AS s          LEFT JOIN {} AS t ON ({})          CROSS JOIN (SELECT COALESCE(MAX({}), 0) AS {base} FROM {changes}) AS m          WHERE s.{lsn} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {changes} AS c WHERE {})",
        columns.join(", "),
        values.join(", "),
        staged_select(dialect, spec).join(", "),
        q(spec.staging),
        keys.join(", "),
        stored.sql(dialect),
        spec.key_match(dialect, "s"),
        q(CDC_SEQ),
        recorded.join(" AND ")
    )
}

/// The recording of a truncate in a changes table (module doc, "Changes"), unless recorded
/// already. Parameters: the truncate's commit time (ms since the epoch), its LSN, its LSN again.
pub fn changes_truncate_sql(dialect: Dialect, changes: &TableName) -> String {
    let q = |name: &str| quote_ident(dialect, name);
    let table = changes.sql(dialect);
    let (op, lsn, seq) = (q(CDC_OPERATION), q(CDC_SOURCE_LSN), q(CDC_SEQ));
    format!(
        "INSERT INTO {table} ({op}, {}, {lsn}, {}, {seq})          SELECT 't', {}, ?, {}, m.base + 1 FROM (SELECT COALESCE(MAX({seq}), 0) AS base          FROM {table}) AS m WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {op} = 't' AND {lsn} = ?)",
        q(CDC_TIMESTAMP),
        q(CDC_PROCESSED_AT),
        millis_to_timestamptz(dialect, "?"),
        now(dialect),
    )
}

/// Name of the temporary table of resolved rows in [`replace_sql`].
pub const CHANGED: &str = "__cdcctl_changed";

/// The statements of [`replace_sql`], run in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replace {
    /// Creates the temporary table of resolved rows ([`CHANGED`]).
    pub resolve: String,
    /// Deletes the stored rows of the resolved keys.
    pub delete: String,
    /// Inserts the resolved rows.
    pub insert: String,
    /// Drops the temporary table.
    pub drop: String,
}

/// The statements applying the staged rows by delete and insert (module doc, "Replace").
/// `kept` are target columns that are not staged (dropped in the source): carried over from
/// the stored row.
pub fn replace_sql(dialect: Dialect, spec: &MergeSpec<'_>, kept: &[String]) -> Replace {
    let q = |name: &str| quote_ident(dialect, name);
    let (op, lsn) = (q(STAGE_OP), q(STAGE_LSN));
    let stored_lsn = format!("t.{}", q(CDC_SOURCE_LSN));
    let first_key = spec.key.first().map_or_else(String::new, |k| q(k));
    let matched = format!("t.{first_key} IS NOT NULL");

    let source = staged_select(dialect, spec);

    let mut resolved: Vec<String> = spec
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let name = q(&c.name);
            if spec.is_key(&c.name) {
                return format!("s.{name}");
            }
            let mut value = spec.value_or_stored(dialect, i, "s", "t");
            if spec.soft_delete {
                value =
                    format!("CASE WHEN s.{op} = 'd' AND {matched} THEN t.{name} ELSE {value} END");
            }
            format!("{value} AS {name}")
        })
        .collect();
    resolved.extend(kept.iter().map(|k| format!("t.{} AS {}", q(k), q(k))));
    resolved.push(format!("s.{op}"));
    resolved.push(format!("s.{lsn}"));
    resolved.push(format!("s.{}", q(CDC_TIMESTAMP)));

    let on = spec.key_match(dialect, "s");
    let temp = temporary(dialect);
    let target = spec.target.sql(dialect);
    let resolve = format!(
        "CREATE OR REPLACE {temp} TABLE {} AS SELECT {} FROM (SELECT {} FROM {}) AS s \
         LEFT JOIN {target} AS t ON ({}) \
         WHERE NOT ({matched}) OR s.{lsn} IS NULL OR {stored_lsn} IS NULL OR s.{lsn} > {stored_lsn}",
        q(CHANGED),
        resolved.join(", "),
        source.join(", "),
        q(spec.staging),
        on
    );
    let delete_on = spec.key_match(dialect, "m");
    let delete = format!(
        "DELETE FROM {target} AS t USING {} AS m WHERE {}",
        q(CHANGED),
        delete_on
    );

    let mut columns: Vec<String> = spec.columns.iter().map(|c| q(&c.name)).collect();
    columns.extend(kept.iter().map(|k| q(k)));
    let mut values = columns.clone();
    columns.extend(WRITTEN_METADATA.iter().map(|c| q(c)));
    let processed_at = now(dialect);
    values.extend([
        op.clone(),
        q(CDC_TIMESTAMP),
        lsn.clone(),
        processed_at.to_string(),
    ]);
    let filter = if spec.soft_delete {
        columns.push(q(CDC_DELETED));
        values.push(format!("{op} = 'd'"));
        String::new()
    } else {
        format!(" WHERE {op} <> 'd'")
    };
    let insert = format!(
        "INSERT INTO {target} ({}) SELECT {} FROM {}{filter}",
        columns.join(", "),
        values.join(", "),
        q(CHANGED)
    );
    Replace {
        resolve,
        delete,
        insert,
        drop: format!("DROP TABLE {}", q(CHANGED)),
    }
}

/// The `MERGE` applying the staged rows to the target (module doc, "MERGE"); the Snowflake
/// sink's statement (DuckDB uses [`replace_sql`]).
pub fn merge_sql(dialect: Dialect, spec: &MergeSpec<'_>) -> String {
    let q = |name: &str| quote_ident(dialect, name);
    let (op, lsn) = (q(STAGE_OP), q(STAGE_LSN));
    let stored_lsn = format!("t.{}", q(CDC_SOURCE_LSN));

    // The staged rows cast to the target types; columns flagged unavailable take the stored
    // value here, in the source of the MERGE, so its UPDATE only assigns source columns (the
    // fakesnow emulator cannot see source columns that the target lacks in an UPDATE SET).
    let mut select = staged_select(dialect, spec);
    let mut from = q(spec.staging);
    if !spec.unavailable.is_empty() {
        let mut resolved: Vec<String> = spec
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "{} AS {}",
                    spec.value_or_stored(dialect, i, "i", "stored"),
                    q(&c.name)
                )
            })
            .collect();
        resolved.extend([
            format!("i.{op}"),
            format!("i.{lsn}"),
            format!("i.{}", q(CDC_TIMESTAMP)),
        ]);
        let stored_on: Vec<String> = spec
            .key
            .iter()
            .map(|k| format!("stored.{} = i.{}", q(k), q(k)))
            .collect();
        from = format!(
            "(SELECT {} FROM {from}) AS i LEFT JOIN {} AS stored ON ({})",
            select.join(", "),
            spec.target.sql(dialect),
            stored_on.join(" AND ")
        );
        select = resolved;
    }

    let on = spec.key_match(dialect, "s");
    let newer = format!("(s.{lsn} IS NULL OR {stored_lsn} IS NULL OR s.{lsn} > {stored_lsn})");
    let metadata = |op_value: &str| {
        vec![
            format!("{} = {op_value}", q(CDC_OPERATION)),
            format!("{} = s.{}", q(CDC_TIMESTAMP), q(CDC_TIMESTAMP)),
            format!("{} = s.{lsn}", q(CDC_SOURCE_LSN)),
            format!("{} = {}", q(CDC_PROCESSED_AT), now(dialect)),
        ]
    };

    // UPDATE of every non-key column (unavailable ones were resolved in the source).
    let mut update: Vec<String> = spec
        .columns
        .iter()
        .filter(|c| !spec.is_key(&c.name))
        .map(|c| {
            let name = q(&c.name);
            format!("{name} = s.{name}")
        })
        .collect();
    update.extend(metadata(&format!("s.{op}")));
    if spec.soft_delete {
        update.push(format!("{} = false", q(CDC_DELETED)));
    }

    // INSERT of the staged row (and the metadata).
    let mut insert_columns: Vec<String> = spec.columns.iter().map(|c| q(&c.name)).collect();
    let mut insert_values: Vec<String> = spec
        .columns
        .iter()
        .map(|c| format!("s.{}", q(&c.name)))
        .collect();
    insert_columns.extend(WRITTEN_METADATA.iter().map(|c| q(c)));
    let processed_at = now(dialect);
    insert_values.extend([
        format!("s.{op}"),
        format!("s.{}", q(CDC_TIMESTAMP)),
        format!("s.{lsn}"),
        processed_at.to_string(),
    ]);

    let mut sql = String::with_capacity(1024);
    let keys: Vec<String> = spec.key.iter().map(|k| q(k)).collect();
    let _ = write!(
        sql,
        "MERGE INTO {} AS t\nUSING (SELECT * FROM (SELECT {} FROM {from}) QUALIFY ROW_NUMBER() OVER \
         (PARTITION BY {} ORDER BY {lsn} DESC NULLS LAST) = 1) AS s\nON ({})\n",
        spec.target.sql(dialect),
        select.join(", "),
        keys.join(", "),
        on
    );
    if spec.soft_delete {
        let mut deleted = metadata(&format!("s.{op}"));
        deleted.push(format!("{} = true", q(CDC_DELETED)));
        let _ = writeln!(
            sql,
            "WHEN MATCHED AND s.{op} = 'd' AND {newer} THEN UPDATE SET {}",
            deleted.join(", ")
        );
    } else {
        let _ = writeln!(sql, "WHEN MATCHED AND s.{op} = 'd' AND {newer} THEN DELETE");
    }
    let _ = writeln!(
        sql,
        "WHEN MATCHED AND s.{op} <> 'd' AND {newer} THEN UPDATE SET {}",
        update.join(", ")
    );
    if spec.soft_delete {
        let _ = writeln!(
            sql,
            "WHEN NOT MATCHED THEN INSERT ({}, {}) VALUES ({}, s.{op} = 'd')",
            insert_columns.join(", "),
            q(CDC_DELETED),
            insert_values.join(", ")
        );
    } else {
        let _ = writeln!(
            sql,
            "WHEN NOT MATCHED AND s.{op} <> 'd' THEN INSERT ({}) VALUES ({})",
            insert_columns.join(", "),
            insert_values.join(", ")
        );
    }
    sql
}

/// The statement applying a truncate to `target` (module doc, "Truncate"). With `lsn` it has
/// one parameter, the truncate's LSN, bound by the sink; without, it clears the whole table.
pub fn truncate_sql(dialect: Dialect, target: &TableName, soft_delete: bool, lsn: bool) -> String {
    let q = |name: &str| quote_ident(dialect, name);
    let table = target.sql(dialect);
    let stored = q(CDC_SOURCE_LSN);
    let filter = if lsn {
        format!(" WHERE {stored} IS NULL OR {stored} < ?")
    } else {
        String::new()
    };
    if soft_delete {
        let now = now(dialect);
        format!(
            "UPDATE {table} SET {} = true, {} = 't', {} = {now}{filter}",
            q(CDC_DELETED),
            q(CDC_OPERATION),
            q(CDC_PROCESSED_AT)
        )
    } else {
        format!("DELETE FROM {table}{filter}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<WarehouseColumn> {
        let col = |name: &str, ty| WarehouseColumn {
            name: name.into(),
            ty,
        };
        vec![
            col("id", WarehouseType::BigInt),
            col(
                "amount",
                WarehouseType::Decimal {
                    precision: 12,
                    scale: 2,
                },
            ),
            col("notes", WarehouseType::Text),
            col("tags", WarehouseType::List(Box::new(WarehouseType::Text))),
            col("at", WarehouseType::TimestampTz),
        ]
    }

    fn spec<'a>(
        target: &'a TableName,
        columns: &'a [WarehouseColumn],
        key: &'a [String],
        unavailable: &'a [usize],
        soft_delete: bool,
    ) -> MergeSpec<'a> {
        MergeSpec {
            target,
            staging: "stage",
            columns,
            key,
            unavailable,
            soft_delete,
        }
    }

    #[test]
    fn staging_columns_are_native_kinds_then_metadata_then_flags() {
        let (target, columns, key) = (TableName::new("t"), columns(), vec!["id".to_string()]);
        let sql = staging_table_sql(Dialect::DuckDb, &spec(&target, &columns, &key, &[2], false));
        assert_eq!(
            sql,
            "CREATE OR REPLACE TEMP TABLE \"stage\" (\"id\" BIGINT, \"amount\" VARCHAR, \
             \"notes\" VARCHAR, \"tags\" VARCHAR, \"at\" TIMESTAMP, \"__cdcctl_op\" VARCHAR, \
             \"__cdcctl_lsn\" BIGINT, \"__cdcctl_ts_ms\" BIGINT, \"__cdcctl_unavailable_2\" BOOLEAN)"
        );
    }

    #[test]
    fn merge_casts_exactly_guards_by_lsn_and_keeps_unavailable_columns() {
        let target = TableName::qualified("public", "users");
        let (columns, key) = (columns(), vec!["id".to_string()]);
        let sql = merge_sql(Dialect::DuckDb, &spec(&target, &columns, &key, &[2], false));
        assert!(
            sql.starts_with("MERGE INTO \"public\".\"users\" AS t\n"),
            "{sql}"
        );
        assert!(
            sql.contains("CAST(\"amount\" AS DECIMAL(12,2)) AS \"amount\""),
            "{sql}"
        );
        assert!(
            sql.contains("CAST(CAST(\"tags\" AS JSON) AS VARCHAR[]) AS \"tags\""),
            "{sql}"
        );
        assert!(
            sql.contains("CAST(\"at\" AS TIMESTAMPTZ) AS \"at\""),
            "{sql}"
        );
        assert!(sql.contains("ON (t.\"id\" = s.\"id\")"), "{sql}");
        let newer = "(s.\"__cdcctl_lsn\" IS NULL OR t.\"_cdc_source_lsn\" IS NULL OR \
                     s.\"__cdcctl_lsn\" > t.\"_cdc_source_lsn\")";
        assert!(
            sql.contains(&format!(
                "WHEN MATCHED AND s.\"__cdcctl_op\" = 'd' AND {newer} THEN DELETE"
            )),
            "{sql}"
        );
        // An unavailable column takes the stored value in the MERGE's source.
        assert!(
            sql.contains(
                "CASE WHEN i.\"__cdcctl_unavailable_2\" THEN stored.\"notes\" ELSE i.\"notes\" END AS \"notes\""
            ),
            "{sql}"
        );
        assert!(
            sql.contains("LEFT JOIN \"public\".\"users\" AS stored ON (stored.\"id\" = i.\"id\")"),
            "{sql}"
        );
        assert!(sql.contains("\"notes\" = s.\"notes\""), "{sql}");
        // The key is matched on, never updated.
        assert!(!sql.contains("\"id\" = s.\"id\","), "{sql}");
        assert!(
            sql.contains("WHEN NOT MATCHED AND s.\"__cdcctl_op\" <> 'd' THEN INSERT"),
            "{sql}"
        );
        assert!(!sql.contains("_cdc_deleted"), "{sql}");
    }

    #[test]
    fn soft_delete_flags_instead_of_deleting() {
        let (target, columns, key) = (TableName::new("t"), columns(), vec!["id".to_string()]);
        let sql = merge_sql(Dialect::DuckDb, &spec(&target, &columns, &key, &[], true));
        assert!(!sql.contains("THEN DELETE"), "{sql}");
        assert!(sql.contains("\"_cdc_deleted\" = true"), "{sql}");
        assert!(sql.contains("\"_cdc_deleted\" = false"), "{sql}");
        assert!(sql.contains("WHEN NOT MATCHED THEN INSERT"), "{sql}");
        assert!(sql.contains("s.\"__cdcctl_op\" = 'd')"), "{sql}");
    }

    #[test]
    fn identifiers_are_quoted_even_when_hostile() {
        let target = TableName::new("we\"ird");
        let columns = vec![WarehouseColumn {
            name: "a\"b".into(),
            ty: WarehouseType::Text,
        }];
        let key = vec!["a\"b".to_string()];
        let sql = merge_sql(Dialect::DuckDb, &spec(&target, &columns, &key, &[], false));
        assert!(sql.contains("\"we\"\"ird\""), "{sql}");
        assert!(sql.contains("t.\"a\"\"b\" = s.\"a\"\"b\""), "{sql}");
    }

    #[test]
    fn replace_resolves_guards_by_lsn_deletes_and_inserts() {
        let target = TableName::qualified("public", "users");
        let (columns, key) = (columns(), vec!["id".to_string()]);
        let r = replace_sql(
            Dialect::DuckDb,
            &spec(&target, &columns, &key, &[2], false),
            &["old".to_string()],
        );
        assert!(
            r.resolve.starts_with(
                "CREATE OR REPLACE TEMP TABLE \"__cdcctl_changed\" AS SELECT s.\"id\", "
            ),
            "{}",
            r.resolve
        );
        assert!(
            r.resolve.contains(
                "CASE WHEN s.\"__cdcctl_unavailable_2\" THEN t.\"notes\" ELSE s.\"notes\" END AS \"notes\""
            ),
            "{}",
            r.resolve
        );
        assert!(r.resolve.contains("t.\"old\" AS \"old\""), "{}", r.resolve);
        assert!(
            r.resolve
                .contains("LEFT JOIN \"public\".\"users\" AS t ON (t.\"id\" = s.\"id\")"),
            "{}",
            r.resolve
        );
        assert!(
            r.resolve.ends_with(
                "WHERE NOT (t.\"id\" IS NOT NULL) OR s.\"__cdcctl_lsn\" IS NULL OR \
                 t.\"_cdc_source_lsn\" IS NULL OR s.\"__cdcctl_lsn\" > t.\"_cdc_source_lsn\""
            ),
            "{}",
            r.resolve
        );
        assert_eq!(
            r.delete,
            "DELETE FROM \"public\".\"users\" AS t USING \"__cdcctl_changed\" AS m WHERE t.\"id\" = m.\"id\""
        );
        assert!(
            r.insert.contains("\"old\", \"_cdc_operation\""),
            "{}",
            r.insert
        );
        assert!(
            r.insert
                .ends_with("FROM \"__cdcctl_changed\" WHERE \"__cdcctl_op\" <> 'd'"),
            "{}",
            r.insert
        );
    }

    #[test]
    fn replace_with_soft_delete_keeps_stored_values_and_flags() {
        let (target, columns, key) = (TableName::new("t"), columns(), vec!["id".to_string()]);
        let r = replace_sql(
            Dialect::DuckDb,
            &spec(&target, &columns, &key, &[], true),
            &[],
        );
        assert!(
            r.resolve.contains(
                "CASE WHEN s.\"__cdcctl_op\" = 'd' AND t.\"id\" IS NOT NULL THEN t.\"notes\" ELSE s.\"notes\" END"
            ),
            "{}",
            r.resolve
        );
        assert!(
            r.insert.contains("\"_cdc_deleted\") SELECT"),
            "{}",
            r.insert
        );
        assert!(
            r.insert
                .ends_with("\"__cdcctl_op\" = 'd' FROM \"__cdcctl_changed\""),
            "{}",
            r.insert
        );
    }

    #[test]
    fn changes_are_appended_once_per_key_and_lsn_filled_from_the_stored_row() {
        let cols = columns();
        let changes = TableName::qualified("public", "users__changes");
        let stored = TableName::qualified("public", "users");
        let key = ["id".to_owned()];
        let spec = MergeSpec {
            target: &changes,
            staging: "stage",
            columns: &cols,
            key: &key,
            unavailable: &[1],
            soft_delete: false,
        };
        let sql = changes_insert_sql(Dialect::DuckDb, &spec, &stored);
        assert!(
            sql.starts_with("INSERT INTO \"public\".\"users__changes\""),
            "{sql}"
        );
        assert!(
            sql.contains("LEFT JOIN \"public\".\"users\" AS t ON (t.\"id\" = s.\"id\")"),
            "{sql}"
        );
        assert!(
            sql.contains("NOT EXISTS (SELECT 1 FROM \"public\".\"users__changes\" AS c WHERE c.\"id\" = s.\"id\" AND c.\"_cdc_source_lsn\" = s.\"__cdcctl_lsn\")"),
            "{sql}"
        );
        assert!(
            sql.contains("ROW_NUMBER() OVER (ORDER BY s.\"__cdcctl_lsn\""),
            "{sql}"
        );
        let name = quote_ident(Dialect::DuckDb, &cols[1].name);
        assert!(
            sql.contains(&format!(
                "CASE WHEN s.\"__cdcctl_unavailable_1\" THEN t.{name} ELSE s.{name} END"
            )),
            "{sql}"
        );
        let truncate = changes_truncate_sql(Dialect::Snowflake, &changes);
        assert_eq!(truncate.matches('?').count(), 3, "{truncate}");
        assert!(truncate.contains("\"_CDC_OPERATION\" = 't'"), "{truncate}");
    }

    #[test]
    fn truncate_keeps_rows_newer_than_the_truncate() {
        let target = TableName::new("t");
        assert_eq!(
            truncate_sql(Dialect::DuckDb, &target, false, true),
            "DELETE FROM \"t\" WHERE \"_cdc_source_lsn\" IS NULL OR \"_cdc_source_lsn\" < ?"
        );
        assert_eq!(
            truncate_sql(Dialect::DuckDb, &target, false, false),
            "DELETE FROM \"t\""
        );
        assert!(
            truncate_sql(Dialect::DuckDb, &target, true, true)
                .starts_with("UPDATE \"t\" SET \"_cdc_deleted\" = true, \"_cdc_operation\" = 't'")
        );
    }

    #[test]
    fn snowflake_identifiers_are_upper_cased_and_quoted_even_when_hostile() {
        let target = TableName::qualified("My Schema", "select");
        let columns = vec![
            WarehouseColumn {
                name: "Mixed \"Case\"".into(),
                ty: WarehouseType::Text,
            },
            WarehouseColumn {
                name: "order".into(),
                ty: WarehouseType::BigInt,
            },
            WarehouseColumn {
                name: "with space".into(),
                ty: WarehouseType::Json,
            },
        ];
        let key = vec!["order".to_string()];
        let spec = spec(&target, &columns, &key, &[2], false);
        let merge = merge_sql(Dialect::Snowflake, &spec);
        assert!(
            merge.starts_with("MERGE INTO \"MY SCHEMA\".\"SELECT\" AS t"),
            "{merge}"
        );
        assert!(
            merge.contains("CAST(\"MIXED \"\"CASE\"\"\" AS VARCHAR) AS \"MIXED \"\"CASE\"\"\""),
            "{merge}"
        );
        assert!(merge.contains("ON (t.\"ORDER\" = s.\"ORDER\")"), "{merge}");
        assert!(
            merge.contains("PARSE_JSON(\"WITH SPACE\") AS \"WITH SPACE\""),
            "{merge}"
        );
        assert!(
            merge.contains(
                "CAST(\"__CDCCTL_UNAVAILABLE_2\" AS BOOLEAN) AS \"__CDCCTL_UNAVAILABLE_2\""
            ),
            "{merge}"
        );
        let stage = stage_values_sql(Dialect::Snowflake, &spec, 2, true);
        assert!(
            stage.starts_with(
                "CREATE OR REPLACE TEMPORARY TABLE \"STAGE\" AS SELECT column1 AS \"MIXED \"\"CASE\"\"\", \
                 column2 AS \"ORDER\", column3 AS \"WITH SPACE\", column4 AS \"__CDCCTL_OP\""
            ),
            "{stage}"
        );
        // No value is ever in the text: only placeholders.
        assert!(
            stage.ends_with("FROM VALUES (?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?)"),
            "{stage}"
        );
        assert_eq!(staging_width(&spec), 7);
        let more = stage_values_sql(Dialect::Snowflake, &spec, 1, false);
        assert!(
            more.starts_with("INSERT INTO \"STAGE\" (\"MIXED \"\"CASE\"\"\", \"ORDER\""),
            "{more}"
        );
    }

    #[test]
    fn the_merge_source_keeps_one_row_per_key_the_newest() {
        // Real Snowflake refuses a MERGE whose source matches a target row twice (100090);
        // the batch is compacted per key already, and the source deduplicates again.
        let (target, columns) = (TableName::new("t"), columns());
        let key = vec!["id".to_string(), "at".to_string()];
        let merge = merge_sql(
            Dialect::Snowflake,
            &spec(&target, &columns, &key, &[], false),
        );
        assert!(
            merge.contains(
                "QUALIFY ROW_NUMBER() OVER (PARTITION BY \"ID\", \"AT\" ORDER BY \"__CDCCTL_LSN\" \
                 DESC NULLS LAST) = 1) AS s"
            ),
            "{merge}"
        );
        // Staged text is cast exactly: decimals, timestamps with zone, lists, event time.
        assert!(
            merge.contains("CAST(\"AMOUNT\" AS NUMBER(12,2))"),
            "{merge}"
        );
        assert!(merge.contains("CAST(\"AT\" AS TIMESTAMP_TZ"), "{merge}");
        assert!(
            merge.contains("CAST(PARSE_JSON(\"TAGS\") AS ARRAY)"),
            "{merge}"
        );
        assert!(
            merge.contains(
                "TO_TIMESTAMP_TZ(CAST(\"__CDCCTL_TS_MS\" AS NUMBER(38,0)), 3) AS \"_CDC_TIMESTAMP\""
            ),
            "{merge}"
        );
        assert!(
            merge.contains("CAST(\"__CDCCTL_LSN\" AS NUMBER(38,0)) AS \"__CDCCTL_LSN\""),
            "{merge}"
        );
        assert!(merge.contains("CURRENT_TIMESTAMP()"), "{merge}");
    }
}
