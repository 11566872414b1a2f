//! Warehouse column types, identifier quoting, table DDL and schema comparison for the sinks
//! (DESIGN.md, "Warehouse tables"; issues 7 and 8). Pure: no IO, no clock, no logging. It turns a
//! decoded [`TableSchema`] into warehouse types and statement text; running the statements and
//! reading `information_schema` belong to the sinks.
//!
//! # Type mapping
//!
//! [`WarehouseType::of`] maps a Connect column (type + logical name + parameters) to one
//! dialect-neutral [`WarehouseType`]; [`WarehouseType::sql`] spells it per [`Dialect`]:
//!
//! | Connect schema | [`WarehouseType`] | DuckDB | Snowflake |
//! |---|---|---|---|
//! | `boolean` | `Boolean` | `BOOLEAN` | `BOOLEAN` |
//! | `int8` / `int16` / `int32` / `int64` | `TinyInt` / `SmallInt` / `Integer` / `BigInt` | `TINYINT` / `SMALLINT` / `INTEGER` / `BIGINT` | `NUMBER(38,0)` |
//! | `float` / `double` (also `decimal.handling.mode=double`) | `Real` / `Double` | `REAL` / `DOUBLE` | `FLOAT` |
//! | `Decimal`, precision p ≤ 38 (`connect.decimal.precision`), scale s | `Decimal{p,s}` | `DECIMAL(p,s)` | `NUMBER(p,s)` |
//! | `Decimal`, p > 38 or s > 38 | `Text` | `VARCHAR` | `VARCHAR` |
//! | `VariableScaleDecimal` | `Text` | `VARCHAR` | `VARCHAR` |
//! | `string` (also `decimal.handling.mode=string`), `Enum`, `Xml`, other names on strings | `Text` | `VARCHAR` | `VARCHAR` |
//! | `EnumSet` | `List(Text)` | `VARCHAR[]` | `ARRAY` |
//! | `Date` (Debezium, Connect) | `Date` | `DATE` | `DATE` |
//! | `Time`, `MicroTime`, `NanoTime`, Connect `Time` | `Time` | `TIME` | `TIME` |
//! | `Timestamp`, `MicroTimestamp`, `NanoTimestamp`, Connect `Timestamp` | `Timestamp` | `TIMESTAMP` | `TIMESTAMP_NTZ` |
//! | `ZonedTimestamp` | `TimestampTz` | `TIMESTAMPTZ` | `TIMESTAMP_TZ` |
//! | `ZonedTime` | `TimeTz` | `TIMETZ` | `VARCHAR` |
//! | `Json` | `Json` | `JSON` | `VARIANT` |
//! | `Uuid` | `Uuid` | `UUID` | `VARCHAR` |
//! | `bytes`, `Bits` | `Blob` | `BLOB` | `BINARY` |
//! | `array` of T | `List(T)` | `T[]` | `ARRAY` |
//! | `map` K → V | `Map(K, V)` | `MAP(K, V)` | `VARIANT` |
//! | `struct` (geometry, ...) | `Struct(fields)` | `STRUCT("f" T, ...)` | `OBJECT` |
//!
//! Decisions:
//!
//! - **Exact decimals.** DuckDB's and Snowflake's fixed-point types stop at 38 digits, so a
//!   `Decimal` whose precision (or scale) exceeds 38, and every `VariableScaleDecimal` (Postgres
//!   `numeric` without a declared precision: each value carries its own scale), is stored as
//!   `VARCHAR` holding the exact decimal text the decoder produced (`12.340`, trailing zeros of
//!   the value's scale kept). `DECIMAL(38,s)` would round or reject such values, `DOUBLE` would
//!   round them; text never does, and `CAST(col AS DECIMAL(p,s))` reads it back. A `Decimal`
//!   without `connect.decimal.precision` becomes `DECIMAL(38,s)`: values that do not fit are
//!   rejected by the warehouse, never rounded (the scale is fixed by the schema). A negative
//!   scale (Postgres 15 `numeric(p,-k)`) becomes `DECIMAL(p+k,0)`, and a scale above the
//!   precision (`numeric(2,5)`) `DECIMAL(5,5)`.
//! - **Time precision.** Postgres times are microseconds; DuckDB `TIME`/`TIMESTAMP` are
//!   microseconds too, so `NanoTime`/`NanoTimestamp` (other connectors only) lose their last
//!   three digits in DuckDB. Snowflake's default precision is 9 (nanoseconds).
//! - **Snowflake has no zoned time**: `ZonedTime` is stored as its ISO-8601 text (offset kept).
//!   Snowflake has no UUID type either: `VARCHAR`.
//! - **`EnumSet`** is a list of labels, because that is what the decoder yields for it.
//! - **Unknown logical names** (`MicroDuration`, `Xml`, geometry) follow their Connect type, as
//!   the decoder does: a `MicroDuration` is a `BIGINT` of microseconds.
//! - **Strings are unbounded.** Debezium does not send `varchar(n)` lengths unless
//!   `column.propagate.source.type` is set, and a bounded warehouse column would have to follow
//!   every `ALTER COLUMN TYPE` of the source; [`WarehouseType::Varchar`] only appears when parsed
//!   from a warehouse.
//! - **No `NOT NULL`** anywhere: a source column dropped later must stay nullable in the
//!   warehouse (DESIGN.md), and the loader writes every metadata column on every row.
//!
//! # Identifiers
//!
//! Always quoted ([`quote_ident`]). DuckDB keeps the source name as is (DuckDB matches names
//! case-insensitively even when quoted). Snowflake **upper-cases ASCII letters** before quoting:
//! Postgres folds unquoted names to lower case and Snowflake to upper case, so `users.email`
//! becomes `"USERS"."EMAIL"` and a Snowflake user's `SELECT email FROM users` finds it. Keeping
//! the source case (`"users"`) would make every unquoted Snowflake query fail with "object does
//! not exist". The cost: two source names that differ only in case collide
//! ([`SchemaError::DuplicateColumn`]), as they would in DuckDB anyway. Only ASCII letters are
//! folded, because only they can appear in an unquoted Snowflake identifier.
//!
//! # Schema evolution
//!
//! [`compare`] checks a target table's current columns (types as reported by the warehouse,
//! parsed with [`WarehouseType::parse`]) against the source schema plus the metadata columns.
//! Both sides are first [normalised](WarehouseType::normalize) to what the dialect actually
//! stores (in Snowflake every integer is `NUMBER(38,0)`). Then, per column:
//!
//! - absent in the target → **added** (`ALTER TABLE … ADD COLUMN`);
//! - absent in the source (and not a metadata column) → **dropped in source**: kept, reported;
//! - target type holds every value of the source type → nothing to do (same type; a narrower
//!   integer; the same decimal scale with fewer digits; a shorter or unbounded varchar; `REAL`
//!   into `DOUBLE`; a list whose elements fit);
//! - source type holds every value of the target type and the dialect can alter the column in
//!   place → **widened** (`ALTER COLUMN … SET DATA TYPE`): `INTEGER` → `BIGINT`,
//!   `DECIMAL(10,2)` → `DECIMAL(12,2)`, `VARCHAR(20)` → `VARCHAR`. Snowflake only alters a
//!   `NUMBER`'s precision at the same scale and a `VARCHAR`'s length;
//! - anything else → **incompatible**: `VARCHAR` → `INTEGER`, a decimal scale change,
//!   `TIMESTAMPTZ` → `DATE`, `TIMESTAMP` ↔ `TIMESTAMPTZ`, struct fields changed, a type the
//!   parser does not know. The loader stops that table (DESIGN.md), never casts silently.

use std::fmt;

use super::event::{Column, ConnectSchema, ConnectType, LogicalType, TableSchema};

/// Largest precision of a fixed-point type in both DuckDB and Snowflake.
pub const MAX_DECIMAL_PRECISION: u8 = 38;

/// Snowflake's `VARCHAR` without a length is reported with this length (16 MB); any length from
/// here on counts as unbounded.
const SNOWFLAKE_UNBOUNDED_VARCHAR: u32 = 16_777_216;

/// A warehouse SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// DuckDB (embedded).
    DuckDb,
    /// Snowflake.
    Snowflake,
}

