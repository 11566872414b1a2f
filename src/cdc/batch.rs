//! Per-key compaction of one micro-batch of decoded change events into a per-table plan a sink
//! applies in one warehouse transaction (DESIGN.md, "Compaction within a batch" and "Delivery
//! semantics of `load`"). Pure: no IO, no clock, no logging; never panics, whatever the input.
//!
//! # Input
//!
//! [`Batch::push`] takes every [`Decoded`] message the loader consumed, of any topic and table,
//! in arrival order ([`Batch::push_change`] takes a bare [`ChangeEvent`]). What each message
//! became is returned as [`Pushed`]:
//!
//! - **Tombstones** (null value after a delete) carry no information for the warehouse: skipped
//!   and counted ([`BatchStats::tombstones_skipped`]).
//! - **Logical messages** (op `m`) carry no table rows: skipped and counted
//!   ([`BatchStats::messages_skipped`]).
//! - A create/read/update/delete **without any row image** (malformed) cannot be applied:
//!   skipped and counted ([`BatchStats::without_row_skipped`]).
//! - Everything else is buffered under its table and key.
//!
//! Skipped messages still count for [`BatchStats::offsets`]: their offsets are committed with
//! the batch like any other.
//!
//! # Grouping
//!
//! - **Table** ([`TableId`]): `source.schema` + `source.table`. Without a source table (a
//!   flattened record without `add.fields=table`) the Kafka topic stands for the table:
//!   `name` is the topic and `schema` is `None`.
//! - **Key**: the values of the message key (the primary key; Debezium keys messages by it), in
//!   key column order, through a canonical, hashable and totally ordered form: numerically equal
//!   decimals (`1.0`, `1.00`) and timestamps with zone at the same instant are one key; floats
//!   compare by their bits with `-0.0` = `0.0` and all NaNs equal; json, arrays, maps and
//!   structs by their content. No value makes it panic.
//!
//! # Order and the final operation
//!
//! The events of one key are ordered by (`source.lsn`, Kafka offset), not by arrival: row locks
//! make a key's change LSNs increase with commit order, and the offset breaks ties of equal LSNs
//! (both events are then in one partition, in commit order). An event without LSN (a flattened
//! record without `__lsn`) sorts before every event with one; arrival order breaks the last
//! ties. The last event decides:
//!
//! - last is a delete → one [`Delete`] with that event's LSN (and its `before` image, for
//!   `--soft-delete`), whatever came before it in the batch;
//! - last is a create, read or update → one [`Upsert`] of its row image, recorded with its own
//!   op (`c`/`r`/`u`), even after a delete of the key in the same batch (delete then re-insert);
//!   the sink's LSN guard turns it into an insert or an update.
//!
//! **TOAST.** A column [`Value::Unavailable`] in the final image ("unchanged, not sent") takes
//! the latest known value of that column from an earlier event of the key in the batch — the
//! `after` images of events since the key's last delete (a delete ends a row's history, so
//! nothing is carried across it; `before` images are not used since with the default replica
//! identity they hold schema defaults, not values). When none has it the column stays
//! `Unavailable`, and the sink's MERGE keeps the stored value; the placeholder text is never
//! produced.
//!
//! # Truncate
//!
//! A truncate (op `t`) of a table discards every buffered event of that table ordered before it
//! and marks the table's plan with [`TablePlan::truncate`]; events of the table after it
//! survive and are applied after the truncate; other tables are untouched. "Before" is the
//! (LSN, offset) order when both events have an LSN — a truncate has a null key, so it may sit
//! in another partition than the changes around it — and arrival order otherwise. Of several
//! truncates of a table in one batch only the last one remains.
//!
//! The truncate carries its LSN: a sink may delete only rows stored with a lower
//! `_cdc_source_lsn` instead of truncating, which stays right when changes committed after the
//! truncate, read from another partition, were loaded by an earlier batch.
//!
//! # History
//!
//! A batch made with [`Batch::with_history`] (`load --history`) also lists, in
//! [`TablePlan::history`], every keyed create/read/update/delete it kept, not only the final one
//! per key, in (LSN, offset) order per key, each with its own op, LSN and commit time.
//! Unavailable columns of an update are filled from the `after` images of the key's earlier
//! events in the batch (since its last delete), like the final image; what stays unavailable the
//! sink fills from the row stored before the batch. Events discarded by a truncate in the same
//! batch are not listed.
//!
//! # Events without a key
//!
//! A table without primary key has messages without key (or with an empty key row). They cannot
//! be compacted by key, and whether such a table can be loaded at all (append-only, or refused to
//! the DLQ) is the sink's decision, not this module's: so they are returned, ordered as above
//! and cut by truncates, in [`TablePlan::keyless`] rather than as an error that would fail the
//! whole batch for one table.
//!
//! # Isolating rows
//!
//! The keys of a plan are independent of one another: each upsert or delete is a key's final
//! state. So a plan can be split ([`TablePlan::split`]) into halves that, applied one after the
//! other, do what the whole does. When the warehouse refuses a plan, the loader first applies
//! [`TablePlan::schema_only`]: if that is refused too, the table is (its schema); otherwise some
//! rows are, and halving the failing parts finds them while the other rows land. A plan with a
//! truncate or events without key is not split.
//!
//! # Output
//!
//! [`Batch::finish`] gives a [`Compacted`]: one [`TablePlan`] per table that had at least one
//! buffered event or truncate, tables ordered by [`TableId`]; inside a plan, upserts and deletes
//! ordered by key (the canonical order above), keyless events in event order. Each plan keeps
//! the schema ([`TableSchema`]) of the table's latest event (in (LSN, offset) order) carrying
//! one, so the sink can evolve the table before applying the batch. The sink applies a plan as:
//! truncate (if any), then deletes and upserts (they concern distinct keys).
//!
//! [`BatchStats`] has what the metrics need: events in, per table per op counts, rows out,
//! skipped counts, min/max source and Kafka timestamps, and per (topic, partition) the highest
//! offset seen — the loader commits [`BatchStats::commit_offsets`] (highest + 1, Kafka's "next
//! offset to read") after the warehouse transaction has committed.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::event::{ChangeEvent, Decoded, KafkaPosition, Op, Row, TableSchema, Value};

/// A table the events belong to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId {
    /// Source schema (`source.schema`); `None` when absent, and when `name` is the topic.
    pub schema: Option<Arc<str>>,
    /// Source table (`source.table`), or the Kafka topic when the event names no table.
    pub name: Arc<str>,
}

impl TableId {
    /// The table of an event: source schema and table, else the topic.
    pub fn of(event: &ChangeEvent) -> Self {
        let non_empty = |s: &Option<Arc<str>>| s.clone().filter(|s| !s.is_empty());
        match non_empty(&event.source.table) {
            Some(name) => Self {
                schema: non_empty(&event.source.schema),
                name,
            },
            None => Self {
                schema: None,
                name: event.kafka.topic.clone(),
            },
        }
    }
}

impl std::fmt::Display for TableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What [`Batch::push`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Buffered under its table (and key); a later truncate may still discard it.
    Buffered,
    /// A tombstone: skipped.
    Tombstone,
    /// A logical decoding message (op `m`): skipped.
    Message,
    /// A create/read/update/delete with neither `after` nor `before`: skipped.
    WithoutRow,
    /// Ordered before a truncate of its table already buffered: discarded.
    BeforeTruncate,
}

