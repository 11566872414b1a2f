//! Effective configuration: defaults < `cdcctl.toml` (base, then `[profiles.NAME]`) < environment
//! < flags, with the source of every value recorded for `cdcctl config`.
//!
//! Owns the list of settings ([`KEYS`]), the environment variable names ([`env`]) and secret
//! redaction. It reads files and the environment it is handed; it never talks to a service.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use toml_edit::{Item, TableLike, Value};

use crate::error::CliError;

/// Environment variable names cdcctl reads. README's table is checked against this list by a test.
pub mod env {
    /// Path of the configuration file (instead of `./cdcctl.toml` and the user config dir).
    pub const CDCCTL_CONFIG: &str = "CDCCTL_CONFIG";
    /// Profile to use (instead of the file's `default_profile`, or `default`).
    pub const CDCCTL_PROFILE: &str = "CDCCTL_PROFILE";
    /// Turns colour off when set to any value (<https://no-color.org>).
    pub const NO_COLOR: &str = "NO_COLOR";
    /// Postgres connection URL, `postgres://user:pass@host:port/db?sslmode=...`.
    pub const CDCCTL_POSTGRES_URL: &str = "CDCCTL_POSTGRES_URL";
    /// Postgres host.
    pub const CDCCTL_POSTGRES_HOST: &str = "CDCCTL_POSTGRES_HOST";
    /// Postgres host (libpq convention).
    pub const PGHOST: &str = "PGHOST";
    /// Postgres port.
    pub const CDCCTL_POSTGRES_PORT: &str = "CDCCTL_POSTGRES_PORT";
    /// Postgres port (libpq convention).
    pub const PGPORT: &str = "PGPORT";
    /// Postgres user.
    pub const CDCCTL_POSTGRES_USER: &str = "CDCCTL_POSTGRES_USER";
    /// Postgres user (libpq convention).
    pub const PGUSER: &str = "PGUSER";
    /// Postgres password.
    pub const CDCCTL_POSTGRES_PASSWORD: &str = "CDCCTL_POSTGRES_PASSWORD";
    /// Postgres password (libpq convention).
    pub const PGPASSWORD: &str = "PGPASSWORD";
    /// Postgres database.
    pub const CDCCTL_POSTGRES_DATABASE: &str = "CDCCTL_POSTGRES_DATABASE";
    /// Postgres database (libpq convention).
    pub const PGDATABASE: &str = "PGDATABASE";
    /// Postgres TLS mode: disable, prefer or require.
    pub const CDCCTL_POSTGRES_SSLMODE: &str = "CDCCTL_POSTGRES_SSLMODE";
    /// Postgres TLS mode (libpq convention).
    pub const PGSSLMODE: &str = "PGSSLMODE";
    /// Kafka bootstrap servers, comma separated.
    pub const CDCCTL_KAFKA_BROKERS: &str = "CDCCTL_KAFKA_BROKERS";
    /// Kafka bootstrap servers (common convention).
    pub const KAFKA_BOOTSTRAP_SERVERS: &str = "KAFKA_BOOTSTRAP_SERVERS";
    /// Debezium topic prefix (`topic.prefix`): topics are `<prefix>.<schema>.<table>`.
    pub const CDCCTL_KAFKA_TOPIC_PREFIX: &str = "CDCCTL_KAFKA_TOPIC_PREFIX";
    /// Extra librdkafka properties, `key=value` pairs separated by commas.
    pub const CDCCTL_KAFKA_PROPERTIES: &str = "CDCCTL_KAFKA_PROPERTIES";
    /// Kafka Connect REST URL.
    pub const CDCCTL_CONNECT_URL: &str = "CDCCTL_CONNECT_URL";
    /// Kafka Connect basic-auth user.
    pub const CDCCTL_CONNECT_USER: &str = "CDCCTL_CONNECT_USER";
    /// Kafka Connect basic-auth password.
    pub const CDCCTL_CONNECT_PASSWORD: &str = "CDCCTL_CONNECT_PASSWORD";
    /// Name of the Debezium connector `create-connector` applies and manages.
    pub const CDCCTL_CONNECT_CONNECTOR: &str = "CDCCTL_CONNECT_CONNECTOR";
    /// Snowflake account identifier (`orgname-account` or `locator.region`).
    pub const CDCCTL_SNOWFLAKE_ACCOUNT: &str = "CDCCTL_SNOWFLAKE_ACCOUNT";
    /// Snowflake account identifier (Snowflake convention).
    pub const SNOWFLAKE_ACCOUNT: &str = "SNOWFLAKE_ACCOUNT";
    /// Snowflake user.
    pub const CDCCTL_SNOWFLAKE_USER: &str = "CDCCTL_SNOWFLAKE_USER";
    /// Snowflake user (Snowflake convention).
    pub const SNOWFLAKE_USER: &str = "SNOWFLAKE_USER";
    /// Snowflake password.
    pub const CDCCTL_SNOWFLAKE_PASSWORD: &str = "CDCCTL_SNOWFLAKE_PASSWORD";
    /// Snowflake password (Snowflake convention).
    pub const SNOWFLAKE_PASSWORD: &str = "SNOWFLAKE_PASSWORD";
    /// Path of a PEM private key for key-pair (JWT) authentication.
    pub const CDCCTL_SNOWFLAKE_PRIVATE_KEY_PATH: &str = "CDCCTL_SNOWFLAKE_PRIVATE_KEY_PATH";
    /// Path of a PEM private key (Snowflake convention).
    pub const SNOWFLAKE_PRIVATE_KEY_PATH: &str = "SNOWFLAKE_PRIVATE_KEY_PATH";
    /// Passphrase of an encrypted private key.
    pub const CDCCTL_SNOWFLAKE_PRIVATE_KEY_PASSPHRASE: &str =
        "CDCCTL_SNOWFLAKE_PRIVATE_KEY_PASSPHRASE";
    /// Passphrase of an encrypted private key (Snowflake convention).
    pub const SNOWFLAKE_PRIVATE_KEY_PASSPHRASE: &str = "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE";
    /// Snowflake role.
    pub const CDCCTL_SNOWFLAKE_ROLE: &str = "CDCCTL_SNOWFLAKE_ROLE";
    /// Snowflake role (Snowflake convention).
    pub const SNOWFLAKE_ROLE: &str = "SNOWFLAKE_ROLE";
    /// Snowflake warehouse.
    pub const CDCCTL_SNOWFLAKE_WAREHOUSE: &str = "CDCCTL_SNOWFLAKE_WAREHOUSE";
    /// Snowflake warehouse (Snowflake convention).
    pub const SNOWFLAKE_WAREHOUSE: &str = "SNOWFLAKE_WAREHOUSE";
    /// Snowflake database.
    pub const CDCCTL_SNOWFLAKE_DATABASE: &str = "CDCCTL_SNOWFLAKE_DATABASE";
    /// Snowflake database (Snowflake convention).
    pub const SNOWFLAKE_DATABASE: &str = "SNOWFLAKE_DATABASE";
    /// Snowflake schema.
    pub const CDCCTL_SNOWFLAKE_SCHEMA: &str = "CDCCTL_SNOWFLAKE_SCHEMA";
    /// Snowflake schema (Snowflake convention).
    pub const SNOWFLAKE_SCHEMA: &str = "SNOWFLAKE_SCHEMA";
    /// Snowflake endpoint URL, overriding the one derived from the account (emulators, links).
    pub const CDCCTL_SNOWFLAKE_URL: &str = "CDCCTL_SNOWFLAKE_URL";
    /// Snowflake endpoint URL (convention).
    pub const SNOWFLAKE_URL: &str = "SNOWFLAKE_URL";
    /// DuckDB database file.
    pub const CDCCTL_DUCKDB_PATH: &str = "CDCCTL_DUCKDB_PATH";
    /// Default sink of `load`: duckdb or snowflake.
    pub const CDCCTL_LOAD_SINK: &str = "CDCCTL_LOAD_SINK";
    /// Kafka consumer group of `load`.
    pub const CDCCTL_LOAD_GROUP: &str = "CDCCTL_LOAD_GROUP";
    /// Events per micro-batch of `load`.
    pub const CDCCTL_LOAD_BATCH_SIZE: &str = "CDCCTL_LOAD_BATCH_SIZE";
    /// Longest wait before `load` flushes a partial batch, e.g. `500ms`, `1s`.
    pub const CDCCTL_LOAD_FLUSH_INTERVAL: &str = "CDCCTL_LOAD_FLUSH_INTERVAL";
    /// WAL a slot may retain before `health` warns, e.g. `1GB`.
    pub const CDCCTL_HEALTH_SLOT_WARN: &str = "CDCCTL_HEALTH_SLOT_WARN";
    /// WAL a slot may retain before `health` fails.
    pub const CDCCTL_HEALTH_SLOT_FAIL: &str = "CDCCTL_HEALTH_SLOT_FAIL";
    /// Loader lag (messages) before `health` warns.
    pub const CDCCTL_HEALTH_LAG_WARN: &str = "CDCCTL_HEALTH_LAG_WARN";
    /// Loader lag (messages) before `health` fails.
    pub const CDCCTL_HEALTH_LAG_FAIL: &str = "CDCCTL_HEALTH_LAG_FAIL";
    /// Time since a table's last load before `health` warns, e.g. `15m`.
    pub const CDCCTL_HEALTH_FRESHNESS_WARN: &str = "CDCCTL_HEALTH_FRESHNESS_WARN";
    /// Time since a table's last load before `health` fails.
    pub const CDCCTL_HEALTH_FRESHNESS_FAIL: &str = "CDCCTL_HEALTH_FRESHNESS_FAIL";

