//! The table model of `generate-data` and the rows it generates.
//!
//! The Postgres client reads catalog facts into a [`CatalogTable`] (column types resolved by
//! [`TypeCatalog`]); [`TableSpec::build`] decides for each column where its value comes from
//! ([`Source`]), which realistic generator fits its name ([`Hint`]) and whether it must be
//! unique. Rows are then written as COPY text
//! ([`TableSpec::write_copy_row`]) or as INSERT parameters ([`TableSpec::row_values`]), and
//! updates as a random subset of columns ([`TableSpec::update_values`]). Every value is text in
//! Postgres' input syntax; the command casts it to the column's type.

use std::collections::HashMap;
use std::fmt::Write as _;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::copy::{push_escaped, push_null};
use super::values::{self as v, Persona};
use super::{mix64, pools, row_rng, stable_hash};
use crate::clients::postgres::TableName;

/// Probability that a nullable column is NULL.
pub const NULL_SHARE: f64 = 0.1;
/// Probability that a nullable free-text column (notes, description) is NULL.
pub const NULL_SHARE_PROSE: f64 = 0.4;

/// What a column holds, from its type (domains resolved to their base type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `boolean`.
    Bool,
    /// `smallint`.
    Int2,
    /// `integer`.
    Int4,
    /// `bigint`.
    Int8,
    /// `numeric(precision, scale)`; unconstrained `numeric` gets 2 decimals.
    Numeric {
        /// Total significant digits, if constrained.
        precision: Option<u32>,
        /// Digits after the point (negative: rounding to tens, hundreds...).
        scale: i32,
    },
    /// `real`.
    Float4,
    /// `double precision`.
    Float8,
    /// `money`.
    Money,
    /// `text`, `varchar(n)`, `citext`, `name`: at most `max` characters when given.
    Str {
        /// Length limit in characters.
        max: Option<usize>,
    },
    /// `char(n)`: at most `n` characters (Postgres pads).
    Char(usize),
    /// `uuid`.
    Uuid,
    /// `date`.
    Date,
    /// `timestamp without time zone`.
    Timestamp,
    /// `timestamp with time zone`.
    Timestamptz,
    /// `time`.
    Time,
    /// `interval`.
    Interval,
    /// `json`.
    Json,
    /// `jsonb`.
    Jsonb,
    /// `bytea`.
    Bytea,
    /// `inet` or `cidr`.
    Inet,
    /// An enum type with its labels in order.
    Enum(Vec<String>),
    /// A one-dimensional array.
    Array(Box<Kind>),
    /// Anything else (geometry, ranges, composite types...): NULL, the default, or an error.
    Unsupported,
}

/// `VARHDRSZ`: Postgres stores length typmods with this offset.
const VARHDRSZ: i32 = 4;

/// The kind of a scalar type from its `pg_type.typname` and the column's `atttypmod`.
pub fn scalar_kind(typname: &str, typmod: i32) -> Kind {
    let len = (typmod >= VARHDRSZ).then(|| (typmod - VARHDRSZ) as usize);
    match typname {
        "bool" => Kind::Bool,
        "int2" => Kind::Int2,
        "int4" => Kind::Int4,
        "int8" => Kind::Int8,
        "numeric" => {
            if typmod >= VARHDRSZ {
                let m = typmod - VARHDRSZ;
                // Postgres 15 stores the scale as a signed 11-bit field.
                let scale = ((m & 0x7ff) ^ 1024) - 1024;
                Kind::Numeric {
                    precision: Some(((m >> 16) & 0xffff) as u32),
                    scale,
                }
            } else {
                Kind::Numeric {
                    precision: None,
                    scale: 2,
                }
            }
        }
        "float4" => Kind::Float4,
        "float8" => Kind::Float8,
        "money" => Kind::Money,
        "text" | "citext" | "name" => Kind::Str { max: None },
        "varchar" => Kind::Str { max: len },
        "bpchar" => match len {
            Some(n) => Kind::Char(n),
            None => Kind::Str { max: None },
        },
        "char" => Kind::Char(1),
        "uuid" => Kind::Uuid,
        "date" => Kind::Date,
        "timestamp" => Kind::Timestamp,
        "timestamptz" => Kind::Timestamptz,
        "time" | "timetz" => Kind::Time,
        "interval" => Kind::Interval,
        "json" => Kind::Json,
        "jsonb" => Kind::Jsonb,
        "bytea" => Kind::Bytea,
        "inet" | "cidr" => Kind::Inet,
        _ => Kind::Unsupported,
    }
}

/// A `pg_type` row: what resolving a column's type to a [`Kind`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeRow {
    /// `typname`.
    pub name: String,
    /// `typtype`: `b` base, `d` domain, `e` enum, ...
    pub typtype: String,
    /// `typcategory`: `A` for arrays.
    pub category: String,
    /// `typelem`: the element type of an array, else 0.
    pub elem: u32,
    /// `typbasetype`: the base type of a domain, else 0.
    pub base: u32,
    /// `typtypmod`: the typmod a domain applies to its base type, else -1.
    pub base_typmod: i32,
}

/// The `pg_type` rows (by oid) and enum labels (by enum type oid) of a table's column types, as
/// the client reads them: resolves domains, arrays and enums to a [`Kind`].
#[derive(Debug, Clone, Default)]
pub struct TypeCatalog {
    /// Types by oid, with the element and base types they lead to.
    pub types: HashMap<u32, TypeRow>,
    /// Labels of each enum type, in sort order.
    pub enums: HashMap<u32, Vec<String>>,
}

impl TypeCatalog {
    /// The kind of a column of type `oid` with `atttypmod` `typmod`.
    pub fn kind(&self, oid: u32, typmod: i32) -> Kind {
        self.kind_at(oid, typmod, 0)
    }

    fn kind_at(&self, oid: u32, typmod: i32, depth: usize) -> Kind {
        let Some(t) = self.types.get(&oid) else {
            return Kind::Unsupported;
        };
        if depth > 8 {
            return Kind::Unsupported;
        }
        match t.typtype.as_str() {
            "d" => {
                let typmod = if t.base_typmod >= 0 {
                    t.base_typmod
                } else {
                    typmod
                };
                self.kind_at(t.base, typmod, depth + 1)
            }
            "e" => Kind::Enum(self.enums.get(&oid).cloned().unwrap_or_default()),
            "b" if t.category == "A" && t.elem != 0 => {
                Kind::Array(Box::new(self.kind_at(t.elem, typmod, depth + 1)))
            }
            "b" => scalar_kind(&t.name, typmod),
            _ => Kind::Unsupported,
        }
    }
}

