//! Test support: run the real `cdcctl` binary with a clean environment, and give each
//! integration test the local stack (started or reused through `scripts/stack.sh up`) plus its own
//! isolated resources — database, topic prefix, connector and slot names, DuckDB file, fakesnow
//! database — named after the test, so tests run in parallel and re-run without cleanup.
//!
//! Endpoints come from the same `CDCCTL_*` variables and defaults the CLI uses
//! (`cdcctl::config`), so no port number appears in a test.

#![allow(dead_code)]

use std::fs::File;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cdcctl::clients::connect::{ConnectClient, ConnectorConfig};
use cdcctl::commands::create_connector::spec::derived_name;
use cdcctl::config::{Config, LoadRequest, env};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory for one test, removed on drop.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// A fresh directory whose name starts with the test's name.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("cdcctl-{name}-"))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("create test dir");
        TestDir { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file in the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).expect("write test file");
        path
    }

    /// `cdcctl` run in this directory with every cdcctl variable removed, and `HOME` and
    /// `XDG_CONFIG_HOME` pointing here so no user configuration leaks in.
    pub fn cdcctl(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.command())
    }

    /// The same as [`TestDir::cdcctl`] as a plain process, for tests that talk to a running
    /// child (signals, pipes); assert_cmd only runs to completion.
    pub fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin!("cdcctl"));
        for var in env::ALL {
            cmd.env_remove(var);
        }
        cmd.current_dir(self.path())
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join(".config"))
            .env_remove("COLUMNS")
            .env("NO_COLOR", "1");
        cmd
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on (bound once, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Endpoints of the local stack, resolved like the CLI resolves them (defaults < `CDCCTL_*`
/// environment), ignoring any configuration file.
pub fn stack_config() -> Config {
    let lookup = |name: &str| {
        if name == env::CDCCTL_CONFIG || name == env::CDCCTL_PROFILE {
            None
        } else {
            std::env::var(name).ok()
        }
    };
    Config::load(&LoadRequest {
        config_path: None,
        profile: None,
        flags: Vec::new(),
        env: &lookup,
        cwd: PathBuf::from("/nonexistent-cdcctl-test-cwd"),
        user_config_dir: None,
    })
    .expect("stack configuration from the environment")
}

fn host_port(url: &str) -> String {
    let u = url::Url::parse(url).expect("endpoint URL");
    format!(
        "{}:{}",
        u.host_str().expect("host"),
        u.port_or_known_default().expect("port")
    )
}

fn answers(addr: &str) -> bool {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

/// The local stack, checked (and started when needed) once per test process.
pub struct Stack {
    /// Effective endpoints.
    pub config: Config,
}

impl Stack {
    /// Returns the running stack, starting it with `scripts/stack.sh up` if any part is down.
    /// Several test processes may call this at once; a file lock makes them take turns.
    pub fn get() -> &'static Stack {
        static STACK: OnceLock<Stack> = OnceLock::new();
        STACK.get_or_init(|| {
            let config = stack_config();
            let endpoints = [
                format!("{}:{}", config.postgres.host, config.postgres.port),
                config.kafka.brokers.split(',').next().unwrap().to_string(),
                host_port(&config.connect.url),
                host_port(&config.snowflake.url),
            ];
            if !endpoints.iter().all(|e| answers(e)) {
                let lock_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stack-up.lock");
                let lock = File::create(&lock_path).expect("create stack lock");
                lock.lock().expect("lock stack");
                if !endpoints.iter().all(|e| answers(e)) {
                    let status = StdCommand::new("bash")
                        .arg(repo_root().join("scripts/stack.sh"))
                        .arg("up")
                        .status()
                        .expect("run scripts/stack.sh up");
                    assert!(status.success(), "scripts/stack.sh up failed: {status}");
                }
                drop(lock);
            }
            Stack { config }
        })
    }

    /// A Postgres connection string for `database` on the stack.
    pub fn postgres_url(&self, database: &str) -> String {
        let pg = &self.config.postgres;
        format!(
            "postgres://{}:{}@{}:{}/{}",
            pg.user,
            pg.password.as_ref().map_or("", |p| p.expose()),
            pg.host,
            pg.port,
            database
        )
    }
}

/// A short id unique to this test run, so Kafka names never collide with an earlier run.
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", std::process::id(), nanos % 0xffff_ffff)
}

fn sanitize(name: &str) -> String {
    let s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    s.chars().take(30).collect()
}

/// Isolated resources of one integration test on the shared stack.
pub struct TestContext {
    /// The stack.
    pub stack: &'static Stack,
    /// Scratch directory (DuckDB file, config files).
    pub dir: TestDir,
    /// This test's own Postgres database, created empty (dropped and re-created on re-runs).
    pub database: String,
    /// Debezium topic prefix unique to this run.
    pub topic_prefix: String,
    /// Connector name unique to this run.
    pub connector: String,
    /// Replication slot name unique to this run (dropped on drop if it exists).
    pub slot: String,
    /// DuckDB file inside `dir`.
    pub duckdb_path: PathBuf,
    /// fakesnow database name unique to this run.
    pub snowflake_database: String,
    /// Kafka consumer group unique to this run.
    pub group: String,
}

impl TestContext {
    /// Ensures the stack and creates this test's database.
    pub async fn new(name: &str) -> TestContext {
        let stack = Stack::get();
        let base = sanitize(name);
        let id = run_id();
        let database = format!("cdcctl_t_{base}");
        let admin = connect(&stack.postgres_url(&stack.config.postgres.database)).await;
        // Two statements: DROP/CREATE DATABASE cannot share a (implicit) transaction.
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{database}\""),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .expect("create test database");
        }
        let dir = TestDir::new(name);
        let duckdb_path = dir.path().join("warehouse.duckdb");
        TestContext {
            stack,
            dir,
            database,
            topic_prefix: format!("t_{base}_{id}"),
            connector: format!("t-{}-{id}", base.replace('_', "-")),
            slot: format!("t_{base}_{id}"),
            duckdb_path,
            snowflake_database: format!("T_{}_{}", base.to_uppercase(), id.to_uppercase()),
            group: format!("t-{base}-{id}"),
        }
    }

    /// The Snowflake settings of this test: the stack's endpoint, this test's database.
    pub fn snowflake_config(&self) -> cdcctl::config::SnowflakeConfig {
        let mut config = self.stack.config.snowflake.clone();
        config.database = self.snowflake_database.clone();
        config
    }

    /// A Snowflake client for this test's database on the stack's emulator.
    pub fn snowflake(&self) -> cdcctl::clients::snowflake::Snowflake {
        cdcctl::clients::snowflake::Snowflake::new(&self.snowflake_config())
            .expect("Snowflake client")
    }

    /// A client connected to this test's database.
    pub async fn pg(&self) -> tokio_postgres::Client {
        connect(&self.stack.postgres_url(&self.database)).await
    }

    /// `cdcctl` pointed at this test's resources through the same variables users set.
    pub fn cdcctl(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.command())
    }

    /// The same as [`TestContext::cdcctl`] as a plain process (see [`TestDir::command`]).
    pub fn command(&self) -> std::process::Command {
        let c = &self.stack.config;
        let mut cmd = self.dir.command();
        cmd.env(
            env::CDCCTL_POSTGRES_URL,
            self.stack.postgres_url(&self.database),
        )
        .env(env::CDCCTL_KAFKA_BROKERS, &c.kafka.brokers)
        .env(env::CDCCTL_KAFKA_TOPIC_PREFIX, &self.topic_prefix)
        .env(env::CDCCTL_CONNECT_URL, &c.connect.url)
        .env(env::CDCCTL_SNOWFLAKE_URL, &c.snowflake.url)
        .env(env::CDCCTL_SNOWFLAKE_DATABASE, &self.snowflake_database)
        .env(env::CDCCTL_DUCKDB_PATH, &self.duckdb_path)
        .env(env::CDCCTL_LOAD_GROUP, &self.group);
        cmd
    }

    /// An rdkafka client configuration for the stack's brokers.
    pub fn kafka_config(&self) -> rdkafka::ClientConfig {
        let mut cfg = rdkafka::ClientConfig::new();
        cfg.set("bootstrap.servers", &self.stack.config.kafka.brokers);
        cfg
    }

    /// A consumer of partition 0 of `topic` from the beginning, under this test's group, that
    /// never commits.
    pub fn topic_reader(&self, topic: &str) -> rdkafka::consumer::BaseConsumer {
        use rdkafka::consumer::Consumer;
        let consumer: rdkafka::consumer::BaseConsumer = self
            .kafka_config()
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("Kafka consumer");
        let mut partitions = rdkafka::TopicPartitionList::new();
        partitions
            .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
            .expect("partition");
        consumer.assign(&partitions).expect("assign");
        consumer
    }

    /// Applies a Debezium connector for this test's database, topic prefix, connector name and
    /// slot through `cdcctl create-connector --wait`, asserts it is RUNNING, and returns the JSON
    /// report. Topics are `<topic_prefix>.<schema>.<table>`. Dropping the context deletes the
    /// connector and drops its slot.
    pub async fn create_connector(&self, tables: &[&str]) -> serde_json::Value {
        let mut cmd = self.cdcctl();
        cmd.args(["-o", "json", "create-connector", "--name", &self.connector])
            .args(["--slot", &self.slot, "--tables", &tables.join(",")])
            .args(["--wait", "--timeout", "90s"]);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("join")
            .expect("run cdcctl create-connector");
        assert_eq!(
            out.status.code(),
            Some(0),
            "create-connector failed\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("create-connector JSON report");
        assert_eq!(report["wait"]["outcome"], "reached", "{report}");
        report
    }

    /// The Kafka Connect client of the stack.
    pub fn connect(&self) -> ConnectClient {
        ConnectClient::new(&self.stack.config.connect).expect("Kafka Connect client")
    }

    /// Filters (regex, replacement) for this test's volatile names and the stack's volatile
    /// values, so snapshots of human output are stable across runs; [`TestContext::redact`]
    /// applies them in order.
    pub fn filters(&self) -> Vec<(String, String)> {
        // Longest first: the derived slot name contains the database name. The slot and the
        // topic prefix are the same text: a prefix is what a dot follows. The worker id (the
        // REST URL's `host:port`) keeps its width, so tables stay aligned.
        let worker = host_port(&self.stack.config.connect.url);
        let mut f = vec![
            (
                regex::escape(&derived_name(&self.connector)),
                "[derived]".to_string(),
            ),
            (regex::escape(&self.connector), "[connector]".to_string()),
            (
                format!(r"\b{}\.", regex::escape(&self.topic_prefix)),
                "[prefix].".to_string(),
            ),
            (regex::escape(&self.slot), "[slot]".to_string()),
            (regex::escape(&self.topic_prefix), "[prefix]".to_string()),
            (regex::escape(&self.database), "[database]".to_string()),
            (
                regex::escape(&worker),
                format!("{:<width$}", "[worker]", width = worker.len()),
            ),
        ];
        f.extend(
            [
                (r"Kafka Connect \d+\.\d+\.\d+", "Kafka Connect [version]"),
                (
                    r"PostgresConnector \d+\.\d+\.\d+\.\w+",
                    "PostgresConnector [version]",
                ),
                (r"after \d+\.\d s", "after [secs] s"),
                (r"lsn [0-9A-F]+/[0-9A-F]+", "lsn [lsn]"),
                (r"retaining [0-9.]+ [KMGT]?i?B", "retaining [size]"),
                (r"pid \d+", "pid [pid]"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string())),
        );
        f
    }

    /// `text` with [`TestContext::filters`] applied and line ends trimmed, for snapshots.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (pattern, replacement) in self.filters() {
            let re = regex::Regex::new(&pattern).expect("filter regex");
            text = re.replace_all(&text, replacement.as_str()).into_owned();
        }
        text.lines()
            .map(|l| format!("{}\n", l.trim_end()))
            .collect()
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        // Runs outside any async runtime: a plain thread with its own runtime.
        let admin_url = self
            .stack
            .postgres_url(&self.stack.config.postgres.database);
        let database = self.database.clone();
        let slot = self.slot.clone();
        let connect_cfg = self.stack.config.connect.clone();
        let connector = self.connector.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let admin = connect(&admin_url).await;
                // A connector this test made (any slot it named too) goes first: its slot stays
                // active until the worker stops the task, and the database cannot be dropped
                // while a slot of it exists.
                let mut slots = vec![slot];
                if let Some(config) = delete_connector(&connect_cfg, &connector).await {
                    slots.extend(config.get("slot.name").cloned());
                }
                for slot in &slots {
                    for _ in 0..80 {
                        let active = admin
                            .query_opt(
                                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                                &[slot],
                            )
                            .await
                            .ok()
                            .flatten()
                            .is_some_and(|r| r.get::<_, bool>(0));
                        if !active {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    let _ = admin
                        .execute(
                            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                             WHERE slot_name = $1 AND NOT active",
                            &[slot],
                        )
                        .await;
                }
                let _ = admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                    ))
                    .await;
            });
        })
        .join();
    }
}

