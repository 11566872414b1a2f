//! `cdcctl verify`: is the warehouse equal to the source?
//!
//! For each table (the loaded ones, or those named): read every row on both sides — Postgres and
//! the warehouse (live rows: with `--soft-delete` tables, those not flagged deleted) — rendered
//! into one comparable text per column (timestamps as epoch microseconds, arrays and JSON as
//! canonical JSON with sorted keys, decimals as written, binary as hex), hash each row, and
//! compare the key → hash maps: row counts and a checksum (order-insensitive: the sum of the row
//! hashes) per side, then equal or differs. `--diff` lists the keys missing from the
//! warehouse, extra in it, and different (with the differing columns), up to `--limit`. When the
//! loader group still has messages to load, the report says so: a mismatch may only be lag.
//! Exit 0 equal, 1 differs.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cdc::schema::{Dialect, quote_ident};
use crate::cli::VerifyArgs;
use crate::clients::kafka::Kafka;
use crate::clients::postgres::Postgres;
use crate::config::Config;
use crate::error::{CliError, Outcome};
use crate::output::Output;

/// A column of a source table and how each side renders it.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Timestamp,
    Json,
    Array,
    Bytes,
    Other,
}

impl Kind {
    fn of(pg_type: &str) -> Kind {
        match pg_type {
            "timestamp with time zone" | "timestamp without time zone" => Kind::Timestamp,
            "json" | "jsonb" => Kind::Json,
            "ARRAY" => Kind::Array,
            "bytea" => Kind::Bytes,
            _ => Kind::Other,
        }
    }
}

fn pg_expr(c: &Column) -> String {
    let q = quote_ident(Dialect::DuckDb, &c.name);
    match c.kind {
        Kind::Timestamp => format!("(extract(epoch from {q}) * 1000000)::bigint::text"),
        Kind::Array => format!("array_to_json({q})::text"),
        Kind::Bytes => format!("encode({q}, 'hex')"),
        Kind::Json | Kind::Other => format!("{q}::text"),
    }
}

fn duck_expr(c: &Column) -> String {
    let q = quote_ident(Dialect::DuckDb, &c.name);
    match c.kind {
        Kind::Timestamp => format!("epoch_us({q})::VARCHAR"),
        Kind::Array => format!("to_json({q})::VARCHAR"),
        Kind::Bytes => format!("lower(hex({q}))"),
        Kind::Json | Kind::Other => format!("{q}::VARCHAR"),
    }
}

/// A cell as compared: JSON canonical, timestamps from the Snowflake client's text form to
/// epoch microseconds.
fn canonical(kind: Kind, cell: Option<String>) -> Option<String> {
    let text = cell?;
    Some(match kind {
        Kind::Json | Kind::Array => canonical_json(&text),
        Kind::Timestamp if text.contains('-') => epoch_micros(&text).unwrap_or(text),
        _ => text,
    })
}

/// JSON with object keys sorted and no spaces (Postgres' jsonb orders keys its own way).
pub fn canonical_json(text: &str) -> String {
    fn sort(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let sorted: std::collections::BTreeMap<String, serde_json::Value> =
                    map.into_iter().map(|(k, v)| (k, sort(v))).collect();
                serde_json::Value::Object(sorted.into_iter().collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sort).collect())
            }
            other => other,
        }
    }
    serde_json::from_str(text).map_or_else(|_| text.to_string(), |v| sort(v).to_string())
}

fn epoch_micros(text: &str) -> Option<String> {
    chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z")
        .map(|t| t.timestamp_micros())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .map(|t| t.and_utc().timestamp_micros())
        })
        .ok()
        .map(|m| m.to_string())
}

/// Rows of one side: key text → (row hash, the row's cells only with `--diff`, for naming the
/// columns that differ; without it a million rows cost their keys and hashes only).
type Side = HashMap<String, (u64, Vec<Option<String>>)>;

/// How rows are collected.
#[derive(Debug, Clone, Copy)]
struct Collect<'a> {
    columns: &'a [Column],
    key_idx: &'a [usize],
    keep_rows: bool,
}

fn row_hash(cells: &[Option<String>]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    cells.hash(&mut h);
    h.finish()
}

