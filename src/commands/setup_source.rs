//! `cdcctl setup-source`: check that Postgres can feed a CDC pipeline, then make it so.
//!
//! 1. Server checks: version, `wal_level`, free replication slots and WAL senders, the role's
//!    REPLICATION attribute. With `--apply-system`, `ALTER SYSTEM` fixes the settings (a restart
//!    is then required, which we say and never do).
//! 2. Tables: `--demo` (created here), `--tables`, `--schemas`, or a choice on a terminal; per
//!    table, privileges, primary key and replica identity.
//! 3. Actions, idempotent: replica identity, publication (created or extended, never shrunk),
//!    replication slot. A re-run reports `unchanged`. `--dry-run` shows the SQL instead.
//!
//! `--teardown` drops the slot and publication, saying how much WAL the slot was retaining.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use serde::Serialize;
use tokio_postgres::Client;

use crate::cli::{ReplicaIdentity, SetupSourceArgs};
use crate::clients::postgres::{
    Postgres, TableName, find_publication, list_tables, parse_table_list, quote_ident,
    quote_literal, resolve_table, table_exists,
};
use crate::config::Config;
use crate::demo;
use crate::error::{CliError, Outcome};
use crate::output::Output;

/// Result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Fine.
    Ok,
    /// Works, but something will hurt later.
    Warn,
    /// CDC cannot work until this is fixed; actions are skipped.
    Fail,
}

/// One row of the checks table.
#[derive(Debug, Serialize)]
pub struct Check {
    /// What was checked, e.g. `wal_level` or `primary key public.users`.
    pub check: String,
    /// `ok`, `warn` or `fail`.
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// How to fix it, for warn and fail.
    pub fix: Option<String>,
}

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Did not exist; created.
    Created,
    /// Existed; changed to the requested state.
    Changed,
    /// Publication existed; missing tables were added.
    Extended,
    /// Already as requested.
    Unchanged,
    /// Dropped (`--teardown`).
    Dropped,
    /// Nothing to drop.
    Absent,
    /// `--dry-run`: the SQL would run.
    WouldRun,
    /// Not attempted because a check failed.
    Skipped,
}

/// One row of the actions table.
#[derive(Debug, Serialize)]
pub struct Action {
    /// `demo schema`, `replica identity`, `publication`, `slot`, `system settings`.
    pub action: String,
    /// The object acted on.
    pub object: String,
    /// What happened.
    pub status: ActionStatus,
    /// More about it (tables added or kept, WAL retained).
    pub detail: String,
    /// The SQL that ran (or would run with `--dry-run`).
    pub sql: Vec<String>,
}

/// `cdcctl setup-source --output json`.
#[derive(Debug, Serialize)]
pub struct SetupSourceReport {
    /// Server version, e.g. `15.18`.
    pub server_version: String,
    /// The database connected to.
    pub database: String,
    /// The publication managed.
    pub publication: String,
    /// The replication slot managed, if any.
    pub slot: Option<String>,
    /// The chosen tables, `schema.table`.
    pub tables: Vec<String>,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Every action, in order.
    pub actions: Vec<Action>,
    /// True with `--dry-run`: nothing was changed.
    pub dry_run: bool,
    /// True when `ALTER SYSTEM` ran: Postgres must be restarted for it to apply.
    pub restart_required: bool,
}

impl SetupSourceReport {
    fn check(&mut self, check: impl Into<String>, status: CheckStatus, detail: impl Into<String>) {
        self.checks.push(Check {
            check: check.into(),
            status,
            detail: detail.into(),
            fix: None,
        });
    }

    fn check_fix(
        &mut self,
        check: impl Into<String>,
        status: CheckStatus,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let fix = (status != CheckStatus::Ok).then(|| fix.into());
        self.checks.push(Check {
            check: check.into(),
            status,
            detail: detail.into(),
            fix,
        });
    }

    fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == CheckStatus::Fail)
    }
}

