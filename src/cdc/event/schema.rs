//! The Kafka Connect schema carried by schema-enabled messages ([`ConnectSchema`]), the table
//! shape the sinks need ([`TableSchema`]), and the per-topic decode plans built from them.
//!
//! A schema is parsed once per distinct schema text (the decoder caches it per topic); decoding
//! then follows the parsed tree, choosing each conversion from the schema's logical `name`.

use std::sync::Arc;

use serde_json::Value as Json;

use super::error::{DecodeError, DecodeErrorKind};

/// A Kafka Connect schema type, as spelled in the JSON converter's `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectType {
    /// `int8`.
    Int8,
    /// `int16`.
    Int16,
    /// `int32`.
    Int32,
    /// `int64`.
    Int64,
    /// `float` (32-bit).
    Float32,
    /// `double` (64-bit).
    Float64,
    /// `boolean`.
    Boolean,
    /// `string`.
    String,
    /// `bytes` (base64 in JSON).
    Bytes,
    /// `array` with an `items` schema.
    Array,
    /// `map` with `keys` and `values` schemas.
    Map,
    /// `struct` with ordered `fields`.
    Struct,
}

impl ConnectType {
    /// Parses a JSON converter type name (`float32`/`float64` are accepted as aliases).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "int8" => Self::Int8,
            "int16" => Self::Int16,
            "int32" => Self::Int32,
            "int64" => Self::Int64,
            "float" | "float32" => Self::Float32,
            "double" | "float64" => Self::Float64,
            "boolean" => Self::Boolean,
            "string" => Self::String,
            "bytes" => Self::Bytes,
            "array" => Self::Array,
            "map" => Self::Map,
            "struct" => Self::Struct,
            _ => return None,
        })
    }

    /// The JSON converter's name for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Int8 => "int8",
            Self::Int16 => "int16",
            Self::Int32 => "int32",
            Self::Int64 => "int64",
            Self::Float32 => "float",
            Self::Float64 => "double",
            Self::Boolean => "boolean",
            Self::String => "string",
            Self::Bytes => "bytes",
            Self::Array => "array",
            Self::Map => "map",
            Self::Struct => "struct",
        }
    }

    /// True for the four integer types.
    pub fn is_integer(self) -> bool {
        matches!(self, Self::Int8 | Self::Int16 | Self::Int32 | Self::Int64)
    }
}

/// Unit of an integer time value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
    /// Nanoseconds.
    Nanos,
}

impl TimeUnit {
    /// How many of this unit make one second.
    pub fn per_second(self) -> i64 {
        match self {
            Self::Millis => 1_000,
            Self::Micros => 1_000_000,
            Self::Nanos => 1_000_000_000,
        }
    }
}

/// The meaning a schema's logical `name` gives its Connect type; decoding is chosen from this,
/// never from the JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LogicalType {
    /// No logical name: the plain Connect type (also `decimal.handling.mode=string|double`).
    None,
    /// `org.apache.kafka.connect.data.Decimal` on bytes: base64 of the big-endian two's-complement
    /// unscaled value; `scale` from the parameters, `precision` from `connect.decimal.precision`.
    Decimal {
        /// Digits after the decimal point (may be negative).
        scale: i32,
        /// Total significant digits, when Debezium knows them.
        precision: Option<u32>,
    },
    /// `io.debezium.data.VariableScaleDecimal`: struct `{scale: int32, value: bytes}`.
    VariableScaleDecimal,
    /// `io.debezium.time.Date` or `org.apache.kafka.connect.data.Date`: int32 days since epoch.
    Date,
    /// Time of day as an integer since midnight: `org.apache.kafka.connect.data.Time` and
    /// `io.debezium.time.Time` (ms, int32), `MicroTime` (µs), `NanoTime` (ns).
    Time(TimeUnit),
    /// Timestamp without zone as an integer since epoch: `org.apache.kafka.connect.data.Timestamp`
    /// and `io.debezium.time.Timestamp` (ms), `MicroTimestamp` (µs), `NanoTimestamp` (ns).
    Timestamp(TimeUnit),
    /// `io.debezium.time.ZonedTimestamp`: ISO-8601 string with offset.
    ZonedTimestamp,
    /// `io.debezium.time.ZonedTime`: ISO-8601 time with offset.
    ZonedTime,
    /// `io.debezium.data.Json`: JSON text.
    Json,
    /// `io.debezium.data.Uuid`: hyphenated UUID text.
    Uuid,
    /// `io.debezium.data.Enum`: one label; the labels are in the `allowed` parameter.
    Enum,
    /// `io.debezium.data.EnumSet`: comma-separated labels.
    EnumSet,
    /// `io.debezium.data.Bits`: bit string as bytes (`length` parameter).
    Bits,
    /// A logical name cdcctl does not interpret (`io.debezium.time.MicroDuration`,
    /// `io.debezium.data.Xml`, geometry, ...): decoded as its Connect type.
    Other,
}