/// Final state of one key: write this row image.
#[derive(Debug, Clone, PartialEq)]
pub struct Upsert {
    /// The key row (message key) of the final event.
    pub key: Row,
    /// The final row image, unavailable TOAST columns filled from earlier images when known
    /// (remaining [`Value::Unavailable`] columns mean "keep the stored value").
    pub row: Row,
    /// The final event's op, for `_cdc_operation`: [`Op::Create`], [`Op::Read`] or
    /// [`Op::Update`].
    pub op: Op,
    /// Source LSN of the final event, for `_cdc_source_lsn` and the LSN guard.
    pub lsn: Option<i64>,
    /// Source commit time of the final event (ms since epoch), for `_cdc_timestamp`.
    pub source_ts_ms: Option<i64>,
    /// Where the final event was read.
    pub kafka: KafkaPosition,
}

/// Final state of one key: deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    /// The key row (message key) of the delete.
    pub key: Row,
    /// Source LSN of the delete.
    pub lsn: Option<i64>,
    /// Source commit time of the delete (ms since epoch).
    pub source_ts_ms: Option<i64>,
    /// The delete's `before` image when present (complete only with `REPLICA IDENTITY FULL`),
    /// for `--soft-delete`.
    pub before: Option<Row>,
    /// Where the delete was read.
    pub kafka: KafkaPosition,
}

/// The table was truncated in this batch: apply before the plan's rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Truncate {
    /// Source LSN of the truncate.
    pub lsn: Option<i64>,
    /// Source commit time of the truncate (ms since epoch).
    pub source_ts_ms: Option<i64>,
    /// Where the truncate was read.
    pub kafka: KafkaPosition,
}

/// What to apply to one table for the batch, in this order: `truncate`, then `deletes` and
/// `upserts` (distinct keys), then whatever the sink does with `keyless`.
#[derive(Debug, Clone, PartialEq)]
pub struct TablePlan {
    /// The table.
    pub table: TableId,
    /// Schema of the table's latest event (by LSN, offset) that carried one.
    pub schema: Option<Arc<TableSchema>>,
    /// The last truncate of the table in the batch, if any.
    pub truncate: Option<Truncate>,
    /// Keys whose final event is a create, read or update, ordered by key.
    pub upserts: Vec<Upsert>,
    /// Keys whose final event is a delete, ordered by key.
    pub deletes: Vec<Delete>,
    /// Events without key (table without primary key), not compacted, in (LSN, offset) order.
    pub keyless: Vec<ChangeEvent>,
    /// With [`Batch::with_history`]: every keyed change of the batch, not compacted (module
    /// doc, "History"); empty otherwise.
    pub history: History,
}

/// Every change of a table in a batch, one [`Upsert`] or [`Delete`] per event, ordered by key
/// then by (LSN, offset): what `load --history` appends to the table's changes table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Creates, reads and updates, their unavailable columns filled from earlier events of the
    /// key in the batch when known.
    pub upserts: Vec<Upsert>,
    /// Deletes.
    pub deletes: Vec<Delete>,
}

impl History {
    /// No change recorded.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }
}

impl TablePlan {
    /// The number of keys the plan changes: its upserts and deletes.
    pub fn keys(&self) -> usize {
        self.upserts.len() + self.deletes.len()
    }

    /// The plan without any change: applying it only creates or evolves the target for the
    /// schema. A warehouse that takes it but not the plan refuses some of the rows, not the
    /// table (module doc, "Isolating rows").
    pub fn schema_only(&self) -> TablePlan {
        TablePlan {
            table: self.table.clone(),
            schema: self.schema.clone(),
            truncate: None,
            upserts: Vec::new(),
            deletes: Vec::new(),
            keyless: Vec::new(),
            history: History::default(),
        }
    }

    /// The plan's keys in two halves (upserts, then deletes, in their order), each half with
    /// the history of its own keys; applied one after the other they do what the plan does
    /// (module doc, "Isolating rows"). `None` when the plan has fewer than two keys, a truncate
    /// (which must come before every change) or events without key.
    pub fn split(&self) -> Option<(TablePlan, TablePlan)> {
        if self.keys() < 2 || self.truncate.is_some() || !self.keyless.is_empty() {
            return None;
        }
        let half = self.keys() / 2;
        let (mut first, mut second) = (self.schema_only(), self.schema_only());
        let upserts = half.min(self.upserts.len());
        first.upserts = self.upserts[..upserts].to_vec();
        second.upserts = self.upserts[upserts..].to_vec();
        let deletes = half - upserts;
        first.deletes = self.deletes[..deletes].to_vec();
        second.deletes = self.deletes[deletes..].to_vec();
        if !self.history.is_empty() {
            let keys: std::collections::HashSet<KeyRepr> = first
                .upserts
                .iter()
                .map(|u| &u.key)
                .chain(first.deletes.iter().map(|d| &d.key))
                .map(KeyRepr::of)
                .collect();
            let in_first = |key: &Row| keys.contains(&KeyRepr::of(key));
            let (a, b): (Vec<Upsert>, Vec<Upsert>) =
                (self.history.upserts.iter().cloned()).partition(|u| in_first(&u.key));
            (first.history.upserts, second.history.upserts) = (a, b);
            let (a, b): (Vec<Delete>, Vec<Delete>) =
                (self.history.deletes.iter().cloned()).partition(|d| in_first(&d.key));
            (first.history.deletes, second.history.deletes) = (a, b);
        }
        Some((first, second))
    }
}

/// Event counts per op for one table (as pushed, before compaction).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// `c` events.
    pub create: u64,
    /// `r` events.
    pub read: u64,
    /// `u` events.
    pub update: u64,
    /// `d` events.
    pub delete: u64,
    /// `t` events.
    pub truncate: u64,
}

impl OpCounts {
    fn add(&mut self, op: Op) {
        let counter = match op {
            Op::Create => &mut self.create,
            Op::Read => &mut self.read,
            Op::Update => &mut self.update,
            Op::Delete => &mut self.delete,
            Op::Truncate => &mut self.truncate,
            Op::Message => return,
        };
        *counter += 1;
    }

    /// All events counted.
    pub fn total(&self) -> u64 {
        self.create + self.read + self.update + self.delete + self.truncate
    }
}

/// Counters of one batch, for metrics and offset commits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Every message pushed, tombstones and messages included.
    pub events_in: u64,
    /// Table events (c/r/u/d/t) per table and op, as pushed.
    pub per_table: BTreeMap<TableId, OpCounts>,
    /// Rows in the plans: upserts + deletes + keyless events (set by [`Batch::finish`]).
    pub rows_out: u64,
    /// Tombstones skipped.
    pub tombstones_skipped: u64,
    /// Logical decoding messages (op `m`) skipped.
    pub messages_skipped: u64,
    /// Row events without any row image skipped.
    pub without_row_skipped: u64,
    /// Events discarded because a truncate of their table came after them.
    pub discarded_by_truncate: u64,
    /// Messages sent to the dead-letter queue instead ([`Batch::skip`]).
    pub dead_lettered: u64,
    /// Earliest `source.ts_ms` among the change events pushed (messages included).
    pub source_ts_ms_min: Option<i64>,
    /// Latest `source.ts_ms` among the change events pushed (messages included).
    pub source_ts_ms_max: Option<i64>,
    /// Earliest Kafka timestamp among all messages pushed.
    pub kafka_ts_ms_min: Option<i64>,
    /// Latest Kafka timestamp among all messages pushed.
    pub kafka_ts_ms_max: Option<i64>,
    /// Highest offset seen per (topic, partition), over all messages pushed.
    pub offsets: BTreeMap<(Arc<str>, i32), i64>,
}

impl BatchStats {
    /// Offsets to commit once the batch is in the warehouse: per (topic, partition) the highest
    /// offset seen + 1 (Kafka commits the next offset to read).
    pub fn commit_offsets(&self) -> impl Iterator<Item = (&str, i32, i64)> + '_ {
        self.offsets
            .iter()
            .map(|((topic, partition), offset)| (&**topic, *partition, offset.saturating_add(1)))
    }

    fn observe_message(&mut self, kafka: &KafkaPosition) {
        self.events_in += 1;
        observe(
            &mut self.kafka_ts_ms_min,
            &mut self.kafka_ts_ms_max,
            kafka.timestamp_ms,
        );
        let key = (kafka.topic.clone(), kafka.partition);
        self.offsets
            .entry(key)
            .and_modify(|o| *o = (*o).max(kafka.offset))
            .or_insert(kafka.offset);
    }
}