/// Runs `setup-source`.
pub async fn run(args: &SetupSourceArgs, config: &Config, out: &Output) -> Result<Outcome> {
    let pg = Postgres::connect(&config.postgres).await?;
    let db = pg.client();
    let facts = ServerFacts::read(db).await?;
    let mut report = SetupSourceReport {
        server_version: facts.version.clone(),
        database: facts.database.clone(),
        publication: args.publication.clone(),
        slot: args.slot.clone(),
        tables: Vec::new(),
        checks: Vec::new(),
        actions: Vec::new(),
        dry_run: args.dry_run,
        restart_required: false,
    };

    if args.teardown {
        teardown(args, db, out, &mut report).await?;
    } else {
        let slot_needed = match &args.slot {
            Some(slot) => slot_info(db, slot).await?.is_none(),
            None => false,
        };
        server_checks(&facts, slot_needed, &mut report);
        if args.apply_system {
            apply_system(args, db, &facts, &mut report).await?;
        }
        let tables = choose_tables(args, db, out, &mut report).await?;
        report.tables = tables.iter().map(ToString::to_string).collect();
        let states = table_checks(db, &tables, args.dry_run, &mut report).await?;
        if report.failed() {
            let mut skipped = vec![("publication", args.publication.clone())];
            skipped.extend(args.slot.iter().map(|s| ("slot", s.clone())));
            for (action, object) in skipped {
                report.actions.push(Action {
                    action: action.into(),
                    object,
                    status: ActionStatus::Skipped,
                    detail: "a check failed; fix it and re-run".into(),
                    sql: Vec::new(),
                });
            }
        } else {
            if let Some(mode) = args.replica_identity {
                replica_identity(db, &states, mode, args.dry_run, &mut report).await?;
            }
            publication(db, &args.publication, &tables, args.dry_run, &mut report).await?;
            if let Some(slot) = &args.slot {
                create_slot(db, slot, &facts.database, args.dry_run, &mut report).await?;
            }
        }
    }

    print(out, &report)?;
    Ok(if report.failed() {
        Outcome::Failed
    } else {
        Outcome::Ok
    })
}

/// Settings and counters read once from the server.
struct ServerFacts {
    version: String,
    version_num: i32,
    database: String,
    wal_level: String,
    max_slots: i64,
    used_slots: i64,
    max_senders: i64,
    used_senders: i64,
    role: String,
    replication: bool,
    superuser: bool,
}

impl ServerFacts {
    async fn read(db: &Client) -> Result<ServerFacts> {
        let row = db
            .query_one(
                "SELECT current_setting('server_version'), \
                        current_setting('server_version_num')::int, \
                        current_database()::text, current_setting('wal_level'), \
                        current_setting('max_replication_slots')::bigint, \
                        (SELECT count(*) FROM pg_replication_slots), \
                        current_setting('max_wal_senders')::bigint, \
                        (SELECT count(*) FROM pg_stat_replication), \
                        current_user::text, r.rolreplication, r.rolsuper, \
                        EXISTS (SELECT 1 FROM pg_roles m \
                                WHERE m.rolname IN ('rds_replication', 'rds_superuser', \
                                                    'azure_pg_admin', 'cloudsqlsuperuser') \
                                  AND pg_has_role(current_user, m.oid, 'member')) \
                 FROM pg_roles r WHERE r.rolname = current_user",
                &[],
            )
            .await
            .context("cannot read server settings")?;
        Ok(ServerFacts {
            version: row.get(0),
            version_num: row.get(1),
            database: row.get(2),
            wal_level: row.get(3),
            max_slots: row.get(4),
            used_slots: row.get(5),
            max_senders: row.get(6),
            used_senders: row.get(7),
            role: row.get(8),
            replication: row.get::<_, bool>(9) || row.get::<_, bool>(11),
            superuser: row.get(10),
        })
    }
}

