//! Debezium change events, decoded from Kafka message bytes. Pure: no IO, no clock, no logging.
//!
//! # Wire formats handled
//!
//! Debezium's PostgreSQL connector with Kafka Connect's `JsonConverter` (DESIGN.md, "Debezium
//! value decoding"); one [`Decoder`] reads every variant, detected per message:
//!
//! - **Schemas enabled** (`schemas.enable=true`): key and value are `{"schema":S,"payload":P}`.
//!   `S` is a Connect schema ([`ConnectSchema`]); every value in `P` is decoded from the schema's
//!   logical `name`, never guessed from the JSON shape (table below).
//! - **Schemas disabled**: the bare payload. Types are unknown, so values decode best-effort:
//!   JSON null/bool/integer/float/string/array/object → [`Value::Null`]/`Bool`/`Int`/`Float`/
//!   `String`/`Array`/`Struct` (an integer above `i64::MAX` → an exact `Decimal`). A numeric
//!   column therefore arrives as the base64 text Debezium sent; a sink needs a schema to create
//!   tables ([`ChangeEvent::schema`] is `None`).
//! - **Envelope**: `{before, after, source, op, ts_ms, transaction}`, op `c` create, `r` snapshot
//!   read, `u` update, `d` delete, `t` truncate (before and after null, key null), and `m`
//!   logical decoding message (`{op, ts_ms, source, message: {prefix, content}}`, value schema
//!   `io.debezium.connector.postgresql.MessageValue`, topic `<prefix>.message`).
//! - **Flattened** by `io.debezium.transforms.ExtractNewRecordState`: the row itself, plus the
//!   fields `add.fields` adds (`__` + name with `.` → `_`: `__op`, `__table`, `__lsn`,
//!   `__source_ts_ms`, `__ts_ms`, `__transaction_id`, ...) and `__deleted` ("true"/"false") from
//!   `delete.handling.mode=rewrite`. Those fields go to [`ChangeEvent::source`]/`op`/`ts_ms`,
//!   not into the row. `__deleted: "true"` (or `__op: "d"`) is a delete whose row is the
//!   `before` image; without `__op` any other record is reported as [`Op::Update`]
//!   ([`RecordFormat::Flattened`] tells the two formats apart).
//! - **Tombstones** (null value, or a JSON `null` payload) → [`Decoded::Tombstone`].
//! - **Keys** with or without schema → a [`Row`] (a primitive key becomes one column named
//!   [`KEY_COLUMN`]).
//!
//! Heartbeats, transaction metadata and other non-row values are [`DecodeErrorKind::NotAChangeEvent`]
//! when their schema says so; without a schema a heartbeat `{"ts_ms":...}` looks like a
//! flattened row and decodes as one.
//!
//! | Connect schema (`name`) | JSON | [`Value`] |
//! |---|---|---|
//! | `org.apache.kafka.connect.data.Decimal` (bytes, `scale`) | base64 of the big-endian two's-complement unscaled value | `Decimal`, or `BigDecimal` text past rust_decimal's 28 digits / scale 28 |
//! | `io.debezium.data.VariableScaleDecimal` | `{scale, value}` | same |
//! | string / double without name (`decimal.handling.mode=string/double`) | string / number | `String` / `Float` |
//! | `io.debezium.time.Date`, `org.apache.kafka.connect.data.Date` | int32 days | `Date` |
//! | `io.debezium.time.Time` (ms), `MicroTime`, `NanoTime`, `org.apache.kafka.connect.data.Time` (ms) | integer since midnight | `Time` |
//! | `io.debezium.time.Timestamp` (ms), `MicroTimestamp`, `NanoTimestamp`, `org.apache.kafka.connect.data.Timestamp` (ms) | integer since epoch, no zone | `Timestamp` |
//! | `io.debezium.time.ZonedTimestamp` / `ZonedTime` | ISO-8601 text | `TimestampTz` / `TimeTz`, offset kept |
//! | `io.debezium.data.Json` | JSON text | `Json` (parsed) |
//! | `io.debezium.data.Uuid` | text | `Uuid` |
//! | `io.debezium.data.Enum` / `EnumSet` | text / comma-separated text | `String` / `Array` of `String` |
//! | `io.debezium.data.Bits`, `bytes` | base64 | `Bytes` |
//! | `array`, `map`, `struct` | array; object (string keys) or `[[k, v], ...]`; object | `Array`, `Map`, `Struct` |
//! | int8..int64, float, double, boolean, string | JSON primitive | `Int`, `Float`, `Bool`, `String` |
//!
//! Other logical names decode as their Connect type. JSON null is always [`Value::Null`] (a
//! field's `default` is never substituted, unlike the converter's `replace.null.with.default`:
//! the source value was NULL). A Decimal sent as a JSON number (converter option
//! `decimal.format=NUMERIC`) is refused rather than rounded through f64. Postgres `infinity`
//! dates and timestamps are not representable and fail with [`DecodeErrorKind::OutOfRange`] or
//! [`DecodeErrorKind::InvalidValue`].
//!
//! **TOAST.** An unchanged out-of-line column arrives as the placeholder
//! [`UNAVAILABLE_PLACEHOLDER`] (configurable on the connector, see
//! [`Decoder::with_unavailable_placeholder`]), in the column type's own encoding: the text in a
//! string column (json, uuid, ... too), its bytes in a bytes column (base64
//! `X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==`), a one-element `text[]`, or its bytes as the
//! elements of an `int[]`/`bigint[]`. Each becomes [`Value::Unavailable`] ("unchanged, value
//! unknown"), never NULL. Only table columns are checked, not nested values. Without schema the
//! column type is unknown, so any of these forms (the base64 text included) is recognised.
//!
//! # Errors
//!
//! A message that cannot be decoded gives a [`DecodeError`]: a [`DecodeErrorKind`] for programs
//! and a reason that starts with the JSON path of the culprit inside the message, e.g.
//! `payload.after.amount: Decimal value is not base64` or `key.payload.id: expected int32,
//! found a string`. Decoding never panics, whatever the bytes (property-tested).
//!
//! # JSON output (`Serialize`)
//!
//! Used by `tail -o json` and the DLQ. [`Value`]: `Null` → `null`; `Bool`/`Int` → JSON
//! booleans/numbers; `Float` → a number (`"NaN"`, `"Infinity"`, `"-Infinity"` as strings);
//! `Decimal`/`BigDecimal` → a **string** with the exact digits, trailing zeros of the scale kept
//! (`"12345.67"`, `"100.50"`); `String` → string; `Bytes` → Postgres hex text `"\\xdeadbeef"`;
//! `Date` → `"YYYY-MM-DD"`; `Time` → `"HH:MM:SS[.ffffff]"` (6 fraction digits, 9 for
//! nanoseconds, none when zero; `24:00:00` for Postgres' end of day); `Timestamp` →
//! `"YYYY-MM-DDTHH:MM:SS[.ffffff]"`; `TimestampTz` → RFC 3339 with its offset (`Z` for UTC);
//! `TimeTz` → time + offset; `Json` → the embedded JSON value; `Uuid` → string; `Array` → array;
//! `Map` → object when all keys are strings, else `[[k, v], ...]`; `Struct` → object;
//! `Unavailable` → the placeholder string. A [`Row`] is an object in column order that **leaves
//! out `Unavailable` columns**: list them with [`Row::unavailable_columns`].
//!
//! `Display` gives psql-style text instead (`t`, `12345.67`, `\xdeadbeef`, `{x,"y z"}`,
//! `2024-01-02 01:04:05.123456+00`, `NULL`, `<unavailable>`).
//!
//! # Performance
//!
//! Most bytes of a schema-enabled message are the schema, identical for every message of a
//! topic. The decoder keeps, per topic, the exact bytes `{"schema":S,"payload":` of the last few
//! value and key schemas with their parsed plans; a message that starts with one of them has
//! only its payload parsed, straight from the bytes into [`Value`]s through serde seeds driven
//! by the plan (no `serde_json::Value` tree). A message with a new schema is parsed in full and
//! its schema joins the cache. Rows share their column names with the schema (without schema,
//! with the previous objects of the same keys). Measure with the ignored test
//! `decode_throughput` (`cargo test --release --lib decode_throughput -- --ignored --nocapture`).
//!
//! For the common message, `tail -o json` skips the [`Value`]s altogether:
//! [`Decoder::transcode_json`] writes the event's JSON line ([`json`]) straight from the payload
//! bytes (`transcode.rs`), about twice as fast, and declines anything it cannot write exactly
//! as decoding would.

mod decode;
mod error;
pub mod json;
mod schema;
mod transcode;
mod value;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value as Json;

use decode::{
    Body, Input, Options, Shapes, decode_payload, decode_value, int_of, key_row, schemaless_body,
    string_of,
};
pub use error::{DecodeError, DecodeErrorKind};
pub use schema::{Column, ConnectSchema, ConnectType, LogicalType, TableSchema, TimeUnit};
use schema::{ValuePlan, key_columns_of};
pub use value::{Row, Value};

/// Debezium's default `unavailable.value.placeholder`: sent for unchanged TOASTed columns.
pub const UNAVAILABLE_PLACEHOLDER: &str = "__debezium_unavailable_value";

/// Column name given to a key whose schema is not a struct.
pub const KEY_COLUMN: &str = "key";

/// One Kafka message as the caller read it.
#[derive(Debug, Clone, Copy)]
pub struct MessageRef<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Broker or producer timestamp, ms since epoch.
    pub timestamp_ms: Option<i64>,
    /// Key bytes; `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// Value bytes; `None` for a tombstone.
    pub value: Option<&'a [u8]>,
}

/// Where a message was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaPosition {
    /// Topic name (shared by all events of the topic).
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Kafka timestamp, ms since epoch.
    pub timestamp_ms: Option<i64>,
}

/// The result of decoding one message.
#[derive(Debug, Clone, PartialEq)]
// A change event is moved once from the decoder to its consumer; boxing it would cost an
// allocation per message for no gain.
#[allow(clippy::large_enum_variant)]
pub enum Decoded {
    /// A change, truncate or logical message.
    Change(ChangeEvent),
    /// A null value: Debezium's tombstone after a delete (compaction marker, no data).
    Tombstone {
        /// The deleted row's key.
        key: Option<Row>,
        /// Where it was read.
        kafka: KafkaPosition,
    },
}

impl Decoded {
    /// Where the message was read.
    pub fn kafka(&self) -> &KafkaPosition {
        match self {
            Self::Change(e) => &e.kafka,
            Self::Tombstone { kafka, .. } => kafka,
        }
    }

    /// The message key.
    pub fn key(&self) -> Option<&Row> {
        match self {
            Self::Change(e) => e.key.as_ref(),
            Self::Tombstone { key, .. } => key.as_ref(),
        }
    }

    /// The change event, unless this is a tombstone.
    pub fn as_change(&self) -> Option<&ChangeEvent> {
        match self {
            Self::Change(e) => Some(e),
            Self::Tombstone { .. } => None,
        }
    }

    /// True for a tombstone.
    pub fn is_tombstone(&self) -> bool {
        matches!(self, Self::Tombstone { .. })
    }
}

/// The operation of a change event (`op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `c`: insert.
    Create,
    /// `r`: row read by a snapshot.
    Read,
    /// `u`: update.
    Update,
    /// `d`: delete.
    Delete,
    /// `t`: truncate of the table.
    Truncate,
    /// `m`: logical decoding message (`pg_logical_emit_message`).
    Message,
}

