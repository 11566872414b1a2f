//! Schema-driven deserialization of payloads straight from the JSON bytes (serde seeds and
//! visitors, no intermediate `serde_json::Value`), the best-effort schemaless decoding, and the
//! value conversions (decimals, times, ...).
//!
//! Every failure inside a visitor is recorded in the [`Trail`] with its kind and reason; the
//! path is added level by level while the error unwinds (see [`super::error`]).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use rust_decimal::Decimal;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::{DecodeError, DecodeErrorKind, Trail};
use super::schema::{
    Column, ConnectSchema, ConnectType, EnvelopePlan, FlatPlan, LogicalType, Meta, Role, Target,
    TimeUnit, ValuePlan,
};
use super::{KEY_COLUMN, LogicalMessage, Op, RecordFormat, Row, Source, TransactionBlock, Value};

/// Largest unscaled decimal accepted, in bytes: Postgres' numeric holds at most 147,455 digits
/// (61 KB); the limit keeps the quadratic base conversion of hostile input bounded.
const MAX_UNSCALED_BYTES: usize = 64 * 1024;
/// Largest |scale| turned into text (Postgres allows 16,383 digits after the point).
const MAX_TEXT_SCALE: i32 = 32_767;
/// 1970-01-01 as days since 0001-01-01 (chrono's "days from CE", day 1 = 0001-01-01).
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// Decoder-wide settings every decode attempt reads.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The connector's `unavailable.value.placeholder`.
    pub(crate) placeholder: String,
    /// Its base64 form: what a bytes column carries in JSON.
    pub(crate) placeholder_b64: String,
    /// The last text seen in each `source` text field. Most of them (version, connector, name,
    /// db, schema, table, snapshot) repeat on every message: an equal text shares the `Arc`
    /// instead of allocating again.
    source_texts: RefCell<[Option<Arc<str>>; SOURCE_TEXT_FIELDS]>,
}

/// How many `source` text fields [`Options::source_texts`] remembers.
const SOURCE_TEXT_FIELDS: usize = 8;

impl Options {
    pub(crate) fn new(placeholder: &str) -> Self {
        Self {
            placeholder: placeholder.to_owned(),
            placeholder_b64: BASE64.encode(placeholder.as_bytes()),
            source_texts: RefCell::default(),
        }
    }

    /// `text` as an `Arc`, shared with the previous value of source field `field` when equal.
    fn source_text(&self, field: usize, text: &str) -> Arc<str> {
        let Ok(mut last) = self.source_texts.try_borrow_mut() else {
            return Arc::from(text);
        };
        match last.get_mut(field) {
            Some(Some(seen)) if **seen == *text => Arc::clone(seen),
            Some(slot) => Arc::clone(slot.insert(Arc::from(text))),
            None => Arc::from(text),
        }
    }

    /// The placeholder as Debezium writes it into `int[]`/`bigint[]` columns: its bytes.
    fn is_placeholder_int_array(&self, items: &[Value]) -> bool {
        let bytes = self.placeholder.as_bytes();
        items.len() == bytes.len()
            && items
                .iter()
                .zip(bytes)
                .all(|(v, b)| *v == Value::Int(i64::from(*b)))
    }

    /// The placeholder as Debezium writes it into `text[]` columns: a one-element list.
    fn is_placeholder_text_array(&self, items: &[Value]) -> bool {
        matches!(items, [Value::String(s)] if *s == self.placeholder)
    }
}

/// Per-attempt context shared by the seeds.
pub(crate) struct Cx<'o> {
    pub(crate) opts: &'o Options,
    pub(crate) trail: Trail,
    /// The topic's object shapes, for schemaless decoding.
    shapes: Option<&'o RefCell<Shapes>>,
}

impl<'o> Cx<'o> {
    pub(crate) fn new(opts: &'o Options, shapes: Option<&'o RefCell<Shapes>>) -> Self {
        Self {
            opts,
            trail: Trail::default(),
            shapes,
        }
    }
}

/// Key lists of the schemaless objects seen on a topic (the envelope, the row, the source
/// block...). An object whose keys match a known list shares it instead of allocating every
/// key again, as schema-enabled rows share their schema's names.
#[derive(Debug, Default)]
pub(crate) struct Shapes {
    known: Vec<Arc<[Arc<str>]>>,
}

/// Shapes kept per topic; the oldest is forgotten first.
const MAX_SHAPES: usize = 32;

impl Shapes {
    fn names(&mut self, keys: &[Cow<'_, str>]) -> Arc<[Arc<str>]> {
        let same = |names: &&Arc<[Arc<str>]>| {
            names.len() == keys.len() && names.iter().zip(keys).all(|(n, k)| **n == **k)
        };
        if let Some(names) = self.known.iter().find(same) {
            return names.clone();
        }
        let names: Arc<[Arc<str>]> = keys.iter().map(|k| Arc::from(&**k)).collect();
        if self.known.len() >= MAX_SHAPES {
            self.known.remove(0);
        }
        self.known.push(names.clone());
        names
    }
}

// ---------------------------------------------------------------------------------------------
// Conversions

/// An exact decimal from a big-endian two's-complement unscaled value and a scale.
pub(crate) fn decimal_from_unscaled(
    bytes: &[u8],
    scale: i32,
) -> Result<Value, (DecodeErrorKind, String)> {
    if bytes.is_empty() {
        return Err((
            DecodeErrorKind::InvalidValue,
            "Decimal value has no bytes".into(),
        ));
    }
    if bytes.len() > MAX_UNSCALED_BYTES {
        return Err((
            DecodeErrorKind::OutOfRange,
            format!(
                "Decimal value has {} bytes, more than {MAX_UNSCALED_BYTES}",
                bytes.len()
            ),
        ));
    }
    if bytes.len() <= 16 {
        let negative = bytes[0] & 0x80 != 0;
        let mut u: u128 = if negative { u128::MAX } else { 0 };
        for b in bytes {
            u = (u << 8) | u128::from(*b);
        }
        // Reinterpret the sign-extended bits; this is the two's-complement value.
        let unscaled = u as i128;
        if (0..=28).contains(&scale) {
            if let Ok(d) = Decimal::try_from_i128_with_scale(unscaled, scale as u32) {
                return Ok(Value::Decimal(d));
            }
        } else if scale < 0 {
            let scaled = 10_i128
                .checked_pow(scale.unsigned_abs())
                .and_then(|p| unscaled.checked_mul(p));
            if let Some(Ok(d)) = scaled.map(|v| Decimal::try_from_i128_with_scale(v, 0)) {
                return Ok(Value::Decimal(d));
            }
        }
    }
    if !(-MAX_TEXT_SCALE..=MAX_TEXT_SCALE).contains(&scale) {
        return Err((
            DecodeErrorKind::OutOfRange,
            format!("Decimal scale {scale} is out of range"),
        ));
    }
    Ok(Value::BigDecimal(unscaled_to_text(bytes, scale)))
}

/// Plain decimal text of an unscaled two's-complement big-endian integer at `scale`.
fn unscaled_to_text(bytes: &[u8], scale: i32) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude = bytes.to_vec();
    if negative {
        for b in magnitude.iter_mut() {
            *b = !*b;
        }
        for b in magnitude.iter_mut().rev() {
            let (sum, carry) = b.overflowing_add(1);
            *b = sum;
            if !carry {
                break;
            }
        }
    }
    // Big-endian u32 limbs, then repeated division by 10^9.
    let pad = (4 - magnitude.len() % 4) % 4;
    let mut limbs: Vec<u32> = std::iter::repeat_n(0u8, pad)
        .chain(magnitude.iter().copied())
        .collect::<Vec<u8>>()
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut chunks = Vec::new(); // base 10^9, least significant first
    let mut start = 0;
    while start < limbs.len() {
        let mut rem: u64 = 0;
        for limb in &mut limbs[start..] {
            let cur = (rem << 32) | u64::from(*limb);
            *limb = (cur / 1_000_000_000) as u32;
            rem = cur % 1_000_000_000;
        }
        chunks.push(rem as u32);
        while start < limbs.len() && limbs[start] == 0 {
            start += 1;
        }
    }
    let mut digits = match chunks.split_last() {
        Some((most, rest)) => {
            let mut s = most.to_string();
            for c in rest.iter().rev() {
                s.push_str(&format!("{c:09}"));
            }
            s
        }
        None => "0".to_owned(),
    };
    if scale > 0 {
        let scale = scale as usize;
        if digits.len() <= scale {
            digits.insert_str(0, &"0".repeat(scale + 1 - digits.len()));
        }
        digits.insert(digits.len() - scale, '.');
    } else if scale < 0 && digits != "0" {
        digits.push_str(&"0".repeat(scale.unsigned_abs() as usize));
    }
    if negative {
        digits.insert(0, '-');
    }
    digits
}