    /// Every variable above, for documentation checks.
    pub const ALL: &[&str] = &[
        CDCCTL_CONFIG,
        CDCCTL_PROFILE,
        NO_COLOR,
        CDCCTL_POSTGRES_URL,
        CDCCTL_POSTGRES_HOST,
        PGHOST,
        CDCCTL_POSTGRES_PORT,
        PGPORT,
        CDCCTL_POSTGRES_USER,
        PGUSER,
        CDCCTL_POSTGRES_PASSWORD,
        PGPASSWORD,
        CDCCTL_POSTGRES_DATABASE,
        PGDATABASE,
        CDCCTL_POSTGRES_SSLMODE,
        PGSSLMODE,
        CDCCTL_KAFKA_BROKERS,
        KAFKA_BOOTSTRAP_SERVERS,
        CDCCTL_KAFKA_TOPIC_PREFIX,
        CDCCTL_KAFKA_PROPERTIES,
        CDCCTL_CONNECT_URL,
        CDCCTL_CONNECT_USER,
        CDCCTL_CONNECT_PASSWORD,
        CDCCTL_CONNECT_CONNECTOR,
        CDCCTL_SNOWFLAKE_ACCOUNT,
        SNOWFLAKE_ACCOUNT,
        CDCCTL_SNOWFLAKE_USER,
        SNOWFLAKE_USER,
        CDCCTL_SNOWFLAKE_PASSWORD,
        SNOWFLAKE_PASSWORD,
        CDCCTL_SNOWFLAKE_PRIVATE_KEY_PATH,
        SNOWFLAKE_PRIVATE_KEY_PATH,
        CDCCTL_SNOWFLAKE_PRIVATE_KEY_PASSPHRASE,
        SNOWFLAKE_PRIVATE_KEY_PASSPHRASE,
        CDCCTL_SNOWFLAKE_ROLE,
        SNOWFLAKE_ROLE,
        CDCCTL_SNOWFLAKE_WAREHOUSE,
        SNOWFLAKE_WAREHOUSE,
        CDCCTL_SNOWFLAKE_DATABASE,
        SNOWFLAKE_DATABASE,
        CDCCTL_SNOWFLAKE_SCHEMA,
        SNOWFLAKE_SCHEMA,
        CDCCTL_SNOWFLAKE_URL,
        SNOWFLAKE_URL,
        CDCCTL_DUCKDB_PATH,
        CDCCTL_LOAD_SINK,
        CDCCTL_LOAD_GROUP,
        CDCCTL_LOAD_BATCH_SIZE,
        CDCCTL_LOAD_FLUSH_INTERVAL,
        CDCCTL_HEALTH_SLOT_WARN,
        CDCCTL_HEALTH_SLOT_FAIL,
        CDCCTL_HEALTH_LAG_WARN,
        CDCCTL_HEALTH_LAG_FAIL,
        CDCCTL_HEALTH_FRESHNESS_WARN,
        CDCCTL_HEALTH_FRESHNESS_FAIL,
    ];
}

/// The type a setting's value must have; decides TOML type checks and parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// A file path.
    Path,
    /// A TCP port, 1-65535.
    Port,
    /// A positive whole number.
    Count,
    /// A duration such as `250ms`, `1s`, `5m`.
    Duration,
    /// One of a fixed list of words.
    Choice(&'static [&'static str]),
    /// A `postgres://` URL that sets the `postgres.*` parts at its own precedence.
    PostgresUrl,
    /// A table of extra `key = "value"` client properties.
    Properties,
}

