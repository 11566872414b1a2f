//! The statements of `cdcctl scd2`: a Type 2 history table built from a changes table
//! (`load --history`, see [`super::sql`], "Changes"). Pure: statement text only; the few values
//! (watermarks, instants, names in the state table) are bound parameters, and every identifier
//! is quoted for the dialect.
//!
//! # The history table
//!
//! `<table>_history` has the key columns, the tracked columns, then:
//!
//! | column | meaning |
//! |---|---|
//! | `valid_from` | source commit time of the change that started the version |
//! | `valid_to` | source commit time of the change that ended it; **NULL while current** |
//! | `is_current` | `valid_to IS NULL` |
//! | `is_deleted` | the version ended because the row was deleted (its `valid_to` is the delete); with `--keep-deleted`, the row *records* the deletion instead (below) |
//! | `version` | 1, 2, 3… per key, in LSN order |
//! | `row_hash` | MD5 of the tracked columns (length-prefixed text, NULL-safe) |
//! | `_cdc_source_lsn` | LSN of the change that started the version |
//! | `_cdc_updated_at` | when `scd2` last wrote the row |
//!
//! # From changes to versions ([`versions_sql`])
//!
//! Per key, its changes ordered by LSN (a truncate counts as a delete of every key):
//!
//! 1. a change followed by another change of the key **at the same commit time** is dropped: no
//!    instant ever showed it (two updates in one transaction);
//! 2. a create/read/update starts a version when it is the key's first change, follows a
//!    delete, or changes `row_hash`; other changes (same tracked values) start nothing;
//! 3. a delete following a live version ends it;
//! 4. each version is valid from its change's commit time to the next start or delete;
//!    versions are numbered in order.
//!
//! With `--keep-deleted` a delete also starts a version: the last tracked values, `is_deleted`,
//! current until the key is inserted again — so every key that ever existed has one current
//! row (like dbt's `hard_deletes: new_record`).
//!
//! # Incremental runs ([`apply_sql`])
//!
//! The state table (`_cdc_scd2_state`, next to the history table) keeps per history table the
//! key, the tracked columns and the **watermark**: the highest `_cdc_seq` of the changes table
//! already read. `_cdc_seq` numbers rows in the order they were appended, so a run reads exactly
//! the changes appended since, whatever their LSN (a lagging partition or a replayed dead
//! letter brings changes older than ones already read). A run:
//!
//! 1. collects the keys with changes in (`watermark`, `max(_cdc_seq)`] (every key when a
//!    truncate is among them);
//! 2. recomputes those keys' versions from all their changes up to `max(_cdc_seq)`;
//! 3. deletes their history rows that are no longer versions (a late change can make a version
//!    a no-op), updates the rows whose values changed (matched on key and starting LSN: a
//!    version closed by a new change gets its `valid_to`, a late change renumbers), and inserts
//!    the new versions;
//! 4. moves the watermark.
//!
//! Every step is idempotent, so a run interrupted anywhere is finished by the next one, and a
//! run with nothing new changes nothing.

use super::schema::{
    CDC_OPERATION, CDC_SEQ, CDC_SOURCE_LSN, CDC_TIMESTAMP, Dialect, TableName, WarehouseType,
    quote_ident,
};

/// `valid_from`.
pub const VALID_FROM: &str = "valid_from";
/// `valid_to`: NULL while current.
pub const VALID_TO: &str = "valid_to";
/// `is_current`.
pub const IS_CURRENT: &str = "is_current";
/// `is_deleted`.
pub const IS_DELETED: &str = "is_deleted";
/// `version`.
pub const VERSION: &str = "version";
/// `row_hash`.
pub const ROW_HASH: &str = "row_hash";
/// `_cdc_updated_at`.
pub const UPDATED_AT: &str = "_cdc_updated_at";
/// The state table's name, in the history table's schema.
pub const STATE_TABLE: &str = "_cdc_scd2_state";

/// Temporary table of the keys a run recomputes.
const KEYS: &str = "__cdcctl_scd2_keys";
/// Temporary table of their recomputed versions.
const VERSIONS: &str = "__cdcctl_scd2_versions";