/// A Kafka Connect schema, parsed from the `schema` part of a schema-enabled message.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectSchema {
    connect_type: ConnectType,
    name: Option<String>,
    version: Option<i32>,
    optional: bool,
    parameters: Vec<(String, String)>,
    default: Option<Json>,
    doc: Option<String>,
    logical: LogicalType,
    items: Option<Box<ConnectSchema>>,
    keys: Option<Box<ConnectSchema>>,
    values: Option<Box<ConnectSchema>>,
    fields: Vec<Column>,
    /// Field names of a struct, shared by every [`super::Row`] decoded with this schema.
    names: Arc<[Arc<str>]>,
}

/// A named field of a Connect struct; at the top level of a row schema, a table column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    name: Arc<str>,
    /// The name as a JSON string, quotes included (as serde_json writes it).
    json_name: Box<str>,
    schema: ConnectSchema,
}

/// Deepest schema nesting accepted (serde_json stops JSON nesting at 128 anyway).
const MAX_SCHEMA_DEPTH: usize = 128;

impl ConnectSchema {
    /// Parses a schema from its JSON form (the value of a message's `schema` field).
    /// Errors are [`DecodeErrorKind::InvalidSchema`] with paths under `schema`.
    pub fn from_json(json: &Json) -> Result<Self, DecodeError> {
        Self::parse(json, "schema", 0)
    }

