//! `cdcctl create-connector` (alias `connector`): apply a Debezium Postgres connector through
//! the Kafka Connect REST API, and the lifecycle verbs (`list`, `status`, `restart`, `pause`,
//! `resume`, `delete`, in `lifecycle.rs`).
//!
//! Applying: the config is cdcctl's defaults (`spec.rs`) < `--from-file` < flags < `--set`;
//! tables, slot and publication default to the connector's current ones, else are asked for
//! (tables, on a terminal) or derived. It is always validated by the worker first: field errors
//! exit 2 and nothing changes. Then: absent → created, equal → `unchanged`, different → the
//! key-by-key diff, a confirmation, and the update. `--wait` follows the status until RUNNING.
//! Secrets are `****` in everything printed.

mod lifecycle;
pub mod spec;
mod wait;

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;
use tokio_postgres::Client;

use crate::cli::{ApplyConnectorArgs, CreateConnectorArgs};
use crate::clients::connect::{ConnectClient, ConnectorConfig, PluginInfo};
use crate::clients::postgres::{
    Postgres, TableName, find_publication, parse_table_list, resolve_table,
};
use crate::config::{Config, PostgresConfig};
use crate::error::{CliError, Outcome};
use crate::output::Output;

use spec::{Change, DiffEntry, Profile};
use wait::{Goal, StateReport, WaitOutcome, WaitReport};

/// Runs `create-connector`: apply without a verb, else the verb.
pub async fn run(args: &CreateConnectorArgs, config: &Config, out: &Output) -> Result<Outcome> {
    match &args.verb {
        None => apply(&args.apply, config, out).await,
        Some(verb) => lifecycle::run(verb, config, out).await,
    }
}

/// The Connect client of the profile; a malformed URL is a configuration error (exit 2).
fn connect_client(config: &Config) -> Result<ConnectClient, CliError> {
    ConnectClient::new(&config.connect).map_err(|e| {
        let origin = config
            .settings()
            .iter()
            .find(|v| v.key == "connect.url")
            .map(|v| format!("{} {}", v.source, v.origin).trim().to_string())
            .unwrap_or_default();
        CliError::ConfigValue {
            key: "connect.url".into(),
            origin,
            message: e.to_string(),
        }
    })
}

fn usage(message: impl Into<String>, hint: impl Into<String>) -> CliError {
    CliError::Usage {
        message: message.into(),
        hint: Some(hint.into()),
    }
}

/// What applying did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyStatus {
    /// The connector did not exist and was created.
    Created,
    /// The config differed and was replaced.
    Updated,
    /// The config was already the same.
    Unchanged,
    /// `--dry-run`: would be created.
    WouldCreate,
    /// `--dry-run`: would be updated.
    WouldUpdate,
    /// The worker rejected the config (exit 2, nothing changed).
    Invalid,
}

/// One field error of the validation.
#[derive(Debug, Clone, Serialize)]
pub struct FieldErrorRow {
    /// Config key.
    pub field: String,
    /// The value given (`****` for secrets; null when the key was not given).
    pub value: Option<String>,
    /// The worker's message, verbatim.
    pub message: String,
}

/// `cdcctl create-connector --output json`.
#[derive(Debug, Serialize)]
pub struct CreateConnectorReport {
    /// Connector name.
    pub connector: String,
    /// Kafka Connect URL (credentials removed).
    pub connect_url: String,
    /// Version of the Kafka Connect worker, e.g. `3.9.0`.
    pub worker_version: String,
    /// Connector plugin class.
    pub plugin_class: String,
    /// Version of the plugin on the worker, e.g. `3.6.3.Final`.
    pub plugin_version: Option<String>,
    /// `created`, `updated`, `unchanged`, `would_create`, `would_update` or `invalid`.
    pub status: ApplyStatus,
    /// True with `--dry-run`: nothing was changed.
    pub dry_run: bool,
    /// The config applied (or that would be), every key, secrets as `****`.
    pub config: BTreeMap<String, String>,
    /// Difference from the connector's current config (`key`, `change`
    /// added/removed/changed, `old`, `new`; secrets as `****`); empty when created.
    pub diff: Vec<DiffEntry>,
    /// The worker's field errors (status `invalid`).
    pub validation_errors: Vec<FieldErrorRow>,
    /// Captured tables, `schema.table`, when cdcctl knows them exactly.
    pub tables: Vec<String>,
    /// Their topics, `<prefix>.<schema>.<table>`.
    pub topics: Vec<String>,
    /// Replication slot (`slot.name`).
    pub slot: Option<String>,
    /// Publication (`publication.name`) and how Debezium treats it
    /// (`publication.autocreate.mode`).
    pub publication: Option<String>,
    /// `filtered` (Debezium creates it and keeps it equal to the tables) or `disabled` (used as
    /// is).
    pub publication_mode: Option<String>,
    /// Decisions and warnings worth knowing.
    pub notes: Vec<String>,
    /// How `--wait` ended; null without it.
    pub wait: Option<WaitReport>,
    /// The connector's state when the command ended; null without `--wait`.
    pub state: Option<StateReport>,
    /// The diff was already printed above a confirmation prompt (text output only).
    #[serde(skip)]
    diff_shown: bool,
}

