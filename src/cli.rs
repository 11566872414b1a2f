//! The command line, as clap derive types: global flags, connection flag groups and one args
//! struct per subcommand. Only parsing lives here; no IO, no defaults of config-backed values
//! (those are merged in `config.rs` so `cdcctl config` can tell where each value came from).

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use clap_complete::ArgValueCandidates;

use crate::config::FlagValue;

const ABOUT: &str =
    "Operate change data capture pipelines: PostgreSQL -> Debezium -> Kafka -> warehouse";

const LONG_ABOUT: &str = "\
Operate change data capture pipelines: PostgreSQL -> Debezium -> Kafka -> warehouse.

cdcctl prepares a Postgres source for logical replication, applies Debezium connectors through
Kafka Connect, reads the change topics, and keeps DuckDB (embedded, the default) or Snowflake
tables equal to the source. With no configuration it talks to the local stack that
`scripts/stack.sh up` starts; `cdcctl config` shows every setting and where it came from.";

/// Shown after the options of `cdcctl --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
    0  success, or everything checked is healthy
    1  the operation failed, a check is unhealthy, or a comparison differs
    2  usage or configuration error (nothing was changed)
    3  a required service (Postgres, Kafka, Connect, Snowflake) is unreachable
  130  interrupted by Ctrl-C";

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "cdcctl",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXIT_CODES_HELP,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Flags accepted by every subcommand.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Profile of cdcctl.toml to use (`[profiles.NAME]`)
    ///
    /// Without it: `CDCCTL_PROFILE`, then the file's `default_profile`, then `default`.
    #[arg(long, global = true, value_name = "NAME", add = ArgValueCandidates::new(crate::complete::profiles))]
    pub profile: Option<String>,

    /// Configuration file to read instead of the searched ones
    ///
    /// Without it: `CDCCTL_CONFIG`, then `./cdcctl.toml`, then `cdcctl/cdcctl.toml` in the user
    /// configuration directory (`~/.config` on Linux).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Output format: tables for people, or JSON for scripts
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Log more to stderr (-v info, -vv debug, -vvv trace)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Print only data and errors: no progress, no warnings
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Never use colour (also when `NO_COLOR` is set)
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Answer yes to every confirmation prompt
    ///
    /// Prompts never appear when stdin is not a terminal: without `--yes` a command that needs
    /// an answer then exits 2 naming the flag to pass.
    #[arg(short, long, global = true)]
    pub yes: bool,
}

/// Output formats of `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable tables and messages
    Text,
    /// Stable JSON on stdout (JSON Lines for streams); errors as a JSON object on stderr
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check and prepare Postgres for CDC: wal_level, slots, privileges, publication, slot
    ///
    /// Runs the checks first and reports each as a row (ok/warn/fail with a fix), then the
    /// idempotent actions: demo schema (`--demo`), replica identity, publication (created or
    /// extended; nothing is dropped silently) and replication slot. A re-run reports `unchanged`.
    /// `--dry-run` prints the SQL without running it; `--teardown` drops the slot and publication.
    SetupSource(SetupSourceArgs),
    /// Fill Postgres with realistic rows and drive a stream of changes
    GenerateData(GenerateDataArgs),
    /// Apply and manage Debezium connectors on Kafka Connect
    ///
    /// Without a verb: builds the connector config from the profile and flags, validates it on
    /// the worker (field errors exit 2 and nothing is created), then creates the connector,
    /// reports `unchanged`, or shows the key-by-key diff and updates it after a confirmation.
    /// The verbs (list, status, restart, pause, resume, delete) manage connectors; the alias
    /// reads well for them: `cdcctl connector delete pg-cdc --drop-slot`.
    #[command(visible_alias = "connector")]
    CreateConnector(CreateConnectorArgs),
    /// Read CDC topics decoded: one line per change, or JSON, or the raw messages
    ///
    /// Tables name their topics (`users` is `<prefix>.public.users`); `--topic` and `--pattern`
    /// pick topics directly; with none of them every `<prefix>.<schema>.<table>` topic is read.
    /// Reads without a consumer group and commits nothing, so a running loader is never disturbed.
    Tail(TailArgs),
    /// Load CDC topics into the warehouse, keeping each table equal to its source table
    ///
    /// Micro-batches of events are compacted per key and applied (the effect of a MERGE per
    /// table): in one transaction in DuckDB (the default sink), as one MERGE per table in
    /// Snowflake (`--sink snowflake`). The consumer group's offsets are committed only after the
    /// batch is in the warehouse (at-least-once), and every write is guarded by the source LSN
    /// (replays change nothing), so the effect is exactly once. Tables are created from the Connect schema and
    /// new source columns are added. `--until-caught-up` exits once the backlog is loaded;
    /// otherwise it runs until Ctrl-C or SIGTERM, then flushes, commits and exits 0.
    Load(LoadArgs),
    /// Inspect the dead-letter topic of `load` and replay its messages after a fix
    ///
    /// `list` (the default) groups the pending dead letters by error class and table; `show`
    /// prints them with their headers and why they fail; `replay` sends the selected ones that
    /// now decode back through the loader's apply path into the warehouse (or, with
    /// `--to-source-topic`, to their original topic) and puts those that still fail back in the
    /// dead-letter topic, counted. The replay consumer group commits what was handled, so a
    /// message is replayed once.
    ReplayDlq(ReplayDlqArgs),
    /// Is the pipeline healthy? One row per check, from Postgres to the warehouse
    ///
    /// Kafka Connect (worker, connector, tasks), Postgres (wal_level, the connector's slot and
    /// the WAL it retains, orphaned slots), Kafka (change topics, the loader group's lag, pending
    /// dead letters) and the warehouse (how long ago each table was loaded). Exit 0 when all are
    /// ok (warnings too, unless --strict), 1 when one fails, 3 when a service does not answer.
    Health(HealthArgs),
    /// Is the warehouse equal to the source? Row counts, checksums and, with --diff, the keys
    ///
    /// Reads every row of each table on both sides (live rows only with --soft-delete tables),
    /// renders the columns comparably (timestamps as epoch microseconds, JSON and arrays with
    /// sorted keys, exact decimals), and compares row by row through the primary key. Says so
    /// when the loader still has messages to load. Exit 0 equal, 1 differs.
    Verify(VerifyArgs),
    /// Keep a Type 2 history (valid_from/valid_to/is_current) from the changes `load --history` kept
    ///
    /// Reads `<table>__changes` and maintains `<table>_history`: one row per version of each
    /// key, a new version only when a tracked column changes, a delete closing the version.
    /// Incremental (a watermark on the changes read; late changes land in their place) and
    /// idempotent. `--as-of` prints the table as it was at an instant; `--check` validates the
    /// history (exit 1 on any violation); `--rebuild` recomputes it from all the changes.
    Scd2(Scd2Args),
    /// Show every effective setting and where it came from (secrets as ****)
    Config(ConfigArgs),
    /// Print a shell completion script to stdout
    ///
    /// Example: `cdcctl completions bash > ~/.local/share/bash-completion/completions/cdcctl`.
    Completions(CompletionsArgs),
}