impl Kind {
    /// Length limit of text kinds.
    pub fn max_chars(&self) -> Option<usize> {
        match self {
            Kind::Str { max } => *max,
            Kind::Char(n) => Some(*n),
            _ => None,
        }
    }

    fn is_text(&self) -> bool {
        matches!(self, Kind::Str { .. } | Kind::Char(_))
    }

    fn is_integer(&self) -> bool {
        matches!(self, Kind::Int2 | Kind::Int4 | Kind::Int8)
    }

    fn is_number(&self) -> bool {
        self.is_integer()
            || matches!(
                self,
                Kind::Numeric { .. } | Kind::Float4 | Kind::Float8 | Kind::Money
            )
    }

    /// True when values can be generated (arrays of supported elements included).
    pub fn is_supported(&self) -> bool {
        match self {
            Kind::Unsupported => false,
            Kind::Array(e) => !matches!(**e, Kind::Array(_)) && e.is_supported(),
            Kind::Enum(labels) => !labels.is_empty(),
            _ => true,
        }
    }

    /// True when [`TableSpec`] can make every value of this kind distinct.
    fn can_be_unique(&self) -> bool {
        match self {
            Kind::Char(n) => *n >= 6,
            Kind::Str { max } => max.is_none_or(|m| m >= 6),
            k => k.is_integer() || *k == Kind::Uuid,
        }
    }
}

/// The realistic generator chosen from a column's name (and its table's), when its kind fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// Type-driven value only.
    None,
    /// `Maria Garcia`.
    FullName,
    /// `Maria`.
    FirstName,
    /// `Garcia`.
    LastName,
    /// `mgarcia`.
    Username,
    /// `maria.garcia@example.com`.
    Email,
    /// `4821 Oak Street, Springfield, IL 62704`.
    Address,
    /// `Springfield`.
    City,
    /// `IL`.
    State,
    /// `62704`.
    PostalCode,
    /// `US`.
    CountryCode,
    /// `United States`.
    Country,
    /// `+1-312-555-0142`.
    Phone,
    /// `Visa`.
    CardBrand,
    /// `**** **** **** 4242`.
    CardNumberMasked,
    /// `Blue Bottle Coffee`.
    Merchant,
    /// `dining` (agrees with the merchant).
    MerchantCategory,
    /// `kitchen`.
    ProductCategory,
    /// `Ergonomic Bamboo Desk Lamp`.
    ProductName,
    /// `approved` (mostly), `pending`, `declined`, `refunded`.
    Status,
    /// `USD` (mostly), `EUR`, `GBP`, `CAD`.
    Currency,
    /// A sentence or two.
    Prose,
    /// `{"vip","newsletter"}`.
    UserTags,
    /// `{"sale","eco"}`.
    ProductTags,
    /// Amounts: log-uniform 1..2000 with the column's scale.
    Money,
    /// Transaction metadata JSON (channel, device, MCC, IP).
    TxMetadata,
    /// User preferences JSON.
    Preferences,
    /// Product attributes JSON.
    Attributes,
    /// A birth date, 1950..2006.
    BirthDate,
    /// True nine times in ten.
    MostlyTrue,
    /// True one time in five.
    MostlyFalse,
    /// `updated_at`: set by every update.
    Touch,
}

/// The hint for a column, `Hint::None` when nothing realistic fits its name and kind.
pub fn hint_for(table: &str, column: &str, kind: &Kind) -> Hint {
    let c = column.to_ascii_lowercase();
    let c = c.as_str();
    let product = table.to_ascii_lowercase().contains("product");
    let max = kind.max_chars();
    let fits = |n: usize| max.is_none_or(|m| m >= n);
    if kind.is_text() {
        let hint = match c {
            "name" | "title" | "product_name" if product => Hint::ProductName,
            "name" | "full_name" | "fullname" | "customer_name" | "display_name" => Hint::FullName,
            "first_name" | "firstname" | "given_name" => Hint::FirstName,
            "last_name" | "lastname" | "surname" | "family_name" => Hint::LastName,
            "username" | "user_name" | "login" | "handle" => Hint::Username,
            "email" | "email_address" => Hint::Email,
            _ if c.ends_with("_email") => Hint::Email,
            "address" | "street_address" | "address_line1" | "street" => Hint::Address,
            "city" => Hint::City,
            "state" | "region" => Hint::State,
            "zip" | "zip_code" | "postal_code" | "postcode" => Hint::PostalCode,
            "country" | "country_code" if max.is_some_and(|m| m <= 3) => Hint::CountryCode,
            "country" => Hint::Country,
            "phone" | "phone_number" | "mobile" => Hint::Phone,
            "card_brand" | "card_type" | "card_network" => Hint::CardBrand,
            "brand" if !product => Hint::CardBrand,
            _ if (c.contains("card_number") || c.contains("masked_pan")) && fits(19) => {
                Hint::CardNumberMasked
            }
            "merchant" | "merchant_name" | "payee" => Hint::Merchant,
            "category" | "product_category" if product => Hint::ProductCategory,
            "category" | "merchant_category" => Hint::MerchantCategory,
            "status" => Hint::Status,
            "currency" | "currency_code" => Hint::Currency,
            "description" | "notes" | "note" | "comment" | "comments" | "bio" | "memo"
            | "remarks" | "body" | "summary" => Hint::Prose,
            _ => Hint::None,
        };
        return hint;
    }
    match kind {
        k if k.is_number() => match c {
            "amount" | "price" | "total" | "balance" | "cost" | "subtotal" | "fee" => Hint::Money,
            _ if c.ends_with("_amount") || c.ends_with("_price") => Hint::Money,
            _ => Hint::None,
        },
        Kind::Json | Kind::Jsonb => match c {
            "metadata" | "meta" => Hint::TxMetadata,
            "preferences" | "settings" | "prefs" => Hint::Preferences,
            "attributes" | "attrs" | "properties" | "specs" => Hint::Attributes,
            _ => Hint::None,
        },
        Kind::Date => match c {
            "birth_date" | "birthdate" | "dob" | "date_of_birth" => Hint::BirthDate,
            _ => Hint::None,
        },
        Kind::Bool => match c {
            "is_active" | "active" | "in_stock" | "enabled" | "is_enabled" | "verified"
            | "is_verified" | "available" => Hint::MostlyTrue,
            "is_premium" | "premium" | "is_admin" | "deleted" | "is_deleted" | "archived" => {
                Hint::MostlyFalse
            }
            _ => Hint::None,
        },
        Kind::Timestamp | Kind::Timestamptz => match c {
            "updated_at" | "modified_at" | "last_modified" | "updated" => Hint::Touch,
            _ => Hint::None,
        },
        Kind::Array(e) if e.is_text() => match c {
            "tags" | "labels" if product => Hint::ProductTags,
            "tags" | "labels" => Hint::UserTags,
            _ => Hint::None,
        },
        _ => Hint::None,
    }
}