    fn parse(json: &Json, path: &str, depth: usize) -> Result<Self, DecodeError> {
        let bad = |reason: String| DecodeError::new(DecodeErrorKind::InvalidSchema, path, reason);
        if depth > MAX_SCHEMA_DEPTH {
            return Err(bad("schema nests too deeply".into()));
        }
        let Json::Object(obj) = json else {
            return Err(bad(format!(
                "expected a schema object, found {}",
                json_kind(json)
            )));
        };
        let type_name = match obj.get("type") {
            Some(Json::String(t)) => t.as_str(),
            Some(other) => {
                return Err(bad(format!("`type` is {}, not a string", json_kind(other))));
            }
            None => return Err(bad("schema has no `type`".into())),
        };
        let connect_type = ConnectType::from_name(type_name)
            .ok_or_else(|| bad(format!("unknown Connect type `{type_name}`")))?;
        let name = match obj.get("name") {
            None | Some(Json::Null) => None,
            Some(Json::String(n)) => Some(n.clone()),
            Some(other) => {
                return Err(bad(format!("`name` is {}, not a string", json_kind(other))));
            }
        };
        let version = match obj.get("version") {
            None | Some(Json::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .and_then(|v| i32::try_from(v).ok())
                    .ok_or_else(|| bad("`version` is not an int32".into()))?,
            ),
        };
        let optional = match obj.get("optional") {
            None | Some(Json::Null) => false,
            Some(Json::Bool(b)) => *b,
            Some(Json::String(s)) if s == "true" || s == "false" => s == "true",
            Some(other) => {
                return Err(bad(format!(
                    "`optional` is {}, not a boolean",
                    json_kind(other)
                )));
            }
        };
        let parameters = match obj.get("parameters") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Object(params)) => params
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        Json::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect(),
            Some(other) => {
                return Err(bad(format!(
                    "`parameters` is {}, not an object",
                    json_kind(other)
                )));
            }
        };
        let default = obj.get("default").filter(|d| !d.is_null()).cloned();
        let doc = obj.get("doc").and_then(Json::as_str).map(str::to_owned);

        let mut items = None;
        let mut keys = None;
        let mut values = None;
        let mut fields = Vec::new();
        match connect_type {
            ConnectType::Array => {
                let item = obj
                    .get("items")
                    .ok_or_else(|| bad("array schema has no `items`".into()))?;
                items = Some(Box::new(Self::parse(
                    item,
                    &format!("{path}.items"),
                    depth + 1,
                )?));
            }
            ConnectType::Map => {
                let k = obj
                    .get("keys")
                    .ok_or_else(|| bad("map schema has no `keys`".into()))?;
                let v = obj
                    .get("values")
                    .ok_or_else(|| bad("map schema has no `values`".into()))?;
                keys = Some(Box::new(Self::parse(
                    k,
                    &format!("{path}.keys"),
                    depth + 1,
                )?));
                values = Some(Box::new(Self::parse(
                    v,
                    &format!("{path}.values"),
                    depth + 1,
                )?));
            }
            ConnectType::Struct => {
                let list = match obj.get("fields") {
                    Some(Json::Array(list)) => list,
                    Some(other) => {
                        return Err(bad(format!(
                            "`fields` is {}, not an array",
                            json_kind(other)
                        )));
                    }
                    None => return Err(bad("struct schema has no `fields`".into())),
                };
                fields.reserve(list.len());
                for (i, field) in list.iter().enumerate() {
                    let fname = match field.get("field") {
                        Some(Json::String(n)) => n.as_str(),
                        _ => {
                            return Err(DecodeError::new(
                                DecodeErrorKind::InvalidSchema,
                                format!("{path}.fields[{i}]"),
                                "struct field has no `field` name",
                            ));
                        }
                    };
                    if fields.iter().any(|c: &Column| &*c.name == fname) {
                        return Err(bad(format!("struct declares field `{fname}` twice")));
                    }
                    let schema = Self::parse(field, &format!("{path}.{fname}"), depth + 1)?;
                    fields.push(Column {
                        name: Arc::from(fname),
                        json_name: Json::from(fname).to_string().into(),
                        schema,
                    });
                }
            }
            _ => {}
        }
        let names: Arc<[Arc<str>]> = fields.iter().map(|c| c.name.clone()).collect();
        let logical =
            logical_type(connect_type, name.as_deref(), &parameters, &fields).map_err(bad)?;
        Ok(Self {
            connect_type,
            name,
            version,
            optional,
            parameters,
            default,
            doc,
            logical,
            items,
            keys,
            values,
            fields,
            names,
        })
    }

    /// The Connect type.
    pub fn connect_type(&self) -> ConnectType {
        self.connect_type
    }

    /// The logical `name` (`io.debezium.time.MicroTimestamp`, `cdc.public.users.Value`, ...).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The schema `version`, when given.
    pub fn version(&self) -> Option<i32> {
        self.version
    }

    /// Whether null is allowed.
    pub fn is_optional(&self) -> bool {
        self.optional
    }

    /// The `parameters`, in schema order, values as text.
    pub fn parameters(&self) -> &[(String, String)] {
        &self.parameters
    }

    /// One parameter by key (`scale`, `connect.decimal.precision`, `allowed`, `length`, and the
    /// `__debezium.source.column.*` ones when `column.propagate.source.type` is set).
    pub fn parameter(&self, key: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The declared `default`, as JSON (in the field's wire encoding: a Decimal default is
    /// base64). Decoding never substitutes it for null.
    pub fn default_value(&self) -> Option<&Json> {
        self.default.as_ref()
    }

    /// The `doc` text, when given.
    pub fn doc(&self) -> Option<&str> {
        self.doc.as_deref()
    }

    /// The interpretation chosen from the logical name.
    pub fn logical(&self) -> &LogicalType {
        &self.logical
    }

    /// Element schema of an array.
    pub fn items(&self) -> Option<&ConnectSchema> {
        self.items.as_deref()
    }

    /// Key schema of a map.
    pub fn map_keys(&self) -> Option<&ConnectSchema> {
        self.keys.as_deref()
    }

    /// Value schema of a map.
    pub fn map_values(&self) -> Option<&ConnectSchema> {
        self.values.as_deref()
    }

    /// Fields of a struct, in order (empty for other types).
    pub fn fields(&self) -> &[Column] {
        &self.fields
    }

    /// One struct field by name.
    pub fn field(&self, name: &str) -> Option<&Column> {
        self.fields.iter().find(|c| &*c.name == name)
    }

    pub(crate) fn shared_names(&self) -> &Arc<[Arc<str>]> {
        &self.names
    }
}

impl Column {
    /// The field (column) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name as a JSON string, quotes included (as serde_json writes it).
    pub(crate) fn json_name(&self) -> &str {
        &self.json_name
    }

    /// The shared name, as used by [`super::Row`].
    pub fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// The field's schema.
    pub fn schema(&self) -> &ConnectSchema {
        &self.schema
    }

    /// The Connect type.
    pub fn connect_type(&self) -> ConnectType {
        self.schema.connect_type
    }

    /// The logical interpretation.
    pub fn logical(&self) -> &LogicalType {
        &self.schema.logical
    }

    /// The logical name, if any.
    pub fn logical_name(&self) -> Option<&str> {
        self.schema.name()
    }

    /// Whether the column is nullable.
    pub fn is_optional(&self) -> bool {
        self.schema.optional
    }

    /// Scale of a fixed-scale decimal column.
    pub fn scale(&self) -> Option<i32> {
        match self.schema.logical {
            LogicalType::Decimal { scale, .. } => Some(scale),
            _ => None,
        }
    }

    /// Precision of a decimal column (`connect.decimal.precision`).
    pub fn precision(&self) -> Option<u32> {
        match self.schema.logical {
            LogicalType::Decimal { precision, .. } => precision,
            _ => None,
        }
    }
}

fn logical_type(
    connect_type: ConnectType,
    name: Option<&str>,
    parameters: &[(String, String)],
    fields: &[Column],
) -> Result<LogicalType, String> {
    use ConnectType as T;
    let Some(name) = name else {
        return Ok(LogicalType::None);
    };
    let (logical, required) = match name {
        "org.apache.kafka.connect.data.Decimal" => {
            let param = |key: &str| parameters.iter().find(|(k, _)| k == key).map(|(_, v)| v);
            let scale = param("scale")
                .ok_or("Decimal schema has no `scale` parameter")?
                .parse::<i32>()
                .map_err(|_| "Decimal `scale` parameter is not an integer")?;
            let precision = match param("connect.decimal.precision") {
                Some(p) => Some(
                    p.parse::<u32>()
                        .map_err(|_| "Decimal `connect.decimal.precision` is not an integer")?,
                ),
                None => None,
            };
            (LogicalType::Decimal { scale, precision }, T::Bytes)
        }
        "io.debezium.data.VariableScaleDecimal" => {
            let ok = |n: &str, t: T| {
                fields
                    .iter()
                    .any(|c| &*c.name == n && c.schema.connect_type == t)
            };
            if connect_type == T::Struct && !(ok("scale", T::Int32) && ok("value", T::Bytes)) {
                return Err(
                    "VariableScaleDecimal struct needs fields `scale` (int32) and `value` (bytes)"
                        .into(),
                );
            }
            (LogicalType::VariableScaleDecimal, T::Struct)
        }
        "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => {
            (LogicalType::Date, T::Int32)
        }
        "io.debezium.time.Time" | "org.apache.kafka.connect.data.Time" => {
            (LogicalType::Time(TimeUnit::Millis), T::Int32)
        }
        "io.debezium.time.MicroTime" => (LogicalType::Time(TimeUnit::Micros), T::Int64),
        "io.debezium.time.NanoTime" => (LogicalType::Time(TimeUnit::Nanos), T::Int64),
        "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => {
            (LogicalType::Timestamp(TimeUnit::Millis), T::Int64)
        }
        "io.debezium.time.MicroTimestamp" => (LogicalType::Timestamp(TimeUnit::Micros), T::Int64),
        "io.debezium.time.NanoTimestamp" => (LogicalType::Timestamp(TimeUnit::Nanos), T::Int64),
        "io.debezium.time.ZonedTimestamp" => (LogicalType::ZonedTimestamp, T::String),
        "io.debezium.time.ZonedTime" => (LogicalType::ZonedTime, T::String),
        "io.debezium.data.Json" => (LogicalType::Json, T::String),
        "io.debezium.data.Uuid" => (LogicalType::Uuid, T::String),
        "io.debezium.data.Enum" => (LogicalType::Enum, T::String),
        "io.debezium.data.EnumSet" => (LogicalType::EnumSet, T::String),
        "io.debezium.data.Bits" => (LogicalType::Bits, T::Bytes),
        _ => return Ok(LogicalType::Other),
    };
    if connect_type != required {
        return Err(format!(
            "`{name}` must be a {} schema, found {}",
            required.as_str(),
            connect_type.as_str()
        ));
    }
    Ok(logical)
}