/// Arguments of `cdcctl setup-source`.
#[derive(Debug, Args)]
pub struct SetupSourceArgs {
    /// Create the demo schema (the seed pipelines' four tables) and use its tables
    #[arg(long)]
    pub demo: bool,

    /// Tables to capture, comma separated: `users,commerce.products,"My Table"`
    ///
    /// Unqualified names are in `public`. Unquoted names match exactly, else in lower case;
    /// double-quoted names match exactly. On a terminal, without `--tables`, `--schemas` or
    /// `--demo`, cdcctl offers a list to choose from.
    #[arg(long, value_name = "LIST")]
    pub tables: Option<String>,

    /// Capture every table of these schemas, comma separated
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub schemas: Vec<String>,

    /// Publication to create or extend
    #[arg(long, value_name = "NAME", default_value = "cdcctl_publication")]
    pub publication: String,

    /// Logical replication slot (pgoutput) to create; none unless given
    #[arg(long, value_name = "NAME")]
    pub slot: Option<String>,

    /// Set the replica identity of every chosen table (unchanged unless given)
    ///
    /// `full` makes update and delete events carry the whole old row (and TOASTed values);
    /// `default` sends only the primary key.
    #[arg(long, value_enum, value_name = "MODE")]
    pub replica_identity: Option<ReplicaIdentity>,

    /// Also run `ALTER SYSTEM` for wal_level, max_replication_slots and max_wal_senders
    ///
    /// Needs a superuser; Postgres must then be restarted, which cdcctl says and never does.
    #[arg(long)]
    pub apply_system: bool,

    /// Print the SQL that would run, and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Drop the slot (`--slot`) and the publication instead, reporting the WAL the slot retained
    #[arg(long, conflicts_with_all = ["demo", "replica_identity", "apply_system"])]
    pub teardown: bool,

    /// Postgres connection (last: its help heading applies to what follows).
    #[command(flatten)]
    pub postgres: PostgresArgs,
}

/// `--replica-identity` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplicaIdentity {
    /// Old values of every column in update/delete events
    Full,
    /// Old values of the primary key only
    Default,
}

/// Arguments of `cdcctl generate-data`.
#[derive(Debug, Args)]
#[command(
    group(clap::ArgGroup::new("work").args(["rows", "events", "duration"]).required(true).multiple(true)),
    after_long_help = GENERATE_DATA_HELP
)]
pub struct GenerateDataArgs {
    /// Tables to fill instead of the demo tables: `users,shop.orders` (repeatable)
    ///
    /// Any table with a primary key. Values follow each column's type (numeric precision and
    /// scale, varchar length, enums, arrays, json/jsonb, uuid, dates and timestamps); columns
    /// named like name, email, address, amount, status, tags... get realistic values; foreign
    /// keys get keys of existing parent rows; identity and serial columns outside the key,
    /// generated columns and unsupported types with a default are left to Postgres. Unqualified
    /// names are in `public`; unquoted names match exactly, else in lower case.
    #[arg(long, value_name = "LIST", add = ArgValueCandidates::new(crate::complete::tables))]
    pub table: Vec<String>,

    /// Bulk-load N rows into each table with COPY, parents before children
    ///
    /// N rows per table: `--rows 1000` on the four demo tables inserts 4,000 rows. Rows stream
    /// over one connection per CPU (at most 4), committed every 50,000 rows per connection.
    #[arg(long, value_name = "N")]
    pub rows: Option<u64>,

    /// Then make N changes (inserts, updates, deletes as `--mix` says)
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    pub events: Option<u64>,

    /// Make changes for this long instead of a count: `30s`, `5m`, `1h`
    #[arg(long, value_name = "DURATION", value_parser = crate::datagen::parse_run_duration)]
    pub duration: Option<std::time::Duration>,

    /// Changes per second; 0 makes them as fast as possible
    #[arg(long, value_name = "R", default_value = "0", value_parser = crate::datagen::parse_rate)]
    pub rate: f64,

    /// Relative weights of inserts, updates and deletes among the changes
    ///
    /// Weights need not add up to 100; a left-out operation weighs 0. Inserts go to a random
    /// table. Updates set new values in a random subset of a random row's columns (never key,
    /// unique or foreign key columns; `updated_at`-like columns always). Deletes remove a random
    /// row after the rows that reference it, in the same transaction. An update or delete with
    /// no row to act on becomes an insert.
    #[arg(
        long,
        value_name = "MIX",
        default_value = "insert=70,update=20,delete=10"
    )]
    pub mix: crate::datagen::mix::Mix,

    /// Changes per transaction
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub tx_size: u32,

    /// Seed of the generator: the same seed on the same starting data gives the same rows
    ///
    /// Without it the seed is random; the summary shows it, so any run can be replayed.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Put values over 8 KB in one text column per table, so that TOAST is exercised
    ///
    /// The column is the table's first unbounded `text` column named like free text (notes,
    /// description, comment...), else its first `text` column; the summary names it. The values
    /// are random letters, which barely compress, so Postgres stores them out of line.
    #[arg(long)]
    pub large_text: bool,

    /// Postgres connection.
    #[command(flatten)]
    pub postgres: PostgresArgs,
}

