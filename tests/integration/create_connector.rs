//! `cdcctl create-connector` / `cdcctl connector` against the real Kafka Connect worker and
//! Debezium: create → RUNNING → a new row on the topic within 10 s, re-run `unchanged`, a
//! changed key shown as a diff and applied, lifecycle verbs, field errors (exit 2), a failed
//! task's trace (exit 1), Connect down (exit 3), `delete --drop-slot`; the REST client on its
//! own; and the decisions that need no connector (files and flags, publications, missing tables).

use std::time::{Duration, Instant};

use cdcctl::clients::connect::{ConnectorConfig, Restart, State};
use cdcctl::error::{EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE};
use rdkafka::Message;
use serde_json::Value;

use crate::support::{TestContext, TestDir};

/// Runs cdcctl and returns (exit code, stdout, stderr).
fn run(cmd: &mut assert_cmd::Command, args: &[&str]) -> (u8, String, String) {
    let out = cmd.args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1) as u8,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs cdcctl with `-o json`, checks the exit code and parses stdout.
fn run_json(cmd: &mut assert_cmd::Command, args: &[&str], code: u8) -> Value {
    let (got, stdout, stderr) = run(cmd.args(["-o", "json"]), args);
    assert_eq!(got, code, "stdout: {stdout}\nstderr: {stderr}");
    serde_json::from_str(&stdout).unwrap_or(Value::Null)
}

/// Exit code and both streams, one text, for snapshots.
fn transcript(code: u8, stdout: &str, stderr: &str) -> String {
    format!("exit code: {code}\n----- stdout -----\n{stdout}----- stderr -----\n{stderr}")
}

/// A named insta snapshot of `text` with the context's volatile values redacted.
fn snapshot(ctx: &TestContext, name: &str, text: String) {
    insta::assert_snapshot!(name, ctx.redact(&text));
}

