//! `cdcctl load` against the real stack: Postgres → Debezium on Kafka Connect → the broker →
//! DuckDB. Convergence column for column (with and without `--soft-delete`), SIGKILL at random
//! points, schema evolution during a run, an undecodable message, the Prometheus endpoint, and
//! the errors (locked file, usage, unreachable broker).

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cdcctl::error::{EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::support::{TestContext, free_port, repo_root};

pub(crate) const DEMO: [&str; 4] = [
    "public.users",
    "public.credit_card_transactions",
    "commerce.users",
    "commerce.products",
];

/// Runs `cdcctl load` with `args` and returns (exit code, stdout, stderr).
pub(crate) fn load(ctx: &TestContext, args: &[&str]) -> (u8, String, String) {
    let out = ctx.cdcctl().arg("load").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1) as u8,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `cdcctl` with `args`, asserting exit 0.
pub(crate) fn cdcctl_ok(ctx: &TestContext, args: &[&str]) {
    let out = ctx.cdcctl().args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "cdcctl {args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A column of a Postgres table and the expressions that render it as the same text in
/// Postgres and in DuckDB.
pub(crate) struct Column {
    pub(crate) name: String,
    pg: String,
    duck: String,
    /// json/jsonb: compared as JSON values (DuckDB keeps the document, not Postgres' key order
    /// and spacing).
    pub(crate) json: bool,
    /// Postgres' `information_schema` data type.
    pub(crate) data_type: String,
}

pub(crate) use cdcctl::commands::verify::canonical_json;

/// The columns of `schema.table` in Postgres, with comparable renderings: timestamps as epoch
/// microseconds, arrays as compact JSON, everything else as its text (exact decimals, jsonb as
/// Postgres prints it, which is what Debezium sends).
pub(crate) async fn columns(pg: &tokio_postgres::Client, schema: &str, table: &str) -> Vec<Column> {
    let rows = pg
        .query(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            &[&schema, &table],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let name: String = r.get(0);
            let ty: String = r.get(1);
            let q = format!("\"{}\"", name.replace('"', "\"\""));
            let (pg, duck) = match ty.as_str() {
                "timestamp with time zone" | "timestamp without time zone" => (
                    format!("(extract(epoch from {q}) * 1000000)::bigint::text"),
                    format!("epoch_us({q})::VARCHAR"),
                ),
                "ARRAY" => (
                    format!("array_to_json({q})::text"),
                    format!("to_json({q})::VARCHAR"),
                ),
                _ => (format!("{q}::text"), format!("{q}::VARCHAR")),
            };
            let json = ty == "json" || ty == "jsonb" || ty == "ARRAY";
            Column {
                name,
                pg,
                duck,
                json,
                data_type: ty,
            }
        })
        .collect()
}

pub(crate) type Rows = Vec<Vec<Option<String>>>;

pub(crate) async fn pg_rows(
    pg: &tokio_postgres::Client,
    schema: &str,
    table: &str,
    cols: &[Column],
) -> Rows {
    let select: Vec<&str> = cols.iter().map(|c| c.pg.as_str()).collect();
    let sql = format!(
        "SELECT {} FROM \"{schema}\".\"{table}\" AS t ORDER BY t.id",
        select.join(", ")
    );
    pg.query(&sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (0..cols.len()).map(|i| r.get(i)).collect())
        .collect()
}

/// Rows of a DuckDB table, in key order (`t.id`: Postgres would sort a bare `id` by the
/// text column of that name); `filter` selects (e.g. `NOT _cdc_deleted`). `None` when the file or
/// table does not exist yet.
fn duck_rows(
    path: &std::path::Path,
    schema: &str,
    table: &str,
    cols: &[Column],
    filter: &str,
) -> Option<Rows> {
    if !path.exists() {
        return None;
    }
    let conn = duckdb::Connection::open(path).ok()?;
    let select: Vec<&str> = cols.iter().map(|c| c.duck.as_str()).collect();
    let sql = format!(
        "SELECT {} FROM \"{schema}\".\"{table}\" AS t WHERE {filter} ORDER BY t.id",
        select.join(", ")
    );
    let mut statement = conn.prepare(&sql).ok()?;
    let mut rows = statement.query([]).ok()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().ok()? {
        out.push((0..cols.len()).map(|i| row.get(i).unwrap()).collect());
    }
    Some(out)
}

/// The first difference between the Postgres rows of a table (`want`) and a warehouse's
/// (`have`, `None` when the table does not exist yet), or `None` when they are equal. JSON
/// columns are compared as JSON values (a warehouse keeps the document, not Postgres' key order
/// and spacing).
pub(crate) fn rows_difference(
    qualified: &str,
    warehouse: &str,
    cols: &[Column],
    want: Rows,
    have: Option<Rows>,
) -> Option<String> {
    let Some(have) = have else {
        return Some(format!("{qualified}: no table in {warehouse} yet"));
    };
    if want.len() != have.len() {
        return Some(format!(
            "{qualified}: {} rows in Postgres, {} in {warehouse}",
            want.len(),
            have.len()
        ));
    }
    let canonical = |rows: Rows| -> Rows {
        rows.into_iter()
            .map(|row| {
                row.into_iter()
                    .zip(cols)
                    .map(|(cell, c)| match cell {
                        Some(text) if c.json => Some(canonical_json(&text)),
                        other => other,
                    })
                    .collect()
            })
            .collect()
    };
    let (want, have) = (canonical(want), canonical(have));
    for (w, h) in want.iter().zip(&have) {
        if w != h {
            let diff: Vec<String> = cols
                .iter()
                .zip(w.iter().zip(h))
                .filter(|(_, (a, b))| a != b)
                .map(|(c, (a, b))| format!("{}: {a:?} != {b:?}", c.name))
                .collect();
            return Some(format!("{qualified} id {:?}: {}", w[0], diff.join("; ")));
        }
    }
    None
}

/// The first difference between the Postgres and DuckDB copies of every demo table, or `None`.
async fn difference(ctx: &TestContext, duckdb: &std::path::Path, filter: &str) -> Option<String> {
    let pg = ctx.pg().await;
    for qualified in DEMO {
        let (schema, table) = qualified.split_once('.').unwrap();
        let cols = columns(&pg, schema, table).await;
        let want = pg_rows(&pg, schema, table, &cols).await;
        let have = duck_rows(duckdb, schema, table, &cols, filter);
        if let Some(diff) = rows_difference(qualified, "DuckDB", &cols, want, have) {
            return Some(diff);
        }
    }
    None
}

/// `load --until-caught-up` until DuckDB equals Postgres (Debezium streams with a delay).
pub(crate) async fn load_until_equal(
    ctx: &TestContext,
    extra: &[&str],
    duckdb: &std::path::Path,
    filter: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut args = vec!["--until-caught-up"];
        args.extend_from_slice(extra);
        let (code, _, stderr) = load(ctx, &args);
        assert_eq!(code, EXIT_OK, "load {args:?}: {stderr}");
        let Some(diff) = difference(ctx, duckdb, filter).await else {
            return;
        };
        assert!(
            Instant::now() < deadline,
            "DuckDB never equalled Postgres: {diff}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The demo schema with a connector on it and generated data: bulk rows, then a change stream
/// with TOAST-sized text.
pub(crate) async fn demo_pipeline(ctx: &TestContext, rows: &str, events: &str) {
    cdcctl_ok(
        ctx,
        &["setup-source", "--demo", "--replica-identity", "full", "-q"],
    );
    ctx.create_connector(&DEMO).await;
    cdcctl_ok(ctx, &["generate-data", "--rows", rows, "--seed", "7"]);
    cdcctl_ok(
        ctx,
        &[
            "generate-data",
            "--events",
            events,
            "--tx-size",
            "20",
            "--large-text",
            "--seed",
            "8",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn converges_to_postgres_column_for_column_with_and_without_soft_delete() {
    let ctx = TestContext::new("load_converges").await;
    demo_pipeline(&ctx, "200", "1500").await;

    load_until_equal(&ctx, &["--batch-size", "700"], &ctx.duckdb_path, "true").await;

    // Deletes happened, and the loaded tables have no duplicate keys.
    let conn = duckdb::Connection::open(&ctx.duckdb_path).unwrap();
    for qualified in DEMO {
        let (schema, table) = qualified.split_once('.').unwrap();
        let dupes: i64 = conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM (SELECT id FROM \"{schema}\".\"{table}\" GROUP BY id \
                     HAVING count(*) > 1)"
                ),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(dupes, 0, "{qualified}");
    }
    let ops: i64 = conn
        .query_row(
            "SELECT count(DISTINCT _cdc_operation) FROM public.users",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(ops >= 2, "snapshot reads and updates are both recorded");
    drop(conn);

    // The same topics into another file with --soft-delete: live rows equal Postgres, and every
    // deleted key is kept, flagged.
    let soft = ctx.dir.path().join("soft.duckdb");
    let soft_arg = soft.to_str().unwrap().to_string();
    let group = format!("{}-soft", ctx.group);
    load_until_equal(
        &ctx,
        &["--soft-delete", "--duckdb", &soft_arg, "--group", &group],
        &soft,
        "NOT _cdc_deleted",
    )
    .await;
    let conn = duckdb::Connection::open(&soft).unwrap();
    let deleted: i64 = conn
        .query_row(
            "SELECT count(*) FROM public.credit_card_transactions WHERE _cdc_deleted AND \
             _cdc_operation = 'd'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(deleted > 0, "the change stream deletes transactions");
}

/// Waits until Debezium has created the topic of `table` (the snapshot runs after RUNNING).
pub(crate) async fn wait_for_topic(ctx: &TestContext, table: &str) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let topic = format!("{}.{table}", ctx.topic_prefix);
    let consumer: BaseConsumer = ctx.kafka_config().create().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(5))
            .unwrap();
        if metadata
            .topics()
            .iter()
            .any(|t| t.error().is_none() && !t.partitions().is_empty())
        {
            return;
        }
        assert!(Instant::now() < deadline, "topic {topic} never appeared");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Starts a following `cdcctl load` with `args`; stdout discarded, stderr kept.
pub(crate) fn spawn_loader(ctx: &TestContext, args: &[&str]) -> Child {
    ctx.command()
        .arg("load")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn survives_sigkill_at_random_points() {
    let ctx = TestContext::new("load_sigkill").await;
    demo_pipeline(&ctx, "300", "3000").await;
    // Data keeps changing while the loader is killed.
    let mut changes = ctx
        .command()
        .args([
            "generate-data",
            "--events",
            "3000",
            "--rate",
            "1500",
            "--seed",
            "9",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seed = std::process::id() as u64;
    for _ in 0..6 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let after = Duration::from_millis(300 + (seed >> 33) % 1200);
        let mut loader = spawn_loader(
            &ctx,
            &[
                "--batch-size",
                "300",
                "--flush-interval",
                "200ms",
                "--commit-interval",
                "0s",
            ],
        );
        tokio::time::sleep(after).await;
        // SIGKILL, by PID: no chance to flush or commit.
        loader.kill().unwrap();
        let status = loader.wait().unwrap();
        assert!(
            status.code().is_none(),
            "killed by a signal, not exited: {status:?}"
        );
    }
    assert!(changes.wait().unwrap().success());

    load_until_equal(&ctx, &[], &ctx.duckdb_path, "true").await;
    let conn = duckdb::Connection::open(&ctx.duckdb_path).unwrap();
    let dupes: i64 = conn
        .query_row(
            "SELECT count(*) FROM (SELECT id FROM public.credit_card_transactions GROUP BY id \
             HAVING count(*) > 1)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dupes, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_source_column_appears_in_duckdb_during_a_run() {
    let ctx = TestContext::new("load_evolve").await;
    let pg = ctx.pg().await;
    pg.batch_execute(
        "CREATE TABLE items (id integer PRIMARY KEY, name text);
         ALTER TABLE items REPLICA IDENTITY FULL;
         INSERT INTO items VALUES (1, 'one'), (2, 'two');",
    )
    .await
    .unwrap();
    ctx.create_connector(&["public.items"]).await;
    wait_for_topic(&ctx, "public.items").await;
    let mut loader = spawn_loader(&ctx, &["items", "--flush-interval", "200ms"]);
    let count = |filter: &str| -> Option<i64> {
        let conn = duckdb::Connection::open_with_flags(
            &ctx.duckdb_path,
            duckdb::Config::default()
                .access_mode(duckdb::AccessMode::ReadOnly)
                .ok()?,
        )
        .ok()?;
        conn.query_row(
            &format!("SELECT count(*) FROM public.items WHERE {filter}"),
            [],
            |r| r.get(0),
        )
        .ok()
    };
    // The loader holds the file: stop it (SIGTERM, by PID) to look, then start it again.
    let stop = |loader: &mut Child| {
        let pid = loader.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = loader.wait().unwrap();
        let mut stderr = String::new();
        loader
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(
            status.code(),
            Some(0),
            "SIGTERM flushes, commits and exits 0: {stderr}"
        );
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.batch_execute(
        "ALTER TABLE items ADD COLUMN price numeric(10,2);
         INSERT INTO items VALUES (3, 'three', 3.50);
         UPDATE items SET price = 1.25 WHERE id = 1;",
    )
    .await
    .unwrap();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop(&mut loader);
        if count("price IS NOT NULL") == Some(2) {
            break;
        }
        assert!(Instant::now() < deadline, "the new column never arrived");
        loader = spawn_loader(&ctx, &["items", "--flush-interval", "200ms"]);
    }
    let conn = duckdb::Connection::open(&ctx.duckdb_path).unwrap();
    let prices: Vec<(i32, Option<String>)> = conn
        .prepare("SELECT id, price::VARCHAR FROM public.items ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        prices,
        vec![
            (1, Some("1.25".to_string())),
            (2, None),
            (3, Some("3.50".to_string()))
        ]
    );
}

/// Produces the first `n` messages of the real `cdc.public.users` fixture (11: snapshot,
/// changes, deletes, tombstones) to `topic`, then `extra` (key, value) messages.
/// (key, value) of the first `n` messages of the users fixture: a consistent stream that, at
/// 11 messages, leaves only id 1 (`None`: a tombstone).
pub(crate) fn users_fixture(n: usize) -> Vec<(String, Option<String>)> {
    let text = std::fs::read_to_string(
        repo_root().join("tests/fixtures/debezium/schemas-true/cdc.public.users.jsonl"),
    )
    .unwrap();
    text.lines()
        .take(n)
        .map(|l| {
            let m: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                m["key"].as_str().unwrap().to_string(),
                m["payload"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// The ids of a DuckDB table (`schema.table`), in order.
pub(crate) fn duck_ids(path: &std::path::Path, table: &str) -> Vec<i64> {
    let conn = duckdb::Connection::open(path).unwrap();
    conn.prepare(&format!("SELECT id FROM {table} ORDER BY id"))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

pub(crate) async fn produce_users_fixture(
    ctx: &TestContext,
    topic: &str,
    n: usize,
    extra: &[(&str, &str)],
) {
    let fixture = std::fs::read_to_string(
        repo_root().join("tests/fixtures/debezium/schemas-true/cdc.public.users.jsonl"),
    )
    .unwrap();
    let producer: FutureProducer = ctx.kafka_config().create().unwrap();
    let lines: Vec<serde_json::Value> = fixture
        .lines()
        .take(n)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let messages = lines
        .iter()
        .map(|m| (m["key"].as_str().unwrap_or(""), m["payload"].as_str()))
        .chain(extra.iter().map(|(k, v)| (*k, Some(*v))));
    for (key, value) in messages {
        let mut record = FutureRecord::<str, str>::to(topic).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn table_map_and_target_schema_name_the_duckdb_tables() {
    let ctx = TestContext::new("load_targets").await;
    let topic = format!("{}.public.users", ctx.topic_prefix);
    produce_users_fixture(&ctx, &topic, 11, &[]).await;
    let (code, stdout, stderr) = load(
        &ctx,
        &[
            "--topic",
            &topic,
            "--table-map",
            "public.users=app.people",
            "--until-caught-up",
        ],
    );
    assert_eq!(code, EXIT_OK, "{stderr}");
    assert!(stdout.contains("\"app\".\"people\""), "{stdout}");
    // Not `raw.duckdb`: DuckDB names the catalog after the file, and a schema of the same name
    // makes every unqualified `raw.users` ambiguous (noted on issue 7).
    let other = ctx.dir.path().join("targets.duckdb");
    let (code, _, stderr) = load(
        &ctx,
        &[
            "--topic",
            &topic,
            "--target-schema",
            "raw",
            "--duckdb",
            other.to_str().unwrap(),
            "--group",
            &format!("{}-raw", ctx.group),
            "--until-caught-up",
        ],
    );
    assert_eq!(code, EXIT_OK, "{stderr}");
    for (path, table) in [(&ctx.duckdb_path, "app.people"), (&other, "raw.users")] {
        // Ids 2 and 3 were deleted in the stream; id 1 remains.
        assert_eq!(duck_ids(path, table), vec![1], "{table}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_dlq_an_undecodable_message_stops_after_loading_what_came_before() {
    let ctx = TestContext::new("load_undecodable").await;
    let topic = format!("{}.public.users", ctx.topic_prefix);
    produce_users_fixture(&ctx, &topic, 1, &[("{}", "{ not json")]).await;
    for _ in 0..2 {
        let (code, _, stderr) = load(&ctx, &["--topic", &topic, "--until-caught-up", "--no-dlq"]);
        assert_eq!(code, EXIT_FAILED, "{stderr}");
        assert!(
            stderr.contains(&format!("{topic}/0@1 cannot be decoded")),
            "{stderr}"
        );
        assert!(stderr.contains("cdcctl tail --topic"), "{stderr}");
        let conn = duckdb::Connection::open(&ctx.duckdb_path).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM public.users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "the message before the bad one is loaded, once");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_prometheus_metrics_and_refuses_a_second_writer() {
    let ctx = TestContext::new("load_metrics").await;
    let pg = ctx.pg().await;
    pg.batch_execute(
        "CREATE TABLE notes (id integer PRIMARY KEY, body text);
         INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 50) g;",
    )
    .await
    .unwrap();
    ctx.create_connector(&["public.notes"]).await;
    wait_for_topic(&ctx, "public.notes").await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut loader = spawn_loader(&ctx, &["notes", "--metrics-addr", &addr]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let body = std::net::TcpStream::connect(&addr).ok().and_then(|mut s| {
            s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
            let mut text = String::new();
            s.read_to_string(&mut text).ok()?;
            Some(text)
        });
        if let Some(body) = &body
            && body.contains("cdcctl_load_events_total 50")
        {
            break body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed 50 events: {body:?}"
        );
    };
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(
        body.contains("cdcctl_load_table_events_total{table=\"public.notes\",op=\"r\"} 50"),
        "{body}"
    );
    assert!(
        body.contains("cdcctl_load_kafka_to_commit_milliseconds{quantile=\"0.99\"}"),
        "{body}"
    );

    // DuckDB has one writer per file: a second loader says so and exits 1.
    let (code, _, stderr) = load(&ctx, &["notes", "--until-caught-up"]);
    assert_eq!(code, EXIT_FAILED, "{stderr}");
    assert!(stderr.contains("in use by another process"), "{stderr}");
    assert!(stderr.contains("one writer per file"), "{stderr}");

    let pid = loader.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let status = loader.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "Ctrl-C flushes, commits and exits 0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_and_an_unreachable_broker() {
    let ctx = TestContext::new("load_errors").await;
    let (code, _, stderr) = load(&ctx, &["--table-map", "users", "--until-caught-up"]);
    assert_eq!(code, EXIT_USAGE, "{stderr}");
    assert!(stderr.contains("SOURCE=TARGET"), "{stderr}");
    let (code, _, stderr) = load(&ctx, &["--pattern", "(", "--until-caught-up"]);
    assert_eq!(code, EXIT_USAGE, "{stderr}");
    let (code, _, stderr) = load(&ctx, &["--sink", "snowflake", "--until-caught-up"]);
    assert_eq!(code, EXIT_USAGE, "{stderr}");
    let port = free_port();
    let (code, _, stderr) = load(
        &ctx,
        &[
            "--brokers",
            &format!("127.0.0.1:{port}"),
            "--until-caught-up",
        ],
    );
    assert_eq!(code, EXIT_UNREACHABLE, "{stderr}");
    assert!(stderr.contains("Kafka is unreachable"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_during_a_run_loses_nothing() {
    let ctx = TestContext::new("load_broker_restart").await;
    let mut broker = crate::support::PrivateBroker::start();
    let topic = format!("{}.public.users", ctx.topic_prefix);
    let lines = users_fixture(11);
    let address = broker.address.clone();
    let produce = |range: std::ops::Range<usize>| {
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &address)
            .create()
            .unwrap();
        let batch: Vec<(String, Option<String>)> = lines[range].to_vec();
        let topic = topic.clone();
        async move {
            for (key, value) in &batch {
                let mut record = FutureRecord::<str, str>::to(&topic).key(key);
                if let Some(value) = value {
                    record = record.payload(value);
                }
                producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| e)
                    .unwrap();
            }
        }
    };
    produce(0..5).await;

    let metrics_path = ctx.dir.path().join("metrics.json");
    let loader = ctx
        .command()
        .env("CDCCTL_KAFKA_BROKERS", &address)
        .args(["load", "--topic", &topic, "--no-dlq"])
        .args(["--flush-interval", "200ms", "--commit-interval", "0s"])
        .arg("--metrics-file")
        .arg(&metrics_path)
        .args(["--metrics-interval", "200ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let events = || metrics_counts(&metrics_path).0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while events() < 5 {
        assert!(Instant::now() < deadline, "the first batch never landed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The broker goes away for a few seconds and comes back with its data.
    broker.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.resume();
    produce(5..11).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while events() < 11 {
        assert!(
            Instant::now() < deadline,
            "the loader did not resume after the restart ({} events)",
            events()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // SAFETY: kill(2) on the PID of the child this test started.
    unsafe { libc::kill(loader.id() as i32, libc::SIGTERM) };
    let out = loader.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("is unreachable"),
        "the outage was seen: {stderr}"
    );
    assert!(stderr.contains("answers again"), "and its end: {stderr}");

    assert_eq!(
        duck_ids(&ctx.duckdb_path, "public.users"),
        vec![1],
        "the end state of the stream, nothing lost"
    );
}

/// `events` and `batches` of a loader's metrics file (0 before it is written).
fn metrics_counts(path: &std::path::Path) -> (u64, u64) {
    let m = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .unwrap_or_default();
    (
        m["events"].as_u64().unwrap_or(0),
        m["batches"].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_following_loader_applies_what_it_read_without_waiting_for_the_flush_interval() {
    let ctx = TestContext::new("load_linger").await;
    let topic = format!("{}.public.users", ctx.topic_prefix);
    let events_in_fixture = users_fixture(11).len() as u64;
    let follow = |name: &str, linger: &str| {
        let metrics = ctx.dir.path().join(format!("{name}.json"));
        let loader = ctx
            .command()
            .args(["load", "--topic", &topic, "--group", name])
            .args(["--flush-interval", "60s", "--linger", linger])
            .arg("--duckdb")
            .arg(ctx.dir.path().join(format!("{name}.duckdb")))
            .arg("--metrics-file")
            .arg(&metrics)
            .args(["--metrics-interval", "100ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        (loader, metrics)
    };
    let stop = |mut loader: Child| {
        // SAFETY: kill(2) on the PID of a child this test started.
        unsafe { libc::kill(loader.id() as i32, libc::SIGTERM) };
        let status = loader.wait().unwrap();
        assert_eq!(status.code(), Some(EXIT_OK as i32));
    };
    produce_users_fixture(&ctx, &topic, 11, &[]).await;

    // Default `--linger 0s`: the batch is applied as soon as the topic has been read to its end,
    // long before the 60 s flush interval.
    let (loader, metrics) = follow("eager", "0s");
    let deadline = Instant::now() + Duration::from_secs(20);
    while metrics_counts(&metrics).0 < events_in_fixture {
        assert!(
            Instant::now() < deadline,
            "not applied within 20 s: {:?}",
            metrics_counts(&metrics)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // More changes while it follows: applied as they come too.
    let (key, value) = users_fixture(11)[8].clone();
    let value = value.unwrap();
    produce_users_fixture(&ctx, &topic, 0, &[(key.as_str(), value.as_str())]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while metrics_counts(&metrics).0 < events_in_fixture + 1 {
        assert!(Instant::now() < deadline, "{:?}", metrics_counts(&metrics));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(metrics_counts(&metrics).1 >= 2, "one batch per arrival");
    stop(loader);

    // `--linger 30s`: the same messages wait (up to the flush interval) for more.
    let (loader, metrics) = follow("lingering", "30s");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(metrics_counts(&metrics), (0, 0), "nothing applied yet");
    // A stop flushes what was read.
    stop(loader);
    assert_eq!(metrics_counts(&metrics).0, events_in_fixture + 1);
}