/// Where a column's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Left out of the column list: Postgres fills it (generated, identity or serial columns
    /// outside the key, or unsupported types with a default).
    Skip,
    /// Always NULL (unsupported type or multi-column foreign key, nullable).
    Null,
    /// The table's integer key: the row identity (a reserved sequence value, or max + 1...).
    Key,
    /// A foreign key: a key of parent `n` of [`TableSpec::parents`].
    Parent(usize),
    /// Generated from kind and hint.
    Value,
}

/// Facts about one column, as read from the catalog.
#[derive(Debug, Clone)]
pub struct CatalogColumn {
    /// Name, exactly.
    pub name: String,
    /// `format_type()` of the column, used to cast parameters: `numeric(12,2)`.
    pub sql_type: String,
    /// The kind of its (base) type.
    pub kind: Kind,
    /// `NOT NULL`.
    pub not_null: bool,
    /// Has a default expression (including serial's `nextval`).
    pub has_default: bool,
    /// `GENERATED ... AS IDENTITY`.
    pub identity: bool,
    /// `GENERATED ALWAYS AS IDENTITY`: explicit values need `OVERRIDING SYSTEM VALUE`.
    pub identity_always: bool,
    /// `GENERATED ALWAYS AS (...) STORED`.
    pub generated: bool,
    /// The default calls `nextval()` (serial).
    pub serial: bool,
}

/// A single-column foreign key, as read from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogForeignKey {
    /// Index of the referencing column.
    pub column: usize,
    /// The referenced table.
    pub parent: TableName,
    /// The referenced column.
    pub parent_column: String,
}

/// Facts about one table, as read from the catalog.
#[derive(Debug, Clone)]
pub struct CatalogTable {
    /// The table.
    pub name: TableName,
    /// Live columns in order.
    pub columns: Vec<CatalogColumn>,
    /// Indexes of the primary key columns, in key order; empty without a primary key.
    pub primary_key: Vec<usize>,
    /// Column indexes of each (non-partial) unique index other than the primary key.
    pub unique: Vec<Vec<usize>>,
    /// Single-column foreign keys.
    pub foreign_keys: Vec<CatalogForeignKey>,
    /// Columns of foreign keys spanning several columns (not generated: NULL or default).
    pub multi_column_fk_columns: Vec<usize>,
}

/// How rows of a table get their identity `n` (which seeds the row's random stream and makes
/// unique values unique).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    /// Single integer primary key filled by a sequence: `n` is a value reserved from it.
    Sequence,
    /// Single integer primary key without a sequence: `n` = max at start + 1, + 2, ...
    Integer,
    /// Any other key: `n` = 1, 2, ... salted with the table's state at start (see the command),
    /// so reruns do not repeat earlier unique values.
    Salted(u64),
}

/// One generated column.
#[derive(Debug, Clone)]
pub struct Column {
    /// Name, exactly.
    pub name: String,
    /// `format_type()` of the column.
    pub sql_type: String,
    /// The kind of its type.
    pub kind: Kind,
    /// May be NULL.
    pub nullable: bool,
    /// Part of the primary key.
    pub primary: bool,
    /// Part of the primary key or of a unique index: generated distinct, never updated.
    pub unique: bool,
    /// Where the value comes from.
    pub source: Source,
    /// The realistic generator.
    pub hint: Hint,
    /// `--large-text`: values over 8 KB.
    pub large_text: bool,
    /// Unique integer columns: the largest value at start (new values are above it).
    pub unique_base: i64,
}

/// A referenced table and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentRef {
    /// The referenced table.
    pub table: TableName,
    /// The referenced column.
    pub column: String,
}

/// A table ready for generation.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// The table.
    pub name: TableName,
    /// [`stable_hash`] of the name: part of every row's seed.
    pub id: u64,
    /// Every live column, `Source::Skip` ones included.
    pub columns: Vec<Column>,
    /// How rows get their identity.
    pub key_mode: KeyMode,
    /// Indexes of the primary key columns.
    pub primary_key: Vec<usize>,
    /// The tables referenced by `Source::Parent` columns.
    pub parents: Vec<ParentRef>,
    /// Some key column is `GENERATED ALWAYS AS IDENTITY`.
    pub overriding_system_value: bool,
}

/// Gives foreign key values: a key of a parent table.
pub trait ParentKeys {
    /// Appends a key of `parent` (an index into [`TableSpec::parents`]) chosen with `rng`;
    /// returns false when the parent has no rows.
    fn pick(&mut self, parent: usize, rng: &mut ChaCha8Rng, out: &mut String) -> bool;
}

/// Per-value context: the row's persona, identity and run-local index.
struct Ctx {
    persona: Persona,
    /// Row identity.
    n: u64,
    /// Index of the row among this run's inserts into the table (0, 1, ...).
    r: u64,
    salt: u64,
    /// Values for an update rather than a new row.
    update: bool,
}

impl Ctx {
    /// A token making a text value unique: the identity in decimal for sequence and integer
    /// keys, else a base-36 scramble of identity and salt.
    fn push_token(&self, out: &mut String) {
        if self.salt == 0 {
            let _ = write!(out, "{}", self.n);
        } else {
            v::push_base36(out, mix64(self.n.wrapping_add(self.salt)));
        }
    }
}