/// Shown after the options of `cdcctl generate-data --help`.
const GENERATE_DATA_HELP: &str = "\
Without `--table` the targets are the demo tables (`cdcctl setup-source --demo` creates them).
Timestamps fall in 2024-2025 rather than around now, so that a seed always gives the same rows.
Ctrl-C stops after the current transaction (COPY batches in flight are rolled back) and still
prints the summary of what was committed.

Examples:
  cdcctl generate-data --rows 10000 --seed 7
  cdcctl generate-data --events 5000 --rate 100 --tx-size 5
  cdcctl generate-data --duration 10m --rate 50 --mix insert=50,update=40,delete=10
  cdcctl generate-data --table shop.orders --rows 1000 --large-text";

/// Arguments of `cdcctl create-connector` (alias `connector`): apply, or one verb.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_value_name = "VERB",
    subcommand_help_heading = "Verbs",
    after_long_help = CREATE_CONNECTOR_HELP
)]
pub struct CreateConnectorArgs {
    /// A lifecycle verb instead of applying.
    #[command(subcommand)]
    pub verb: Option<ConnectorVerb>,
    /// What to apply.
    #[command(flatten)]
    pub apply: ApplyConnectorArgs,
}

impl CreateConnectorArgs {
    /// The config-backed flags that were given.
    pub fn flag_values(&self) -> Vec<FlagValue> {
        match &self.verb {
            None => self.apply.flag_values(),
            Some(ConnectorVerb::List(a)) => a.connect.flag_values(),
            Some(ConnectorVerb::Status(a)) => with_name(&a.name, a.connect.flag_values()),
            Some(ConnectorVerb::Restart(a)) => with_name(&a.name, a.connect.flag_values()),
            Some(ConnectorVerb::Pause(a) | ConnectorVerb::Resume(a)) => {
                with_name(&a.name, a.connect.flag_values())
            }
            Some(ConnectorVerb::Delete(a)) => {
                let mut v = a.postgres.flag_values();
                v.extend(a.connect.flag_values());
                with_name(&a.name, v)
            }
        }
    }
}

fn with_name(name: &Option<String>, mut flags: Vec<FlagValue>) -> Vec<FlagValue> {
    flags.extend(flag("connect.connector", "NAME", name));
    flags
}

/// Shown after the options of `cdcctl create-connector --help`.
const CREATE_CONNECTOR_HELP: &str = "\
Precedence of connector keys, lowest first: cdcctl's defaults (from the profile: database
connection, `kafka.topic_prefix`, pgoutput, JSON converters with schemas, heartbeat, tombstones,
fail-fast slot retries) < `--from-file` < the other flags < `--set`.

Examples:
  cdcctl create-connector --tables users,orders --wait
  cdcctl create-connector --name pg-cdc --tables users --set snapshot.mode=no_data --dry-run
  cdcctl create-connector --from-file connector.json --yes
  cdcctl connector status pg-cdc
  cdcctl connector restart pg-cdc
  cdcctl connector delete pg-cdc --drop-slot --yes";

/// Arguments of applying a connector (`cdcctl create-connector` without a verb).
#[derive(Debug, Args)]
pub struct ApplyConnectorArgs {
    /// Connector name [default: `connect.connector`, i.e. `cdcctl`]
    #[arg(long, value_name = "NAME", add = ArgValueCandidates::new(crate::complete::connectors))]
    pub name: Option<String>,

    /// Tables to capture, comma separated: `users,commerce.products,"My Table"`
    ///
    /// Unqualified names are in `public`; unquoted names match exactly, else in lower case;
    /// double-quoted names match exactly. On a terminal, when neither this nor a
    /// `table.include.list` from `--from-file`/`--set` names them, cdcctl offers the tables that
    /// have a primary key.
    #[arg(long, value_name = "LIST")]
    pub tables: Option<String>,

    /// Replication slot [default: the connector's current one, else `cdcctl_<name>`]
    #[arg(long, value_name = "NAME")]
    pub slot: Option<String>,

    /// Publication [default: the connector's current one, else see below]
    ///
    /// Without it: `cdcctl_publication` (what `setup-source` creates) when it exists and
    /// publishes every chosen table, else one named like the slot that Debezium creates with
    /// exactly the chosen tables. A publication the connector did not create is used as is
    /// (`publication.autocreate.mode=disabled`) and must publish every chosen table.
    #[arg(long, value_name = "NAME")]
    pub publication: Option<String>,

    /// Topic prefix: topics are `<PREFIX>.<schema>.<table>` [default: `kafka.topic_prefix`]
    #[arg(long, value_name = "PREFIX")]
    pub topic_prefix: Option<String>,

    /// What the connector snapshots when it starts [default: initial]
    #[arg(long, value_enum, value_name = "MODE")]
    pub snapshot_mode: Option<SnapshotMode>,

    /// How numeric and decimal columns are encoded [default: precise]
    #[arg(long, value_enum, value_name = "MODE")]
    pub decimal_handling: Option<DecimalHandling>,

    /// Heartbeat interval, so the slot advances while the tables are idle; 0 turns it off
    /// [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    pub heartbeat: Option<std::time::Duration>,

    /// Plain JSON messages without the Connect schema (the loader needs the schema)
    #[arg(long)]
    pub no_schemas: bool,

    /// Postgres host as the Connect worker reaches it [default: `postgres.host`]
    #[arg(long, value_name = "HOST")]
    pub database_hostname: Option<String>,

    /// Postgres port as the Connect worker reaches it [default: `postgres.port`]
    #[arg(long, value_name = "PORT")]
    pub database_port: Option<u16>,

    /// Set any connector key, overriding everything else: `snapshot.mode=no_data` (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,

    /// Start from this connector config: Connect JSON (`{"name", "config"}` or a flat map) or
    /// TOML (flat keys, or `name` and a `[config]` table)
    #[arg(long, value_name = "PATH")]
    pub from_file: Option<PathBuf>,