/// A warehouse column type, dialect-neutral; [`WarehouseType::sql`] spells it for a dialect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WarehouseType {
    /// `BOOLEAN`.
    Boolean,
    /// 8-bit integer (DuckDB `TINYINT`).
    TinyInt,
    /// 16-bit integer.
    SmallInt,
    /// 32-bit integer.
    Integer,
    /// 64-bit integer.
    BigInt,
    /// 32-bit float (DuckDB `REAL`, reported as `FLOAT`).
    Real,
    /// 64-bit float (Snowflake `FLOAT`).
    Double,
    /// Exact fixed-point number; `1 <= precision <= 38`, `scale <= precision`.
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// Unbounded text (`VARCHAR`).
    Text,
    /// Text of at most this many characters; only parsed from a warehouse.
    Varchar(u32),
    /// `DATE`.
    Date,
    /// Time of day without zone.
    Time,
    /// Time of day with offset (DuckDB `TIMETZ`; Snowflake has none: `VARCHAR`).
    TimeTz,
    /// Timestamp without zone (Snowflake `TIMESTAMP_NTZ`).
    Timestamp,
    /// Timestamp with zone (DuckDB `TIMESTAMPTZ`, Snowflake `TIMESTAMP_TZ`).
    TimestampTz,
    /// JSON document (DuckDB `JSON`, Snowflake `VARIANT`).
    Json,
    /// UUID (Snowflake: `VARCHAR`).
    Uuid,
    /// Bytes (DuckDB `BLOB`, Snowflake `BINARY`).
    Blob,
    /// A list of one element type (DuckDB `T[]`; Snowflake `ARRAY`, whose elements are
    /// `Variant`).
    List(Box<WarehouseType>),
    /// A map (DuckDB `MAP(K, V)`; Snowflake `VARIANT`).
    Map(Box<WarehouseType>, Box<WarehouseType>),
    /// A struct with named fields, in order (DuckDB `STRUCT(...)`; Snowflake `OBJECT`).
    Struct(Vec<(String, WarehouseType)>),
    /// Snowflake `VARIANT` (DuckDB: `JSON`).
    Variant,
    /// Snowflake `OBJECT` (DuckDB: `JSON`).
    Object,
    /// A type reported by the warehouse that cdcctl does not model, as written there
    /// (`HUGEINT`, `TIMESTAMP_LTZ`, `GEOGRAPHY`, ...). Only equal to itself.
    Other(String),
}

impl WarehouseType {
    /// The warehouse type of a decoded column (see the module table).
    pub fn of(column: &Column) -> Self {
        Self::of_schema(column.schema())
    }

    /// The warehouse type of a Connect schema (a column's, or an array's `items`).
    pub fn of_schema(schema: &ConnectSchema) -> Self {
        match schema.logical() {
            LogicalType::Decimal { scale, precision } => decimal_type(*precision, *scale),
            LogicalType::VariableScaleDecimal => Self::Text,
            LogicalType::Date => Self::Date,
            LogicalType::Time(_) => Self::Time,
            LogicalType::Timestamp(_) => Self::Timestamp,
            LogicalType::ZonedTimestamp => Self::TimestampTz,
            LogicalType::ZonedTime => Self::TimeTz,
            LogicalType::Json => Self::Json,
            LogicalType::Uuid => Self::Uuid,
            LogicalType::Enum => Self::Text,
            LogicalType::EnumSet => Self::List(Box::new(Self::Text)),
            LogicalType::Bits => Self::Blob,
            LogicalType::None | LogicalType::Other => Self::of_connect_type(schema),
        }
    }

    fn of_connect_type(schema: &ConnectSchema) -> Self {
        let nested = |s: Option<&ConnectSchema>| Box::new(s.map_or(Self::Text, Self::of_schema));
        match schema.connect_type() {
            ConnectType::Int8 => Self::TinyInt,
            ConnectType::Int16 => Self::SmallInt,
            ConnectType::Int32 => Self::Integer,
            ConnectType::Int64 => Self::BigInt,
            ConnectType::Float32 => Self::Real,
            ConnectType::Float64 => Self::Double,
            ConnectType::Boolean => Self::Boolean,
            ConnectType::String => Self::Text,
            ConnectType::Bytes => Self::Blob,
            ConnectType::Array => Self::List(nested(schema.items())),
            ConnectType::Map => Self::Map(nested(schema.map_keys()), nested(schema.map_values())),
            ConnectType::Struct => Self::Struct(
                schema
                    .fields()
                    .iter()
                    .map(|f| (f.name().to_owned(), Self::of(f)))
                    .collect(),
            ),
        }
    }

    /// The type as written in DDL for `dialect`.
    pub fn sql(&self, dialect: Dialect) -> String {
        match dialect {
            Dialect::DuckDb => self.duckdb_sql(),
            Dialect::Snowflake => self.snowflake_sql(),
        }
    }

    fn duckdb_sql(&self) -> String {
        match self {
            Self::Boolean => "BOOLEAN".into(),
            Self::TinyInt => "TINYINT".into(),
            Self::SmallInt => "SMALLINT".into(),
            Self::Integer => "INTEGER".into(),
            Self::BigInt => "BIGINT".into(),
            Self::Real => "REAL".into(),
            Self::Double => "DOUBLE".into(),
            Self::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            Self::Text => "VARCHAR".into(),
            Self::Varchar(n) => format!("VARCHAR({n})"),
            Self::Date => "DATE".into(),
            Self::Time => "TIME".into(),
            Self::TimeTz => "TIMETZ".into(),
            Self::Timestamp => "TIMESTAMP".into(),
            Self::TimestampTz => "TIMESTAMPTZ".into(),
            Self::Json | Self::Variant | Self::Object => "JSON".into(),
            Self::Uuid => "UUID".into(),
            Self::Blob => "BLOB".into(),
            Self::List(item) => format!("{}[]", item.duckdb_sql()),
            Self::Map(k, v) => format!("MAP({}, {})", k.duckdb_sql(), v.duckdb_sql()),
            Self::Struct(fields) => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(name, ty)| {
                        format!("{} {}", quote_ident(Dialect::DuckDb, name), ty.duckdb_sql())
                    })
                    .collect();
                format!("STRUCT({})", fields.join(", "))
            }
            Self::Other(text) => text.clone(),
        }
    }

    fn snowflake_sql(&self) -> String {
        match self {
            Self::Boolean => "BOOLEAN".into(),
            Self::TinyInt | Self::SmallInt | Self::Integer | Self::BigInt => {
                format!("NUMBER({MAX_DECIMAL_PRECISION},0)")
            }
            Self::Real | Self::Double => "FLOAT".into(),
            Self::Decimal { precision, scale } => format!("NUMBER({precision},{scale})"),
            Self::Text | Self::Uuid | Self::TimeTz => "VARCHAR".into(),
            Self::Varchar(n) if *n >= SNOWFLAKE_UNBOUNDED_VARCHAR => "VARCHAR".into(),
            Self::Varchar(n) => format!("VARCHAR({n})"),
            Self::Date => "DATE".into(),
            Self::Time => "TIME".into(),
            Self::Timestamp => "TIMESTAMP_NTZ".into(),
            Self::TimestampTz => "TIMESTAMP_TZ".into(),
            Self::Json | Self::Variant | Self::Map(..) => "VARIANT".into(),
            Self::Blob => "BINARY".into(),
            Self::List(_) => "ARRAY".into(),
            Self::Struct(_) | Self::Object => "OBJECT".into(),
            Self::Other(text) => text.clone(),
        }
    }

    /// The type `dialect` actually stores for this one, in the form [`WarehouseType::parse`]
    /// returns for its `information_schema` text: `parse(d, &t.sql(d)) == t.normalize(d)`.
    /// In Snowflake every integer is `Decimal{38,0}`, text-like types are `Text`, lists are
    /// `List(Variant)`; in DuckDB `Variant` and `Object` are `Json`.
    pub fn normalize(&self, dialect: Dialect) -> Self {
        match dialect {
            Dialect::DuckDb => match self {
                Self::Variant | Self::Object => Self::Json,
                Self::List(item) => Self::List(Box::new(item.normalize(dialect))),
                Self::Map(k, v) => Self::Map(
                    Box::new(k.normalize(dialect)),
                    Box::new(v.normalize(dialect)),
                ),
                Self::Struct(fields) => Self::Struct(
                    fields
                        .iter()
                        .map(|(n, t)| (n.clone(), t.normalize(dialect)))
                        .collect(),
                ),
                other => other.clone(),
            },
            Dialect::Snowflake => match self {
                Self::TinyInt | Self::SmallInt | Self::Integer | Self::BigInt => Self::Decimal {
                    precision: MAX_DECIMAL_PRECISION,
                    scale: 0,
                },
                Self::Real => Self::Double,
                Self::Uuid | Self::TimeTz => Self::Text,
                Self::Varchar(n) if *n >= SNOWFLAKE_UNBOUNDED_VARCHAR => Self::Text,
                Self::Json | Self::Map(..) => Self::Variant,
                Self::Struct(_) => Self::Object,
                Self::List(_) => Self::List(Box::new(Self::Variant)),
                other => other.clone(),
            },
        }
    }

    /// Parses a column type as the warehouse reports it (`information_schema.columns.data_type`,
    /// `DESCRIBE`): DuckDB `DECIMAL(12,2)`, `TIMESTAMP WITH TIME ZONE`, `INTEGER[]`,
    /// `STRUCT(x DOUBLE, y DOUBLE)`, `MAP(VARCHAR, INTEGER)`; Snowflake `NUMBER(12,2)`,
    /// `TIMESTAMP_TZ(9)`, `TEXT`, `VARCHAR(16777216)`, `ARRAY`. Case-insensitive. The result is
    /// normalised for the dialect; text it does not understand becomes [`WarehouseType::Other`]
    /// (which only matches itself, so a comparison reports it as incompatible).
    pub fn parse(dialect: Dialect, text: &str) -> Self {
        let mut parser = TypeParser {
            text,
            pos: 0,
            dialect,
        };
        match parser.parse_type() {
            Some(ty) if parser.at_end() => ty.normalize(dialect),
            _ => Self::Other(text.trim().to_owned()),
        }
    }
}