impl Op {
    /// The Debezium code: `c`, `r`, `u`, `d`, `t`, `m`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Create => "c",
            Self::Read => "r",
            Self::Update => "u",
            Self::Delete => "d",
            Self::Truncate => "t",
            Self::Message => "m",
        }
    }

    /// The operation for a Debezium code.
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "c" => Self::Create,
            "r" => Self::Read,
            "u" => Self::Update,
            "d" => Self::Delete,
            "t" => Self::Truncate,
            "m" => Self::Message,
            _ => return None,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// How the value was laid out on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordFormat {
    /// Debezium's envelope (`before`/`after`/`source`/`op`).
    Envelope,
    /// A row flattened by `ExtractNewRecordState`; `op` is exact only when `__op` was added.
    Flattened,
}

/// The `source` block: where and when the change happened. Fields are `None` when absent (a
/// flattened record carries only the fields `add.fields` asked for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// Debezium version, e.g. `3.6.3.Final`.
    pub version: Option<Arc<str>>,
    /// Connector type, e.g. `postgresql`.
    pub connector: Option<Arc<str>>,
    /// Logical server name (`topic.prefix`).
    pub name: Option<Arc<str>>,
    /// Commit time in the database, ms since epoch.
    pub ts_ms: Option<i64>,
    /// Commit time, µs since epoch.
    pub ts_us: Option<i64>,
    /// Commit time, ns since epoch.
    pub ts_ns: Option<i64>,
    /// Snapshot marker as sent: `true`, `first`, `first_in_data_collection`,
    /// `last_in_data_collection`, `last`, `incremental`, or `false` (see [`Source::is_snapshot`]).
    pub snapshot: Option<Arc<str>>,
    /// Database name (Debezium's `db`).
    pub database: Option<Arc<str>>,
    /// Postgres: `["<last committed LSN>","<current LSN>"]` as text.
    pub sequence: Option<Arc<str>>,
    /// Schema name (empty for logical messages).
    pub schema: Option<Arc<str>>,
    /// Table name (empty for logical messages).
    pub table: Option<Arc<str>>,
    /// Transaction id (`txId`).
    pub tx_id: Option<i64>,
    /// Log sequence number of the change (orders the changes of one key).
    pub lsn: Option<i64>,
    /// Postgres xmin, when `xmin.fetch.interval.ms` is set.
    pub xmin: Option<i64>,
}

impl Source {
    /// True when the event comes from a snapshot (initial or incremental): the marker is present
    /// and not `false`.
    pub fn is_snapshot(&self) -> bool {
        matches!(self.snapshot.as_deref(), Some(s) if s != "false")
    }

    /// Sets one field from its decoded value (unknown fields are ignored).
    fn set(&mut self, field: &str, value: Value) {
        match field {
            "version" => self.version = string_of(value).map(Arc::from),
            "connector" => self.connector = string_of(value).map(Arc::from),
            "name" => self.name = string_of(value).map(Arc::from),
            "ts_ms" => self.ts_ms = int_of(&value),
            "ts_us" => self.ts_us = int_of(&value),
            "ts_ns" => self.ts_ns = int_of(&value),
            "snapshot" => self.snapshot = string_of(value).map(Arc::from),
            "db" => self.database = string_of(value).map(Arc::from),
            "sequence" => self.sequence = string_of(value).map(Arc::from),
            "schema" => self.schema = string_of(value).map(Arc::from),
            "table" => self.table = string_of(value).map(Arc::from),
            "txId" => self.tx_id = int_of(&value),
            "lsn" => self.lsn = int_of(&value),
            "xmin" => self.xmin = int_of(&value),
            _ => {}
        }
    }

    fn from_row(row: Row) -> Self {
        let mut source = Self::default();
        let (names, values) = row.into_parts();
        for (name, value) in names.iter().zip(values) {
            source.set(name, value);
        }
        source
    }
}

/// The `transaction` block, when the connector has `provide.transaction.metadata=true`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionBlock {
    /// Transaction id, e.g. `571:53195832`.
    pub id: Option<String>,
    /// Position of the event among all events of the transaction.
    pub total_order: Option<i64>,
    /// Position of the event among the transaction's events for this table.
    pub data_collection_order: Option<i64>,
}

impl TransactionBlock {
    fn set(&mut self, field: &str, value: Value) {
        match field {
            "id" => self.id = string_of(value),
            "total_order" => self.total_order = int_of(&value),
            "data_collection_order" => self.data_collection_order = int_of(&value),
            _ => {}
        }
    }

    fn from_row(row: Row) -> Self {
        let mut block = Self::default();
        let (names, values) = row.into_parts();
        for (name, value) in names.iter().zip(values) {
            block.set(name, value);
        }
        block
    }
}

/// A logical decoding message (op `m`).
#[derive(Debug, Clone, PartialEq)]
pub struct LogicalMessage {
    /// The prefix given to `pg_logical_emit_message` (empty when absent).
    pub prefix: String,
    /// The content: [`Value::Bytes`] by default. With `binary.handling.mode=hex|base64` the
    /// schema declares a string and this is that [`Value::String`], undecoded. Without schema,
    /// base64 text (the default mode) is decoded to bytes; other text stays a string.
    /// [`Value::Null`] when absent.
    pub content: Value,
}

impl LogicalMessage {
    fn from_row(row: Row, schemaless: bool) -> Self {
        let mut message = Self {
            prefix: String::new(),
            content: Value::Null,
        };
        let (names, values) = row.into_parts();
        for (name, value) in names.iter().zip(values) {
            match (&**name, value) {
                ("prefix", v) => message.prefix = string_of(v).unwrap_or_default(),
                ("content", Value::String(s)) if schemaless => {
                    message.content = match BASE64.decode(&s) {
                        Ok(bytes) => Value::Bytes(bytes),
                        Err(_) => Value::String(s),
                    };
                }
                ("content", v) => message.content = v,
                _ => {}
            }
        }
        message
    }
}

/// One decoded change event.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// The operation.
    pub op: Op,
    /// Envelope or flattened record.
    pub format: RecordFormat,
    /// The message key (the row's primary key; `None` for truncates and null keys).
    pub key: Option<Row>,
    /// Row before the change: with the default replica identity only on deletes, holding the
    /// real key columns and the schema defaults elsewhere; complete with `REPLICA IDENTITY FULL`.
    pub before: Option<Row>,
    /// Row after the change (`None` for deletes and truncates).
    pub after: Option<Row>,
    /// Source metadata.
    pub source: Source,
    /// When Debezium processed the event (envelope `ts_ms`), ms since epoch.
    pub ts_ms: Option<i64>,
    /// Transaction metadata, when provided.
    pub transaction: Option<TransactionBlock>,
    /// Where the message was read.
    pub kafka: KafkaPosition,
    /// The table's columns and key, when the message carried schemas (shared per topic).
    pub schema: Option<Arc<TableSchema>>,
    /// The logical message, for op `m`.
    pub message: Option<LogicalMessage>,
}

impl ChangeEvent {
    /// The row image a sink applies: `after`, or `before` for deletes.
    pub fn row(&self) -> Option<&Row> {
        self.after.as_ref().or(self.before.as_ref())
    }

    /// Key column names: from the key schema, or the key's own columns without schemas.
    pub fn key_columns(&self) -> Vec<&str> {
        match &self.schema {
            Some(s) if !s.key_columns().is_empty() => {
                s.key_columns().iter().map(|k| &**k).collect()
            }
            _ => self
                .key
                .as_ref()
                .map(|k| k.names().collect())
                .unwrap_or_default(),
        }
    }

    /// The source LSN (`source.lsn`), which orders the changes of one key.
    pub fn lsn(&self) -> Option<i64> {
        self.source.lsn
    }

    /// `schema.table` from the source block, or the table alone, or else the topic.
    pub fn qualified_table(&self) -> String {
        match (&self.source.schema, &self.source.table) {
            (Some(schema), Some(table)) => format!("{schema}.{table}"),
            (None, Some(table)) => table.to_string(),
            _ => self.kafka.topic.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoder

/// `{"schema":` — how the JSON converter starts every schema-enabled message.
const SCHEMA_PREFIX: &[u8] = br#"{"schema":"#;
/// What separates the schema from the payload.
const PAYLOAD_SEPARATOR: &[u8] = br#","payload":"#;

/// Schemas remembered per topic and side (key, value). More than one, because after a schema
/// change a consumer still reads old-schema messages from partitions it lags behind on,
/// interleaved with new ones.
const CACHED_SCHEMAS: usize = 4;

/// A schema seen on a topic: the exact message prefix up to the payload, and its parsed plan.
#[derive(Debug)]
struct Cached<P> {
    prefix: Vec<u8>,
    plan: P,
    /// Value schemas: the table, built on first use with the key columns known then.
    table: Option<Arc<TableSchema>>,
}

/// The payload bytes of a message laid out as `prefix` + payload + `}`.
fn payload_after(bytes: &[u8], prefix_len: usize) -> Option<&[u8]> {
    let end = bytes.trim_ascii_end();
    if end.len() > prefix_len && end.last() == Some(&b'}') {
        end.get(prefix_len..end.len() - 1)
    } else {
        None
    }
}

/// Splits `{"schema":S,"payload":P}` (the converter's exact layout) into the parsed `S` and the
/// prefix length. `None` when the bytes have another layout, or `S` is not a schema object.
fn split_schema(bytes: &[u8]) -> Option<(Json, usize)> {
    let rest = bytes.strip_prefix(SCHEMA_PREFIX)?;
    let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<Json>();
    let schema = stream.next()?.ok()?;
    let schema_end = SCHEMA_PREFIX.len() + stream.byte_offset();
    if !bytes.get(schema_end..)?.starts_with(PAYLOAD_SEPARATOR) {
        return None;
    }
    let looks_like_schema = match &schema {
        Json::Object(obj) => obj.contains_key("type"),
        Json::Null => true,
        _ => false,
    };
    looks_like_schema.then_some((schema, schema_end + PAYLOAD_SEPARATOR.len()))
}

/// How the current message's payload is to be decoded.
enum Located<'b> {
    /// With the plan now first in the topic's cache.
    Cached(&'b [u8]),
    /// Schema-enabled with `schema: null`: the payload, best-effort.
    NullSchema(&'b [u8]),
    /// Anything else: parse the whole message.
    General,
}

/// The payload of a message whose schema is in `cache`, that schema now first.
fn cached_payload<'b, P>(cache: &mut [Cached<P>], bytes: &'b [u8]) -> Option<&'b [u8]> {
    let i = cache.iter().position(|c| bytes.starts_with(&c.prefix))?;
    let payload = payload_after(bytes, cache[i].prefix.len())?;
    cache[..=i].rotate_right(1);
    Some(payload)
}

/// Finds the payload of a schema-enabled message and puts its schema first in `cache`, parsed
/// and added when new (`changed` is set then).
fn locate<'b, P>(
    cache: &mut Vec<Cached<P>>,
    bytes: &'b [u8],
    build: impl FnOnce(&Json) -> Result<P, DecodeError>,
    changed: &mut bool,
) -> Result<Located<'b>, DecodeError> {
    if let Some(payload) = cached_payload(cache, bytes) {
        return Ok(Located::Cached(payload));
    }
    let Some((schema, prefix_len)) = split_schema(bytes) else {
        return Ok(Located::General);
    };
    let Some(payload) = payload_after(bytes, prefix_len) else {
        return Ok(Located::General);
    };
    if schema.is_null() {
        return Ok(Located::NullSchema(payload));
    }
    let plan = build(&schema)?;
    cache.truncate(CACHED_SCHEMAS - 1);
    cache.insert(
        0,
        Cached {
            prefix: bytes[..prefix_len].to_vec(),
            plan,
            table: None,
        },
    );
    *changed = true;
    Ok(Located::Cached(payload))
}

