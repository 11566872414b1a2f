//! `cdcctl tail` against the real stack: rows changed in Postgres reach the topic through the real
//! Debezium connector and come out of `tail -o json` with the exact values Postgres holds; the
//! `pretty` lines (snapshot); filters; start positions; undecodable messages; a closed pipe; usage
//! errors and an unreachable broker.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cdcctl::error::{EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

use crate::support::{TestContext, repo_root};

const ALL_TYPES_DDL: &str = "
CREATE TABLE all_types (id integer PRIMARY KEY, big bigint, amount numeric(12,2), note text,
  code varchar(20), flag boolean, ts timestamp, tstz timestamptz, d date, doc jsonb, uid uuid,
  raw bytea, tags text[]);
ALTER TABLE all_types REPLICA IDENTITY FULL;";

/// Runs `tail` and returns (exit code, stdout, stderr).
fn tail(ctx: &TestContext, args: &[&str]) -> (u8, String, String) {
    let out = ctx.cdcctl().arg("tail").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1) as u8,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `tail`, asserts it succeeded, and returns stdout.
fn tail_ok(ctx: &TestContext, args: &[&str]) -> String {
    let (code, stdout, stderr) = tail(ctx, args);
    assert_eq!(code, EXIT_OK, "tail {args:?}: {stderr}");
    stdout
}