impl fmt::Display for WarehouseType {
    /// The DuckDB spelling (for messages; use [`WarehouseType::sql`] for statements).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.duckdb_sql())
    }
}

/// The type of a Connect `Decimal` (see the module doc, "Exact decimals").
fn decimal_type(precision: Option<u32>, scale: i32) -> WarehouseType {
    let (precision, scale) = match (precision.filter(|p| *p > 0), scale) {
        // numeric(p,-k): integers with up to p + k digits.
        (Some(p), s) if s < 0 => (u64::from(p) + u64::from(s.unsigned_abs()), 0),
        (Some(p), s) => (
            u64::from(p).max(u64::from(s.unsigned_abs())),
            s.unsigned_abs(),
        ),
        (None, s) if s < 0 => return WarehouseType::Text,
        (None, s) => (u64::from(MAX_DECIMAL_PRECISION), s.unsigned_abs()),
    };
    match (u8::try_from(precision), u8::try_from(scale)) {
        (Ok(precision), Ok(scale)) if scale <= precision && precision <= MAX_DECIMAL_PRECISION => {
            WarehouseType::Decimal { precision, scale }
        }
        _ => WarehouseType::Text,
    }
}

/// A small recursive-descent parser for warehouse type text.
struct TypeParser<'a> {
    text: &'a str,
    pos: usize,
    dialect: Dialect,
}

