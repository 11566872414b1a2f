//! Decoded column values ([`Value`]) and rows ([`Row`]), their human text (`Display`, psql
//! style) and their JSON form (`Serialize`, the rules in the [`super`] module doc).

use std::fmt::{self, Write as _};
use std::sync::Arc;

use chrono::{
    DateTime, Datelike as _, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike as _,
};
use rust_decimal::Decimal;
use serde::ser::{SerializeMap as _, SerializeSeq as _};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use super::UNAVAILABLE_PLACEHOLDER;

/// One decoded value, typed from the Connect schema (or best-effort without one).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A column Debezium did not send because it was unchanged and stored out of line (TOAST):
    /// the `__debezium_unavailable_value` placeholder. Unchanged, value unknown; never NULL.
    Unavailable,
    /// boolean.
    Bool(bool),
    /// int8/16/32/64 (and integer-coded logical types cdcctl does not interpret).
    Int(i64),
    /// float/double (also `decimal.handling.mode=double`).
    Float(f64),
    /// An exact decimal (`numeric`), scale kept: `12.30` stays `12.30`.
    Decimal(Decimal),
    /// An exact decimal too wide for [`Decimal`] (more than 28 digits, or a scale over 28), as
    /// plain decimal text without exponent, e.g. `123456789012345678901234567890.12`.
    BigDecimal(String),
    /// Text (also enums, XML, `decimal.handling.mode=string`).
    String(String),
    /// Binary (`bytea`, bit strings).
    Bytes(Vec<u8>),
    /// date.
    Date(NaiveDate),
    /// time without zone. Postgres' `24:00:00` is chrono's leap-second form 23:59:59 + 1 s.
    Time(NaiveTime),
    /// time with zone, offset kept.
    TimeTz(NaiveTime, FixedOffset),
    /// timestamp without zone.
    Timestamp(NaiveDateTime),
    /// timestamp with zone, offset kept as sent (Debezium sends UTC).
    TimestampTz(DateTime<FixedOffset>),
    /// json/jsonb, parsed.
    Json(serde_json::Value),
    /// uuid.
    Uuid(Uuid),
    /// An array (Postgres arrays, `EnumSet` labels).
    Array(Vec<Value>),
    /// A Connect map, entries in message order (`hstore` with `hstore.handling.mode=map`).
    Map(Vec<(Value, Value)>),
    /// A nested struct (geometry, VariableScaleDecimal is decoded to Decimal instead).
    Struct(Row),
}

impl Value {
    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// True for [`Value::Unavailable`].
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable)
    }

    /// The text of a [`Value::String`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number of a [`Value::Int`].
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value of a [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The row of a [`Value::Struct`].
    pub fn as_struct(&self) -> Option<&Row> {
        match self {
            Self::Struct(r) => Some(r),
            _ => None,
        }
    }

    /// A short name of the variant, for messages: `null`, `int`, `decimal`, `timestamptz`...
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Unavailable => "unavailable",
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Float(_) => "float",
            Self::Decimal(_) | Self::BigDecimal(_) => "decimal",
            Self::String(_) => "string",
            Self::Bytes(_) => "bytes",
            Self::Date(_) => "date",
            Self::Time(_) => "time",
            Self::TimeTz(..) => "timetz",
            Self::Timestamp(_) => "timestamp",
            Self::TimestampTz(_) => "timestamptz",
            Self::Json(_) => "json",
            Self::Uuid(_) => "uuid",
            Self::Array(_) => "array",
            Self::Map(_) => "map",
            Self::Struct(_) => "struct",
        }
    }
}

/// An ordered list of named values: a table row, a key, a nested struct. Rows decoded with the
/// same schema share one list of column names.
#[derive(Clone, PartialEq, Default)]
pub struct Row {
    names: Arc<[Arc<str>]>,
    values: Vec<Value>,
}

impl Row {
    /// An empty row.
    pub fn new() -> Self {
        Self::default()
    }

