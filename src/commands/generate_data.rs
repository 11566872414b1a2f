//! `cdcctl generate-data`: fill Postgres with realistic rows and drive a stream of changes.
//!
//! 1. Targets: the demo tables, or `--table` (any table with a primary key). The catalog
//!    (`clients::postgres::catalog`) gives each column's type, the keys, unique indexes and
//!    foreign keys; `datagen::schema` turns that into a generation plan (pure, unit-tested
//!    there).
//! 2. `--rows N`: N rows per table with `COPY ... FROM STDIN` (text format), parents first,
//!    streamed over up to four connections in batches of [`BATCH_ROWS`] rows, each batch its own
//!    transaction. Sequence-backed keys are reserved up front (`nextval`), so a row's content,
//!    seeded by its key, does not depend on which connection carried it.
//! 3. `--events N` / `--duration D`: inserts, updates and deletes in transactions of `--tx-size`,
//!    paced to `--rate`, against keys tracked in memory (`datagen::keys`; loaded at start,
//!    ordered, so the same seed picks the same rows). Deletes remove referencing rows first, in
//!    the same transaction.
//! 4. A summary: rows per table and operation, elapsed time, rows per second. Ctrl-C stops after
//!    the current transaction and still prints it (exit 0).
//!
//! Values are bound as text parameters cast to the column's type; identifiers are quoted.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use comfy_table::{Cell, CellAlignment};
use futures_util::SinkExt;
use indicatif::ProgressBar;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::sync::watch;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::cli::GenerateDataArgs;
use crate::clients::postgres::catalog::{ChildFk, key_sequence, read_table, referencing_tables};
use crate::clients::postgres::keys::{
    count_and_max_key, distinct_values, max_int8, next_sequence_values, ordered_int_keys,
    ordered_text_keys, reserve_sequence_range,
};
use crate::clients::postgres::{
    Postgres, TableName, parse_table_list, quote_ident, resolve_table, table_exists,
};
use crate::config::{Config, PostgresConfig};
use crate::datagen::keys::{
    FixedParents, Identities, KeySet, KeyVal, LiveParents, ParentSource, Reservation, int_keys,
    integer_key, parents_first,
};
use crate::datagen::mix::{Mix, Op};
use crate::datagen::schema::{KeyMode, Kind, Source, TableSpec};
use crate::datagen::{stable_hash, stream_rng};
use crate::demo;
use crate::error::{CliError, Outcome};
use crate::output::Output;

/// Rows per COPY statement (one transaction): what Ctrl-C can roll back at most per connection.
pub const BATCH_ROWS: u64 = 50_000;
/// Most connections a bulk load uses.
pub const MAX_CONNECTIONS: usize = 4;
/// Largest run of rows sorted by parent key before sending (bounds memory with `--large-text`).
const SORT_RUN_BYTES: usize = 16 * 1024 * 1024;
/// Bytes of COPY text gathered before a send.
const SEND_BYTES: usize = 128 * 1024;
/// Sequence values reserved at a time for inserts of the change stream.
const STREAM_RESERVE: i64 = 64;
/// Deepest chain of referencing tables a delete follows.
const MAX_DELETE_DEPTH: usize = 16;

/// Rows of one table by operation, as committed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TableCounts {
    /// `schema.table`.
    pub table: String,
    /// Rows inserted (bulk load and change stream).
    pub inserted: u64,
    /// Rows updated.
    pub updated: u64,
    /// Rows deleted (including rows deleted because they referenced a deleted row).
    pub deleted: u64,
}

/// The bulk load (`--rows`).
#[derive(Debug, Clone, Serialize)]
pub struct BulkReport {
    /// Rows committed by COPY, all tables.
    pub rows: u64,
    /// Wall time of the load, reserving keys included.
    pub elapsed_ms: u64,
    /// `rows` per second of `elapsed_ms`.
    pub rows_per_sec: f64,
    /// Connections used per table.
    pub connections: usize,
}

/// The change stream (`--events` / `--duration`).
#[derive(Debug, Clone, Serialize)]
pub struct ChangesReport {
    /// Inserts, updates and deletes committed (a delete counts once, with its referencing rows).
    pub events: u64,
    /// Transactions committed.
    pub transactions: u64,
    /// Wall time of the stream.
    pub elapsed_ms: u64,
    /// `events` per second of `elapsed_ms`.
    pub events_per_sec: f64,
}

/// `cdcctl generate-data --output json`.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateDataReport {
    /// The seed used; `--seed` with it replays the run on the same starting data.
    pub seed: u64,
    /// Committed rows per table and operation: targets first, then tables whose rows were
    /// deleted because they referenced deleted rows.
    pub tables: Vec<TableCounts>,
    /// The bulk load, when `--rows` was given.
    pub bulk: Option<BulkReport>,
    /// The change stream, when `--events` or `--duration` was given.
    pub changes: Option<ChangesReport>,
    /// Rows inserted, updated and deleted, all tables.
    pub rows: u64,
    /// Wall time of the bulk load and the change stream.
    pub elapsed_ms: u64,
    /// `rows` per second of `elapsed_ms`.
    pub rows_per_sec: f64,
    /// `schema.table.column` of the columns holding `--large-text` values.
    pub large_text_columns: Vec<String>,
    /// True when Ctrl-C stopped the run; the counts are what was committed.
    pub interrupted: bool,
}