/// Reads the topic from the beginning until a change event whose `after` has `email` equal to
/// `marker`; returns when it was seen.
fn wait_for_row(ctx: &TestContext, topic: &str, marker: &str, within: Duration) -> Instant {
    let consumer = ctx.topic_reader(topic);
    let deadline = Instant::now() + within;
    loop {
        assert!(
            Instant::now() < deadline,
            "no event with email {marker} on {topic} within {within:?}"
        );
        let Some(Ok(msg)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let Some(payload) = msg.payload() else {
            continue; // tombstone
        };
        let value: Value = serde_json::from_slice(payload).expect("JSON value");
        // Schemas are on by default: {"schema": ..., "payload": {"before", "after", "op", ...}}.
        assert!(value.get("schema").is_some(), "no Connect schema: {value}");
        if value["payload"]["after"]["email"] == marker {
            assert_eq!(value["payload"]["op"], "c");
            return Instant::now();
        }
    }
}

async fn slot_exists(pg: &tokio_postgres::Client, slot: &str) -> bool {
    pg.query_opt(
        "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
        &[&slot],
    )
    .await
    .unwrap()
    .is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_stream_rerun_update_pause_resume_and_delete_with_slot() {
    let ctx = TestContext::new("cc_lifecycle").await;
    let pg = ctx.pg().await;
    pg.batch_execute(
        "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, note text); \
         INSERT INTO users (email) VALUES ('before@example.com')",
    )
    .await
    .unwrap();

    // Create → RUNNING.
    let started = Instant::now();
    let report = ctx.create_connector(&["users"]).await;
    let create_secs = started.elapsed().as_secs_f64();
    assert_eq!(report["status"], "created");
    assert_eq!(report["state"]["state"], "RUNNING");
    assert_eq!(report["state"]["tasks"][0]["state"], "RUNNING");
    let topic = format!("{}.public.users", ctx.topic_prefix);
    assert_eq!(report["topics"], serde_json::json!([topic]));
    assert_eq!(report["config"]["database.password"], "****");
    assert_eq!(report["config"]["slot.name"], ctx.slot.as_str());
    assert_eq!(report["publication_mode"], "filtered");

    // A row inserted now reaches the topic within 10 s.
    let inserted = Instant::now();
    pg.execute(
        "INSERT INTO users (email) VALUES ($1)",
        &[&"streamed@example.com"],
    )
    .await
    .unwrap();
    let ctx_ref = &ctx;
    let seen = tokio::task::block_in_place(|| {
        wait_for_row(
            ctx_ref,
            &topic,
            "streamed@example.com",
            Duration::from_secs(10),
        )
    });
    let row_secs = seen.duration_since(inserted).as_secs_f64();
    eprintln!("timing: create -> RUNNING {create_secs:.2} s, row -> topic {row_secs:.2} s");

    // The same again is `unchanged`.
    let apply = |extra: &[&str]| {
        let mut args = vec![
            "create-connector",
            "--name",
            &ctx.connector,
            "--slot",
            &ctx.slot,
            "--tables",
            "users",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let args = apply(&["--wait"]);
    let again = run_json(
        &mut ctx.cdcctl(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        EXIT_OK,
    );
    assert_eq!(again["status"], "unchanged");
    assert_eq!(again["diff"], serde_json::json!([]));

    // Without tables, slot or name flags the connector's own are kept: still unchanged.
    let (code, stdout, stderr) = run(
        &mut ctx.cdcctl(),
        &["create-connector", "--name", &ctx.connector, "--no-wait"],
    );
    assert_eq!(code, EXIT_OK, "{stderr}");
    assert!(stdout.contains("unchanged"), "{stdout}");

    // A changed key: shown as a diff; without a terminal and without --yes nothing changes.
    let args = apply(&[
        "--set",
        "snapshot.mode=no_data",
        "--heartbeat",
        "5s",
        "--wait",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = run(&mut ctx.cdcctl(), &args);
    assert_eq!(code, EXIT_USAGE);
    assert!(stderr.contains("pass `--yes`"), "{stderr}");
    snapshot(
        &ctx,
        "update_refused_without_yes",
        transcript(code, &stdout, &stderr),
    );
    let connect = ctx.connect();
    assert_eq!(
        connect.config(&ctx.connector).await.unwrap()["snapshot.mode"],
        "initial"
    );

    let (code, stdout, stderr) = run(&mut ctx.cdcctl(), &[&args[..], &["--yes"]].concat());
    assert_eq!(code, EXIT_OK, "{stderr}");
    snapshot(&ctx, "update_applied", transcript(code, &stdout, &stderr));
    let stored = connect.config(&ctx.connector).await.unwrap();
    assert_eq!(stored["snapshot.mode"], "no_data");
    assert_eq!(stored["heartbeat.interval.ms"], "5000");
    let tasks = connect.tasks(&ctx.connector).await.unwrap();
    assert_eq!(tasks[0].config["snapshot.mode"], "no_data");

    // A second connector may not take the running one's slot.
    let (code, _, stderr) = run(
        &mut ctx.cdcctl(),
        &[
            "create-connector",
            "--name",
            &format!("{}-2", ctx.connector),
            "--slot",
            &ctx.slot,
            "--tables",
            "users",
            "--dry-run",
        ],
    );
    assert_eq!(code, EXIT_USAGE);
    assert!(
        stderr.contains("is in use by the process with pid"),
        "{stderr}"
    );

    // Status, pause, resume.
    let (code, stdout, stderr) = run(&mut ctx.cdcctl(), &["connector", "status", &ctx.connector]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    snapshot(&ctx, "status_running", transcript(code, &stdout, &stderr));
    let paused = run_json(
        &mut ctx.cdcctl(),
        &["connector", "pause", &ctx.connector, "--wait"],
        EXIT_OK,
    );
    assert_eq!(paused["state"]["state"], "PAUSED");
    let (code, _, _) = run(&mut ctx.cdcctl(), &["connector", "status", &ctx.connector]);
    assert_eq!(code, EXIT_FAILED, "a paused connector is not healthy");
    let resumed = run_json(
        &mut ctx.cdcctl(),
        &["connector", "resume", &ctx.connector, "--wait"],
        EXIT_OK,
    );
    assert_eq!(resumed["wait"]["outcome"], "reached");
    let listed = run_json(&mut ctx.cdcctl(), &["connector", "list"], EXIT_OK);
    let mine = listed["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == ctx.connector.as_str())
        .expect("listed");
    assert_eq!(mine["state"], "RUNNING");
    assert_eq!(mine["slot"], ctx.slot.as_str());

    // Delete: without --yes and no terminal, refused; then the connector, its offsets and its
    // slot go.
    let (code, _, stderr) = run(
        &mut ctx.cdcctl(),
        &["connector", "delete", &ctx.connector, "--drop-slot"],
    );
    assert_eq!(code, EXIT_USAGE, "{stderr}");
    assert!(slot_exists(&pg, &ctx.slot).await);
    let deleted = run_json(
        &mut ctx.cdcctl(),
        &[
            "connector",
            "delete",
            &ctx.connector,
            "--drop-slot",
            "--drop-publication",
            "--yes",
        ],
        EXIT_OK,
    );
    let statuses: Vec<(&str, &str)> = deleted["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["object"].as_str().unwrap(), a["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("offsets", "reset"),
            ("connector", "deleted"),
            ("slot", "dropped"),
            ("publication", "dropped"),
        ]
    );
    assert!(
        !slot_exists(&pg, &ctx.slot).await,
        "the slot is still there"
    );
    assert!(connect.find_config(&ctx.connector).await.unwrap().is_none());
    let publications = pg
        .query_one("SELECT count(*) FROM pg_publication", &[])
        .await
        .unwrap();
    assert_eq!(publications.get::<_, i64>(0), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_config_prints_field_errors_exits_2_and_creates_nothing() {
    let ctx = TestContext::new("cc_invalid").await;
    ctx.pg()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let (code, stdout, stderr) = run(
        &mut ctx.cdcctl(),
        &[
            "create-connector",
            "--name",
            &ctx.connector,
            "--tables",
            "t",
            "--set",
            "plugin.name=wal2jsonx",
            "--set",
            "database.port=not-a-port",
        ],
    );
    assert_eq!(code, EXIT_USAGE);
    snapshot(
        &ctx,
        "validation_errors",
        transcript(code, &stdout, &stderr),
    );
    let report = run_json(
        &mut ctx.cdcctl(),
        &[
            "create-connector",
            "--name",
            &ctx.connector,
            "--tables",
            "t",
            "--set",
            "plugin.name=wal2jsonx",
        ],
        EXIT_USAGE,
    );
    assert_eq!(report["status"], "invalid");
    assert_eq!(report["validation_errors"][0]["field"], "plugin.name");
    assert_eq!(report["validation_errors"][0]["value"], "wal2jsonx");
    assert!(
        ctx.connect()
            .find_config(&ctx.connector)
            .await
            .unwrap()
            .is_none(),
        "an invalid config must create nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_task_prints_its_trace_and_exits_1() {
    let ctx = TestContext::new("cc_failed").await;
    ctx.pg()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    // Valid for the worker, fatal for the snapshot: the task starts, then FAILS.
    let (code, stdout, stderr) = run(
        &mut ctx.cdcctl(),
        &[
            "create-connector",
            "--name",
            &ctx.connector,
            "--slot",
            &ctx.slot,
            "--tables",
            "t",
            "--set",
            "snapshot.select.statement.overrides=public.t",
            "--set",
            "snapshot.select.statement.overrides.public.t=SELECT * FROM no_such_relation",
            "--wait",
        ],
    );
    assert_eq!(code, EXIT_FAILED, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "Caused by: org.postgresql.util.PSQLException: ERROR: relation \"no_such_relation\" \
             does not exist"
        ),
        "{stdout}"
    );
    assert!(
        !stdout.contains("\tat "),
        "trace frames must be cut: {stdout}"
    );

    let (code, stdout, stderr) = run(&mut ctx.cdcctl(), &["connector", "status", &ctx.connector]);
    assert_eq!(code, EXIT_FAILED);
    snapshot(
        &ctx,
        "status_failed_task",
        transcript(code, &stdout, &stderr),
    );

    // Restarting the failed task fails the same way, within the wait.
    let report = run_json(
        &mut ctx.cdcctl(),
        &["connector", "restart", &ctx.connector, "--wait"],
        EXIT_FAILED,
    );
    assert_eq!(report["detail"], "1 failed task");
    assert_eq!(report["wait"]["outcome"], "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_drives_every_endpoint_of_the_worker() {
    let ctx = TestContext::new("cc_client").await;
    ctx.pg()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let c = ctx.connect();
    let root = c.root().await.unwrap();
    assert!(!root.version.is_empty());
    let plugins = c.plugins().await.unwrap();
    assert!(
        plugins
            .iter()
            .any(|p| p.class == "io.debezium.connector.postgresql.PostgresConnector")
    );

    let pg = &ctx.stack.config.postgres;
    let mut config = ConnectorConfig::new();
    for (k, v) in [
        (
            "connector.class",
            "io.debezium.connector.postgresql.PostgresConnector",
        ),
        ("database.hostname", pg.host.as_str()),
        ("database.port", &pg.port.to_string()),
        ("database.user", pg.user.as_str()),
        (
            "database.password",
            pg.password.as_ref().map_or("", |p| p.expose()),
        ),
        ("database.dbname", ctx.database.as_str()),
        ("topic.prefix", ctx.topic_prefix.as_str()),
        ("plugin.name", "pgoutput"),
        ("slot.name", ctx.slot.as_str()),
        ("publication.autocreate.mode", "filtered"),
        ("table.include.list", "public.t"),
        ("snapshot.mode", "no_data"),
    ] {
        config.insert(k.to_string(), v.to_string());
    }
    let mut named = config.clone();
    named.insert("name".into(), ctx.connector.clone());
    let v = c
        .validate("io.debezium.connector.postgresql.PostgresConnector", &named)
        .await
        .unwrap();
    assert_eq!(v.error_count, 0, "{:?}", v.field_errors());

    let created = c.create(&ctx.connector, &config).await.unwrap();
    assert_eq!(created.name, ctx.connector);
    let dup = c.create(&ctx.connector, &config).await.unwrap_err();
    assert_eq!(dup.status(), Some(409));
    assert!(dup.to_string().contains("already exists"), "{dup}");

    let running = || async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = c.status(&ctx.connector).await;
            if let Ok(s) = &s
                && s.is_running()
            {
                return;
            }
            assert!(Instant::now() < deadline, "not RUNNING: {s:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    running().await;
    assert_eq!(c.tasks(&ctx.connector).await.unwrap().len(), 1);
    let listed = c.connectors().await.unwrap();
    assert!(listed.contains(&ctx.connector));
    let expanded = c.connectors_expanded().await.unwrap();
    assert_eq!(
        expanded[&ctx.connector].info.as_ref().unwrap().config["slot.name"],
        ctx.slot
    );

    // PUT config on an existing connector: 200, not created.
    let mut changed = config.clone();
    changed.insert("heartbeat.interval.ms".into(), "3000".into());
    let applied = c.put_config(&ctx.connector, &changed).await.unwrap();
    assert!(!applied.created);

    // Restart with tasks answers the status; stop leaves no tasks; offsets reset when stopped.
    let restarted = c
        .restart(
            &ctx.connector,
            Restart {
                include_tasks: true,
                only_failed: false,
            },
        )
        .await
        .unwrap();
    assert!(restarted.is_some());
    running().await;
    let err = c.reset_offsets(&ctx.connector).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "offsets change only when STOPPED");
    c.stop(&ctx.connector).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = c.status(&ctx.connector).await.unwrap();
        if s.connector.state == State::Stopped && s.tasks.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "not STOPPED: {s:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    c.offsets(&ctx.connector).await.unwrap();
    let message = c.reset_offsets(&ctx.connector).await.unwrap();
    assert!(message.contains("reset"), "{message}");
    assert!(c.offsets(&ctx.connector).await.unwrap().offsets.is_empty());
    c.resume(&ctx.connector).await.unwrap();
    running().await;
    c.pause(&ctx.connector).await.unwrap();
    c.delete(&ctx.connector).await.unwrap();
    // Deleting is asynchronous too: the status goes away shortly after the 204.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.status(&ctx.connector).await {
            Err(e) if e.is_not_found() => break,
            other => assert!(Instant::now() < deadline, "still there: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(c.find_config(&ctx.connector).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn files_flags_and_set_layer_in_order_and_secrets_never_print() {
    let ctx = TestContext::new("cc_layers").await;
    ctx.pg()
        .await
        .batch_execute("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int)")
        .await
        .unwrap();
    let json = ctx.dir.write(
        "connector.json",
        &format!(
            r#"{{"name": "{}", "config": {{"snapshot.mode": "always", "topic.prefix": "from_file",
                "heartbeat.interval.ms": 1000, "table.include.list": "public.a"}}}}"#,
            ctx.connector
        ),
    );
    let report = run_json(
        &mut ctx.cdcctl(),
        &[
            "create-connector",
            "--from-file",
            json.to_str().unwrap(),
            "--heartbeat",
            "2s",
            "--set",
            "heartbeat.interval.ms=3000",
            "--dry-run",
        ],
        EXIT_OK,
    );
    assert_eq!(
        report["connector"],
        ctx.connector.as_str(),
        "name from the file"
    );
    assert_eq!(report["status"], "would_create");
    assert_eq!(
        report["config"]["snapshot.mode"], "always",
        "file over default"
    );
    assert_eq!(report["config"]["topic.prefix"], "from_file");
    assert_eq!(
        report["config"]["heartbeat.interval.ms"], "3000",
        "--set last"
    );
    assert_eq!(report["tables"], serde_json::json!(["public.a"]));
    assert_eq!(report["config"]["database.password"], "****");

    let toml = ctx.dir.write(
        "connector.toml",
        "name = \"from-toml\"\nsnapshot.mode = \"no_data\"\n\"topic.prefix\" = \"tp\"\n",
    );
    let (code, stdout, stderr) = run(
        &mut ctx.cdcctl(),
        &[
            "create-connector",
            "--from-file",
            toml.to_str().unwrap(),
            "--topic-prefix",
            "flag_prefix",
            "--tables",
            "a,b",
            "--dry-run",
        ],
    );
    assert_eq!(code, EXIT_OK, "{stderr}");
    assert!(
        stdout.contains("connector from-toml would be created"),
        "{stdout}"
    );
    assert!(
        stdout.contains("flag_prefix.public.a"),
        "flag over file: {stdout}"
    );
    assert!(stdout.contains(" snapshot.mode  ") && stdout.contains("no_data"));
    assert!(
        stdout.contains("`public.b` has no primary key"),
        "warns about keyless tables: {stdout}"
    );
    let password = ctx
        .stack
        .config
        .postgres
        .password
        .as_ref()
        .unwrap()
        .expose();
    for text in [&stdout, &stderr, &report.to_string()] {
        assert!(!text.contains(password), "the password was printed");
    }
    assert!(
        ctx.connect()
            .find_config("from-toml")
            .await
            .unwrap()
            .is_none(),
        "--dry-run created a connector"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn publications_made_elsewhere_are_used_as_is_and_must_cover_the_tables() {
    let ctx = TestContext::new("cc_publication").await;
    let pg = ctx.pg().await;
    pg.batch_execute(
        "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY); \
         CREATE TABLE c (id int PRIMARY KEY)",
    )
    .await
    .unwrap();
    let (code, _, stderr) = run(&mut ctx.cdcctl(), &["setup-source", "--tables", "a,b"]);
    assert_eq!(code, EXIT_OK, "{stderr}");

    // setup-source's publication covers a and b: reused, untouched by Debezium.
    let report = run_json(
        &mut ctx.cdcctl(),
        &[
            "create-connector",
            "--name",
            &ctx.connector,
            "--tables",
            "a",
            "--dry-run",
        ],
        EXIT_OK,
    );
    assert_eq!(report["publication"], "cdcctl_publication");
    assert_eq!(report["publication_mode"], "disabled");

    // It lacks c: the connector gets its own publication instead.
    let report = run_json(
        &mut ctx.cdcctl(),
        &[
            "create-connector",
            "--name",
            &ctx.connector,
            "--tables",
            "a,c",
            "--dry-run",
        ],
        EXIT_OK,
    );
    assert_ne!(report["publication"], "cdcctl_publication");
    assert_eq!(report["publication_mode"], "filtered");

    // Named explicitly while lacking c: exit 2 with the fix.
    let (code, _, stderr) = run(
        &mut ctx.cdcctl(),
        &[
            "create-connector",
            "--name",
            &ctx.connector,
            "--tables",
            "a,c",
            "--publication",
            "cdcctl_publication",
            "--dry-run",
        ],
    );
    assert_eq!(code, EXIT_USAGE);
    assert!(
        stderr.contains("does not publish public.c")
            && stderr
                .contains("cdcctl setup-source --publication cdcctl_publication --tables public.c"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_tables_without_terminal_and_missing_names_are_exit_2() {
    let ctx = TestContext::new("cc_usage").await;
    ctx.pg()
        .await
        .batch_execute("CREATE TABLE a (id int PRIMARY KEY)")
        .await
        .unwrap();
    let (code, _, stderr) = run(
        &mut ctx.cdcctl(),
        &["create-connector", "--name", &ctx.connector],
    );
    assert_eq!(code, EXIT_USAGE);
    assert!(stderr.contains("pass `--tables LIST`"), "{stderr}");

    let (code, _, stderr) = run(
        &mut ctx.cdcctl(),
        &[
            "create-connector",
            "--name",
            &ctx.connector,
            "--tables",
            "nope",
        ],
    );
    assert_eq!(code, EXIT_USAGE);
    assert!(stderr.contains("table `nope` does not exist"), "{stderr}");

    let (code, _, stderr) = run(
        &mut ctx.cdcctl(),
        &["connector", "status", &format!("{}-missing", ctx.connector)],
    );
    assert_eq!(code, EXIT_USAGE);
    assert!(stderr.contains("there is no connector"), "{stderr}");

    let (code, _, stderr) = run(
        &mut ctx.cdcctl(),
        &["create-connector", "--tables", "a", "status"],
    );
    assert_eq!(code, EXIT_USAGE, "flags and verbs do not mix: {stderr}");
}

#[test]
fn connect_down_is_exit_3_naming_the_url() {
    let dir = TestDir::new("cc_down");
    let port = crate::support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    for args in [
        &["create-connector", "--tables", "users", "--dry-run"][..],
        &["connector", "status", "pg-cdc"],
        &["connector", "delete", "pg-cdc", "--yes"],
        &["-o", "json", "connector", "list"],
    ] {
        let (code, stdout, stderr) = run(dir.cdcctl().env("CDCCTL_CONNECT_URL", &url), args);
        assert_eq!(code, EXIT_UNREACHABLE, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("Kafka Connect is unreachable at `{url}`")),
            "{args:?}: {stderr}"
        );
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
}