    /// A row from shared names and values of the same length.
    pub(crate) fn from_shared(names: Arc<[Arc<str>]>, values: Vec<Value>) -> Self {
        debug_assert_eq!(names.len(), values.len());
        Self { names, values }
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value of column `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.position(name).map(|i| &self.values[i])
    }

    /// The value of column `name`, to change it (e.g. to fill an [`Value::Unavailable`] column
    /// from an earlier image).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.position(name).map(move |i| &mut self.values[i])
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| &**n == name)
    }

    /// Appends a column (or replaces the value of an existing one).
    pub fn push(&mut self, name: impl Into<Arc<str>>, value: Value) {
        let name = name.into();
        if let Some(i) = self.position(&name) {
            self.values[i] = value;
            return;
        }
        let mut names = self.names.to_vec();
        names.push(name);
        self.names = names.into();
        self.values.push(value);
    }

    /// Column names, in order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }

    /// Values, in column order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// `(name, value)` pairs, in column order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.names.iter().map(|n| &**n).zip(self.values.iter())
    }

    /// Columns holding [`Value::Unavailable`] (unchanged TOAST values), which the JSON form
    /// leaves out.
    pub fn unavailable_columns(&self) -> Vec<&str> {
        self.iter()
            .filter(|(_, v)| v.is_unavailable())
            .map(|(n, _)| n)
            .collect()
    }

    /// Columns of `after` whose value differs from this (before) image, in `after`'s order.
    /// Columns unavailable in `after` are unchanged by definition and never listed; columns
    /// missing or unavailable in `self` count as changed.
    pub fn changed_columns<'a>(&self, after: &'a Row) -> Vec<&'a str> {
        after
            .iter()
            .filter(|(name, value)| {
                !value.is_unavailable()
                    && match self.get(name) {
                        Some(old) => old.is_unavailable() || old != *value,
                        None => true,
                    }
            })
            .map(|(n, _)| n)
            .collect()
    }

    /// Values, to change them in place.
    pub(crate) fn values_mut(&mut self) -> &mut [Value] {
        &mut self.values
    }

    /// The shared names and the values.
    pub(crate) fn into_parts(self) -> (Arc<[Arc<str>]>, Vec<Value>) {
        (self.names, self.values)
    }

    /// Consumes the row into `(name, value)` pairs.
    pub fn into_pairs(self) -> impl Iterator<Item = (Arc<str>, Value)> {
        let names = self.names;
        self.values
            .into_iter()
            .enumerate()
            .map(move |(i, v)| (names[i].clone(), v))
    }
}

impl<N: Into<Arc<str>>> FromIterator<(N, Value)> for Row {
    fn from_iter<I: IntoIterator<Item = (N, Value)>>(iter: I) -> Self {
        let (names, values): (Vec<Arc<str>>, Vec<Value>) =
            iter.into_iter().map(|(n, v)| (n.into(), v)).unzip();
        Self {
            names: names.into(),
            values,
        }
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Human text (psql style)

/// How many fraction digits a time gets.
#[derive(Clone, Copy)]
enum Frac {
    /// psql: trailing zeros trimmed.
    Trim,
    /// JSON: 6 digits, or 9 when there are nanoseconds; none when zero.
    Fixed,
}

fn write_frac(out: &mut impl fmt::Write, nanos: u32, frac: Frac) -> fmt::Result {
    if nanos == 0 {
        return Ok(());
    }
    match frac {
        Frac::Fixed if nanos.is_multiple_of(1_000) => {
            out.write_char('.')?;
            write_digits(out, nanos / 1_000, 6)
        }
        Frac::Fixed => {
            out.write_char('.')?;
            write_digits(out, nanos, 9)
        }
        Frac::Trim => {
            let mut digits = format!("{nanos:09}");
            while digits.ends_with('0') {
                digits.pop();
            }
            write!(out, ".{digits}")
        }
    }
}

fn write_time(out: &mut impl fmt::Write, t: NaiveTime, frac: Frac) -> fmt::Result {
    let nanos = t.nanosecond();
    // chrono keeps a leap second as nanosecond >= 1e9; Postgres' 24:00:00 is decoded that way.
    if nanos >= 1_000_000_000 {
        if (t.hour(), t.minute(), t.second(), nanos) == (23, 59, 59, 1_000_000_000) {
            return out.write_str("24:00:00");
        }
        write!(out, "{:02}:{:02}:60", t.hour(), t.minute())?;
        return write_frac(out, nanos - 1_000_000_000, frac);
    }
    write_digits(out, t.hour(), 2)?;
    out.write_char(':')?;
    write_digits(out, t.minute(), 2)?;
    out.write_char(':')?;
    write_digits(out, t.second(), 2)?;
    write_frac(out, nanos, frac)
}

/// `value` (below 10^`width`, `width` at most 9) zero-padded to `width` digits: `{:0width$}`
/// without the formatting machinery (hot in `tail`).
fn write_digits(out: &mut impl fmt::Write, mut value: u32, width: usize) -> fmt::Result {
    let mut digits = [b'0'; 9];
    for d in digits[..width].iter_mut().rev() {
        *d = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out.write_str(std::str::from_utf8(&digits[..width]).map_err(|_| fmt::Error)?)
}

fn write_date(out: &mut impl fmt::Write, d: NaiveDate) -> fmt::Result {
    let year = d.year();
    if !(0..=9999).contains(&year) {
        // chrono's `%Y` signs years outside 0..=9999 the ISO 8601 way.
        return write!(out, "{}", d.format("%Y-%m-%d"));
    }
    // The common case by hand: strftime re-parses its format on every call (hot in `tail`).
    let y = year as u32;
    let (m, day) = (d.month(), d.day());
    let digits = [
        b'0' + (y / 1000) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
        b'-',
        b'0' + (m / 10) as u8,
        b'0' + (m % 10) as u8,
        b'-',
        b'0' + (day / 10) as u8,
        b'0' + (day % 10) as u8,
    ];
    out.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
}

/// `+02`, `+05:30`, or `Z`/`+02:00` in RFC 3339 style.
fn write_offset(out: &mut impl fmt::Write, offset: FixedOffset, rfc3339: bool) -> fmt::Result {
    let secs = offset.local_minus_utc();
    if rfc3339 && secs == 0 {
        return out.write_char('Z');
    }
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    let (h, m, s) = (abs / 3600, abs / 60 % 60, abs % 60);
    write!(out, "{sign}{h:02}")?;
    if m != 0 || s != 0 || rfc3339 {
        write!(out, ":{m:02}")?;
    }
    if s != 0 {
        write!(out, ":{s:02}")?;
    }
    Ok(())
}

fn write_hex(out: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    out.write_str("\\x")?;
    for b in bytes {
        write!(out, "{b:02x}")?;
    }
    Ok(())
}

fn float_special(x: f64) -> Option<&'static str> {
    if x.is_nan() {
        Some("NaN")
    } else if x.is_infinite() {
        Some(if x > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        None
    }
}

/// Postgres `jsonb` text: `{"a": 1, "b": [true, null]}`.
fn write_jsonb(out: &mut impl fmt::Write, v: &serde_json::Value) -> fmt::Result {
    match v {
        serde_json::Value::Object(map) => {
            out.write_char('{')?;
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.write_str(", ")?;
                }
                write_json_string(out, k)?;
                out.write_str(": ")?;
                write_jsonb(out, v)?;
            }
            out.write_char('}')
        }
        serde_json::Value::Array(items) => {
            out.write_char('[')?;
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.write_str(", ")?;
                }
                write_jsonb(out, v)?;
            }
            out.write_char(']')
        }
        serde_json::Value::String(s) => write_json_string(out, s),
        other => write!(out, "{other}"),
    }
}

fn write_json_string(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    let quoted = serde_json::to_string(s).map_err(|_| fmt::Error)?;
    out.write_str(&quoted)
}

/// Quotes an element of an array literal or a composite (row) literal the way Postgres does.
fn write_quoted_element(out: &mut impl fmt::Write, text: &str, composite: bool) -> fmt::Result {
    let special = |c: char| {
        c.is_ascii_whitespace()
            || c == '"'
            || c == '\\'
            || c == ','
            || c == '\u{b}'
            || if composite {
                c == '(' || c == ')'
            } else {
                c == '{' || c == '}'
            }
    };
    let needs_quotes = text.is_empty()
        || text.chars().any(special)
        || (!composite && text.eq_ignore_ascii_case("NULL"));
    if !needs_quotes {
        return out.write_str(text);
    }
    out.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' if composite => out.write_str("\"\"")?,
            '"' | '\\' => {
                out.write_char('\\')?;
                out.write_char(c)?;
            }
            _ => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

fn write_pg_array(out: &mut impl fmt::Write, items: &[Value]) -> fmt::Result {
    out.write_char('{')?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.write_char(',')?;
        }
        match item {
            Value::Null => out.write_str("NULL")?,
            Value::Array(inner) => write_pg_array(out, inner)?,
            other => write_quoted_element(out, &other.to_string(), false)?,
        }
    }
    out.write_char('}')
}

fn write_composite(out: &mut impl fmt::Write, row: &Row) -> fmt::Result {
    out.write_char('(')?;
    for (i, value) in row.values().iter().enumerate() {
        if i > 0 {
            out.write_char(',')?;
        }
        if !value.is_null() {
            write_quoted_element(out, &value.to_string(), true)?;
        }
    }
    out.write_char(')')
}

fn write_hstore(out: &mut impl fmt::Write, pairs: &[(Value, Value)]) -> fmt::Result {
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.write_str(", ")?;
        }
        write_hstore_text(out, &k.to_string())?;
        out.write_str("=>")?;
        if v.is_null() {
            out.write_str("NULL")?;
        } else {
            write_hstore_text(out, &v.to_string())?;
        }
    }
    Ok(())
}

fn write_hstore_text(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.write_char('\\')?;
        }
        out.write_char(c)?;
    }
    out.write_char('"')
}

/// psql-style text: `12345.67`, `t`, `2024-01-02 01:04:05.123456+00`, `\xdeadbeef`,
/// `{x,"y z"}`, `(1.5,-2,,)` for structs, `"a"=>"1"` for maps, `NULL`, and `<unavailable>` for
/// an unchanged TOAST value. Floats print as the shortest text that reads back exactly.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("NULL"),
            Self::Unavailable => f.write_str("<unavailable>"),
            Self::Bool(b) => f.write_str(if *b { "t" } else { "f" }),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => match float_special(*x) {
                Some(s) => f.write_str(s),
                None => write!(f, "{x}"),
            },
            Self::Decimal(d) => write!(f, "{d}"),
            Self::BigDecimal(s) | Self::String(s) => f.write_str(s),
            Self::Bytes(b) => write_hex(f, b),
            Self::Date(d) => write_date(f, *d),
            Self::Time(t) => write_time(f, *t, Frac::Trim),
            Self::TimeTz(t, off) => {
                write_time(f, *t, Frac::Trim)?;
                write_offset(f, *off, false)
            }
            Self::Timestamp(ts) => {
                write_date(f, ts.date())?;
                f.write_char(' ')?;
                write_time(f, ts.time(), Frac::Trim)
            }
            Self::TimestampTz(ts) => {
                write_date(f, ts.date_naive())?;
                f.write_char(' ')?;
                write_time(f, ts.time(), Frac::Trim)?;
                write_offset(f, *ts.offset(), false)
            }
            Self::Json(j) => write_jsonb(f, j),
            Self::Uuid(u) => write!(f, "{}", u.hyphenated()),
            Self::Array(items) => write_pg_array(f, items),
            Self::Map(pairs) => write_hstore(f, pairs),
            Self::Struct(row) => write_composite(f, row),
        }
    }
}

/// A row as a psql composite literal: `(1,alice@example.com,,t)`.
impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_composite(f, self)
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

/// Adapter: formats with a closure, so `collect_str` writes without an intermediate String.
struct Text<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result>(F);

impl<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result> fmt::Display for Text<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.0)(f)
    }
}

/// The JSON rules of the [`super`] module doc.
/// Renders short text (dates, times) into one string, so the serializer scans it once instead of
/// escaping each formatting fragment.
fn buffered(render: impl FnOnce(&mut String) -> fmt::Result) -> String {
    let mut text = String::with_capacity(40);
    // Writing to a String cannot fail; the render functions only fail through it.
    let _ = render(&mut text);
    text
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => s.serialize_unit(),
            Self::Unavailable => s.serialize_str(UNAVAILABLE_PLACEHOLDER),
            Self::Bool(b) => s.serialize_bool(*b),
            Self::Int(i) => s.serialize_i64(*i),
            Self::Float(x) => match float_special(*x) {
                Some(text) => s.serialize_str(text),
                None => s.serialize_f64(*x),
            },
            Self::Decimal(d) => s.collect_str(d),
            Self::BigDecimal(t) | Self::String(t) => s.serialize_str(t),
            Self::Bytes(b) => s.collect_str(&Text(|f| write_hex(f, b))),
            Self::Date(d) => s.serialize_str(&buffered(|f| write_date(f, *d))),
            Self::Time(t) => s.serialize_str(&buffered(|f| write_time(f, *t, Frac::Fixed))),
            Self::TimeTz(t, off) => s.serialize_str(&buffered(|f| {
                write_time(f, *t, Frac::Fixed)?;
                write_offset(f, *off, true)
            })),
            Self::Timestamp(ts) => s.serialize_str(&buffered(|f| {
                write_date(f, ts.date())?;
                f.write_char('T')?;
                write_time(f, ts.time(), Frac::Fixed)
            })),
            Self::TimestampTz(ts) => s.serialize_str(&buffered(|f| {
                write_date(f, ts.date_naive())?;
                f.write_char('T')?;
                write_time(f, ts.time(), Frac::Fixed)?;
                write_offset(f, *ts.offset(), true)
            })),
            Self::Json(j) => j.serialize(s),
            Self::Uuid(u) => s.collect_str(&u.hyphenated()),
            Self::Array(items) => s.collect_seq(items),
            Self::Map(pairs) => {
                if pairs.iter().all(|(k, _)| matches!(k, Self::String(_))) {
                    let mut map = s.serialize_map(Some(pairs.len()))?;
                    for (k, v) in pairs {
                        map.serialize_entry(k, v)?;
                    }
                    map.end()
                } else {
                    let mut seq = s.serialize_seq(Some(pairs.len()))?;
                    for (k, v) in pairs {
                        seq.serialize_element(&(k, v))?;
                    }
                    seq.end()
                }
            }
            Self::Struct(row) => row.serialize(s),
        }
    }
}

/// An object in column order, without [`Value::Unavailable`] columns (list them with
/// [`Row::unavailable_columns`]).
impl Serialize for Row {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let count = self.values.iter().filter(|v| !v.is_unavailable()).count();
        let mut map = s.serialize_map(Some(count))?;
        for (name, value) in self.iter() {
            if !value.is_unavailable() {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::str::FromStr as _;

    fn dec(s: &str) -> Value {
        Value::Decimal(Decimal::from_str(s).unwrap())
    }

    fn ts(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
    }

    #[test]
    fn display_matches_psql() {
        let tstz = DateTime::parse_from_rfc3339("2024-01-02T03:04:05.120+02:00").unwrap();
        let cases: Vec<(Value, &str)> = vec![
            (Value::Null, "NULL"),
            (Value::Unavailable, "<unavailable>"),
            (Value::Bool(true), "t"),
            (Value::Int(9_007_199_254_740_993), "9007199254740993"),
            (Value::Float(1.5), "1.5"),
            (Value::Float(f64::NEG_INFINITY), "-Infinity"),
            (dec("12345.67"), "12345.67"),
            (dec("5.00"), "5.00"),
            (dec("-0.05"), "-0.05"),
            (Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef]), "\\xdeadbeef"),
            (
                Value::Date(NaiveDate::from_ymd_opt(1, 1, 1).unwrap()),
                "0001-01-01",
            ),
            (
                Value::Time(NaiveTime::from_hms_micro_opt(3, 4, 5, 120_000).unwrap()),
                "03:04:05.12",
            ),
            (
                Value::Time(NaiveTime::from_hms_nano_opt(23, 59, 59, 1_000_000_000).unwrap()),
                "24:00:00",
            ),
            (
                Value::Timestamp(ts("2024-01-02 03:04:05.123456")),
                "2024-01-02 03:04:05.123456",
            ),
            (Value::TimestampTz(tstz), "2024-01-02 03:04:05.12+02"),
            (
                Value::TimeTz(
                    NaiveTime::from_hms_opt(3, 4, 5).unwrap(),
                    FixedOffset::east_opt(5 * 3600 + 1800).unwrap(),
                ),
                "03:04:05+05:30",
            ),
            (
                Value::Json(json!({"a": 1, "b": [true, null]})),
                r#"{"a": 1, "b": [true, null]}"#,
            ),
            (
                Value::Uuid(Uuid::nil()),
                "00000000-0000-0000-0000-000000000000",
            ),
            (
                Value::Array(vec![Value::String("x".into()), Value::String("y z".into())]),
                r#"{x,"y z"}"#,
            ),
            (Value::Array(vec![]), "{}"),
            (
                Value::Array(vec![
                    Value::String(String::new()),
                    Value::Null,
                    Value::String("null".into()),
                    Value::String(r#"a"b\c"#.into()),
                    Value::Array(vec![Value::Int(1), Value::Int(2)]),
                ]),
                r#"{"",NULL,"null","a\"b\\c",{1,2}}"#,
            ),
            (
                Value::Struct(Row::from_iter([
                    ("x", Value::Float(1.5)),
                    ("wkb", Value::Null),
                    ("s", Value::String("a (b)".into())),
                ])),
                r#"(1.5,,"a (b)")"#,
            ),
            (
                Value::Map(vec![
                    (Value::String("a".into()), Value::String("1".into())),
                    (Value::String("b".into()), Value::Null),
                ]),
                r#""a"=>"1", "b"=>NULL"#,
            ),
        ];
        for (value, text) in cases {
            assert_eq!(value.to_string(), text, "{value:?}");
        }
    }

    #[test]
    fn json_follows_the_documented_rules() {
        let tstz = DateTime::parse_from_rfc3339("2024-01-02T01:04:05.123456Z").unwrap();
        let plus2 = DateTime::parse_from_rfc3339("2024-01-02T03:04:05+02:00").unwrap();
        let cases: Vec<(Value, serde_json::Value)> = vec![
            (Value::Null, json!(null)),
            (Value::Bool(false), json!(false)),
            (
                Value::Int(9_007_199_254_740_993),
                json!(9_007_199_254_740_993_i64),
            ),
            (Value::Float(12345.67), json!(12345.67)),
            (Value::Float(f64::NAN), json!("NaN")),
            (dec("12345.67"), json!("12345.67")),
            (dec("100.50"), json!("100.50")),
            (
                Value::BigDecimal("123456789012345678901234567890.1".into()),
                json!("123456789012345678901234567890.1"),
            ),
            (
                Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef]),
                json!("\\xdeadbeef"),
            ),
            (
                Value::Date(NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()),
                json!("2024-01-02"),
            ),
            (
                Value::Time(NaiveTime::from_hms_micro_opt(3, 4, 5, 120_000).unwrap()),
                json!("03:04:05.120000"),
            ),
            (
                Value::Time(NaiveTime::from_hms_nano_opt(3, 4, 5, 1).unwrap()),
                json!("03:04:05.000000001"),
            ),
            (
                Value::Time(NaiveTime::from_hms_opt(3, 4, 5).unwrap()),
                json!("03:04:05"),
            ),
            (
                Value::Timestamp(ts("2024-01-02 03:04:05.123456")),
                json!("2024-01-02T03:04:05.123456"),
            ),
            (
                Value::TimestampTz(tstz),
                json!("2024-01-02T01:04:05.123456Z"),
            ),
            (
                Value::TimestampTz(plus2),
                json!("2024-01-02T03:04:05+02:00"),
            ),
            (
                Value::TimeTz(
                    NaiveTime::from_hms_opt(3, 4, 5).unwrap(),
                    FixedOffset::east_opt(7200).unwrap(),
                ),
                json!("03:04:05+02:00"),
            ),
            (Value::Json(json!({"a": [1]})), json!({"a": [1]})),
            (
                Value::Uuid(Uuid::nil()),
                json!("00000000-0000-0000-0000-000000000000"),
            ),
            (
                Value::Array(vec![Value::Int(1), Value::Null]),
                json!([1, null]),
            ),
            (
                Value::Map(vec![(Value::Int(1), Value::String("one".into()))]),
                json!([[1, "one"]]),
            ),
            (
                Value::Map(vec![(Value::String("k".into()), Value::String("v".into()))]),
                json!({"k": "v"}),
            ),
            (Value::Unavailable, json!(UNAVAILABLE_PLACEHOLDER)),
        ];
        for (value, expected) in cases {
            assert_eq!(serde_json::to_value(&value).unwrap(), expected, "{value:?}");
        }
    }

    #[test]
    fn row_json_keeps_order_and_skips_unavailable() {
        let row = Row::from_iter([
            ("id", Value::Int(1)),
            ("big_text", Value::Unavailable),
            ("counter", Value::Int(2)),
            ("note", Value::Null),
        ]);
        let text = serde_json::to_string(&row).unwrap();
        assert_eq!(text, r#"{"id":1,"counter":2,"note":null}"#);
        assert_eq!(row.unavailable_columns(), ["big_text"]);
    }

    #[test]
    fn row_accessors_and_changes() {
        let mut before = Row::from_iter([
            ("id", Value::Int(1)),
            ("name", Value::String("Alice".into())),
            ("active", Value::Bool(true)),
            ("big", Value::String("x".repeat(3))),
        ]);
        let after = Row::from_iter([
            ("id", Value::Int(1)),
            ("name", Value::String("Alice A.".into())),
            ("active", Value::Bool(false)),
            ("big", Value::Unavailable),
            ("phone", Value::Null),
        ]);
        assert_eq!(before.changed_columns(&after), ["name", "active", "phone"]);
        assert_eq!(before.get("name").and_then(Value::as_str), Some("Alice"));
        assert_eq!(before.get("nope"), None);
        assert_eq!(
            before.names().collect::<Vec<_>>(),
            ["id", "name", "active", "big"]
        );
        *before.get_mut("active").unwrap() = Value::Null;
        before.push("phone", Value::String("555".into()));
        before.push("id", Value::Int(7));
        assert_eq!(before.len(), 5);
        assert_eq!(before.get("id"), Some(&Value::Int(7)));
        assert_eq!(before.get("active"), Some(&Value::Null));
        assert_eq!(
            format!("{before:?}"),
            r#"{"id": Int(7), "name": String("Alice"), "active": Null, "big": String("xxx"), "phone": String("555")}"#
        );
        let pairs: Vec<_> = before.into_pairs().map(|(n, _)| n.to_string()).collect();
        assert_eq!(pairs, ["id", "name", "active", "big", "phone"]);
    }
}