fn per_sec(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    (count as f64 / secs * 10.0).round() / 10.0
}

fn usage(message: impl Into<String>, hint: Option<String>) -> anyhow::Error {
    CliError::Usage {
        message: message.into(),
        hint,
    }
    .into()
}

/// Generates data.
pub async fn run(args: &GenerateDataArgs, config: &Config, out: &Output) -> Result<Outcome> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let pg = Postgres::connect(&config.postgres).await?;
    let client = pg.client();

    let (specs, large_text_columns) = plan_targets(client, args, out).await?;
    let streaming = args.events.is_some() || args.duration.is_some();
    let mut state = State::prepare(client, specs, streaming).await?;

    let (stop_tx, stop) = watch::channel(false);
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
        }
    });

    let started = Instant::now();
    let mut bulk = None;
    if let Some(rows) = args.rows {
        let t0 = Instant::now();
        let (committed, connections) =
            bulk_load(&mut state, client, &config.postgres, seed, rows, out, &stop).await?;
        let elapsed = t0.elapsed();
        bulk = Some(BulkReport {
            rows: committed,
            elapsed_ms: elapsed.as_millis() as u64,
            rows_per_sec: per_sec(committed, elapsed),
            connections,
        });
    }
    let mut changes = None;
    if streaming && !*stop.borrow() {
        let t0 = Instant::now();
        let plan = StreamPlan {
            events: args.events,
            duration: args.duration,
            rate: args.rate,
            mix: args.mix,
            tx_size: u64::from(args.tx_size),
        };
        let (events, transactions) =
            change_stream(&mut state, client, seed, &plan, out, &stop).await?;
        let elapsed = t0.elapsed();
        changes = Some(ChangesReport {
            events,
            transactions,
            elapsed_ms: elapsed.as_millis() as u64,
            events_per_sec: per_sec(events, elapsed),
        });
    }
    let elapsed = started.elapsed();
    let interrupted = *stop.borrow();
    ctrl_c.abort();

    let tables = state.counts.clone();
    let rows = tables
        .iter()
        .map(|t| t.inserted + t.updated + t.deleted)
        .sum();
    let report = GenerateDataReport {
        seed,
        tables,
        bulk,
        changes,
        rows,
        elapsed_ms: elapsed.as_millis() as u64,
        rows_per_sec: per_sec(rows, elapsed),
        large_text_columns,
        interrupted,
    };
    print_report(out, &report)?;
    Ok(Outcome::Ok)
}

// ---------------------------------------------------------------------------------------------
// Plan

/// The targets as generation plans, parents first, and the `--large-text` columns chosen.
async fn plan_targets(
    client: &Client,
    args: &GenerateDataArgs,
    out: &Output,
) -> Result<(Vec<TableSpec>, Vec<String>)> {
    let names = target_names(client, args).await?;
    let mut specs = Vec::with_capacity(names.len());
    for name in &names {
        let cat = read_table(client, name).await?;
        let spec = TableSpec::build(&cat).map_err(|reason| {
            usage(
                reason,
                Some(
                    "generate-data needs a primary key, and values or defaults for every \
                     NOT NULL column"
                        .to_string(),
                ),
            )
        })?;
        specs.push(spec);
    }
    let mut specs = parents_first(specs);
    let mut large_text_columns = Vec::new();
    if args.large_text {
        for spec in &mut specs {
            match spec.choose_large_text() {
                Some(col) => large_text_columns.push(format!("{}.{col}", spec.name)),
                None => out.warn(&format!(
                    "`{}` has no unbounded text column: its rows stay small with --large-text",
                    spec.name
                )),
            }
        }
    }
    Ok((specs, large_text_columns))
}

/// The tables named by `--table`, or the demo tables (which must exist).
async fn target_names(client: &Client, args: &GenerateDataArgs) -> Result<Vec<TableName>> {
    if args.table.is_empty() {
        let mut missing = Vec::new();
        for t in demo::tables() {
            if !table_exists(client, &t).await? {
                missing.push(t.to_string());
            }
        }
        if !missing.is_empty() {
            return Err(usage(
                format!("the demo tables are missing: {}", missing.join(", ")),
                Some(
                    "run `cdcctl setup-source --demo` first, or name tables with `--table`"
                        .to_string(),
                ),
            ));
        }
        return Ok(demo::tables());
    }
    let mut names: Vec<TableName> = Vec::new();
    for list in &args.table {
        let refs = parse_table_list(list).map_err(|e| {
            usage(
                format!("invalid `--table`: {e}"),
                Some("write `table`, `schema.table` or `\"Odd Name\"`".to_string()),
            )
        })?;
        for r in refs {
            let typed = match &r.schema {
                Some(s) => format!("{}.{}", s.text, r.name.text),
                None => r.name.text.clone(),
            };
            let found = resolve_table(client, &r).await?.ok_or_else(|| {
                usage(
                    format!("table `{typed}` does not exist"),
                    Some(
                        "unqualified names are in `public`; unquoted names match exactly, \
                         else in lower case"
                            .to_string(),
                    ),
                )
            })?;
            if !names.contains(&found) {
                names.push(found);
            }
        }
    }
    Ok(names)
}

// ---------------------------------------------------------------------------------------------
// State of the run: keys, sequences, counts

