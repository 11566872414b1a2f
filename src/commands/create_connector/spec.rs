//! The pure part of `create-connector`: cdcctl's default Debezium config, the layering of
//! `--from-file`, flags and `--set`, names derived from the connector's, `table.include.list`
//! spelling, secret redaction, the key-by-key diff, and the short form of a Java trace. No IO.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::clients::connect::ConnectorConfig;
use crate::clients::postgres::TableName;

/// Debezium's Postgres connector class.
pub const POSTGRES_CONNECTOR: &str = "io.debezium.connector.postgresql.PostgresConnector";
/// Kafka Connect's JSON converter.
pub const JSON_CONVERTER: &str = "org.apache.kafka.connect.json.JsonConverter";
/// The publication `cdcctl setup-source` creates.
pub const SETUP_SOURCE_PUBLICATION: &str = "cdcctl_publication";
/// Default heartbeat: often enough that an idle table's slot advances within seconds.
pub const DEFAULT_HEARTBEAT_MS: u64 = 10_000;
/// Longest Postgres identifier (NAMEDATALEN - 1), which also bounds slot names.
const MAX_IDENTIFIER: usize = 63;

/// Settings cdcctl derives from the profile for [`defaults`].
#[derive(Debug, Clone)]
pub struct Profile<'a> {
    /// `database.hostname`.
    pub host: &'a str,
    /// `database.port`.
    pub port: u16,
    /// `database.user`.
    pub user: &'a str,
    /// `database.password`, if any.
    pub password: Option<&'a str>,
    /// `database.dbname`.
    pub database: &'a str,
    /// `database.sslmode`.
    pub sslmode: &'a str,
    /// `topic.prefix`.
    pub topic_prefix: &'a str,
}

/// cdcctl's defaults: every key the issue asks for, before file, flags and `--set`. The slot,
/// publication and tables are decided by the caller (they depend on Postgres and the worker).
pub fn defaults(p: &Profile<'_>) -> ConnectorConfig {
    let mut c = ConnectorConfig::new();
    let mut put = |k: &str, v: &str| {
        c.insert(k.to_string(), v.to_string());
    };
    put("connector.class", POSTGRES_CONNECTOR);
    // Debezium's Postgres connector reads one slot with one task.
    put("tasks.max", "1");
    put("database.hostname", p.host);
    put("database.port", &p.port.to_string());
    put("database.user", p.user);
    if let Some(pw) = p.password {
        put("database.password", pw);
    }
    put("database.dbname", p.database);
    put("database.sslmode", p.sslmode);
    put("topic.prefix", p.topic_prefix);
    put("plugin.name", "pgoutput");
    put("snapshot.mode", "initial");
    put("decimal.handling.mode", "precise");
    // Heartbeats let the slot's confirmed position advance while the captured tables are idle,
    // so it stops retaining WAL other databases write.
    put("heartbeat.interval.ms", &DEFAULT_HEARTBEAT_MS.to_string());
    put("tombstones.on.delete", "true");
    // The loader decodes values from the Connect schema (DESIGN.md "Debezium value decoding"),
    // so schemas stay on whatever the worker's defaults are.
    put("key.converter", JSON_CONVERTER);
    put("value.converter", JSON_CONVERTER);
    put("key.converter.schemas.enable", "true");
    put("value.converter.schemas.enable", "true");
    // Fail fast: with Debezium's defaults a busy or missing slot is retried for minutes while
    // the task still says RUNNING (STACK.md, "Debezium/Connect quirks"); with these it is
    // FAILED within seconds, which `--wait` and `health` can report.
    put("errors.max.retries", "0");
    put("slot.max.retries", "1");
    put("slot.retry.delay.ms", "1000");
    c
}