fn insert_row(side: &mut Side, how: Collect<'_>, raw: Vec<Option<String>>) {
    let cells: Vec<Option<String>> = raw
        .into_iter()
        .zip(how.columns)
        .map(|(cell, c)| canonical(c.kind, cell))
        .collect();
    let key = how
        .key_idx
        .iter()
        .map(|&i| cells[i].clone().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("|");
    let hash = row_hash(&cells);
    side.insert(key, (hash, if how.keep_rows { cells } else { Vec::new() }));
}

/// One table's comparison.
#[derive(Debug, Serialize)]
struct TableReport {
    table: String,
    target: String,
    source_rows: usize,
    warehouse_rows: usize,
    source_checksum: String,
    warehouse_checksum: String,
    equal: bool,
    missing: usize,
    extra: usize,
    different: usize,
    /// With `--diff`: up to `--limit` keys per kind, and the differing columns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    diff: Vec<DiffRow>,
}

#[derive(Debug, Serialize)]
struct DiffRow {
    kind: &'static str,
    key: String,
    columns: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    equal: bool,
    /// Messages the loader group has not loaded yet (a mismatch may be only that).
    loader_lag: Option<i64>,
    tables: Vec<TableReport>,
}

fn checksum(side: &Side) -> String {
    let sum = side
        .values()
        .fold(0_u64, |acc, (h, _)| acc.wrapping_add(*h));
    format!("{sum:016x}")
}

/// Runs `cdcctl verify`.
pub async fn run(args: &VerifyArgs, config: &Config, out: &Output) -> Result<Outcome> {
    let pg = Postgres::connect(&config.postgres).await?;
    let db = pg.client();
    let tables: Vec<(String, String)> = if args.tables.is_empty() {
        warehouse_tables(config)?
    } else {
        args.tables
            .iter()
            .map(|t| match t.split_once('.') {
                Some((s, n)) => (s.to_string(), n.to_string()),
                None => ("public".to_string(), t.clone()),
            })
            .collect()
    };
    if tables.is_empty() {
        return Err(CliError::Usage {
            message: "no loaded table to verify".into(),
            hint: Some("run `cdcctl load` first, or name the tables".into()),
        }
        .into());
    }
    let mut reports = Vec::new();
    for (schema, table) in &tables {
        let cols = db
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                &[schema, table],
            )
            .await
            .with_context(|| format!("cannot read the columns of {schema}.{table}"))?;
        let columns: Vec<Column> = cols
            .iter()
            .map(|r| Column {
                name: r.get(0),
                kind: Kind::of(&r.get::<_, String>(1)),
            })
            .collect();
        if columns.is_empty() {
            return Err(CliError::Usage {
                message: format!("{schema}.{table} is not a table of the source database"),
                hint: Some("name it as schema.table".into()),
            }
            .into());
        }
        let key_names: Vec<String> = db
            .query(
                "SELECT a.attname::text FROM pg_index i \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass \
                 AND i.indisprimary ORDER BY a.attnum",
                &[schema, table],
            )
            .await
            .with_context(|| format!("cannot read the primary key of {schema}.{table}"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let key_idx: Vec<usize> = if key_names.is_empty() {
            (0..columns.len()).collect()
        } else {
            key_names
                .iter()
                .filter_map(|k| columns.iter().position(|c| &c.name == k))
                .collect()
        };
        let select: Vec<String> = columns.iter().map(pg_expr).collect();
        let sql = format!(
            "SELECT {} FROM {}.{}",
            select.join(", "),
            quote_ident(Dialect::DuckDb, schema),
            quote_ident(Dialect::DuckDb, table)
        );
        let how = Collect {
            columns: &columns,
            key_idx: &key_idx,
            keep_rows: args.diff,
        };
        // Streamed: the source rows are never all in memory at once.
        let mut source = Side::new();
        let rows = db
            .query_raw(&sql, std::iter::empty::<&str>())
            .await
            .context("cannot read the source rows")?;
        futures_util::pin_mut!(rows);
        while let Some(row) = futures_util::StreamExt::next(&mut rows).await {
            let row = row.context("cannot read the source rows")?;
            let raw = (0..columns.len()).map(|i| row.get(i)).collect();
            insert_row(&mut source, how, raw);
        }
        let target = warehouse_rows(config, schema, table, how)?;
        reports.push(compare(
            schema, table, config, &columns, &source, &target, args,
        ));
    }
    let loader_lag = loader_lag(config);
    let equal = reports.iter().all(|r| r.equal);
    let report = Report {
        equal,
        loader_lag,
        tables: reports,
    };
    out.report(&report, |w| {
        let mut table = out.table([
            "TABLE",
            "SOURCE ROWS",
            "WAREHOUSE ROWS",
            "CHECKSUMS",
            "RESULT",
        ]);
        for t in &report.tables {
            table.add_row([
                t.table.clone(),
                t.source_rows.to_string(),
                t.warehouse_rows.to_string(),
                format!("{} / {}", t.source_checksum, t.warehouse_checksum),
                if t.equal {
                    "equal".to_string()
                } else {
                    format!(
                        "differs: {} missing, {} extra, {} different",
                        t.missing, t.extra, t.different
                    )
                },
            ]);
        }
        write!(w, "{}", out.render_table(&table))?;
        for t in &report.tables {
            for d in &t.diff {
                if d.columns.is_empty() {
                    writeln!(w, "{} {}: key {}", t.table, d.kind, d.key)?;
                } else {
                    writeln!(
                        w,
                        "{} {}: key {} ({})",
                        t.table,
                        d.kind,
                        d.key,
                        d.columns.join(", ")
                    )?;
                }
            }
        }
        match (report.equal, report.loader_lag) {
            (true, _) => writeln!(w, "equal: the warehouse matches the source"),
            (false, Some(lag)) if lag > 0 => writeln!(
                w,
                "differs — but the loader has {lag} message(s) still to load: run `cdcctl load \
                 --until-caught-up` and verify again"
            ),
            (false, _) => writeln!(
                w,
                "differs{}",
                if args.diff {
                    ""
                } else {
                    " (--diff lists the keys)"
                }
            ),
        }
    })?;
    Ok(if equal { Outcome::Ok } else { Outcome::Failed })
}

fn compare(
    schema: &str,
    table: &str,
    config: &Config,
    columns: &[Column],
    source: &Side,
    target: &Side,
    args: &VerifyArgs,
) -> TableReport {
    let mut missing: Vec<&String> = source.keys().filter(|k| !target.contains_key(*k)).collect();
    let mut extra: Vec<&String> = target.keys().filter(|k| !source.contains_key(*k)).collect();
    let mut different: Vec<&String> = source
        .iter()
        .filter(|(k, (h, _))| target.get(*k).is_some_and(|(th, _)| th != h))
        .map(|(k, _)| k)
        .collect();
    missing.sort();
    extra.sort();
    different.sort();
    let mut diff = Vec::new();
    if args.diff {
        for k in missing.iter().take(args.limit) {
            diff.push(DiffRow {
                kind: "missing",
                key: (*k).clone(),
                columns: Vec::new(),
            });
        }
        for k in extra.iter().take(args.limit) {
            diff.push(DiffRow {
                kind: "extra",
                key: (*k).clone(),
                columns: Vec::new(),
            });
        }
        for k in different.iter().take(args.limit) {
            let (a, b) = (&source[*k].1, &target[*k].1);
            let cols = columns
                .iter()
                .zip(a.iter().zip(b))
                .filter(|(_, (x, y))| x != y)
                .map(|(c, _)| c.name.clone())
                .collect();
            diff.push(DiffRow {
                kind: "different",
                key: (*k).clone(),
                columns: cols,
            });
        }
    }
    let dialect = if config.load.sink == "snowflake" {
        Dialect::Snowflake
    } else {
        Dialect::DuckDb
    };
    TableReport {
        table: format!("{schema}.{table}"),
        target: format!(
            "{}.{}",
            quote_ident(dialect, schema),
            quote_ident(dialect, table)
        ),
        source_rows: source.len(),
        warehouse_rows: target.len(),
        source_checksum: checksum(source),
        warehouse_checksum: checksum(target),
        equal: missing.is_empty() && extra.is_empty() && different.is_empty(),
        missing: missing.len(),
        extra: extra.len(),
        different: different.len(),
        diff,
    }
}

/// The loaded tables of the warehouse (changes tables excluded), as source names.
fn warehouse_tables(config: &Config) -> Result<Vec<(String, String)>> {
    if config.load.sink == "snowflake" {
        anyhow::bail!("name the tables to verify in Snowflake (schema.table)");
    }
    let conn = open_duckdb(config)?;
    let tables: Vec<(String, String)> = conn
        .prepare(&crate::cdc::schema::loaded_tables_sql(Dialect::DuckDb))?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(tables)
}

fn open_duckdb(config: &Config) -> Result<duckdb::Connection> {
    let path = &config.duckdb.path;
    if !path.exists() {
        return Err(CliError::Usage {
            message: format!("the DuckDB file `{}` does not exist", path.display()),
            hint: Some("point --duckdb at the loader's file".into()),
        }
        .into());
    }
    duckdb::Connection::open_with_flags(
        path,
        duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly)?,
    )
    .map_err(|e| {
        if e.to_string().contains("lock") {
            CliError::Failed {
                message: format!("`{}` is in use by a running loader", path.display()),
                hint: Some(
                    "verify after `cdcctl load --until-caught-up`, or stop the loader".into(),
                ),
            }
            .into()
        } else {
            anyhow::Error::new(e).context("cannot open the DuckDB file")
        }
    })
}

/// The live rows of the target table.
fn warehouse_rows(config: &Config, schema: &str, table: &str, how: Collect<'_>) -> Result<Side> {
    let columns = how.columns;
    let mut side = Side::new();
    if config.load.sink == "snowflake" {
        use crate::clients::snowflake::{Retry, Snowflake};
        let sf = Snowflake::new(&config.snowflake)?;
        let runtime = tokio::runtime::Handle::current();
        let q = |n: &str| quote_ident(Dialect::Snowflake, n);
        let select: Vec<String> = columns.iter().map(|c| q(&c.name)).collect();
        let target = format!("{}.{}", q(schema), q(table));
        let sql = format!("SELECT {} FROM {target}", select.join(", "));
        let soft = format!("{sql} WHERE NOT COALESCE({}, false)", q("_cdc_deleted"));
        let result = tokio::task::block_in_place(|| {
            runtime.block_on(async {
                let r = match sf.query(&soft, &[], Retry::Idempotent).await {
                    Ok(r) => Ok(r),
                    Err(_) => sf.query(&sql, &[], Retry::Idempotent).await,
                };
                sf.logout().await;
                r
            })
        })?;
        for row in result.rows {
            insert_row(&mut side, how, row);
        }
        return Ok(side);
    }
    let conn = open_duckdb(config)?;
    let q = |n: &str| quote_ident(Dialect::DuckDb, n);
    let has_deleted: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM information_schema.columns WHERE table_schema = ? \
             AND table_name = ? AND column_name = '_cdc_deleted'",
            duckdb::params![schema, table],
            |r| r.get(0),
        )
        .unwrap_or(false);
    let select: Vec<String> = columns.iter().map(duck_expr).collect();
    let filter = if has_deleted {
        " WHERE NOT _cdc_deleted"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {} FROM {}.{}{filter}",
        select.join(", "),
        q(schema),
        q(table)
    );
    let mut statement = conn
        .prepare(&sql)
        .with_context(|| format!("cannot read {schema}.{table} in DuckDB"))?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let raw = (0..columns.len())
            .map(|i| row.get::<_, Option<String>>(i))
            .collect::<Result<Vec<_>, _>>()?;
        insert_row(&mut side, how, raw);
    }
    Ok(side)
}