/// Applies the connector.
async fn apply(args: &ApplyConnectorArgs, config: &Config, out: &Output) -> Result<Outcome> {
    let connect = connect_client(config)?;
    let file = match &args.from_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                usage(
                    format!("cannot read `--from-file {}`: {e}", path.display()),
                    "check the path",
                )
            })?;
            let name = path
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned());
            Some(spec::parse_config_file(&name, &text).map_err(|message| {
                usage(
                    format!("invalid `--from-file {}`: {message}", path.display()),
                    "write Connect JSON (`{\"name\": ..., \"config\": {...}}` or a flat map) or \
                     TOML",
                )
            })?)
        }
        None => None,
    };
    let mut set = ConnectorConfig::new();
    for (k, v) in &args.set {
        if k == "name" {
            return Err(usage(
                "`--set name=...` cannot rename a connector",
                "use `--name NAME`",
            )
            .into());
        }
        set.insert(k.clone(), v.clone());
    }
    let name = args
        .name
        .clone()
        .or_else(|| file.as_ref().and_then(|f| f.name.clone()))
        .unwrap_or_else(|| config.connect.connector.clone());
    if name.trim().is_empty() {
        return Err(usage("the connector name is empty", "pass `--name NAME`").into());
    }

    let worker = connect
        .root()
        .await
        .context("cannot read the Kafka Connect worker's version")?;
    let existing = connect
        .find_config(&name)
        .await
        .with_context(|| format!("cannot read connector `{name}`"))?;

    // The database the connector will read decides where tables, slot and publication are
    // looked up; only the file or `--set` can make it differ from the profile's.
    let file_cfg = file.map(|f| f.config).unwrap_or_default();
    let dbname = set
        .get("database.dbname")
        .or_else(|| file_cfg.get("database.dbname"))
        .cloned()
        .unwrap_or_else(|| config.postgres.database.clone());
    let pg_cfg = PostgresConfig {
        database: dbname.clone(),
        ..config.postgres.clone()
    };
    let pg = Postgres::connect(&pg_cfg).await?;
    let db = pg.client();

    let mut notes = Vec::new();
    let mut known_tables: Option<Vec<TableName>> = None;
    let mut flags = ConnectorConfig::new();
    if let Some(list) = &args.tables {
        let tables = resolve_tables(db, list, &dbname).await?;
        flags.insert("table.include.list".into(), include_list(&tables)?);
        known_tables = Some(tables);
    }
    let mut flag = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            flags.insert(key.to_string(), v);
        }
    };
    flag("slot.name", args.slot.clone());
    flag("publication.name", args.publication.clone());
    flag("topic.prefix", args.topic_prefix.clone());
    flag(
        "snapshot.mode",
        args.snapshot_mode.map(|m| m.as_debezium().to_string()),
    );
    flag(
        "decimal.handling.mode",
        args.decimal_handling.map(|m| m.as_debezium().to_string()),
    );
    flag(
        "heartbeat.interval.ms",
        args.heartbeat.map(|d| d.as_millis().to_string()),
    );
    flag("database.hostname", args.database_hostname.clone());
    flag("database.port", args.database_port.map(|p| p.to_string()));
    if args.no_schemas {
        flag("key.converter.schemas.enable", Some("false".into()));
        flag("value.converter.schemas.enable", Some("false".into()));
    }
    let mut user = file_cfg;
    user.extend(flags);
    user.extend(set);

    let profile = Profile {
        host: &config.postgres.host,
        port: config.postgres.port,
        user: &config.postgres.user,
        password: config.postgres.password.as_ref().map(|p| p.expose()),
        database: &dbname,
        sslmode: &config.postgres.sslmode,
        topic_prefix: &config.kafka.topic_prefix,
    };
    let mut fin = spec::defaults(&profile);
    let current = |key: &str| existing.as_ref().and_then(|e| e.get(key)).cloned();

    // Tables: named, else the connector's current ones, else asked for.
    let tables_list = match user.get("table.include.list") {
        Some(list) => list.clone(),
        None => match current("table.include.list") {
            Some(list) => list,
            None => {
                let tables = ask_tables(db, out, &dbname).await?;
                let list = include_list(&tables)?;
                known_tables = Some(tables);
                list
            }
        },
    };
    if known_tables.is_none() {
        known_tables = spec::parse_include_list(&tables_list);
    }
    fin.insert("table.include.list".into(), tables_list);
    if let Some(tables) = &known_tables {
        for t in tables {
            if !has_primary_key(db, t).await? {
                notes.push(format!(
                    "`{t}` has no primary key: its events have no key, so the loader cannot \
                     apply updates and deletes to it"
                ));
            }
        }
    }

    let derived = spec::derived_name(&name);
    let slot = user
        .get("slot.name")
        .cloned()
        .or_else(|| current("slot.name"))
        .unwrap_or_else(|| derived.clone());
    check_slot(db, &slot, &dbname, current("slot.name").as_deref()).await?;
    fin.insert("slot.name".into(), slot.clone());

    let publication = match user
        .get("publication.name")
        .cloned()
        .or_else(|| current("publication.name"))
    {
        Some(p) => p,
        None => {
            let shared = find_publication(db, spec::SETUP_SOURCE_PUBLICATION).await?;
            match (&shared, &known_tables) {
                (Some(state), Some(tables)) if state.covers(tables) => {
                    notes.push(format!(
                        "using publication `{}` (created by `cdcctl setup-source`), which \
                         publishes every chosen table",
                        spec::SETUP_SOURCE_PUBLICATION
                    ));
                    spec::SETUP_SOURCE_PUBLICATION.to_string()
                }
                _ => derived.clone(),
            }
        }
    };
    let mode = match user.get("publication.autocreate.mode") {
        Some(m) => m.clone(),
        None => {
            let owned = publication == derived
                || (current("publication.name").as_deref() == Some(publication.as_str())
                    && current("publication.autocreate.mode").as_deref() == Some("filtered"));
            publication_mode(db, &publication, owned, known_tables.as_deref(), &mut notes).await?
        }
    };
    fin.insert("publication.name".into(), publication.clone());
    fin.insert("publication.autocreate.mode".into(), mode.clone());
    fin.extend(user);

    let class = fin
        .get("connector.class")
        .cloned()
        .unwrap_or_else(|| spec::POSTGRES_CONNECTOR.to_string());
    let plugins = connect
        .plugins()
        .await
        .context("cannot list the worker's connector plugins")?;
    let plugin = find_plugin(&plugins, &class).ok_or_else(|| {
        usage(
            format!("the Kafka Connect worker has no connector plugin `{class}`"),
            format!(
                "installed: {}",
                plugins
                    .iter()
                    .map(|p| format!("`{}`", p.class))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;

    let mut to_validate = fin.clone();
    to_validate.insert("name".into(), name.clone());
    let validation = connect
        .validate(&plugin.class, &to_validate)
        .await
        .context("cannot validate the connector config")?;
    let password_keys = validation.password_keys();
    let prefix = fin.get("topic.prefix").cloned().unwrap_or_default();
    let tables = known_tables.clone().unwrap_or_default();
    let mut report = CreateConnectorReport {
        connector: name.clone(),
        connect_url: connect.endpoint().to_string(),
        worker_version: worker.version,
        plugin_class: plugin.class.clone(),
        plugin_version: plugin.version.clone(),
        status: ApplyStatus::Invalid,
        dry_run: args.dry_run,
        config: spec::redact(&fin, &password_keys),
        diff: existing
            .as_ref()
            .map(|e| spec::diff(e, &fin, &password_keys))
            .unwrap_or_default(),
        validation_errors: Vec::new(),
        tables: tables.iter().map(ToString::to_string).collect(),
        topics: tables.iter().map(|t| spec::topic_for(&prefix, t)).collect(),
        slot: Some(slot),
        publication: Some(publication),
        publication_mode: Some(mode),
        notes,
        wait: None,
        state: None,
        diff_shown: false,
    };
    let errors = validation.field_errors();
    if !errors.is_empty() {
        report.validation_errors = errors
            .into_iter()
            .map(|e| FieldErrorRow {
                value: report.config.get(&e.field).cloned(),
                field: e.field,
                message: e.message,
            })
            .collect();
        print(out, &report)?;
        let n = report.validation_errors.len();
        return Err(usage(
            format!(
                "Kafka Connect rejected the config of connector `{name}`: {n} field error{}; \
                 nothing was {}",
                if n == 1 { "" } else { "s" },
                if existing.is_some() {
                    "changed"
                } else {
                    "created"
                }
            ),
            "fix the values above (`--set KEY=VALUE`, `--from-file`, or the flag that sets \
             them) and re-run",
        )
        .into());
    }

    report.status = match (&existing, report.diff.is_empty(), args.dry_run) {
        (None, _, false) => ApplyStatus::Created,
        (None, _, true) => ApplyStatus::WouldCreate,
        (Some(_), true, _) => ApplyStatus::Unchanged,
        (Some(_), false, false) => ApplyStatus::Updated,
        (Some(_), false, true) => ApplyStatus::WouldUpdate,
    };
    if args.dry_run {
        print(out, &report)?;
        return Ok(Outcome::Ok);
    }
    if report.status == ApplyStatus::Updated {
        if !out.is_json() {
            out.report(&(), |w| {
                write_header(report_header(&report), w)?;
                writeln!(w)?;
                write_diff(out, &report.diff, w)
            })
            .context("cannot write the diff")?;
            report.diff_shown = true;
        }
        let n = report.diff.len();
        let question = format!(
            "update connector `{name}` ({n} key{} change{})?",
            if n == 1 { "" } else { "s" },
            if n == 1 { "s" } else { "" }
        );
        if !out.confirm(&question)? {
            return Err(usage(
                "update cancelled; nothing was changed",
                "re-run and answer yes, or pass `--yes`",
            )
            .into());
        }
    }
    if report.status != ApplyStatus::Unchanged {
        connect
            .put_config(&name, &fin)
            .await
            .with_context(|| format!("cannot apply connector `{name}`"))?;
    }

    let mut outcome = Outcome::Ok;
    if args.wait.enabled(out.stdout_is_terminal()) {
        // After an update the old tasks may still say RUNNING: wait for tasks with the new
        // values first.
        let expect: BTreeMap<String, Option<String>> = match report.status {
            ApplyStatus::Updated => report
                .diff
                .iter()
                .map(|d| {
                    let v = match d.change {
                        Change::Removed => None,
                        _ => fin.get(&d.key).cloned(),
                    };
                    (d.key.clone(), v)
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        let fresh = wait::Fresh {
            grace: if report.status == ApplyStatus::Updated {
                wait::GRACE
            } else {
                std::time::Duration::ZERO
            },
            expect,
        };
        let (waited, state) = wait::wait_for(
            &connect,
            &name,
            Goal::Running,
            args.wait.timeout,
            out,
            &fresh,
        )
        .await?;
        if waited.outcome != WaitOutcome::Reached {
            outcome = Outcome::Failed;
        }
        report.wait = Some(waited);
        report.state = state;
    }
    print(out, &report)?;
    Ok(outcome)
}

/// `table.include.list` of exact tables, or a usage error for names Debezium cannot list.
fn include_list(tables: &[TableName]) -> Result<String, CliError> {
    spec::include_list(tables).map_err(|m| {
        usage(
            m,
            "rename the table, or list it with `--set table.include.list=REGEX`",
        )
    })
}

/// Resolves `--tables` against the catalog; a missing table is a usage error.
async fn resolve_tables(db: &Client, list: &str, database: &str) -> Result<Vec<TableName>> {
    let refs = parse_table_list(list).map_err(|message| {
        usage(
            format!("invalid `--tables`: {message}"),
            "write `table`, `schema.table` or `\"Quoted Name\"`, comma separated",
        )
    })?;
    let mut tables = Vec::new();
    for r in refs {
        match resolve_table(db, &r).await? {
            Some(t) => {
                if !tables.contains(&t) {
                    tables.push(t);
                }
            }
            None => {
                let typed = match &r.schema {
                    Some(s) => format!("{}.{}", s.text, r.name.text),
                    None => r.name.text.clone(),
                };
                return Err(usage(
                    format!("table `{typed}` does not exist in database `{database}`"),
                    "check the name (unqualified names are in `public`; quote names with \
                     capitals or spaces)",
                )
                .into());
            }
        }
    }
    if tables.is_empty() {
        return Err(usage("`--tables` names no table", "pass `--tables LIST`").into());
    }
    Ok(tables)
}

/// On a terminal: a choice among the tables that have a primary key. Elsewhere: exit 2 naming
/// the flag.
async fn ask_tables(db: &Client, out: &Output, database: &str) -> Result<Vec<TableName>> {
    let rows = db
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_%' \
               AND EXISTS (SELECT 1 FROM pg_constraint k \
                           WHERE k.conrelid = c.oid AND k.contype = 'p') \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .context("cannot list the tables")?;
    let tables: Vec<TableName> = rows
        .iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    if tables.is_empty() {
        return Err(usage(
            format!("database `{database}` has no table with a primary key to capture"),
            "create tables first (`cdcctl setup-source --demo` makes four), or pass \
             `--tables LIST`",
        )
        .into());
    }
    let items: Vec<String> = tables.iter().map(ToString::to_string).collect();
    let picked = out.multi_select(
        "Which tables should the connector capture? (space selects, enter confirms)",
        &items,
        "--tables LIST",
    )?;
    if picked.is_empty() {
        return Err(usage(
            "no table chosen",
            "pick at least one, or pass `--tables LIST`",
        )
        .into());
    }
    Ok(picked.into_iter().map(|i| tables[i].clone()).collect())
}

async fn has_primary_key(db: &Client, t: &TableName) -> Result<bool> {
    let row = db
        .query_opt(
            "SELECT 1 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND k.contype = 'p'",
            &[&t.schema, &t.name],
        )
        .await
        .context("cannot read primary keys")?;
    Ok(row.is_some())
}

/// A slot must be a pgoutput slot of this database, and not held by something else (Debezium
/// would otherwise fail with "replication slot is active", after retries).
async fn check_slot(
    db: &Client,
    slot: &str,
    database: &str,
    current_slot: Option<&str>,
) -> Result<()> {
    if !spec::is_valid_slot_name(slot) {
        return Err(usage(
            format!("`{slot}` is not a valid replication slot name"),
            "slot names are 1-63 characters of `a-z`, `0-9` and `_` (`--slot NAME`)",
        )
        .into());
    }
    let row = db
        .query_opt(
            "SELECT plugin::text, database::text, active_pid \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .context("cannot read replication slots")?;
    let Some(row) = row else { return Ok(()) };
    let plugin: Option<String> = row.get(0);
    let slot_db: Option<String> = row.get(1);
    let active_pid: Option<i32> = row.get(2);
    if plugin.as_deref() != Some("pgoutput") || slot_db.as_deref() != Some(database) {
        return Err(usage(
            format!(
                "slot `{slot}` exists but is not a pgoutput slot of database `{database}` \
                 (plugin {}, database {})",
                plugin.as_deref().unwrap_or("none"),
                slot_db.as_deref().unwrap_or("none")
            ),
            "choose another `--slot`, or drop that slot first",
        )
        .into());
    }
    if let Some(pid) = active_pid
        && current_slot != Some(slot)
    {
        return Err(usage(
            format!("slot `{slot}` is in use by the process with pid {pid}"),
            "another connector or client reads it: choose another `--slot`, or stop that reader",
        )
        .into());
    }
    Ok(())
}

/// `publication.autocreate.mode`. Debezium's `filtered` creates the publication, and also
/// rewrites an existing one to exactly the connector's tables (observed with 3.6: tables are
/// removed), so it is used only for a publication that is absent or this connector's own. One
/// that something else made (`setup-source`, a DBA) is used as is (`disabled`), and must then
/// publish every table.
async fn publication_mode(
    db: &Client,
    publication: &str,
    owned: bool,
    tables: Option<&[TableName]>,
    notes: &mut Vec<String>,
) -> Result<String> {
    let state = find_publication(db, publication).await?;
    let Some(state) = state.filter(|_| !owned) else {
        return Ok("filtered".into());
    };
    match tables {
        Some(tables) if !state.covers(tables) => {
            let missing: Vec<String> = tables
                .iter()
                .filter(|t| !state.tables.contains(t))
                .map(ToString::to_string)
                .collect();
            Err(usage(
                format!(
                    "publication `{publication}` exists but does not publish {}",
                    missing.join(", ")
                ),
                format!(
                    "add them with `cdcctl setup-source --publication {publication} --tables \
                     {}`, or choose another `--publication`",
                    missing.join(",")
                ),
            )
            .into())
        }
        Some(_) => Ok("disabled".into()),
        None => {
            notes.push(format!(
                "publication `{publication}` is used as is: make sure it publishes every table \
                 of `table.include.list`"
            ));
            Ok("disabled".into())
        }
    }
}

/// The installed plugin for a class, full name or alias (`PostgresConnector`, `Postgres`).
fn find_plugin<'a>(plugins: &'a [PluginInfo], class: &str) -> Option<&'a PluginInfo> {
    plugins.iter().find(|p| {
        p.class == class
            || p.class.ends_with(&format!(".{class}"))
            || p.class.ends_with(&format!(".{class}Connector"))
    })
}

fn change_word(c: Change) -> &'static str {
    match c {
        Change::Added => "added",
        Change::Removed => "removed",
        Change::Changed => "changed",
    }
}

fn write_diff(out: &Output, diff: &[DiffEntry], w: &mut dyn Write) -> std::io::Result<()> {
    let mut table = out.table(["KEY", "CHANGE", "CURRENT", "NEW"]);
    for d in diff {
        table.add_row([
            d.key.clone(),
            change_word(d.change).to_string(),
            d.old.clone().unwrap_or_default(),
            d.new.clone().unwrap_or_default(),
        ]);
    }
    write!(w, "{}", out.render_table(&table))
}

/// `Kafka Connect 3.9.0 · PostgresConnector 3.6.3.Final · connector pg-cdc`.
fn report_header(report: &CreateConnectorReport) -> String {
    let class = report
        .plugin_class
        .rsplit('.')
        .next()
        .unwrap_or(&report.plugin_class);
    match &report.plugin_version {
        Some(v) => format!(
            "Kafka Connect {} · {class} {v} · connector {}",
            report.worker_version, report.connector
        ),
        None => format!(
            "Kafka Connect {} · {class} · connector {}",
            report.worker_version, report.connector
        ),
    }
}

fn write_header(header: String, w: &mut dyn Write) -> std::io::Result<()> {
    writeln!(w, "{header}")
}

fn print(out: &Output, report: &CreateConnectorReport) -> Result<()> {
    out.report(report, |w| {
        if !report.diff_shown {
            write_header(report_header(report), w)?;
        }
        if !report.validation_errors.is_empty() {
            writeln!(w)?;
            let mut table = out.table(["FIELD", "VALUE", "ERROR"]);
            for e in &report.validation_errors {
                table.add_row([
                    e.field.clone(),
                    e.value.clone().unwrap_or_else(|| "(not set)".into()),
                    e.message.clone(),
                ]);
            }
            write!(w, "{}", out.render_table(&table))?;
            return Ok(());
        }
        if report.dry_run {
            writeln!(w)?;
            let mut table = out.table(["KEY", "VALUE"]);
            for (k, v) in &report.config {
                table.add_row([k.clone(), v.clone()]);
            }
            write!(w, "{}", out.render_table(&table))?;
        }
        if !report.diff.is_empty() && !report.diff_shown {
            writeln!(w)?;
            write_diff(out, &report.diff, w)?;
        }
        writeln!(w)?;
        let n = report.diff.len();
        let keys = format!("{n} key{}", if n == 1 { "" } else { "s" });
        match report.status {
            ApplyStatus::Created => writeln!(w, "created connector {}", report.connector)?,
            ApplyStatus::Updated => {
                writeln!(w, "updated connector {} ({keys} changed)", report.connector)?
            }
            ApplyStatus::Unchanged => writeln!(w, "connector {} unchanged", report.connector)?,
            ApplyStatus::WouldCreate => writeln!(
                w,
                "-- dry run: connector {} would be created (nothing was changed)",
                report.connector
            )?,
            ApplyStatus::WouldUpdate => writeln!(
                w,
                "-- dry run: connector {} would be updated, {keys} (nothing was changed)",
                report.connector
            )?,
            ApplyStatus::Invalid => {}
        }
        if !report.tables.is_empty() {
            writeln!(w, "tables:      {}", report.tables.join(", "))?;
            writeln!(w, "topics:      {}", report.topics.join(", "))?;
        }
        if let Some(slot) = &report.slot {
            writeln!(w, "slot:        {slot}")?;
        }
        if let (Some(p), Some(m)) = (&report.publication, &report.publication_mode) {
            writeln!(w, "publication: {p} ({m})")?;
        }
        for note in &report.notes {
            writeln!(w, "note: {note}")?;
        }
        if let Some(waited) = &report.wait {
            writeln!(w)?;
            writeln!(w, "{}", wait::wait_line(waited, report.state.as_ref()))?;
            if let Some(state) = &report.state {
                state.write(out, &report.connector, w)?;
            }
        }
        Ok(())
    })
    .context("cannot write the report")
}