fn observe(min: &mut Option<i64>, max: &mut Option<i64>, value: Option<i64>) {
    if let Some(v) = value {
        *min = Some(min.map_or(v, |m| m.min(v)));
        *max = Some(max.map_or(v, |m| m.max(v)));
    }
}

/// The result of [`Batch::finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct Compacted {
    /// One plan per table, ordered by [`TableId`].
    pub tables: Vec<TablePlan>,
    /// The batch's counters.
    pub stats: BatchStats,
}

/// A micro-batch being filled: push messages, then [`finish`](Batch::finish).
#[derive(Debug, Default)]
pub struct Batch {
    tables: HashMap<TableId, TableBuffer>,
    stats: BatchStats,
    /// Arrival counter: the last tie-breaker of the event order.
    arrivals: u64,
    /// Events currently buffered (keyed and keyless, truncates excluded).
    buffered: usize,
    /// Keep every change for [`TablePlan::history`].
    history: bool,
}

/// Position of an event in the order of a key: (LSN, offset, arrival). A total order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    lsn: Option<i64>,
    offset: i64,
    arrival: u64,
}

impl Position {
    /// Whether `self` comes before the truncate at `truncate` (module doc, "Truncate").
    fn precedes(&self, truncate: &Position) -> bool {
        match (self.lsn, truncate.lsn) {
            (Some(_), Some(_)) => self < truncate,
            _ => self.arrival < truncate.arrival,
        }
    }
}

#[derive(Debug)]
struct Pending {
    position: Position,
    event: ChangeEvent,
}

#[derive(Debug, Default)]
struct TableBuffer {
    keyed: HashMap<KeyRepr, Vec<Pending>>,
    keyless: Vec<Pending>,
    truncate: Option<Pending>,
    schema: Option<(Position, Arc<TableSchema>)>,
}

impl TableBuffer {
    /// Drops the buffered events before `truncate`; returns how many.
    fn cut(&mut self, truncate: &Position) -> usize {
        let mut dropped = 0;
        let mut keep = |p: &Pending| {
            let before = p.position.precedes(truncate);
            dropped += usize::from(before);
            !before
        };
        self.keyed.retain(|_, events| {
            events.retain(&mut keep);
            !events.is_empty()
        });
        self.keyless.retain(keep);
        dropped
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch whose plans also list every change ([`TablePlan::history`]).
    pub fn with_history() -> Self {
        Self {
            history: true,
            ..Self::default()
        }
    }

    /// Events buffered (keyed and keyless; truncates, skipped and discarded ones excluded).
    pub fn len(&self) -> usize {
        self.buffered
    }

    /// True when nothing is buffered (skipped messages may still have advanced offsets: see
    /// [`Batch::stats`]).
    pub fn is_empty(&self) -> bool {
        self.buffered == 0 && self.tables.values().all(|t| t.truncate.is_none())
    }

    /// The counters so far (`rows_out` is set by [`Batch::finish`]).
    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }

    /// Notes a message that is not part of the batch (it went to the dead-letter queue): its
    /// offset is committed with the batch.
    pub fn skip(&mut self, kafka: &KafkaPosition) {
        self.stats.observe_message(kafka);
        self.stats.dead_lettered += 1;
    }

    /// Adds one decoded message; tombstones are skipped (counted, offset noted).
    pub fn push(&mut self, decoded: Decoded) -> Pushed {
        match decoded {
            Decoded::Change(event) => self.push_change(event),
            Decoded::Tombstone { kafka, .. } => {
                self.stats.observe_message(&kafka);
                self.stats.tombstones_skipped += 1;
                Pushed::Tombstone
            }
        }
    }

    /// Adds one change event; logical messages are skipped (counted, offset noted).
    pub fn push_change(&mut self, event: ChangeEvent) -> Pushed {
        let stats = &mut self.stats;
        stats.observe_message(&event.kafka);
        observe(
            &mut stats.source_ts_ms_min,
            &mut stats.source_ts_ms_max,
            event.source.ts_ms,
        );
        if event.op == Op::Message {
            stats.messages_skipped += 1;
            return Pushed::Message;
        }
        let table = TableId::of(&event);
        match stats.per_table.get_mut(&table) {
            Some(counts) => counts.add(event.op),
            None => stats
                .per_table
                .entry(table.clone())
                .or_default()
                .add(event.op),
        }
        if event.op != Op::Truncate && event.row().is_none() {
            stats.without_row_skipped += 1;
            return Pushed::WithoutRow;
        }

        self.arrivals += 1;
        let position = Position {
            lsn: event.lsn(),
            offset: event.kafka.offset,
            arrival: self.arrivals,
        };
        let buffer = self.tables.entry(table).or_default();
        if let Some(schema) = &event.schema
            && buffer.schema.as_ref().is_none_or(|(p, _)| *p < position)
        {
            buffer.schema = Some((position, schema.clone()));
        }
        if let Some(truncate) = &buffer.truncate
            && position.precedes(&truncate.position)
        {
            stats.discarded_by_truncate += 1;
            return Pushed::BeforeTruncate;
        }

        let pending = Pending { position, event };
        if pending.event.op == Op::Truncate {
            let dropped = buffer.cut(&position);
            self.buffered -= dropped;
            stats.discarded_by_truncate += dropped as u64;
            if buffer.truncate.replace(pending).is_some() {
                stats.discarded_by_truncate += 1;
            }
            return Pushed::Buffered;
        }
        match pending.event.key.as_ref().filter(|k| !k.is_empty()) {
            Some(key) => {
                let repr = KeyRepr::of(key);
                buffer.keyed.entry(repr).or_default().push(pending);
            }
            None => buffer.keyless.push(pending),
        }
        self.buffered += 1;
        Pushed::Buffered
    }

    /// Compacts the batch into per-table plans (module doc).
    pub fn finish(self) -> Compacted {
        let mut stats = self.stats;
        let mut tables: Vec<(TableId, TableBuffer)> = self.tables.into_iter().collect();
        tables.sort_by(|a, b| a.0.cmp(&b.0));
        let mut plans = Vec::with_capacity(tables.len());
        for (table, buffer) in tables {
            let mut plan = TablePlan {
                table,
                schema: buffer.schema.map(|(_, s)| s),
                truncate: buffer.truncate.map(|p| Truncate {
                    lsn: p.event.lsn(),
                    source_ts_ms: p.event.source.ts_ms,
                    kafka: p.event.kafka,
                }),
                upserts: Vec::new(),
                deletes: Vec::new(),
                keyless: Vec::new(),
                history: History::default(),
            };
            let mut keyed: Vec<(KeyRepr, Vec<Pending>)> = buffer.keyed.into_iter().collect();
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, mut events) in keyed {
                if self.history {
                    record_history(&mut events, &mut plan.history);
                }
                match resolve(events) {
                    Some(Final::Upsert(u)) => plan.upserts.push(u),
                    Some(Final::Delete(d)) => plan.deletes.push(d),
                    None => {}
                }
            }
            let mut keyless = buffer.keyless;
            keyless.sort_by_key(|p| p.position);
            plan.keyless = keyless.into_iter().map(|p| p.event).collect();
            stats.rows_out += (plan.upserts.len() + plan.deletes.len() + plan.keyless.len()) as u64;
            plans.push(plan);
        }
        Compacted {
            tables: plans,
            stats,
        }
    }
}