fn date_from_days(days: i64) -> Option<NaiveDate> {
    let from_ce = i32::try_from(days.checked_add(UNIX_EPOCH_DAYS_FROM_CE)?).ok()?;
    NaiveDate::from_num_days_from_ce_opt(from_ce)
}

fn time_of_day(value: i64, unit: TimeUnit) -> Option<NaiveTime> {
    if value < 0 {
        return None;
    }
    let per_second = unit.per_second();
    let secs = value / per_second;
    let nanos = (value % per_second) * (1_000_000_000 / per_second);
    if secs == 86_400 && nanos == 0 {
        // Postgres' 24:00:00, in chrono's leap-second form.
        return NaiveTime::from_hms_nano_opt(23, 59, 59, 1_000_000_000);
    }
    NaiveTime::from_num_seconds_from_midnight_opt(u32::try_from(secs).ok()?, nanos as u32)
}

fn timestamp(value: i64, unit: TimeUnit) -> Option<NaiveDateTime> {
    let utc = match unit {
        TimeUnit::Millis => DateTime::from_timestamp_millis(value)?,
        TimeUnit::Micros => DateTime::from_timestamp_micros(value)?,
        TimeUnit::Nanos => DateTime::from_timestamp_nanos(value),
    };
    Some(utc.naive_utc())
}

/// `HH:MM:SS[.f]` followed by `Z` or `±HH[:MM[:SS]]` / `±HHMM`.
fn parse_zoned_time(s: &str) -> Option<(NaiveTime, FixedOffset)> {
    let (time, offset) = match s.strip_suffix('Z') {
        Some(time) => (time, FixedOffset::east_opt(0)?),
        None => {
            let pos = s.rfind(['+', '-'])?;
            let (time, offset) = s.split_at(pos);
            (time, parse_offset(offset)?)
        }
    };
    let time = NaiveTime::parse_from_str(time, "%H:%M:%S%.f").ok()?;
    Some((time, offset))
}

fn parse_offset(s: &str) -> Option<FixedOffset> {
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let rest = s.get(1..)?;
    let parts: Vec<&str> = if rest.contains(':') {
        rest.split(':').collect()
    } else if rest.len() == 4 {
        vec![rest.get(..2)?, rest.get(2..)?]
    } else {
        vec![rest]
    };
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    let mut secs = 0;
    for (part, unit) in parts.iter().zip([3600, 60, 1]) {
        secs += part.parse::<i32>().ok()? * unit;
    }
    FixedOffset::east_opt(sign * secs)
}

fn parse_rfc3339(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

/// Base64 (standard alphabet, padded, as the JSON converter writes bytes).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text).ok()
}

// ---------------------------------------------------------------------------------------------
// Value seed

/// Decodes one JSON value, typed by `schema` (best-effort when `None`). `column` marks a table
/// column: only there is the TOAST placeholder recognised.
#[derive(Clone, Copy)]
pub(crate) struct ValueSeed<'a> {
    pub(crate) schema: Option<&'a ConnectSchema>,
    pub(crate) column: bool,
    pub(crate) cx: &'a Cx<'a>,
}

impl<'a> ValueSeed<'a> {
    fn nested(self, schema: Option<&'a ConnectSchema>) -> Self {
        Self {
            schema,
            column: false,
            cx: self.cx,
        }
    }

    fn fail<E: de::Error>(self, kind: DecodeErrorKind, reason: impl Into<String>) -> E {
        self.cx.trail.fail(kind, reason)
    }

    fn mismatch<E: de::Error>(self, schema: &ConnectSchema, found: &str) -> E {
        let expected = match schema.name() {
            Some(name) if *schema.logical() != LogicalType::Other => {
                format!("{} ({name})", schema.connect_type().as_str())
            }
            _ => schema.connect_type().as_str().to_owned(),
        };
        self.fail(
            DecodeErrorKind::TypeMismatch,
            format!("expected {expected}, found {found}"),
        )
    }

    fn integer<E: de::Error>(self, value: i128) -> Result<Value, E> {
        let Some(schema) = self.schema else {
            return Ok(match i64::try_from(value) {
                Ok(i) => Value::Int(i),
                Err(_) => Value::Decimal(Decimal::from_i128_with_scale(value, 0)),
            });
        };
        let (lo, hi) = match schema.connect_type() {
            ConnectType::Int8 => (i128::from(i8::MIN), i128::from(i8::MAX)),
            ConnectType::Int16 => (i128::from(i16::MIN), i128::from(i16::MAX)),
            ConnectType::Int32 => (i128::from(i32::MIN), i128::from(i32::MAX)),
            ConnectType::Int64 => (i128::from(i64::MIN), i128::from(i64::MAX)),
            ConnectType::Float32 | ConnectType::Float64 => return Ok(Value::Float(value as f64)),
            _ => return Err(self.mismatch(schema, "an integer")),
        };
        if value < lo || value > hi {
            return Err(self.fail(
                DecodeErrorKind::OutOfRange,
                format!("{value} does not fit {}", schema.connect_type().as_str()),
            ));
        }
        let v = value as i64;
        let out_of_range = |what: &str| {
            self.fail(
                DecodeErrorKind::OutOfRange,
                format!("{v} is out of range for a {what}"),
            )
        };
        match schema.logical() {
            LogicalType::Date => date_from_days(v)
                .map(Value::Date)
                .ok_or_else(|| out_of_range("date (days since 1970-01-01)")),
            LogicalType::Time(unit) => time_of_day(v, *unit)
                .map(Value::Time)
                .ok_or_else(|| out_of_range("time of day")),
            LogicalType::Timestamp(unit) => timestamp(v, *unit)
                .map(Value::Timestamp)
                .ok_or_else(|| out_of_range("timestamp")),
            _ => Ok(Value::Int(v)),
        }
    }