/// Slot and publication name derived from a connector name: `[a-z0-9_]`, prefixed `cdcctl_`
/// unless it already starts with `cdcctl`, at most 63 characters.
pub fn derived_name(connector: &str) -> String {
    let mut slug = String::new();
    for c in connector.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if !(c == '_' && slug.ends_with('_')) {
            slug.push(c);
        }
    }
    let slug = slug.trim_matches('_');
    let name = if slug.starts_with("cdcctl") {
        slug.to_string()
    } else if slug.is_empty() {
        "cdcctl".to_string()
    } else {
        format!("cdcctl_{slug}")
    };
    name.chars().take(MAX_IDENTIFIER).collect()
}

/// True when `name` is a valid replication slot name: `[a-z0-9_]{1,63}`.
pub fn is_valid_slot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IDENTIFIER
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

const REGEX_META: &[char] = &[
    '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
];

fn escape_regex(part: &str) -> String {
    let mut s = String::with_capacity(part.len());
    for c in part.chars() {
        if REGEX_META.contains(&c) {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// `table.include.list` for exact tables. Debezium reads each entry as a regular expression
/// matched against `schema.table`, so metacharacters inside names are escaped; the dot between
/// schema and table is left as is (it matches itself), which keeps ordinary names readable.
/// Debezium splits the list on commas, so a name with a comma cannot be listed.
pub fn include_list(tables: &[TableName]) -> Result<String, String> {
    let mut entries = Vec::new();
    for t in tables {
        if t.schema.contains(',') || t.name.contains(',') {
            return Err(format!(
                "table `{t}` has a comma in its name, which Debezium's `table.include.list` \
                 cannot express"
            ));
        }
        entries.push(format!(
            "{}.{}",
            escape_regex(&t.schema),
            escape_regex(&t.name)
        ));
    }
    Ok(entries.join(","))
}

/// The exact tables of a `table.include.list` written like [`include_list`] writes it, or
/// `None` when an entry is a real pattern (then cdcctl cannot know the tables).
pub fn parse_include_list(list: &str) -> Option<Vec<TableName>> {
    let mut tables = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut parts = vec![String::new()];
        let mut chars = entry.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let next = chars.next()?;
                    if !REGEX_META.contains(&next) {
                        return None;
                    }
                    parts.last_mut().expect("non-empty").push(next);
                }
                '.' => parts.push(String::new()),
                c if REGEX_META.contains(&c) => return None,
                c => parts.last_mut().expect("non-empty").push(c),
            }
        }
        match parts.as_slice() {
            [schema, name] if !schema.is_empty() && !name.is_empty() => {
                tables.push(TableName::new(schema.clone(), name.clone()));
            }
            _ => return None,
        }
    }
    Some(tables)
}

/// The topic Debezium writes a table's changes to: `<prefix>.<schema>.<table>`, with characters
/// Kafka does not allow in topic names replaced by `_` (as Debezium does).
pub fn topic_for(prefix: &str, table: &TableName) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!(
        "{}.{}.{}",
        clean(prefix),
        clean(&table.schema),
        clean(&table.name)
    )
}

/// A connector config read from `--from-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// `name`, if the file has one.
    pub name: Option<String>,
    /// The config keys (without `name`).
    pub config: ConnectorConfig,
}

/// Reads a connector config: Connect JSON (`{"name": ..., "config": {...}}` or a flat map) or
/// TOML (flat keys — quoted like `"topic.prefix"` or dotted, both work — or `name` plus a
/// `[config]` table). `.toml` files are TOML, `.json` files JSON, others whichever parses.
pub fn parse_config_file(file_name: &str, text: &str) -> Result<FileConfig, String> {
    let lower = file_name.to_ascii_lowercase();
    let value: serde_json::Value = if lower.ends_with(".toml") {
        toml_value(text)?
    } else if lower.ends_with(".json") {
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?
    } else {
        match serde_json::from_str(text) {
            Ok(v) => v,
            Err(json) => toml_value(text)
                .map_err(|toml| format!("neither JSON ({json}) nor TOML ({toml})"))?,
        }
    };
    let serde_json::Value::Object(mut top) = value else {
        return Err("expected an object of connector keys".into());
    };
    let name = match top.remove("name") {
        None => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => return Err(format!("`name` must be a string, got `{other}`")),
    };
    let body = match top.remove("config") {
        Some(serde_json::Value::Object(config)) => {
            // `{name, config, tasks, type}` as Connect returns it: the rest is ignored.
            top.retain(|k, _| !matches!(k.as_str(), "tasks" | "type"));
            if let Some(k) = top.keys().next() {
                return Err(format!(
                    "unexpected key `{k}` next to `config`; put connector keys inside `config`"
                ));
            }
            config
        }
        Some(other) => return Err(format!("`config` must be an object, got `{other}`")),
        None => top,
    };
    let mut config = ConnectorConfig::new();
    flatten("", &serde_json::Value::Object(body), &mut config)?;
    let name = match (name, config.remove("name")) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!("`name` is `{a}` but `config.name` is `{b}`"));
        }
        (a, b) => a.or(b),
    };
    Ok(FileConfig { name, config })
}