enum Final {
    Upsert(Upsert),
    Delete(Delete),
}

/// Appends every event of one key to `history`, in order, with unavailable columns filled from
/// the events before it since the key's last delete (as [`resolve`] does for the final one).
fn record_history(events: &mut [Pending], history: &mut History) {
    events.sort_by_key(|p| p.position);
    let mut since = 0;
    for (i, pending) in events.iter().enumerate() {
        let event = &pending.event;
        let key = event.key.clone().unwrap_or_default();
        if event.op == Op::Delete {
            history.deletes.push(Delete {
                key,
                lsn: event.source.lsn,
                source_ts_ms: event.source.ts_ms,
                before: event.before.clone(),
                kafka: event.kafka.clone(),
            });
            since = i + 1;
            continue;
        }
        let Some(mut row) = event.after.clone().or_else(|| event.before.clone()) else {
            continue;
        };
        if row.values().iter().any(Value::is_unavailable) {
            fill_unavailable(&mut row, &events[since..i]);
        }
        history.upserts.push(Upsert {
            key,
            row,
            op: event.op,
            lsn: event.source.lsn,
            source_ts_ms: event.source.ts_ms,
            kafka: event.kafka.clone(),
        });
    }
}

/// The final state of one key from its events (module doc, "Order and the final operation").
fn resolve(mut events: Vec<Pending>) -> Option<Final> {
    events.sort_by_key(|p| p.position);
    let last = events.pop()?.event;
    let key = last.key.unwrap_or_default();
    if last.op == Op::Delete {
        return Some(Final::Delete(Delete {
            key,
            lsn: last.source.lsn,
            source_ts_ms: last.source.ts_ms,
            before: last.before,
            kafka: last.kafka,
        }));
    }
    // `push_change` buffers only events with a row image.
    let mut row = last.after.or(last.before)?;
    if row.values().iter().any(Value::is_unavailable) {
        // Only events since the key's last delete describe this row.
        let since = events
            .iter()
            .rposition(|p| p.event.op == Op::Delete)
            .map_or(0, |i| i + 1);
        let earlier = events.get(since..).unwrap_or_default();
        fill_unavailable(&mut row, earlier);
    }
    Some(Final::Upsert(Upsert {
        key,
        row,
        op: last.op,
        lsn: last.source.lsn,
        source_ts_ms: last.source.ts_ms,
        kafka: last.kafka,
    }))
}