/// Server-wide checks: version, wal_level, slots, senders, replication attribute.
fn server_checks(f: &ServerFacts, slot_needed: bool, report: &mut SetupSourceReport) {
    report.check_fix(
        "server version",
        if f.version_num >= 100_000 {
            CheckStatus::Ok
        } else {
            CheckStatus::Fail
        },
        format!(
            "PostgreSQL {}",
            f.version.split_whitespace().next().unwrap_or_default()
        ),
        "logical decoding with pgoutput needs PostgreSQL 10 or later",
    );
    report.check_fix(
        "wal_level",
        if f.wal_level == "logical" {
            CheckStatus::Ok
        } else {
            CheckStatus::Fail
        },
        format!("`{}` (must be `logical`)", f.wal_level),
        "re-run with `--apply-system` as a superuser (ALTER SYSTEM SET wal_level = logical), \
         then restart Postgres; on managed services set the logical replication parameter",
    );
    let free_slots = f.max_slots - f.used_slots;
    report.check_fix(
        "replication slots",
        match free_slots {
            n if n > 0 => CheckStatus::Ok,
            _ if slot_needed => CheckStatus::Fail,
            _ => CheckStatus::Warn,
        },
        format!(
            "{} of {} in use, {free_slots} free",
            f.used_slots, f.max_slots
        ),
        "drop unused slots (`cdcctl setup-source --teardown --slot NAME`) or raise \
         max_replication_slots (`--apply-system`) and restart",
    );
    let free_senders = f.max_senders - f.used_senders;
    report.check_fix(
        "wal senders",
        if free_senders > 0 {
            CheckStatus::Ok
        } else {
            CheckStatus::Fail
        },
        format!(
            "{} of {} in use, {free_senders} free",
            f.used_senders, f.max_senders
        ),
        "raise max_wal_senders (`--apply-system`) and restart, or stop an idle consumer",
    );
    report.check_fix(
        "replication role",
        if f.replication || f.superuser {
            CheckStatus::Ok
        } else {
            CheckStatus::Fail
        },
        if f.superuser {
            format!("`{}` is a superuser", f.role)
        } else if f.replication {
            format!("`{}` may replicate", f.role)
        } else {
            format!("`{}` has no REPLICATION attribute", f.role)
        },
        format!(
            "as a superuser: ALTER ROLE {} WITH REPLICATION (on RDS: GRANT rds_replication)",
            quote_ident(&f.role)
        ),
    );
}

/// Wanted server settings for `--apply-system`: wal_level and enough slots and senders.
const SYSTEM_SETTINGS: &[(&str, &str, i64)] = &[
    ("max_replication_slots", "10", 10),
    ("max_wal_senders", "10", 10),
];

async fn apply_system(
    args: &SetupSourceArgs,
    db: &Client,
    f: &ServerFacts,
    report: &mut SetupSourceReport,
) -> Result<()> {
    let mut sql = Vec::new();
    if f.wal_level != "logical" {
        sql.push("ALTER SYSTEM SET wal_level = 'logical'".to_string());
    }
    for (name, value, minimum) in SYSTEM_SETTINGS {
        let current = if *name == "max_replication_slots" {
            f.max_slots
        } else {
            f.max_senders
        };
        if current < *minimum {
            sql.push(format!("ALTER SYSTEM SET {name} = {value}"));
        }
    }
    let status = if sql.is_empty() {
        ActionStatus::Unchanged
    } else if args.dry_run {
        ActionStatus::WouldRun
    } else {
        for stmt in &sql {
            // ALTER SYSTEM cannot run inside a transaction block: one simple statement each.
            db.batch_execute(stmt).await.map_err(|e| {
                anyhow::Error::new(e).context(CliError::Usage {
                    message: format!("`{stmt}` failed"),
                    hint: Some("`--apply-system` needs a superuser connection".into()),
                })
            })?;
        }
        report.restart_required = true;
        ActionStatus::Changed
    };
    report.actions.push(Action {
        action: "system settings".into(),
        object: "postgresql.auto.conf".into(),
        status,
        detail: match status {
            ActionStatus::Changed => "restart Postgres for the new settings to apply".into(),
            ActionStatus::WouldRun => "a restart would then be required".into(),
            _ => "wal_level, max_replication_slots and max_wal_senders are already fine".into(),
        },
        sql,
    });
    Ok(())
}