/// Reserved values of a target's key sequence.
#[derive(Debug, Default)]
struct Reserved {
    sequence: Option<String>,
    buffer: VecDeque<i64>,
}

/// Everything known about the targets during a run.
struct State {
    specs: Vec<TableSpec>,
    /// Primary key column types (`format_type`), per target.
    key_types: Vec<Vec<String>>,
    keys: Vec<KeySet>,
    /// Keys are tracked (change stream, or referenced by another target).
    track_keys: Vec<bool>,
    /// Per target, per parent of its spec.
    parents: Vec<Vec<ParentSource>>,
    /// Rows inserted (attempted) so far per target: the next row's run-local index.
    next_r: Vec<u64>,
    reserved: Vec<Reserved>,
    /// Referencing tables per referenced table.
    children: HashMap<TableName, Vec<ChildFk>>,
    /// Reported counts: targets first, then other tables as rows of them are deleted.
    counts: Vec<TableCounts>,
}

impl State {
    async fn prepare(client: &Client, mut specs: Vec<TableSpec>, streaming: bool) -> Result<State> {
        let n = specs.len();
        let mut key_types = Vec::with_capacity(n);
        let mut reserved = Vec::with_capacity(n);
        for spec in &mut specs {
            key_types.push(
                spec.primary_key
                    .iter()
                    .map(|&i| spec.columns[i].sql_type.clone())
                    .collect(),
            );
            let sequence = match spec.key_mode {
                KeyMode::Sequence => {
                    let column = &spec.columns[spec.primary_key[0]].name;
                    key_sequence(client, &spec.name, column).await?
                }
                _ => None,
            };
            reserved.push(Reserved {
                sequence,
                buffer: VecDeque::new(),
            });
            // Unique integer columns (and an integer key without sequence) continue above
            // their current maximum.
            for c in spec.columns.iter_mut() {
                let integer = matches!(c.kind, Kind::Int2 | Kind::Int4 | Kind::Int8);
                let counted = (c.source == Source::Value && c.unique)
                    || (c.source == Source::Key && spec.key_mode == KeyMode::Integer);
                if integer && counted {
                    let max = max_int8(client, &spec.name, &c.name).await?;
                    c.unique_base = max.unwrap_or(0);
                }
            }
            // Other keys are salted with the table's state, so a rerun with the same seed does
            // not repeat the unique values of an earlier one.
            if let KeyMode::Salted(_) = spec.key_mode {
                let (count, max) =
                    count_and_max_key(client, &spec.name, &key_columns(spec)).await?;
                spec.key_mode = KeyMode::Salted(stable_hash(&format!("{count}/{max}")) | 1);
            }
        }
        let names: Vec<TableName> = specs.iter().map(|s| s.name.clone()).collect();
        // Keys are needed for the change stream, and for tables other targets reference.
        let mut keys = Vec::with_capacity(n);
        let mut track_keys = Vec::with_capacity(n);
        for spec in &specs {
            let referenced = specs
                .iter()
                .any(|s| s.parents.iter().any(|p| p.table == spec.name));
            track_keys.push(streaming || referenced);
            keys.push(if streaming || referenced {
                load_keys(client, spec).await?
            } else {
                KeySet::default()
            });
        }
        let mut parents = Vec::with_capacity(n);
        for spec in &specs {
            let mut sources = Vec::new();
            for (p, parent) in spec.parents.iter().enumerate() {
                let target = names.iter().position(|t| *t == parent.table).filter(|&j| {
                    let pk = &specs[j].primary_key;
                    pk.len() == 1 && specs[j].columns[pk[0]].name == parent.column
                });
                let source = match target {
                    Some(j) => ParentSource::Target(j),
                    None => {
                        let values = load_column(client, &parent.table, &parent.column).await?;
                        let required = spec
                            .columns
                            .iter()
                            .any(|c| c.source == Source::Parent(p) && !c.nullable);
                        if values.is_empty() && required {
                            return Err(usage(
                                format!(
                                    "`{}` references `{}`, which has no rows",
                                    spec.name, parent.table
                                ),
                                Some(format!(
                                    "fill `{}` first, or add it to `--table`",
                                    parent.table
                                )),
                            ));
                        }
                        ParentSource::Fixed(Arc::new(values))
                    }
                };
                sources.push(source);
            }
            parents.push(sources);
        }
        let mut children = HashMap::new();
        if streaming {
            let mut queue: Vec<TableName> = names.clone();
            while let Some(t) = queue.pop() {
                if children.contains_key(&t) {
                    continue;
                }
                let refs = referencing_tables(client, &t).await?;
                for r in &refs {
                    if !children.contains_key(&r.child) {
                        queue.push(r.child.clone());
                    }
                }
                children.insert(t, refs);
            }
        }
        let counts = names
            .iter()
            .map(|t| TableCounts {
                table: t.to_string(),
                ..TableCounts::default()
            })
            .collect();
        Ok(State {
            specs,
            key_types,
            keys,
            track_keys,
            parents,
            next_r: vec![0; n],
            reserved,
            children,
            counts,
        })
    }

    fn target(&self, table: &TableName) -> Option<usize> {
        self.specs.iter().position(|s| s.name == *table)
    }

    fn counts_of(&mut self, table: &TableName) -> &mut TableCounts {
        let name = table.to_string();
        let i = match self.counts.iter().position(|c| c.table == name) {
            Some(i) => i,
            None => {
                self.counts.push(TableCounts {
                    table: name,
                    ..TableCounts::default()
                });
                self.counts.len() - 1
            }
        };
        &mut self.counts[i]
    }