pub(crate) fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// What a sink needs to create and evolve a table: the ordered columns of the row schema (the
/// `after`/`before` struct of an envelope, or the flattened row without the unwrap transform's
/// `__` metadata fields) and the key column names from the key schema.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    name: Option<String>,
    columns: Vec<Column>,
    key_columns: Vec<Arc<str>>,
}

impl TableSchema {
    /// A table schema from its parts.
    pub fn new(name: Option<String>, columns: Vec<Column>, key_columns: Vec<Arc<str>>) -> Self {
        Self {
            name,
            columns,
            key_columns,
        }
    }

    /// The row schema's Connect name, e.g. `cdc.public.users.Value`.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The columns, in table order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// One column by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| &*c.name == name)
    }

    /// The key column names, from the key schema (empty when the message had no key).
    pub fn key_columns(&self) -> &[Arc<str>] {
        &self.key_columns
    }

    /// Whether `name` is a key column.
    pub fn is_key(&self, name: &str) -> bool {
        self.key_columns.iter().any(|k| &**k == name)
    }

    pub(crate) fn with_key_columns(&self, key_columns: Vec<Arc<str>>) -> Self {
        Self {
            name: self.name.clone(),
            columns: self.columns.clone(),
            key_columns,
        }
    }
}

/// Key column names given by a key schema: a struct's fields, or the single pseudo column
/// [`super::KEY_COLUMN`] for a primitive key.
pub(crate) fn key_columns_of(key: &ConnectSchema) -> Vec<Arc<str>> {
    if key.connect_type == ConnectType::Struct {
        key.fields.iter().map(|c| c.name.clone()).collect()
    } else {
        vec![Arc::from(super::KEY_COLUMN)]
    }
}