    /// Validate, print the final config (secrets as ****) and the diff; change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Waiting for the result.
    #[command(flatten)]
    pub wait: WaitArgs,

    /// Postgres connection.
    #[command(flatten)]
    pub postgres: PostgresArgs,

    /// Kafka Connect connection (last: its help heading applies to what follows).
    #[command(flatten)]
    pub connect: ConnectArgs,
}

impl ApplyConnectorArgs {
    /// The config-backed flags that were given.
    pub fn flag_values(&self) -> Vec<FlagValue> {
        let mut v = self.postgres.flag_values();
        v.extend(self.connect.flag_values());
        v.extend(flag("connect.connector", "--name", &self.name));
        v.extend(flag(
            "kafka.topic_prefix",
            "--topic-prefix",
            &self.topic_prefix,
        ));
        v
    }
}

/// `KEY=VALUE` of `--set`.
fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected `KEY=VALUE`, got `{raw}`")),
    }
}

/// `--wait`, `--no-wait` and `--timeout` of the connector commands that change state.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Wait until the connector and every task reach the new state (default on a terminal)
    ///
    /// A FAILED task ends the wait: the first lines of its trace are printed and the exit code
    /// is 1.
    #[arg(long, overrides_with = "no_wait")]
    pub wait: bool,

    /// Return as soon as the worker accepted the change
    #[arg(long, overrides_with = "wait")]
    pub no_wait: bool,

    /// Longest wait with `--wait`; exit 1 when it passes
    #[arg(long, value_name = "DURATION", default_value = "60s",
          value_parser = crate::config::parse_duration)]
    pub timeout: std::time::Duration,
}

impl WaitArgs {
    /// Whether to wait: the flag given last, else `default`.
    pub fn enabled(&self, default: bool) -> bool {
        if self.wait {
            true
        } else if self.no_wait {
            false
        } else {
            default
        }
    }
}

/// `--snapshot-mode` values (Debezium's `snapshot.mode`; others via `--set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SnapshotMode {
    /// Snapshot the tables once, then stream changes; a restart resumes without a snapshot
    Initial,
    /// Snapshot on every start, then stream changes
    Always,
    /// Snapshot once, then stop: no streaming
    #[value(name = "initial_only", alias = "initial-only")]
    InitialOnly,
    /// No snapshot: stream changes from now on
    #[value(name = "no_data", alias = "no-data")]
    NoData,
    /// Snapshot when there are no offsets, or the slot no longer has what they point at
    #[value(name = "when_needed", alias = "when-needed")]
    WhenNeeded,
}

impl SnapshotMode {
    /// Debezium's spelling.
    pub fn as_debezium(self) -> &'static str {
        match self {
            SnapshotMode::Initial => "initial",
            SnapshotMode::Always => "always",
            SnapshotMode::InitialOnly => "initial_only",
            SnapshotMode::NoData => "no_data",
            SnapshotMode::WhenNeeded => "when_needed",
        }
    }
}

/// `--decimal-handling` values (Debezium's `decimal.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DecimalHandling {
    /// Exact: Connect `Decimal` (base64 unscaled value and scale)
    Precise,
    /// Exact, as a JSON string
    String,
    /// A JSON number (a double: may lose precision)
    Double,
}

impl DecimalHandling {
    /// Debezium's spelling.
    pub fn as_debezium(self) -> &'static str {
        match self {
            DecimalHandling::Precise => "precise",
            DecimalHandling::String => "string",
            DecimalHandling::Double => "double",
        }
    }
}

/// The verbs of `cdcctl create-connector` / `cdcctl connector`.
#[derive(Debug, Subcommand)]
pub enum ConnectorVerb {
    /// List the worker's connectors: state, tasks, topic prefix, slot and tables
    List(ConnectorListArgs),
    /// Show a connector's state and each task's; exit 1 unless all are RUNNING
    ///
    /// A FAILED task shows the first lines of its trace: the exception and each cause.
    Status(ConnectorStatusArgs),
    /// Restart the connector's failed tasks (`--all`: the connector and every task)
    Restart(ConnectorRestartArgs),
    /// Pause the connector: it stops reading, and its slot retains WAL meanwhile
    Pause(ConnectorStateArgs),
    /// Resume a paused or stopped connector
    Resume(ConnectorStateArgs),
    /// Delete the connector; `--drop-slot` also drops its replication slot
    ///
    /// Deleting a Debezium connector leaves its replication slot behind, retaining WAL until
    /// the disk fills. `--drop-slot` first stops the connector and resets its stored offsets (so
    /// a new connector of the same name starts with a fresh snapshot), then deletes it, waits
    /// until the slot is released and drops it.
    Delete(ConnectorDeleteArgs),
}