/// The tables to capture, from `--demo`, `--tables`, `--schemas` or a prompt; deduplicated.
async fn choose_tables(
    args: &SetupSourceArgs,
    db: &Client,
    out: &Output,
    report: &mut SetupSourceReport,
) -> Result<Vec<TableName>> {
    let mut tables = Vec::new();
    if args.demo {
        let mut missing = Vec::new();
        for t in demo::tables() {
            if !table_exists(db, &t).await? {
                missing.push(t.to_string());
            }
        }
        let sql: Vec<String> = demo::DDL.iter().map(|s| s.to_string()).collect();
        let status = if missing.is_empty() {
            ActionStatus::Unchanged
        } else if args.dry_run {
            ActionStatus::WouldRun
        } else {
            let tx_sql = format!("BEGIN; {}; COMMIT", demo::DDL.join(";\n"));
            db.batch_execute(&tx_sql)
                .await
                .context("cannot create the demo schema")?;
            ActionStatus::Created
        };
        report.actions.push(Action {
            action: "demo schema".into(),
            object: "4 seed tables".into(),
            status,
            detail: if missing.is_empty() {
                "all four tables exist".into()
            } else {
                format!("missing: {}", missing.join(", "))
            },
            sql: if missing.is_empty() { Vec::new() } else { sql },
        });
        tables.extend(demo::tables());
    }
    if let Some(list) = &args.tables {
        let refs = parse_table_list(list).map_err(|message| CliError::Usage {
            message: format!("invalid `--tables`: {message}"),
            hint: Some(
                "write `table`, `schema.table` or `\"Quoted Name\"`, comma separated".into(),
            ),
        })?;
        for r in refs {
            match resolve_table(db, &r).await? {
                Some(t) => tables.push(t),
                None => {
                    let typed = match &r.schema {
                        Some(s) => format!("{}.{}", s.text, r.name.text),
                        None => r.name.text.clone(),
                    };
                    return Err(CliError::Usage {
                        message: format!(
                            "table `{typed}` does not exist in database `{}`",
                            report.database
                        ),
                        hint: Some(
                            "check the name (unqualified names are in `public`; quote names with \
                             capitals or spaces), or create the demo tables with `--demo`"
                                .into(),
                        ),
                    }
                    .into());
                }
            }
        }
    }
    if !args.schemas.is_empty() {
        let found = list_tables(db, &args.schemas).await?;
        if found.is_empty() {
            out.warn(&format!("no tables in schemas {}", args.schemas.join(", ")));
        }
        tables.extend(found);
    }
    if !args.demo && args.tables.is_none() && args.schemas.is_empty() {
        let candidates = list_tables(db, &["public".to_string()]).await?;
        let names: Vec<String> = candidates.iter().map(ToString::to_string).collect();
        let picked = out
            .multi_select(
                "Tables to capture (space selects, enter confirms)",
                &names,
                "--tables LIST",
            )
            .map_err(|e| match e {
                CliError::Usage { .. } => CliError::Usage {
                    message: "no tables chosen and no terminal to ask on".into(),
                    hint: Some("pass `--tables LIST`, `--schemas LIST` or `--demo`".into()),
                },
                other => other,
            })?;
        tables.extend(picked.into_iter().map(|i| candidates[i].clone()));
        if tables.is_empty() {
            return Err(CliError::Usage {
                message: "no tables chosen".into(),
                hint: Some("pick at least one, or pass `--tables LIST`".into()),
            }
            .into());
        }
    }
    let mut seen = BTreeSet::new();
    tables.retain(|t| seen.insert(t.clone()));
    Ok(tables)
}

/// What the catalog says about one chosen table.
struct TableState {
    table: TableName,
    /// `d` default, `f` full, `i` index, `n` nothing.
    replident: String,
}