/// Messages the loader group still has to load, when the broker answers.
fn loader_lag(config: &Config) -> Option<i64> {
    let session = Kafka::new(&config.kafka)
        .open_group(&config.load.group)
        .ok()?;
    let topics = session.topics().ok()?;
    let change: Vec<_> = topics
        .into_iter()
        .filter(|t| {
            crate::cdc::topics::table_of_topic(&config.kafka.topic_prefix, &t.name).is_some()
        })
        .collect();
    let positions = session.positions(&change).ok()?;
    Some(positions.iter().map(|p| p.lag()).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_compare_canonically() {
        assert_eq!(
            canonical(
                Kind::Json,
                Some(r#"{"b": 1, "a": [2, {"d": 0, "c": 1}]}"#.into())
            ),
            Some(r#"{"a":[2,{"c":1,"d":0}],"b":1}"#.into())
        );
        assert_eq!(
            canonical(
                Kind::Timestamp,
                Some("2024-01-02 03:04:05.123456+00:00".into())
            ),
            Some("1704164645123456".into())
        );
        assert_eq!(
            canonical(Kind::Timestamp, Some("1704164645123456".into())),
            Some("1704164645123456".into())
        );
        assert_eq!(canonical(Kind::Other, None), None);
        let a = vec![Some("1".to_string()), None];
        let b = vec![Some("1".to_string()), Some(String::new())];
        assert_ne!(row_hash(&a), row_hash(&b), "NULL is not the empty string");
    }
}