impl TypeParser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos == self.text.len()
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// An unquoted word (letters, digits, `_`), upper-cased.
    fn word(&mut self) -> Option<String> {
        self.skip_ws();
        let len = self
            .rest()
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return None;
        }
        let w = self.rest()[..len].to_ascii_uppercase();
        self.pos += len;
        Some(w)
    }

    /// A struct field name: a `"quoted"` identifier (`""` escapes a quote) or a bare word.
    fn field_name(&mut self) -> Option<String> {
        self.skip_ws();
        if !self.rest().starts_with('"') {
            let len = self
                .rest()
                .find(|c: char| c.is_whitespace() || c == '(' || c == ',' || c == ')')
                .unwrap_or(self.rest().len());
            let name = self.rest()[..len].to_owned();
            self.pos += len;
            return (!name.is_empty()).then_some(name);
        }
        self.pos += 1;
        let mut name = String::new();
        loop {
            let c = self.rest().chars().next()?;
            self.pos += c.len_utf8();
            if c == '"' {
                if self.rest().starts_with('"') {
                    self.pos += 1;
                    name.push('"');
                } else {
                    return Some(name);
                }
            } else {
                name.push(c);
            }
        }
    }

    fn number(&mut self) -> Option<u32> {
        self.skip_ws();
        let len = self
            .rest()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(self.rest().len());
        let n = self.rest()[..len].parse().ok()?;
        self.pos += len;
        Some(n)
    }

    /// `(n[, m])` after a type name, if present.
    fn args(&mut self) -> Option<Vec<u32>> {
        if !self.eat('(') {
            return Some(Vec::new());
        }
        let mut args = vec![self.number()?];
        while self.eat(',') {
            args.push(self.number()?);
        }
        self.eat(')').then_some(args)
    }

    fn parse_type(&mut self) -> Option<WarehouseType> {
        let mut ty = self.base_type()?;
        // DuckDB lists: `T[]`, nested `T[][]`. A fixed-size `T[3]` is not modelled.
        while self.eat('[') {
            if !self.eat(']') {
                return None;
            }
            ty = WarehouseType::List(Box::new(ty));
        }
        Some(ty)
    }

    fn base_type(&mut self) -> Option<WarehouseType> {
        use WarehouseType as W;
        let first = self.word()?;
        match first.as_str() {
            "STRUCT" | "ROW" if self.dialect == Dialect::DuckDb => {
                if !self.eat('(') {
                    return None;
                }
                let mut fields = Vec::new();
                loop {
                    let name = self.field_name()?;
                    fields.push((name, self.parse_type()?));
                    if !self.eat(',') {
                        break;
                    }
                }
                return self.eat(')').then_some(W::Struct(fields));
            }
            "MAP" if self.dialect == Dialect::DuckDb => {
                if !self.eat('(') {
                    return None;
                }
                let k = self.parse_type()?;
                if !self.eat(',') {
                    return None;
                }
                let v = self.parse_type()?;
                return self.eat(')').then_some(W::Map(Box::new(k), Box::new(v)));
            }
            "LIST" if self.dialect == Dialect::DuckDb && self.eat('(') => {
                let item = self.parse_type()?;
                return self.eat(')').then_some(W::List(Box::new(item)));
            }
            _ => {}
        }
        // Multi-word names: `TIMESTAMP WITH TIME ZONE`, `DOUBLE PRECISION`, ...
        let mut name = first;
        let mut args = self.args()?;
        loop {
            let save = self.pos;
            match self.word() {
                Some(w) if args.is_empty() || name.starts_with("TIME") => {
                    name.push(' ');
                    name.push_str(&w);
                    let more = self.args()?;
                    if !more.is_empty() {
                        args = more;
                    }
                }
                Some(_) => {
                    self.pos = save;
                    break;
                }
                None => break,
            }
        }
        let decimal = |args: &[u32], default: (u32, u32)| {
            let (p, s) = match args {
                [] => default,
                [p] => (*p, 0),
                [p, s] => (*p, *s),
                _ => return None,
            };
            let (p, s) = (u8::try_from(p).ok()?, u8::try_from(s).ok()?);
            ((1..=MAX_DECIMAL_PRECISION).contains(&p) && s <= p).then_some(W::Decimal {
                precision: p,
                scale: s,
            })
        };
        let varchar = |args: &[u32]| match args {
            [] => Some(W::Text),
            [n] => Some(W::Varchar(*n)),
            _ => None,
        };
        let plain = |ty: W| args.is_empty().then_some(ty);
        // Time types accept a fractional-seconds precision (`TIMESTAMP_TZ(9)`, `TIME(6)`).
        let timed = |ty: W| (args.len() <= 1).then_some(ty);
        match self.dialect {
            Dialect::DuckDb => match name.as_str() {
                "BOOLEAN" | "BOOL" | "LOGICAL" => plain(W::Boolean),
                "TINYINT" | "INT1" => plain(W::TinyInt),
                "SMALLINT" | "INT2" | "SHORT" => plain(W::SmallInt),
                "INTEGER" | "INT" | "INT4" | "SIGNED" => plain(W::Integer),
                "BIGINT" | "INT8" | "LONG" => plain(W::BigInt),
                "REAL" | "FLOAT" | "FLOAT4" => plain(W::Real),
                "DOUBLE" | "FLOAT8" | "DOUBLE PRECISION" => plain(W::Double),
                "DECIMAL" | "NUMERIC" => decimal(&args, (18, 3)),
                "VARCHAR" | "TEXT" | "STRING" | "CHAR" | "BPCHAR" | "CHARACTER VARYING" => {
                    varchar(&args)
                }
                "DATE" => plain(W::Date),
                "TIME" | "TIME WITHOUT TIME ZONE" => timed(W::Time),
                "TIMETZ" | "TIME WITH TIME ZONE" => timed(W::TimeTz),
                "TIMESTAMP" | "DATETIME" | "TIMESTAMP WITHOUT TIME ZONE" => timed(W::Timestamp),
                "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => timed(W::TimestampTz),
                "JSON" => plain(W::Json),
                "UUID" => plain(W::Uuid),
                "BLOB" | "BYTEA" | "BINARY" | "VARBINARY" => plain(W::Blob),
                _ => None,
            },
            Dialect::Snowflake => match name.as_str() {
                "BOOLEAN" => plain(W::Boolean),
                "NUMBER" | "DECIMAL" | "NUMERIC" => decimal(&args, (38, 0)),
                "INT" | "INTEGER" | "BIGINT" | "SMALLINT" | "TINYINT" | "BYTEINT" => {
                    plain(W::BigInt)
                }
                "FLOAT" | "FLOAT4" | "FLOAT8" | "DOUBLE" | "DOUBLE PRECISION" | "REAL" => {
                    plain(W::Double)
                }
                "VARCHAR" | "TEXT" | "STRING" | "CHAR" | "CHARACTER" | "NCHAR" | "NVARCHAR" => {
                    varchar(&args)
                }
                "DATE" => plain(W::Date),
                "TIME" => timed(W::Time),
                "TIMESTAMP_NTZ" | "DATETIME" | "TIMESTAMP" | "TIMESTAMPNTZ" => timed(W::Timestamp),
                "TIMESTAMP_TZ" | "TIMESTAMPTZ" => timed(W::TimestampTz),
                "VARIANT" => plain(W::Variant),
                "OBJECT" => plain(W::Object),
                "ARRAY" => plain(W::List(Box::new(W::Variant))),
                "BINARY" | "VARBINARY" => (args.len() <= 1).then_some(W::Blob),
                _ => None,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Identifiers

/// The name a source identifier gets in the warehouse, unquoted: as is for DuckDB, ASCII
/// letters upper-cased for Snowflake (module doc, "Identifiers").
pub fn warehouse_name(dialect: Dialect, name: &str) -> String {
    match dialect {
        Dialect::DuckDb => name.to_owned(),
        Dialect::Snowflake => name.to_ascii_uppercase(),
    }
}

/// A quoted identifier for `dialect`: `"name"` with `"` doubled (DuckDB), `"NAME"` likewise
/// (Snowflake, see [`warehouse_name`]). Names come from Postgres, which forbids NUL in them.
pub fn quote_ident(dialect: Dialect, name: &str) -> String {
    let name = warehouse_name(dialect, name);
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether two source names map to the same warehouse column: DuckDB and Snowflake (after
/// upper-casing) both compare ASCII letters without case.
fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether a warehouse-reported column name is the column for a source name.
fn is_column_for(dialect: Dialect, reported: &str, source: &str) -> bool {
    match dialect {
        Dialect::DuckDb => same_name(reported, source),
        // Quoted Snowflake names are case-sensitive: `"email"` is not the column `"EMAIL"`.
        Dialect::Snowflake => reported == warehouse_name(dialect, source),
    }
}

/// A target table name, optionally schema-qualified.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    /// The schema (`--target-schema`); `None` uses the connection's current schema.
    pub schema: Option<String>,
    /// The table.
    pub table: String,
}

impl TableName {
    /// A table name in the connection's current schema.
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            schema: None,
            table: table.into(),
        }
    }

    /// A schema-qualified table name.
    pub fn qualified(schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            schema: Some(schema.into()),
            table: table.into(),
        }
    }

    /// The same name with `suffix` appended to the table: `public.users` → `public.users__changes`.
    pub fn with_suffix(&self, suffix: &str) -> Self {
        Self {
            schema: self.schema.clone(),
            table: format!("{}{suffix}", self.table),
        }
    }

    /// The changes table of a table loaded with `--history`: `<table>__changes`.
    pub fn changes_table(&self) -> Self {
        self.with_suffix("__changes")
    }

    /// The quoted (and qualified) name for `dialect`: `"main"."users"`, `"PUBLIC"."USERS"`.
    pub fn sql(&self, dialect: Dialect) -> String {
        match &self.schema {
            Some(schema) => format!(
                "{}.{}",
                quote_ident(dialect, schema),
                quote_ident(dialect, &self.table)
            ),
            None => quote_ident(dialect, &self.table),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata columns and DDL

/// `_cdc_operation`: `c`, `r`, `u` or `d` of the event that wrote the row.
pub const CDC_OPERATION: &str = "_cdc_operation";
/// `_cdc_timestamp`: source commit time (`source.ts_ms`).
pub const CDC_TIMESTAMP: &str = "_cdc_timestamp";
/// `_cdc_source_lsn`: the event's `source.lsn`, guarding updates and deletes.
pub const CDC_SOURCE_LSN: &str = "_cdc_source_lsn";
/// `_cdc_processed_at`: warehouse commit time.
pub const CDC_PROCESSED_AT: &str = "_cdc_processed_at";
/// Lists the tables `load` keeps equal to a source table, as (schema, name) rows: those with
/// `_cdc_processed_at`, changes tables (`_cdc_seq`, `load --history`) excluded.
pub fn loaded_tables_sql(dialect: Dialect) -> String {
    let (current, processed, seq) = match dialect {
        Dialect::DuckDb => ("current_database()", CDC_PROCESSED_AT, CDC_SEQ.to_owned()),
        Dialect::Snowflake => (
            "CURRENT_DATABASE()",
            "_CDC_PROCESSED_AT",
            CDC_SEQ.to_ascii_uppercase(),
        ),
    };
    format!(
        "SELECT DISTINCT c.table_schema, c.table_name FROM information_schema.columns AS c \
         WHERE c.column_name = '{processed}' AND c.table_catalog = {current} AND NOT EXISTS \
         (SELECT 1 FROM information_schema.columns AS s WHERE s.table_catalog = c.table_catalog \
         AND s.table_schema = c.table_schema AND s.table_name = c.table_name \
         AND s.column_name = '{seq}') ORDER BY 1, 2"
    )
}

/// `_cdc_deleted`: true for a soft-deleted row (`--soft-delete` only).
pub const CDC_DELETED: &str = "_cdc_deleted";
/// `_cdc_seq`: the order in which rows were appended to a changes table (`load --history`).
pub const CDC_SEQ: &str = "_cdc_seq";

const METADATA_NAMES: [&str; 6] = [
    CDC_OPERATION,
    CDC_TIMESTAMP,
    CDC_SOURCE_LSN,
    CDC_PROCESSED_AT,
    CDC_DELETED,
    CDC_SEQ,
];

/// Whether `name` is one of the metadata column names (case-insensitively), with or without
/// soft delete.
pub fn is_metadata_column(name: &str) -> bool {
    METADATA_NAMES.iter().any(|m| same_name(m, name))
}

/// The metadata columns every target table gets (DESIGN.md, "Warehouse tables"), in table
/// order after the source columns, with their types normalised for `dialect` (so they compare
/// equal to parsed `information_schema` types); [`WarehouseType::sql`] spells them.
/// `_cdc_deleted` only with `soft_delete`.
///
/// | name | DuckDB | Snowflake |
/// |---|---|---|
/// | `_cdc_operation` | `VARCHAR` | `VARCHAR` |
/// | `_cdc_timestamp` | `TIMESTAMPTZ` | `TIMESTAMP_TZ` |
/// | `_cdc_source_lsn` | `BIGINT` | `NUMBER(38,0)` |
/// | `_cdc_processed_at` | `TIMESTAMPTZ` | `TIMESTAMP_TZ` |
/// | `_cdc_deleted` | `BOOLEAN` | `BOOLEAN` |
pub fn metadata_columns(dialect: Dialect, soft_delete: bool) -> Vec<(&'static str, WarehouseType)> {
    let mut columns = vec![
        (CDC_OPERATION, WarehouseType::Text),
        (CDC_TIMESTAMP, WarehouseType::TimestampTz),
        (CDC_SOURCE_LSN, WarehouseType::BigInt),
        (CDC_PROCESSED_AT, WarehouseType::TimestampTz),
    ];
    if soft_delete {
        columns.push((CDC_DELETED, WarehouseType::Boolean));
    }
    columns
        .into_iter()
        .map(|(name, ty)| (name, ty.normalize(dialect)))
        .collect()
}

/// How target tables are created and compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableOptions {
    /// `--soft-delete`: the table has `_cdc_deleted`.
    pub soft_delete: bool,
    /// DuckDB only: declare `PRIMARY KEY` on the key columns. Off by default: DuckDB's MERGE
    /// measured ~20% faster without the constraint (DESIGN.md, "Performance references"), and
    /// the loader's compaction already keeps one row per key. Snowflake does not enforce
    /// primary keys, so none is declared there.
    pub primary_key: bool,
    /// `--history`: every applied change is also appended to the table's changes table.
    pub history: bool,
    /// The table is a changes table (`<table>__changes`): one row per change, so no primary
    /// key, and `_cdc_seq` after the metadata columns.
    pub change_log: bool,
}

impl TableOptions {
    /// The options of the changes table of a table loaded with these options.
    pub fn change_log() -> Self {
        TableOptions {
            change_log: true,
            ..TableOptions::default()
        }
    }
}

/// A column of a target table: source name (quoted and, for Snowflake, upper-cased by
/// [`quote_ident`]) and warehouse type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarehouseColumn {
    /// The source column name (or a metadata column name).
    pub name: String,
    /// The type, normalised for the dialect.
    pub ty: WarehouseType,
}

/// Why a source table cannot be laid out in the warehouse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A source column has a metadata column's name.
    #[error("source column `{column}` clashes with the cdcctl metadata column of that name")]
    ReservedColumn {
        /// The source column.
        column: String,
    },
    /// Two source columns differ only in case, which the warehouse cannot tell apart.
    #[error("source columns `{first}` and `{second}` differ only in case")]
    DuplicateColumn {
        /// The first column, in table order.
        first: String,
        /// The second.
        second: String,
    },
    /// A key column is not a column of the row schema (e.g. a keyless table's pseudo key).
    #[error("key column `{column}` is not a column of the table")]
    UnknownKeyColumn {
        /// The key column.
        column: String,
    },
}

/// The full column list of a target table: the source columns in order, then
/// [`metadata_columns`]; types normalised for `dialect`. Fails on a source column named like a
/// metadata column or two source columns that differ only in case.
pub fn target_columns(
    dialect: Dialect,
    source: &TableSchema,
    opts: TableOptions,
) -> Result<Vec<WarehouseColumn>, SchemaError> {
    let mut columns: Vec<WarehouseColumn> = Vec::with_capacity(source.columns().len() + 5);
    for c in source.columns() {
        if is_metadata_column(c.name()) {
            return Err(SchemaError::ReservedColumn {
                column: c.name().to_owned(),
            });
        }
        if let Some(first) = columns.iter().find(|w| same_name(&w.name, c.name())) {
            return Err(SchemaError::DuplicateColumn {
                first: first.name.clone(),
                second: c.name().to_owned(),
            });
        }
        columns.push(WarehouseColumn {
            name: c.name().to_owned(),
            ty: WarehouseType::of(c).normalize(dialect),
        });
    }
    columns.extend(
        metadata_columns(dialect, opts.soft_delete)
            .into_iter()
            .map(|(name, ty)| WarehouseColumn {
                name: name.to_owned(),
                ty,
            }),
    );
    if opts.change_log {
        columns.push(WarehouseColumn {
            name: CDC_SEQ.to_owned(),
            ty: WarehouseType::BigInt.normalize(dialect),
        });
    }
    Ok(columns)
}

/// `CREATE TABLE IF NOT EXISTS` for `source` in `dialect`: the [`target_columns`], all
/// nullable, and with [`TableOptions::primary_key`] on DuckDB a `PRIMARY KEY` on the key
/// columns (none when the schema has no key).
pub fn create_table_sql(
    dialect: Dialect,
    table: &TableName,
    source: &TableSchema,
    opts: TableOptions,
) -> Result<String, SchemaError> {
    let columns = target_columns(dialect, source, opts)?;
    let mut lines: Vec<String> = columns
        .iter()
        .map(|c| {
            format!(
                "    {} {}",
                quote_ident(dialect, &c.name),
                c.ty.sql(dialect)
            )
        })
        .collect();
    if opts.primary_key
        && !opts.change_log
        && dialect == Dialect::DuckDb
        && !source.key_columns().is_empty()
    {
        let mut keys = Vec::with_capacity(source.key_columns().len());
        for k in source.key_columns() {
            if source.column(k).is_none() {
                return Err(SchemaError::UnknownKeyColumn {
                    column: k.to_string(),
                });
            }
            keys.push(quote_ident(dialect, k));
        }
        lines.push(format!("    PRIMARY KEY ({})", keys.join(", ")));
    }
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {} (\n{}\n)",
        table.sql(dialect),
        lines.join(",\n")
    ))
}