/// One setting: its dotted name, type, default, environment variables and whether it is secret.
#[derive(Debug)]
pub struct KeySpec {
    /// Dotted name, `section.key`, as written in `cdcctl.toml`.
    pub key: &'static str,
    /// Value type.
    pub kind: Kind,
    /// Built-in default (pointing at the local stack), if any.
    pub default: Option<&'static str>,
    /// Environment variables, highest precedence first.
    pub env: &'static [&'static str],
    /// Never shown: printed as `****`.
    pub secret: bool,
}

const fn spec(
    key: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    env: &'static [&'static str],
) -> KeySpec {
    KeySpec {
        key,
        kind,
        default,
        env,
        secret: false,
    }
}

const fn secret(
    key: &'static str,
    default: Option<&'static str>,
    env: &'static [&'static str],
) -> KeySpec {
    KeySpec {
        key,
        kind: Kind::Text,
        default,
        env,
        secret: true,
    }
}

const SSLMODES: &[&str] = &["disable", "prefer", "require"];
const SINKS: &[&str] = &["duckdb", "snowflake"];

/// Default Snowflake endpoint: the fakesnow emulator of the local stack.
pub const DEFAULT_SNOWFLAKE_URL: &str = "http://127.0.0.1:8085";

/// Every setting, in display order.
pub const KEYS: &[KeySpec] = &[
    spec(
        "postgres.url",
        Kind::PostgresUrl,
        None,
        &[env::CDCCTL_POSTGRES_URL],
    ),
    spec(
        "postgres.host",
        Kind::Text,
        Some("127.0.0.1"),
        &[env::CDCCTL_POSTGRES_HOST, env::PGHOST],
    ),
    spec(
        "postgres.port",
        Kind::Port,
        Some("55432"),
        &[env::CDCCTL_POSTGRES_PORT, env::PGPORT],
    ),
    spec(
        "postgres.user",
        Kind::Text,
        Some("cdc"),
        &[env::CDCCTL_POSTGRES_USER, env::PGUSER],
    ),
    secret(
        "postgres.password",
        Some("cdcpass"),
        &[env::CDCCTL_POSTGRES_PASSWORD, env::PGPASSWORD],
    ),
    spec(
        "postgres.database",
        Kind::Text,
        Some("app"),
        &[env::CDCCTL_POSTGRES_DATABASE, env::PGDATABASE],
    ),
    spec(
        "postgres.sslmode",
        Kind::Choice(SSLMODES),
        Some("prefer"),
        &[env::CDCCTL_POSTGRES_SSLMODE, env::PGSSLMODE],
    ),
    spec(
        "kafka.brokers",
        Kind::Text,
        Some("127.0.0.1:9092"),
        &[env::CDCCTL_KAFKA_BROKERS, env::KAFKA_BOOTSTRAP_SERVERS],
    ),
    spec(
        "kafka.topic_prefix",
        Kind::Text,
        Some("cdc"),
        &[env::CDCCTL_KAFKA_TOPIC_PREFIX],
    ),
    spec(
        "kafka.properties",
        Kind::Properties,
        None,
        &[env::CDCCTL_KAFKA_PROPERTIES],
    ),
    spec(
        "connect.url",
        Kind::Text,
        Some("http://127.0.0.1:8083"),
        &[env::CDCCTL_CONNECT_URL],
    ),
    spec(
        "connect.user",
        Kind::Text,
        None,
        &[env::CDCCTL_CONNECT_USER],
    ),
    secret("connect.password", None, &[env::CDCCTL_CONNECT_PASSWORD]),
    spec(
        "connect.connector",
        Kind::Text,
        Some("cdcctl"),
        &[env::CDCCTL_CONNECT_CONNECTOR],
    ),
    spec(
        "snowflake.account",
        Kind::Text,
        Some("fakesnow"),
        &[env::CDCCTL_SNOWFLAKE_ACCOUNT, env::SNOWFLAKE_ACCOUNT],
    ),
    spec(
        "snowflake.user",
        Kind::Text,
        Some("cdcctl"),
        &[env::CDCCTL_SNOWFLAKE_USER, env::SNOWFLAKE_USER],
    ),
    secret(
        "snowflake.password",
        Some("fakesnow"),
        &[env::CDCCTL_SNOWFLAKE_PASSWORD, env::SNOWFLAKE_PASSWORD],
    ),
    spec(
        "snowflake.private_key_path",
        Kind::Path,
        None,
        &[
            env::CDCCTL_SNOWFLAKE_PRIVATE_KEY_PATH,
            env::SNOWFLAKE_PRIVATE_KEY_PATH,
        ],
    ),
    secret(
        "snowflake.private_key_passphrase",
        None,
        &[
            env::CDCCTL_SNOWFLAKE_PRIVATE_KEY_PASSPHRASE,
            env::SNOWFLAKE_PRIVATE_KEY_PASSPHRASE,
        ],
    ),
    spec(
        "snowflake.role",
        Kind::Text,
        None,
        &[env::CDCCTL_SNOWFLAKE_ROLE, env::SNOWFLAKE_ROLE],
    ),
    spec(
        "snowflake.warehouse",
        Kind::Text,
        None,
        &[env::CDCCTL_SNOWFLAKE_WAREHOUSE, env::SNOWFLAKE_WAREHOUSE],
    ),
    spec(
        "snowflake.database",
        Kind::Text,
        Some("CDCCTL"),
        &[env::CDCCTL_SNOWFLAKE_DATABASE, env::SNOWFLAKE_DATABASE],
    ),
    spec(
        "snowflake.schema",
        Kind::Text,
        Some("PUBLIC"),
        &[env::CDCCTL_SNOWFLAKE_SCHEMA, env::SNOWFLAKE_SCHEMA],
    ),
    spec(
        "snowflake.url",
        Kind::Text,
        Some(DEFAULT_SNOWFLAKE_URL),
        &[env::CDCCTL_SNOWFLAKE_URL, env::SNOWFLAKE_URL],
    ),
    spec(
        "duckdb.path",
        Kind::Path,
        Some("cdcctl.duckdb"),
        &[env::CDCCTL_DUCKDB_PATH],
    ),
    spec(
        "load.sink",
        Kind::Choice(SINKS),
        Some("duckdb"),
        &[env::CDCCTL_LOAD_SINK],
    ),
    spec(
        "load.group",
        Kind::Text,
        Some("cdcctl-load"),
        &[env::CDCCTL_LOAD_GROUP],
    ),
    spec(
        "load.batch_size",
        Kind::Count,
        Some("20000"),
        &[env::CDCCTL_LOAD_BATCH_SIZE],
    ),
    spec(
        "load.flush_interval",
        Kind::Duration,
        Some("1s"),
        &[env::CDCCTL_LOAD_FLUSH_INTERVAL],
    ),
    spec(
        "health.slot_warn",
        Kind::Text,
        Some("1GB"),
        &[env::CDCCTL_HEALTH_SLOT_WARN],
    ),
    spec(
        "health.slot_fail",
        Kind::Text,
        Some("10GB"),
        &[env::CDCCTL_HEALTH_SLOT_FAIL],
    ),
    spec(
        "health.lag_warn",
        Kind::Count,
        Some("10000"),
        &[env::CDCCTL_HEALTH_LAG_WARN],
    ),
    spec(
        "health.lag_fail",
        Kind::Count,
        Some("1000000"),
        &[env::CDCCTL_HEALTH_LAG_FAIL],
    ),
    spec(
        "health.freshness_warn",
        Kind::Duration,
        Some("15m"),
        &[env::CDCCTL_HEALTH_FRESHNESS_WARN],
    ),
    spec(
        "health.freshness_fail",
        Kind::Duration,
        Some("6h"),
        &[env::CDCCTL_HEALTH_FRESHNESS_FAIL],
    ),
];