fn toml_value(text: &str) -> Result<serde_json::Value, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("not valid TOML at line {line}: {msg}")
            }
            None => format!("not valid TOML: {msg}"),
        }
    })?;
    serde_json::to_value(table).map_err(|e| e.to_string())
}

/// Flattens nested objects (TOML dotted keys) to `a.b.c` keys; scalars become strings.
fn flatten(
    prefix: &str,
    value: &serde_json::Value,
    out: &mut ConnectorConfig,
) -> Result<(), String> {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out)?;
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        Value::Number(n) => {
            out.insert(prefix.to_string(), n.to_string());
        }
        Value::Bool(b) => {
            out.insert(prefix.to_string(), b.to_string());
        }
        Value::Null => {
            return Err(format!("`{prefix}` is null; leave the key out instead"));
        }
        Value::Array(items) => {
            // Connect lists are comma separated strings.
            let mut parts = Vec::new();
            for item in items {
                match item {
                    Value::String(s) => parts.push(s.clone()),
                    Value::Number(n) => parts.push(n.to_string()),
                    Value::Bool(b) => parts.push(b.to_string()),
                    _ => return Err(format!("`{prefix}`: lists may hold only scalars")),
                }
            }
            out.insert(prefix.to_string(), parts.join(","));
        }
    }
    Ok(())
}

/// True for keys whose values are secrets: names with password, secret, token, credentials,
/// private key or JAAS config in them, and keys the plugin declares as `PASSWORD`.
pub fn is_secret_key(key: &str, password_keys: &[String]) -> bool {
    let k = key.to_ascii_lowercase();
    crate::config::is_secret_property(&k)
        || ["jaas", "credential", "apikey", "api.key"]
            .iter()
            .any(|s| k.contains(s))
        || password_keys.iter().any(|p| p == key)
}

/// The config with every secret value replaced by `****`.
pub fn redact(config: &ConnectorConfig, password_keys: &[String]) -> BTreeMap<String, String> {
    config
        .iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k, password_keys) {
                "****".to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// How a key differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Only in the new config.
    Added,
    /// Only in the current config.
    Removed,
    /// In both, with different values.
    Changed,
}

/// One key of a diff; secret values are `****`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffEntry {
    /// Config key.
    pub key: String,
    /// `added`, `removed` or `changed`.
    pub change: Change,
    /// Current value (null when added).
    pub old: Option<String>,
    /// New value (null when removed).
    pub new: Option<String>,
}

/// Key-by-key difference between the current and the new config, in key order. `name` is not
/// compared (Connect adds it to every stored config).
pub fn diff(
    current: &ConnectorConfig,
    new: &ConnectorConfig,
    password_keys: &[String],
) -> Vec<DiffEntry> {
    let show = |k: &str, v: &String| {
        if is_secret_key(k, password_keys) {
            "****".to_string()
        } else {
            v.clone()
        }
    };
    let mut keys: Vec<&String> = current.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| k.as_str() != "name")
        .filter_map(|k| match (current.get(k), new.get(k)) {
            (None, Some(n)) => Some(DiffEntry {
                key: k.clone(),
                change: Change::Added,
                old: None,
                new: Some(show(k, n)),
            }),
            (Some(o), None) => Some(DiffEntry {
                key: k.clone(),
                change: Change::Removed,
                old: Some(show(k, o)),
                new: None,
            }),
            (Some(o), Some(n)) if o != n => Some(DiffEntry {
                key: k.clone(),
                change: Change::Changed,
                old: Some(show(k, o)),
                new: Some(show(k, n)),
            }),
            _ => None,
        })
        .collect()
}