/// The names of the history table's columns after the key and tracked columns.
pub const HISTORY_COLUMNS: [&str; 8] = [
    VALID_FROM,
    VALID_TO,
    IS_CURRENT,
    IS_DELETED,
    VERSION,
    ROW_HASH,
    CDC_SOURCE_LSN,
    UPDATED_AT,
];

/// What a history table is built from and how.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The dialect.
    pub dialect: Dialect,
    /// The changes table read.
    pub changes: TableName,
    /// The history table written.
    pub history: TableName,
    /// Key columns, with their types in the changes table.
    pub key: Vec<(String, WarehouseType)>,
    /// Tracked columns, with their types.
    pub tracked: Vec<(String, WarehouseType)>,
    /// `--keep-deleted`.
    pub keep_deleted: bool,
}

impl Spec {
    fn q(&self, name: &str) -> String {
        quote_ident(self.dialect, name)
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        self.key
            .iter()
            .map(|(k, _)| format!("{prefix}{}", self.q(k)))
            .collect()
    }

    /// `a.k1 = b.k1 AND …`.
    fn key_match(&self, a: &str, b: &str) -> String {
        self.key
            .iter()
            .map(|(k, _)| format!("{a}.{k} = {b}.{k}", k = self.q(k)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    fn partition(&self) -> String {
        self.keys("").join(", ")
    }

    fn now(&self) -> &'static str {
        match self.dialect {
            Dialect::DuckDb => "now()",
            Dialect::Snowflake => "CURRENT_TIMESTAMP()",
        }
    }

    fn text(&self, expr: &str) -> String {
        format!("CAST({expr} AS VARCHAR)")
    }

    /// MD5 of the tracked columns of `prefix` (module doc).
    fn hash(&self, prefix: &str) -> String {
        if self.tracked.is_empty() {
            return "MD5('')".to_owned();
        }
        let parts: Vec<String> = self
            .tracked
            .iter()
            .map(|(c, _)| {
                let v = self.text(&format!("{prefix}{}", self.q(c)));
                format!("COALESCE(CAST(LENGTH({v}) AS VARCHAR) || ':' || {v}, '-')")
            })
            .collect();
        format!("MD5({})", parts.join(" || ','  || "))
    }
}

/// `CREATE TABLE IF NOT EXISTS` of the history table (module doc).
pub fn create_history_sql(spec: &Spec) -> String {
    let d = spec.dialect;
    let mut columns: Vec<String> = spec
        .key
        .iter()
        .chain(&spec.tracked)
        .map(|(name, ty)| format!("{} {}", spec.q(name), ty.sql(d)))
        .collect();
    let ts = WarehouseType::TimestampTz.normalize(d).sql(d);
    let int = WarehouseType::BigInt.normalize(d).sql(d);
    let text = WarehouseType::Text.normalize(d).sql(d);
    columns.extend([
        format!("{} {ts}", spec.q(VALID_FROM)),
        format!("{} {ts}", spec.q(VALID_TO)),
        format!("{} BOOLEAN", spec.q(IS_CURRENT)),
        format!("{} BOOLEAN", spec.q(IS_DELETED)),
        format!("{} {int}", spec.q(VERSION)),
        format!("{} {text}", spec.q(ROW_HASH)),
        format!("{} {int}", spec.q(CDC_SOURCE_LSN)),
        format!("{} {ts}", spec.q(UPDATED_AT)),
    ]);
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        spec.history.sql(d),
        columns.join(", ")
    )
}

/// The state table's columns, in order: history table, changes table, key columns and tracked
/// columns (JSON arrays of names), keep_deleted, watermark (`_cdc_seq`), the LSN at the
/// watermark, and when it was written.
const STATE_COLUMNS: [(&str, WarehouseType); 8] = [
    ("history_table", WarehouseType::Text),
    ("changes_table", WarehouseType::Text),
    ("key_columns", WarehouseType::Text),
    ("tracked_columns", WarehouseType::Text),
    ("keep_deleted", WarehouseType::Boolean),
    ("watermark_seq", WarehouseType::BigInt),
    ("watermark_lsn", WarehouseType::BigInt),
    ("updated_at", WarehouseType::TimestampTz),
];

/// `CREATE TABLE IF NOT EXISTS` of the state table in `schema`.
pub fn create_state_sql(dialect: Dialect, schema: &Option<String>) -> String {
    let columns: Vec<String> = STATE_COLUMNS
        .iter()
        .map(|(name, ty)| {
            format!(
                "{} {}",
                quote_ident(dialect, name),
                ty.normalize(dialect).sql(dialect)
            )
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        state_table(schema).sql(dialect),
        columns.join(", ")
    )
}

/// The state table next to a history table in `schema`.
pub fn state_table(schema: &Option<String>) -> TableName {
    TableName {
        schema: schema.clone(),
        table: STATE_TABLE.to_owned(),
    }
}

/// Reads a history table's state: one parameter, the history table's name. Columns: key
/// columns, tracked columns (JSON arrays), keep_deleted, watermark_seq.
pub fn read_state_sql(dialect: Dialect, schema: &Option<String>) -> String {
    let q = |n: &str| quote_ident(dialect, n);
    format!(
        "SELECT {}, {}, CAST({} AS VARCHAR), CAST({} AS VARCHAR) FROM {} WHERE {} = ?",
        q("key_columns"),
        q("tracked_columns"),
        q("keep_deleted"),
        q("watermark_seq"),
        state_table(schema).sql(dialect),
        q("history_table"),
    )
}

/// Forgets a history table's state: one parameter, the history table's name.
pub fn delete_state_sql(dialect: Dialect, schema: &Option<String>) -> String {
    format!(
        "DELETE FROM {} WHERE {} = ?",
        state_table(schema).sql(dialect),
        quote_ident(dialect, "history_table")
    )
}

/// Records a history table's state. Parameters: the [`STATE_COLUMNS`] but the last (the time
/// of writing).
pub fn insert_state_sql(dialect: Dialect, schema: &Option<String>) -> String {
    let now = match dialect {
        Dialect::DuckDb => "now()",
        Dialect::Snowflake => "CURRENT_TIMESTAMP()",
    };
    let names: Vec<String> = STATE_COLUMNS
        .iter()
        .map(|(name, _)| quote_ident(dialect, name))
        .collect();
    let params = vec!["?"; STATE_COLUMNS.len() - 1].join(", ");
    format!(
        "INSERT INTO {} ({}) SELECT {params}, {now}",
        state_table(schema).sql(dialect),
        names.join(", ")
    )
}

/// The highest `_cdc_seq` and LSN of the changes table, as text (NULL when empty).
pub fn high_water_sql(spec: &Spec) -> String {
    format!(
        "SELECT CAST(MAX({}) AS VARCHAR), CAST(MAX({}) AS VARCHAR) FROM {}",
        spec.q(CDC_SEQ),
        spec.q(CDC_SOURCE_LSN),
        spec.changes.sql(spec.dialect)
    )
}

/// Counts the changes in (watermark, high] and the truncates among them. Parameters: the
/// watermark, the high mark, both twice.
pub fn pending_sql(spec: &Spec) -> String {
    let seq = spec.q(CDC_SEQ);
    let op = spec.q(CDC_OPERATION);
    format!(
        "SELECT CAST(COUNT(*) AS VARCHAR), CAST(COUNT(CASE WHEN {op} = 't' THEN 1 END) AS VARCHAR) \
         FROM {} WHERE {seq} > ? AND {seq} <= ?",
        spec.changes.sql(spec.dialect)
    )
}

/// The statements of one incremental run (module doc, "Incremental runs"), in order. Each has
/// the parameters listed on [`Step`].
pub fn apply_sql(spec: &Spec, all_keys: bool) -> Vec<Step> {
    let d = spec.dialect;
    let temp = match d {
        Dialect::DuckDb => "TEMP",
        Dialect::Snowflake => "TEMPORARY",
    };
    let changes = spec.changes.sql(d);
    let history = spec.history.sql(d);
    let (seq, op) = (spec.q(CDC_SEQ), spec.q(CDC_OPERATION));
    let keys_filter = if all_keys {
        format!("{seq} <= ? AND {op} <> 't'")
    } else {
        format!("{seq} > ? AND {seq} <= ? AND {op} <> 't'")
    };
    let keys = Step {
        sql: format!(
            "CREATE OR REPLACE {temp} TABLE {} AS SELECT DISTINCT {} FROM {changes} WHERE {keys_filter}",
            spec.q(KEYS),
            spec.partition(),
        ),
        params: if all_keys {
            vec![Param::High]
        } else {
            vec![Param::Watermark, Param::High]
        },
        counts: None,
    };
    let versions = Step {
        sql: format!(
            "CREATE OR REPLACE {temp} TABLE {} AS {}",
            spec.q(VERSIONS),
            versions_sql(spec)
        ),
        params: vec![Param::High, Param::High],
        counts: None,
    };
    let lsn = spec.q(CDC_SOURCE_LSN);
    let (k, v) = (spec.q(KEYS), spec.q(VERSIONS));
    let removed = Step {
        sql: format!(
            "DELETE FROM {history} AS h WHERE EXISTS (SELECT 1 FROM {k} AS k WHERE {}) \
             AND NOT EXISTS (SELECT 1 FROM {v} AS v WHERE {} AND v.{lsn} = h.{lsn})",
            spec.key_match("k", "h"),
            spec.key_match("v", "h"),
        ),
        params: Vec::new(),
        counts: Some(Count::Removed),
    };
    let mut values: Vec<String> = spec.tracked.iter().map(|(c, _)| spec.q(c)).collect();
    values.extend(
        [
            VALID_FROM, VALID_TO, IS_CURRENT, IS_DELETED, VERSION, ROW_HASH,
        ]
        .iter()
        .map(|c| spec.q(c)),
    );
    let set: Vec<String> = values
        .iter()
        .map(|c| format!("{c} = v.{c}"))
        .chain([format!("{} = {}", spec.q(UPDATED_AT), spec.now())])
        .collect();
    let differs: Vec<String> = values
        .iter()
        .map(|c| format!("h.{c} IS DISTINCT FROM v.{c}"))
        .collect();
    let updated = Step {
        sql: format!(
            "UPDATE {history} AS h SET {} FROM {v} AS v WHERE {} AND v.{lsn} = h.{lsn} AND ({})",
            set.join(", "),
            spec.key_match("v", "h"),
            differs.join(" OR "),
        ),
        params: Vec::new(),
        counts: Some(Count::Updated),
    };
    let mut all: Vec<String> = spec
        .key
        .iter()
        .chain(&spec.tracked)
        .map(|(c, _)| spec.q(c))
        .collect();
    all.extend(
        [
            VALID_FROM, VALID_TO, IS_CURRENT, IS_DELETED, VERSION, ROW_HASH,
        ]
        .iter()
        .map(|c| spec.q(c)),
    );
    all.push(lsn.clone());
    let select: Vec<String> = all.iter().map(|c| format!("v.{c}")).collect();
    let inserted = Step {
        sql: format!(
            "INSERT INTO {history} ({}, {}) SELECT {}, {} FROM {v} AS v WHERE NOT EXISTS \
             (SELECT 1 FROM {history} AS h WHERE {} AND h.{lsn} = v.{lsn})",
            all.join(", "),
            spec.q(UPDATED_AT),
            select.join(", "),
            spec.now(),
            spec.key_match("h", "v"),
        ),
        params: Vec::new(),
        counts: Some(Count::Inserted),
    };
    let drop = |t: &str| Step {
        sql: format!("DROP TABLE IF EXISTS {}", spec.q(t)),
        params: Vec::new(),
        counts: None,
    };
    vec![
        keys,
        versions,
        removed,
        updated,
        inserted,
        drop(VERSIONS),
        drop(KEYS),
    ]
}

/// The temporary table of the keys a run recomputes (after its first step).
pub fn keys_table() -> TableName {
    TableName::new(KEYS)
}

/// One statement of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The statement.
    pub sql: String,
    /// Its parameters, in order.
    pub params: Vec<Param>,
    /// What its affected-row count means, if anything.
    pub counts: Option<Count>,
}

/// A parameter of a [`Step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// The stored watermark (`_cdc_seq` already read).
    Watermark,
    /// The changes table's highest `_cdc_seq` now.
    High,
}