/// `tail --until-end -o json` until it prints at least `n` events (Debezium needs a moment).
fn json_events(ctx: &TestContext, table: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, stdout, stderr) = tail(ctx, &[table, "--until-end", "-o", "json"]);
        let events: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        if code == EXIT_OK && events.len() >= n {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} events, have {} (exit {code}): {stderr}",
            events.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_arrive_decoded_with_exact_values() {
    let ctx = TestContext::new("tail_values").await;
    let pg = ctx.pg().await;
    pg.batch_execute(ALL_TYPES_DDL).await.unwrap();
    pg.batch_execute(
        r#"INSERT INTO all_types VALUES (1, 9007199254740993, 12345.67, 'hello', 'A-1', true,
             '2024-05-06 07:08:09.123456', '2024-05-06 07:08:09.5+02', '0001-01-01',
             '{"a": [1, 2.5, "x"], "b": null}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
             '\xdeadbeef', '{x,"y z"}');
           INSERT INTO all_types (id) VALUES (2);"#,
    )
    .await
    .unwrap();
    ctx.create_connector(&["public.all_types"]).await;
    pg.batch_execute(
        "UPDATE all_types SET amount = -0.05, tags = '{}' WHERE id = 1;
         DELETE FROM all_types WHERE id = 2;",
    )
    .await
    .unwrap();

    let events = json_events(&ctx, "all_types", 4);
    let ops: Vec<&str> = events.iter().map(|e| e["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["r", "r", "u", "d"], "{events:#?}");

    let snapshot = &events[0];
    assert_eq!(snapshot["table"], "public.all_types");
    assert_eq!(snapshot["key"], json!({"id": 1}));
    assert_eq!(snapshot["source"]["snapshot"], true);
    let after = &snapshot["after"];
    assert_eq!(after["big"], json!(9007199254740993_i64));
    assert_eq!(after["amount"], "12345.67");
    assert_eq!(after["note"], "hello");
    assert_eq!(after["flag"], true);
    assert_eq!(after["ts"], "2024-05-06T07:08:09.123456");
    // Debezium sends timestamptz in UTC; the instant is what Postgres holds.
    let tstz = chrono::DateTime::parse_from_rfc3339(after["tstz"].as_str().unwrap()).unwrap();
    assert_eq!(
        tstz,
        chrono::DateTime::parse_from_rfc3339("2024-05-06T07:08:09.5+02:00").unwrap()
    );
    assert_eq!(after["d"], "0001-01-01");
    assert_eq!(after["doc"], json!({"a": [1, 2.5, "x"], "b": null}));
    assert_eq!(after["uid"], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(after["raw"], "\\xdeadbeef");
    assert_eq!(after["tags"], json!(["x", "y z"]));
    assert!(snapshot["kafka"]["offset"].is_i64());
    assert!(snapshot["source"]["lsn"].as_i64().unwrap() > 0);

    let nulls = &events[1]["after"];
    assert_eq!(nulls["id"], 2);
    for column in [
        "big", "amount", "note", "ts", "tstz", "doc", "uid", "raw", "tags",
    ] {
        assert!(nulls[column].is_null(), "{column}: {nulls}");
    }

    let update = &events[2];
    assert_eq!(update["before"]["amount"], "12345.67");
    assert_eq!(update["after"]["amount"], "-0.05");
    assert_eq!(update["after"]["tags"], json!([]));
    assert!(update["source"]["ts_ms"].as_i64().unwrap() > 0);
    assert_eq!(update["source"]["snapshot"], false);

    let delete = &events[3];
    assert_eq!(delete["key"], json!({"id": 2}));
    assert!(delete["after"].is_null());
    assert_eq!(delete["before"]["id"], 2);

    // The pretty lines, with the volatile parts (commit time, lag) masked.
    let (code, stdout, stderr) = tail(&ctx, &["all_types", "--until-end"]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    insta::with_settings!({filters => vec![
        (r"(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", "[time]"),
        (r"lag \S+", "lag [lag]"),
    ]}, {
        insta::assert_snapshot!("tail_pretty_all_types", stdout);
    });

    // Filters: one op, a key, a column value, a count.
    let stdout = tail_ok(
        &ctx,
        &["all_types", "--until-end", "--op", "u", "-o", "json"],
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let stdout = tail_ok(
        &ctx,
        &["all_types", "--until-end", "--key", "id=2", "-o", "json"],
    );
    let ops: Vec<String> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["op"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ops, ["r", "d"]);
    let stdout = tail_ok(
        &ctx,
        &["all_types", "-e", "--where", "note=hello", "-o", "json"],
    );
    assert_eq!(
        stdout.lines().count(),
        2,
        "snapshot and update of id 1: {stdout}"
    );
    let stdout = tail_ok(&ctx, &["all_types", "-e", "-n", "3", "-o", "json"]);
    assert_eq!(stdout.lines().count(), 3);
    // With tombstones: the delete of id 2 is followed by one.
    let stdout = tail_ok(&ctx, &["all_types", "-e", "--tombstones", "-o", "json"]);
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["op"], "tombstone");
    assert_eq!(last["key"], json!({"id": 2}));
    // `--from offset:-1` reads only the last message of the partition.
    let stdout = tail_ok(
        &ctx,
        &[
            "all_types",
            "-e",
            "--tombstones",
            "--from",
            "offset:-1",
            "-o",
            "json",
        ],
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    // The same topic named directly, and by pattern.
    let topic = format!("{}.public.all_types", ctx.topic_prefix);
    let stdout = tail_ok(&ctx, &["--topic", &topic, "-e", "-o", "json"]);
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    let pattern = format!("{}\\.public\\..*", ctx.topic_prefix);
    let stdout = tail_ok(&ctx, &["--pattern", &pattern, "-e", "-o", "json"]);
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    // By time: everything was written within the hour; nothing after 2099.
    let (code, stdout, stderr) = tail(&ctx, &["all_types", "-e", "--from", "-1h", "-o", "json"]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    let (code, stdout, _) = tail(
        &ctx,
        &["all_types", "-e", "--from", "time:2099-01-01T00:00:00Z"],
    );
    assert_eq!((code, stdout.as_str()), (EXIT_OK, ""));
    // `--from end` without follow has nothing to read.
    let (code, stdout, _) = tail(&ctx, &["all_types", "-e", "--from", "end"]);
    assert_eq!((code, stdout.as_str()), (EXIT_OK, ""));
    // Without filters the JSON lines (the values checked above) are written straight from the
    // message bytes, all but the first of each schema; a filter makes tail decode every
    // message. Both give the same bytes.
    let direct = tail_ok(&ctx, &["all_types", "-e", "-o", "json"]);
    let decoded = tail_ok(
        &ctx,
        &["all_types", "-e", "-o", "json", "--op", "c,r,u,d,t,m"],
    );
    assert_eq!(direct.lines().count(), 4, "{direct}");
    assert_eq!(direct, decoded);
}

/// A message's key and value bytes (`None`: null).
type KafkaMessage = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Produces messages to a topic of this test's prefix, without Connect.
async fn produce(ctx: &TestContext, topic: &str, messages: &[KafkaMessage]) {
    let producer: FutureProducer = ctx.kafka_config().create().unwrap();
    for (key, value) in messages {
        let mut record = FutureRecord::<Vec<u8>, Vec<u8>>::to(topic);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

/// The raw key and value bytes of the fixture messages (kcat -J lines).
fn fixture_messages(name: &str) -> Vec<KafkaMessage> {
    let path = repo_root().join("tests/fixtures/debezium").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|line| {
            let m: Value = serde_json::from_str(line).unwrap();
            let bytes = |v: &Value| v.as_str().map(|s| s.as_bytes().to_vec());
            (bytes(&m["key"]), bytes(&m["payload"]))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn undecodable_messages_are_reported_and_a_closed_pipe_is_quiet() {
    let ctx = TestContext::new("tail_raw").await;
    let topic = format!("{}.public.users", ctx.topic_prefix);
    let mut messages = fixture_messages("schemas-true/cdc.public.users.jsonl");
    let good = messages.len();
    messages.push((
        Some(b"{\"id\":99}".to_vec()),
        Some(b"not json at all".to_vec()),
    ));
    produce(&ctx, &topic, &messages).await;

    // Every message decodes but the last; it is named on stderr and the exit code is 1.
    let (code, stdout, stderr) = tail(&ctx, &["users", "-e", "--tombstones", "-o", "json"]);
    assert_eq!(code, EXIT_FAILED, "{stderr}");
    assert_eq!(stdout.lines().count(), good, "{stdout}");
    assert!(
        stderr.contains(&format!("{topic}/0@{good}")) && stderr.contains("cannot decode"),
        "{stderr}"
    );
    // `--format raw` prints the messages as stored, the undecodable one included.
    let stdout = tail_ok(&ctx, &["users", "-e", "--format", "raw"]);
    assert_eq!(stdout.lines().last(), Some("not json at all"));

    // `cdcctl tail | head -1`: the reader goes away after one line; exit 0, nothing on stderr.
    let mut child = ctx
        .command()
        .args([
            "tail",
            "users",
            "--follow",
            "--from",
            "beginning",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with('{'), "{first}");
    // stdout is now closed; the write of the next change fails with EPIPE.
    produce(&ctx, &topic, &messages[..1]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("tail kept running after its reader went away");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(EXIT_OK as i32), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_and_an_unreachable_broker() {
    let ctx = TestContext::new("tail_errors").await;
    let (code, _, stderr) = tail(&ctx, &["no_such_table", "-e"]);
    assert_eq!(code, EXIT_USAGE, "{stderr}");
    assert!(
        stderr.contains(&format!("{}.public.no_such_table", ctx.topic_prefix)),
        "{stderr}"
    );
    let (code, _, stderr) = tail(&ctx, &["--from", "yesterday", "-e"]);
    assert_eq!(code, EXIT_USAGE, "{stderr}");
    assert!(stderr.contains("offset:N"), "{stderr}");
    let (code, _, stderr) = tail(&ctx, &["--pattern", "(", "-e"]);
    assert_eq!(code, EXIT_USAGE, "{stderr}");

    let out = ctx
        .cdcctl()
        .args(["tail", "users", "-e", "--brokers", "127.0.0.1:1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_UNREACHABLE as i32), "{stderr}");
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_vv_librdkafka_debug_lines_reach_the_log() {
    let ctx = TestContext::new("tail_debug").await;
    let topic = format!("{}.public.users", ctx.topic_prefix);
    produce(
        &ctx,
        &topic,
        &fixture_messages("schemas-true/cdc.public.users.jsonl"),
    )
    .await;
    let run = |verbose: &[&str]| {
        let out = ctx
            .cdcctl()
            .env("CDCCTL_KAFKA_PROPERTIES", "debug=fetch")
            .args(verbose)
            .args([
                "tail",
                "--topic",
                &topic,
                "--from",
                "beginning",
                "-e",
                "-o",
                "json",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(EXIT_OK as i32));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let debug = run(&["-vv"]);
    assert!(debug.contains("fac=\"FETCH\""), "{debug}");
    let quiet = run(&[]);
    assert!(!quiet.contains("librdkafka"), "{quiet}");
}