/// Arguments of `cdcctl connector list`.
#[derive(Debug, Args)]
pub struct ConnectorListArgs {
    /// Kafka Connect connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Arguments of `cdcctl connector status`.
#[derive(Debug, Args)]
pub struct ConnectorStatusArgs {
    /// Connector [default: `connect.connector`, i.e. `cdcctl`]
    #[arg(value_name = "NAME", add = ArgValueCandidates::new(crate::complete::connectors))]
    pub name: Option<String>,
    /// Kafka Connect connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Arguments of `cdcctl connector restart`.
#[derive(Debug, Args)]
pub struct ConnectorRestartArgs {
    /// Connector [default: `connect.connector`, i.e. `cdcctl`]
    #[arg(value_name = "NAME", add = ArgValueCandidates::new(crate::complete::connectors))]
    pub name: Option<String>,
    /// Restart the connector and every task, not only the failed ones
    #[arg(long)]
    pub all: bool,
    /// Waiting for the result.
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Kafka Connect connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Arguments of `cdcctl connector pause` and `resume`.
#[derive(Debug, Args)]
pub struct ConnectorStateArgs {
    /// Connector [default: `connect.connector`, i.e. `cdcctl`]
    #[arg(value_name = "NAME", add = ArgValueCandidates::new(crate::complete::connectors))]
    pub name: Option<String>,
    /// Waiting for the result.
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Kafka Connect connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Arguments of `cdcctl connector delete`.
#[derive(Debug, Args)]
pub struct ConnectorDeleteArgs {
    /// Connector [default: `connect.connector`, i.e. `cdcctl`]
    #[arg(value_name = "NAME", add = ArgValueCandidates::new(crate::complete::connectors))]
    pub name: Option<String>,
    /// Also drop the replication slot (after resetting the offsets and deleting the connector)
    #[arg(long)]
    pub drop_slot: bool,
    /// Also drop the publication, unless another connector on the worker uses it
    #[arg(long)]
    pub drop_publication: bool,
    /// Postgres connection (for `--drop-slot` and `--drop-publication`).
    #[command(flatten)]
    pub postgres: PostgresArgs,
    /// Kafka Connect connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Arguments of `cdcctl config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Every service's connection flags.
    #[command(flatten)]
    pub services: ServiceArgs,
}

impl ConfigArgs {
    /// The config-backed flags that were given, highest layer of the merge.
    pub fn flag_values(&self) -> Vec<FlagValue> {
        self.services.flag_values()
    }
}

/// The connection flags of every service (`config`, `health`, `verify`).
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Postgres connection.
    #[command(flatten)]
    pub postgres: PostgresArgs,
    /// Kafka connection.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Kafka Connect connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Snowflake connection.
    #[command(flatten)]
    pub snowflake: SnowflakeArgs,
    /// DuckDB file.
    #[command(flatten)]
    pub duckdb: DuckdbArgs,
}

impl ServiceArgs {
    /// The flags that were given.
    pub fn flag_values(&self) -> Vec<FlagValue> {
        let mut v = self.postgres.flag_values();
        v.extend(self.kafka.flag_values());
        v.extend(self.connect.flag_values());
        v.extend(self.snowflake.flag_values());
        v.extend(self.duckdb.flag_values());
        v
    }
}

/// Arguments of `cdcctl completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

fn flag(key: &'static str, flag: &'static str, value: &Option<String>) -> Option<FlagValue> {
    value.as_ref().map(|v| FlagValue {
        key,
        value: v.clone(),
        flag,
    })
}

/// Postgres connection flags.
#[derive(Debug, Args)]
#[command(next_help_heading = "Postgres")]
pub struct PostgresArgs {
    /// Postgres URL, `postgres://USER:PASS@HOST:PORT/DB?sslmode=MODE`
    #[arg(long, value_name = "URL")]
    pub postgres_url: Option<String>,
}

impl PostgresArgs {
    /// The flags that were given.
    pub fn flag_values(&self) -> Vec<FlagValue> {
        flag("postgres.url", "--postgres-url", &self.postgres_url)
            .into_iter()
            .collect()
    }
}

/// Arguments of `cdcctl tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Tables to read: `users`, `commerce.products` (their topics are `<prefix>.<schema>.<table>`)
    #[arg(value_name = "TABLE", add = ArgValueCandidates::new(crate::complete::tables))]
    pub tables: Vec<String>,

    /// Read this topic (repeatable)
    #[arg(long, value_name = "TOPIC")]
    pub topic: Vec<String>,

    /// Read every topic whose whole name matches this regular expression
    #[arg(long, value_name = "REGEX")]
    pub pattern: Option<String>,

    /// Where to start: `beginning`, `end`, `offset:N`, `offset:-N` (last N of each partition),
    /// `time:RFC3339` or a relative time such as `-5m`
    ///
    /// Default: `end` when following, `beginning` otherwise.
    #[arg(long, value_name = "POSITION", allow_hyphen_values = true)]
    pub from: Option<String>,

    /// Keep reading new changes until interrupted (default on a terminal)
    #[arg(short, long, conflicts_with = "until_end")]
    pub follow: bool,

    /// Stop once every partition is read up to where it ended at start (default in a pipe)
    #[arg(short = 'e', long)]
    pub until_end: bool,

    /// Stop after printing this many events
    #[arg(short = 'n', long, value_name = "N")]
    pub count: Option<u64>,

    /// Only these operations, comma separated: c, r, u, d, t, m (or create, read, update, delete,
    /// truncate, message)
    #[arg(long, value_name = "OPS", value_delimiter = ',')]
    pub op: Vec<String>,

    /// Only events whose key has this value: `id=42` (repeatable; `42` alone for one-column keys)
    #[arg(long, value_name = "COL=VALUE")]
    pub key: Vec<String>,

    /// Only events whose row has this value: `status=paid` (the after image, or the before image
    /// of a delete; repeatable, all must match)
    #[arg(long = "where", value_name = "COL=VALUE")]
    pub where_: Vec<String>,

    /// Also print tombstones (the null-value message Kafka compaction uses after a delete)
    #[arg(long)]
    pub tombstones: bool,

    /// How each event is printed [default: `pretty`, or `json` with `--output json`]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<TailFormat>,

    /// Kafka connection flags.
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// Arguments of `cdcctl verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Tables to verify (`users`, `commerce.products`) [default: every loaded table]
    #[arg(value_name = "TABLE", add = ArgValueCandidates::new(crate::complete::tables))]
    pub tables: Vec<String>,

    /// List the keys that are missing, extra or different, with the differing columns
    #[arg(long)]
    pub diff: bool,

    /// With --diff, at most this many keys of each kind per table
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,

    /// The loader's sink and group.
    #[command(flatten)]
    pub loader: LoaderArgs,

    /// Every service's connection flags.
    #[command(flatten)]
    pub services: ServiceArgs,
}

impl VerifyArgs {
    /// The config-backed flags that were given.
    pub fn flag_values(&self) -> Vec<FlagValue> {
        let mut v = self.services.flag_values();
        v.extend(self.loader.flag_values());
        v
    }
}

/// Arguments of `cdcctl scd2`.
#[derive(Debug, Args)]
pub struct Scd2Args {
    /// The loaded table: `users` (schema `public`) or `schema.table`, as `load` named it
    #[arg(long, value_name = "TABLE", add = ArgValueCandidates::new(crate::complete::tables))]
    pub table: String,