impl TableSpec {
    /// Decides sources, hints and the key mode. Fails (with a reason for the user) when the table
    /// has no primary key, or a NOT NULL column can be neither generated nor defaulted.
    pub fn build(cat: &CatalogTable) -> Result<TableSpec, String> {
        if cat.primary_key.is_empty() {
            return Err(format!("`{}` has no primary key", cat.name));
        }
        let single_pk = (cat.primary_key.len() == 1).then(|| cat.primary_key[0]);
        let mut parents: Vec<ParentRef> = Vec::new();
        let mut columns = Vec::with_capacity(cat.columns.len());
        let mut overriding_system_value = false;
        let mut key_mode = KeyMode::Salted(0);
        for (i, c) in cat.columns.iter().enumerate() {
            let primary = cat.primary_key.contains(&i);
            let unique = primary || cat.unique.iter().any(|u| u.contains(&i));
            let fk = cat.foreign_keys.iter().find(|f| f.column == i);
            let source = if c.generated {
                Source::Skip
            } else if (c.identity || c.serial) && single_pk == Some(i) && c.kind.is_integer() {
                key_mode = KeyMode::Sequence;
                overriding_system_value |= c.identity_always;
                Source::Key
            } else if c.identity || c.serial {
                Source::Skip
            } else if single_pk == Some(i) && c.kind.is_integer() && fk.is_none() {
                key_mode = KeyMode::Integer;
                Source::Key
            } else if let Some(fk) = fk {
                let parent = ParentRef {
                    table: fk.parent.clone(),
                    column: fk.parent_column.clone(),
                };
                let idx = match parents.iter().position(|p| *p == parent) {
                    Some(idx) => idx,
                    None => {
                        parents.push(parent);
                        parents.len() - 1
                    }
                };
                Source::Parent(idx)
            } else if cat.multi_column_fk_columns.contains(&i) || !c.kind.is_supported() {
                let why = if c.kind.is_supported() {
                    "it is part of a multi-column foreign key".to_string()
                } else {
                    format!("its type `{}` is not supported", c.sql_type)
                };
                match (c.not_null, c.has_default) {
                    (_, true) => Source::Skip,
                    (false, false) => Source::Null,
                    (true, false) => {
                        return Err(format!(
                            "cannot generate values for `{}.{}`: {why}",
                            cat.name, c.name
                        ));
                    }
                }
            } else {
                Source::Value
            };
            columns.push(Column {
                name: c.name.clone(),
                sql_type: c.sql_type.clone(),
                kind: c.kind.clone(),
                nullable: !c.not_null,
                primary,
                unique,
                source,
                hint: hint_for(&cat.name.name, &c.name, &c.kind),
                large_text: false,
                unique_base: 0,
            });
        }
        if matches!(key_mode, KeyMode::Salted(_))
            && !cat
                .primary_key
                .iter()
                .any(|&i| columns[i].source == Source::Value && columns[i].kind.can_be_unique())
        {
            return Err(format!(
                "cannot generate distinct primary keys for `{}`: no key column is an integer, \
                 uuid or text column outside a foreign key",
                cat.name
            ));
        }
        Ok(TableSpec {
            id: stable_hash(&cat.name.to_string()),
            name: cat.name.clone(),
            columns,
            key_mode,
            primary_key: cat.primary_key.clone(),
            parents,
            overriding_system_value,
        })
    }

    fn salt(&self) -> u64 {
        match self.key_mode {
            KeyMode::Salted(s) => s,
            _ => 0,
        }
    }

    /// Marks the column for `--large-text`: the first unbounded text column named like free
    /// text (notes, description, comment...), else the first unbounded text column. Returns its
    /// name, or `None` when the table has no such column.
    pub fn choose_large_text(&mut self) -> Option<String> {
        const PREFERRED: &[&str] = &[
            "notes",
            "note",
            "description",
            "comment",
            "comments",
            "body",
            "content",
            "bio",
            "memo",
        ];
        let candidate = |c: &Column| {
            c.source == Source::Value && !c.unique && c.kind == Kind::Str { max: None }
        };
        let chosen = self
            .columns
            .iter()
            .position(|c| candidate(c) && PREFERRED.contains(&c.name.to_ascii_lowercase().as_str()))
            .or_else(|| self.columns.iter().position(candidate))?;
        self.columns[chosen].large_text = true;
        Some(self.columns[chosen].name.clone())
    }

    /// The columns written by COPY and INSERT, in order.
    pub fn insert_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.source != Source::Skip)
    }

    /// Columns an update may change: generated values outside keys, unique indexes and foreign
    /// keys.
    pub fn updatable(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| {
                let c = &self.columns[i];
                c.source == Source::Value && !c.unique
            })
            .collect()
    }

    /// Generates row `n` (identity) / `r` (run-local index), handing each value of
    /// [`TableSpec::insert_columns`] to `emit` (`None` is NULL).
    fn generate(
        &self,
        seed: u64,
        n: u64,
        r: u64,
        parents: &mut dyn ParentKeys,
        scratch: &mut String,
        mut emit: impl FnMut(Option<&str>),
    ) -> Result<(), String> {
        let mut rng = row_rng(seed, self.id, n, self.salt());
        let ctx = Ctx {
            persona: Persona::draw(&mut rng),
            n,
            r,
            salt: self.salt(),
            update: false,
        };
        for col in &self.columns {
            scratch.clear();
            match col.source {
                Source::Skip => continue,
                Source::Null => emit(None),
                Source::Key => {
                    let _ = write!(scratch, "{n}");
                    emit(Some(scratch));
                }
                Source::Parent(p) => {
                    let null = col.nullable && rng.random_bool(NULL_SHARE);
                    if null {
                        emit(None);
                    } else if parents.pick(p, &mut rng, scratch) {
                        emit(Some(scratch));
                    } else if col.nullable {
                        emit(None);
                    } else {
                        return Err(format!(
                            "`{}.{}` must reference a row of `{}`, which has none",
                            self.name, col.name, self.parents[p].table
                        ));
                    }
                }
                Source::Value => {
                    if value(col, &mut rng, &ctx, scratch) {
                        emit(Some(scratch));
                    } else {
                        emit(None);
                    }
                }
            }
        }
        Ok(())
    }

    /// Appends row `n` / `r` to `out` in COPY text format (tab-separated, `\N`, newline).
    pub fn write_copy_row(
        &self,
        seed: u64,
        n: u64,
        r: u64,
        parents: &mut dyn ParentKeys,
        scratch: &mut String,
        out: &mut String,
    ) -> Result<(), String> {
        let mut first = true;
        self.generate(seed, n, r, parents, scratch, |value| {
            if !first {
                out.push('\t');
            }
            first = false;
            match value {
                Some(v) => push_escaped(out, v),
                None => push_null(out),
            }
        })?;
        out.push('\n');
        Ok(())
    }

    /// Row `n` / `r` as INSERT parameters for [`TableSpec::insert_columns`].
    pub fn row_values(
        &self,
        seed: u64,
        n: u64,
        r: u64,
        parents: &mut dyn ParentKeys,
    ) -> Result<Vec<Option<String>>, String> {
        let mut values = Vec::with_capacity(self.columns.len());
        let mut scratch = String::new();
        self.generate(seed, n, r, parents, &mut scratch, |value| {
            values.push(value.map(str::to_string))
        })?;
        Ok(values)
    }

    /// New values for a random non-empty subset of [`TableSpec::updatable`] columns (`updated_at`
    /// style columns always included), as (column index, value) in column order. Empty when the
    /// table has nothing to update.
    pub fn update_values(&self, rng: &mut ChaCha8Rng) -> Vec<(usize, Option<String>)> {
        let updatable = self.updatable();
        let (touch, mut others): (Vec<usize>, Vec<usize>) = updatable
            .into_iter()
            .partition(|&i| self.columns[i].hint == Hint::Touch);
        let mut chosen = touch;
        if !others.is_empty() {
            let k = rng.random_range(1..=others.len());
            // Partial Fisher-Yates: the first k of `others` become a uniform sample.
            for j in 0..k {
                let pick = rng.random_range(j..others.len());
                others.swap(j, pick);
            }
            chosen.extend_from_slice(&others[..k]);
        }
        chosen.sort_unstable();
        let ctx = Ctx {
            persona: Persona::draw(rng),
            n: 0,
            r: 0,
            salt: 0,
            update: true,
        };
        chosen
            .into_iter()
            .map(|i| {
                let mut s = String::new();
                let set = value(&self.columns[i], rng, &ctx, &mut s);
                (i, set.then_some(s))
            })
            .collect()
    }
}