    fn string<E: de::Error>(self, text: &str) -> Result<Value, E> {
        let Some(schema) = self.schema else {
            return Ok(Value::String(text.to_owned()));
        };
        let invalid = |what: &str| {
            self.fail(
                DecodeErrorKind::InvalidValue,
                format!("{what} value {} is not valid", Quoted(text)),
            )
        };
        match schema.connect_type() {
            ConnectType::String => {
                if self.column && text == self.cx.opts.placeholder {
                    return Ok(Value::Unavailable);
                }
                match schema.logical() {
                    LogicalType::ZonedTimestamp => parse_rfc3339(text)
                        .map(Value::TimestampTz)
                        .ok_or_else(|| invalid("ZonedTimestamp")),
                    LogicalType::ZonedTime => parse_zoned_time(text)
                        .map(|(t, off)| Value::TimeTz(t, off))
                        .ok_or_else(|| invalid("ZonedTime")),
                    LogicalType::Json => serde_json::from_str(text).map(Value::Json).map_err(|e| {
                        self.fail(
                            DecodeErrorKind::InvalidValue,
                            format!("Json value is not JSON: {e}"),
                        )
                    }),
                    LogicalType::Uuid => uuid::Uuid::parse_str(text)
                        .map(Value::Uuid)
                        .map_err(|_| invalid("Uuid")),
                    LogicalType::EnumSet if text.is_empty() => Ok(Value::Array(Vec::new())),
                    LogicalType::EnumSet => Ok(Value::Array(
                        text.split(',')
                            .map(|l| Value::String(l.to_owned()))
                            .collect(),
                    )),
                    _ => Ok(Value::String(text.to_owned())),
                }
            }
            ConnectType::Bytes => {
                let what = match schema.logical() {
                    LogicalType::Decimal { .. } => "Decimal",
                    _ => "bytes",
                };
                let Some(bytes) = decode_base64(text) else {
                    return Err(self.fail(
                        DecodeErrorKind::InvalidValue,
                        format!("{what} value is not base64"),
                    ));
                };
                if self.column && bytes == self.cx.opts.placeholder.as_bytes() {
                    return Ok(Value::Unavailable);
                }
                match schema.logical() {
                    LogicalType::Decimal { scale, .. } => decimal_from_unscaled(&bytes, *scale)
                        .map_err(|(kind, reason)| self.fail(kind, reason)),
                    _ => Ok(Value::Bytes(bytes)),
                }
            }
            ConnectType::Float32 | ConnectType::Float64 => match text {
                "NaN" => Ok(Value::Float(f64::NAN)),
                "Infinity" => Ok(Value::Float(f64::INFINITY)),
                "-Infinity" => Ok(Value::Float(f64::NEG_INFINITY)),
                _ => Err(self.mismatch(schema, "a string")),
            },
            _ => Err(self.mismatch(schema, "a string")),
        }
    }
}

/// Quotes a value for an error message, shortened so a huge value cannot flood the log.
struct Quoted<'t>(&'t str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 60;
        match self.0.char_indices().nth(MAX) {
            Some((cut, _)) => write!(f, "`{}…`", &self.0[..cut]),
            None => write!(f, "`{}`", self.0),
        }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        match self.schema {
            Some(s) if s.connect_type() != ConnectType::Boolean => {
                Err(self.mismatch(s, "a boolean"))
            }
            _ => Ok(Value::Bool(v)),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.integer(i128::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.integer(i128::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        match self.schema {
            None => Ok(Value::Float(v)),
            Some(s) => match (s.connect_type(), s.logical()) {
                (ConnectType::Float32 | ConnectType::Float64, _) => Ok(Value::Float(v)),
                (_, LogicalType::Decimal { .. }) => Err(self.fail(
                    DecodeErrorKind::TypeMismatch,
                    "Decimal value is a JSON number (converter decimal.format=NUMERIC); \
                     exact decoding needs decimal.format=BASE64",
                )),
                _ => Err(self.mismatch(s, "a fractional number")),
            },
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.string(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let trail = &self.cx.trail;
        let Some(schema) = self.schema else {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(v) =
                trail.index(items.len(), seq.next_element_seed(self.nested(None)))?
            {
                items.push(v);
            }
            return Ok(Value::Array(items));
        };
        match schema.connect_type() {
            ConnectType::Array => {
                let item_seed = self.nested(schema.items());
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(v) = trail.index(items.len(), seq.next_element_seed(item_seed))? {
                    items.push(v);
                }
                let opts = self.cx.opts;
                if self.column
                    && (opts.is_placeholder_text_array(&items)
                        || opts.is_placeholder_int_array(&items))
                {
                    return Ok(Value::Unavailable);
                }
                Ok(Value::Array(items))
            }
            ConnectType::Map => {
                let pair = PairSeed {
                    key: self.nested(schema.map_keys()),
                    value: self.nested(schema.map_values()),
                };
                let mut pairs = Vec::new();
                while let Some(p) = trail.index(pairs.len(), seq.next_element_seed(pair))? {
                    pairs.push(p);
                }
                Ok(Value::Map(pairs))
            }
            _ => Err(self.mismatch(schema, "an array")),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let trail = &self.cx.trail;
        let Some(schema) = self.schema else {
            return decode_object(map, self.cx).map(Value::Struct);
        };
        match schema.connect_type() {
            ConnectType::Struct if *schema.logical() == LogicalType::VariableScaleDecimal => {
                let row = decode_struct(map, schema, false, self.cx)?;
                variable_scale_decimal(&row).map_err(|(kind, reason)| self.fail(kind, reason))
            }
            ConnectType::Struct => decode_struct(map, schema, false, self.cx).map(Value::Struct),
            ConnectType::Map => {
                let value_seed = self.nested(schema.map_values());
                let mut pairs = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = trail.field(&key, map.next_value_seed(value_seed))?;
                    pairs.push((Value::String(key), value));
                }
                Ok(Value::Map(pairs))
            }
            _ => Err(self.mismatch(schema, "an object")),
        }
    }
}

fn variable_scale_decimal(row: &Row) -> Result<Value, (DecodeErrorKind, String)> {
    let scale = match row.get("scale") {
        Some(Value::Int(s)) => i32::try_from(*s).map_err(|_| {
            (
                DecodeErrorKind::OutOfRange,
                format!("VariableScaleDecimal scale {s} is out of range"),
            )
        })?,
        _ => {
            return Err((
                DecodeErrorKind::InvalidValue,
                "VariableScaleDecimal has no `scale`".into(),
            ));
        }
    };
    match row.get("value") {
        Some(Value::Bytes(b)) => decimal_from_unscaled(b, scale),
        _ => Err((
            DecodeErrorKind::InvalidValue,
            "VariableScaleDecimal has no `value`".into(),
        )),
    }
}

/// A `[key, value]` element of a map with non-string keys.
#[derive(Clone, Copy)]
struct PairSeed<'a> {
    key: ValueSeed<'a>,
    value: ValueSeed<'a>,
}

impl<'de> DeserializeSeed<'de> for PairSeed<'_> {
    type Value = (Value, Value);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PairSeed<'_> {
    type Value = (Value, Value);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a [key, value] pair")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let trail = &self.key.cx.trail;
        let bad = || {
            trail.fail(
                DecodeErrorKind::TypeMismatch,
                "map entry is not a [key, value] pair",
            )
        };
        let key = trail
            .index(0, seq.next_element_seed(self.key))?
            .ok_or_else(bad)?;
        let value = trail
            .index(1, seq.next_element_seed(self.value))?
            .ok_or_else(bad)?;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(bad());
        }
        Ok((key, value))
    }
}