    /// Reserves the next `count` values of target `t`'s key sequence. Bulk loads (`range`) take
    /// a whole range in one step when they may; otherwise, and inside the change stream's
    /// transactions, values are drawn one `nextval` at a time.
    async fn reserve(
        &mut self,
        client: &Client,
        t: usize,
        count: i64,
        range: bool,
    ) -> Result<Reservation> {
        let Some(seq) = self.reserved[t].sequence.clone() else {
            return Err(anyhow!("`{}` has no key sequence", self.specs[t].name));
        };
        if range
            && count > 1
            && let Some((first, step)) =
                reserve_sequence_range(client, &self.specs[t].name, &seq, count).await?
        {
            return Ok(Reservation::Range { first, step });
        }
        Ok(Reservation::List(
            next_sequence_values(client, &seq, count).await?,
        ))
    }

    /// Identity and run-local index of the next inserted row of target `t`.
    async fn next_row(&mut self, client: &Client, t: usize) -> Result<(u64, u64)> {
        let r = self.next_r[t];
        self.next_r[t] += 1;
        let spec = &self.specs[t];
        let n = match spec.key_mode {
            KeyMode::Sequence => {
                if self.reserved[t].buffer.is_empty() {
                    let ids = self.reserve(client, t, STREAM_RESERVE, false).await?;
                    self.reserved[t]
                        .buffer
                        .extend((0..STREAM_RESERVE as u64).map(|i| ids.get(i)));
                }
                self.reserved[t].buffer.pop_front().unwrap_or_default() as u64
            }
            KeyMode::Integer => integer_key(spec, r),
            KeyMode::Salted(_) => r + 1,
        };
        Ok((n, r))
    }
}

/// Names of the primary key columns, in key order.
fn key_columns(spec: &TableSpec) -> Vec<&str> {
    spec.primary_key
        .iter()
        .map(|&i| spec.columns[i].name.as_str())
        .collect()
}

/// Keys of a table's rows, ordered, so that the same data gives the same draws.
async fn load_keys(client: &Client, spec: &TableSpec) -> Result<KeySet> {
    let columns = key_columns(spec);
    let keys = if int_keys(spec) {
        ordered_int_keys(client, &spec.name, columns[0])
            .await?
            .into_iter()
            .map(KeyVal::Int)
            .collect()
    } else {
        ordered_text_keys(client, &spec.name, &columns)
            .await?
            .into_iter()
            .map(|parts| KeyVal::Text(parts.into_boxed_slice()))
            .collect()
    };
    Ok(KeySet::new(keys))
}