/// Appends a value for `col`; false means NULL.
fn value(col: &Column, rng: &mut ChaCha8Rng, ctx: &Ctx, out: &mut String) -> bool {
    if col.large_text {
        v::push_large_text(rng, out);
        return true;
    }
    if col.nullable && !col.unique {
        let share = if col.hint == Hint::Prose {
            NULL_SHARE_PROSE
        } else {
            NULL_SHARE
        };
        if rng.random_bool(share) {
            return false;
        }
    }
    let start = out.len();
    if col.unique && unique_value(col, rng, ctx, out) {
        return true;
    }
    if col.hint == Hint::None || !hinted_value(col, rng, ctx, out) {
        out.truncate(start);
        match col.kind {
            // A row's timestamps happen around its time (within a day after it).
            Kind::Timestamp | Kind::Timestamptz if !ctx.update => {
                let ms = (ctx.persona.time_ms + rng.random_range(0..86_400_000))
                    .min(v::TIMESTAMP_TO * 1000 - 1);
                v::push_timestamp_at(out, ms, col.kind == Kind::Timestamptz);
            }
            _ => kind_value(&col.kind, rng, out),
        }
    }
    if let Some(max) = col.kind.max_chars() {
        v::truncate_chars(out, start, max);
    }
    true
}

/// A value distinct from every other this run and earlier ones: integers above the start
/// maximum, uuids at random, text carrying the row's token. False when the kind cannot be unique.
fn unique_value(col: &Column, rng: &mut ChaCha8Rng, ctx: &Ctx, out: &mut String) -> bool {
    let start = out.len();
    match &col.kind {
        k if k.is_integer() => {
            let _ = write!(
                out,
                "{}",
                col.unique_base
                    .saturating_add(1)
                    .saturating_add(ctx.r as i64)
            );
            true
        }
        Kind::Uuid => {
            v::push_uuid(rng, out);
            true
        }
        k if k.is_text() && k.can_be_unique() => {
            let max = k.max_chars().unwrap_or(usize::MAX);
            let mut token = String::new();
            ctx.push_token(&mut token);
            match col.hint {
                Hint::Email => v::push_email(rng, out, &ctx.persona, Some(&token)),
                Hint::Username => v::push_username(rng, out, &ctx.persona, Some(&token)),
                _ => {
                    out.push_str(v::pick(rng, pools::WORDS));
                    out.push('-');
                    out.push_str(&token);
                }
            }
            if out[start..].chars().count() > max {
                out.truncate(start);
                out.push_str(&token);
                v::truncate_chars(out, start, max);
            }
            true
        }
        _ => false,
    }
}

/// The hint's value; false when the hint does not apply to the kind after all.
fn hinted_value(col: &Column, rng: &mut ChaCha8Rng, ctx: &Ctx, out: &mut String) -> bool {
    let p = &ctx.persona;
    match col.hint {
        Hint::None => return false,
        Hint::FullName => v::push_full_name(out, p),
        Hint::FirstName => out.push_str(p.first),
        Hint::LastName => out.push_str(p.last),
        Hint::Username => v::push_username(rng, out, p, None),
        Hint::Email => v::push_email(rng, out, p, None),
        Hint::Address => v::push_address(rng, out, p),
        Hint::City => out.push_str(pools::CITIES[p.city].0),
        Hint::State => out.push_str(pools::CITIES[p.city].1),
        Hint::PostalCode => {
            let _ = write!(
                out,
                "{}{:02}",
                pools::CITIES[p.city].2,
                rng.random_range(1..100)
            );
        }
        Hint::CountryCode => out.push_str(pools::COUNTRIES[p.country].0),
        Hint::Country => out.push_str(pools::COUNTRIES[p.country].1),
        Hint::Phone => v::push_phone(rng, out),
        Hint::CardBrand => out.push_str(p.brand),
        Hint::CardNumberMasked => v::push_masked_card(rng, out, p.brand),
        Hint::Merchant => out.push_str(p.merchant().0),
        Hint::MerchantCategory => out.push_str(p.merchant().1),
        Hint::ProductCategory => out.push_str(v::pick(rng, pools::PRODUCT_CATEGORIES)),
        Hint::ProductName => v::push_product_name(rng, out),
        Hint::Status => out.push_str(v::pick_weighted(rng, pools::STATUSES)),
        Hint::Currency => out.push_str(v::pick_weighted(rng, pools::CURRENCIES)),
        Hint::Prose => v::push_prose(rng, out),
        Hint::UserTags => v::push_tags(rng, out, pools::USER_TAGS, 3),
        Hint::ProductTags => v::push_tags(rng, out, pools::PRODUCT_TAGS, 3),
        Hint::Money => {
            let (scale, limit) = number_limits(&col.kind);
            v::push_scaled(out, v::money_units(rng, scale, limit), scale);
        }
        Hint::TxMetadata => v::push_tx_metadata(rng, out, p),
        Hint::Preferences => v::push_preferences(rng, out),
        Hint::Attributes => v::push_attributes(rng, out),
        Hint::BirthDate => v::push_date(rng, out, 1950, 2006),
        Hint::MostlyTrue => out.push(if rng.random_bool(0.9) { 't' } else { 'f' }),
        Hint::MostlyFalse => out.push(if rng.random_bool(0.2) { 't' } else { 'f' }),
        Hint::Touch => {
            // New rows: some time after the row's other timestamps. Updates: late in the
            // window, after most rows were created.
            const DAY_MS: i64 = 86_400_000;
            let ms = if ctx.update {
                rng.random_range((v::TIMESTAMP_TO * 1000 - 90 * DAY_MS)..v::TIMESTAMP_TO * 1000)
            } else {
                (p.time_ms + rng.random_range(DAY_MS..180 * DAY_MS)).min(v::TIMESTAMP_TO * 1000 - 1)
            };
            v::push_timestamp_at(out, ms, col.kind == Kind::Timestamptz);
        }
    }
    true
}