/// A message not in the converter's exact layout, decoded without schema straight from the
/// bytes (so columns keep their order)...
enum Whole {
    /// ...unless it is `{"schema","payload"}` after all (other key order, whitespace): then the
    /// JSON, parsed in full.
    Enveloped { schema: Json, payload: Json },
    /// A schemaless value.
    Bare(Value),
}

fn decode_whole(
    bytes: &[u8],
    opts: &Options,
    shapes: &RefCell<Shapes>,
    what: &str,
) -> Result<Whole, DecodeError> {
    if bytes.trim_ascii().is_empty() {
        return Err(DecodeError::new(
            DecodeErrorKind::InvalidJson,
            "",
            format!("{what} is empty (a tombstone has a null {what}, not an empty one)"),
        ));
    }
    let not_json = |e: serde_json::Error| {
        DecodeError::new(
            DecodeErrorKind::InvalidJson,
            "",
            format!("{what} is not JSON: {e}"),
        )
    };
    let top = match decode_value(None, Input::Bytes(bytes), opts, Some(shapes), "") {
        Ok(top) => top,
        // Report syntax errors for the message as a whole, with serde_json's position.
        Err(e) if e.kind() == DecodeErrorKind::InvalidJson => {
            let err = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).err();
            return Err(err.map(not_json).unwrap_or(e));
        }
        Err(e) => return Err(e),
    };
    let enveloped = matches!(&top, Value::Struct(row) if row.len() == 2
        && row.get("payload").is_some()
        && matches!(row.get("schema"), Some(Value::Null | Value::Struct(_))));
    if !enveloped {
        return Ok(Whole::Bare(top));
    }
    match serde_json::from_slice(bytes).map_err(not_json)? {
        Json::Object(mut obj) => {
            let schema = obj.remove("schema").unwrap_or(Json::Null);
            let payload = obj.remove("payload").unwrap_or(Json::Null);
            Ok(Whole::Enveloped { schema, payload })
        }
        _ => Ok(Whole::Bare(top)),
    }
}

/// Per-topic cache.
#[derive(Debug)]
struct TopicState {
    topic: Arc<str>,
    /// Value schemas, most recently used first.
    value: Vec<Cached<ValuePlan>>,
    /// Key schemas, most recently used first.
    key: Vec<Cached<ConnectSchema>>,
    /// Key lists of schemaless objects.
    shapes: RefCell<Shapes>,
}

impl TopicState {
    /// A new key schema: tables built with the previous key columns are stale.
    fn forget_tables(&mut self) {
        for cached in &mut self.value {
            cached.table = None;
        }
    }
}

/// Decodes Debezium messages. Keeps a per-topic cache of the last value and key schemas, so
/// use one decoder per consumer (it is cheap to create, and `Send`).
#[derive(Debug)]
pub struct Decoder {
    topics: HashMap<Box<str>, TopicState>,
    opts: Options,
    scratch: transcode::Scratch,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder for the default TOAST placeholder.
    pub fn new() -> Self {
        Self::with_unavailable_placeholder(UNAVAILABLE_PLACEHOLDER)
    }

    /// A decoder for a connector whose `unavailable.value.placeholder` was changed.
    pub fn with_unavailable_placeholder(placeholder: &str) -> Self {
        Self {
            topics: HashMap::new(),
            opts: Options::new(placeholder),
            scratch: transcode::Scratch::default(),
        }
    }

    /// The table schema last seen on `topic`, if its messages carry schemas.
    pub fn table_schema(&self, topic: &str) -> Option<Arc<TableSchema>> {
        self.topics
            .get(topic)
            .and_then(|s| s.value.first())
            .and_then(|c| c.table.clone())
    }

    /// Decodes one message. Never panics; malformed input is a [`DecodeError`] whose path names
    /// the field (`payload.after.amount: Decimal value is not base64`).
    pub fn decode(&mut self, msg: &MessageRef<'_>) -> Result<Decoded, DecodeError> {
        if !self.topics.contains_key(msg.topic) {
            let state = TopicState {
                topic: Arc::from(msg.topic),
                value: Vec::new(),
                key: Vec::new(),
                shapes: RefCell::default(),
            };
            self.topics.insert(Box::from(msg.topic), state);
        }
        let opts = &self.opts;
        let Some(state) = self.topics.get_mut(msg.topic) else {
            unreachable!("the topic was inserted above");
        };
        let kafka = KafkaPosition {
            topic: state.topic.clone(),
            partition: msg.partition,
            offset: msg.offset,
            timestamp_ms: msg.timestamp_ms,
        };
        let (key, key_columns) = match msg.key {
            None => (None, None),
            Some(bytes) => decode_key(state, bytes, opts)?,
        };
        let Some(bytes) = msg.value else {
            return Ok(Decoded::Tombstone { key, kafka });
        };
        let mut changed = false;
        let located = locate(&mut state.value, bytes, ValuePlan::build, &mut changed)?;
        let (body, schema) = match located {
            Located::Cached(payload) => {
                let Some(cached) = state.value.first_mut() else {
                    unreachable!("locate() put the schema first");
                };
                match decode_payload(&cached.plan, Input::Bytes(payload), opts, "payload") {
                    Ok(body) => {
                        if cached.table.is_none() {
                            // A message without key (truncate) borrows the topic's key schema.
                            let keys = key_columns
                                .or_else(|| state.key.first().map(|k| key_columns_of(&k.plan)))
                                .unwrap_or_default();
                            cached.table = cached
                                .plan
                                .table()
                                .map(|t| Arc::new(t.with_key_columns(keys)));
                        }
                        (body, cached.table.clone())
                    }
                    // Bad JSON inside the cut-out payload: let a full parse give the answer.
                    Err(e) if e.kind() == DecodeErrorKind::InvalidJson => {
                        general_value(bytes, opts, &state.shapes, key_columns)?
                    }
                    Err(e) => return Err(e),
                }
            }
            Located::NullSchema(payload) => {
                let top = decode_value(
                    None,
                    Input::Bytes(payload),
                    opts,
                    Some(&state.shapes),
                    "payload",
                )?;
                (schemaless_body(top, opts, "payload")?, None)
            }
            Located::General => general_value(bytes, opts, &state.shapes, key_columns)?,
        };
        Ok(match body {
            None => Decoded::Tombstone { key, kafka },
            Some(body) => Decoded::Change(ChangeEvent {
                op: body.op,
                format: body.format,
                key,
                before: body.before,
                after: body.after,
                source: body.source,
                ts_ms: body.ts_ms,
                transaction: body.transaction,
                kafka,
                schema,
                message: body.message,
            }),
        })
    }

    /// Appends the message's JSON line ([`json`]) straight from its bytes, when it is a row
    /// change in the converter's usual layout whose schemas this decoder has cached (see
    /// `transcode.rs`). `false`: nothing was appended; [`Decoder::decode`] the message and use
    /// [`json::write_event`], which writes the same line (or gives the error).
    pub fn transcode_json(&mut self, msg: &MessageRef<'_>, out: &mut Vec<u8>) -> bool {
        let Some(value) = msg.value.filter(|v| v.starts_with(SCHEMA_PREFIX)) else {
            return false;
        };
        let Some(state) = self.topics.get_mut(msg.topic) else {
            return false;
        };
        let Some(payload) = cached_payload(&mut state.value, value) else {
            return false;
        };
        let ValuePlan::Envelope(plan) = &state.value[0].plan else {
            return false;
        };
        if plan.table.is_none() {
            return false;
        }
        let key = match msg.key {
            None => None,
            Some(bytes) => match cached_payload(&mut state.key, bytes) {
                Some(payload) => Some((&state.key[0].plan, payload)),
                None => return false,
            },
        };
        let start = out.len();
        let cx = decode::Cx::new(&self.opts, None);
        let written = transcode::envelope(plan, payload, key, msg, &cx, &mut self.scratch, out);
        if written.is_none() {
            out.truncate(start);
        }
        written.is_some()
    }
}

/// A value that is not in the converter's cached layout: parse it whole.
fn general_value(
    bytes: &[u8],
    opts: &Options,
    shapes: &RefCell<Shapes>,
    key_columns: Option<Vec<Arc<str>>>,
) -> Result<(Option<Body>, Option<Arc<TableSchema>>), DecodeError> {
    match decode_whole(bytes, opts, shapes, "value")? {
        Whole::Enveloped { schema, payload } if schema.is_null() => {
            let top = decode_value(None, Input::Json(&payload), opts, Some(shapes), "payload")?;
            Ok((schemaless_body(top, opts, "payload")?, None))
        }
        Whole::Enveloped { schema, payload } => {
            let plan = ValuePlan::build(&schema)?;
            let body = decode_payload(&plan, Input::Json(&payload), opts, "payload")?;
            let table = plan
                .table()
                .map(|t| Arc::new(t.with_key_columns(key_columns.unwrap_or_default())));
            Ok((body, table))
        }
        Whole::Bare(top) => Ok((schemaless_body(top, opts, "")?, None)),
    }
}

/// A decoded key, and its column names when the key has a schema.
type KeyParts = (Option<Row>, Option<Vec<Arc<str>>>);