fn key_spec(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.key == key)
}

/// Kafka property names whose values are secrets (SASL/SSL passwords, keys, tokens).
pub fn is_secret_property(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "secret", "token", "key.pem", "private"]
        .iter()
        .any(|s| n.contains(s))
}

/// A value that must never be printed: `Display` and `Debug` show `****`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The real value, for handing to a client; never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built into cdcctl.
    Default,
    /// The configuration file; `profile` is set when it came from a `[profiles.NAME]` section.
    File {
        /// The file.
        path: PathBuf,
        /// The profile section, if not the file's base sections.
        profile: Option<String>,
    },
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

impl Source {
    /// `default`, `file`, `env` or `flag`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::File { .. } => "file",
            Source::Env(_) => "env",
            Source::Flag(_) => "flag",
        }
    }

    /// The precise origin: the file (and profile), the variable or the flag.
    pub fn origin(&self) -> String {
        match self {
            Source::Default => String::new(),
            Source::File {
                path,
                profile: None,
            } => path.display().to_string(),
            Source::File {
                path,
                profile: Some(p),
            } => format!("{} [profiles.{p}]", path.display()),
            Source::Env(var) => var.clone(),
            Source::Flag(flag) => flag.clone(),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            other => write!(f, "{} {}", other.kind(), other.origin()),
        }
    }
}

/// One value given on the command line for a setting.
#[derive(Debug, Clone)]
pub struct FlagValue {
    /// The setting, e.g. `kafka.brokers`.
    pub key: &'static str,
    /// The value as typed.
    pub value: String,
    /// The flag, e.g. `--brokers`.
    pub flag: &'static str,
}

/// Everything [`Config::load`] reads, so tests can hand it a fake environment.
pub struct LoadRequest<'a> {
    /// `--config PATH`.
    pub config_path: Option<PathBuf>,
    /// `--profile NAME`.
    pub profile: Option<String>,
    /// Config-backed flags that were given.
    pub flags: Vec<FlagValue>,
    /// Environment lookup (`std::env::var` in the binary).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Directory searched for `cdcctl.toml`.
    pub cwd: PathBuf,
    /// The user's config directory (`~/.config`), searched for `cdcctl/cdcctl.toml`.
    pub user_config_dir: Option<PathBuf>,
}

/// One effective value with its source, as `cdcctl config` shows it (secrets already redacted).
#[derive(Debug, Clone, Serialize)]
pub struct SettingView {
    /// Dotted setting name, e.g. `postgres.port`.
    pub key: String,
    /// The effective value as text, `****` for secrets, null when unset.
    pub value: Option<String>,
    /// `default`, `file`, `env`, `flag`, or `unset`.
    pub source: String,
    /// The file (and profile section), variable or flag that set it; empty for defaults.
    pub origin: String,
    /// True for passwords, passphrases and secret client properties.
    pub secret: bool,
}

#[derive(Debug, Clone)]
struct Setting {
    value: String,
    source: Source,
}

/// Postgres connection settings.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Role to connect as.
    pub user: String,
    /// Password, if any.
    pub password: Option<Secret>,
    /// Database name.
    pub database: String,
    /// `disable`, `prefer` or `require`.
    pub sslmode: String,
}

impl PostgresConfig {
    /// A `postgres://` URL with the password replaced by `****`, for messages.
    pub fn redacted_url(&self) -> String {
        let auth = match &self.password {
            Some(_) => format!("{}:****", self.user),
            None => self.user.clone(),
        };
        format!(
            "postgres://{auth}@{}:{}/{}?sslmode={}",
            self.host, self.port, self.database, self.sslmode
        )
    }
}

/// Kafka client settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated.
    pub brokers: String,
    /// Debezium `topic.prefix`.
    pub topic_prefix: String,
    /// Extra librdkafka properties (may hold secrets: never print them whole).
    pub properties: BTreeMap<String, String>,
}

/// Kafka Connect REST settings.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// Base URL of the REST API.
    pub url: String,
    /// Basic-auth user.
    pub user: Option<String>,
    /// Basic-auth password.
    pub password: Option<Secret>,
    /// Name of the Debezium connector `create-connector` applies and manages.
    pub connector: String,
}

/// Snowflake settings.
#[derive(Debug, Clone)]
pub struct SnowflakeConfig {
    /// Account identifier.
    pub account: String,
    /// User name.
    pub user: String,
    /// Password (when not using a key pair).
    pub password: Option<Secret>,
    /// PEM private key for key-pair authentication.
    pub private_key_path: Option<PathBuf>,
    /// Passphrase of an encrypted private key.
    pub private_key_passphrase: Option<Secret>,
    /// Role.
    pub role: Option<String>,
    /// Warehouse.
    pub warehouse: Option<String>,
    /// Database.
    pub database: String,
    /// Schema.
    pub schema: String,
    /// Endpoint URL: explicit, or derived from the account.
    pub url: String,
}

/// DuckDB settings.
#[derive(Debug, Clone)]
pub struct DuckdbConfig {
    /// Database file.
    pub path: PathBuf,
}

/// Defaults of `load`.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `duckdb` or `snowflake`.
    pub sink: String,
    /// Kafka consumer group.
    pub group: String,
    /// Events per micro-batch.
    pub batch_size: u64,
    /// Longest wait before flushing a partial batch.
    pub flush_interval: Duration,
}