/// Scale, and the exclusive limit in units of 10^-scale, of a numeric kind: the limit keeps the
/// value within the precision (integer part capped at 6 digits for ordinary values).
fn number_limits(kind: &Kind) -> (i32, u64) {
    match kind {
        Kind::Numeric { precision, scale } => {
            let p = precision.map_or(i32::MAX, |p| p as i32);
            let digits = if *scale >= 0 {
                p.min(scale + 6)
            } else {
                p.min(6)
            };
            (*scale, v::pow10(digits.clamp(0, 18) as u32))
        }
        Kind::Int2 => (0, 10_000),
        Kind::Int4 | Kind::Int8 => (0, 1_000_000),
        _ => (2, 100_000_000),
    }
}

/// A type-driven value.
fn kind_value(kind: &Kind, rng: &mut ChaCha8Rng, out: &mut String) {
    match kind {
        Kind::Bool => out.push(if rng.random_bool(0.5) { 't' } else { 'f' }),
        Kind::Int2 => {
            let _ = write!(out, "{}", rng.random_range(0..1_000));
        }
        Kind::Int4 => {
            let _ = write!(out, "{}", rng.random_range(0..100_000));
        }
        Kind::Int8 => {
            let _ = write!(out, "{}", rng.random_range(0..1_000_000));
        }
        Kind::Numeric { scale, .. } => {
            let (_, limit) = number_limits(kind);
            v::push_scaled(out, rng.random_range(0..limit.max(1)), *scale);
        }
        Kind::Float4 | Kind::Float8 | Kind::Money => {
            v::push_scaled(out, rng.random_range(0..1_000_000), 2);
        }
        Kind::Str { max } => {
            let most = max.map_or(6, |m| (m / 6).clamp(1, 6));
            v::push_words(rng, out, 1, most);
        }
        Kind::Char(n) => {
            for _ in 0..*n {
                out.push(char::from(b'A' + rng.random_range(0..26u8)));
            }
        }
        Kind::Uuid => v::push_uuid(rng, out),
        Kind::Date => v::push_date(rng, out, 2015, 2025),
        Kind::Timestamp => v::push_timestamp(rng, out, false),
        Kind::Timestamptz => v::push_timestamp(rng, out, true),
        Kind::Time => v::push_time(rng, out),
        Kind::Interval => {
            let _ = write!(out, "{} minutes", rng.random_range(1..10_000));
        }
        Kind::Json | Kind::Jsonb => v::push_json_object(rng, out),
        Kind::Bytea => {
            out.push_str("\\x");
            for _ in 0..rng.random_range(4..16) {
                let _ = write!(out, "{:02x}", rng.random::<u8>());
            }
        }
        Kind::Inet => {
            let _ = write!(
                out,
                "10.{}.{}.{}",
                rng.random_range(0..256),
                rng.random_range(0..256),
                rng.random_range(1..255)
            );
        }
        Kind::Enum(labels) => out.push_str(&labels[rng.random_range(0..labels.len())]),
        Kind::Array(elem) => {
            let n = rng.random_range(0..=3);
            let mut element = String::new();
            out.push('{');
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                element.clear();
                kind_value(elem, rng, &mut element);
                if let Some(max) = elem.max_chars() {
                    v::truncate_chars(&mut element, 0, max);
                }
                v::push_array_element(out, &element);
            }
            out.push('}');
        }
        Kind::Unsupported => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_catalog_resolves_domains_arrays_and_enums() {
        let row = |name: &str, typtype: &str, category: &str, elem, base, base_typmod| TypeRow {
            name: name.into(),
            typtype: typtype.into(),
            category: category.into(),
            elem,
            base,
            base_typmod,
        };
        let mut types = TypeCatalog::default();
        types.types.insert(25, row("text", "b", "S", 0, 0, -1));
        types.types.insert(1043, row("varchar", "b", "S", 0, 0, -1));
        types.types.insert(1009, row("_text", "b", "A", 25, 0, -1));
        // A domain over varchar(20), and one over text keeping the column's typmod.
        types.types.insert(9001, row("code", "d", "S", 0, 1043, 24));
        types.types.insert(9002, row("note", "d", "S", 0, 25, -1));
        types.types.insert(9003, row("mood", "e", "E", 0, 0, -1));
        types.enums.insert(9003, vec!["sad".into(), "ok".into()]);
        assert_eq!(types.kind(9001, -1), Kind::Str { max: Some(20) });
        assert_eq!(types.kind(9002, -1), Kind::Str { max: None });
        assert_eq!(
            types.kind(1009, -1),
            Kind::Array(Box::new(Kind::Str { max: None }))
        );
        assert_eq!(
            types.kind(9003, -1),
            Kind::Enum(vec!["sad".into(), "ok".into()])
        );
        assert_eq!(types.kind(4242, -1), Kind::Unsupported);
    }

    fn col(name: &str, sql_type: &str, kind: Kind, not_null: bool) -> CatalogColumn {
        CatalogColumn {
            name: name.into(),
            sql_type: sql_type.into(),
            kind,
            not_null,
            has_default: false,
            identity: false,
            identity_always: false,
            generated: false,
            serial: false,
        }
    }

    fn serial(name: &str) -> CatalogColumn {
        CatalogColumn {
            has_default: true,
            serial: true,
            ..col(name, "bigint", Kind::Int8, true)
        }
    }

    /// A table like the demo's `credit_card_transactions`.
    fn transactions() -> CatalogTable {
        CatalogTable {
            name: TableName::new("public", "credit_card_transactions"),
            columns: vec![
                serial("id"),
                col("transaction_uuid", "uuid", Kind::Uuid, true),
                col("user_id", "bigint", Kind::Int8, true),
                col(
                    "amount",
                    "numeric(12,2)",
                    scalar_kind("numeric", (12 << 16 | 2) + 4),
                    true,
                ),
                col("currency", "character(3)", scalar_kind("bpchar", 7), true),
                col(
                    "card_brand",
                    "character varying(20)",
                    scalar_kind("varchar", 24),
                    true,
                ),
                col(
                    "card_number_masked",
                    "character varying(19)",
                    scalar_kind("varchar", 23),
                    true,
                ),
                col(
                    "merchant",
                    "character varying(255)",
                    scalar_kind("varchar", 259),
                    true,
                ),
                col(
                    "category",
                    "character varying(50)",
                    scalar_kind("varchar", 54),
                    true,
                ),
                col(
                    "status",
                    "character varying(20)",
                    scalar_kind("varchar", 24),
                    true,
                ),
                col("metadata", "jsonb", Kind::Jsonb, false),
                col("notes", "text", Kind::Str { max: None }, false),
                col(
                    "transaction_date",
                    "timestamp with time zone",
                    Kind::Timestamptz,
                    true,
                ),
            ],
            primary_key: vec![0],
            unique: vec![vec![1]],
            foreign_keys: vec![CatalogForeignKey {
                column: 2,
                parent: TableName::new("public", "users"),
                parent_column: "id".into(),
            }],
            multi_column_fk_columns: vec![],
        }
    }

    /// Parent keys 1..=count as text.
    struct Keys(u64);
    impl ParentKeys for Keys {
        fn pick(&mut self, _: usize, rng: &mut ChaCha8Rng, out: &mut String) -> bool {
            if self.0 == 0 {
                return false;
            }
            let _ = write!(out, "{}", rng.random_range(1..=self.0));
            true
        }
    }

    fn values(spec: &TableSpec, seed: u64, n: u64) -> Vec<Option<String>> {
        spec.row_values(seed, n, n - 1, &mut Keys(100)).unwrap()
    }

    #[test]
    fn typmods_decode_to_lengths_precision_and_scale() {
        assert_eq!(scalar_kind("varchar", 14), Kind::Str { max: Some(10) });
        assert_eq!(scalar_kind("varchar", -1), Kind::Str { max: None });
        assert_eq!(scalar_kind("bpchar", 6), Kind::Char(2));
        assert_eq!(
            scalar_kind("numeric", (5 << 16 | 2) + 4),
            Kind::Numeric {
                precision: Some(5),
                scale: 2
            }
        );
        // numeric(3,-1): Postgres 15 negative scale, stored as 11-bit two's complement.
        assert_eq!(
            scalar_kind("numeric", (3 << 16 | 0x7ff) + 4),
            Kind::Numeric {
                precision: Some(3),
                scale: -1
            }
        );
        assert_eq!(scalar_kind("geometry", -1), Kind::Unsupported);
        assert!(!Kind::Array(Box::new(Kind::Unsupported)).is_supported());
    }

    #[test]
    fn demo_columns_get_realistic_generators() {
        let spec = TableSpec::build(&transactions()).unwrap();
        let hints: Vec<(&str, Hint, Source)> = spec
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.hint, c.source))
            .collect();
        assert_eq!(spec.key_mode, KeyMode::Sequence);
        assert_eq!(hints[0], ("id", Hint::None, Source::Key));
        assert_eq!(hints[2], ("user_id", Hint::None, Source::Parent(0)));
        assert_eq!(hints[3].1, Hint::Money);
        assert_eq!(hints[4].1, Hint::Currency);
        assert_eq!(hints[5].1, Hint::CardBrand);
        assert_eq!(hints[6].1, Hint::CardNumberMasked);
        assert_eq!(hints[7].1, Hint::Merchant);
        assert_eq!(hints[8].1, Hint::MerchantCategory);
        assert_eq!(hints[9].1, Hint::Status);
        assert_eq!(hints[10].1, Hint::TxMetadata);
        assert_eq!(hints[11].1, Hint::Prose);
        assert!(spec.columns[1].unique);
        assert_eq!(
            spec.updatable()
                .iter()
                .map(|&i| spec.columns[i].name.as_str())
                .collect::<Vec<_>>(),
            [
                "amount",
                "currency",
                "card_brand",
                "card_number_masked",
                "merchant",
                "category",
                "status",
                "metadata",
                "notes",
                "transaction_date"
            ],
            "no key, unique or foreign key column is updated"
        );

        let row = values(&spec, 42, 7);
        assert_eq!(row.len(), 13);
        assert_eq!(row[0].as_deref(), Some("7"), "the key is the row identity");
        let user: u64 = row[2].as_deref().unwrap().parse().unwrap();
        assert!((1..=100).contains(&user));
        let amount = row[3].as_deref().unwrap();
        let (_, cents) = amount.split_once('.').unwrap();
        assert_eq!(cents.len(), 2, "{amount}");
        let brand = row[5].as_deref().unwrap();
        let masked = row[6].as_deref().unwrap();
        assert_eq!(masked.len(), if brand == "Amex" { 17 } else { 19 });
        let merchant = row[7].as_deref().unwrap();
        let category = row[8].as_deref().unwrap();
        assert!(
            pools::MERCHANTS.contains(&(merchant, category)),
            "{merchant} {category}"
        );
        let metadata: serde_json::Value =
            serde_json::from_str(row[10].as_deref().unwrap_or("{}")).unwrap();
        assert!(metadata.is_object());
    }

    #[test]
    fn rows_depend_only_on_seed_table_and_identity() {
        let spec = TableSpec::build(&transactions()).unwrap();
        assert_eq!(values(&spec, 1, 5), values(&spec, 1, 5));
        assert_ne!(values(&spec, 1, 5), values(&spec, 2, 5));
        assert_ne!(values(&spec, 1, 5), values(&spec, 1, 6));
        let mut a = String::new();
        let mut scratch = String::new();
        spec.write_copy_row(1, 5, 4, &mut Keys(100), &mut scratch, &mut a)
            .unwrap();
        let fields: Vec<&str> = a.trim_end_matches('\n').split('\t').collect();
        let expected: Vec<String> = values(&spec, 1, 5)
            .into_iter()
            .map(|v| v.unwrap_or_else(|| "\\N".into()))
            .collect();
        assert_eq!(fields, expected, "COPY text and INSERT values agree");
    }

    #[test]
    fn a_required_parent_without_rows_is_an_error() {
        let spec = TableSpec::build(&transactions()).unwrap();
        let err = spec.row_values(1, 1, 0, &mut Keys(0)).unwrap_err();
        assert!(
            err.contains("must reference a row of `public.users`"),
            "{err}"
        );
    }

    #[test]
    fn custom_types_respect_length_scale_enums_and_arrays() {
        let cat = CatalogTable {
            name: TableName::new("lab", "samples"),
            columns: vec![
                col("code", "uuid", Kind::Uuid, true),
                col(
                    "score",
                    "numeric(5,2)",
                    scalar_kind("numeric", (5 << 16 | 2) + 4),
                    true,
                ),
                col(
                    "label",
                    "character varying(10)",
                    scalar_kind("varchar", 14),
                    true,
                ),
                col(
                    "mood",
                    "lab.mood",
                    Kind::Enum(vec!["happy".into(), "sad".into(), "it's \"odd\"".into()]),
                    true,
                ),
                col(
                    "counts",
                    "integer[]",
                    Kind::Array(Box::new(Kind::Int4)),
                    true,
                ),
                col("doc", "jsonb", Kind::Jsonb, true),
                col(
                    "seen_at",
                    "timestamp with time zone",
                    Kind::Timestamptz,
                    true,
                ),
                col("shape", "point", Kind::Unsupported, false),
            ],
            primary_key: vec![0],
            unique: vec![],
            foreign_keys: vec![],
            multi_column_fk_columns: vec![],
        };
        let spec = TableSpec::build(&cat).unwrap();
        assert!(matches!(spec.key_mode, KeyMode::Salted(_)));
        assert_eq!(spec.columns[7].source, Source::Null);
        let mut uuids = std::collections::HashSet::new();
        for n in 1..300 {
            let row = values(&spec, 3, n);
            assert!(uuids.insert(row[0].clone().unwrap()), "distinct keys");
            let score: f64 = row[1].as_deref().unwrap().parse().unwrap();
            assert!(score < 1000.0, "numeric(5,2) holds < 1000: {score}");
            let (_, frac) = row[1].as_deref().unwrap().split_once('.').unwrap();
            assert_eq!(frac.len(), 2);
            assert!(row[2].as_deref().unwrap().chars().count() <= 10);
            let mood = row[3].as_deref().unwrap();
            assert!(["happy", "sad", "it's \"odd\""].contains(&mood));
            let counts = row[4].as_deref().unwrap();
            assert!(counts.starts_with('{') && counts.ends_with('}'), "{counts}");
            assert!(serde_json::from_str::<serde_json::Value>(row[5].as_deref().unwrap()).is_ok());
            assert_eq!(row[7], None);
        }
    }

    #[test]
    fn tables_that_cannot_be_generated_say_why() {
        let mut cat = transactions();
        cat.primary_key.clear();
        assert!(
            TableSpec::build(&cat)
                .unwrap_err()
                .contains("has no primary key")
        );
        let mut cat = transactions();
        cat.columns
            .push(col("shape", "point", Kind::Unsupported, true));
        let err = TableSpec::build(&cat).unwrap_err();
        assert!(err.contains("type `point` is not supported"), "{err}");
        cat.columns.last_mut().unwrap().has_default = true;
        let spec = TableSpec::build(&cat).unwrap();
        assert_eq!(spec.columns.last().unwrap().source, Source::Skip);
        // A key made only of foreign keys cannot be made distinct.
        let cat = CatalogTable {
            name: TableName::new("public", "likes"),
            columns: vec![col("user_id", "bigint", Kind::Int8, true)],
            primary_key: vec![0],
            unique: vec![],
            foreign_keys: vec![CatalogForeignKey {
                column: 0,
                parent: TableName::new("public", "users"),
                parent_column: "id".into(),
            }],
            multi_column_fk_columns: vec![],
        };
        assert!(
            TableSpec::build(&cat)
                .unwrap_err()
                .contains("cannot generate distinct primary keys")
        );
    }

    #[test]
    fn unique_text_carries_the_row_token() {
        let cat = CatalogTable {
            name: TableName::new("public", "users"),
            columns: vec![
                serial("id"),
                col(
                    "email",
                    "character varying(255)",
                    scalar_kind("varchar", 259),
                    true,
                ),
                col(
                    "username",
                    "character varying(12)",
                    scalar_kind("varchar", 16),
                    true,
                ),
            ],
            primary_key: vec![0],
            unique: vec![vec![1], vec![2]],
            foreign_keys: vec![],
            multi_column_fk_columns: vec![],
        };
        let spec = TableSpec::build(&cat).unwrap();
        let row = values(&spec, 9, 1234);
        let email = row[1].as_deref().unwrap();
        assert!(email.contains(".1234@example."), "{email}");
        let username = row[2].as_deref().unwrap();
        assert!(username.chars().count() <= 12, "{username}");
        assert!(username.ends_with("1234"), "{username}");
    }

    #[test]
    fn updates_change_a_subset_and_always_touch_updated_at() {
        let mut cat = transactions();
        cat.columns.push(col(
            "updated_at",
            "timestamp with time zone",
            Kind::Timestamptz,
            true,
        ));
        let spec = TableSpec::build(&cat).unwrap();
        let touch = spec.columns.len() - 1;
        let mut rng = crate::datagen::stream_rng(5);
        let mut sizes = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let update = spec.update_values(&mut rng);
            assert!(update.iter().any(|(i, _)| *i == touch));
            assert!(update.len() >= 2);
            assert!(update.iter().all(|(i, _)| spec.updatable().contains(i)));
            sizes.insert(update.len());
        }
        assert!(sizes.len() > 5, "subsets of many sizes: {sizes:?}");
    }

    #[test]
    fn large_text_prefers_notes_and_exceeds_8_kb() {
        let mut spec = TableSpec::build(&transactions()).unwrap();
        assert_eq!(spec.choose_large_text().as_deref(), Some("notes"));
        let row = values(&spec, 1, 1);
        assert!(row[11].as_deref().unwrap().len() > 8 * 1024);
        let mut cat = transactions();
        cat.columns.retain(|c| c.name != "notes");
        cat.foreign_keys[0].column = 2;
        let mut spec = TableSpec::build(&cat).unwrap();
        assert_eq!(spec.choose_large_text(), None);
    }
}