    /// Key columns, comma separated [default: the key of the previous run]
    #[arg(long, value_name = "COLS", value_delimiter = ',')]
    pub key: Vec<String>,

    /// Columns whose changes make a new version, comma separated [default: every non-key column]
    #[arg(long, value_name = "COLS", value_delimiter = ',')]
    pub track: Vec<String>,

    /// The history table [default: `<table>_history`, in the table's schema]
    #[arg(long, value_name = "TABLE")]
    pub history_table: Option<String>,

    /// A delete also adds a current `is_deleted` version (the key's last values), instead of
    /// only closing the version
    #[arg(long)]
    pub keep_deleted: bool,

    /// Recompute the whole history from the changes table (needed to change --key, --track or
    /// --keep-deleted)
    #[arg(long, conflicts_with_all = ["as_of", "check"])]
    pub rebuild: bool,

    /// Print the table as it was at this instant (RFC 3339, or `YYYY-MM-DD HH:MM:SS[.ffffff]`
    /// in UTC) instead of updating the history
    #[arg(long, value_name = "TIMESTAMP", conflicts_with = "check")]
    pub as_of: Option<String>,

    /// Validate the history instead of updating it: one current row per live key, no
    /// overlapping or gapped intervals, valid_from < valid_to, versions 1, 2, 3… (exit 1 on any
    /// violation)
    #[arg(long)]
    pub check: bool,

    /// With --check, list at most this many violations per rule
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,

    /// Where the loader writes: duckdb or snowflake [default: `load.sink`]
    #[arg(long, value_name = "SINK")]
    pub sink: Option<String>,

    /// Snowflake connection.
    #[command(flatten)]
    pub snowflake: SnowflakeArgs,

    /// DuckDB file.
    #[command(flatten)]
    pub duckdb: DuckdbArgs,
}

impl Scd2Args {
    /// The config-backed flags that were given.
    pub fn flag_values(&self) -> Vec<FlagValue> {
        let mut v: Vec<FlagValue> = flag("load.sink", "--sink", &self.sink)
            .into_iter()
            .collect();
        v.extend(self.snowflake.flag_values());
        v.extend(self.duckdb.flag_values());
        v
    }
}

/// Which loader `health` and `verify` look at.
#[derive(Debug, Args)]
pub struct LoaderArgs {
    /// Where the loader writes: duckdb or snowflake [default: `load.sink`]
    #[arg(long, value_name = "SINK")]
    pub sink: Option<String>,