// ---------------------------------------------------------------------------------------------
// Comparison

/// A column whose type differs between the target table and the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeChange {
    /// The column, as the warehouse reports it.
    pub column: String,
    /// The target table's current type.
    pub from: WarehouseType,
    /// The type the source now needs.
    pub to: WarehouseType,
}

/// What it takes to make a target table fit the source schema (module doc, "Schema evolution").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaChange {
    /// Columns to add, in source order (source columns, then missing metadata columns).
    pub added: Vec<WarehouseColumn>,
    /// Columns whose type must be widened in place (`ALTER COLUMN … SET DATA TYPE`).
    pub widened: Vec<TypeChange>,
    /// Target columns the source no longer has, as reported: kept (nullable), reported.
    pub dropped_in_source: Vec<String>,
    /// Type changes that cannot be applied: the loader stops that table.
    pub incompatible: Vec<TypeChange>,
}

impl SchemaChange {
    /// True when the table needs no statement and nothing is to be reported.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.widened.is_empty()
            && self.dropped_in_source.is_empty()
            && self.incompatible.is_empty()
    }

    /// True when some change cannot be applied.
    pub fn is_incompatible(&self) -> bool {
        !self.incompatible.is_empty()
    }

    /// The statements to run before the batch that needs them: one `ADD COLUMN` per added
    /// column, then one `ALTER COLUMN … SET DATA TYPE` per widened column. Incompatible
    /// changes produce no statement.
    pub fn alter_statements(&self, dialect: Dialect, table: &TableName) -> Vec<String> {
        let table = table.sql(dialect);
        let added = self.added.iter().map(|c| {
            format!(
                "ALTER TABLE {table} ADD COLUMN {} {}",
                quote_ident(dialect, &c.name),
                c.ty.sql(dialect)
            )
        });
        // The column as reported is already the stored name: folding it again is a no-op.
        let widened = self.widened.iter().map(|c| {
            format!(
                "ALTER TABLE {table} ALTER COLUMN {} SET DATA TYPE {}",
                quote_ident(dialect, &c.column),
                c.to.sql(dialect)
            )
        });
        added.chain(widened).collect()
    }
}

/// Compares the target table's `current` columns (name and type as the warehouse reports them;
/// parse type text with [`WarehouseType::parse`]) with `source` plus the metadata columns.
/// Metadata columns the table has but `opts` does not need (`_cdc_deleted` without soft
/// delete) are left alone. Fails like [`target_columns`].
pub fn compare(
    dialect: Dialect,
    current: &[(String, WarehouseType)],
    source: &TableSchema,
    opts: TableOptions,
) -> Result<SchemaChange, SchemaError> {
    let wanted = target_columns(dialect, source, opts)?;
    let mut change = SchemaChange::default();
    for column in &wanted {
        let Some((reported, ty)) = current
            .iter()
            .find(|(name, _)| is_column_for(dialect, name, &column.name))
        else {
            change.added.push(column.clone());
            continue;
        };
        let from = ty.normalize(dialect);
        let to = &column.ty;
        let type_change = || TypeChange {
            column: reported.clone(),
            from: from.clone(),
            to: to.clone(),
        };
        if fits(to, &from) {
            continue;
        }
        if fits(&from, to) && alterable(dialect, &from, to) {
            change.widened.push(type_change());
        } else {
            change.incompatible.push(type_change());
        }
    }
    change.dropped_in_source = current
        .iter()
        .filter(|(name, _)| {
            !is_metadata_column(name)
                && !wanted.iter().any(|w| is_column_for(dialect, name, &w.name))
        })
        .map(|(name, _)| name.clone())
        .collect();
    Ok(change)
}

/// Decimal digits an integer type needs to hold all its values (and the most a `DECIMAL(p,0)`
/// may have to fit into it: one less).
fn int_digits(ty: &WarehouseType) -> Option<u8> {
    match ty {
        WarehouseType::TinyInt => Some(3),
        WarehouseType::SmallInt => Some(5),
        WarehouseType::Integer => Some(10),
        WarehouseType::BigInt => Some(19),
        _ => None,
    }
}

/// Whether every value of `source` can be stored in `target` without loss or reinterpretation
/// (both normalised for the same dialect).
fn fits(source: &WarehouseType, target: &WarehouseType) -> bool {
    use WarehouseType as W;
    if source == target {
        return true;
    }
    match (source, target) {
        (s, t) if int_digits(s).is_some() && int_digits(t).is_some() => {
            int_digits(s) <= int_digits(t)
        }
        (
            s,
            W::Decimal {
                precision,
                scale: 0,
            },
        ) if int_digits(s).is_some() => int_digits(s).is_some_and(|d| d <= *precision),
        (
            W::Decimal {
                precision,
                scale: 0,
            },
            t,
        ) if int_digits(t).is_some() => int_digits(t).is_some_and(|d| *precision < d),
        (
            W::Decimal {
                precision: p1,
                scale: s1,
            },
            W::Decimal {
                precision: p2,
                scale: s2,
            },
        ) => s1 == s2 && p1 <= p2,
        (W::Real, W::Double) => true,
        (W::Varchar(_), W::Text) => true,
        (W::Varchar(a), W::Varchar(b)) => a <= b,
        (W::List(a), W::List(b)) => fits(a, b),
        // A VARIANT holds any JSON value (a table made by hand, or an emulator reporting
        // ARRAY and OBJECT columns as VARIANT).
        (W::List(_) | W::Object | W::Struct(_) | W::Map(..) | W::Json, W::Variant) => true,
        (W::Map(k1, v1), W::Map(k2, v2)) => k1 == k2 && fits(v1, v2),
        _ => false,
    }
}