/// Replaces each unavailable column of `row` by the latest known value of that column in the
/// `after` images of `earlier` (ordered oldest first).
fn fill_unavailable(row: &mut Row, earlier: &[Pending]) {
    let missing: Vec<Arc<str>> = row
        .iter()
        .filter(|(_, v)| v.is_unavailable())
        .map(|(n, _)| Arc::from(n))
        .collect();
    for name in missing {
        let known = earlier.iter().rev().find_map(|p| {
            p.event
                .after
                .as_ref()
                .and_then(|after| after.get(&name))
                .filter(|v| !v.is_unavailable())
        });
        if let (Some(value), Some(slot)) = (known, row.get_mut(&name)) {
            *slot = value.clone();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Canonical keys

/// A key's values in a hashable, totally ordered form (module doc, "Grouping").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct KeyRepr(Vec<KeyPart>);

impl KeyRepr {
    fn of(key: &Row) -> Self {
        Self(key.values().iter().map(KeyPart::of).collect())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum KeyPart {
    Null,
    Unavailable,
    Bool(bool),
    Int(i64),
    /// `f64` bits mapped so that integer order is the float total order.
    Float(i64),
    Decimal(Decimal),
    BigDecimal(String),
    Text(String),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    Time(NaiveTime),
    TimeTz(NaiveTime, i32),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<FixedOffset>),
    Json(String),
    Uuid(Uuid),
    List(Vec<KeyPart>),
    Map(Vec<(KeyPart, KeyPart)>),
    Struct(Vec<(String, KeyPart)>),
}

impl KeyPart {
    fn of(value: &Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Unavailable => Self::Unavailable,
            Value::Bool(b) => Self::Bool(*b),
            Value::Int(i) => Self::Int(*i),
            Value::Float(f) => Self::Float(float_key(*f)),
            Value::Decimal(d) => Self::Decimal(d.normalize()),
            Value::BigDecimal(s) => Self::BigDecimal(trim_fraction(s).to_owned()),
            Value::String(s) => Self::Text(s.clone()),
            Value::Bytes(b) => Self::Bytes(b.clone()),
            Value::Date(d) => Self::Date(*d),
            Value::Time(t) => Self::Time(*t),
            Value::TimeTz(t, offset) => Self::TimeTz(*t, offset.local_minus_utc()),
            Value::Timestamp(ts) => Self::Timestamp(*ts),
            Value::TimestampTz(ts) => Self::TimestampTz(*ts),
            // serde_json's object map is sorted by key (no `preserve_order`), so equal
            // documents give equal text.
            Value::Json(j) => Self::Json(j.to_string()),
            Value::Uuid(u) => Self::Uuid(*u),
            Value::Array(items) => Self::List(items.iter().map(Self::of).collect()),
            Value::Map(entries) => Self::Map(
                entries
                    .iter()
                    .map(|(k, v)| (Self::of(k), Self::of(v)))
                    .collect(),
            ),
            Value::Struct(row) => Self::Struct(
                row.iter()
                    .map(|(n, v)| (n.to_owned(), Self::of(v)))
                    .collect(),
            ),
        }
    }
}

/// Float bits as an integer whose order is `f64::total_cmp`'s, with `-0.0` = `0.0` and one NaN.
fn float_key(f: f64) -> i64 {
    let f = if f == 0.0 {
        0.0
    } else if f.is_nan() {
        f64::NAN
    } else {
        f
    };
    let bits = f.to_bits() as i64;
    bits ^ ((((bits >> 63) as u64) >> 1) as i64)
}

/// `12.3400` → `12.34`, `5.000` → `5`: trailing fraction zeros do not change a decimal.
fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Orders two key rows the way [`TablePlan`] orders its upserts and deletes.
pub fn compare_keys(a: &Row, b: &Row) -> Ordering {
    KeyRepr::of(a).cmp(&KeyRepr::of(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::event::{Decoder, RecordFormat, Source};
    use crate::cdc::testing::{decode_with as decode, fixture};
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::str::FromStr as _;

    const USERS: &str = fixture!("schemas-true/cdc.public.users.jsonl");
    const ORDERS: &str = fixture!("schemas-true/cdc.public.orders.jsonl");
    const TOAST: &str = fixture!("schemas-true/cdc.public.toast_demo.jsonl");
    const TRUNCATE: &str = fixture!("handmade/cdc.public.orders.truncate.jsonl");
    const MESSAGES: &str = fixture!("handmade/messages.jsonl");
    const SCHEMA_CHANGE: &str = fixture!("handmade/cdc.public.users.schema-change.jsonl");

    fn fixture(text: &str) -> Vec<Decoded> {
        decode(&mut Decoder::new(), text)
    }

    fn compact(messages: impl IntoIterator<Item = Decoded>) -> Compacted {
        let mut batch = Batch::new();
        for m in messages {
            batch.push(m);
        }
        batch.finish()
    }

    fn plan<'a>(c: &'a Compacted, table: &str) -> &'a TablePlan {
        c.tables
            .iter()
            .find(|p| &*p.table.name == table)
            .unwrap_or_else(|| panic!("no plan for {table}: {c:#?}"))
    }

    fn id_of(key: &Row) -> i64 {
        key.get("id").and_then(Value::as_i64).unwrap()
    }

    fn text(s: &str) -> Value {
        Value::String(s.to_owned())
    }

    /// A hand-built event of table `public.<table>` keyed by `id`.
    fn event(
        table: &str,
        op: Op,
        id: i64,
        lsn: Option<i64>,
        offset: i64,
        cols: &[(&str, Value)],
    ) -> ChangeEvent {
        let key: Row = [("id", Value::Int(id))].into_iter().collect();
        let mut image = key.clone();
        for (name, value) in cols {
            image.push(*name, value.clone());
        }
        let (before, after) = match op {
            Op::Delete => (Some(image), None),
            Op::Truncate | Op::Message => (None, None),
            _ => (None, Some(image)),
        };
        ChangeEvent {
            op,
            format: RecordFormat::Envelope,
            key: (!matches!(op, Op::Truncate | Op::Message)).then_some(key),
            before,
            after,
            source: Source {
                schema: Some(Arc::from("public")),
                table: Some(Arc::from(table)),
                lsn,
                ts_ms: lsn.map(|l| 1_000 + l),
                ..Source::default()
            },
            ts_ms: None,
            transaction: None,
            kafka: KafkaPosition {
                topic: Arc::from(format!("cdc.public.{table}")),
                partition: 0,
                offset,
                timestamp_ms: Some(2_000 + offset),
            },
            schema: None,
            message: None,
        }
    }

    fn compact_events(events: impl IntoIterator<Item = ChangeEvent>) -> Compacted {
        compact(events.into_iter().map(Decoded::Change))
    }

    #[test]
    fn fixture_users_keeps_last_event_per_key() {
        let c = compact(fixture(USERS));
        assert_eq!(c.tables.len(), 1);
        let p = plan(&c, "users");
        assert_eq!(
            p.table,
            TableId {
                schema: Some(Arc::from("public")),
                name: Arc::from("users"),
            }
        );
        assert!(p.truncate.is_none());
        assert_eq!(p.upserts.len(), 1);
        let u = &p.upserts[0];
        assert_eq!(id_of(&u.key), 1);
        assert_eq!(u.op, Op::Update);
        assert_eq!(u.lsn, Some(26828080));
        assert_eq!(u.source_ts_ms, Some(1795544801970));
        assert_eq!(u.kafka.offset, 8);
        let deletes: Vec<(i64, Option<i64>)> =
            p.deletes.iter().map(|d| (id_of(&d.key), d.lsn)).collect();
        assert_eq!(deletes, [(2, Some(26827528)), (3, Some(26828280))]);
        assert!(p.deletes.iter().all(|d| d.before.is_some()));
        assert!(p.schema.is_some());
        assert!(p.keyless.is_empty());

        let s = &c.stats;
        assert_eq!(s.events_in, 11);
        assert_eq!(s.tombstones_skipped, 2);
        assert_eq!(s.rows_out, 3);
        let counts = s.per_table[&p.table];
        assert_eq!(
            counts,
            OpCounts {
                create: 1,
                read: 2,
                update: 4,
                delete: 2,
                truncate: 0,
            }
        );
        assert_eq!(s.source_ts_ms_min, Some(1795544772896));
        assert_eq!(s.source_ts_ms_max, Some(1795544801970));
        assert_eq!(s.kafka_ts_ms_min, Some(1795544773386));
        assert_eq!(s.kafka_ts_ms_max, Some(1795544802621));
        let commits: Vec<_> = s.commit_offsets().collect();
        assert_eq!(commits, [("cdc.public.users", 0, 11)]);
    }

    #[test]
    fn a_plan_splits_into_halves_that_together_are_the_plan() {
        // Keys 1..=5 upserted (key 2 twice), 6 and 7 deleted.
        let mut events: Vec<ChangeEvent> = (1..=5)
            .map(|id| event("t", Op::Create, id, Some(id * 10), id, &[]))
            .collect();
        events.push(event("t", Op::Update, 2, Some(100), 8, &[("n", text("x"))]));
        events.push(event("t", Op::Delete, 6, Some(110), 9, &[]));
        events.push(event("t", Op::Delete, 7, Some(120), 10, &[]));
        let mut batch = Batch::with_history();
        for e in events {
            batch.push(Decoded::Change(e));
        }
        let c = batch.finish();
        let whole = plan(&c, "t");
        assert_eq!(whole.keys(), 7);
        let (a, b) = whole.split().unwrap();
        let ids = |p: &TablePlan| -> (Vec<i64>, Vec<i64>) {
            (
                p.upserts.iter().map(|u| id_of(&u.key)).collect(),
                p.deletes.iter().map(|d| id_of(&d.key)).collect(),
            )
        };
        assert_eq!(ids(&a), (vec![1, 2, 3], vec![]));
        assert_eq!(ids(&b), (vec![4, 5], vec![6, 7]));
        // Each half keeps the history of its own keys, all of it.
        let history = |p: &TablePlan| -> Vec<i64> {
            p.history.upserts.iter().map(|u| id_of(&u.key)).collect()
        };
        assert_eq!(history(&a), [1, 2, 2, 3]);
        assert_eq!(history(&b), [4, 5]);
        assert_eq!(b.history.deletes.len(), 2);
        assert!(a.history.deletes.is_empty());
        assert_eq!(
            (a.schema.clone(), a.table.clone()),
            (whole.schema.clone(), whole.table.clone())
        );
        // Down to single keys; the halves of a half split further.
        let (b1, b2) = b.split().unwrap();
        assert_eq!(
            (ids(&b1), ids(&b2)),
            ((vec![4, 5], vec![]), (vec![], vec![6, 7]))
        );
        let (single, other) = b2.split().unwrap();
        assert_eq!((single.keys(), other.keys()), (1, 1));
        assert!(single.split().is_none());
        let empty = whole.schema_only();
        assert_eq!((empty.keys(), empty.history.is_empty()), (0, true));
        assert!(empty.split().is_none());

        // A truncate comes before every change: such a plan is not split.
        let c = compact_events([
            event("t", Op::Create, 1, Some(1), 1, &[]),
            event("t", Op::Truncate, 0, Some(2), 2, &[]),
            event("t", Op::Create, 2, Some(3), 3, &[]),
            event("t", Op::Create, 3, Some(4), 4, &[]),
        ]);
        assert!(plan(&c, "t").truncate.is_some());
        assert!(plan(&c, "t").split().is_none());
    }

    #[test]
    fn insert_update_update_is_one_upsert_of_the_last_image() {
        // r 1, r 2, c 3, u 3, u 3, u 3.
        let messages: Vec<Decoded> = fixture(USERS).into_iter().take(6).collect();
        let last_image = messages[5].as_change().unwrap().after.clone().unwrap();
        let c = compact(messages);
        let p = plan(&c, "users");
        assert!(p.deletes.is_empty());
        let ids: Vec<i64> = p.upserts.iter().map(|u| id_of(&u.key)).collect();
        assert_eq!(ids, [1, 2, 3]);
        let u3 = &p.upserts[2];
        assert_eq!(u3.op, Op::Update);
        assert_eq!(u3.row, last_image);
        assert_eq!(u3.lsn, Some(26827368));
        assert_eq!(p.upserts[0].op, Op::Read);
        assert_eq!(c.stats.rows_out, 3);
    }

    #[test]
    fn insert_then_delete_is_a_delete() {
        let c = compact_events([
            event("t", Op::Create, 1, Some(10), 0, &[("v", text("a"))]),
            event("t", Op::Update, 1, Some(11), 1, &[("v", text("b"))]),
            event("t", Op::Delete, 1, Some(12), 2, &[("v", text("b"))]),
        ]);
        let p = plan(&c, "t");
        assert!(p.upserts.is_empty());
        assert_eq!(p.deletes.len(), 1);
        let d = &p.deletes[0];
        assert_eq!(
            (id_of(&d.key), d.lsn, d.source_ts_ms),
            (1, Some(12), Some(1012))
        );
        assert_eq!(d.before.as_ref().unwrap().get("v"), Some(&text("b")));
    }

    #[test]
    fn delete_then_reinsert_is_an_upsert_of_the_new_image() {
        let c = compact_events([
            event("t", Op::Update, 1, Some(10), 0, &[("v", text("a"))]),
            event("t", Op::Delete, 1, Some(11), 1, &[]),
            event("t", Op::Create, 1, Some(12), 2, &[("v", text("new"))]),
        ]);
        let p = plan(&c, "t");
        assert!(p.deletes.is_empty());
        assert_eq!(p.upserts.len(), 1);
        let u = &p.upserts[0];
        assert_eq!(u.op, Op::Create);
        assert_eq!(u.lsn, Some(12));
        assert_eq!(u.row.get("v"), Some(&text("new")));
    }

    #[test]
    fn out_of_order_arrival_is_sorted_by_lsn() {
        let c = compact_events([
            // key 1: the update arrives before the create it follows.
            event("t", Op::Update, 1, Some(20), 5, &[("v", text("late"))]),
            event("t", Op::Create, 1, Some(10), 1, &[("v", text("early"))]),
            // key 2: the delete arrives before an older re-insert.
            event("t", Op::Delete, 2, Some(30), 7, &[]),
            event("t", Op::Create, 2, Some(25), 6, &[("v", text("x"))]),
        ]);
        let p = plan(&c, "t");
        assert_eq!(p.upserts.len(), 1);
        assert_eq!(p.upserts[0].op, Op::Update);
        assert_eq!(p.upserts[0].row.get("v"), Some(&text("late")));
        assert_eq!(p.deletes.len(), 1);
        assert_eq!((id_of(&p.deletes[0].key), p.deletes[0].lsn), (2, Some(30)));
    }

    #[test]
    fn equal_lsns_are_ordered_by_offset() {
        let c = compact_events([
            event("t", Op::Update, 1, Some(10), 9, &[("v", text("second"))]),
            event("t", Op::Update, 1, Some(10), 3, &[("v", text("first"))]),
            event("t", Op::Create, 2, Some(10), 12, &[]),
            event("t", Op::Delete, 2, Some(10), 11, &[]),
        ]);
        let p = plan(&c, "t");
        assert_eq!(p.upserts.len(), 2);
        assert_eq!(p.upserts[0].row.get("v"), Some(&text("second")));
        assert_eq!(p.upserts[0].kafka.offset, 9);
        assert_eq!((id_of(&p.upserts[1].key), p.upserts[1].op), (2, Op::Create));
        assert!(p.deletes.is_empty());
    }

    #[test]
    fn toast_unavailable_is_filled_from_an_earlier_image() {
        let messages = fixture(TOAST);
        let snapshot = messages[0].as_change().unwrap().after.clone().unwrap();
        let big_text = snapshot.get("big_text").unwrap().clone();
        assert!(matches!(&big_text, Value::String(s) if s.len() == 12_800));
        let update = messages[1].as_change().unwrap().after.clone().unwrap();
        assert_eq!(update.get("big_text"), Some(&Value::Unavailable));

        let c = compact(messages);
        let u = &plan(&c, "toast_demo").upserts[0];
        assert_eq!(u.op, Op::Update);
        assert_eq!(u.row.get("counter"), update.get("counter"));
        assert_ne!(u.row.get("counter"), snapshot.get("counter"));
        assert_eq!(u.row.get("big_text"), Some(&big_text));
        assert!(u.row.unavailable_columns().is_empty());
    }

    #[test]
    fn toast_unavailable_stays_without_an_earlier_image() {
        let update_only = fixture(TOAST).into_iter().skip(1);
        let c = compact(update_only);
        let u = &plan(&c, "toast_demo").upserts[0];
        assert_eq!(u.row.get("big_text"), Some(&Value::Unavailable));
        assert_eq!(u.row.unavailable_columns(), ["big_text"]);
    }

    #[test]
    fn toast_takes_the_latest_known_value_and_never_crosses_a_delete() {
        let unavailable = [("doc", Value::Unavailable)];
        let c = compact_events([
            event("t", Op::Create, 1, Some(1), 0, &[("doc", text("v1"))]),
            event("t", Op::Update, 1, Some(2), 1, &[("doc", text("v2"))]),
            event("t", Op::Update, 1, Some(3), 2, &unavailable),
            event("t", Op::Update, 1, Some(4), 3, &unavailable),
            event("t", Op::Update, 2, Some(5), 4, &[("doc", text("old"))]),
            event("t", Op::Delete, 2, Some(6), 5, &[("doc", text("old"))]),
            // Never sent by Postgres after a delete; shows nothing is carried across one.
            event("t", Op::Create, 2, Some(7), 6, &unavailable),
        ]);
        let p = plan(&c, "t");
        assert_eq!(p.upserts[0].row.get("doc"), Some(&text("v2")));
        assert_eq!(p.upserts[1].row.get("doc"), Some(&Value::Unavailable));
    }

    #[test]
    fn history_lists_every_change_in_order_with_toast_filled() {
        let unavailable = [("doc", Value::Unavailable)];
        let events = [
            // Arrives out of order: listed by LSN.
            event("t", Op::Update, 1, Some(3), 2, &unavailable),
            event("t", Op::Create, 1, Some(1), 0, &[("doc", text("v1"))]),
            event("t", Op::Update, 1, Some(2), 1, &[("doc", text("v2"))]),
            event("t", Op::Delete, 1, Some(4), 3, &[("doc", text("v2"))]),
            event("t", Op::Create, 1, Some(5), 4, &unavailable),
            event("t", Op::Update, 2, Some(6), 5, &[("doc", text("x"))]),
        ];
        let mut batch = Batch::with_history();
        for e in events.clone() {
            batch.push_change(e);
        }
        let c = batch.finish();
        let h = &plan(&c, "t").history;
        let listed: Vec<(i64, Op, Option<i64>, Option<&Value>)> = h
            .upserts
            .iter()
            .map(|u| (id_of(&u.key), u.op, u.lsn, u.row.get("doc")))
            .collect();
        assert_eq!(
            listed,
            [
                (1, Op::Create, Some(1), Some(&text("v1"))),
                (1, Op::Update, Some(2), Some(&text("v2"))),
                // Filled from the update before it.
                (1, Op::Update, Some(3), Some(&text("v2"))),
                // Nothing is carried across the delete.
                (1, Op::Create, Some(5), Some(&Value::Unavailable)),
                (2, Op::Update, Some(6), Some(&text("x"))),
            ]
        );
        assert_eq!(h.deletes.len(), 1);
        assert_eq!(h.deletes[0].lsn, Some(4));
        // The compaction itself is unchanged, and without history nothing is listed.
        assert_eq!(plan(&c, "t").upserts.len(), 2);
        assert!(plan(&compact_events(events), "t").history.is_empty());
    }

    #[test]
    fn truncate_discards_earlier_events_of_that_table_only() {
        let mut decoder = Decoder::new();
        let mut messages = decode(&mut decoder, ORDERS);
        messages.extend(decode(&mut decoder, USERS));
        messages.extend(decode(&mut decoder, TRUNCATE));
        // After the truncate (lsn 26840000): an insert into orders survives.
        let after = event("orders", Op::Create, 7, Some(26840100), 4, &[]);
        // Read after the truncate but committed before it (another partition): discarded.
        let mut late = event("orders", Op::Update, 2, Some(26839000), 0, &[]);
        late.kafka.partition = 1;
        messages.push(Decoded::Change(after));
        messages.push(Decoded::Change(late));

        let mut batch = Batch::new();
        let pushed: Vec<Pushed> = messages.into_iter().map(|m| batch.push(m)).collect();
        assert_eq!(pushed.last(), Some(&Pushed::BeforeTruncate));
        let c = batch.finish();

        let orders = plan(&c, "orders");
        let t = orders.truncate.as_ref().expect("truncate marker");
        assert_eq!(
            (t.lsn, t.source_ts_ms),
            (Some(26840000), Some(1795544900000))
        );
        let ids: Vec<i64> = orders.upserts.iter().map(|u| id_of(&u.key)).collect();
        assert_eq!(ids, [7]);
        assert!(orders.deletes.is_empty());
        assert_eq!(c.stats.discarded_by_truncate, 4);
        assert_eq!(c.stats.per_table[&orders.table].truncate, 1);

        let users = plan(&c, "users");
        assert!(users.truncate.is_none());
        assert_eq!(users.upserts.len() + users.deletes.len(), 3);
        assert_eq!(c.stats.rows_out, 4);
        let commits: Vec<_> = c.stats.commit_offsets().collect();
        assert_eq!(
            commits,
            [
                ("cdc.public.orders", 0, 5),
                ("cdc.public.orders", 1, 1),
                ("cdc.public.users", 0, 11)
            ]
        );
    }

    #[test]
    fn truncate_between_changes_of_one_key_keeps_the_changes_after_it() {
        let c = compact_events([
            event("t", Op::Create, 1, Some(1), 0, &[("v", text("gone"))]),
            event("t", Op::Truncate, 0, Some(2), 1, &[]),
            event("t", Op::Update, 1, Some(3), 2, &[("v", Value::Unavailable)]),
            event("t", Op::Create, 2, Some(4), 3, &[]),
            event("u", Op::Create, 1, Some(0), 0, &[]),
        ]);
        let t = plan(&c, "t");
        assert_eq!(t.truncate.as_ref().map(|t| t.lsn), Some(Some(2)));
        let ids: Vec<i64> = t.upserts.iter().map(|u| id_of(&u.key)).collect();
        assert_eq!(ids, [1, 2]);
        // The image before the truncate is gone: nothing to fill from.
        assert_eq!(t.upserts[0].row.get("v"), Some(&Value::Unavailable));
        assert_eq!(plan(&c, "u").upserts.len(), 1);
        assert!(plan(&c, "u").truncate.is_none());
    }

    #[test]
    fn truncate_only_batch_has_a_plan_and_the_last_truncate_wins() {
        let mut batch = Batch::new();
        batch.push_change(event("t", Op::Truncate, 0, Some(5), 0, &[]));
        assert!(!batch.is_empty());
        assert_eq!(batch.len(), 0);
        batch.push_change(event("t", Op::Truncate, 0, Some(9), 1, &[]));
        let c = batch.finish();
        let p = plan(&c, "t");
        assert_eq!(p.truncate.as_ref().unwrap().lsn, Some(9));
        assert!(p.upserts.is_empty() && p.deletes.is_empty());
        assert_eq!(c.stats.discarded_by_truncate, 1);
        assert_eq!(c.stats.rows_out, 0);
    }

    #[test]
    fn tombstones_and_messages_are_skipped_and_counted() {
        let mut batch = Batch::new();
        let pushed: Vec<Pushed> = fixture(MESSAGES)
            .into_iter()
            .map(|m| batch.push(m))
            .collect();
        assert_eq!(pushed, [Pushed::Message, Pushed::Message]);
        let tombstone = Decoded::Tombstone {
            key: None,
            kafka: KafkaPosition {
                topic: Arc::from("cdc.public.t"),
                partition: 3,
                offset: 41,
                timestamp_ms: None,
            },
        };
        assert_eq!(batch.push(tombstone), Pushed::Tombstone);
        assert!(batch.is_empty());
        let c = batch.finish();
        assert!(c.tables.is_empty());
        let s = &c.stats;
        assert_eq!(
            (s.events_in, s.messages_skipped, s.tombstones_skipped),
            (3, 2, 1)
        );
        assert!(s.per_table.is_empty());
        assert_eq!(s.source_ts_ms_min, Some(1795544910000));
        assert_eq!(s.offsets[&(Arc::from("cdc.public.t"), 3)], 41);
    }

    #[test]
    fn offsets_per_partition_are_the_max() {
        let at = |partition: i32, offset: i64| {
            let mut e = event("t", Op::Update, offset, Some(offset), offset, &[]);
            e.kafka.partition = partition;
            e
        };
        let mut batch = Batch::new();
        for e in [at(0, 5), at(1, 9), at(0, 7), at(0, 6), at(1, 2)] {
            batch.push_change(e);
        }
        let mut other = at(0, 3);
        other.kafka.topic = Arc::from("cdc.public.other");
        batch.push_change(other);
        let c = batch.finish();
        let offsets: Vec<_> = c
            .stats
            .offsets
            .iter()
            .map(|((t, p), o)| (&**t, *p, *o))
            .collect();
        assert_eq!(
            offsets,
            [
                ("cdc.public.other", 0, 3),
                ("cdc.public.t", 0, 7),
                ("cdc.public.t", 1, 9)
            ]
        );
        let commits: Vec<_> = c.stats.commit_offsets().map(|(_, _, o)| o).collect();
        assert_eq!(commits, [4, 8, 10]);
        assert_eq!(c.stats.kafka_ts_ms_min, Some(2_002));
        assert_eq!(c.stats.kafka_ts_ms_max, Some(2_009));
    }

    #[test]
    fn events_without_key_are_returned_uncompacted_in_order() {
        let keyless = |op, lsn, offset| {
            let mut e = event("nokey", op, 0, Some(lsn), offset, &[]);
            e.key = None;
            e
        };
        let mut empty_key = event("nokey", Op::Create, 0, Some(3), 2, &[]);
        empty_key.key = Some(Row::new());
        let c = compact_events([
            keyless(Op::Update, 2, 1),
            keyless(Op::Create, 1, 0),
            empty_key,
        ]);
        let p = plan(&c, "nokey");
        assert!(p.upserts.is_empty() && p.deletes.is_empty());
        let order: Vec<(Op, i64)> = p.keyless.iter().map(|e| (e.op, e.kafka.offset)).collect();
        assert_eq!(order, [(Op::Create, 0), (Op::Update, 1), (Op::Create, 2)]);
        assert_eq!(c.stats.rows_out, 3);
    }

    #[test]
    fn table_falls_back_to_the_topic_and_rows_without_image_are_skipped() {
        let mut e = event("t", Op::Create, 1, None, 0, &[]);
        e.source = Source::default();
        e.kafka.topic = Arc::from("cdcns.public.users");
        let mut empty = event("t", Op::Update, 2, Some(1), 1, &[]);
        empty.after = None;
        let mut batch = Batch::new();
        assert_eq!(batch.push_change(e), Pushed::Buffered);
        assert_eq!(batch.push_change(empty), Pushed::WithoutRow);
        let c = batch.finish();
        assert_eq!(c.stats.without_row_skipped, 1);
        let ids: Vec<String> = c.tables.iter().map(|p| p.table.to_string()).collect();
        assert_eq!(ids, ["cdcns.public.users"]);
        assert_eq!(c.tables[0].table.schema, None);
        assert_eq!(c.tables[0].upserts[0].lsn, None);
    }

    #[test]
    fn odd_key_values_group_canonically_without_panicking() {
        let keyed = |value: Value, offset: i64| {
            let mut e = event("k", Op::Update, 0, Some(offset), offset, &[]);
            e.key = Some([("k", value)].into_iter().collect());
            e
        };
        let dec = |s: &str| Value::Decimal(rust_decimal::Decimal::from_str(s).unwrap());
        let json = |s: &str| Value::Json(serde_json::from_str(s).unwrap());
        let c = compact_events([
            keyed(Value::Float(0.0), 0),
            keyed(Value::Float(-0.0), 1),
            keyed(Value::Float(f64::NAN), 2),
            keyed(Value::Float(-f64::NAN), 3),
            keyed(Value::Float(f64::INFINITY), 4),
            keyed(dec("1.0"), 5),
            keyed(dec("1.00"), 6),
            keyed(
                Value::BigDecimal("1234567890123456789012345678901.50".into()),
                7,
            ),
            keyed(
                Value::BigDecimal("1234567890123456789012345678901.5".into()),
                8,
            ),
            keyed(json(r#"{"a":1,"b":[true,null]}"#), 9),
            keyed(json(r#"{"b":[true,null],"a":1}"#), 10),
            keyed(Value::Array(vec![Value::Null, Value::Unavailable]), 11),
            keyed(
                Value::Map(vec![(text("k"), Value::Bytes(vec![0, 255]))]),
                12,
            ),
            keyed(
                Value::Struct([("x", Value::Float(1.5))].into_iter().collect()),
                13,
            ),
        ]);
        let p = plan(&c, "k");
        // 0.0 = -0.0, NaN = -NaN, inf, 1.0 = 1.00, ...901.50 = ...901.5, equal json objects
        // in another key order, array, map, struct.
        assert_eq!(p.upserts.len(), 9);
        let last: BTreeSet<i64> = p.upserts.iter().map(|u| u.kafka.offset).collect();
        assert_eq!(last, BTreeSet::from([1, 3, 4, 6, 8, 10, 11, 12, 13]));
        assert_eq!(
            compare_keys(&p.upserts[0].key, &p.upserts[1].key),
            Ordering::Less
        );
    }

    #[test]
    fn plans_keep_the_latest_schema_and_order_tables_and_keys() {
        let mut decoder = Decoder::new();
        let mut messages = decode(&mut decoder, SCHEMA_CHANGE);
        messages.extend(decode(&mut decoder, USERS));
        messages.extend(decode(&mut decoder, ORDERS));
        let c = compact(messages);
        let names: Vec<&str> = c.tables.iter().map(|p| &*p.table.name).collect();
        assert_eq!(names, ["orders", "users"]);
        let users = plan(&c, "users");
        let columns: Vec<&str> = users
            .schema
            .as_ref()
            .unwrap()
            .columns()
            .iter()
            .map(|c| c.name())
            .collect();
        assert!(columns.contains(&"phone"), "{columns:?}");
        let ids: Vec<i64> = users.upserts.iter().map(|u| id_of(&u.key)).collect();
        assert_eq!(ids, [1, 5]);
        let order_ids: Vec<i64> = plan(&c, "orders")
            .upserts
            .iter()
            .map(|u| id_of(&u.key))
            .collect();
        assert_eq!(order_ids, [1, 2]);
    }

    // -----------------------------------------------------------------------------------------
    // Property: compaction = replaying the events one by one in (lsn, offset) order.

    #[derive(Debug, Clone, PartialEq)]
    enum Model {
        Upsert { op: Op, row: Row, lsn: Option<i64> },
        Deleted { lsn: Option<i64> },
    }

    type State = BTreeMap<(String, i64), Model>;

    fn replay(events: &[ChangeEvent]) -> (State, BTreeSet<String>) {
        let mut sorted: Vec<&ChangeEvent> = events.iter().collect();
        sorted.sort_by_key(|e| (e.lsn(), e.kafka.offset));
        let mut state = State::new();
        let mut known: BTreeMap<(String, i64), BTreeMap<String, Value>> = BTreeMap::new();
        let mut truncated = BTreeSet::new();
        for e in sorted {
            let table = e.source.table.as_deref().unwrap().to_owned();
            if e.op == Op::Truncate {
                state.retain(|(t, _), _| *t != table);
                known.retain(|(t, _), _| *t != table);
                truncated.insert(table);
                continue;
            }
            let key = (table, id_of(e.key.as_ref().unwrap()));
            if e.op == Op::Delete {
                state.insert(key.clone(), Model::Deleted { lsn: e.lsn() });
                known.remove(&key);
                continue;
            }
            let mut row = e.after.clone().unwrap();
            let known = known.entry(key.clone()).or_default();
            for (name, value) in row.clone().iter() {
                if value.is_unavailable() {
                    if let Some(v) = known.get(name) {
                        *row.get_mut(name).unwrap() = v.clone();
                    }
                } else {
                    known.insert(name.to_owned(), value.clone());
                }
            }
            let lsn = e.lsn();
            state.insert(key, Model::Upsert { op: e.op, row, lsn });
        }
        (state, truncated)
    }

    fn from_plans(c: &Compacted) -> (State, BTreeSet<String>) {
        let mut state = State::new();
        let mut truncated = BTreeSet::new();
        for p in &c.tables {
            let table = p.table.name.to_string();
            if p.truncate.is_some() {
                truncated.insert(table.clone());
            }
            for u in &p.upserts {
                let model = Model::Upsert {
                    op: u.op,
                    row: u.row.clone(),
                    lsn: u.lsn,
                };
                assert!(
                    state
                        .insert((table.clone(), id_of(&u.key)), model)
                        .is_none()
                );
            }
            for d in &p.deletes {
                let model = Model::Deleted { lsn: d.lsn };
                assert!(
                    state
                        .insert((table.clone(), id_of(&d.key)), model)
                        .is_none()
                );
            }
        }
        (state, truncated)
    }

    fn arb_events() -> impl Strategy<Value = Vec<ChangeEvent>> {
        let op = prop_oneof![
            4 => Just(Op::Create),
            6 => Just(Op::Update),
            3 => Just(Op::Delete),
            1 => Just(Op::Truncate),
        ];
        let one = (
            op,
            prop_oneof![Just("a"), Just("b")],
            0i64..4,
            0i64..16,
            prop::option::of(0i64..100),
            0i64..100,
        );
        prop::collection::vec(one, 0..40)
            .prop_map(|specs| {
                specs
                    .into_iter()
                    .enumerate()
                    .map(|(offset, (op, table, id, lsn, v, w))| {
                        // Inserts always carry every column; updates may leave `v` unsent.
                        let v = match (op, v) {
                            (Op::Create, None) => Value::Int(-1),
                            (_, Some(v)) => Value::Int(v),
                            (_, None) => Value::Unavailable,
                        };
                        let cols = [("v", v), ("w", Value::Int(w))];
                        event(table, op, id, Some(lsn), offset as i64, &cols)
                    })
                    .collect::<Vec<_>>()
            })
            .prop_shuffle()
    }

    proptest! {
        #[test]
        fn compaction_equals_replay_in_lsn_offset_order(events in arb_events()) {
            let expected = replay(&events);
            let n = events.len() as u64;
            let c = compact_events(events);
            prop_assert_eq!(from_plans(&c), expected);
            prop_assert_eq!(c.stats.events_in, n);
            let per_table: u64 = c.stats.per_table.values().map(OpCounts::total).sum();
            prop_assert_eq!(per_table, n);
        }

        #[test]
        fn any_key_values_never_panic(
            floats in prop::collection::vec(any::<f64>(), 1..4),
            text in ".{0,8}",
            bytes in prop::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut batch = Batch::new();
            for (i, f) in floats.iter().enumerate() {
                let mut e = event("k", Op::Update, 0, None, i as i64, &[]);
                e.key = Some(
                    [
                        ("f", Value::Float(*f)),
                        ("s", Value::String(text.clone())),
                        ("b", Value::Bytes(bytes.clone())),
                    ]
                    .into_iter()
                    .collect(),
                );
                batch.push_change(e);
            }
            let c = batch.finish();
            prop_assert!(c.stats.rows_out >= 1);
        }
    }
}