/// What the affected rows of a [`Step`] are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// History rows that are no longer versions.
    Removed,
    /// History rows changed (closed, renumbered).
    Updated,
    /// New versions.
    Inserted,
}

/// The versions of the keys in the keys table (module doc, "From changes to versions").
/// Parameters: the high mark, twice.
pub fn versions_sql(spec: &Spec) -> String {
    let d = spec.dialect;
    let changes = spec.changes.sql(d);
    let (seq, op) = (spec.q(CDC_SEQ), spec.q(CDC_OPERATION));
    let (lsn, at) = (spec.q(CDC_SOURCE_LSN), spec.q(CDC_TIMESTAMP));
    let part = spec.partition();
    let over = format!("OVER (PARTITION BY {part} ORDER BY {lsn})");
    let keys_c = spec.keys("c.");
    let keys_k = spec.keys("k.");
    let tracked: Vec<String> = spec.tracked.iter().map(|(c, _)| spec.q(c)).collect();
    let tracked_c: Vec<String> = tracked.iter().map(|c| format!("c.{c}")).collect();
    let nulls: Vec<String> = tracked.iter().map(|c| format!("NULL AS {c}")).collect();
    let list = |items: &[String]| {
        if items.is_empty() {
            String::new()
        } else {
            format!("{}, ", items.join(", "))
        }
    };
    let hash = spec.hash("c.");
    // 0. The changes of the keys, truncates as deletes of every key.
    let events = format!(
        "SELECT {}, {}c.{op} AS {op}, c.{lsn} AS {lsn}, c.{at} AS {at}, {hash} AS h \
         FROM {changes} AS c WHERE c.{seq} <= ? AND c.{op} <> 't' AND EXISTS \
         (SELECT 1 FROM {k} AS k WHERE {}) \
         UNION ALL SELECT {}, {}'d' AS {op}, t.{lsn} AS {lsn}, t.{at} AS {at}, NULL AS h \
         FROM {k} AS k CROSS JOIN (SELECT {lsn}, {at} FROM {changes} WHERE {seq} <= ? AND {op} = 't') AS t",
        keys_c.join(", "),
        list(&tracked_c),
        spec.key_match("k", "c"),
        keys_k.join(", "),
        list(&nulls),
        k = spec.q(KEYS),
    );
    // 1. Changes superseded at the same commit time are never visible.
    let visible = format!(
        "SELECT * FROM ({events}) AS e QUALIFY LEAD({at}) {over} IS DISTINCT FROM {at} \
         OR LEAD({at}) {over} IS NULL"
    );
    // 2. and 3. The changes that start or end a version.
    let marked = format!(
        "SELECT *, LAG(h) {over} AS prev_h, LAG({op}) {over} AS prev_op FROM ({visible}) AS v"
    );
    let bounds = format!(
        "SELECT * FROM ({marked}) AS m WHERE ({op} <> 'd' AND (prev_op IS NULL OR prev_op = 'd' \
         OR h IS DISTINCT FROM prev_h)) OR ({op} = 'd' AND prev_op IS NOT NULL AND prev_op <> 'd')"
    );
    // 4. Validity and numbering.
    let prev_tracked: Vec<String> = tracked
        .iter()
        .map(|c| {
            format!(
                "LAG({c}) {over} AS {}",
                spec.q(&format!("__prev_{}", unq(c)))
            )
        })
        .collect();
    let spans = format!(
        "SELECT *, LEAD({at}) {over} AS next_at, LEAD({op}) {over} AS next_op, \
         LAG(h) {over} AS prev_version_h{} FROM ({bounds}) AS b",
        if prev_tracked.is_empty() {
            String::new()
        } else {
            format!(", {}", prev_tracked.join(", "))
        }
    );
    let (vf, vt) = (spec.q(VALID_FROM), spec.q(VALID_TO));
    let (cur, del, ver, rh) = (
        spec.q(IS_CURRENT),
        spec.q(IS_DELETED),
        spec.q(VERSION),
        spec.q(ROW_HASH),
    );
    let number = format!("ROW_NUMBER() {over}");
    let select_tracked: Vec<String> = if spec.keep_deleted {
        tracked
            .iter()
            .map(|c| {
                let prev = spec.q(&format!("__prev_{}", unq(c)));
                format!("CASE WHEN {op} = 'd' THEN {prev} ELSE {c} END AS {c}")
            })
            .collect()
    } else {
        tracked.clone()
    };
    let (deleted, hash, filter) = if spec.keep_deleted {
        (
            format!("{op} = 'd'"),
            format!("CASE WHEN {op} = 'd' THEN prev_version_h ELSE h END"),
            String::new(),
        )
    } else {
        (
            "COALESCE(next_op = 'd', false)".to_owned(),
            "h".to_owned(),
            format!(" WHERE {op} <> 'd'"),
        )
    };
    format!(
        "SELECT {}, {}{at} AS {vf}, next_at AS {vt}, next_at IS NULL AS {cur}, {deleted} AS {del}, \
         {number} AS {ver}, {hash} AS {rh}, {lsn} FROM ({spans}) AS s{filter}",
        spec.partition(),
        list(&select_tracked),
    )
}