/// The role of a top-level envelope field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Before,
    After,
    Source,
    Op,
    TsMs,
    Transaction,
    Message,
    Other,
}

impl Role {
    pub(crate) fn of(name: &str) -> Self {
        match name {
            "before" => Self::Before,
            "after" => Self::After,
            "source" => Self::Source,
            "op" => Self::Op,
            "ts_ms" => Self::TsMs,
            "transaction" => Self::Transaction,
            "message" => Self::Message,
            _ => Self::Other,
        }
    }
}

/// A metadata field added by `ExtractNewRecordState` (`add.fields`, `delete.handling.mode`):
/// `__` + the field name, with `.` replaced by `_` (`source.ts_ms` → `__source_ts_ms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Meta {
    /// `__op`.
    Op,
    /// `__deleted` ("true"/"false").
    Deleted,
    /// `__ts_ms`: the envelope's ts_ms.
    TsMs,
    /// A source field: `__source_<f>`, or `__<f>` for the known source fields (`__lsn`, `__table`).
    Source(String),
    /// `__transaction_<f>`.
    Transaction(String),
    /// Recognised but not kept (`__ts_us`, `__ts_ns`).
    Ignored,
}

/// Source fields the unwrap transform may add without the `source.` prefix.
const SOURCE_FIELDS: &[&str] = &[
    "version",
    "connector",
    "name",
    "snapshot",
    "db",
    "sequence",
    "schema",
    "table",
    "txId",
    "lsn",
    "xmin",
    "origin",
    "origin_lsn",
];

impl Meta {
    /// The metadata meaning of a flattened field name, or `None` for a table column.
    pub(crate) fn of(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("__")?;
        Some(match rest {
            "op" => Self::Op,
            "deleted" => Self::Deleted,
            "ts_ms" => Self::TsMs,
            "ts_us" | "ts_ns" => Self::Ignored,
            _ => {
                if let Some(f) = rest.strip_prefix("source_") {
                    Self::Source(f.to_owned())
                } else if let Some(f) = rest.strip_prefix("transaction_") {
                    Self::Transaction(f.to_owned())
                } else if SOURCE_FIELDS.contains(&rest) {
                    Self::Source(rest.to_owned())
                } else {
                    return None;
                }
            }
        })
    }
}