/// Decodes a key; also returns the key column names when the key has a schema.
fn decode_key(
    state: &mut TopicState,
    bytes: &[u8],
    opts: &Options,
) -> Result<KeyParts, DecodeError> {
    let mut changed = false;
    let build = |json: &Json| ConnectSchema::from_json(json);
    let located = locate(&mut state.key, bytes, build, &mut changed).map_err(|e| e.under("key"))?;
    if changed {
        state.forget_tables();
    }
    if let Located::Cached(payload) = located
        && let Some(cached) = state.key.first()
    {
        match decode_value(
            Some(&cached.plan),
            Input::Bytes(payload),
            opts,
            None,
            "key.payload",
        ) {
            Ok(v) => return Ok((key_row(v), Some(key_columns_of(&cached.plan)))),
            Err(e) if e.kind() != DecodeErrorKind::InvalidJson => return Err(e),
            Err(_) => {}
        }
    }
    if let Located::NullSchema(payload) = located {
        let v = decode_value(
            None,
            Input::Bytes(payload),
            opts,
            Some(&state.shapes),
            "key.payload",
        )?;
        return Ok((key_row(v), None));
    }
    match decode_whole(bytes, opts, &state.shapes, "key").map_err(|e| e.under("key"))? {
        Whole::Enveloped { schema, payload } if schema.is_null() => {
            let v = decode_value(
                None,
                Input::Json(&payload),
                opts,
                Some(&state.shapes),
                "key.payload",
            )?;
            Ok((key_row(v), None))
        }
        Whole::Enveloped { schema, payload } => {
            let schema = ConnectSchema::from_json(&schema).map_err(|e| e.under("key"))?;
            let v = decode_value(
                Some(&schema),
                Input::Json(&payload),
                opts,
                None,
                "key.payload",
            )?;
            Ok((key_row(v), Some(key_columns_of(&schema))))
        }
        Whole::Bare(v) => Ok((key_row(v), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::testing::{Line, decode_all, fixture, lines};
    use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::str::FromStr as _;

    const SAMPLES: &[(&str, &str)] = &[
        (
            "schemas-true/cdc.public.users.jsonl",
            fixture!("schemas-true/cdc.public.users.jsonl"),
        ),
        (
            "schemas-true/cdc.public.orders.jsonl",
            fixture!("schemas-true/cdc.public.orders.jsonl"),
        ),
        (
            "schemas-true/cdc.public.all_types.jsonl",
            fixture!("schemas-true/cdc.public.all_types.jsonl"),
        ),
        (
            "schemas-true/cdc.public.toast_demo.jsonl",
            fixture!("schemas-true/cdc.public.toast_demo.jsonl"),
        ),
        (
            "schemas-false/cdcns.public.users.jsonl",
            fixture!("schemas-false/cdcns.public.users.jsonl"),
        ),
        (
            "schemas-false/cdcns.public.orders.jsonl",
            fixture!("schemas-false/cdcns.public.orders.jsonl"),
        ),
        (
            "schemas-false/cdcns.public.all_types.jsonl",
            fixture!("schemas-false/cdcns.public.all_types.jsonl"),
        ),
        (
            "schemas-false/cdcns.public.toast_demo.jsonl",
            fixture!("schemas-false/cdcns.public.toast_demo.jsonl"),
        ),
    ];

    const HANDMADE: &[(&str, &str)] = &[
        (
            "handmade/cdc.public.orders.truncate.jsonl",
            fixture!("handmade/cdc.public.orders.truncate.jsonl"),
        ),
        (
            "handmade/messages.jsonl",
            fixture!("handmade/messages.jsonl"),
        ),
        (
            "handmade/cdc.public.users.unwrap.jsonl",
            fixture!("handmade/cdc.public.users.unwrap.jsonl"),
        ),
        (
            "handmade/cdcns.public.users.unwrap.jsonl",
            fixture!("handmade/cdcns.public.users.unwrap.jsonl"),
        ),
        (
            "handmade/cdc.public.users.schema-change.jsonl",
            fixture!("handmade/cdc.public.users.schema-change.jsonl"),
        ),
        (
            "handmade/cdc.public.exotic.jsonl",
            fixture!("handmade/cdc.public.exotic.jsonl"),
        ),
    ];

    fn change(d: &Decoded) -> &ChangeEvent {
        d.as_change()
            .unwrap_or_else(|| panic!("expected a change event, got {d:?}"))
    }

    fn after(d: &Decoded) -> &Row {
        change(d).after.as_ref().expect("after image")
    }

    fn dec(s: &str) -> Value {
        Value::Decimal(Decimal::from_str(s).unwrap())
    }

    fn text(s: &str) -> Value {
        Value::String(s.to_owned())
    }

    fn date(y: i32, m: u32, d: u32) -> Value {
        Value::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap())
    }

    fn ts(s: &str) -> Value {
        Value::Timestamp(NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap())
    }

    fn tstz(s: &str) -> Value {
        Value::TimestampTz(DateTime::parse_from_rfc3339(s).unwrap())
    }

    fn decode_err(decoder: &mut Decoder, line: &Line) -> DecodeError {
        match decoder.decode(&line.msg()) {
            Ok(d) => panic!("expected an error, decoded {d:?}"),
            Err(e) => e,
        }
    }

    // --- every sample ------------------------------------------------------------------------

    #[test]
    fn every_sample_line_decodes_and_a_warm_cache_changes_nothing() {
        let mut warm = Decoder::new();
        let mut total = 0;
        for (name, content) in SAMPLES.iter().chain(HANDMADE) {
            for line in lines(content) {
                let fresh = Decoder::new()
                    .decode(&line.msg())
                    .unwrap_or_else(|e| panic!("{name} @{}: {e}", line.offset));
                let mut cached = warm.decode(&line.msg()).unwrap();
                if let (None, Decoded::Change(e)) = (&line.key, &mut cached) {
                    // Keyless (a truncate): only the warm decoder knows the topic's key columns.
                    e.schema = e
                        .schema
                        .as_ref()
                        .map(|s| Arc::new(s.with_key_columns(Vec::new())));
                }
                assert_eq!(fresh, cached, "{name} @{}", line.offset);
                assert_eq!(
                    fresh.is_tombstone(),
                    line.value.is_none(),
                    "{name} @{}",
                    line.offset
                );
                assert_eq!(fresh.kafka().offset, line.offset);
                assert_eq!(&*fresh.kafka().topic, line.topic);
                total += 1;
            }
        }
        assert_eq!(total, 38 + 13, "38 real samples and 13 hand-made messages");
    }

    #[test]
    fn the_full_parse_path_gives_the_same_events() {
        // Pretty-printed messages (sorted keys, `payload` first) miss the byte-prefix fast path.
        for (name, content) in SAMPLES.iter().chain(HANDMADE) {
            for line in lines(content) {
                let Some(value) = &line.value else { continue };
                let json: Json = serde_json::from_str(value).unwrap();
                let pretty = line.with_value(serde_json::to_string_pretty(&json).unwrap());
                let fast = Decoder::new().decode(&line.msg()).unwrap();
                let slow = Decoder::new().decode(&pretty.msg()).unwrap();
                if json.get("schema").is_some() {
                    assert_eq!(fast, slow, "{name} @{}", line.offset);
                } else {
                    // Without schema, columns keep JSON order, which pretty-printing sorted.
                    let (f, s) = (change(&fast), change(&slow));
                    assert_eq!(
                        (f.op, &f.source, f.key.is_some()),
                        (s.op, &s.source, s.key.is_some())
                    );
                    for (a, b) in [(&f.after, &s.after), (&f.before, &s.before)] {
                        assert_eq!(a.is_some(), b.is_some(), "{name} @{}", line.offset);
                        if let (Some(a), Some(b)) = (a, b) {
                            for (col, v) in a.iter() {
                                assert_eq!(b.get(col), Some(v), "{name} @{} {col}", line.offset);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn decoder_and_events_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send::<Decoder>();
        assert_send_sync::<Decoded>();
        assert_send_sync::<DecodeError>();
        assert_send_sync::<Arc<TableSchema>>();
    }

    // --- schemas enabled: values as Postgres holds them -------------------------------------

    #[test]
    fn all_types_typical_values() {
        let events = decode_all(fixture!("schemas-true/cdc.public.all_types.jsonl"));
        let e = change(&events[0]);
        assert_eq!(e.op, Op::Read);
        assert_eq!(e.format, RecordFormat::Envelope);
        assert_eq!(e.before, None);
        let row = after(&events[0]);
        let expected: Vec<(&str, Value)> = vec![
            ("id", Value::Int(1)),
            ("big", Value::Int(9_007_199_254_740_993)),
            ("amount", dec("12345.67")),
            ("note", text("hello")),
            ("code", text("ABC")),
            ("flag", Value::Bool(true)),
            ("ts", ts("2024-01-02 03:04:05.123456")),
            ("tstz", tstz("2024-01-02T01:04:05.123456Z")),
            ("d", date(2024, 1, 2)),
            ("doc", Value::Json(json!({"a": 1, "b": [true, null]}))),
            (
                "uid",
                Value::Uuid(uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap()),
            ),
            ("raw", Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef])),
            ("tags", Value::Array(vec![text("x"), text("y z")])),
        ];
        assert_eq!(
            row.iter().map(|(n, v)| (n, v.clone())).collect::<Vec<_>>(),
            expected
        );
        // The row was inserted as '2024-01-02 03:04:05.123456+02': same instant, sent in UTC.
        let Some(Value::TimestampTz(t)) = row.get("tstz") else {
            unreachable!()
        };
        assert_eq!(
            *t,
            DateTime::parse_from_rfc3339("2024-01-02T03:04:05.123456+02:00").unwrap()
        );
        assert_eq!(t.offset().local_minus_utc(), 0);
        // psql text of the same values.
        let shown: Vec<String> = row.values().iter().map(Value::to_string).collect();
        assert_eq!(
            shown,
            [
                "1",
                "9007199254740993",
                "12345.67",
                "hello",
                "ABC",
                "t",
                "2024-01-02 03:04:05.123456",
                "2024-01-02 01:04:05.123456+00",
                "2024-01-02",
                r#"{"a": 1, "b": [true, null]}"#,
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                "\\xdeadbeef",
                r#"{x,"y z"}"#,
            ]
        );
        assert_eq!(
            serde_json::to_string(row).unwrap(),
            r#"{"id":1,"big":9007199254740993,"amount":"12345.67","note":"hello","code":"ABC","flag":true,"ts":"2024-01-02T03:04:05.123456","tstz":"2024-01-02T01:04:05.123456Z","d":"2024-01-02","doc":{"a":1,"b":[true,null]},"uid":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","raw":"\\xdeadbeef","tags":["x","y z"]}"#
        );
        // Source metadata and positions.
        assert_eq!(
            e.source,
            Source {
                version: Some("3.6.3.Final".into()),
                connector: Some("postgresql".into()),
                name: Some("cdc".into()),
                ts_ms: Some(1_795_544_772_896),
                ts_us: Some(1_795_544_772_896_867),
                ts_ns: Some(1_795_544_772_896_867_000),
                snapshot: Some("last_in_data_collection".into()),
                database: Some("app".into()),
                sequence: Some(r#"[null,"26826744"]"#.into()),
                schema: Some("public".into()),
                table: Some("all_types".into()),
                tx_id: Some(751),
                lsn: Some(26_826_744),
                xmin: None,
            }
        );
        assert!(e.source.is_snapshot());
        assert_eq!(e.ts_ms, Some(1_795_544_773_100));
        assert_eq!(e.transaction, None);
        assert_eq!(
            e.kafka,
            KafkaPosition {
                topic: Arc::from("cdc.public.all_types"),
                partition: 0,
                offset: 0,
                timestamp_ms: Some(1_795_544_773_398),
            }
        );
        assert_eq!(e.key, Some(Row::from_iter([("id", Value::Int(1))])));
        assert_eq!(e.lsn(), Some(26_826_744));
    }

    #[test]
    fn all_types_edge_values_nulls_and_update() {
        let events = decode_all(fixture!("schemas-true/cdc.public.all_types.jsonl"));
        let edge = after(&events[1]);
        assert_eq!(change(&events[1]).op, Op::Create);
        assert!(!change(&events[1]).source.is_snapshot());
        assert_eq!(edge.get("big"), Some(&Value::Int(-1)));
        assert_eq!(edge.get("amount"), Some(&dec("-0.05")));
        assert_eq!(edge.get("note"), Some(&text("ünïcødé ✓")));
        assert_eq!(edge.get("code"), Some(&text("")));
        assert_eq!(edge.get("flag"), Some(&Value::Bool(false)));
        assert_eq!(edge.get("ts"), Some(&ts("1970-01-01 00:00:00")));
        assert_eq!(edge.get("tstz"), Some(&tstz("2030-12-31T23:59:59.999999Z")));
        assert_eq!(edge.get("d"), Some(&date(1, 1, 1)));
        assert_eq!(
            edge.get("d").map(Value::to_string),
            Some("0001-01-01".into())
        );
        assert_eq!(edge.get("doc"), Some(&Value::Json(json!([]))));
        assert_eq!(edge.get("uid"), Some(&Value::Uuid(uuid::Uuid::nil())));
        assert_eq!(edge.get("raw"), Some(&Value::Bytes(vec![0])));
        assert_eq!(edge.get("tags"), Some(&Value::Array(vec![])));
        assert_eq!(edge.get("tags").map(Value::to_string), Some("{}".into()));
        assert_eq!(
            serde_json::to_value(edge.get("amount")).unwrap(),
            json!("-0.05")
        );

        let nulls = after(&events[2]);
        assert_eq!(nulls.get("id"), Some(&Value::Int(3)));
        assert_eq!(nulls.len(), 13);
        assert!(nulls.values()[1..].iter().all(Value::is_null), "{nulls:?}");
        assert!(nulls.unavailable_columns().is_empty());

        let updated = after(&events[3]);
        assert_eq!(change(&events[3]).op, Op::Update);
        assert_eq!(updated.get("amount"), Some(&dec("12346.67")));
        assert_eq!(
            updated.get("tags").map(Value::to_string),
            Some(r#"{x,"y z",new}"#.into())
        );
    }

    #[test]
    fn orders_decimals_are_exact() {
        let events = decode_all(fixture!("schemas-true/cdc.public.orders.jsonl"));
        assert_eq!(after(&events[0]).get("amount"), Some(&dec("19.99")));
        let big = after(&events[1]).get("amount").unwrap();
        assert_eq!(big, &dec("1234567890.12"));
        assert_eq!(big.to_string(), "1234567890.12");
        assert_eq!(
            after(&events[1]).get("ordered_on"),
            Some(&date(2026, 11, 24))
        );
        let update = change(&events[2]);
        assert_eq!((update.op, update.before.is_none()), (Op::Update, true));
        assert_eq!(after(&events[2]).get("status"), Some(&text("shipped")));
    }

    #[test]
    fn table_schema_from_the_connect_schema() {
        let events = decode_all(fixture!("schemas-true/cdc.public.all_types.jsonl"));
        let schema = change(&events[0]).schema.clone().expect("schema-enabled");
        assert_eq!(schema.name(), Some("cdc.public.all_types.Value"));
        let names: Vec<&str> = schema.columns().iter().map(Column::name).collect();
        assert_eq!(
            names,
            [
                "id", "big", "amount", "note", "code", "flag", "ts", "tstz", "d", "doc", "uid",
                "raw", "tags"
            ]
        );
        assert_eq!(schema.key_columns(), [Arc::<str>::from("id")]);
        assert!(schema.is_key("id") && !schema.is_key("big"));
        let id = schema.column("id").unwrap();
        assert_eq!(
            (id.connect_type(), id.is_optional()),
            (ConnectType::Int32, false)
        );
        let amount = schema.column("amount").unwrap();
        assert_eq!(amount.connect_type(), ConnectType::Bytes);
        assert_eq!(
            amount.logical_name(),
            Some("org.apache.kafka.connect.data.Decimal")
        );
        assert_eq!((amount.scale(), amount.precision()), (Some(2), Some(12)));
        assert!(amount.is_optional());
        assert_eq!(
            schema.column("ts").unwrap().logical(),
            &LogicalType::Timestamp(TimeUnit::Micros)
        );
        assert_eq!(
            schema.column("tstz").unwrap().logical(),
            &LogicalType::ZonedTimestamp
        );
        assert_eq!(schema.column("d").unwrap().logical(), &LogicalType::Date);
        assert_eq!(schema.column("doc").unwrap().logical(), &LogicalType::Json);
        assert_eq!(schema.column("uid").unwrap().logical(), &LogicalType::Uuid);
        let tags = schema.column("tags").unwrap();
        assert_eq!(tags.connect_type(), ConnectType::Array);
        assert_eq!(
            tags.schema().items().map(ConnectSchema::connect_type),
            Some(ConnectType::String)
        );
        // One table schema per topic while the schemas stay the same.
        assert!(Arc::ptr_eq(
            &schema,
            change(&events[3]).schema.as_ref().unwrap()
        ));
        assert_eq!(change(&events[0]).key_columns(), ["id"]);
    }

    #[test]
    fn users_updates_deletes_and_tombstones() {
        let events = decode_all(fixture!("schemas-true/cdc.public.users.jsonl"));
        let ops: Vec<&str> = events
            .iter()
            .map(|d| d.as_change().map_or("tombstone", |e| e.op.code()))
            .collect();
        assert_eq!(
            ops,
            [
                "r",
                "r",
                "c",
                "u",
                "u",
                "u",
                "d",
                "tombstone",
                "u",
                "d",
                "tombstone"
            ]
        );
        assert_eq!(change(&events[0]).source.snapshot.as_deref(), Some("first"));
        assert_eq!(
            after(&events[0]).get("created_at"),
            Some(&tstz("2026-11-24T18:23:01.237623Z"))
        );

        // Default replica identity: an update has no before image.
        let u = change(&events[3]);
        assert_eq!(u.before, None);
        assert_eq!(after(&events[3]).get("name"), Some(&text("Carol1")));

        // Default replica identity delete: only the key in `before` is real; the other
        // columns hold the schema defaults ("" for NOT NULL text, epoch for created_at).
        let d = change(&events[6]);
        assert_eq!(d.after, None);
        let before = d.before.as_ref().unwrap();
        assert_eq!(before.get("id"), Some(&Value::Int(2)));
        assert_eq!(d.key, Some(Row::from_iter([("id", Value::Int(2))])));
        assert_eq!(before.get("email"), Some(&text("")));
        assert_eq!(before.get("name"), Some(&Value::Null));
        assert_eq!(
            before.get("created_at"),
            Some(&tstz("1970-01-01T00:00:00Z"))
        );
        assert_eq!(d.row(), Some(before));

        let Decoded::Tombstone { key, kafka } = &events[7] else {
            panic!("expected a tombstone: {:?}", events[7]);
        };
        assert_eq!(key, &Some(Row::from_iter([("id", Value::Int(2))])));
        assert_eq!((kafka.offset, &*kafka.topic), (7, "cdc.public.users"));

        // REPLICA IDENTITY FULL: complete before image.
        let full = change(&events[8]);
        let (b, a) = (full.before.as_ref().unwrap(), full.after.as_ref().unwrap());
        assert_eq!(b.get("name"), Some(&text("Alice")));
        assert_eq!(b.changed_columns(a), ["name", "active"]);
        let gone = change(&events[9]);
        assert_eq!(
            gone.before.as_ref().unwrap().get("name"),
            Some(&text("Carol123"))
        );
        assert_eq!(
            events[10].key(),
            Some(&Row::from_iter([("id", Value::Int(3))]))
        );
    }

    #[test]
    fn toast_placeholder_is_unavailable_not_null() {
        let events = decode_all(fixture!("schemas-true/cdc.public.toast_demo.jsonl"));
        let full = after(&events[0]);
        assert!(matches!(full.get("big_text"), Some(Value::String(s)) if s.len() == 12_800));
        let row = after(&events[1]);
        assert_eq!(row.get("counter"), Some(&Value::Int(1)));
        let big = row.get("big_text").unwrap();
        assert_eq!(big, &Value::Unavailable);
        assert!(!big.is_null());
        assert_eq!(row.unavailable_columns(), ["big_text"]);
        assert_eq!(
            serde_json::to_string(row).unwrap(),
            r#"{"id":1,"counter":1}"#
        );
        assert_eq!(full.changed_columns(row), ["counter"]);
    }

    // --- schemas disabled --------------------------------------------------------------------

    #[test]
    fn schemaless_messages_decode_best_effort() {
        let events = decode_all(fixture!("schemas-false/cdcns.public.all_types.jsonl"));
        let e = change(&events[2]);
        assert_eq!(e.schema, None);
        assert_eq!(e.key_columns(), ["id"]);
        assert_eq!(
            e.source.snapshot.as_deref(),
            Some("last_in_data_collection")
        );
        assert_eq!(e.source.lsn, Some(26_835_504));
        let row = after(&events[2]);
        assert_eq!(row.get("big"), Some(&Value::Int(9_007_199_254_740_993)));
        // Without a schema the decimal is just the base64 text Debezium sent, and so on.
        assert_eq!(row.get("amount"), Some(&text("Etbr")));
        assert_eq!(row.get("tstz"), Some(&text("2024-01-02T01:04:05.123456Z")));
        assert_eq!(row.get("ts"), Some(&Value::Int(1_704_164_645_123_456)));
        assert_eq!(row.get("d"), Some(&Value::Int(19_724)));
        assert_eq!(row.get("flag"), Some(&Value::Bool(true)));
        assert_eq!(
            row.get("tags"),
            Some(&Value::Array(vec![text("x"), text("y z"), text("new")]))
        );
        assert_eq!(change(&events[1]).source.snapshot.as_deref(), Some("true"));
        assert!(after(&events[1]).values()[1..].iter().all(Value::is_null));
        // Column order is the message's.
        assert_eq!(
            after(&events[1]).names().take(3).collect::<Vec<_>>(),
            ["id", "big", "amount"]
        );

        let users = decode_all(fixture!("schemas-false/cdcns.public.users.jsonl"));
        let d = change(&users[4]);
        assert_eq!(d.op, Op::Delete);
        assert_eq!(d.before.as_ref().unwrap().get("id"), Some(&Value::Int(4)));
        assert!(users[5].is_tombstone() && users[8].is_tombstone());
        assert_eq!(
            users[5].key(),
            Some(&Row::from_iter([("id", Value::Int(4))]))
        );

        let toast = decode_all(fixture!("schemas-false/cdcns.public.toast_demo.jsonl"));
        assert_eq!(after(&toast[1]).get("big_text"), Some(&Value::Unavailable));
        assert_eq!(after(&toast[1]).get("counter"), Some(&Value::Int(2)));
    }

    // --- hand-made: truncate, messages, unwrap, schema change, other types -------------------

    #[test]
    fn truncate_event() {
        let truncate = &lines(fixture!("handmade/cdc.public.orders.truncate.jsonl"))[0];
        let alone = Decoder::new().decode(&truncate.msg()).unwrap();
        let e = change(&alone);
        assert_eq!(e.op, Op::Truncate);
        assert_eq!(
            (e.before.as_ref(), e.after.as_ref(), e.key.as_ref()),
            (None, None, None)
        );
        assert_eq!(e.source.table.as_deref(), Some("orders"));
        assert_eq!(e.source.lsn, Some(26_840_000));
        assert_eq!(e.row(), None);
        // No key on a truncate: the table's key columns come from the topic's key schema.
        assert!(e.schema.as_ref().unwrap().key_columns().is_empty());
        let mut decoder = Decoder::new();
        for line in lines(fixture!("schemas-true/cdc.public.orders.jsonl")) {
            decoder.decode(&line.msg()).unwrap();
        }
        let after_orders = decoder.decode(&truncate.msg()).unwrap();
        assert_eq!(change(&after_orders).key_columns(), ["id"]);
    }

    #[test]
    fn logical_decoding_messages() {
        let events = decode_all(fixture!("handmade/messages.jsonl"));
        for event in &events {
            let e = change(event);
            assert_eq!(e.op, Op::Message);
            assert_eq!(
                (e.before.as_ref(), e.after.as_ref(), e.schema.as_ref()),
                (None, None, None)
            );
            let m = e.message.as_ref().expect("message block");
            assert_eq!(m.prefix, "audit");
            assert_eq!(m.content, Value::Bytes(br#"{"who":"alice"}"#.to_vec()));
            assert_eq!(e.key, Some(Row::from_iter([("prefix", text("audit"))])));
            assert_eq!(e.source.table.as_deref(), Some(""));
            assert_eq!(e.source.lsn, Some(26_840_200));
        }
        assert_eq!(change(&events[1]).source.name.as_deref(), Some("cdcns"));
    }

    #[test]
    fn unwrap_transform_with_schema() {
        let events = decode_all(fixture!("handmade/cdc.public.users.unwrap.jsonl"));
        let ops: Vec<Op> = events.iter().map(|d| change(d).op).collect();
        assert_eq!(ops, [Op::Create, Op::Update, Op::Delete]);
        let c = change(&events[0]);
        assert_eq!(c.format, RecordFormat::Flattened);
        let row = c.after.as_ref().unwrap();
        assert_eq!(
            row.names().collect::<Vec<_>>(),
            ["id", "email", "name", "active", "created_at"]
        );
        assert_eq!(
            row.get("created_at"),
            Some(&tstz("2026-11-24T18:26:25.858986Z"))
        );
        assert_eq!(c.source.table.as_deref(), Some("users"));
        assert_eq!(c.source.lsn, Some(26_826_784));
        assert!(c.source.ts_ms.is_some());
        assert_eq!(c.source.database, None);
        let schema = c.schema.as_ref().unwrap();
        assert_eq!(schema.columns().len(), 5);
        assert_eq!(schema.key_columns(), [Arc::<str>::from("id")]);
        // delete.handling.mode=rewrite: the before image with __deleted=true.
        let d = change(&events[2]);
        assert_eq!(d.after, None);
        let before = d.before.as_ref().unwrap();
        assert_eq!(before.get("id"), Some(&Value::Int(3)));
        assert_eq!(before.get("name"), Some(&text("Carol123")));
        assert_eq!(before.get("__deleted"), None);
    }

    #[test]
    fn unwrap_transform_without_schema() {
        let events = decode_all(fixture!("handmade/cdcns.public.users.unwrap.jsonl"));
        let c = change(&events[0]);
        // No __op: the operation is unknown, reported as an update of a flattened record.
        assert_eq!((c.op, c.format), (Op::Update, RecordFormat::Flattened));
        assert_eq!(c.after.as_ref().unwrap().get("name"), Some(&text("Dave")));
        assert_eq!(c.after.as_ref().unwrap().get("__deleted"), None);
        let d = change(&events[1]);
        assert_eq!(d.op, Op::Delete);
        assert_eq!(d.before.as_ref().unwrap().get("id"), Some(&Value::Int(4)));
        let plain = change(&events[2]);
        assert_eq!(plain.op, Op::Update);
        assert_eq!(
            plain.after.as_ref().unwrap().get("name"),
            Some(&text("Bob B."))
        );
        assert_eq!(plain.key_columns(), ["id"]);
        assert!(events[3].is_tombstone());
    }

    #[test]
    fn schema_change_mid_topic_refreshes_the_cache() {
        let users = lines(fixture!("schemas-true/cdc.public.users.jsonl"));
        let changed = &lines(fixture!("handmade/cdc.public.users.schema-change.jsonl"))[0];
        let mut decoder = Decoder::new();
        let first = decoder.decode(&users[2].msg()).unwrap();
        let old_schema = change(&first).schema.clone().unwrap();
        assert_eq!(old_schema.columns().len(), 5);

        let new = decoder.decode(&changed.msg()).unwrap();
        let new_schema = change(&new).schema.clone().unwrap();
        assert_eq!(new_schema.columns().len(), 6);
        assert_eq!(new_schema.columns()[5].name(), "phone");
        assert_eq!(after(&new).get("phone"), Some(&text("555-0100")));
        assert_eq!(after(&new).get("email"), Some(&text("erin@example.com")));
        assert_eq!(
            decoder.table_schema("cdc.public.users"),
            Some(new_schema.clone())
        );

        // A message with the old schema again (e.g. another partition lagging behind).
        let old_again = decoder.decode(&users[3].msg()).unwrap();
        assert_eq!(after(&old_again).len(), 5);
        assert_eq!(change(&old_again).schema.as_deref(), Some(&*old_schema));
        assert_eq!(old_again, Decoder::new().decode(&users[3].msg()).unwrap());
        // Alternating schemas reuse their cached plans (and tables) instead of re-parsing.
        assert!(Arc::ptr_eq(
            change(&old_again).schema.as_ref().unwrap(),
            &old_schema
        ));
        let new_again = decoder.decode(&changed.msg()).unwrap();
        assert!(Arc::ptr_eq(
            change(&new_again).schema.as_ref().unwrap(),
            &new_schema
        ));
        assert_eq!(decoder.table_schema("cdc.public.users"), Some(new_schema));
    }

    #[test]
    fn other_logical_types() {
        let events = decode_all(fixture!("handmade/cdc.public.exotic.jsonl"));
        let row = after(&events[0]);
        let t = |h, m, s, n| Value::Time(NaiveTime::from_hms_nano_opt(h, m, s, n).unwrap());
        let expected: Vec<(&str, Value)> = vec![
            ("id", Value::Int(1)),
            ("vnum", dec("-1234.567")),
            (
                "big_num",
                Value::BigDecimal("123456789012345678901234567890123456.78".into()),
            ),
            ("t_ms", t(1, 2, 3, 4_000_000)),
            ("t_us", t(12, 34, 56, 789_012_000)),
            ("t_ns", t(12, 34, 56, 789_012_345)),
            ("t_24", t(23, 59, 59, 1_000_000_000)),
            ("c_date", date(2024, 1, 2)),
            ("c_time", t(1, 0, 0, 0)),
            ("c_ts", ts("2024-01-02 03:04:05.123")),
            ("ts_ms", ts("2024-01-02 03:04:05.123")),
            ("ts_ns", ts("2024-01-02 03:04:05.123456789")),
            (
                "ztime",
                Value::TimeTz(
                    NaiveTime::from_hms_milli_opt(3, 4, 5, 500).unwrap(),
                    chrono::FixedOffset::east_opt(7200).unwrap(),
                ),
            ),
            (
                "ztime_z",
                Value::TimeTz(
                    NaiveTime::from_hms_opt(23, 59, 59).unwrap(),
                    chrono::FixedOffset::east_opt(0).unwrap(),
                ),
            ),
            ("tstz_off", tstz("2024-01-02T03:04:05+02:00")),
            ("mood", text("happy")),
            ("flags", Value::Array(vec![text("a"), text("c")])),
            ("bits", Value::Bytes(vec![5, 2])),
            ("amount_str", text("12345.67")),
            ("amount_dbl", Value::Float(12345.67)),
            ("real4", Value::Float(1.5)),
            ("small", Value::Int(-32768)),
            ("tiny", Value::Int(127)),
            (
                "attrs",
                Value::Map(vec![(text("a"), text("1")), (text("b"), Value::Null)]),
            ),
            (
                "intmap",
                Value::Map(vec![
                    (Value::Int(1), text("one")),
                    (Value::Int(2), text("two")),
                ]),
            ),
            (
                "point",
                Value::Struct(Row::from_iter([
                    ("x", Value::Float(1.5)),
                    ("y", Value::Float(-2.0)),
                    ("wkb", Value::Null),
                    ("srid", Value::Null),
                ])),
            ),
            (
                "int_arr",
                Value::Array(vec![Value::Int(1), Value::Int(2), Value::Int(3)]),
            ),
            (
                "nested",
                Value::Array(vec![
                    Value::Array(vec![Value::Int(1), Value::Int(2)]),
                    Value::Array(vec![Value::Int(3)]),
                ]),
            ),
            ("xml", text("<a/>")),
            ("dur", Value::Int(3_600_000_000)),
            ("raw", Value::Bytes(vec![1, 2])),
            ("doc", Value::Json(json!({"k": [1, 2]}))),
            ("tags", Value::Array(vec![text("a")])),
            (
                "uid",
                Value::Uuid(uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap()),
            ),
        ];
        assert_eq!(
            row.iter().map(|(n, v)| (n, v.clone())).collect::<Vec<_>>(),
            expected
        );
        let json = serde_json::to_value(row).unwrap();
        assert_eq!(json["t_24"], json!("24:00:00"));
        assert_eq!(json["t_ns"], json!("12:34:56.789012345"));
        assert_eq!(json["ztime"], json!("03:04:05.500000+02:00"));
        assert_eq!(
            json["big_num"],
            json!("123456789012345678901234567890123456.78")
        );
        assert_eq!(json["intmap"], json!([[1, "one"], [2, "two"]]));
        assert_eq!(json["attrs"], json!({"a": "1", "b": null}));
        assert_eq!(
            json["point"],
            json!({"x": 1.5, "y": -2.0, "wkb": null, "srid": null})
        );
        let schema = change(&events[0]).schema.clone().unwrap();
        assert_eq!(
            schema.column("vnum").unwrap().logical(),
            &LogicalType::VariableScaleDecimal
        );
        assert_eq!(
            schema.column("mood").unwrap().schema().parameter("allowed"),
            Some("happy,sad")
        );
        assert_eq!(schema.column("big_num").unwrap().precision(), Some(40));

        // Unchanged TOAST columns in each type's encoding.
        let toasted = after(&events[1]);
        assert_eq!(
            toasted.unavailable_columns(),
            ["int_arr", "xml", "raw", "doc", "tags"]
        );
        assert_eq!(toasted.get("uid"), Some(&Value::Null));
        assert_eq!(serde_json::to_value(toasted).unwrap().get("raw"), None);

        // A TOASTed numeric: the placeholder's bytes where the unscaled value belongs.
        let line = &lines(fixture!("handmade/cdc.public.exotic.jsonl"))[1];
        let toasted_numeric = line.with_value(line.value.as_ref().unwrap().replacen(
            r#""big_num":null"#,
            r#""big_num":"X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==""#,
            1,
        ));
        assert_ne!(&toasted_numeric.value, &line.value);
        let d = Decoder::new().decode(&toasted_numeric.msg()).unwrap();
        assert_eq!(after(&d).get("big_num"), Some(&Value::Unavailable));
    }

    #[test]
    fn custom_placeholder() {
        let line = &lines(fixture!("schemas-true/cdc.public.toast_demo.jsonl"))[1];
        let custom = line.with_value(
            line.value
                .as_ref()
                .unwrap()
                .replace(UNAVAILABLE_PLACEHOLDER, "<<toast>>"),
        );
        let mut default = Decoder::new();
        assert_eq!(
            after(&default.decode(&custom.msg()).unwrap()).get("big_text"),
            Some(&text("<<toast>>"))
        );
        let mut configured = Decoder::with_unavailable_placeholder("<<toast>>");
        assert_eq!(
            after(&configured.decode(&custom.msg()).unwrap()).get("big_text"),
            Some(&Value::Unavailable)
        );
    }

    // --- malformed input ---------------------------------------------------------------------

    fn all_types_line() -> Line {
        lines(fixture!("schemas-true/cdc.public.all_types.jsonl"))[0].clone()
    }

    /// The sample message with one substring replaced (must occur).
    fn edited(line: &Line, from: &str, to: &str) -> Line {
        let value = line.value.as_ref().unwrap();
        assert!(value.contains(from), "{from} not in the sample");
        line.with_value(value.replacen(from, to, 1))
    }

    #[test]
    fn malformed_payload_values_name_their_path() {
        let base = all_types_line();
        let cases: &[(&str, &str, DecodeErrorKind, &str, &str)] = &[
            (
                r#""amount":"EtaH""#,
                r#""amount":"E$aH""#,
                DecodeErrorKind::InvalidValue,
                "payload.after.amount",
                "Decimal value is not base64",
            ),
            (
                r#""amount":"EtaH""#,
                r#""amount":12345.67"#,
                DecodeErrorKind::TypeMismatch,
                "payload.after.amount",
                "decimal.format=NUMERIC",
            ),
            (
                r#""big":9007199254740993"#,
                r#""big":"x""#,
                DecodeErrorKind::TypeMismatch,
                "payload.after.big",
                "expected int64, found a string",
            ),
            (
                r#""id":1,"big""#,
                r#""id":2147483648,"big""#,
                DecodeErrorKind::OutOfRange,
                "payload.after.id",
                "does not fit int32",
            ),
            (
                r#""d":19724"#,
                r#""d":2147483647"#,
                DecodeErrorKind::OutOfRange,
                "payload.after.d",
                "out of range for a date",
            ),
            (
                r#""tags":["x","y z"]"#,
                r#""tags":["x",1]"#,
                DecodeErrorKind::TypeMismatch,
                "payload.after.tags[1]",
                "expected string, found an integer",
            ),
            (
                r#""uid":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11""#,
                r#""uid":"zz""#,
                DecodeErrorKind::InvalidValue,
                "payload.after.uid",
                "Uuid value `zz` is not valid",
            ),
            (
                r#""flag":true"#,
                r#""flag":tru"#,
                DecodeErrorKind::InvalidJson,
                "",
                "value is not JSON: expected ident",
            ),
            (
                r#""uid":"a0eebc99-9c0b"#,
                r#""uid":"a0eebc99-9c0x"#,
                DecodeErrorKind::InvalidValue,
                "payload.after.uid",
                "Uuid value",
            ),
            (
                r#""doc":"{"#,
                r#""doc":"{{"#,
                DecodeErrorKind::InvalidValue,
                "payload.after.doc",
                "Json value is not JSON",
            ),
            (
                r#""tstz":"2024-01-02T01"#,
                r#""tstz":"2024-13-02T01"#,
                DecodeErrorKind::InvalidValue,
                "payload.after.tstz",
                "ZonedTimestamp value",
            ),
            (
                r#""raw":"3q2+7w==""#,
                r#""raw":"3q2+7w=""#,
                DecodeErrorKind::InvalidValue,
                "payload.after.raw",
                "bytes value is not base64",
            ),
            (
                r#""after":{"id":1"#,
                r#""after":[{"id":1"#,
                DecodeErrorKind::TypeMismatch,
                "payload.after",
                "expected a row object",
            ),
            (
                r#""op":"r""#,
                r#""op":"x""#,
                DecodeErrorKind::UnknownOp,
                "payload.op",
                "unknown operation `x`",
            ),
            (
                r#""op":"r","#,
                "",
                DecodeErrorKind::MissingField,
                "payload.op",
                "no `op`",
            ),
            (
                r#""lsn":26826744"#,
                r#""lsn":"26826744""#,
                DecodeErrorKind::TypeMismatch,
                "payload.source.lsn",
                "expected int64",
            ),
        ];
        for (from, to, kind, path, reason) in cases {
            let bad = edited(&base, from, to);
            for warm in [false, true] {
                let mut decoder = Decoder::new();
                if warm {
                    decoder.decode(&base.msg()).unwrap();
                }
                let err = decode_err(&mut decoder, &bad);
                assert_eq!((err.kind(), err.path()), (*kind, *path), "{to}: {err}");
                assert!(err.reason().contains(reason), "{to}: {err}");
            }
        }
    }

    #[test]
    fn malformed_messages_and_schemas() {
        let base = all_types_line();
        let mut decoder = Decoder::new();
        let cases: Vec<(Line, DecodeErrorKind, &str)> = vec![
            (base.with_value(""), DecodeErrorKind::InvalidJson, ""),
            (base.with_value("{"), DecodeErrorKind::InvalidJson, ""),
            (base.with_value("42"), DecodeErrorKind::NotAChangeEvent, ""),
            (base.with_value("[1,2]"), DecodeErrorKind::NotAChangeEvent, ""),
            (base.with_value(&base.value.as_ref().unwrap()[..2000]), DecodeErrorKind::InvalidJson, ""),
            (edited(&base, r#""type":"int64","optional":true,"field":"big""#, r#""type":"int65","optional":true,"field":"big""#), DecodeErrorKind::InvalidSchema, "schema.before.big"),
            (
                base.with_value(r#"{"schema":{"type":"struct","name":"io.debezium.connector.common.Heartbeat","fields":[{"type":"int64","field":"ts_ms"}]},"payload":{"ts_ms":1}}"#),
                DecodeErrorKind::NotAChangeEvent,
                "",
            ),
            (
                Line { key: Some(r#"{"schema":{"type":"struct","fields":[{"type":"int32","field":"id"}]},"payload":{"id":"one"}}"#.into()), ..base.clone() },
                DecodeErrorKind::TypeMismatch,
                "key.payload.id",
            ),
            (Line { key: Some("{\"id\":".into()), ..base.clone() }, DecodeErrorKind::InvalidJson, "key"),
            (base.with_value(r#"{"before":null,"after":7,"op":"c"}"#), DecodeErrorKind::TypeMismatch, "after"),
            (base.with_value(r#"{"after":{"id":1},"op":"q","source":{}}"#), DecodeErrorKind::UnknownOp, "op"),
            (base.with_value(r#"{"schema":{"type":"struct"},"payload":{}}"#), DecodeErrorKind::InvalidSchema, "schema"),
        ];
        for (line, kind, path) in cases {
            let err = decode_err(&mut decoder, &line);
            assert_eq!(
                (err.kind(), err.path()),
                (kind, path),
                "{:?}: {err}",
                line.value
            );
        }
        // Display: path then reason.
        let err = decode_err(
            &mut decoder,
            &edited(&base, r#""amount":"EtaH""#, r#""amount":"E$aH""#),
        );
        assert_eq!(
            err.to_string(),
            "payload.after.amount: Decimal value is not base64"
        );
    }

    #[test]
    fn null_and_unusual_layouts() {
        let base = all_types_line();
        let mut decoder = Decoder::new();
        // A JSON null value, and a schema-enabled null payload, are tombstones.
        assert!(
            decoder
                .decode(&base.with_value("null").msg())
                .unwrap()
                .is_tombstone()
        );
        assert!(
            decoder
                .decode(
                    &base
                        .with_value(r#"{"schema":{"type":"struct","fields":[]},"payload":null}"#)
                        .msg()
                )
                .unwrap()
                .is_tombstone()
        );
        // schema null inside the envelope: decoded like schemas disabled.
        let value = r#"{"schema":null,"payload":{"before":null,"after":{"id":9},"source":{"lsn":5},"op":"c"}}"#;
        let d = decoder.decode(&base.with_value(value).msg()).unwrap();
        assert_eq!(
            (change(&d).op, change(&d).source.lsn),
            (Op::Create, Some(5))
        );
        assert_eq!(after(&d).get("id"), Some(&Value::Int(9)));
        // A primitive key is one column named `key`.
        let keyed = Line {
            key: Some("\"abc\"".into()),
            ..base.clone()
        };
        let d = decoder.decode(&keyed.msg()).unwrap();
        assert_eq!(d.key(), Some(&Row::from_iter([(KEY_COLUMN, text("abc"))])));
        // A flattened row whose first column is named `schema` is not mistaken for an envelope.
        let d = decoder
            .decode(
                &base
                    .with_value(r#"{"schema":"public","payload":1,"id":3}"#)
                    .msg(),
            )
            .unwrap();
        assert_eq!(after(&d).get("schema"), Some(&text("public")));
        assert_eq!(change(&d).format, RecordFormat::Flattened);
    }

    // --- never panic -------------------------------------------------------------------------

    /// Arbitrary JSON, with a few values that are meaningful to the decoder.
    fn arb_json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i64>().prop_map(Json::from),
            any::<u64>().prop_map(Json::from),
            any::<f64>().prop_map(Json::from),
            ".{0,10}".prop_map(Json::String),
            prop_oneof![
                Just(UNAVAILABLE_PLACEHOLDER),
                Just("X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="),
                Just("EtaH"),
                Just(""),
                Just("2024-01-02T01:04:05Z"),
                Just("c"),
                Just("d"),
                Just("true"),
            ]
            .prop_map(|s| Json::String(s.to_owned())),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        "[a-z_]{0,6}",
                        Just("op".to_owned()),
                        Just("after".to_owned()),
                        Just("before".to_owned()),
                        Just("source".to_owned()),
                        Just("message".to_owned()),
                        Just("__op".to_owned()),
                        Just("__deleted".to_owned()),
                        Just("scale".to_owned()),
                        Just("value".to_owned()),
                    ],
                    inner,
                    0..4
                )
                .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Replaces, removes or adds a node chosen by `path` (indices taken modulo child counts).
    fn mutate(root: &mut Json, path: &[usize], replacement: Json, mode: u8) {
        let mut node = root;
        for &i in path {
            let len = match &*node {
                Json::Object(m) => m.len(),
                Json::Array(a) => a.len(),
                _ => 0,
            };
            if len == 0 {
                break;
            }
            node = match node {
                Json::Object(m) => m.values_mut().nth(i % len).unwrap(),
                Json::Array(a) => &mut a[i % len],
                _ => unreachable!(),
            };
        }
        match (mode % 3, &mut *node) {
            (1, Json::Object(m)) => {
                let first = m.keys().next().cloned();
                if let Some(k) = first {
                    m.remove(&k);
                }
            }
            (2, Json::Object(m)) => {
                m.insert("extra".into(), replacement);
            }
            (2, Json::Array(a)) => a.push(replacement),
            _ => *node = replacement,
        }
    }

    /// Transcoding `msg` either declines and writes nothing, or writes exactly the line that
    /// decoding it and [`json::write_event`] give. `Ok(true)`: it was transcoded.
    fn transcodes_like_decoding(
        decoder: &mut Decoder,
        msg: &MessageRef<'_>,
    ) -> Result<bool, String> {
        const BEFORE: &[u8] = b"earlier lines\n";
        let mut fast = BEFORE.to_vec();
        if !decoder.transcode_json(msg, &mut fast) {
            return match fast == BEFORE {
                true => Ok(false),
                false => Err(format!(
                    "declined but wrote {}",
                    String::from_utf8_lossy(&fast)
                )),
            };
        }
        let mut slow = BEFORE.to_vec();
        match decoder.decode(msg) {
            Ok(Decoded::Change(event)) => json::write_event(&mut slow, &event),
            other => return Err(format!("transcoded a message that decodes to {other:?}")),
        }
        match fast == slow {
            true => Ok(true),
            false => Err(format!(
                "transcoded:\n{}decoded:\n{}",
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow)
            )),
        }
    }

    #[test]
    fn transcoding_writes_the_decoded_line_of_every_sample() {
        let mut handled = BTreeMap::new();
        for (name, content) in SAMPLES.iter().chain(HANDMADE) {
            let mut decoder = Decoder::new();
            for line in lines(content) {
                // As `tail` does: decoded once its schema is new, transcoded from then on.
                let _ = decoder.decode(&line.msg());
                let transcoded = transcodes_like_decoding(&mut decoder, &line.msg())
                    .unwrap_or_else(|e| panic!("{name} @{}: {e}", line.offset));
                *handled.entry(*name).or_insert(0) += usize::from(transcoded);
            }
        }
        // Every row change of the schema-enabled samples, but for those with unchanged TOAST
        // values (the `u` of toast_demo and exotic); no truncate, logical message, flattened or
        // schemaless record.
        let expected = BTreeMap::from([
            ("schemas-true/cdc.public.users.jsonl", 9),
            ("schemas-true/cdc.public.orders.jsonl", 3),
            ("schemas-true/cdc.public.all_types.jsonl", 4),
            ("schemas-true/cdc.public.toast_demo.jsonl", 1),
            ("handmade/cdc.public.exotic.jsonl", 1),
            ("handmade/cdc.public.users.schema-change.jsonl", 1),
        ]);
        for (name, count) in handled {
            assert_eq!(count, expected.get(name).copied().unwrap_or(0), "{name}");
        }
    }

    #[test]
    fn transcoding_declines_what_it_cannot_write_exactly() {
        let base = all_types_line();
        // (from, to, transcoded): each edit of the sample either writes the decoded line or is
        // left to the decoder (which may refuse the message).
        let cases: &[(&str, &str, bool)] = &[
            (r#""id":1,"#, r#""id": 1 ,"#, true),
            (r#""id":1,"#, r#""id":2147483648,"#, false),
            (r#""id":1,"#, r#""id":-0,"#, false),
            (r#""id":1,"#, r#""id":1e0,"#, false),
            (r#""id":1,"#, r#""id":01,"#, false),
            (r#""id":1,"#, r#""id":1,"id":2,"#, false),
            (
                r#""id":1,"#,
                r#""id":1,"zzz":[1,{"a":null},"\u00e9"],"#,
                true,
            ),
            (r#""id":1,"big""#, r#""big""#, true),
            (
                r#""big":9007199254740993,"#,
                r#""big":-9223372036854775808,"#,
                true,
            ),
            (
                r#""big":9007199254740993,"#,
                r#""big":18446744073709551615,"#,
                false,
            ),
            (r#""big":9007199254740993,"#, r#""big":1.5,"#, false),
            (r#""note":"hello""#, r#""note":"he\"llo\u00e9\u0000""#, true),
            (r#""note":"hello""#, r#""note":"\ud800""#, false),
            (r#""note":"hello""#, r#""note":"he	llo""#, false),
            (
                r#""note":"hello""#,
                r#""note":"__debezium_unavailable_value""#,
                false,
            ),
            (r#""note":"hello""#, r#""note":null"#, true),
            (r#""note":"hello""#, r#""note":7"#, false),
            (r#""code":"ABC","#, "", true),
            (r#""flag":true"#, r#""flag":1"#, false),
            (r#""tags":["x","y z"]"#, r#""tags":["x",1]"#, false),
            (r#""tags":["x","y z"]"#, r#""tags":[]"#, true),
            (r#""amount":"EtaH""#, r#""amount":"E$aH""#, false),
            (r#""before":null"#, r#""before":[]"#, false),
            (r#""op":"r""#, r#""op":"t""#, false),
            (r#""op":"r""#, r#""op":"x""#, false),
            (r#","op":"r""#, "", false),
            (r#""op":"r""#, r#""op":"r","op":"u""#, true),
            (
                r#""transaction":null"#,
                r#""transaction":{"id":"751:1","total_order":1,"data_collection_order":1}"#,
                true,
            ),
            (r#""transaction":null"#, r#""transaction":7"#, false),
            (
                r#""table":"all_types""#,
                r#""table":"all\u005ftypes""#,
                false,
            ),
            (
                r#""sequence":"[null,\"26826744\"]""#,
                r#""sequence":"[\ud800]""#,
                false,
            ),
            (
                r#""snapshot":"last_in_data_collection""#,
                r#""snapshot":"false""#,
                true,
            ),
            (
                r#""snapshot":"last_in_data_collection""#,
                r#""snapshot":true"#,
                false,
            ),
            (r#""txId":751"#, r#""txId":"751""#, false),
            (r#""txId":751"#, r#""txId":null"#, true),
            (r#""origin_lsn":null"#, r#""origin_lsn":{"x":[1,2]}"#, true),
            (
                r#""ts_ns":1795544773100423798}"#,
                r#""ts_ns":1795544773100423798} x"#,
                false,
            ),
            (
                r#""ts_ns":1795544773100423798}"#,
                r#""ts_ns":1795544773100423798,"extra":"#,
                false,
            ),
        ];
        let mut decoder = Decoder::new();
        decoder.decode(&base.msg()).unwrap();
        for (from, to, expected) in cases {
            let line = edited(&base, from, to);
            let transcoded = transcodes_like_decoding(&mut decoder, &line.msg())
                .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
            assert_eq!(transcoded, *expected, "{from} -> {to}");
        }
        // The source block: null (the table is then the topic) and absent.
        let source_at = base.value.as_ref().unwrap().find(r#""source":{"#).unwrap();
        let source_end = source_at + base.value.as_ref().unwrap()[source_at..].find('}').unwrap();
        let value = base.value.as_ref().unwrap();
        for replacement in [r#""source":null"#, r#""source":{}"#] {
            let line = base.with_value(format!(
                "{}{replacement}{}",
                &value[..source_at],
                &value[source_end + 1..]
            ));
            assert!(
                transcodes_like_decoding(&mut decoder, &line.msg()).unwrap(),
                "{replacement}"
            );
        }
        // Keys: null, and another layout than the cached one.
        for (key, expected) in [
            (
                r#"{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"cdc.public.all_types.Key"},"payload":null}"#,
                true,
            ),
            (r#"{"payload":{"id":1},"schema":null}"#, false),
            (
                r#"{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"cdc.public.all_types.Key"},"payload":{"id":"1"}}"#,
                false,
            ),
        ] {
            let line = Line {
                key: Some(key.to_owned()),
                ..base.clone()
            };
            assert_eq!(
                transcodes_like_decoding(&mut decoder, &line.msg()).unwrap(),
                expected,
                "{key}"
            );
        }
        // Bytes that are not UTF-8 in a copied string, and no key at all.
        let mut bytes = value.as_bytes().to_vec();
        let at = value.find("hello").unwrap();
        bytes[at + 1] = 0xff;
        let msg = MessageRef {
            value: Some(&bytes),
            ..base.msg()
        };
        assert!(!transcodes_like_decoding(&mut decoder, &msg).unwrap());
        let msg = MessageRef {
            key: None,
            ..base.msg()
        };
        assert!(transcodes_like_decoding(&mut decoder, &msg).unwrap());
    }

    /// Every sample value, parsed.
    fn sample_values() -> Vec<(Line, Json)> {
        SAMPLES
            .iter()
            .chain(HANDMADE)
            .flat_map(|(_, content)| lines(content))
            .filter_map(|l| {
                let json = serde_json::from_str(l.value.as_ref()?).ok()?;
                Some((l, json))
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(value in proptest::collection::vec(any::<u8>(), 0..300), key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))) {
            let mut decoder = Decoder::new();
            let msg = MessageRef { topic: "t", partition: 0, offset: 0, timestamp_ms: None, key: key.as_deref(), value: Some(&value) };
            let _ = decoder.decode(&msg);
            // The same bytes after a cached schema prefix, to reach the fast path.
            let base = all_types_line();
            decoder.decode(&base.msg()).unwrap();
            let full = base.value.as_ref().unwrap();
            let cut = full.find(",\"payload\":").unwrap() + ",\"payload\":".len();
            let mut spliced = full.as_bytes()[..cut].to_vec();
            spliced.extend_from_slice(&value);
            spliced.push(b'}');
            let msg = MessageRef { topic: &base.topic, value: Some(&spliced), ..base.msg() };
            transcodes_like_decoding(&mut decoder, &msg).map_err(TestCaseError::fail)?;
            let _ = decoder.decode(&msg);
        }

        #[test]
        fn mutated_samples_never_panic(pick in any::<prop::sample::Index>(), path in proptest::collection::vec(any::<usize>(), 0..8), replacement in arb_json(), mode in any::<u8>()) {
            let samples = sample_values();
            let (line, json) = pick.get(&samples);
            let mut decoder = Decoder::new();
            decoder.decode(&line.msg()).unwrap();
            // Mutate the payload only: the schema prefix still matches the cache.
            let original = line.value.as_ref().unwrap();
            if let (Some(cut), Some(payload)) = (original.find(",\"payload\":"), json.get("payload")) {
                let mut payload = payload.clone();
                mutate(&mut payload, &path, replacement.clone(), mode);
                let value = format!("{}{}}}", &original[..cut + ",\"payload\":".len()], payload);
                transcodes_like_decoding(&mut decoder, &line.with_value(value.clone()).msg()).map_err(TestCaseError::fail)?;
                let _ = decoder.decode(&line.with_value(value).msg());
            }
            // Mutate anywhere, schema included.
            let mut whole = json.clone();
            mutate(&mut whole, &path, replacement, mode);
            let mutated = line.with_value(whole.to_string());
            let _ = decoder.decode(&mutated.msg());
            let _ = Decoder::new().decode(&mutated.msg());
            // Bad input must not leave the cache in a state that changes good results.
            prop_assert_eq!(decoder.decode(&line.msg()).unwrap(), Decoder::new().decode(&line.msg()).unwrap());
        }

        #[test]
        fn corrupted_sample_bytes_never_panic(pick in any::<prop::sample::Index>(), edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), truncate in any::<prop::sample::Index>()) {
            let samples = sample_values();
            let (line, _) = pick.get(&samples);
            let mut decoder = Decoder::new();
            decoder.decode(&line.msg()).unwrap();
            let mut bytes = line.value.as_ref().unwrap().as_bytes().to_vec();
            for (at, byte) in &edits {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
            let msg = MessageRef { value: Some(&bytes), ..line.msg() };
            transcodes_like_decoding(&mut decoder, &msg).map_err(TestCaseError::fail)?;
            let _ = decoder.decode(&msg);
            let cut = truncate.index(bytes.len());
            let msg = MessageRef { value: Some(&bytes[..cut]), key: Some(&bytes[cut..]), ..line.msg() };
            let _ = decoder.decode(&msg);
            // (A keyless message would legitimately pick up key columns from a garbage key.)
            if line.key.is_some() {
                prop_assert_eq!(decoder.decode(&line.msg()).unwrap(), Decoder::new().decode(&line.msg()).unwrap());
            }
        }
    }

    // --- throughput --------------------------------------------------------------------------

    /// `cargo test --release --lib decode_throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "micro benchmark; run with --ignored --nocapture (and --release for real figures)"]
    fn decode_throughput() {
        use std::time::Instant;
        for (name, content, index) in [
            (
                "users (schemas on)",
                fixture!("schemas-true/cdc.public.users.jsonl"),
                8,
            ),
            (
                "all_types (schemas on)",
                fixture!("schemas-true/cdc.public.all_types.jsonl"),
                0,
            ),
            (
                "users (schemas off)",
                fixture!("schemas-false/cdcns.public.users.jsonl"),
                6,
            ),
        ] {
            let line = &lines(content)[index];
            let key = line.key.as_ref().unwrap().as_bytes();
            // Distinct copies (about 3 MB), so the schema prefix is compared in memory, not in L1.
            let copies: Vec<Vec<u8>> = (0..1000)
                .map(|_| line.value.as_ref().unwrap().as_bytes().to_vec())
                .collect();
            let n = 200_000;
            let message = |i: usize| MessageRef {
                topic: &line.topic,
                partition: 0,
                offset: i as i64,
                timestamp_ms: None,
                key: Some(key),
                value: Some(&copies[i % copies.len()]),
            };
            let mut decoder = Decoder::new();
            let mut bytes = 0usize;
            let start = Instant::now();
            for i in 0..n {
                let msg = message(i);
                std::hint::black_box(decoder.decode(&msg).unwrap());
                bytes += key.len() + msg.value.map_or(0, <[u8]>::len);
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{name}: {n} messages of {} bytes in {secs:.3} s = {:.0} MB/s, {:.0} messages/s",
                bytes / n,
                bytes as f64 / secs / 1e6,
                n as f64 / secs
            );
            // The JSON line of `tail -o json`: decoded and serialized, and transcoded.
            for transcode in [false, true] {
                let mut out = Vec::with_capacity(1 << 20);
                let start = Instant::now();
                for i in 0..n {
                    let msg = message(i);
                    if !(transcode && decoder.transcode_json(&msg, &mut out)) {
                        match decoder.decode(&msg) {
                            Ok(Decoded::Change(event)) => json::write_event(&mut out, &event),
                            other => panic!("{other:?}"),
                        }
                    }
                    if out.len() > 1 << 19 {
                        std::hint::black_box(&out);
                        out.clear();
                    }
                }
                let secs = start.elapsed().as_secs_f64();
                let how = if transcode { "transcoded" } else { "decoded" };
                println!(
                    "  JSON lines, {how}: {:.2} µs a message",
                    secs * 1e6 / n as f64
                );
            }
        }
    }
}