/// A quoted identifier without its quotes (for deriving helper names).
fn unq(quoted: &str) -> String {
    quoted.trim_matches('"').replace("\"\"", "\"")
}

/// The history as of an instant (module doc): key and tracked columns as text, ordered by key.
/// One parameter: the instant in microseconds since the epoch, used twice.
pub fn as_of_sql(spec: &Spec) -> String {
    let d = spec.dialect;
    let (vf, vt) = (spec.q(VALID_FROM), spec.q(VALID_TO));
    let micros = |c: &str| epoch_micros(d, c);
    let columns: Vec<String> = spec
        .key
        .iter()
        .chain(&spec.tracked)
        .map(|(c, _)| spec.text(&spec.q(c)))
        .collect();
    let deleted = if spec.keep_deleted {
        format!(" AND NOT {}", spec.q(IS_DELETED))
    } else {
        String::new()
    };
    format!(
        "SELECT {} FROM {} WHERE {} <= ? AND ({vt} IS NULL OR {} > ?){deleted} ORDER BY {}",
        columns.join(", "),
        spec.history.sql(d),
        micros(&vf),
        micros(&vt),
        spec.partition(),
    )
}

/// A timestamp with zone column as microseconds since the epoch.
fn epoch_micros(dialect: Dialect, column: &str) -> String {
    match dialect {
        Dialect::DuckDb => format!("epoch_us({column})"),
        Dialect::Snowflake => format!("DATE_PART(EPOCH_MICROSECOND, {column})"),
    }
}