/// Where a field of a flattened record goes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Target {
    /// Position in the row.
    Column(usize),
    /// Metadata, not part of the row.
    Meta(Meta),
}

/// How to decode the payload of one value schema.
#[derive(Debug)]
pub(crate) enum ValuePlan {
    /// A Debezium envelope (`before`/`after`/`source`/`op`...), including logical messages.
    Envelope(EnvelopePlan),
    /// A record flattened by `ExtractNewRecordState`.
    Flat(FlatPlan),
    /// Something else (heartbeat, transaction metadata, a scalar value): the reason why.
    NotChange(String),
}

#[derive(Debug)]
pub(crate) struct EnvelopePlan {
    /// The envelope struct.
    pub(crate) schema: ConnectSchema,
    /// The role of each envelope field, in schema order.
    pub(crate) roles: Vec<Role>,
    /// The table, when the envelope carries rows (not for logical messages).
    pub(crate) table: Option<TableSchema>,
}

#[derive(Debug)]
pub(crate) struct FlatPlan {
    /// The flattened value struct (columns and metadata fields).
    pub(crate) schema: ConnectSchema,
    /// Where each field of `schema` goes.
    pub(crate) targets: Vec<Target>,
    /// Names of the row's columns (metadata removed).
    pub(crate) row_names: Arc<[Arc<str>]>,
    /// The table (columns only).
    pub(crate) table: TableSchema,
}

impl ValuePlan {
    /// The plan for a value schema given as JSON.
    pub(crate) fn build(schema_json: &Json) -> Result<Self, DecodeError> {
        let schema = ConnectSchema::from_json(schema_json)?;
        Ok(Self::from_schema(schema))
    }

    pub(crate) fn from_schema(schema: ConnectSchema) -> Self {
        if schema.connect_type != ConnectType::Struct {
            return Self::NotChange(format!(
                "value schema is {}, not a struct",
                schema.connect_type.as_str()
            ));
        }
        let has = |n: &str| schema.field(n).is_some();
        let row_field = |n: &str| {
            schema
                .field(n)
                .filter(|c| c.schema.connect_type == ConnectType::Struct)
        };
        if has("op") && (has("before") || has("after") || has("message")) {
            let roles = schema.fields.iter().map(|c| Role::of(&c.name)).collect();
            let table = row_field("after")
                .or_else(|| row_field("before"))
                .map(|row| {
                    TableSchema::new(
                        row.schema.name.clone(),
                        row.schema.fields.clone(),
                        Vec::new(),
                    )
                });
            return Self::Envelope(EnvelopePlan {
                schema,
                roles,
                table,
            });
        }
        if let Some(name) = schema.name()
            && (name.starts_with("io.debezium.connector.common.")
                || name.ends_with(".SchemaChangeValue")
                || name.ends_with(".TransactionMetadataValue"))
        {
            return Self::NotChange(format!("`{name}` messages are not change events"));
        }
        let mut targets = Vec::with_capacity(schema.fields.len());
        let mut columns = Vec::with_capacity(schema.fields.len());
        for c in &schema.fields {
            match Meta::of(&c.name) {
                Some(meta) => targets.push(Target::Meta(meta)),
                None => {
                    targets.push(Target::Column(columns.len()));
                    columns.push(c.clone());
                }
            }
        }
        let row_names: Arc<[Arc<str>]> = columns.iter().map(|c| c.name.clone()).collect();
        let table = TableSchema::new(schema.name.clone(), columns, Vec::new());
        Self::Flat(FlatPlan {
            schema,
            targets,
            row_names,
            table,
        })
    }