/// Thresholds of `health`.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// WAL a slot may retain before a warning (a size such as `1GB`).
    pub slot_warn: String,
    /// WAL a slot may retain before a failure.
    pub slot_fail: String,
    /// Loader lag before a warning.
    pub lag_warn: u64,
    /// Loader lag before a failure.
    pub lag_fail: u64,
    /// Time since a table's last load before a warning.
    pub freshness_warn: Duration,
    /// Time since a table's last load before a failure.
    pub freshness_fail: Duration,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The profile in use.
    pub profile: String,
    /// The configuration file that was read, if any.
    pub file: Option<PathBuf>,
    /// Postgres.
    pub postgres: PostgresConfig,
    /// Kafka.
    pub kafka: KafkaConfig,
    /// Kafka Connect.
    pub connect: ConnectConfig,
    /// Snowflake.
    pub snowflake: SnowflakeConfig,
    /// DuckDB.
    pub duckdb: DuckdbConfig,
    /// Load defaults.
    pub load: LoadConfig,
    /// `health` thresholds.
    pub health: HealthConfig,
    views: Vec<SettingView>,
}

/// The merge of all layers, before typing.
#[derive(Default)]
struct Merged {
    values: BTreeMap<&'static str, Setting>,
    properties: BTreeMap<String, Setting>,
}

impl Merged {
    fn set(&mut self, key: &'static str, value: String, source: &Source) -> Result<(), CliError> {
        let spec = key_spec(key).expect("keys come from KEYS");
        match spec.kind {
            Kind::PostgresUrl => {
                for (part, v) in
                    parse_postgres_url(&value).map_err(|message| CliError::ConfigValue {
                        key: key.to_string(),
                        origin: source.to_string(),
                        message,
                    })?
                {
                    self.set(part, v, source)?;
                }
            }
            Kind::Properties => {
                for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').ok_or_else(|| CliError::ConfigValue {
                        key: key.to_string(),
                        origin: source.to_string(),
                        message: format!("expected `name=value`, got `{pair}`"),
                    })?;
                    self.set_property(k.trim(), v.trim().to_string(), source);
                }
            }
            _ => {
                self.values.insert(
                    key,
                    Setting {
                        value,
                        source: source.clone(),
                    },
                );
            }
        }
        Ok(())
    }

    fn set_property(&mut self, name: &str, value: String, source: &Source) {
        self.properties.insert(
            name.to_string(),
            Setting {
                value,
                source: source.clone(),
            },
        );
    }

    fn get(&self, key: &str) -> Option<&Setting> {
        self.values.get(key)
    }
}

/// Splits a `postgres://` URL into `postgres.*` settings.
fn parse_postgres_url(raw: &str) -> Result<Vec<(&'static str, String)>, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "scheme must be `postgres://` or `postgresql://`, got `{}://`",
            url.scheme()
        ));
    }
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let mut parts = Vec::new();
    if let Some(host) = url.host_str().filter(|h| !h.is_empty()) {
        parts.push(("postgres.host", host.trim_matches(['[', ']']).to_string()));
    }
    if let Some(port) = url.port() {
        parts.push(("postgres.port", port.to_string()));
    }
    if !url.username().is_empty() {
        parts.push(("postgres.user", decode(url.username())));
    }
    if let Some(pw) = url.password() {
        parts.push(("postgres.password", decode(pw)));
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() {
        parts.push(("postgres.database", decode(db)));
    }
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "sslmode" => parts.push(("postgres.sslmode", v.into_owned())),
            other => return Err(format!("unsupported URL parameter `{other}`")),
        }
    }
    Ok(parts)
}

/// Parses `250ms`, `1s`, `1.5s`, `5m`, `2h` (a bare number is seconds).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("expected a duration such as `500ms`, `1s` or `5m`, got `{raw}`"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use ms, s, m or h)"
            ));
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// A parsed configuration file.
struct ConfigFile {
    path: PathBuf,
    text: String,
    doc: toml_edit::Document<String>,
}