/// Whether `dialect` can change a column from `from` to the wider `to` in place.
fn alterable(dialect: Dialect, from: &WarehouseType, to: &WarehouseType) -> bool {
    use WarehouseType as W;
    match dialect {
        // DuckDB alters a column type through a cast, lossless for every pair `fits` allows.
        Dialect::DuckDb => true,
        // Snowflake: only a NUMBER's precision (same scale) or a VARCHAR's length.
        Dialect::Snowflake => matches!(
            (from, to),
            (W::Decimal { .. }, W::Decimal { .. }) | (W::Varchar(_), W::Varchar(_) | W::Text)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::testing::{decode_all, fixture};
    use serde_json::{Value as Json, json};
    use std::sync::Arc;

    use Dialect::{DuckDb, Snowflake};

    /// The table schema of the first change event of a kcat `-J` fixture, with its key.
    fn fixture_schema(text: &str) -> Arc<TableSchema> {
        decode_all(text)
            .iter()
            .find_map(|d| d.as_change().and_then(|c| c.schema.clone()))
            .expect("no change event with a schema in the fixture")
    }

    /// `(column, DuckDB type, Snowflake type)` for every column of a schema.
    fn mapped(schema: &TableSchema) -> Vec<(String, String, String)> {
        schema
            .columns()
            .iter()
            .map(|c| {
                let ty = WarehouseType::of(c);
                (c.name().to_owned(), ty.sql(DuckDb), ty.sql(Snowflake))
            })
            .collect()
    }

    fn expect(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        rows.iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect()
    }

    /// A table schema from a JSON struct schema and key column names.
    fn table(fields: Json, keys: &[&str]) -> TableSchema {
        let s = ConnectSchema::from_json(&json!({"type": "struct", "fields": fields})).unwrap();
        TableSchema::new(
            None,
            s.fields().to_vec(),
            keys.iter().map(|k| Arc::from(*k)).collect(),
        )
    }

    #[test]
    fn maps_every_column_of_all_types() {
        let schema = fixture_schema(fixture!("schemas-true/cdc.public.all_types.jsonl"));
        assert_eq!(
            mapped(&schema),
            expect(&[
                ("id", "INTEGER", "NUMBER(38,0)"),
                ("big", "BIGINT", "NUMBER(38,0)"),
                ("amount", "DECIMAL(12,2)", "NUMBER(12,2)"),
                ("note", "VARCHAR", "VARCHAR"),
                ("code", "VARCHAR", "VARCHAR"),
                ("flag", "BOOLEAN", "BOOLEAN"),
                ("ts", "TIMESTAMP", "TIMESTAMP_NTZ"),
                ("tstz", "TIMESTAMPTZ", "TIMESTAMP_TZ"),
                ("d", "DATE", "DATE"),
                ("doc", "JSON", "VARIANT"),
                ("uid", "UUID", "VARCHAR"),
                ("raw", "BLOB", "BINARY"),
                ("tags", "VARCHAR[]", "ARRAY"),
            ])
        );
        assert_eq!(schema.key_columns(), [Arc::from("id")]);
    }

    #[test]
    fn maps_every_column_of_users_orders_and_toast_demo() {
        let users = fixture_schema(fixture!("schemas-true/cdc.public.users.jsonl"));
        assert_eq!(
            mapped(&users),
            expect(&[
                ("id", "INTEGER", "NUMBER(38,0)"),
                ("email", "VARCHAR", "VARCHAR"),
                ("name", "VARCHAR", "VARCHAR"),
                ("active", "BOOLEAN", "BOOLEAN"),
                ("created_at", "TIMESTAMPTZ", "TIMESTAMP_TZ"),
            ])
        );
        let orders = fixture_schema(fixture!("schemas-true/cdc.public.orders.jsonl"));
        assert_eq!(
            mapped(&orders),
            expect(&[
                ("id", "BIGINT", "NUMBER(38,0)"),
                ("user_id", "INTEGER", "NUMBER(38,0)"),
                ("amount", "DECIMAL(12,2)", "NUMBER(12,2)"),
                ("status", "VARCHAR", "VARCHAR"),
                ("ordered_on", "DATE", "DATE"),
            ])
        );
        let toast = fixture_schema(fixture!("schemas-true/cdc.public.toast_demo.jsonl"));
        assert_eq!(
            mapped(&toast),
            expect(&[
                ("id", "INTEGER", "NUMBER(38,0)"),
                ("counter", "INTEGER", "NUMBER(38,0)"),
                ("big_text", "VARCHAR", "VARCHAR"),
            ])
        );
    }

    #[test]
    fn maps_every_column_of_the_exotic_fixture() {
        let schema = fixture_schema(fixture!("handmade/cdc.public.exotic.jsonl"));
        assert_eq!(
            mapped(&schema),
            expect(&[
                ("id", "INTEGER", "NUMBER(38,0)"),
                // No fixed scale: exact text (module doc, "Exact decimals").
                ("vnum", "VARCHAR", "VARCHAR"),
                // Precision 40 > 38: exact text.
                ("big_num", "VARCHAR", "VARCHAR"),
                ("t_ms", "TIME", "TIME"),
                ("t_us", "TIME", "TIME"),
                ("t_ns", "TIME", "TIME"),
                ("t_24", "TIME", "TIME"),
                ("c_date", "DATE", "DATE"),
                ("c_time", "TIME", "TIME"),
                ("c_ts", "TIMESTAMP", "TIMESTAMP_NTZ"),
                ("ts_ms", "TIMESTAMP", "TIMESTAMP_NTZ"),
                ("ts_ns", "TIMESTAMP", "TIMESTAMP_NTZ"),
                ("ztime", "TIMETZ", "VARCHAR"),
                ("ztime_z", "TIMETZ", "VARCHAR"),
                ("tstz_off", "TIMESTAMPTZ", "TIMESTAMP_TZ"),
                ("mood", "VARCHAR", "VARCHAR"),
                ("flags", "VARCHAR[]", "ARRAY"),
                ("bits", "BLOB", "BINARY"),
                // decimal.handling.mode=string / double.
                ("amount_str", "VARCHAR", "VARCHAR"),
                ("amount_dbl", "DOUBLE", "FLOAT"),
                ("real4", "REAL", "FLOAT"),
                ("small", "SMALLINT", "NUMBER(38,0)"),
                ("tiny", "TINYINT", "NUMBER(38,0)"),
                ("attrs", "MAP(VARCHAR, VARCHAR)", "VARIANT"),
                ("intmap", "MAP(INTEGER, VARCHAR)", "VARIANT"),
                (
                    "point",
                    "STRUCT(\"x\" DOUBLE, \"y\" DOUBLE, \"wkb\" BLOB, \"srid\" INTEGER)",
                    "OBJECT"
                ),
                ("int_arr", "INTEGER[]", "ARRAY"),
                ("nested", "BIGINT[][]", "ARRAY"),
                ("xml", "VARCHAR", "VARCHAR"),
                ("dur", "BIGINT", "NUMBER(38,0)"),
                ("raw", "BLOB", "BINARY"),
                ("doc", "JSON", "VARIANT"),
                ("tags", "VARCHAR[]", "ARRAY"),
                ("uid", "UUID", "VARCHAR"),
            ])
        );
    }

    #[test]
    fn decimal_parameters_edge_cases() {
        let cases = [
            (Some(12), 2, "DECIMAL(12,2)"),
            (Some(38), 0, "DECIMAL(38,0)"),
            (Some(38), 38, "DECIMAL(38,38)"),
            (Some(39), 2, "VARCHAR"),
            (None, 4, "DECIMAL(38,4)"),
            (None, 39, "VARCHAR"),
            (None, -2, "VARCHAR"),
            (Some(5), -2, "DECIMAL(7,0)"),
            (Some(37), -2, "VARCHAR"),
            (Some(2), 5, "DECIMAL(5,5)"),
            (Some(0), 3, "DECIMAL(38,3)"),
        ];
        for (precision, scale, want) in cases {
            assert_eq!(
                decimal_type(precision, scale).sql(DuckDb),
                want,
                "{precision:?} {scale}"
            );
        }
    }

    #[test]
    fn quotes_identifiers_per_dialect() {
        let cases = [
            ("users", "\"users\"", "\"USERS\""),
            ("OrderItems", "\"OrderItems\"", "\"ORDERITEMS\""),
            ("first name", "\"first name\"", "\"FIRST NAME\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\"", "\"SAY \"\"HI\"\"\""),
            ("\"", "\"\"\"\"", "\"\"\"\""),
            ("select", "\"select\"", "\"SELECT\""),
            ("café", "\"café\"", "\"CAFé\""),
        ];
        for (name, duck, snow) in cases {
            assert_eq!(quote_ident(DuckDb, name), duck);
            assert_eq!(quote_ident(Snowflake, name), snow);
        }
        assert_eq!(
            TableName::qualified("main", "all types").sql(DuckDb),
            "\"main\".\"all types\""
        );
        assert_eq!(
            TableName::qualified("public", "users").sql(Snowflake),
            "\"PUBLIC\".\"USERS\""
        );
        assert_eq!(TableName::new("t").sql(Snowflake), "\"T\"");
    }

    #[test]
    fn metadata_columns_per_dialect() {
        let spelled = |d: Dialect, soft: bool| -> Vec<(&str, String)> {
            metadata_columns(d, soft)
                .into_iter()
                .map(|(n, t)| (n, t.sql(d)))
                .collect()
        };
        assert_eq!(
            spelled(DuckDb, true),
            [
                ("_cdc_operation", "VARCHAR".to_owned()),
                ("_cdc_timestamp", "TIMESTAMPTZ".to_owned()),
                ("_cdc_source_lsn", "BIGINT".to_owned()),
                ("_cdc_processed_at", "TIMESTAMPTZ".to_owned()),
                ("_cdc_deleted", "BOOLEAN".to_owned()),
            ]
        );
        assert_eq!(
            spelled(Snowflake, false),
            [
                ("_cdc_operation", "VARCHAR".to_owned()),
                ("_cdc_timestamp", "TIMESTAMP_TZ".to_owned()),
                ("_cdc_source_lsn", "NUMBER(38,0)".to_owned()),
                ("_cdc_processed_at", "TIMESTAMP_TZ".to_owned()),
            ]
        );
        assert!(is_metadata_column("_CDC_DELETED"));
        assert!(!is_metadata_column("_cdc_other"));
    }

    #[test]
    fn create_table_ddl_duckdb() {
        let schema = fixture_schema(fixture!("schemas-true/cdc.public.users.jsonl"));
        let table = TableName::qualified("main", "users");
        let opts = TableOptions {
            soft_delete: true,
            primary_key: true,
            ..TableOptions::default()
        };
        assert_eq!(
            create_table_sql(DuckDb, &table, &schema, opts).unwrap(),
            "CREATE TABLE IF NOT EXISTS \"main\".\"users\" (
    \"id\" INTEGER,
    \"email\" VARCHAR,
    \"name\" VARCHAR,
    \"active\" BOOLEAN,
    \"created_at\" TIMESTAMPTZ,
    \"_cdc_operation\" VARCHAR,
    \"_cdc_timestamp\" TIMESTAMPTZ,
    \"_cdc_source_lsn\" BIGINT,
    \"_cdc_processed_at\" TIMESTAMPTZ,
    \"_cdc_deleted\" BOOLEAN,
    PRIMARY KEY (\"id\")
)"
        );
        let plain = create_table_sql(DuckDb, &table, &schema, TableOptions::default()).unwrap();
        assert!(!plain.contains("PRIMARY KEY"), "{plain}");
        assert!(!plain.contains("_cdc_deleted"), "{plain}");
    }

    #[test]
    fn create_table_ddl_snowflake() {
        let schema = fixture_schema(fixture!("schemas-true/cdc.public.all_types.jsonl"));
        let opts = TableOptions {
            soft_delete: false,
            primary_key: true,
            ..TableOptions::default()
        };
        assert_eq!(
            create_table_sql(
                Snowflake,
                &TableName::qualified("public", "all_types"),
                &schema,
                opts
            )
            .unwrap(),
            "CREATE TABLE IF NOT EXISTS \"PUBLIC\".\"ALL_TYPES\" (
    \"ID\" NUMBER(38,0),
    \"BIG\" NUMBER(38,0),
    \"AMOUNT\" NUMBER(12,2),
    \"NOTE\" VARCHAR,
    \"CODE\" VARCHAR,
    \"FLAG\" BOOLEAN,
    \"TS\" TIMESTAMP_NTZ,
    \"TSTZ\" TIMESTAMP_TZ,
    \"D\" DATE,
    \"DOC\" VARIANT,
    \"UID\" VARCHAR,
    \"RAW\" BINARY,
    \"TAGS\" ARRAY,
    \"_CDC_OPERATION\" VARCHAR,
    \"_CDC_TIMESTAMP\" TIMESTAMP_TZ,
    \"_CDC_SOURCE_LSN\" NUMBER(38,0),
    \"_CDC_PROCESSED_AT\" TIMESTAMP_TZ
)"
        );
    }

    #[test]
    fn create_table_rejects_clashing_names() {
        let t = TableName::new("t");
        let clash = table(
            json!([
                {"type": "int32", "field": "id"},
                {"type": "string", "field": "_CDC_Operation"}
            ]),
            &["id"],
        );
        assert_eq!(
            create_table_sql(DuckDb, &t, &clash, TableOptions::default()),
            Err(SchemaError::ReservedColumn {
                column: "_CDC_Operation".into()
            })
        );
        let dup = table(
            json!([{"type": "int32", "field": "id"}, {"type": "string", "field": "ID"}]),
            &["id"],
        );
        assert_eq!(
            create_table_sql(Snowflake, &t, &dup, TableOptions::default()),
            Err(SchemaError::DuplicateColumn {
                first: "id".into(),
                second: "ID".into()
            })
        );
        let keyless = table(json!([{"type": "int32", "field": "id"}]), &["key"]);
        let opts = TableOptions {
            primary_key: true,
            ..TableOptions::default()
        };
        assert_eq!(
            create_table_sql(DuckDb, &t, &keyless, opts),
            Err(SchemaError::UnknownKeyColumn {
                column: "key".into()
            })
        );
    }

    #[test]
    fn parses_information_schema_type_text() {
        use WarehouseType as W;
        let duck = [
            ("INTEGER", W::Integer),
            ("int4", W::Integer),
            ("BIGINT", W::BigInt),
            ("SMALLINT", W::SmallInt),
            ("TINYINT", W::TinyInt),
            ("FLOAT", W::Real),
            ("DOUBLE", W::Double),
            (
                "DECIMAL(12,2)",
                W::Decimal {
                    precision: 12,
                    scale: 2,
                },
            ),
            (
                "DECIMAL",
                W::Decimal {
                    precision: 18,
                    scale: 3,
                },
            ),
            ("VARCHAR", W::Text),
            ("VARCHAR(20)", W::Varchar(20)),
            ("TIMESTAMP WITH TIME ZONE", W::TimestampTz),
            ("timestamptz", W::TimestampTz),
            ("TIMESTAMP", W::Timestamp),
            ("TIME WITH TIME ZONE", W::TimeTz),
            ("TIME", W::Time),
            ("DATE", W::Date),
            ("JSON", W::Json),
            ("UUID", W::Uuid),
            ("BLOB", W::Blob),
            ("BOOLEAN", W::Boolean),
            ("INTEGER[]", W::List(Box::new(W::Integer))),
            (
                "BIGINT[][]",
                W::List(Box::new(W::List(Box::new(W::BigInt)))),
            ),
            (
                "MAP(VARCHAR, INTEGER)",
                W::Map(Box::new(W::Text), Box::new(W::Integer)),
            ),
            (
                "STRUCT(x DOUBLE, \"a \"\"b\"\"\" VARCHAR[])",
                W::Struct(vec![
                    ("x".into(), W::Double),
                    ("a \"b\"".into(), W::List(Box::new(W::Text))),
                ]),
            ),
            ("HUGEINT", W::Other("HUGEINT".into())),
            ("INTEGER[3]", W::Other("INTEGER[3]".into())),
            ("DECIMAL(12,", W::Other("DECIMAL(12,".into())),
            ("DECIMAL(40,2)", W::Other("DECIMAL(40,2)".into())),
        ];
        for (text, want) in duck {
            assert_eq!(WarehouseType::parse(DuckDb, text), want, "{text}");
        }
        let number = |precision, scale| W::Decimal { precision, scale };
        let snow = [
            ("NUMBER(12,2)", number(12, 2)),
            ("NUMBER(38,0)", number(38, 0)),
            ("NUMBER", number(38, 0)),
            ("INTEGER", number(38, 0)),
            ("DECIMAL(10)", number(10, 0)),
            ("TIMESTAMP_TZ(9)", W::TimestampTz),
            ("TIMESTAMP_NTZ(9)", W::Timestamp),
            ("TIMESTAMP_LTZ(9)", W::Other("TIMESTAMP_LTZ(9)".into())),
            ("TEXT", W::Text),
            ("VARCHAR(16777216)", W::Text),
            ("VARCHAR(100)", W::Varchar(100)),
            ("FLOAT", W::Double),
            ("BINARY(8388608)", W::Blob),
            ("VARIANT", W::Variant),
            ("OBJECT", W::Object),
            ("ARRAY", W::List(Box::new(W::Variant))),
            ("TIME(9)", W::Time),
            ("DATE", W::Date),
            ("BOOLEAN", W::Boolean),
            ("GEOGRAPHY", W::Other("GEOGRAPHY".into())),
        ];
        for (text, want) in snow {
            assert_eq!(WarehouseType::parse(Snowflake, text), want, "{text}");
        }
    }

    #[test]
    fn parse_reads_back_what_sql_writes() {
        let schema = fixture_schema(fixture!("handmade/cdc.public.exotic.jsonl"));
        let all = fixture_schema(fixture!("schemas-true/cdc.public.all_types.jsonl"));
        for c in schema.columns().iter().chain(all.columns()) {
            let ty = WarehouseType::of(c);
            for d in [DuckDb, Snowflake] {
                assert_eq!(
                    WarehouseType::parse(d, &ty.sql(d)),
                    ty.normalize(d),
                    "{} in {d:?}",
                    c.name()
                );
            }
        }
    }

    /// The current columns of a table created from `source` in `dialect`, as reported back.
    fn reported(
        dialect: Dialect,
        source: &TableSchema,
        opts: TableOptions,
    ) -> Vec<(String, WarehouseType)> {
        target_columns(dialect, source, opts)
            .unwrap()
            .into_iter()
            .map(|c| {
                let text = c.ty.sql(dialect);
                (
                    warehouse_name(dialect, &c.name),
                    WarehouseType::parse(dialect, &text),
                )
            })
            .collect()
    }

    #[test]
    fn a_table_compares_equal_to_its_own_source() {
        let opts = TableOptions {
            soft_delete: true,
            primary_key: false,
            ..TableOptions::default()
        };
        for text in [
            fixture!("schemas-true/cdc.public.all_types.jsonl"),
            fixture!("handmade/cdc.public.exotic.jsonl"),
        ] {
            let schema = fixture_schema(text);
            for d in [DuckDb, Snowflake] {
                let change = compare(d, &reported(d, &schema, opts), &schema, opts).unwrap();
                assert!(change.is_empty(), "{d:?}: {change:?}");
            }
        }
    }

    #[test]
    fn added_and_dropped_columns() {
        let before = fixture_schema(fixture!("schemas-true/cdc.public.users.jsonl"));
        let after = fixture_schema(fixture!("handmade/cdc.public.users.schema-change.jsonl"));
        let opts = TableOptions::default();
        for d in [DuckDb, Snowflake] {
            let current = reported(d, &before, opts);
            let change = compare(d, &current, &after, opts).unwrap();
            assert_eq!(
                change.added,
                [WarehouseColumn {
                    name: "phone".into(),
                    ty: WarehouseType::Text
                }]
            );
            assert!(change.dropped_in_source.is_empty() && !change.is_incompatible());
            // The other way round: the warehouse keeps the column the source dropped.
            let current = reported(d, &after, opts);
            let change = compare(d, &current, &before, opts).unwrap();
            let phone = warehouse_name(d, "phone");
            assert_eq!(change.dropped_in_source, [phone]);
            assert!(change.added.is_empty());
        }
        let current = reported(DuckDb, &before, opts);
        let change = compare(DuckDb, &current, &after, opts).unwrap();
        assert_eq!(
            change.alter_statements(DuckDb, &TableName::qualified("main", "users")),
            ["ALTER TABLE \"main\".\"users\" ADD COLUMN \"phone\" VARCHAR"]
        );
        let current = reported(Snowflake, &before, opts);
        let change = compare(Snowflake, &current, &after, opts).unwrap();
        assert_eq!(
            change.alter_statements(Snowflake, &TableName::new("users")),
            ["ALTER TABLE \"USERS\" ADD COLUMN \"PHONE\" VARCHAR"]
        );
    }

    #[test]
    fn turning_on_soft_delete_adds_the_flag_and_turning_it_off_keeps_it() {
        let schema = fixture_schema(fixture!("schemas-true/cdc.public.toast_demo.jsonl"));
        let off = TableOptions::default();
        let on = TableOptions {
            soft_delete: true,
            ..off
        };
        let change = compare(DuckDb, &reported(DuckDb, &schema, off), &schema, on).unwrap();
        assert_eq!(
            change.alter_statements(DuckDb, &TableName::new("toast_demo")),
            ["ALTER TABLE \"toast_demo\" ADD COLUMN \"_cdc_deleted\" BOOLEAN"]
        );
        let change = compare(Snowflake, &reported(Snowflake, &schema, on), &schema, off).unwrap();
        assert!(change.is_empty(), "{change:?}");
    }

    /// Compares a one-column target of type `target` (text as reported) with a one-column
    /// source of Connect schema `source`.
    fn verdict(d: Dialect, target: &str, source: Json) -> SchemaChange {
        let mut field = source;
        field["field"] = json!("c");
        let schema = table(json!([field]), &[]);
        let mut current = reported(d, &table(json!([]), &[]), TableOptions::default());
        current.push((warehouse_name(d, "c"), WarehouseType::parse(d, target)));
        compare(d, &current, &schema, TableOptions::default()).unwrap()
    }

    fn decimal(p: u32, s: u32) -> Json {
        json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
               "parameters": {"scale": s.to_string(), "connect.decimal.precision": p.to_string()}})
    }

    #[test]
    fn compatible_types_need_nothing() {
        let cases = [
            (DuckDb, "BIGINT", json!({"type": "int32"})),
            (DuckDb, "DECIMAL(12,0)", json!({"type": "int32"})),
            (DuckDb, "DECIMAL(14,2)", decimal(12, 2)),
            (DuckDb, "DOUBLE", json!({"type": "float"})),
            (
                DuckDb,
                "BIGINT[]",
                json!({"type": "array", "items": {"type": "int32"}}),
            ),
            (DuckDb, "VARCHAR", json!({"type": "string"})),
            (Snowflake, "NUMBER(38,0)", json!({"type": "int16"})),
            (Snowflake, "NUMBER(14,2)", decimal(12, 2)),
            (
                Snowflake,
                "TEXT",
                json!({"type": "string", "name": "io.debezium.data.Uuid"}),
            ),
            (
                Snowflake,
                "ARRAY",
                json!({"type": "array", "items": {"type": "int32"}}),
            ),
        ];
        for (d, target, source) in cases {
            let change = verdict(d, target, source.clone());
            assert!(change.is_empty(), "{d:?} {target} <- {source}: {change:?}");
        }
    }

    #[test]
    fn widening_is_allowed_and_altered_in_place() {
        let cases = [
            (DuckDb, "INTEGER", json!({"type": "int64"}), "BIGINT"),
            (DuckDb, "SMALLINT", json!({"type": "int32"}), "INTEGER"),
            (DuckDb, "DECIMAL(10,2)", decimal(12, 2), "DECIMAL(12,2)"),
            (DuckDb, "DECIMAL(9,0)", json!({"type": "int64"}), "BIGINT"),
            (DuckDb, "VARCHAR(20)", json!({"type": "string"}), "VARCHAR"),
            (DuckDb, "FLOAT", json!({"type": "double"}), "DOUBLE"),
            (
                DuckDb,
                "INTEGER[]",
                json!({"type": "array", "items": {"type": "int64"}}),
                "BIGINT[]",
            ),
            (Snowflake, "NUMBER(10,2)", decimal(12, 2), "NUMBER(12,2)"),
            (
                Snowflake,
                "NUMBER(9,0)",
                json!({"type": "int64"}),
                "NUMBER(38,0)",
            ),
            (
                Snowflake,
                "VARCHAR(20)",
                json!({"type": "string"}),
                "VARCHAR",
            ),
        ];
        for (d, target, source, to) in cases {
            let change = verdict(d, target, source.clone());
            assert_eq!(
                change.widened.len(),
                1,
                "{d:?} {target} <- {source}: {change:?}"
            );
            assert!(change.added.is_empty() && change.incompatible.is_empty());
            assert_eq!(
                change.alter_statements(d, &TableName::new("t")),
                [format!(
                    "ALTER TABLE {} ALTER COLUMN {} SET DATA TYPE {to}",
                    quote_ident(d, "t"),
                    quote_ident(d, "c")
                )]
            );
        }
    }

    #[test]
    fn incompatible_changes_are_reported_not_applied() {
        let tstz = json!({"type": "string", "name": "io.debezium.time.ZonedTimestamp"});
        let ts = json!({"type": "int64", "name": "io.debezium.time.MicroTimestamp"});
        let date = json!({"type": "int32", "name": "io.debezium.time.Date"});
        let cases = [
            (DuckDb, "VARCHAR", json!({"type": "int32"})),
            (DuckDb, "INTEGER", json!({"type": "string"})),
            (DuckDb, "DECIMAL(12,2)", decimal(12, 3)),
            (DuckDb, "DECIMAL(12,2)", json!({"type": "int32"})),
            (DuckDb, "TIMESTAMP WITH TIME ZONE", date.clone()),
            (DuckDb, "TIMESTAMP", tstz.clone()),
            (DuckDb, "TIMESTAMP WITH TIME ZONE", ts.clone()),
            (DuckDb, "INTEGER", json!({"type": "double"})),
            (DuckDb, "HUGEINT", json!({"type": "int64"})),
            (
                DuckDb,
                "STRUCT(x DOUBLE)",
                json!({"type": "struct", "fields": [{"type": "double", "field": "x"},
                                                    {"type": "double", "field": "y"}]}),
            ),
            (Snowflake, "NUMBER(12,2)", decimal(12, 3)),
            (Snowflake, "TEXT", json!({"type": "int64"})),
            (Snowflake, "TIMESTAMP_TZ(9)", date),
            (Snowflake, "TIMESTAMP_NTZ(9)", tstz),
            (Snowflake, "VARIANT", json!({"type": "string"})),
            // A float into an integer column.
            (Snowflake, "NUMBER(38,0)", json!({"type": "double"})),
        ];
        for (d, target, source) in cases {
            let change = verdict(d, target, source.clone());
            assert_eq!(
                change.incompatible.len(),
                1,
                "{d:?} {target} <- {source}: {change:?}"
            );
            assert!(change.widened.is_empty());
            assert!(change.alter_statements(d, &TableName::new("t")).is_empty());
            let c = &change.incompatible[0];
            assert_eq!(c.column, warehouse_name(d, "c"));
            assert_eq!(c.from, WarehouseType::parse(d, target));
        }
    }

    #[test]
    fn snowflake_matches_names_exactly_after_folding() {
        let schema = table(json!([{"type": "int32", "field": "id"}]), &["id"]);
        let mut current = reported(Snowflake, &table(json!([]), &[]), TableOptions::default());
        // A column someone created quoted in lower case is not cdcctl's `"ID"`.
        current.push(("id".into(), WarehouseType::parse(Snowflake, "NUMBER(38,0)")));
        let change = compare(Snowflake, &current, &schema, TableOptions::default()).unwrap();
        assert_eq!(change.added.len(), 1);
        assert_eq!(change.dropped_in_source, ["id"]);
        // DuckDB names match without case.
        let mut current = reported(DuckDb, &table(json!([]), &[]), TableOptions::default());
        current.push(("ID".into(), WarehouseType::Integer));
        let change = compare(DuckDb, &current, &schema, TableOptions::default()).unwrap();
        assert!(change.is_empty(), "{change:?}");
    }
}