// ---------------------------------------------------------------------------------------------
// Structs and rows

/// A struct field name resolved against the schema, without allocating.
enum FieldIdx {
    Known(usize),
    Unknown,
}

/// Looks the key up among `fields`, trying the expected next field first (keys arrive in
/// schema order from the JSON converter).
struct FieldKey<'a> {
    fields: &'a [Column],
    next: usize,
}

impl<'de> DeserializeSeed<'de> for FieldKey<'_> {
    type Value = FieldIdx;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<FieldIdx, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldKey<'_> {
    type Value = FieldIdx;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<FieldIdx, E> {
        if let Some(c) = self.fields.get(self.next)
            && c.name() == key
        {
            return Ok(FieldIdx::Known(self.next));
        }
        Ok(match self.fields.iter().position(|c| c.name() == key) {
            Some(i) => FieldIdx::Known(i),
            None => FieldIdx::Unknown,
        })
    }
}

/// Decodes a JSON object with a struct schema. Missing fields are NULL, unknown ones skipped
/// (as the JSON converter does). `columns`: the fields are table columns (TOAST-aware).
fn decode_struct<'de, A: MapAccess<'de>>(
    mut map: A,
    schema: &ConnectSchema,
    columns: bool,
    cx: &Cx<'_>,
) -> Result<Row, A::Error> {
    let fields = schema.fields();
    let mut values = Values::new(fields.len());
    let mut next = 0;
    while let Some(key) = map.next_key_seed(FieldKey { fields, next })? {
        match key {
            FieldIdx::Known(i) => {
                let field = &fields[i];
                let seed = ValueSeed {
                    schema: Some(field.schema()),
                    column: columns,
                    cx,
                };
                values.set(i, cx.trail.field(field.name(), map.next_value_seed(seed))?);
                next = i + 1;
            }
            FieldIdx::Unknown => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(Row::from_shared(
        schema.shared_names().clone(),
        values.finish(),
    ))
}

/// The values of a struct being decoded. Fields normally arrive in schema order and are pushed;
/// out-of-order fields are placed, missing ones are NULL.
struct Values {
    values: Vec<Value>,
    len: usize,
}

impl Values {
    fn new(len: usize) -> Self {
        Self {
            values: Vec::with_capacity(len),
            len,
        }
    }

    #[inline]
    fn set(&mut self, index: usize, value: Value) {
        if index == self.values.len() {
            self.values.push(value);
            return;
        }
        if index > self.values.len() {
            self.values.resize_with(index + 1, || Value::Null);
        }
        self.values[index] = value;
    }

    fn finish(mut self) -> Vec<Value> {
        self.values.resize_with(self.len, || Value::Null);
        self.values
    }
}

/// A JSON object without schema: every key a column, values best-effort.
fn decode_object<'de, A: MapAccess<'de>>(mut map: A, cx: &Cx<'_>) -> Result<Row, A::Error> {
    let seed = ValueSeed {
        schema: None,
        column: false,
        cx,
    };
    let capacity = map.size_hint().unwrap_or(8).min(1024);
    let mut keys: Vec<Cow<'de, str>> = Vec::with_capacity(capacity);
    let mut values = Vec::with_capacity(capacity);
    while let Some(key) = map.next_key_seed(BorrowedKey)? {
        values.push(cx.trail.field(&key, map.next_value_seed(seed))?);
        keys.push(key);
    }
    let names = match cx.shapes {
        Some(shapes) => shapes.borrow_mut().names(&keys),
        None => keys.iter().map(|k| Arc::from(&**k)).collect(),
    };
    Ok(Row::from_shared(names, values))
}

/// An object key, borrowed from the input when it has no escapes.
struct BorrowedKey;

impl<'de> DeserializeSeed<'de> for BorrowedKey {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for BorrowedKey {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// A row (`before`/`after`): null → `None`.
#[derive(Clone, Copy)]
struct RowSeed<'a> {
    schema: &'a ConnectSchema,
    cx: &'a Cx<'a>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Option<Row>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<Row>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Option<Row>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a row object or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<Row>, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<Row>, A::Error> {
        if self.schema.connect_type() != ConnectType::Struct {
            return Err(self.cx.trail.fail(
                DecodeErrorKind::TypeMismatch,
                format!(
                    "expected {}, found an object",
                    self.schema.connect_type().as_str()
                ),
            ));
        }
        decode_struct(map, self.schema, true, self.cx).map(Some)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<Row>, E> {
        Err(self.unexpected("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<Row>, E> {
        Err(self.unexpected("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<Row>, E> {
        Err(self.unexpected("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<Row>, E> {
        Err(self.unexpected("a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<Row>, E> {
        Err(self.unexpected("a string"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Option<Row>, A::Error> {
        Err(self.unexpected("an array"))
    }
}

impl RowSeed<'_> {
    fn unexpected<E: de::Error>(self, found: &str) -> E {
        self.cx.trail.fail(
            DecodeErrorKind::TypeMismatch,
            format!("expected a row object or null, found {found}"),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Envelopes and flattened records

/// A decoded payload before the caller adds the key, the Kafka position and the table schema.
#[derive(Debug)]
pub(crate) struct Body {
    pub(crate) op: Op,
    pub(crate) format: RecordFormat,
    pub(crate) before: Option<Row>,
    pub(crate) after: Option<Row>,
    pub(crate) source: Source,
    pub(crate) ts_ms: Option<i64>,
    pub(crate) transaction: Option<TransactionBlock>,
    pub(crate) message: Option<LogicalMessage>,
}

/// The envelope fields as decoded, validated by [`RawEnvelope::finish`].
#[derive(Default)]
struct RawEnvelope {
    op: Option<Value>,
    before: Option<Row>,
    after: Option<Row>,
    source: Option<Source>,
    ts_ms: Option<Value>,
    transaction: Option<Value>,
    message: Option<Value>,
}

impl RawEnvelope {
    fn finish(self, root: &str, schemaless: bool) -> Result<Body, DecodeError> {
        let path = |field: &str| join(root, field);
        let op = match self.op {
            Some(Value::String(code)) => Op::from_code(&code).ok_or_else(|| {
                DecodeError::new(
                    DecodeErrorKind::UnknownOp,
                    path("op"),
                    format!("unknown operation `{code}` (expected c, r, u, d, t or m)"),
                )
            })?,
            None | Some(Value::Null) => {
                return Err(DecodeError::new(
                    DecodeErrorKind::MissingField,
                    path("op"),
                    "change event has no `op`",
                ));
            }
            Some(other) => {
                return Err(DecodeError::new(
                    DecodeErrorKind::TypeMismatch,
                    path("op"),
                    format!("expected a string, found {}", other.type_name()),
                ));
            }
        };
        let source = self.source.unwrap_or_default();
        let transaction = match self.transaction {
            Some(Value::Struct(row)) => Some(TransactionBlock::from_row(row)),
            _ => None,
        };
        let message = match self.message {
            Some(Value::Struct(row)) => Some(LogicalMessage::from_row(row, schemaless)),
            _ => None,
        };
        Ok(Body {
            op,
            format: RecordFormat::Envelope,
            before: self.before,
            after: self.after,
            source,
            ts_ms: self.ts_ms.as_ref().and_then(int_of),
            transaction,
            message,
        })
    }
}

fn join(root: &str, field: &str) -> String {
    if root.is_empty() {
        field.to_owned()
    } else {
        format!("{root}.{field}")
    }
}

/// An integer from a decoded value (integers, or their text as some SMTs write them).
pub(crate) fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A string from a decoded value (text, or the text of a number/boolean).
pub(crate) fn string_of(v: Value) -> Option<String> {
    match v {
        Value::Null | Value::Unavailable => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

struct EnvelopeSeed<'a> {
    plan: &'a EnvelopePlan,
    cx: &'a Cx<'a>,
}

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = Option<RawEnvelope>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = Option<RawEnvelope>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a change event object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let cx = self.cx;
        let fields = self.plan.schema.fields();
        let mut raw = RawEnvelope::default();
        let mut next = 0;
        while let Some(key) = map.next_key_seed(FieldKey { fields, next })? {
            let FieldIdx::Known(i) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            next = i + 1;
            let field = &fields[i];
            let role = self.plan.roles[i];
            if matches!(role, Role::Before | Role::After) {
                let seed = RowSeed {
                    schema: field.schema(),
                    cx,
                };
                let row = cx.trail.field(field.name(), map.next_value_seed(seed))?;
                match role {
                    Role::Before => raw.before = row,
                    _ => raw.after = row,
                }
                continue;
            }
            if role == Role::Other {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if role == Role::Source {
                // Debezium fixes the source block's types: decode it directly, not via a Row.
                raw.source = Some(
                    cx.trail
                        .field("source", map.next_value_seed(SourceSeed { cx }))?,
                );
                continue;
            }
            let seed = ValueSeed {
                schema: Some(field.schema()),
                column: false,
                cx,
            };
            let value = Some(cx.trail.field(field.name(), map.next_value_seed(seed))?);
            match role {
                Role::Op => raw.op = value,
                Role::TsMs => raw.ts_ms = value,
                Role::Transaction => raw.transaction = value,
                Role::Message => raw.message = value,
                Role::Before | Role::After | Role::Source | Role::Other => {}
            }
        }
        Ok(Some(raw))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(not_an_object(self.cx, "a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(not_an_object(self.cx, "a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(not_an_object(self.cx, "a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(not_an_object(self.cx, "a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(not_an_object(self.cx, "a string"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(not_an_object(self.cx, "an array"))
    }
}

/// The `source` block, decoded straight into [`Source`]: text fields are strings (a boolean is
/// accepted for the pre-1.x `snapshot`), numeric fields int64; other fields are skipped.
struct SourceSeed<'a> {
    cx: &'a Cx<'a>,
}

/// A source field, resolved without allocating: its name (for error paths) and its place in
/// [`Source`].
enum SourceField {
    Text(
        &'static str,
        usize,
        fn(&mut Source) -> &mut Option<Arc<str>>,
    ),
    Int(&'static str, fn(&mut Source) -> &mut Option<i64>),
    Other,
}

/// A source field name.
struct SourceKey;

impl<'de> DeserializeSeed<'de> for SourceKey {
    type Value = SourceField;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<SourceField, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for SourceKey {
    type Value = SourceField;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a source field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<SourceField, E> {
        use SourceField::{Int, Other, Text};
        Ok(match key {
            "version" => Text("version", 0, |s| &mut s.version),
            "connector" => Text("connector", 1, |s| &mut s.connector),
            "name" => Text("name", 2, |s| &mut s.name),
            "ts_ms" => Int("ts_ms", |s| &mut s.ts_ms),
            "ts_us" => Int("ts_us", |s| &mut s.ts_us),
            "ts_ns" => Int("ts_ns", |s| &mut s.ts_ns),
            "snapshot" => Text("snapshot", 3, |s| &mut s.snapshot),
            "db" => Text("db", 4, |s| &mut s.database),
            "sequence" => Text("sequence", 5, |s| &mut s.sequence),
            "schema" => Text("schema", 6, |s| &mut s.schema),
            "table" => Text("table", 7, |s| &mut s.table),
            "txId" => Int("txId", |s| &mut s.tx_id),
            "lsn" => Int("lsn", |s| &mut s.lsn),
            "xmin" => Int("xmin", |s| &mut s.xmin),
            _ => Other,
        })
    }
}

impl<'de> DeserializeSeed<'de> for SourceSeed<'_> {
    type Value = Source;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Source, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SourceSeed<'_> {
    type Value = Source;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the source block")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Source, E> {
        Ok(Source::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Source, A::Error> {
        let trail = &self.cx.trail;
        let mut source = Source::default();
        while let Some(field) = map.next_key_seed(SourceKey)? {
            match field {
                SourceField::Text(name, field, slot) => {
                    let seed = TextSeed { cx: self.cx, field };
                    *slot(&mut source) = trail.field(name, map.next_value_seed(seed))?;
                }
                SourceField::Int(name, slot) => {
                    *slot(&mut source) =
                        trail.field(name, map.next_value_seed(IntSeed { cx: self.cx }))?;
                }
                SourceField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(source)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Source, E> {
        Err(self.unexpected("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Source, E> {
        Err(self.unexpected("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Source, E> {
        Err(self.unexpected("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Source, E> {
        Err(self.unexpected("a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Source, E> {
        Err(self.unexpected("a string"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Source, A::Error> {
        Err(self.unexpected("an array"))
    }
}

impl SourceSeed<'_> {
    fn unexpected<E: de::Error>(&self, found: &str) -> E {
        self.cx.trail.fail(
            DecodeErrorKind::TypeMismatch,
            format!("expected the source struct, found {found}"),
        )
    }
}

/// A nullable int64 field of the source block.
struct IntSeed<'a> {
    cx: &'a Cx<'a>,
}

impl IntSeed<'_> {
    fn mismatch<E: de::Error>(&self, expected: &str, found: &str) -> E {
        self.cx.trail.fail(
            DecodeErrorKind::TypeMismatch,
            format!("expected {expected}, found {found}"),
        )
    }
}

/// A nullable text field of the source block.
struct TextSeed<'a> {
    cx: &'a Cx<'a>,
    /// Which source field, for [`Options::source_text`].
    field: usize,
}

impl TextSeed<'_> {
    fn mismatch<E: de::Error>(&self, found: &str) -> E {
        self.cx.trail.fail(
            DecodeErrorKind::TypeMismatch,
            format!("expected string, found {found}"),
        )
    }
}

impl<'de> DeserializeSeed<'de> for TextSeed<'_> {
    type Value = Option<Arc<str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TextSeed<'_> {
    type Value = Option<Arc<str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(self.cx.opts.source_text(self.field, v)))
    }

    // Debezium 0.x sent `snapshot` as a boolean.
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Arc::from(v.to_string())))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.mismatch("an integer"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.mismatch("an integer"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.mismatch("a number"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.mismatch("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.mismatch("an object"))
    }
}

impl<'de> DeserializeSeed<'de> for IntSeed<'_> {
    type Value = Option<i64>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IntSeed<'_> {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an int64 or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v).map(Some).map_err(|_| {
            self.cx.trail.fail(
                DecodeErrorKind::OutOfRange,
                format!("{v} does not fit int64"),
            )
        })
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.mismatch("int64", "a fractional number"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.mismatch("int64", "a boolean"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.mismatch("int64", "a string"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.mismatch("int64", "an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.mismatch("int64", "an object"))
    }
}

fn not_an_object<E: de::Error>(cx: &Cx<'_>, found: &str) -> E {
    cx.trail.fail(
        DecodeErrorKind::TypeMismatch,
        format!("expected a change event object, found {found}"),
    )
}

/// A flattened record as decoded: the row and the metadata fields.
struct RawFlat {
    row: Row,
    metas: Vec<(Meta, Value)>,
}

struct FlatSeed<'a> {
    plan: &'a FlatPlan,
    cx: &'a Cx<'a>,
}

impl<'de> DeserializeSeed<'de> for FlatSeed<'_> {
    type Value = Option<RawFlat>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FlatSeed<'_> {
    type Value = Option<RawFlat>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a flattened row object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let cx = self.cx;
        let fields = self.plan.schema.fields();
        let mut values = Values::new(self.plan.row_names.len());
        let mut metas = Vec::new();
        let mut next = 0;
        while let Some(key) = map.next_key_seed(FieldKey { fields, next })? {
            let FieldIdx::Known(i) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            next = i + 1;
            let field = &fields[i];
            let target = &self.plan.targets[i];
            let seed = ValueSeed {
                schema: Some(field.schema()),
                column: matches!(target, Target::Column(_)),
                cx,
            };
            let value = cx.trail.field(field.name(), map.next_value_seed(seed))?;
            match target {
                Target::Column(j) => values.set(*j, value),
                Target::Meta(meta) => metas.push((meta.clone(), value)),
            }
        }
        let row = Row::from_shared(self.plan.row_names.clone(), values.finish());
        Ok(Some(RawFlat { row, metas }))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(not_an_object(self.cx, "a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(not_an_object(self.cx, "a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(not_an_object(self.cx, "a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(not_an_object(self.cx, "a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(not_an_object(self.cx, "a string"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(not_an_object(self.cx, "an array"))
    }
}

/// A flattened record's row and metadata as an event: `__op` gives the operation (`__deleted`
/// = "true" forces a delete, whose row is the before image); without `__op` it is an update.
fn flat_body(row: Row, metas: Vec<(Meta, Value)>, root: &str) -> Result<Body, DecodeError> {
    let mut source = Source::default();
    let mut transaction = TransactionBlock::default();
    let mut has_transaction = false;
    let mut op = None;
    let mut deleted = false;
    let mut ts_ms = None;
    for (meta, value) in metas {
        match meta {
            Meta::Op => match &value {
                Value::Null => {}
                Value::String(code) => {
                    op = Some(Op::from_code(code).ok_or_else(|| {
                        DecodeError::new(
                            DecodeErrorKind::UnknownOp,
                            join(root, "__op"),
                            format!("unknown operation `{code}` (expected c, r, u, d, t or m)"),
                        )
                    })?);
                }
                other => {
                    return Err(DecodeError::new(
                        DecodeErrorKind::TypeMismatch,
                        join(root, "__op"),
                        format!("expected a string, found {}", other.type_name()),
                    ));
                }
            },
            Meta::Deleted => {
                deleted = matches!(&value, Value::Bool(true))
                    || matches!(&value, Value::String(s) if s == "true");
            }
            Meta::TsMs => ts_ms = int_of(&value),
            Meta::Source(field) => source.set(&field, value),
            Meta::Transaction(field) => {
                has_transaction = true;
                transaction.set(&field, value);
            }
            Meta::Ignored => {}
        }
    }
    let op = if deleted {
        Op::Delete
    } else {
        op.unwrap_or(Op::Update)
    };
    let (before, after) = if op == Op::Delete {
        (Some(row), None)
    } else {
        (None, Some(row))
    };
    Ok(Body {
        op,
        format: RecordFormat::Flattened,
        before,
        after,
        source,
        ts_ms,
        transaction: has_transaction.then_some(transaction),
        message: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Entry points

/// Where a payload comes from.
pub(crate) enum Input<'b> {
    /// JSON bytes.
    Bytes(&'b [u8]),
    /// A parsed JSON value.
    Json(&'b serde_json::Value),
}

/// Runs `seed` over the input; from bytes, nothing but whitespace may follow the value.
fn deserialize_input<'de, S: DeserializeSeed<'de>>(
    input: Input<'de>,
    seed: S,
) -> Result<S::Value, serde_json::Error> {
    match input {
        Input::Bytes(bytes) => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let value = seed.deserialize(&mut de)?;
            de.end()?;
            Ok(value)
        }
        Input::Json(json) => seed.deserialize(json),
    }
}

/// Decodes a schema-enabled value payload with its plan. `Ok(None)`: the payload is null.
pub(crate) fn decode_payload(
    plan: &ValuePlan,
    input: Input<'_>,
    opts: &Options,
    root: &str,
) -> Result<Option<Body>, DecodeError> {
    let cx = Cx::new(opts, None);
    match plan {
        ValuePlan::Envelope(plan) => {
            match deserialize_input(input, EnvelopeSeed { plan, cx: &cx }) {
                Ok(Some(raw)) => raw.finish(root, false).map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(cx.trail.into_error(root, &e)),
            }
        }
        ValuePlan::Flat(plan) => match deserialize_input(input, FlatSeed { plan, cx: &cx }) {
            Ok(Some(raw)) => flat_body(raw.row, raw.metas, root).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(cx.trail.into_error(root, &e)),
        },
        ValuePlan::NotChange(reason) => Err(DecodeError::new(
            DecodeErrorKind::NotAChangeEvent,
            "",
            reason.clone(),
        )),
    }
}

/// Decodes one JSON value, typed by `schema` or best-effort without one (then objects reuse
/// the key lists in `shapes`).
pub(crate) fn decode_value(
    schema: Option<&ConnectSchema>,
    input: Input<'_>,
    opts: &Options,
    shapes: Option<&RefCell<Shapes>>,
    root: &str,
) -> Result<Value, DecodeError> {
    let cx = Cx::new(opts, shapes);
    let seed = ValueSeed {
        schema,
        column: false,
        cx: &cx,
    };
    deserialize_input(input, seed).map_err(|e| cx.trail.into_error(root, &e))
}

/// A key as a row: a struct's fields, or a primitive under [`KEY_COLUMN`]. Null → `None`.
pub(crate) fn key_row(value: Value) -> Option<Row> {
    match value {
        Value::Null => None,
        Value::Struct(row) => Some(row),
        other => Some(Row::from_iter([(KEY_COLUMN, other)])),
    }
}

/// Marks the TOAST placeholder in a schemaless row: the text, its base64 form (a bytes column),
/// a one-element text array of it, or its bytes as an integer array.
fn mark_unavailable(row: &mut Row, opts: &Options) {
    for value in row.values_mut() {
        let unavailable = match &*value {
            Value::String(s) => *s == opts.placeholder || *s == opts.placeholder_b64,
            Value::Array(items) => {
                opts.is_placeholder_text_array(items) || opts.is_placeholder_int_array(items)
            }
            _ => false,
        };
        if unavailable {
            *value = Value::Unavailable;
        }
    }
}

/// Interprets a schemaless value: an envelope when it has `op` next to `before`/`after`/
/// `source`/`message`, a flattened record otherwise. `Ok(None)`: JSON null (a tombstone).
pub(crate) fn schemaless_body(
    top: Value,
    opts: &Options,
    root: &str,
) -> Result<Option<Body>, DecodeError> {
    let row = match top {
        Value::Null => return Ok(None),
        Value::Struct(row) => row,
        other => {
            return Err(DecodeError::new(
                DecodeErrorKind::NotAChangeEvent,
                root,
                format!("value is {}, not a change event object", other.type_name()),
            ));
        }
    };
    let has = |n: &str| row.get(n).is_some();
    let is_envelope =
        has("op") && (has("before") || has("after") || has("source") || has("message"));
    if !is_envelope {
        if row.names().all(|n| Meta::of(n).is_none()) {
            let mut row = row;
            mark_unavailable(&mut row, opts);
            return flat_body(row, Vec::new(), root).map(Some);
        }
        let mut columns = Vec::with_capacity(row.len());
        let mut metas = Vec::new();
        for (name, value) in row.into_pairs() {
            match Meta::of(&name) {
                Some(meta) => metas.push((meta, value)),
                None => columns.push((name, value)),
            }
        }
        let mut row: Row = columns.into_iter().collect();
        mark_unavailable(&mut row, opts);
        return flat_body(row, metas, root).map(Some);
    }
    let mut raw = RawEnvelope::default();
    for (name, value) in row.into_pairs() {
        let image = |value: Value| -> Result<Option<Row>, DecodeError> {
            match value {
                Value::Null => Ok(None),
                Value::Struct(mut row) => {
                    mark_unavailable(&mut row, opts);
                    Ok(Some(row))
                }
                other => Err(DecodeError::new(
                    DecodeErrorKind::TypeMismatch,
                    join(root, &name),
                    format!("expected a row object or null, found {}", other.type_name()),
                )),
            }
        };
        match Role::of(&name) {
            Role::Before => raw.before = image(value)?,
            Role::After => raw.after = image(value)?,
            Role::Source => {
                raw.source = Some(match value {
                    Value::Struct(row) => Source::from_row(row),
                    _ => Source::default(),
                })
            }
            Role::Op => raw.op = Some(value),
            Role::TsMs => raw.ts_ms = Some(value),
            Role::Transaction => raw.transaction = Some(value),
            Role::Message => raw.message = Some(value),
            Role::Other => {}
        }
    }
    raw.finish(root, true).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr as _;

    /// Minimal big-endian two's-complement bytes of `v`, as Java's BigInteger.toByteArray().
    fn unscaled_bytes(v: i128) -> Vec<u8> {
        let bytes = v.to_be_bytes();
        let mut start = 0;
        while start < 15 {
            let (b, next) = (bytes[start], bytes[start + 1]);
            if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
                start += 1;
            } else {
                break;
            }
        }
        bytes[start..].to_vec()
    }

    fn dec(s: &str) -> Value {
        Value::Decimal(Decimal::from_str(s).unwrap())
    }

    fn b64(s: &str) -> Vec<u8> {
        BASE64.decode(s).unwrap()
    }

    #[test]
    fn decimals_from_debezium_bytes() {
        // DESIGN.md: "BNI=" = 1234 → 12.34 at scale 2.
        assert_eq!(decimal_from_unscaled(&b64("BNI="), 2), Ok(dec("12.34")));
        assert_eq!(decimal_from_unscaled(&b64("EtaH"), 2), Ok(dec("12345.67")));
        assert_eq!(
            decimal_from_unscaled(&b64("HL6ZGhQ="), 2),
            Ok(dec("1234567890.12"))
        );
        assert_eq!(decimal_from_unscaled(&b64("+w=="), 2), Ok(dec("-0.05")));
        assert_eq!(decimal_from_unscaled(&[0x01, 0xf4], 2), Ok(dec("5.00")));
        assert_eq!(decimal_from_unscaled(&[0x00], 0), Ok(dec("0")));
        // Negative scale (numeric(3,-2)): 123 × 10².
        assert_eq!(decimal_from_unscaled(&[0x7b], -2), Ok(dec("12300")));
        // Past 96 bits: exact text.
        let big = unscaled_bytes(12_345_678_901_234_567_890_123_456_789_012_345_678);
        assert_eq!(
            decimal_from_unscaled(&big, 2),
            Ok(Value::BigDecimal(
                "123456789012345678901234567890123456.78".into()
            ))
        );
        let neg = unscaled_bytes(-12_345_678_901_234_567_890_123_456_789_012_345_678);
        assert_eq!(
            decimal_from_unscaled(&neg, 40),
            Ok(Value::BigDecimal(
                "-0.0012345678901234567890123456789012345678".into()
            ))
        );
        // Scale over 28 with a small value still needs text.
        assert_eq!(
            decimal_from_unscaled(&[0x05], 30),
            Ok(Value::BigDecimal("0.000000000000000000000000000005".into()))
        );
        assert_eq!(
            decimal_from_unscaled(&[0xff; 20], 0),
            Ok(Value::BigDecimal("-1".into()))
        );
        assert_eq!(
            decimal_from_unscaled(&[0x80, 0, 0], -3),
            Ok(dec("-8388608000"))
        );
        assert_eq!(
            decimal_from_unscaled(&[], 2).unwrap_err().0,
            DecodeErrorKind::InvalidValue
        );
        assert_eq!(
            decimal_from_unscaled(&[1], i32::MAX).unwrap_err().0,
            DecodeErrorKind::OutOfRange
        );
        let huge = vec![1u8; MAX_UNSCALED_BYTES + 1];
        assert_eq!(
            decimal_from_unscaled(&huge, 0).unwrap_err().0,
            DecodeErrorKind::OutOfRange
        );
    }

    #[test]
    fn big_decimal_text_of_a_20_byte_value() {
        // 2^152 = 5708990770823839524233143877797980545530986496
        let mut bytes = vec![0u8; 20];
        bytes[0] = 0x01;
        assert_eq!(
            unscaled_to_text(&bytes, 3),
            "5708990770823839524233143877797980545530986.496"
        );
        assert_eq!(
            unscaled_to_text(&bytes, -2),
            "570899077082383952423314387779798054553098649600"
        );
    }

    #[test]
    fn times_and_dates() {
        assert_eq!(date_from_days(19_724), NaiveDate::from_ymd_opt(2024, 1, 2));
        assert_eq!(date_from_days(-719_162), NaiveDate::from_ymd_opt(1, 1, 1));
        assert_eq!(date_from_days(i64::MAX), None);
        assert_eq!(
            time_of_day(45_296_789_012, TimeUnit::Micros),
            NaiveTime::from_hms_micro_opt(12, 34, 56, 789_012)
        );
        assert_eq!(
            time_of_day(86_400_000_000, TimeUnit::Micros),
            NaiveTime::from_hms_nano_opt(23, 59, 59, 1_000_000_000)
        );
        assert_eq!(time_of_day(86_400_000_001, TimeUnit::Micros), None);
        assert_eq!(time_of_day(-1, TimeUnit::Millis), None);
        assert_eq!(
            timestamp(1_704_164_645_123_456, TimeUnit::Micros).map(|t| t.to_string()),
            Some("2024-01-02 03:04:05.123456".into())
        );
        assert_eq!(timestamp(i64::MAX, TimeUnit::Micros), None);
        assert_eq!(
            timestamp(-1, TimeUnit::Nanos).map(|t| t.to_string()),
            Some("1969-12-31 23:59:59.999999999".into())
        );
    }

    #[test]
    fn zoned_times() {
        let (t, off) = parse_zoned_time("03:04:05.5+02:00").unwrap();
        assert_eq!(t, NaiveTime::from_hms_milli_opt(3, 4, 5, 500).unwrap());
        assert_eq!(off.local_minus_utc(), 7200);
        let (_, off) = parse_zoned_time("23:59:59Z").unwrap();
        assert_eq!(off.local_minus_utc(), 0);
        let (_, off) = parse_zoned_time("10:00:00-0330").unwrap();
        assert_eq!(off.local_minus_utc(), -(3 * 3600 + 30 * 60));
        let (_, off) = parse_zoned_time("10:00:00+05").unwrap();
        assert_eq!(off.local_minus_utc(), 5 * 3600);
        for bad in [
            "",
            "Z",
            "10:00",
            "10:00:00+2",
            "10:00:00+99:00",
            "10:00:00+aa",
            "ß+01",
            "+",
        ] {
            assert_eq!(parse_zoned_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn placeholder_shapes() {
        let opts = Options::new(super::super::UNAVAILABLE_PLACEHOLDER);
        assert_eq!(
            opts.placeholder_b64,
            "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="
        );
        let ints: Vec<Value> = opts
            .placeholder
            .bytes()
            .map(|b| Value::Int(b.into()))
            .collect();
        assert!(opts.is_placeholder_int_array(&ints));
        assert!(!opts.is_placeholder_int_array(&ints[1..]));
        assert!(opts.is_placeholder_text_array(&[Value::String(opts.placeholder.clone())]));
        assert!(!opts.is_placeholder_text_array(&[
            Value::String(opts.placeholder.clone()),
            Value::String("x".into())
        ]));
    }

    proptest! {
        #[test]
        fn decimal_roundtrip_within_96_bits(v in -(1i128 << 95)..(1i128 << 95), scale in 0u32..=28) {
            let expected = Decimal::from_i128_with_scale(v, scale);
            prop_assert_eq!(decimal_from_unscaled(&unscaled_bytes(v), scale as i32), Ok(Value::Decimal(expected)));
        }

        #[test]
        fn big_decimal_text_matches_i128(v in any::<i128>(), scale in 0i32..45) {
            let digits = v.unsigned_abs().to_string();
            let mut expected = if scale as usize >= digits.len() {
                format!("{}{}", "0".repeat(scale as usize + 1 - digits.len()), digits)
            } else {
                digits
            };
            if scale > 0 {
                expected.insert(expected.len() - scale as usize, '.');
            }
            if v < 0 {
                expected.insert(0, '-');
            }
            prop_assert_eq!(unscaled_to_text(&unscaled_bytes(v), scale), expected);
        }

        #[test]
        fn conversions_never_panic(v in any::<i64>(), bytes in proptest::collection::vec(any::<u8>(), 0..40), scale in any::<i32>(), text in ".{0,24}") {
            for unit in [TimeUnit::Millis, TimeUnit::Micros, TimeUnit::Nanos] {
                let _ = time_of_day(v, unit);
                let _ = timestamp(v, unit);
            }
            let _ = date_from_days(v);
            let _ = decimal_from_unscaled(&bytes, scale);
            let _ = parse_zoned_time(&text);
            let _ = parse_offset(&text);
        }
    }
}