impl ConfigFile {
    fn read(path: &Path, origin: &str) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::ConfigUnreadable {
            path: path.to_path_buf(),
            origin: origin.to_string(),
            source,
        })?;
        let doc = toml_edit::Document::parse(text.clone()).map_err(|e| {
            let (line, column) = line_column(&text, e.span().map_or(0, |s| s.start));
            CliError::ConfigFile {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        Ok(ConfigFile {
            path: path.to_path_buf(),
            text,
            doc,
        })
    }

    fn error(&self, span: Option<std::ops::Range<usize>>, message: String) -> CliError {
        let (line, column) = line_column(&self.text, span.map_or(0, |s| s.start));
        CliError::ConfigFile {
            path: self.path.clone(),
            line,
            column,
            message,
        }
    }

    /// Profile names defined under `[profiles]`.
    fn profiles(&self) -> Vec<String> {
        self.doc
            .get("profiles")
            .and_then(Item::as_table_like)
            .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
            .unwrap_or_default()
    }

    /// `default_profile = "NAME"`, if set.
    fn default_profile(&self) -> Result<Option<String>, CliError> {
        match self.doc.as_table().get_key_value("default_profile") {
            None => Ok(None),
            Some((_, item)) => match item.as_str() {
                Some(s) => Ok(Some(s.to_string())),
                None => Err(self.error(item.span(), "`default_profile` must be a string".into())),
            },
        }
    }

    /// Checks the top level: only sections, `profiles` and `default_profile` are allowed.
    fn check_top_level(&self) -> Result<(), CliError> {
        for (name, item) in self.doc.as_table().iter() {
            if name == "default_profile" {
                continue;
            }
            if name == "profiles" {
                let Some(profiles) = item.as_table_like() else {
                    return Err(self.error(item.span(), "`profiles` must be a table".into()));
                };
                for (pname, pitem) in profiles.iter() {
                    if pitem.as_table_like().is_none() {
                        return Err(self.error(
                            pitem.span(),
                            format!("`profiles.{pname}` must be a table of sections"),
                        ));
                    }
                }
                continue;
            }
            if !KEYS.iter().any(|k| k.key.split('.').next() == Some(name)) {
                let key = self.doc.as_table().key(name).and_then(|k| k.span());
                return Err(self.error(
                    key.or(item.span()),
                    format!(
                        "unknown section `{name}` (known: {})",
                        section_names().join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The `(key, value, span)` settings of one layer: the base sections or one profile's.
    fn layer(&self, profile: Option<&str>) -> Result<Vec<(&'static str, String)>, CliError> {
        let root: &dyn TableLike = match profile {
            None => self.doc.as_table(),
            Some(p) => match self
                .doc
                .get("profiles")
                .and_then(Item::as_table_like)
                .and_then(|t| t.get(p))
                .and_then(Item::as_table_like)
            {
                Some(t) => t,
                None => return Ok(Vec::new()),
            },
        };
        let prefix = profile.map_or(String::new(), |p| format!("profiles.{p}."));
        let mut out = Vec::new();
        for (section, item) in root.iter() {
            if profile.is_none() && (section == "profiles" || section == "default_profile") {
                continue;
            }
            let section_span = root.key(section).and_then(|k| k.span()).or(item.span());
            let Some(table) = item.as_table_like() else {
                return Err(self.error(
                    section_span,
                    format!("`{prefix}{section}` must be a table, e.g. `[{prefix}{section}]`"),
                ));
            };
            for (name, value_item) in table.iter() {
                let dotted = format!("{section}.{name}");
                let key_span = table.key(name).and_then(|k| k.span()).or(value_item.span());
                let Some(spec) = key_spec(&dotted) else {
                    let known: Vec<&str> = KEYS
                        .iter()
                        .filter(|k| k.key.starts_with(&format!("{section}.")))
                        .map(|k| k.key)
                        .collect();
                    let message = if known.is_empty() {
                        format!(
                            "unknown section `{prefix}{section}` (known: {})",
                            section_names().join(", ")
                        )
                    } else {
                        format!(
                            "unknown key `{prefix}{dotted}` (known: {})",
                            known.join(", ")
                        )
                    };
                    return Err(self.error(key_span, message));
                };
                if spec.kind == Kind::Properties {
                    let Some(props) = value_item.as_table_like() else {
                        return Err(self.error(
                            value_item.span().or(key_span),
                            format!("`{prefix}{dotted}` must be a table of `name = \"value\"`"),
                        ));
                    };
                    for (pname, pitem) in props.iter() {
                        let v = pitem.as_value().and_then(scalar_text).ok_or_else(|| {
                            self.error(
                                pitem.span(),
                                format!(
                                    "`{prefix}{dotted}.{pname}` must be a string, number or boolean"
                                ),
                            )
                        })?;
                        out.push((spec.key, format!("{pname}={v}")));
                    }
                    continue;
                }
                let value = value_item.as_value();
                let text = match (spec.kind, value) {
                    (Kind::Port | Kind::Count, Some(Value::Integer(i))) => i.value().to_string(),
                    (
                        Kind::Text
                        | Kind::Path
                        | Kind::Duration
                        | Kind::Choice(_)
                        | Kind::PostgresUrl,
                        Some(Value::String(s)),
                    ) => s.value().to_string(),
                    _ => {
                        let want = match spec.kind {
                            Kind::Port | Kind::Count => "an integer",
                            Kind::Properties => unreachable!("handled above"),
                            _ => "a string",
                        };
                        return Err(self.error(
                            value_item.span().or(key_span),
                            format!("`{prefix}{dotted}` must be {want}"),
                        ));
                    }
                };
                out.push((spec.key, text));
            }
        }
        Ok(out)
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.value().to_string()),
        Value::Integer(i) => Some(i.value().to_string()),
        Value::Float(f) => Some(f.value().to_string()),
        Value::Boolean(b) => Some(b.value().to_string()),
        _ => None,
    }
}

fn section_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = KEYS
        .iter()
        .filter_map(|k| k.key.split('.').next())
        .collect();
    names.dedup();
    names
}

/// Finds the configuration file: `--config`, `CDCCTL_CONFIG`, `./cdcctl.toml`, then the user
/// config dir. Named files must exist; searched ones are optional.
fn locate_file(req: &LoadRequest<'_>) -> Result<Option<ConfigFile>, CliError> {
    if let Some(path) = &req.config_path {
        return ConfigFile::read(path, "--config").map(Some);
    }
    if let Some(path) = (req.env)(env::CDCCTL_CONFIG).filter(|p| !p.is_empty()) {
        return ConfigFile::read(Path::new(&path), env::CDCCTL_CONFIG).map(Some);
    }
    let candidates = [
        Some(req.cwd.join("cdcctl.toml")),
        req.user_config_dir
            .as_ref()
            .map(|d| d.join("cdcctl").join("cdcctl.toml")),
    ];
    for path in candidates.into_iter().flatten() {
        if path.is_file() {
            return ConfigFile::read(&path, "search").map(Some);
        }
    }
    Ok(None)
}

/// The profiles (`[profiles.NAME]`) of the configuration file `req` finds; none when there is
/// no file or it cannot be read.
pub fn profile_names(req: &LoadRequest<'_>) -> Vec<String> {
    match locate_file(req) {
        Ok(Some(file)) => file.profiles(),
        _ => Vec::new(),
    }
}

impl Config {
    /// Resolves the effective configuration from defaults, file, environment and flags.
    pub fn load(req: &LoadRequest<'_>) -> Result<Config, CliError> {
        let file = locate_file(req)?;
        let mut merged = Merged::default();

        for spec in KEYS {
            if let Some(d) = spec.default {
                merged.set(spec.key, d.to_string(), &Source::Default)?;
            }
        }

        // Profile: flag > env > file's default_profile > "default".
        let (profile, explicit) = match (&req.profile, (req.env)(env::CDCCTL_PROFILE)) {
            (Some(p), _) => (p.clone(), true),
            (None, Some(p)) if !p.is_empty() => (p, true),
            _ => match file
                .as_ref()
                .map(ConfigFile::default_profile)
                .transpose()?
                .flatten()
            {
                Some(p) => (p, true),
                None => ("default".to_string(), false),
            },
        };

        if let Some(f) = &file {
            f.check_top_level()?;
            let known = f.profiles();
            if explicit && !known.contains(&profile) {
                return Err(CliError::UnknownProfile {
                    name: profile,
                    known,
                    path: Some(f.path.clone()),
                });
            }
            let layers = [
                (None, f.layer(None)?),
                (Some(profile.clone()), f.layer(Some(&profile))?),
            ];
            for (section, layer) in layers {
                let source = Source::File {
                    path: f.path.clone(),
                    profile: section,
                };
                let sourced = layer
                    .into_iter()
                    .map(|(k, v)| (k, v, source.clone()))
                    .collect();
                apply_sourced(&mut merged, sourced)?;
            }
        } else if explicit {
            return Err(CliError::UnknownProfile {
                name: profile,
                known: Vec::new(),
                path: None,
            });
        }

        let mut env_layer = Vec::new();
        for spec in KEYS {
            if let Some((var, value)) = spec
                .env
                .iter()
                .find_map(|var| (req.env)(var).filter(|v| !v.is_empty()).map(|v| (*var, v)))
            {
                env_layer.push((spec.key, value, Source::Env(var.to_string())));
            }
        }
        apply_sourced(&mut merged, env_layer)?;

        let flags = req
            .flags
            .iter()
            .map(|f| (f.key, f.value.clone(), Source::Flag(f.flag.to_string())))
            .collect();
        apply_sourced(&mut merged, flags)?;

        // The emulator URL is only the default for the default account: a real account given
        // anywhere derives its own endpoint unless a URL is given too.
        let account_set = merged
            .get("snowflake.account")
            .is_some_and(|s| s.source != Source::Default);
        let url_default = merged
            .get("snowflake.url")
            .is_some_and(|s| s.source == Source::Default);
        if account_set && url_default {
            merged.values.remove("snowflake.url");
        }

        Config::from_merged(profile, file.map(|f| f.path), merged)
    }

    fn from_merged(profile: String, file: Option<PathBuf>, m: Merged) -> Result<Config, CliError> {
        let text = |key: &str| m.get(key).map(|s| s.value.clone());
        let required = |key: &str| {
            text(key).ok_or_else(|| CliError::ConfigValue {
                key: key.to_string(),
                origin: "default".into(),
                message: "a value is required".into(),
            })
        };
        let invalid = |key: &str, message: String| {
            let origin = m.get(key).map_or(String::new(), |s| s.source.to_string());
            CliError::ConfigValue {
                key: key.to_string(),
                origin,
                message,
            }
        };
        let secret_of = |key: &str| text(key).map(Secret::new);
        // Every typed value is checked here, so a bad one fails before any command runs.
        for (key, setting) in &m.values {
            let spec = key_spec(key).expect("keys come from KEYS");
            let v = setting.value.as_str();
            let problem = match spec.kind {
                Kind::Port => match v.parse::<u16>() {
                    Ok(p) if p > 0 => None,
                    _ => Some(format!("expected a port number 1-65535, got `{v}`")),
                },
                Kind::Count => match v.parse::<u64>() {
                    Ok(n) if n > 0 => None,
                    _ => Some(format!("expected a positive whole number, got `{v}`")),
                },
                Kind::Duration => parse_duration(v).err(),
                Kind::Choice(choices) => (!choices.contains(&v))
                    .then(|| format!("expected one of {}, got `{v}`", choices.join(", "))),
                Kind::Text | Kind::Path => v.trim().is_empty().then(|| "must not be empty".into()),
                Kind::PostgresUrl | Kind::Properties => None,
            };
            if let Some(message) = problem {
                return Err(invalid(key, message));
            }
        }
        let port = |key: &str| -> Result<u16, CliError> {
            Ok(required(key)?.parse().expect("validated above"))
        };

        let snowflake_account = required("snowflake.account")?;
        let snowflake_url = match text("snowflake.url") {
            Some(url) => url,
            None => derive_snowflake_url(&snowflake_account),
        };

        let views = build_views(&m, &snowflake_url);
        Ok(Config {
            profile,
            file,
            postgres: PostgresConfig {
                host: required("postgres.host")?,
                port: port("postgres.port")?,
                user: required("postgres.user")?,
                password: secret_of("postgres.password"),
                database: required("postgres.database")?,
                sslmode: required("postgres.sslmode")?,
            },
            kafka: KafkaConfig {
                brokers: required("kafka.brokers")?,
                topic_prefix: required("kafka.topic_prefix")?,
                properties: m
                    .properties
                    .iter()
                    .map(|(k, s)| (k.clone(), s.value.clone()))
                    .collect(),
            },
            connect: ConnectConfig {
                url: required("connect.url")?,
                user: text("connect.user"),
                password: secret_of("connect.password"),
                connector: required("connect.connector")?,
            },
            snowflake: SnowflakeConfig {
                account: snowflake_account,
                user: required("snowflake.user")?,
                password: secret_of("snowflake.password"),
                private_key_path: text("snowflake.private_key_path").map(PathBuf::from),
                private_key_passphrase: secret_of("snowflake.private_key_passphrase"),
                role: text("snowflake.role"),
                warehouse: text("snowflake.warehouse"),
                database: required("snowflake.database")?,
                schema: required("snowflake.schema")?,
                url: snowflake_url,
            },
            duckdb: DuckdbConfig {
                path: PathBuf::from(required("duckdb.path")?),
            },
            load: LoadConfig {
                sink: required("load.sink")?,
                group: required("load.group")?,
                batch_size: required("load.batch_size")?
                    .parse()
                    .expect("validated above"),
                flush_interval: parse_duration(&required("load.flush_interval")?)
                    .expect("validated above"),
            },
            health: HealthConfig {
                slot_warn: required("health.slot_warn")?,
                slot_fail: required("health.slot_fail")?,
                lag_warn: required("health.lag_warn")?
                    .parse()
                    .expect("validated above"),
                lag_fail: required("health.lag_fail")?
                    .parse()
                    .expect("validated above"),
                freshness_warn: parse_duration(&required("health.freshness_warn")?)
                    .expect("validated above"),
                freshness_fail: parse_duration(&required("health.freshness_fail")?)
                    .expect("validated above"),
            },
            views,
        })
    }

    /// Every effective setting with its source, secrets redacted, in a stable order.
    pub fn settings(&self) -> &[SettingView] {
        &self.views
    }
}

/// `https://<account>.snowflakecomputing.com`; an account given as a URL host is used as is.
pub fn derive_snowflake_url(account: &str) -> String {
    let account = account.trim().to_ascii_lowercase();
    if account.contains(".snowflakecomputing.") {
        format!("https://{account}")
    } else {
        format!("https://{account}.snowflakecomputing.com")
    }
}

/// Applies one layer: a URL first, so that the explicit parts of the same layer win over it.
fn apply_sourced(
    merged: &mut Merged,
    mut layer: Vec<(&'static str, String, Source)>,
) -> Result<(), CliError> {
    layer.sort_by_key(|(k, _, _)| {
        key_spec(k).map_or(1, |s| usize::from(s.kind != Kind::PostgresUrl))
    });
    for (key, value, source) in layer {
        merged.set(key, value, &source)?;
    }
    Ok(())
}

fn build_views(m: &Merged, snowflake_url: &str) -> Vec<SettingView> {
    let mut views = Vec::new();
    for spec in KEYS {
        match spec.kind {
            Kind::PostgresUrl => continue,
            Kind::Properties => {
                for (name, s) in &m.properties {
                    let secret = is_secret_property(name);
                    views.push(SettingView {
                        key: format!("{}.{name}", spec.key),
                        value: Some(if secret {
                            "****".into()
                        } else {
                            s.value.clone()
                        }),
                        source: s.source.kind().into(),
                        origin: s.source.origin(),
                        secret,
                    });
                }
            }
            _ => {
                let view = match m.get(spec.key) {
                    Some(s) => SettingView {
                        key: spec.key.into(),
                        value: Some(if spec.secret {
                            "****".into()
                        } else {
                            s.value.clone()
                        }),
                        source: s.source.kind().into(),
                        origin: s.source.origin(),
                        secret: spec.secret,
                    },
                    None if spec.key == "snowflake.url" => SettingView {
                        key: spec.key.into(),
                        value: Some(snowflake_url.to_string()),
                        source: "derived".into(),
                        origin: "snowflake.account".into(),
                        secret: false,
                    },
                    None => SettingView {
                        key: spec.key.into(),
                        value: None,
                        source: "unset".into(),
                        origin: String::new(),
                        secret: spec.secret,
                    },
                };
                views.push(view);
            }
        }
    }
    views
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load_with(
        file: Option<&str>,
        env: &[(&str, &str)],
        profile: Option<&str>,
        flags: Vec<FlagValue>,
    ) -> Result<Config, CliError> {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = file {
            std::fs::write(dir.path().join("cdcctl.toml"), text).unwrap();
        }
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| env.get(k).cloned();
        Config::load(&LoadRequest {
            config_path: None,
            profile: profile.map(String::from),
            flags,
            env: &lookup,
            cwd: dir.path().to_path_buf(),
            user_config_dir: None,
        })
    }

    fn view<'a>(c: &'a Config, key: &str) -> &'a SettingView {
        c.settings().iter().find(|v| v.key == key).unwrap()
    }

    #[test]
    fn defaults_point_at_the_local_stack() {
        let c = load_with(None, &[], None, vec![]).unwrap();
        assert_eq!(c.postgres.port, 55432);
        assert_eq!(c.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(c.snowflake.url, DEFAULT_SNOWFLAKE_URL);
        assert_eq!(c.profile, "default");
        assert_eq!(view(&c, "postgres.password").value.as_deref(), Some("****"));
        assert_eq!(view(&c, "postgres.host").source, "default");
    }

    #[test]
    fn precedence_is_default_file_profile_env_flag() {
        let file = "[kafka]\nbrokers = \"file:1\"\ntopic_prefix = \"base\"\n\
                    [profiles.dev.kafka]\nbrokers = \"profile:1\"\n";
        let c = load_with(Some(file), &[], Some("dev"), vec![]).unwrap();
        assert_eq!(c.kafka.brokers, "profile:1");
        assert_eq!(c.kafka.topic_prefix, "base");
        assert!(view(&c, "kafka.brokers").origin.ends_with("[profiles.dev]"));

        let env = [("KAFKA_BOOTSTRAP_SERVERS", "conv:1")];
        let c = load_with(Some(file), &env, Some("dev"), vec![]).unwrap();
        assert_eq!(c.kafka.brokers, "conv:1");
        let env = [
            ("KAFKA_BOOTSTRAP_SERVERS", "conv:1"),
            ("CDCCTL_KAFKA_BROKERS", "env:1"),
        ];
        let c = load_with(Some(file), &env, Some("dev"), vec![]).unwrap();
        assert_eq!(c.kafka.brokers, "env:1");
        assert_eq!(view(&c, "kafka.brokers").origin, "CDCCTL_KAFKA_BROKERS");

        let flag = FlagValue {
            key: "kafka.brokers",
            value: "flag:1".into(),
            flag: "--brokers",
        };
        let c = load_with(Some(file), &env, Some("dev"), vec![flag]).unwrap();
        assert_eq!(c.kafka.brokers, "flag:1");
        assert_eq!(view(&c, "kafka.brokers").source, "flag");
    }

    #[test]
    fn postgres_url_parts_can_be_overridden_by_later_layers() {
        let file =
            "[postgres]\nurl = \"postgres://u:p%40ss@db.example:6543/shop?sslmode=require\"\n";
        let c = load_with(Some(file), &[("PGHOST", "other")], None, vec![]).unwrap();
        assert_eq!(c.postgres.host, "other");
        assert_eq!(c.postgres.port, 6543);
        assert_eq!(c.postgres.password.as_ref().unwrap().expose(), "p@ss");
        assert_eq!(c.postgres.sslmode, "require");
        assert_eq!(view(&c, "postgres.database").source, "file");
        assert!(!format!("{:?}", c.postgres).contains("p@ss"));
    }

    #[test]
    fn malformed_toml_names_line_and_column() {
        let err = load_with(
            Some("[kafka]\nbrokers = \"a\"\nbad line\n"),
            &[],
            None,
            vec![],
        )
        .unwrap_err();
        match err {
            CliError::ConfigFile { line, column, .. } => assert_eq!((line, column), (3, 5)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_key_and_wrong_type_are_located() {
        let err = load_with(Some("[kafka]\n  brokerz = \"x\"\n"), &[], None, vec![]).unwrap_err();
        let CliError::ConfigFile {
            line,
            column,
            message,
            ..
        } = err
        else {
            panic!("unexpected {err:?}")
        };
        assert_eq!((line, column), (2, 3));
        assert!(message.contains("unknown key `kafka.brokerz`"), "{message}");

        let err = load_with(Some("[postgres]\nport = \"x\"\n"), &[], None, vec![]).unwrap_err();
        assert!(
            matches!(err, CliError::ConfigFile { line: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_profile_lists_known_ones() {
        let file =
            "[profiles.dev.kafka]\nbrokers = \"a\"\n[profiles.prod.kafka]\nbrokers = \"b\"\n";
        match load_with(Some(file), &[], Some("prd"), vec![]).unwrap_err() {
            CliError::UnknownProfile { known, .. } => assert_eq!(known, vec!["dev", "prod"]),
            other => panic!("unexpected {other:?}"),
        }
        let c = load_with(Some(file), &[("CDCCTL_PROFILE", "prod")], None, vec![]).unwrap();
        assert_eq!(c.kafka.brokers, "b");
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let err = load_with(None, &[("PGPORT", "nope")], None, vec![]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("postgres.port") && text.contains("PGPORT"),
            "{text}"
        );
    }

    #[test]
    fn secret_kafka_properties_are_redacted() {
        let file = "[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n\"security.protocol\" = \"SASL_SSL\"\n";
        let c = load_with(Some(file), &[], None, vec![]).unwrap();
        assert_eq!(c.kafka.properties["sasl.password"], "hunter2");
        assert_eq!(
            view(&c, "kafka.properties.sasl.password").value.as_deref(),
            Some("****")
        );
        assert_eq!(
            view(&c, "kafka.properties.security.protocol")
                .value
                .as_deref(),
            Some("SASL_SSL")
        );
    }

    #[test]
    fn a_real_account_derives_its_url_unless_one_is_given() {
        let c = load_with(None, &[("SNOWFLAKE_ACCOUNT", "myorg-acct")], None, vec![]).unwrap();
        assert_eq!(c.snowflake.url, "https://myorg-acct.snowflakecomputing.com");
        assert_eq!(view(&c, "snowflake.url").source, "derived");
        let env = [
            ("SNOWFLAKE_ACCOUNT", "a"),
            ("CDCCTL_SNOWFLAKE_URL", "http://x:1"),
        ];
        let c = load_with(None, &env, None, vec![]).unwrap();
        assert_eq!(c.snowflake.url, "http://x:1");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("5 parsecs").is_err());
    }
}