/// Per-table checks: privileges, primary key, replica identity.
async fn table_checks(
    db: &Client,
    tables: &[TableName],
    dry_run: bool,
    report: &mut SetupSourceReport,
) -> Result<Vec<TableState>> {
    let mut states = Vec::new();
    for t in tables {
        let row = db
            .query_opt(
                "SELECT has_table_privilege(c.oid, 'SELECT'), pg_has_role(c.relowner, 'USAGE'), \
                        c.relreplident::text, \
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), \
                        pg_get_userbyid(c.relowner)::text \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&t.schema, &t.name],
            )
            .await
            .context("cannot read table privileges")?;
        let Some(row) = row else {
            // Only possible with --demo --dry-run: the table would be created by this run.
            if dry_run {
                report.check(format!("table {t}"), CheckStatus::Ok, "would be created");
                continue;
            }
            anyhow::bail!("table `{t}` disappeared while checking it");
        };
        let (select, owner, replident, has_pk, owner_name): (bool, bool, String, bool, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let (status, detail, fix) = match (select, owner) {
            (true, true) => (CheckStatus::Ok, "SELECT, owner".to_string(), String::new()),
            (true, false) => (
                CheckStatus::Warn,
                format!("SELECT; owned by `{owner_name}`"),
                format!(
                    "publication and replica identity changes need the owner `{owner_name}`; \
                     run setup-source as that role or have it run the SQL (`--dry-run`)"
                ),
            ),
            (false, _) => (
                CheckStatus::Fail,
                "no SELECT privilege".to_string(),
                format!("GRANT SELECT ON {} TO <this role>", t.quoted()),
            ),
        };
        report.check_fix(format!("privileges {t}"), status, detail, fix);
        report.check_fix(
            format!("primary key {t}"),
            if has_pk {
                CheckStatus::Ok
            } else {
                CheckStatus::Warn
            },
            if has_pk {
                "present".to_string()
            } else {
                "none: updates and deletes cannot be merged by key".to_string()
            },
            "add a primary key (or use `--replica-identity full`, which lets Postgres publish \
             updates and deletes of this table)",
        );
        let (ri_status, ri_detail) = match (replident.as_str(), has_pk) {
            ("f", _) => (CheckStatus::Ok, "full: old rows carry every column"),
            ("d", true) => (CheckStatus::Ok, "default: old rows carry the primary key"),
            ("i", _) => (
                CheckStatus::Ok,
                "index: old rows carry the replica identity index",
            ),
            ("d", false) => (
                CheckStatus::Warn,
                "default without a primary key: UPDATE and DELETE on this table fail once it is published",
            ),
            _ => (
                CheckStatus::Warn,
                "nothing: UPDATE and DELETE on this table fail once it is published",
            ),
        };
        report.check_fix(
            format!("replica identity {t}"),
            ri_status,
            ri_detail,
            "`--replica-identity full`",
        );
        states.push(TableState {
            table: t.clone(),
            replident,
        });
    }
    Ok(states)
}

async fn replica_identity(
    db: &Client,
    states: &[TableState],
    mode: ReplicaIdentity,
    dry_run: bool,
    report: &mut SetupSourceReport,
) -> Result<()> {
    let (code, word) = match mode {
        ReplicaIdentity::Full => ("f", "FULL"),
        ReplicaIdentity::Default => ("d", "DEFAULT"),
    };
    for s in states {
        let sql = format!("ALTER TABLE {} REPLICA IDENTITY {word}", s.table.quoted());
        let status = if s.replident == code {
            ActionStatus::Unchanged
        } else if dry_run {
            ActionStatus::WouldRun
        } else {
            db.batch_execute(&sql)
                .await
                .with_context(|| format!("cannot set the replica identity of `{}`", s.table))?;
            ActionStatus::Changed
        };
        report.actions.push(Action {
            action: "replica identity".into(),
            object: s.table.to_string(),
            status,
            detail: word.to_lowercase(),
            sql: if status == ActionStatus::Unchanged {
                Vec::new()
            } else {
                vec![sql]
            },
        });
    }
    Ok(())
}

/// Creates the publication, or adds the missing tables to it; never removes any.
async fn publication(
    db: &Client,
    name: &str,
    tables: &[TableName],
    dry_run: bool,
    report: &mut SetupSourceReport,
) -> Result<()> {
    let existing = find_publication(db, name).await?;
    let list = |ts: &[&TableName]| ts.iter().map(|t| t.quoted()).collect::<Vec<_>>().join(", ");
    let (status, detail, sql) = match existing {
        Some(publication) if publication.all_tables => (
            ActionStatus::Unchanged,
            "publishes all tables".to_string(),
            Vec::new(),
        ),
        Some(publication) => {
            let current = publication.tables;
            let missing: Vec<&TableName> = tables.iter().filter(|t| !current.contains(t)).collect();
            let kept: Vec<String> = current
                .iter()
                .filter(|t| !tables.contains(t))
                .map(ToString::to_string)
                .collect();
            let kept_note = if kept.is_empty() {
                String::new()
            } else {
                format!("; also publishes {} (kept)", kept.join(", "))
            };
            if missing.is_empty() {
                (
                    ActionStatus::Unchanged,
                    format!("{}{kept_note}", tables_word(current.len())),
                    Vec::new(),
                )
            } else {
                let sql = format!(
                    "ALTER PUBLICATION {} ADD TABLE {}",
                    quote_ident(name),
                    list(&missing)
                );
                let added: Vec<String> = missing.iter().map(ToString::to_string).collect();
                (
                    ActionStatus::Extended,
                    format!("added {}{kept_note}", added.join(", ")),
                    vec![sql],
                )
            }
        }
        None => {
            let all: Vec<&TableName> = tables.iter().collect();
            let sql = format!(
                "CREATE PUBLICATION {} FOR TABLE {}",
                quote_ident(name),
                list(&all)
            );
            (ActionStatus::Created, tables_word(tables.len()), vec![sql])
        }
    };
    let status = if sql.is_empty() {
        status
    } else if dry_run {
        ActionStatus::WouldRun
    } else {
        for stmt in &sql {
            db.batch_execute(stmt)
                .await
                .with_context(|| format!("cannot create or extend publication `{name}`"))?;
        }
        status
    };
    report.actions.push(Action {
        action: "publication".into(),
        object: name.to_string(),
        status,
        detail,
        sql,
    });
    Ok(())
}

/// What `pg_replication_slots` says about a slot.
struct SlotInfo {
    plugin: Option<String>,
    database: Option<String>,
    active_pid: Option<i32>,
    retained_bytes: Option<i64>,
}

async fn slot_info(db: &Client, slot: &str) -> Result<Option<SlotInfo>> {
    let row = db
        .query_opt(
            "SELECT plugin::text, database::text, active_pid, \
                    pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .context("cannot read replication slots")?;
    Ok(row.map(|r| SlotInfo {
        plugin: r.get(0),
        database: r.get(1),
        active_pid: r.get(2),
        retained_bytes: r.get(3),
    }))
}

const CREATE_SLOT_SQL: &str = "SELECT pg_create_logical_replication_slot($1, 'pgoutput')";

async fn create_slot(
    db: &Client,
    slot: &str,
    database: &str,
    dry_run: bool,
    report: &mut SetupSourceReport,
) -> Result<()> {
    let shown = CREATE_SLOT_SQL.replace("$1", &quote_literal(slot));
    let (status, detail, sql) = match slot_info(db, slot).await? {
        Some(info) => {
            if info.plugin.as_deref() != Some("pgoutput")
                || info.database.as_deref() != Some(database)
            {
                return Err(CliError::Usage {
                    message: format!(
                        "slot `{slot}` exists but is not a pgoutput slot of database `{database}` \
                         (plugin {}, database {})",
                        info.plugin.as_deref().unwrap_or("none"),
                        info.database.as_deref().unwrap_or("none")
                    ),
                    hint: Some("choose another `--slot` name, or drop that slot first".into()),
                }
                .into());
            }
            (
                ActionStatus::Unchanged,
                format!(
                    "pgoutput, retaining {}",
                    human_bytes(info.retained_bytes.unwrap_or(0))
                ),
                Vec::new(),
            )
        }
        None if dry_run => (ActionStatus::WouldRun, "pgoutput".to_string(), vec![shown]),
        None => {
            db.query_one(CREATE_SLOT_SQL, &[&slot])
                .await
                .with_context(|| format!("cannot create replication slot `{slot}`"))?;
            (ActionStatus::Created, "pgoutput".to_string(), vec![shown])
        }
    };
    report.actions.push(Action {
        action: "slot".into(),
        object: slot.to_string(),
        status,
        detail,
        sql,
    });
    Ok(())
}

/// Drops the slot (if `--slot`) and the publication, after saying what the slot retained.
async fn teardown(
    args: &SetupSourceArgs,
    db: &Client,
    out: &Output,
    report: &mut SetupSourceReport,
) -> Result<()> {
    let slot = match &args.slot {
        Some(name) => Some((name, slot_info(db, name).await?)),
        None => None,
    };
    if let Some((
        name,
        Some(SlotInfo {
            active_pid: Some(pid),
            ..
        }),
    )) = &slot
    {
        return Err(CliError::Usage {
            message: format!("slot `{name}` is in use by the walsender with pid {pid}"),
            hint: Some(
                "stop the connector that reads it first (or its worker), then re-run".into(),
            ),
        }
        .into());
    }
    let publication_exists = db
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&args.publication],
        )
        .await
        .context("cannot read publications")?
        .is_some();
    let slot_exists = matches!(&slot, Some((_, Some(_))));
    if !args.dry_run && (slot_exists || publication_exists) {
        let mut what = Vec::new();
        if let Some((name, Some(_))) = &slot {
            what.push(format!("slot `{name}`"));
        }
        if publication_exists {
            what.push(format!("publication `{}`", args.publication));
        }
        if !out.confirm(&format!("drop {}?", what.join(" and ")))? {
            return Err(CliError::Usage {
                message: "teardown cancelled".into(),
                hint: None,
            }
            .into());
        }
    }
    if let Some((name, info)) = slot {
        let shown = format!("SELECT pg_drop_replication_slot({})", quote_literal(name));
        let (status, detail, sql) = match info {
            None => (ActionStatus::Absent, "no such slot".to_string(), Vec::new()),
            Some(info) => {
                let retained = format!(
                    "was retaining {} of WAL",
                    human_bytes(info.retained_bytes.unwrap_or(0))
                );
                if args.dry_run {
                    (
                        ActionStatus::WouldRun,
                        retained.replace("was ", "is "),
                        vec![shown],
                    )
                } else {
                    db.query_one("SELECT pg_drop_replication_slot($1)", &[name])
                        .await
                        .with_context(|| format!("cannot drop replication slot `{name}`"))?;
                    (ActionStatus::Dropped, retained, vec![shown])
                }
            }
        };
        report.actions.push(Action {
            action: "slot".into(),
            object: name.clone(),
            status,
            detail,
            sql,
        });
    }
    let sql = format!("DROP PUBLICATION {}", quote_ident(&args.publication));
    let (status, sql) = match (publication_exists, args.dry_run) {
        (false, _) => (ActionStatus::Absent, Vec::new()),
        (true, true) => (ActionStatus::WouldRun, vec![sql]),
        (true, false) => {
            db.batch_execute(&sql)
                .await
                .with_context(|| format!("cannot drop publication `{}`", args.publication))?;
            (ActionStatus::Dropped, vec![sql])
        }
    };
    report.actions.push(Action {
        action: "publication".into(),
        object: args.publication.clone(),
        status,
        detail: if publication_exists {
            String::new()
        } else {
            "no such publication".into()
        },
        sql,
    });
    Ok(())
}