/// Distinct values of a referenced column of a table that is not generated, ordered.
async fn load_column(client: &Client, table: &TableName, column: &str) -> Result<Vec<KeyVal>> {
    Ok(distinct_values(client, table, column)
        .await?
        .into_iter()
        .map(|v| KeyVal::Text(vec![v].into_boxed_slice()))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Bulk load

/// What every bulk connection of one table shares.
struct BulkJob {
    spec: TableSpec,
    seed: u64,
    copy_sql: String,
    identities: Identities,
    parents: Vec<Arc<Vec<KeyVal>>>,
    rows: u64,
    /// Run-local index of the first row.
    first_r: u64,
}

fn style_bar(bar: &ProgressBar, template: &str) {
    if let Some(style) = crate::output::progress_style(template) {
        bar.set_style(style);
    }
}

/// Loads `rows` rows into every target, parents first. Returns rows committed and the number of
/// connections per table.
async fn bulk_load(
    state: &mut State,
    client: &Client,
    pg: &PostgresConfig,
    seed: u64,
    rows: u64,
    out: &Output,
    stop: &watch::Receiver<bool>,
) -> Result<(u64, usize)> {
    let batches = rows.div_ceil(BATCH_ROWS);
    let connections = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, MAX_CONNECTIONS)
        .min(batches.max(1) as usize);
    let total = rows * state.specs.len() as u64;
    let bar = out.progress(Some(total), "bulk load");
    style_bar(
        &bar,
        "{msg:32} [{bar:30}] {human_pos}/{human_len} rows ({rate}, ETA {eta})",
    );
    // Extra connections, opened once for the whole load.
    let mut clients = Vec::new();
    for _ in 1..connections {
        clients.push(Arc::new(Postgres::connect(pg).await?));
    }
    let mut committed_all = 0;
    for t in 0..state.specs.len() {
        if *stop.borrow() {
            break;
        }
        let spec = state.specs[t].clone();
        bar.set_message(spec.name.to_string());
        let first_r = state.next_r[t];
        let t0 = Instant::now();
        let identities = match spec.key_mode {
            KeyMode::Sequence => {
                let ids = state.reserve(client, t, rows as i64, true).await?;
                tracing::info!(
                    "reserved {rows} keys of `{}` in {:?}",
                    spec.name,
                    t0.elapsed()
                );
                Identities::Reserved(ids)
            }
            KeyMode::Integer => Identities::Integer(integer_key(&spec, first_r)),
            KeyMode::Salted(_) => Identities::Counter(first_r + 1),
        };
        state.next_r[t] += rows;
        let parents = state.parents[t]
            .iter()
            .map(|p| match p {
                ParentSource::Target(j) => Arc::new(state.keys[*j].keys.clone()),
                ParentSource::Fixed(list) => list.clone(),
            })
            .collect();
        let columns: Vec<String> = spec
            .insert_columns()
            .map(|c| quote_ident(&c.name))
            .collect();
        let job = Arc::new(BulkJob {
            copy_sql: format!(
                "COPY {} ({}) FROM STDIN",
                spec.name.quoted(),
                columns.join(", ")
            ),
            spec,
            seed,
            identities,
            parents,
            rows,
            first_r,
        });
        let mut tasks = tokio::task::JoinSet::new();
        for k in 1..connections {
            let job = job.clone();
            let c = clients[k - 1].clone();
            let bar = bar.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                copy_batches(c.client(), &job, k, connections, &bar, &stop).await
            });
        }
        // Connection 0 is the main client, driven here.
        let mine = copy_batches(client, &job, 0, connections, &bar, stop).await;
        let mut committed = 0;
        let mut failure = None;
        match mine {
            Ok(n) => committed += n,
            Err(e) => failure = Some(e),
        }
        while let Some(joined) = tasks.join_next().await {
            match joined.context("a bulk load connection panicked")? {
                Ok(n) => committed += n,
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        committed_all += committed;
        state.counts_of(&job.spec.name).inserted += committed;
        tracing::info!(
            "loaded {committed} rows into `{}` in {:?}",
            job.spec.name,
            t0.elapsed()
        );
        if let Some(e) = failure {
            bar.finish_and_clear();
            return Err(e.context(format!("bulk load of `{}` failed", job.spec.name)));
        }
        // Children loaded next, and the change stream, draw from the keys now in the table.
        let complete = committed == rows && !*stop.borrow();
        if state.track_keys[t] && complete && !matches!(job.identities, Identities::Counter(_)) {
            // Every reserved key is in the table: no need to read them back.
            let keys = &mut state.keys[t].keys;
            keys.extend((0..rows).map(|r| KeyVal::Int(job.identities.n(r) as i64)));
            keys.sort_unstable_by_key(|k| match k {
                KeyVal::Int(i) => *i,
                KeyVal::Text(_) => i64::MIN,
            });
        } else if state.track_keys[t] {
            let t1 = Instant::now();
            state.keys[t] = load_keys(client, &job.spec).await?;
            tracing::info!(
                "read {} keys of `{}` in {:?}",
                state.keys[t].keys.len(),
                job.spec.name,
                t1.elapsed()
            );
        }
    }
    bar.finish_and_clear();
    Ok((committed_all, connections))
}

/// Connection `k` of `of` loads batches `k`, `k + of`, ... of the job, one COPY each. Stops
/// between sends when asked, abandoning (rolling back) its open batch. Returns rows committed.
///
/// Rows of tables with foreign keys are sent in runs of up to [`SORT_RUN_BYTES`] sorted by
/// parent key: the foreign key checks and the referencing column's index then touch parent pages
/// in order, which loads such tables about 15% faster. Content is unchanged, only row order.
async fn copy_batches(
    client: &Client,
    job: &BulkJob,
    k: usize,
    of: usize,
    bar: &ProgressBar,
    stop: &watch::Receiver<bool>,
) -> Result<u64> {
    let batches = job.rows.div_ceil(BATCH_ROWS);
    let sort = !job.parents.is_empty();
    let mut parents = FixedParents {
        lists: job.parents.clone(),
        first_pick: None,
    };
    let mut scratch = String::new();
    // A run of generated rows and, per row, (sort key, start, end) in `run`.
    let mut run = String::new();
    let mut order: Vec<(usize, usize, usize)> = Vec::new();
    let mut committed = 0;
    let mut batch = k as u64;
    while batch < batches {
        let from = batch * BATCH_ROWS;
        let to = (from + BATCH_ROWS).min(job.rows);
        let sink = client
            .copy_in::<_, Bytes>(job.copy_sql.as_str())
            .await
            .with_context(|| format!("cannot start `{}`", job.copy_sql))?;
        futures_util::pin_mut!(sink);
        let mut buf = String::with_capacity(SEND_BYTES + 16 * 1024);
        let mut pending = 0;
        for r in from..to {
            parents.first_pick = None;
            let start = run.len();
            job.spec
                .write_copy_row(
                    job.seed,
                    job.identities.n(r),
                    job.first_r + r,
                    &mut parents,
                    &mut scratch,
                    &mut run,
                )
                .map_err(|reason| usage(reason, None))?;
            order.push((parents.first_pick.unwrap_or(usize::MAX), start, run.len()));
            if sort && run.len() < SORT_RUN_BYTES && r + 1 < to {
                continue;
            }
            if sort {
                order.sort_by_key(|&(key, _, _)| key); // stable: ties keep generation order
            }
            for &(_, a, b) in &order {
                buf.push_str(&run[a..b]);
                pending += 1;
                if buf.len() >= SEND_BYTES {
                    if *stop.borrow() {
                        return Ok(committed); // dropping the sink aborts this batch
                    }
                    let full =
                        std::mem::replace(&mut buf, String::with_capacity(SEND_BYTES + 16 * 1024));
                    sink.send(Bytes::from(full.into_bytes())).await?;
                    bar.inc(pending);
                    pending = 0;
                }
            }
            run.clear();
            order.clear();
        }
        if *stop.borrow() {
            return Ok(committed);
        }
        if !buf.is_empty() {
            sink.send(Bytes::from(buf.into_bytes())).await?;
        }
        bar.inc(pending);
        committed += sink.finish().await?;
        batch += of as u64;
    }
    Ok(committed)
}

// ---------------------------------------------------------------------------------------------
// Change stream

/// What the change stream was asked to do.
struct StreamPlan {
    events: Option<u64>,
    duration: Option<Duration>,
    rate: f64,
    mix: Mix,
    tx_size: u64,
}

/// Rows changed by the open transaction, per table, added to the report on commit.
type Pending = Vec<(TableName, Op, u64)>;

struct Stream<'a> {
    client: &'a Client,
    seed: u64,
    rng: ChaCha8Rng,
    statements: HashMap<String, Statement>,
    pending: Pending,
}