    /// The loader's consumer group, for its lag [default: `load.group`]
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
}

impl LoaderArgs {
    /// The flags that were given.
    pub fn flag_values(&self) -> Vec<FlagValue> {
        [
            flag("load.sink", "--sink", &self.sink),
            flag("load.group", "--group", &self.group),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Arguments of `cdcctl health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Warnings fail too (exit 1)
    #[arg(long)]
    pub strict: bool,

    /// Check again every INTERVAL until Ctrl-C (redrawn on a terminal; JSON lines with -o json)
    #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "5s")]
    pub watch: Option<String>,

    /// WAL a replication slot may retain before a warning [default: `health.slot_warn`, 1GB]
    #[arg(long, value_name = "SIZE")]
    pub slot_warn: Option<String>,

    /// WAL a replication slot may retain before the check fails [default: `health.slot_fail`,
    /// 10GB]
    #[arg(long, value_name = "SIZE")]
    pub slot_fail: Option<String>,

    /// Messages the loader group may be behind before a warning [default: `health.lag_warn`,
    /// 10000]
    #[arg(long, value_name = "N")]
    pub lag_warn: Option<String>,

    /// Messages the loader group may be behind before the check fails [default:
    /// `health.lag_fail`, 1000000]
    #[arg(long, value_name = "N")]
    pub lag_fail: Option<String>,

    /// Time since a table's last load before a warning [default: `health.freshness_warn`, 15m]
    #[arg(long, value_name = "DURATION")]
    pub freshness_warn: Option<String>,

    /// Time since a table's last load before the check fails [default:
    /// `health.freshness_fail`, 6h]
    #[arg(long, value_name = "DURATION")]
    pub freshness_fail: Option<String>,

    /// A running loader's --metrics-file: adds its warehouse circuit breaker and liveness
    #[arg(long, value_name = "PATH")]
    pub loader_metrics: Option<std::path::PathBuf>,

    /// How long each layer's checks may take
    #[arg(long, value_name = "DURATION", default_value = "15s")]
    pub timeout: String,

    /// The loader's sink and group.
    #[command(flatten)]
    pub loader: LoaderArgs,

    /// Every service's connection flags.
    #[command(flatten)]
    pub services: ServiceArgs,
}

impl HealthArgs {
    /// The config-backed flags that were given.
    pub fn flag_values(&self) -> Vec<FlagValue> {
        let mut v = self.services.flag_values();
        v.extend(flag("health.slot_warn", "--slot-warn", &self.slot_warn));
        v.extend(flag("health.slot_fail", "--slot-fail", &self.slot_fail));
        v.extend(flag("health.lag_warn", "--lag-warn", &self.lag_warn));
        v.extend(flag("health.lag_fail", "--lag-fail", &self.lag_fail));
        v.extend(flag(
            "health.freshness_warn",
            "--freshness-warn",
            &self.freshness_warn,
        ));
        v.extend(flag(
            "health.freshness_fail",
            "--freshness-fail",
            &self.freshness_fail,
        ));
        v.extend(self.loader.flag_values());
        v
    }
}

/// Arguments of `cdcctl replay-dlq`.
#[derive(Debug, Args)]
pub struct ReplayDlqArgs {
    /// What to do [default: list]
    #[command(subcommand)]
    pub action: Option<DlqAction>,

    /// The dead-letter topic [default: `<prefix>.dlq`]
    #[arg(long, value_name = "TOPIC", global = true)]
    pub dlq_topic: Option<String>,

    /// Consumer group that remembers what was replayed
    #[arg(
        long,
        value_name = "NAME",
        default_value = "cdcctl-replay-dlq",
        global = true
    )]
    pub group: String,

    /// Include dead letters already replayed (list and show)
    #[arg(long, global = true)]
    pub all: bool,

    /// Only dead letters of this source table: `users`, `commerce.products`
    #[arg(long, value_name = "TABLE", global = true)]
    pub table: Option<String>,

    /// Only dead letters of this error class: `invalid_json`, `unknown_op`, `type_mismatch`, ...
    #[arg(long, value_name = "CLASS", global = true)]
    pub error_class: Option<String>,

    /// Only dead letters that first failed at or after this time (RFC 3339, or `-2h`)
    #[arg(long, value_name = "TIME", global = true)]
    pub since: Option<String>,

    /// Only the dead letter at this offset of the dead-letter topic
    #[arg(long, value_name = "N", global = true)]
    pub offset: Option<i64>,

    /// Kafka connection flags.
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// DuckDB flags.
    #[command(flatten)]
    pub duckdb: DuckdbArgs,
}

/// What `cdcctl replay-dlq` does.
#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Dead letters grouped by error class and table, with counts and first/last failure
    List,
    /// Dead letters one by one: where they came from, their headers, why they fail now
    Show {
        /// Show at most this many
        #[arg(long, value_name = "N", default_value = "20")]
        limit: usize,
    },
    /// Replay the selected dead letters that now decode; put the others back, counted
    Replay {
        /// Send them to their original topic instead of applying them to the warehouse
        #[arg(long)]
        to_source_topic: bool,
        /// Show what would be replayed and whether it would succeed; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Where the rows go when applied: duckdb or snowflake [default: `load.sink`]
        #[arg(long, value_name = "SINK")]
        sink: Option<String>,
        /// Target schema, as the loader's `--target-schema`
        #[arg(long, value_name = "SCHEMA")]
        target_schema: Option<String>,
        /// Source table → target table, as the loader's `--table-map` (repeatable)
        #[arg(long, value_name = "SOURCE=TARGET")]
        table_map: Vec<String>,
        /// As the loader's `--soft-delete`: deletes flag rows instead of removing them
        #[arg(long)]
        soft_delete: bool,
        /// As the loader's `--history`: the replayed changes are added to `<table>__changes`
        /// too (a later `cdcctl scd2` puts them in their place in the history)
        #[arg(long)]
        history: bool,
    },
}

impl ReplayDlqArgs {
    /// The config-backed flags that were given.
    pub fn flag_values(&self) -> Vec<FlagValue> {
        let mut v = self.kafka.flag_values();
        v.extend(self.duckdb.flag_values());
        if let Some(DlqAction::Replay { sink, .. }) = &self.action {
            v.extend(flag("load.sink", "--sink", sink));
        }
        v
    }
}

/// Arguments of `cdcctl load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Tables to load: `users`, `commerce.products` (their topics are `<prefix>.<schema>.<table>`)
    ///
    /// With no table, `--topic` or `--pattern`, every table topic of the prefix is loaded.
    #[arg(value_name = "TABLE", add = ArgValueCandidates::new(crate::complete::tables))]
    pub tables: Vec<String>,

    /// Load this topic (repeatable)
    #[arg(long, value_name = "TOPIC")]
    pub topic: Vec<String>,

    /// Load every topic whose whole name matches this regular expression
    #[arg(long, value_name = "REGEX")]
    pub pattern: Option<String>,

    /// Where the rows go: duckdb or snowflake [default: `load.sink`, duckdb]
    #[arg(long, value_name = "SINK")]
    pub sink: Option<String>,

    /// Kafka consumer group whose committed offsets say where to resume [default: `load.group`,
    /// cdcctl-load]
    ///
    /// Run one loader per group: the loader assigns partitions itself and does not rebalance.
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,

    /// Where a partition without committed offset starts
    #[arg(long, value_enum, value_name = "POSITION", default_value_t = LoadFrom::Beginning)]
    pub from: LoadFrom,

    /// Flush a micro-batch at this many events [default: `load.batch_size`, 20000]
    #[arg(long, value_name = "N")]
    pub batch_size: Option<String>,

    /// Flush a partial micro-batch after this long, e.g. `500ms` [default:
    /// `load.flush_interval`, 1s]
    #[arg(long, value_name = "DURATION")]
    pub flush_interval: Option<String>,

    /// Once the topics have been read to their end, flush after the batch is this old
    ///
    /// A backlog is loaded in large batches (`--batch-size`); a trickle of changes is loaded as
    /// soon as it has been read, which keeps the latency low. A longer linger (up to
    /// `--flush-interval`) makes fewer, larger batches at low rates, e.g. for fewer Snowflake
    /// MERGEs.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub linger: String,

    /// Commit the offsets of loaded batches this often (`0s`: after every batch)
    ///
    /// Offsets are only ever committed after their batch is in the warehouse; a longer interval
    /// means fewer commits and, after a crash, a longer (harmless) replay.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub commit_interval: String,

    /// Dead-letter topic for messages that cannot be loaded [default: `<prefix>.dlq`]
    ///
    /// Such a message (invalid JSON, unknown op, a value that does not fit its schema) is
    /// produced there unchanged, with headers saying why and where it came from; its offset is
    /// committed once the dead-letter topic has it, and loading goes on. `replay-dlq` reads it.
    #[arg(long, value_name = "TOPIC", conflicts_with = "no_dlq")]
    pub dlq_topic: Option<String>,

    /// Stop at the first message that cannot be loaded instead (exit 1, nothing committed past it)
    #[arg(long)]
    pub no_dlq: bool,

    /// First wait before retrying a batch the warehouse could not take (unreachable, timed
    /// out, throttled); doubled with jitter up to --retry-cap
    #[arg(long, value_name = "DURATION", default_value = "500ms")]
    pub retry_base: String,

    /// Longest wait between two retries of a batch
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub retry_cap: String,

    /// Give up (exit 3) when the warehouse has been unavailable this long
    #[arg(long, value_name = "DURATION", default_value = "15m")]
    pub retry_max_elapsed: String,

    /// Consecutive failures that open the warehouse circuit breaker (no attempts while open)
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub breaker_threshold: u32,

    /// How long the breaker stays open before one probe attempt
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub breaker_open: String,

    /// Exit 0 once every partition is loaded up to where it ended at start (CI, Makefiles)
    #[arg(long)]
    pub until_caught_up: bool,

    /// Put every target table in this schema (default: the source table's schema)
    #[arg(long, value_name = "SCHEMA")]
    pub target_schema: Option<String>,

    /// Load a source table into another target: `public.users=app_users`,
    /// `commerce.users=shop.customers` (repeatable)
    #[arg(long, value_name = "SOURCE=TARGET")]
    pub table_map: Vec<String>,

    /// Keep deleted rows, flagged `_cdc_deleted = true`, instead of removing them
    #[arg(long)]
    pub soft_delete: bool,

    /// Declare a PRIMARY KEY on the key columns of tables it creates (DuckDB; slower MERGE)
    #[arg(long)]
    pub primary_key: bool,

    /// Also append every change to `<table>__changes` (what `cdcctl scd2` builds history from)
    #[arg(long)]
    pub history: bool,

    /// DuckDB's memory limit (`SET memory_limit`); it spills to disk beyond it
    #[arg(long, value_name = "SIZE", default_value = "256MB")]
    pub memory_limit: String,

    /// Write the metrics as JSON to this file, periodically and at exit
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    /// How often the metrics file is rewritten
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub metrics_interval: String,

    /// Serve the metrics in Prometheus text format on this address, e.g. `127.0.0.1:9187`
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,

    /// Kafka connection flags.
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// DuckDB file.
    #[command(flatten)]
    pub duckdb: DuckdbArgs,
}

impl LoadArgs {
    /// The config-backed flags that were given.
    pub fn flag_values(&self) -> Vec<FlagValue> {
        let mut v = self.kafka.flag_values();
        v.extend(self.duckdb.flag_values());
        v.extend(
            [
                flag("load.sink", "--sink", &self.sink),
                flag("load.group", "--group", &self.group),
                flag("load.batch_size", "--batch-size", &self.batch_size),
                flag(
                    "load.flush_interval",
                    "--flush-interval",
                    &self.flush_interval,
                ),
            ]
            .into_iter()
            .flatten(),
        );
        v
    }
}

/// Where `cdcctl load` starts in a partition its group has no committed offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadFrom {
    /// The oldest retained message (the whole history, snapshot included).
    Beginning,
    /// Only changes produced after the loader starts.
    End,
}

/// How `cdcctl tail` prints events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TailFormat {
    /// One line per event: time, op, table, key, changed columns, lag
    Pretty,
    /// One decoded JSON object per line (op, table, key, before, after, source, kafka)
    Json,
    /// The message value as stored, one per line
    Raw,
}

/// Kafka connection flags.
#[derive(Debug, Args)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`
    #[arg(long, value_name = "LIST")]
    pub brokers: Option<String>,
    /// Debezium topic prefix: topics are `<PREFIX>.<schema>.<table>`
    #[arg(long, value_name = "PREFIX")]
    pub topic_prefix: Option<String>,
}

impl KafkaArgs {
    /// The flags that were given.
    pub fn flag_values(&self) -> Vec<FlagValue> {
        [
            flag("kafka.brokers", "--brokers", &self.brokers),
            flag("kafka.topic_prefix", "--topic-prefix", &self.topic_prefix),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Kafka Connect flags.
#[derive(Debug, Args)]
#[command(next_help_heading = "Kafka Connect")]
pub struct ConnectArgs {
    /// Kafka Connect REST URL
    #[arg(long, value_name = "URL")]
    pub connect_url: Option<String>,
}

impl ConnectArgs {
    /// The flags that were given.
    pub fn flag_values(&self) -> Vec<FlagValue> {
        flag("connect.url", "--connect-url", &self.connect_url)
            .into_iter()
            .collect()
    }
}

/// Snowflake connection flags.
#[derive(Debug, Args)]
#[command(next_help_heading = "Snowflake")]
pub struct SnowflakeArgs {
    /// Snowflake account identifier (`orgname-account`)
    #[arg(long, value_name = "ACCOUNT")]
    pub snowflake_account: Option<String>,
    /// Snowflake endpoint URL, overriding the one derived from the account
    #[arg(long, value_name = "URL")]
    pub snowflake_url: Option<String>,
}

impl SnowflakeArgs {
    /// The flags that were given.
    pub fn flag_values(&self) -> Vec<FlagValue> {
        [
            flag(
                "snowflake.account",
                "--snowflake-account",
                &self.snowflake_account,
            ),
            flag("snowflake.url", "--snowflake-url", &self.snowflake_url),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// DuckDB flags.
#[derive(Debug, Args)]
#[command(next_help_heading = "DuckDB")]
pub struct DuckdbArgs {
    /// DuckDB database file
    #[arg(long, visible_alias = "duckdb", value_name = "PATH")]
    pub duckdb_path: Option<String>,
}

impl DuckdbArgs {
    /// The flags that were given.
    pub fn flag_values(&self) -> Vec<FlagValue> {
        flag("duckdb.path", "--duckdb-path", &self.duckdb_path)
            .into_iter()
            .collect()
    }
}

/// The clap command, for completions and man pages.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn output_has_short_alias_and_flags_reach_config() {
        let cli =
            Cli::try_parse_from(["cdcctl", "-o", "json", "config", "--brokers", "b:1"]).unwrap();
        assert_eq!(cli.global.output, OutputFormat::Json);
        let Command::Config(args) = cli.command else {
            panic!("expected config")
        };
        let flags = args.flag_values();
        assert_eq!(flags.len(), 1);
        assert_eq!(
            (flags[0].key, flags[0].flag),
            ("kafka.brokers", "--brokers")
        );
    }

    #[test]
    fn quiet_and_verbose_conflict() {
        assert!(Cli::try_parse_from(["cdcctl", "-q", "-v", "config"]).is_err());
    }
}