/// Deletes the connector if it exists and returns its config.
async fn delete_connector(
    cfg: &cdcctl::config::ConnectConfig,
    name: &str,
) -> Option<ConnectorConfig> {
    let client =
        ConnectClient::with_timeouts(cfg, Duration::from_secs(2), Duration::from_secs(10)).ok()?;
    let config = client.find_config(name).await.ok()??;
    let _ = client.delete(name).await;
    Some(config)
}

/// Connects to Postgres and drives the connection on the current runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to Postgres: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A throwaway PostgreSQL 15 cluster of one test (own data dir and port, trust auth, superuser
/// `postgres`), for what the shared stack must not be used for: other server settings,
/// `ALTER SYSTEM`, restarts. Stopped by its postmaster PID on drop.
pub struct PrivateCluster {
    dir: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

const PGBIN: &str = "/usr/lib/postgresql/15/bin";

impl PrivateCluster {
    /// initdb + start with the given `-c name=value` settings.
    pub fn start(name: &str, settings: &[&str]) -> PrivateCluster {
        // The postgres OS user must reach the data dir: a fresh dir under /tmp, not $HOME.
        let dir = std::env::temp_dir().join(format!("cdcctl-pg-{}-{}", sanitize(name), run_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("data");
        run_as_postgres(
            &dir,
            &[
                &format!("{PGBIN}/initdb"),
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
        );
        let port = free_port();
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n",
            dir.display()
        );
        for s in settings {
            let (k, v) = s.split_once('=').expect("name=value");
            conf.push_str(&format!("{k} = '{v}'\n"));
        }
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        std::fs::write(&conf_path, text).unwrap();
        let cluster = PrivateCluster { dir, port };
        cluster.pg_ctl("start");
        cluster
    }

    fn pg_ctl(&self, action: &str) {
        let data = self.dir.join("data");
        let log = self.dir.join("postgres.log");
        run_as_postgres(
            &self.dir,
            &[
                &format!("{PGBIN}/pg_ctl"),
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "-m",
                "fast",
                action,
            ],
        );
    }

    /// Restarts the cluster (so `ALTER SYSTEM` settings apply).
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }

    /// Superuser URL of database `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if let Some(pid) = self.postmaster_pid() {
            // SIGINT = fast shutdown; wait for the postmaster to go away.
            let _ = StdCommand::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            for _ in 0..100 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a command as the `postgres` OS user (initdb refuses root), owning `dir`.
fn run_as_postgres(dir: &Path, argv: &[&str]) {
    let _ = StdCommand::new("chown")
        .args(["-R", "postgres:postgres", dir.to_str().unwrap()])
        .status();
    let status = StdCommand::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(argv)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("runuser");
    assert!(status.success(), "{argv:?} failed: {status}");
}

/// A throwaway broker: the stack's noida-db binary on its own port and data directory, started
/// and stopped by PID (never by name), for tests that restart or stop it.
pub struct PrivateBroker {
    /// `127.0.0.1:<port>`.
    pub address: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateBroker {
    fn binary() -> PathBuf {
        let cache = std::env::var_os("CDCCTL_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("cdcctl")))
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/cdcctl")
            });
        cache.join("noida/bin/noida-db")
    }

    /// Starts a broker on a free port and waits until it answers.
    pub fn start() -> PrivateBroker {
        Stack::get(); // the binary comes with `scripts/stack.sh install`
        let port = free_port();
        let mut broker = PrivateBroker {
            address: format!("127.0.0.1:{port}"),
            port,
            dir: tempfile::tempdir().expect("broker data dir"),
            child: None,
        };
        broker.resume();
        broker
    }

    /// Starts the broker again on the same port and data (after [`PrivateBroker::stop`]).
    pub fn resume(&mut self) {
        let log = File::create(self.dir.path().join("broker.log")).expect("broker log");
        let child = StdCommand::new(Self::binary())
            .args([
                "start",
                "--only",
                "kafka",
                "--kafka-port",
                &self.port.to_string(),
            ])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start noida-db");
        self.child = Some(child);
        for _ in 0..200 {
            if answers(&self.address) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the private broker on {} did not come up", self.address);
    }

    /// Stops the broker by PID (SIGTERM: it persists its log) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the PID of a child this helper started.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            for _ in 0..300 {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