/// The checks of `--check` (module doc): one query per rule, each returning violations as
/// (key as text, version as text, detail). Parameters: [`Check::params`].
pub fn check_sql(spec: &Spec) -> Vec<Check> {
    let d = spec.dialect;
    let history = spec.history.sql(d);
    let changes = spec.changes.sql(d);
    let part = spec.partition();
    let key_text = spec
        .key
        .iter()
        .map(|(c, _)| spec.text(&spec.q(c)))
        .collect::<Vec<_>>()
        .join(" || ',' || ");
    let (vf, vt) = (spec.q(VALID_FROM), spec.q(VALID_TO));
    let (cur, del, ver) = (spec.q(IS_CURRENT), spec.q(IS_DELETED), spec.q(VERSION));
    let (seq, op, lsn) = (
        spec.q(CDC_SEQ),
        spec.q(CDC_OPERATION),
        spec.q(CDC_SOURCE_LSN),
    );
    let ver_text = spec.text(&ver);
    let mut checks = Vec::new();
    // Current rows: exactly one per live key; none (or one deletion row) for a deleted key.
    let live = format!(
        "SELECT {part}, CASE WHEN {op} = 'd' OR {lsn} < (SELECT MAX({lsn}) FROM {changes} WHERE \
         {op} = 't' AND {seq} <= ?) THEN false ELSE true END AS live FROM {changes} \
         WHERE {op} <> 't' AND {seq} <= ? QUALIFY ROW_NUMBER() OVER (PARTITION BY {part} \
         ORDER BY {lsn} DESC) = 1"
    );
    let currents = format!(
        "SELECT {part}, COUNT(CASE WHEN {cur} THEN 1 END) AS currents, \
         COUNT(CASE WHEN {cur} AND {del} THEN 1 END) AS deleted_currents FROM {history} \
         GROUP BY {part}"
    );
    let expected = if spec.keep_deleted {
        "CASE WHEN l.live THEN 'live: one current row, not is_deleted' ELSE \
         'deleted: one current row, is_deleted' END"
    } else {
        "CASE WHEN l.live THEN 'live: exactly one current row' ELSE \
         'deleted: no current row' END"
    };
    let wrong = if spec.keep_deleted {
        "COALESCE(c.currents, 0) <> 1 OR (l.live AND c.deleted_currents > 0) OR \
         (NOT l.live AND COALESCE(c.deleted_currents, 0) <> 1)"
    } else {
        "COALESCE(c.currents, 0) <> CASE WHEN l.live THEN 1 ELSE 0 END"
    };
    let l_key = spec
        .key
        .iter()
        .map(|(c, _)| spec.text(&format!("l.{}", spec.q(c))))
        .collect::<Vec<_>>()
        .join(" || ',' || ");
    checks.push(Check {
        rule: "current",
        sql: format!(
            "SELECT {l_key}, CAST(NULL AS VARCHAR), {expected} || ', found ' || CAST(COALESCE(c.currents, 0) AS VARCHAR) \
             FROM ({live}) AS l LEFT JOIN ({currents}) AS c ON {} WHERE {wrong}",
            spec.key_match("l", "c")
        ),
        params: vec![Param::Watermark, Param::Watermark],
    });
    // Keys in the history but not in the changes read.
    checks.push(Check {
        rule: "orphan",
        sql: format!(
            "SELECT DISTINCT {key_text}, CAST(NULL AS VARCHAR), 'key has history but no change up to the watermark' \
             FROM {history} AS h WHERE NOT EXISTS (SELECT 1 FROM {changes} AS c WHERE {} AND \
             c.{seq} <= ?)",
            spec.key_match("c", "h")
        ),
        params: vec![Param::Watermark],
    });
    checks.push(Check {
        rule: "current_flag",
        sql: format!(
            "SELECT {key_text}, {ver_text}, 'is_current must equal valid_to IS NULL' FROM {history} \
             WHERE {cur} IS NULL OR {cur} <> ({vt} IS NULL)"
        ),
        params: Vec::new(),
    });
    checks.push(Check {
        rule: "interval",
        sql: format!(
            "SELECT {key_text}, {ver_text}, 'valid_from ' || {} || ' is not before valid_to ' || {} \
             FROM {history} WHERE {vf} IS NULL OR ({vt} IS NOT NULL AND {vf} >= {vt})",
            spec.text(&vf),
            spec.text(&vt)
        ),
        params: Vec::new(),
    });
    let over = format!("OVER (PARTITION BY {part} ORDER BY {vf}, {ver})");
    checks.push(Check {
        rule: "version",
        sql: format!(
            "SELECT {key_text}, {ver_text}, 'versions are not 1, 2, 3… in time order (expected ' \
             || CAST(n AS VARCHAR) || ')' FROM (SELECT *, ROW_NUMBER() {over} AS n FROM {history}) \
             AS x WHERE {ver} IS NULL OR {ver} <> n"
        ),
        params: Vec::new(),
    });
    let gap_allowed = if spec.keep_deleted {
        "false".to_owned()
    } else {
        del.clone()
    };
    checks.push(Check {
        rule: "overlap",
        sql: format!(
            "SELECT {key_text}, {ver_text}, 'valid_to ' || COALESCE({}, 'NULL') || ' is after the \
             next version''s valid_from ' || {} FROM (SELECT *, LEAD({vf}) {over} AS next_from \
             FROM {history}) AS x WHERE next_from IS NOT NULL AND ({vt} IS NULL OR {vt} > next_from)",
            spec.text(&vt),
            spec.text("next_from")
        ),
        params: Vec::new(),
    });
    checks.push(Check {
        rule: "gap",
        sql: format!(
            "SELECT {key_text}, {ver_text}, 'valid_to ' || {} || ' leaves a gap before the next \
             version''s valid_from ' || {} FROM (SELECT *, LEAD({vf}) {over} AS next_from \
             FROM {history}) AS x WHERE next_from IS NOT NULL AND {vt} < next_from AND NOT \
             COALESCE({gap_allowed}, false)",
            spec.text(&vt),
            spec.text("next_from")
        ),
        params: Vec::new(),
    });
    checks
}