/// `1 table`, `4 tables`.
fn tables_word(n: usize) -> String {
    format!("{n} table{}", if n == 1 { "" } else { "s" })
}

/// `1.5 MiB`-style sizes for WAL.
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn status_word<T: Serialize>(status: T) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default()
}

fn print(out: &Output, report: &SetupSourceReport) -> Result<()> {
    out.report(report, |w| {
        writeln!(
            w,
            "PostgreSQL {} · database {} · publication {}{}",
            report
                .server_version
                .split_whitespace()
                .next()
                .unwrap_or_default(),
            report.database,
            report.publication,
            report
                .slot
                .as_ref()
                .map_or(String::new(), |s| format!(" · slot {s}"))
        )?;
        if !report.checks.is_empty() {
            writeln!(w)?;
            let mut table = out.table(["CHECK", "STATUS", "DETAIL", "FIX"]);
            for c in &report.checks {
                table.add_row([
                    c.check.clone(),
                    status_word(c.status),
                    c.detail.clone(),
                    c.fix.clone().unwrap_or_default(),
                ]);
            }
            write!(w, "{}", out.render_table(&table))?;
        }
        if !report.actions.is_empty() {
            writeln!(w)?;
            let mut table = out.table(["ACTION", "OBJECT", "STATUS", "DETAIL"]);
            for a in &report.actions {
                table.add_row([
                    a.action.clone(),
                    a.object.clone(),
                    status_word(a.status),
                    a.detail.clone(),
                ]);
            }
            write!(w, "{}", out.render_table(&table))?;
        }
        let sql: Vec<&String> = report.actions.iter().flat_map(|a| &a.sql).collect();
        if report.dry_run {
            writeln!(w)?;
            if sql.is_empty() {
                writeln!(w, "-- dry run: nothing to change")?;
            } else {
                writeln!(w, "-- dry run: this SQL would run (nothing was changed)")?;
                for s in sql {
                    writeln!(w, "{s};")?;
                }
            }
        }
        if report.restart_required {
            writeln!(w)?;
            writeln!(
                w,
                "Restart PostgreSQL now: the new system settings apply only after a restart."
            )?;
        }
        if report.failed() {
            writeln!(w)?;
            writeln!(
                w,
                "A check failed: fix it (see FIX) and re-run; nothing else was changed."
            )?;
        }
        Ok(())
    })
    .context("cannot write the report")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn status_words_match_json() {
        assert_eq!(status_word(ActionStatus::WouldRun), "would run");
        assert_eq!(status_word(CheckStatus::Fail), "fail");
    }
}