impl Stream<'_> {
    async fn statement(&mut self, sql: String) -> Result<Statement> {
        if let Some(s) = self.statements.get(&sql) {
            return Ok(s.clone());
        }
        let stmt = self
            .client
            .prepare(&sql)
            .await
            .with_context(|| format!("cannot prepare `{sql}`"))?;
        self.statements.insert(sql, stmt.clone());
        Ok(stmt)
    }

    async fn execute(&mut self, sql: String, params: &[Option<String>]) -> Result<u64> {
        let stmt = self.statement(sql).await?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        Ok(self.client.execute(&stmt, &refs).await?)
    }

    async fn query(
        &mut self,
        sql: String,
        params: &[Option<String>],
    ) -> Result<Vec<tokio_postgres::Row>> {
        let stmt = self.statement(sql).await?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        Ok(self.client.query(&stmt, &refs).await?)
    }
}

/// `"a" = CAST($3::text AS bigint) AND ...` for columns and types, parameters from `first`.
fn where_clause(columns: &[(String, String)], first: usize) -> String {
    columns
        .iter()
        .enumerate()
        .map(|(i, (c, t))| format!("{} = CAST(${}::text AS {t})", quote_ident(c), first + i))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Runs the change stream. Returns events and transactions committed.
async fn change_stream(
    state: &mut State,
    client: &Client,
    seed: u64,
    plan: &StreamPlan,
    out: &Output,
    stop: &watch::Receiver<bool>,
) -> Result<(u64, u64)> {
    let bar = match plan.events {
        Some(n) => {
            let bar = out.progress(Some(n), "changes");
            style_bar(
                &bar,
                "{msg} [{bar:30}] {human_pos}/{human_len} events ({rate}, ETA {eta})",
            );
            bar
        }
        None => {
            let bar = out.progress(None, "changes");
            style_bar(
                &bar,
                "{spinner} {msg} {human_pos} events ({rate}, {elapsed})",
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        }
    };
    let mut stream = Stream {
        client,
        seed,
        rng: stream_rng(seed),
        statements: HashMap::new(),
        pending: Vec::new(),
    };
    let start = tokio::time::Instant::now();
    let deadline = plan.duration.map(|d| start + d);
    let mut pace_start = start;
    let mut paced = 0u64;
    let mut events = 0u64;
    let mut transactions = 0u64;
    let mut stop = stop.clone();
    loop {
        if *stop.borrow() {
            break;
        }
        let remaining = plan.events.map_or(u64::MAX, |n| n - events);
        if remaining == 0 || deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            break;
        }
        if plan.rate > 0.0 {
            let now = tokio::time::Instant::now();
            let mut due = pace_start + Duration::from_secs_f64(paced as f64 / plan.rate);
            if now > due + Duration::from_secs(1) {
                // Fell behind (a slow server): carry on at the rate instead of bursting.
                pace_start = now;
                paced = 0;
                due = now;
            }
            let until = deadline.map_or(due, |d| d.min(due));
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                break;
            }
        }
        let k = plan.tx_size.min(remaining);
        client.batch_execute("BEGIN").await?;
        let mut result = Ok(());
        for _ in 0..k {
            result = event(state, &mut stream, plan.mix).await;
            if result.is_err() {
                break;
            }
        }
        if let Err(e) = result {
            let _ = client.batch_execute("ROLLBACK").await;
            bar.finish_and_clear();
            return Err(e);
        }
        client
            .batch_execute("COMMIT")
            .await
            .context("cannot commit the change transaction")?;
        for (table, op, n) in std::mem::take(&mut stream.pending) {
            let counts = state.counts_of(&table);
            match op {
                Op::Insert => counts.inserted += n,
                Op::Update => counts.updated += n,
                Op::Delete => counts.deleted += n,
            }
        }
        events += k;
        paced += k;
        transactions += 1;
        bar.inc(k);
    }
    bar.finish_and_clear();
    Ok((events, transactions))
}

/// One change: the operation `--mix` draws, or an insert when there is no row to act on.
async fn event(state: &mut State, stream: &mut Stream<'_>, mix: Mix) -> Result<()> {
    let op = mix.pick(&mut stream.rng);
    let n = state.specs.len();
    if op != Op::Insert {
        let mut candidates: Vec<usize> = (0..n)
            .filter(|&t| op == Op::Delete || !state.specs[t].updatable().is_empty())
            .collect();
        while !candidates.is_empty() {
            let c = stream.rng.random_range(0..candidates.len());
            let t = candidates[c];
            let key = if op == Op::Delete {
                state.keys[t].take(&mut stream.rng)
            } else {
                state.keys[t].pick(&mut stream.rng)
            };
            match key {
                Some(key) if op == Op::Delete => return delete_event(state, stream, t, key).await,
                Some(key) => return update_event(state, stream, t, key).await,
                None => {
                    candidates.swap_remove(c);
                }
            }
        }
    }
    insert_event(state, stream).await
}