/// One rule of `--check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The rule's name, as reported.
    pub rule: &'static str,
    /// The query returning its violations.
    pub sql: String,
    /// Its parameters.
    pub params: Vec<Param>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dialect: Dialect, keep_deleted: bool) -> Spec {
        Spec {
            dialect,
            changes: TableName::qualified("public", "users__changes"),
            history: TableName::qualified("public", "users_history"),
            key: vec![("id".into(), WarehouseType::BigInt)],
            tracked: vec![
                ("name".into(), WarehouseType::Text),
                ("e\"vil".into(), WarehouseType::Text),
            ],
            keep_deleted,
        }
    }

    #[test]
    fn identifiers_are_quoted_even_when_hostile() {
        for d in [Dialect::DuckDb, Dialect::Snowflake] {
            let s = spec(d, false);
            let all: Vec<String> = apply_sql(&s, false)
                .into_iter()
                .map(|s| s.sql)
                .chain([create_history_sql(&s), as_of_sql(&s)])
                .chain(check_sql(&s).into_iter().map(|c| c.sql))
                .collect();
            let evil = quote_ident(d, "e\"vil");
            assert!(evil.contains("\"\""), "{evil}");
            for sql in &all {
                assert!(!sql.contains("e\"vil\""), "{sql}");
            }
            assert!(all.iter().any(|sql| sql.contains(&evil)));
        }
    }

    #[test]
    fn the_watermark_bounds_the_keys_unless_a_truncate_came() {
        let s = spec(Dialect::DuckDb, false);
        let steps = apply_sql(&s, false);
        assert_eq!(steps[0].params, [Param::Watermark, Param::High]);
        assert!(
            steps[0].sql.contains("\"_cdc_seq\" > ?"),
            "{}",
            steps[0].sql
        );
        let all = apply_sql(&s, true);
        assert_eq!(all[0].params, [Param::High]);
        assert!(!all[0].sql.contains("\"_cdc_seq\" > ?"), "{}", all[0].sql);
        // Every `?` of every step has a parameter.
        for step in steps.iter().chain(&all) {
            assert_eq!(
                step.sql.matches('?').count(),
                step.params.len(),
                "{}",
                step.sql
            );
        }
        for check in check_sql(&s) {
            assert_eq!(
                check.sql.matches('?').count(),
                check.params.len(),
                "{}",
                check.sql
            );
        }
    }

    #[test]
    fn keep_deleted_turns_deletes_into_versions() {
        let plain = versions_sql(&spec(Dialect::DuckDb, false));
        assert!(
            plain.ends_with("WHERE \"_cdc_operation\" <> 'd'"),
            "{plain}"
        );
        let keep = versions_sql(&spec(Dialect::DuckDb, true));
        assert!(!keep.ends_with("<> 'd'"), "{keep}");
        assert!(
            keep.contains("THEN \"__prev_name\" ELSE \"name\""),
            "{keep}"
        );
    }
}