    /// The table described by this plan, without key columns.
    pub(crate) fn table(&self) -> Option<&TableSchema> {
        match self {
            Self::Envelope(p) => p.table.as_ref(),
            Self::Flat(p) => Some(&p.table),
            Self::NotChange(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_decimal_field_with_parameters() {
        let s = ConnectSchema::from_json(&json!({
            "type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal",
            "version": 1, "parameters": {"scale": "2", "connect.decimal.precision": "12"}
        }))
        .unwrap();
        assert_eq!(s.connect_type(), ConnectType::Bytes);
        assert!(s.is_optional());
        assert_eq!(s.version(), Some(1));
        assert_eq!(
            s.logical(),
            &LogicalType::Decimal {
                scale: 2,
                precision: Some(12)
            }
        );
        assert_eq!(s.parameter("connect.decimal.precision"), Some("12"));
    }

    #[test]
    fn rejects_malformed_schemas_with_a_path() {
        let cases = [
            (
                json!({"type": "struct", "fields": [{"type": "int33", "field": "id"}]}),
                "schema.id",
            ),
            (json!({"type": "struct"}), "schema"),
            (json!({"type": "array"}), "schema"),
            (
                json!({"type": "struct", "fields": [{"type": "int32"}]}),
                "schema.fields[0]",
            ),
            (
                json!({"type": "struct", "fields": [{"type": "bytes", "field": "amount",
                        "name": "org.apache.kafka.connect.data.Decimal"}]}),
                "schema.amount",
            ),
            (
                json!({"type": "struct", "fields": [{"type": "string", "field": "d",
                        "name": "io.debezium.time.Date"}]}),
                "schema.d",
            ),
            (json!("struct"), "schema"),
            (
                json!({"type": "struct", "fields": [{"type": "int32", "field": "a"},
                                                    {"type": "int32", "field": "a"}]}),
                "schema",
            ),
        ];
        for (schema, path) in cases {
            let err = ConnectSchema::from_json(&schema).unwrap_err();
            assert_eq!(err.kind(), DecodeErrorKind::InvalidSchema, "{schema}");
            assert_eq!(err.path(), path, "{schema}: {err}");
        }
    }

    #[test]
    fn unknown_logical_names_decode_by_type() {
        let s = ConnectSchema::from_json(
            &json!({"type": "int64", "name": "io.debezium.time.MicroDuration"}),
        )
        .unwrap();
        assert_eq!(s.logical(), &LogicalType::Other);
        assert_eq!(s.name(), Some("io.debezium.time.MicroDuration"));
    }

    #[test]
    fn unwrap_metadata_names() {
        assert_eq!(Meta::of("__op"), Some(Meta::Op));
        assert_eq!(Meta::of("__deleted"), Some(Meta::Deleted));
        assert_eq!(
            Meta::of("__source_ts_ms"),
            Some(Meta::Source("ts_ms".into()))
        );
        assert_eq!(Meta::of("__lsn"), Some(Meta::Source("lsn".into())));
        assert_eq!(Meta::of("__table"), Some(Meta::Source("table".into())));
        assert_eq!(Meta::of("__ts_ms"), Some(Meta::TsMs));
        assert_eq!(
            Meta::of("__transaction_id"),
            Some(Meta::Transaction("id".into()))
        );
        assert_eq!(Meta::of("__my_column"), None);
        assert_eq!(Meta::of("lsn"), None);
    }

    #[test]
    fn flat_plan_separates_columns_from_metadata() {
        let plan = ValuePlan::build(&json!({
            "type": "struct", "name": "cdc.public.t.Value", "fields": [
                {"type": "int32", "field": "id"},
                {"type": "string", "optional": true, "field": "__deleted"},
                {"type": "string", "optional": true, "field": "note"},
                {"type": "int64", "optional": true, "field": "__lsn"}
            ]
        }))
        .unwrap();
        let ValuePlan::Flat(flat) = plan else {
            panic!("expected a flat plan, got {plan:?}");
        };
        assert_eq!(
            flat.targets,
            vec![
                Target::Column(0),
                Target::Meta(Meta::Deleted),
                Target::Column(1),
                Target::Meta(Meta::Source("lsn".into()))
            ]
        );
        let names: Vec<&str> = flat.table.columns().iter().map(Column::name).collect();
        assert_eq!(names, ["id", "note"]);
    }

    #[test]
    fn heartbeats_and_scalars_are_not_change_events() {
        let hb = ValuePlan::build(
            &json!({"type": "struct", "name": "io.debezium.connector.common.Heartbeat",
            "fields": [{"type": "int64", "field": "ts_ms"}]}),
        )
        .unwrap();
        assert!(matches!(hb, ValuePlan::NotChange(_)), "{hb:?}");
        let scalar = ValuePlan::build(&json!({"type": "string"})).unwrap();
        assert!(matches!(scalar, ValuePlan::NotChange(_)), "{scalar:?}");
    }
}