/// The meaningful lines of a Java stack trace: the exception and each `Caused by:`, without
/// the `at ...` frames, at most six lines of at most 300 characters.
pub fn trace_summary(trace: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, line) in trace.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("at ") || line.starts_with("...") {
            continue;
        }
        if i == 0 || line.starts_with("Caused by:") || line.starts_with("Suppressed:") {
            let mut text: String = line.chars().take(300).collect();
            if line.chars().count() > 300 {
                text.push('…');
            }
            lines.push(text);
        }
        if lines.len() == 6 {
            break;
        }
    }
    lines
}

/// A Postgres LSN as Postgres prints it: `16/B374D848`.
pub fn format_lsn(lsn: u64) -> String {
    let mut s = String::new();
    let _ = write!(s, "{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile<'static> {
        Profile {
            host: "127.0.0.1",
            port: 55432,
            user: "cdc",
            password: Some("cdcpass"),
            database: "app",
            sslmode: "prefer",
            topic_prefix: "cdc",
        }
    }

    #[test]
    fn defaults_have_the_issue_keys() {
        let c = defaults(&profile());
        for (k, v) in [
            ("connector.class", POSTGRES_CONNECTOR),
            ("plugin.name", "pgoutput"),
            ("topic.prefix", "cdc"),
            ("database.port", "55432"),
            ("value.converter.schemas.enable", "true"),
            ("heartbeat.interval.ms", "10000"),
            ("tombstones.on.delete", "true"),
            ("errors.max.retries", "0"),
            ("slot.max.retries", "1"),
            ("slot.retry.delay.ms", "1000"),
            ("decimal.handling.mode", "precise"),
            ("snapshot.mode", "initial"),
        ] {
            assert_eq!(c.get(k).map(String::as_str), Some(v), "{k}");
        }
        let no_pw = Profile {
            password: None,
            ..profile()
        };
        assert!(!defaults(&no_pw).contains_key("database.password"));
    }

    #[test]
    fn names_derive_from_the_connector() {
        assert_eq!(derived_name("pg-cdc"), "cdcctl_pg_cdc");
        assert_eq!(derived_name("cdcctl"), "cdcctl");
        assert_eq!(derived_name("CDCctl Orders!"), "cdcctl_orders");
        assert_eq!(derived_name("--"), "cdcctl");
        let long = derived_name(&"x".repeat(100));
        assert_eq!(long.len(), 63);
        assert!(is_valid_slot_name(&long));
        assert!(!is_valid_slot_name("Bad-Slot"));
    }

    #[test]
    fn include_lists_escape_and_round_trip() {
        let tables = vec![
            TableName::new("public", "users"),
            TableName::new("Sales Dept", "My \"Odd\" Table"),
            TableName::new("s", "a.b$c"),
        ];
        let list = include_list(&tables).unwrap();
        assert_eq!(list, "public.users,Sales Dept.My \"Odd\" Table,s.a\\.b\\$c");
        assert_eq!(parse_include_list(&list).unwrap(), tables);
        assert_eq!(parse_include_list("public.users_.*"), None);
        assert_eq!(parse_include_list("users"), None);
        assert!(include_list(&[TableName::new("public", "a,b")]).is_err());
    }

    #[test]
    fn topics_replace_what_kafka_refuses() {
        assert_eq!(
            topic_for("cdc", &TableName::new("Sales Dept", "My \"Odd\" Table")),
            "cdc.Sales_Dept.My__Odd__Table"
        );
    }

    #[test]
    fn config_files_in_every_shape() {
        let nested = r#"{"name": "pg", "config": {"topic.prefix": "x", "tasks.max": 1},
                         "tasks": [], "type": "source"}"#;
        let f = parse_config_file("c.json", nested).unwrap();
        assert_eq!(f.name.as_deref(), Some("pg"));
        assert_eq!(f.config["tasks.max"], "1");
        assert_eq!(f.config.len(), 2);

        let flat = r#"{"name": "pg", "snapshot.mode": "no_data"}"#;
        let f = parse_config_file("c", flat).unwrap();
        assert_eq!(f.name.as_deref(), Some("pg"));
        assert_eq!(f.config["snapshot.mode"], "no_data");

        let toml = "name = \"pg\"\n\"topic.prefix\" = \"t\"\nheartbeat.interval.ms = 5000\n\
                    tombstones.on.delete = false\n";
        let f = parse_config_file("c.toml", toml).unwrap();
        assert_eq!(f.config["topic.prefix"], "t");
        assert_eq!(f.config["heartbeat.interval.ms"], "5000");
        assert_eq!(f.config["tombstones.on.delete"], "false");

        let toml =
            "name = \"pg\"\n[config]\n\"table.include.list\" = [\"public.a\", \"public.b\"]\n";
        let f = parse_config_file("c.toml", toml).unwrap();
        assert_eq!(f.config["table.include.list"], "public.a,public.b");

        assert!(parse_config_file("c.json", "[1]").is_err());
        assert!(
            parse_config_file("c.toml", "a = \n")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(parse_config_file("c.json", r#"{"name":"a","config":{"name":"b"}}"#).is_err());
        assert!(parse_config_file("c.json", r#"{"config":{}, "extra": 1}"#).is_err());
    }

    #[test]
    fn secrets_are_redacted_in_config_and_diff() {
        let pw = vec!["database.password".to_string()];
        let mut a = ConnectorConfig::new();
        a.insert("database.password".into(), "old-secret".into());
        a.insert("snapshot.mode".into(), "initial".into());
        a.insert("gone".into(), "x".into());
        a.insert("name".into(), "n".into());
        let mut b = a.clone();
        b.insert("database.password".into(), "new-secret".into());
        b.insert("snapshot.mode".into(), "no_data".into());
        b.remove("gone");
        b.remove("name");
        b.insert(
            "sasl.jaas.config".into(),
            "user=\"x\" password=\"y\"".into(),
        );
        let d = diff(&a, &b, &pw);
        let text = format!("{d:?}");
        assert!(
            !text.contains("secret") && !text.contains("password=\"y\""),
            "{text}"
        );
        let keys: Vec<(&str, Change)> = d.iter().map(|e| (e.key.as_str(), e.change)).collect();
        assert_eq!(
            keys,
            [
                ("database.password", Change::Changed),
                ("gone", Change::Removed),
                ("sasl.jaas.config", Change::Added),
                ("snapshot.mode", Change::Changed),
            ]
        );
        assert_eq!(redact(&b, &pw)["database.password"], "****");
        assert!(diff(&a, &a, &pw).is_empty());
    }

    #[test]
    fn traces_keep_exception_and_causes() {
        let cause = "Caused by: org.postgresql.util.PSQLException: ERROR: replication slot \"s\" \
                     is active for PID 1";
        let trace = format!(
            "org.apache.kafka.connect.errors.ConnectException: An exception occurred.\n\
             \tat io.debezium.pipeline.ErrorHandler.setProducerThrowable(ErrorHandler.java:67)\n\
             Caused by: io.debezium.DebeziumException: Failed to start replication stream\n\
             \tat x.y(Z.java:1)\n\t... 10 more\n{cause}\n"
        );
        assert_eq!(
            trace_summary(&trace),
            [
                "org.apache.kafka.connect.errors.ConnectException: An exception occurred.",
                "Caused by: io.debezium.DebeziumException: Failed to start replication stream",
                cause,
            ]
        );
        assert_eq!(format_lsn(30_700_376), "0/1D47358");
        assert_eq!(format_lsn((0x16 << 32) | 0xB374_D848), "16/B374D848");
    }
}