async fn insert_event(state: &mut State, stream: &mut Stream<'_>) -> Result<()> {
    let mut candidates: Vec<usize> = (0..state.specs.len()).collect();
    let mut reasons = Vec::new();
    while !candidates.is_empty() {
        let c = stream.rng.random_range(0..candidates.len());
        let t = candidates[c];
        let (n, r) = state.next_row(stream.client, t).await?;
        let spec = &state.specs[t];
        let mut parents = LiveParents {
            sources: &state.parents[t],
            keys: &mut state.keys,
        };
        let values = match spec.row_values(stream.seed, n, r, &mut parents) {
            Ok(values) => values,
            Err(reason) => {
                reasons.push(reason);
                candidates.swap_remove(c);
                continue;
            }
        };
        let columns: Vec<String> = spec
            .insert_columns()
            .map(|c| quote_ident(&c.name))
            .collect();
        let casts: Vec<String> = spec
            .insert_columns()
            .enumerate()
            .map(|(i, c)| format!("CAST(${}::text AS {})", i + 1, c.sql_type))
            .collect();
        let returning: Vec<String> = spec
            .primary_key
            .iter()
            .map(|&i| format!("{}::text", quote_ident(&spec.columns[i].name)))
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}){} VALUES ({}) RETURNING {}",
            spec.name.quoted(),
            columns.join(", "),
            if spec.overriding_system_value {
                " OVERRIDING SYSTEM VALUE"
            } else {
                ""
            },
            casts.join(", "),
            returning.join(", ")
        );
        let name = spec.name.clone();
        let int_key = int_keys(spec);
        let rows = stream
            .query(sql, &values)
            .await
            .with_context(|| format!("cannot insert into `{name}`"))?;
        for row in &rows {
            let parts: Vec<String> = (0..returning.len()).map(|i| row.get(i)).collect();
            state.keys[t].keys.push(KeyVal::from_parts(int_key, parts));
        }
        stream.pending.push((name, Op::Insert, rows.len() as u64));
        return Ok(());
    }
    Err(usage(
        format!("no table can get a new row: {}", reasons.join("; ")),
        Some("fill the referenced tables first, or add them to `--table`".to_string()),
    ))
}

async fn update_event(
    state: &mut State,
    stream: &mut Stream<'_>,
    t: usize,
    key: KeyVal,
) -> Result<()> {
    let spec = &state.specs[t];
    let changes = spec.update_values(&mut stream.rng);
    let sets: Vec<String> = changes
        .iter()
        .enumerate()
        .map(|(i, (c, _))| {
            let col = &spec.columns[*c];
            format!(
                "{} = CAST(${}::text AS {})",
                quote_ident(&col.name),
                i + 1,
                col.sql_type
            )
        })
        .collect();
    let key_columns: Vec<(String, String)> = spec
        .primary_key
        .iter()
        .zip(&state.key_types[t])
        .map(|(&i, ty)| (spec.columns[i].name.clone(), ty.clone()))
        .collect();
    let sql = format!(
        "UPDATE {} SET {} WHERE {}",
        spec.name.quoted(),
        sets.join(", "),
        where_clause(&key_columns, changes.len() + 1)
    );
    let mut params: Vec<Option<String>> = changes.into_iter().map(|(_, v)| v).collect();
    params.extend(key.parts().into_iter().map(Some));
    let name = spec.name.clone();
    let n = stream
        .execute(sql, &params)
        .await
        .with_context(|| format!("cannot update `{name}`"))?;
    stream.pending.push((name, Op::Update, n));
    Ok(())
}

async fn delete_event(
    state: &mut State,
    stream: &mut Stream<'_>,
    t: usize,
    key: KeyVal,
) -> Result<()> {
    let spec = &state.specs[t];
    let conds: Vec<(String, String, String)> = spec
        .primary_key
        .iter()
        .zip(&state.key_types[t])
        .zip(key.parts())
        .map(|((&i, ty), v)| (spec.columns[i].name.clone(), ty.clone(), v))
        .collect();
    let name = spec.name.clone();
    delete_where(state, stream, name, conds, 0).await
}

