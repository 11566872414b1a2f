//! The command line, as clap derive types: global flags, connection flag groups and one args
//! struct per subcommand. Only parsing lives here; no IO, no defaults of config-backed values
//! (those are merged in `config.rs` so `cdcctl config` can tell where each value came from).

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

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
    #[arg(long, global = true, value_name = "NAME")]
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
    #[arg(long, value_name = "LIST")]
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

/// Arguments of `cdcctl config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
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

impl ConfigArgs {
    /// The config-backed flags that were given, highest layer of the merge.
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
    #[arg(long, value_name = "PATH")]
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