/// Deletes the rows of `table` matching every (column, type, value), after the rows of other
/// tables that reference them (recursively), forgetting deleted keys of targets.
fn delete_where<'a, 'c: 'a>(
    state: &'a mut State,
    stream: &'a mut Stream<'c>,
    table: TableName,
    conds: Vec<(String, String, String)>,
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + 'a>> {
    Box::pin(async move {
        if depth > MAX_DELETE_DEPTH {
            return Err(anyhow!(
                "rows referencing `{table}` nest deeper than {MAX_DELETE_DEPTH} tables"
            ));
        }
        let where_cols: Vec<(String, String)> = conds
            .iter()
            .map(|(c, t, _)| (c.clone(), t.clone()))
            .collect();
        let params: Vec<Option<String>> = conds.iter().map(|(_, _, v)| Some(v.clone())).collect();
        let children = state.children.get(&table).cloned().unwrap_or_default();
        for child in children {
            // Values of the referenced column in the rows about to go.
            let values: Vec<String> = match conds.iter().find(|(c, _, _)| *c == child.parent_column)
            {
                Some((_, _, v)) => vec![v.clone()],
                None => {
                    let sql = format!(
                        "SELECT {}::text FROM {} WHERE {}",
                        quote_ident(&child.parent_column),
                        table.quoted(),
                        where_clause(&where_cols, 1)
                    );
                    stream
                        .query(sql, &params)
                        .await?
                        .iter()
                        .filter_map(|r| r.get::<_, Option<String>>(0))
                        .collect()
                }
            };
            for value in values {
                delete_where(
                    state,
                    stream,
                    child.child.clone(),
                    vec![(child.column.clone(), child.column_type.clone(), value)],
                    depth + 1,
                )
                .await?;
            }
        }
        let target = state.target(&table);
        let key_cols: Vec<String> = match target {
            Some(t) => state.specs[t]
                .primary_key
                .iter()
                .map(|&i| state.specs[t].columns[i].name.clone())
                .collect(),
            None => Vec::new(),
        };
        let returning = if key_cols.is_empty() {
            "1".to_string()
        } else {
            key_cols
                .iter()
                .map(|c| format!("{}::text", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sql = format!(
            "DELETE FROM {} WHERE {} RETURNING {returning}",
            table.quoted(),
            where_clause(&where_cols, 1)
        );
        let rows = stream
            .query(sql, &params)
            .await
            .with_context(|| format!("cannot delete from `{table}`"))?;
        if let Some(t) = target {
            let int_key = int_keys(&state.specs[t]);
            for row in &rows {
                let parts: Vec<String> = (0..key_cols.len()).map(|i| row.get(i)).collect();
                state.keys[t]
                    .dead
                    .insert(KeyVal::from_parts(int_key, parts));
            }
        }
        stream.pending.push((table, Op::Delete, rows.len() as u64));
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Report

fn print_report(out: &Output, report: &GenerateDataReport) -> Result<()> {
    out.report(report, |w| {
        let mut table = out.table(["TABLE", "INSERTED", "UPDATED", "DELETED"]);
        let num = |n: u64| Cell::new(n).set_alignment(CellAlignment::Right);
        for t in &report.tables {
            table.add_row([
                Cell::new(&t.table),
                num(t.inserted),
                num(t.updated),
                num(t.deleted),
            ]);
        }
        write!(w, "{}", out.render_table(&table))?;
        writeln!(w)?;
        if let Some(b) = &report.bulk {
            writeln!(
                w,
                "bulk load   {} rows in {:.2} s ({} rows/s, {} connection{})",
                b.rows,
                b.elapsed_ms as f64 / 1000.0,
                b.rows_per_sec.round(),
                b.connections,
                if b.connections == 1 { "" } else { "s" }
            )?;
        }
        if let Some(c) = &report.changes {
            writeln!(
                w,
                "changes     {} events in {} transactions, {:.2} s ({} events/s)",
                c.events,
                c.transactions,
                c.elapsed_ms as f64 / 1000.0,
                c.events_per_sec.round()
            )?;
        }
        writeln!(
            w,
            "total       {} rows in {:.2} s ({} rows/s)",
            report.rows,
            report.elapsed_ms as f64 / 1000.0,
            report.rows_per_sec.round()
        )?;
        if !report.large_text_columns.is_empty() {
            writeln!(w, "large text  {}", report.large_text_columns.join(", "))?;
        }
        writeln!(
            w,
            "seed        {} (`--seed {}` replays this run on the same starting data)",
            report.seed, report.seed
        )?;
        if report.interrupted {
            writeln!(
                w,
                "interrupted by Ctrl-C: the counts are the rows that were committed"
            )?;
        }
        Ok(())
    })
    .context("cannot write the summary")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_clauses_cast() {
        assert_eq!(
            where_clause(
                &[
                    ("id".into(), "bigint".into()),
                    ("Region".into(), "text".into())
                ],
                3
            ),
            "\"id\" = CAST($3::text AS bigint) AND \"Region\" = CAST($4::text AS text)"
        );
    }

    #[test]
    fn report_fields_are_stable() {
        let report = GenerateDataReport {
            seed: 7,
            tables: vec![TableCounts {
                table: "public.users".into(),
                inserted: 3,
                updated: 2,
                deleted: 1,
            }],
            bulk: None,
            changes: Some(ChangesReport {
                events: 6,
                transactions: 3,
                elapsed_ms: 1500,
                events_per_sec: per_sec(6, Duration::from_millis(1500)),
            }),
            rows: 6,
            elapsed_ms: 1500,
            rows_per_sec: 4.0,
            large_text_columns: vec![],
            interrupted: false,
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "seed": 7,
                "tables": [{"table": "public.users", "inserted": 3, "updated": 2, "deleted": 1}],
                "bulk": null,
                "changes": {"events": 6, "transactions": 3, "elapsed_ms": 1500, "events_per_sec": 4.0},
                "rows": 6,
                "elapsed_ms": 1500,
                "rows_per_sec": 4.0,
                "large_text_columns": [],
                "interrupted": false
            })
        );
    }
}
