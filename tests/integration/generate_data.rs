//! `cdcctl generate-data` against real Postgres: exact row counts, the change mix as Postgres
//! counts it, determinism across databases, type-driven rows for custom tables, TOAST-sized text,
//! usage errors, and Ctrl-C.

use std::process::Stdio;
use std::time::{Duration, Instant};

use cdcctl::error::{EXIT_OK, EXIT_USAGE};
use serde_json::Value;

use crate::support::{TestContext, TestDir};

/// Creates the demo schema by running its DDL directly (no dependency on `setup-source`).
async fn demo_schema(pg: &tokio_postgres::Client) {
    for stmt in cdcctl::demo::DDL {
        pg.batch_execute(stmt).await.expect("demo DDL");
    }
}

/// Runs `generate-data` with JSON output, checks the exit code, returns the report.
fn generate(ctx: &TestContext, args: &[&str], code: u8) -> (Value, String) {
    let out = ctx
        .cdcctl()
        .args(["-o", "json", "generate-data"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(code as i32),
        "stdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        stderr,
    )
}

/// (inserted, updated, deleted) of a table in the report.
fn counts(report: &Value, table: &str) -> (i64, i64, i64) {
    let t = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("no {table} in {report}"));
    let n = |k: &str| t[k].as_i64().unwrap();
    (n("inserted"), n("updated"), n("deleted"))
}

async fn count(pg: &tokio_postgres::Client, table: &str) -> i64 {
    pg.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// md5 of a table's rows in key order: equal digests, equal data.
async fn digest(pg: &tokio_postgres::Client, table: &str, key: &str) -> String {
    pg.query_one(
        &format!(
            "SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY {key}), '')) FROM {table} t"
        ),
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

const DEMO: [&str; 4] = [
    "public.users",
    "public.credit_card_transactions",
    "commerce.users",
    "commerce.products",
];

#[tokio::test(flavor = "multi_thread")]
async fn rows_fill_every_demo_table_with_realistic_values() {
    let ctx = TestContext::new("gen_rows").await;
    let pg = ctx.pg().await;
    demo_schema(&pg).await;
    let (report, _) = generate(&ctx, &["--rows", "250", "--seed", "1"], EXIT_OK);
    for table in DEMO {
        assert_eq!(counts(&report, table), (250, 0, 0), "{table}");
        assert_eq!(count(&pg, table).await, 250, "{table}");
    }
    assert_eq!(report["bulk"]["rows"], 1000);
    assert_eq!(report["rows"], 1000);
    assert_eq!(report["seed"], 1);
    assert_eq!(report["interrupted"], false);

    // Realistic shapes, checked by Postgres itself.
    let bad: i64 = pg
        .query_one(
            r"SELECT count(*) FROM credit_card_transactions
              WHERE card_number_masked !~ '^\*{4} (\*{4} \*{4} |\*{6} \*)[0-9]{4}$'
                 OR (card_brand = 'Amex') <> (length(card_number_masked) = 17)
                 OR scale(amount) <> 2 OR amount <= 0
                 OR card_brand NOT IN ('Visa', 'Mastercard', 'Amex', 'Discover')
                 OR status NOT IN ('approved', 'pending', 'declined', 'refunded')
                 OR transaction_date < '2024-01-01' OR transaction_date >= '2026-01-02'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(bad, 0, "every transaction looks like one");
    let row = pg
        .query_one(
            r"SELECT count(*) FILTER (WHERE email !~ '^[a-z]+\.[a-z]+\.[0-9]+@[a-z.]*example\.(com|net|org)$'),
                     count(*) FILTER (WHERE updated_at < created_at),
                     count(DISTINCT name), count(*) FILTER (WHERE address IS NULL)
              FROM public.users",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        0,
        "emails are first.last.id@example.*"
    );
    assert_eq!(row.get::<_, i64>(1), 0, "updated_at follows created_at");
    assert!(row.get::<_, i64>(2) > 150, "varied names");
    assert!(
        row.get::<_, i64>(3) > 0,
        "nullable columns are sometimes NULL"
    );
    let spread: i64 = pg
        .query_one(
            "SELECT count(DISTINCT user_id) FROM credit_card_transactions",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(spread > 100, "transactions spread over the users: {spread}");
}

#[tokio::test(flavor = "multi_thread")]
async fn change_mix_shows_in_pg_stat_user_tables() {
    let ctx = TestContext::new("gen_mix").await;
    let pg = ctx.pg().await;
    demo_schema(&pg).await;
    let (report, _) = generate(
        &ctx,
        &[
            "--rows",
            "100",
            "--events",
            "600",
            "--mix",
            "insert=50,update=30,delete=20",
            "--tx-size",
            "5",
            "--seed",
            "3",
        ],
        EXIT_OK,
    );
    assert_eq!(report["changes"]["events"], 600);
    assert_eq!(report["changes"]["transactions"], 120);
    let (mut ins, mut upd, mut del) = (0, 0, 0);
    for table in DEMO {
        let (i, u, d) = counts(&report, table);
        assert_eq!(
            count(&pg, table).await,
            i - d,
            "{table}: rows = inserted - deleted"
        );
        (ins, upd, del) = (ins + i, upd + u, del + d);
    }
    // 600 events at 50/30/20: about 300 inserts (+400 bulk rows), 180 updates, 120 deletes
    // (plus the transactions deleted with their users).
    assert!((620..=780).contains(&ins), "inserted {ins}");
    assert!((120..=240).contains(&upd), "updated {upd}");
    assert!((80..=260).contains(&del), "deleted {del}");

    // Postgres' own counters agree once the statistics are flushed (asynchronously).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut same = true;
        let mut seen = Vec::new();
        for table in DEMO {
            let (schema, name) = table.split_once('.').unwrap();
            let row = pg
                .query_one(
                    "SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables \
                     WHERE schemaname = $1 AND relname = $2",
                    &[&schema, &name],
                )
                .await
                .unwrap();
            let stat = (
                row.get::<_, i64>(0),
                row.get::<_, i64>(1),
                row.get::<_, i64>(2),
            );
            same &= stat == counts(&report, table);
            seen.push((table, stat, counts(&report, table)));
        }
        if same {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pg_stat_user_tables (stat vs report): {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_seed_gives_the_same_data() {
    // Two batches per table, so the bulk load runs over several connections.
    let args = [
        "--rows",
        "60000",
        "--events",
        "300",
        "--tx-size",
        "3",
        "--seed",
        "42",
    ];
    let mut digests = Vec::new();
    for (name, seed) in [
        ("gen_seed_a", "42"),
        ("gen_seed_b", "42"),
        ("gen_seed_c", "43"),
    ] {
        let ctx = TestContext::new(name).await;
        let pg = ctx.pg().await;
        demo_schema(&pg).await;
        let mut args = args.to_vec();
        *args.last_mut().unwrap() = seed;
        let (report, _) = generate(
            &ctx,
            &[&["--table", "users,credit_card_transactions"], &args[..]].concat(),
            EXIT_OK,
        );
        assert!(report["bulk"]["connections"].as_i64().unwrap() >= 1);
        assert_eq!(report["bulk"]["rows"], 120_000);
        digests.push((
            digest(&pg, "public.users", "id").await,
            digest(&pg, "public.credit_card_transactions", "id").await,
        ));
    }
    assert_eq!(digests[0], digests[1], "seed 42 twice");
    assert_ne!(digests[0].0, digests[2].0, "seed 43 differs");
    assert_ne!(digests[0].1, digests[2].1, "seed 43 differs");
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_tables_follow_their_column_types() {
    let ctx = TestContext::new("gen_custom").await;
    let pg = ctx.pg().await;
    pg.batch_execute(
        r#"
        CREATE SCHEMA lab;
        CREATE TYPE lab.mood AS ENUM ('calm', 'curious', 'it''s "odd"');
        CREATE DOMAIN lab.short_code AS varchar(6);
        CREATE TABLE lab.samples (
            id uuid PRIMARY KEY,
            score numeric(5,2) NOT NULL,
            label varchar(10) NOT NULL,
            mood lab.mood NOT NULL,
            counts int[] NOT NULL,
            doc jsonb NOT NULL,
            seen_at timestamptz NOT NULL,
            code lab.short_code,
            serial_no bigserial,
            score_x2 numeric GENERATED ALWAYS AS (score * 2) STORED,
            shape point
        );
        CREATE TABLE lab."Readings" (
            id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            sample_id uuid NOT NULL REFERENCES lab.samples (id),
            value float8,
            taken_on date NOT NULL,
            note text
        );
        "#,
    )
    .await
    .unwrap();
    let (report, _) = generate(
        &ctx,
        &[
            "--table",
            r#"lab."Readings""#,
            "--table",
            "lab.samples",
            "--rows",
            "300",
            "--events",
            "300",
            "--mix",
            "insert=40,update=30,delete=30",
            "--seed",
            "5",
        ],
        EXIT_OK,
    );
    // Parents first, whatever the order on the command line.
    assert_eq!(report["tables"][0]["table"], "lab.samples");
    let (si, _, sd) = counts(&report, "lab.samples");
    let (ri, ru, rd) = counts(&report, "lab.Readings");
    assert_eq!(count(&pg, "lab.samples").await, si - sd);
    assert_eq!(count(&pg, r#"lab."Readings""#).await, ri - rd);
    assert!(ru > 0 && rd > 0 && sd > 0);

    let row = pg
        .query_one(
            "SELECT max(length(label)), min(scale(score)), max(scale(score)), max(score), \
                    count(DISTINCT mood), count(*) FILTER (WHERE cardinality(counts) > 0), \
                    count(*) FILTER (WHERE jsonb_typeof(doc) <> 'object'), \
                    max(length(code)), count(*) FILTER (WHERE shape IS NOT NULL), \
                    count(*) FILTER (WHERE score_x2 <> score * 2), count(DISTINCT serial_no) \
             FROM lab.samples",
            &[],
        )
        .await
        .unwrap();
    let rows = count(&pg, "lab.samples").await;
    assert!(row.get::<_, i32>(0) <= 10, "varchar(10)");
    assert_eq!(
        (row.get::<_, i32>(1), row.get::<_, i32>(2)),
        (2, 2),
        "numeric(5,2) has two decimals"
    );
    assert!(row.get::<_, rust_decimal::Decimal>(3) < rust_decimal::Decimal::from(1000));
    assert_eq!(row.get::<_, i64>(4), 3, "every enum label appears");
    assert!(row.get::<_, i64>(5) > 0, "some arrays have elements");
    assert_eq!(row.get::<_, i64>(6), 0, "jsonb objects");
    assert!(
        row.get::<_, Option<i32>>(7).unwrap_or(0) <= 6,
        "domain over varchar(6)"
    );
    assert_eq!(
        row.get::<_, i64>(8),
        0,
        "unsupported nullable types stay NULL"
    );
    assert_eq!(row.get::<_, i64>(9), 0, "generated columns are Postgres'");
    assert_eq!(
        row.get::<_, i64>(10),
        rows,
        "serial columns filled by Postgres"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn large_text_goes_to_toast() {
    let ctx = TestContext::new("gen_toast").await;
    let pg = ctx.pg().await;
    demo_schema(&pg).await;
    let (report, stderr) = generate(
        &ctx,
        &[
            "--table",
            "users,credit_card_transactions",
            "--rows",
            "30",
            "--events",
            "30",
            "--large-text",
        ],
        EXIT_OK,
    );
    assert_eq!(
        report["large_text_columns"],
        serde_json::json!([
            "public.users.address",
            "public.credit_card_transactions.notes"
        ])
    );
    assert!(
        stderr.is_empty(),
        "no warning: both tables have a text column"
    );
    let row = pg
        .query_one(
            "SELECT min(octet_length(notes)), min(pg_column_size(notes)), \
                    pg_relation_size(reltoastrelid) \
             FROM credit_card_transactions, pg_class \
             WHERE pg_class.oid = 'credit_card_transactions'::regclass \
             GROUP BY reltoastrelid",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, i32>(0) > 8 * 1024, "values over 8 KB");
    assert!(row.get::<_, i32>(1) > 4 * 1024, "barely compressed");
    assert!(row.get::<_, i64>(2) > 0, "stored in the TOAST table");
}

#[test]
fn bad_mix_and_rate_exit_2() {
    let dir = TestDir::new("gen_bad_mix");
    for (args, says) in [
        (
            &["--events", "5", "--mix", "insert=abc"][..],
            "whole number",
        ),
        (
            &["--events", "5", "--mix", "upsert=1"][..],
            "unknown operation `upsert`",
        ),
        (
            &["--events", "5", "--mix", "insert=0"][..],
            "at least one weight",
        ),
        (&["--events", "5", "--rate=-2"][..], "number >= 0"),
        (&["--duration", "0s"][..], "positive"),
        (
            &["--events", "5", "--duration", "5s"][..],
            "cannot be used with",
        ),
        (&[][..], "required"),
    ] {
        let out = dir
            .cdcctl()
            .arg("generate-data")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(EXIT_USAGE as i32), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_demo_tables_exit_2_with_the_setup_hint() {
    let ctx = TestContext::new("gen_no_demo").await;
    let out = ctx
        .cdcctl()
        .args(["generate-data", "--rows", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE as i32));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the demo tables are missing: public.users"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: run `cdcctl setup-source --demo` first"),
        "{stderr}"
    );
    let (_, stderr) = generate(&ctx, &["--rows", "10"], EXIT_USAGE);
    let err: Value = serde_json::from_str(&stderr).unwrap();
    assert!(
        err["hint"]
            .as_str()
            .unwrap()
            .contains("cdcctl setup-source --demo")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_without_primary_key_or_unknown_tables_exit_2() {
    let ctx = TestContext::new("gen_no_pk").await;
    let pg = ctx.pg().await;
    pg.batch_execute("CREATE TABLE loose (x int)")
        .await
        .unwrap();
    let (_, stderr) = generate(&ctx, &["--table", "loose", "--rows", "5"], EXIT_USAGE);
    assert!(
        stderr.contains("`public.loose` has no primary key"),
        "{stderr}"
    );
    let (_, stderr) = generate(&ctx, &["--table", "nowhere", "--rows", "5"], EXIT_USAGE);
    assert!(
        stderr.contains("table `nowhere` does not exist"),
        "{stderr}"
    );
    assert_eq!(count(&pg, "loose").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_after_the_current_transaction_and_reports_it() {
    let ctx = TestContext::new("gen_ctrl_c").await;
    let pg = ctx.pg().await;
    demo_schema(&pg).await;
    // A plain child process (assert_cmd only runs to completion), set up like `ctx.cdcctl()`.
    let child = ctx
        .command()
        .args([
            "-o",
            "json",
            "generate-data",
            "--rows",
            "50",
            "--duration",
            "60s",
            "--rate",
            "100",
            "--tx-size",
            "4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until changes are being committed, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&pg, "public.users").await
        + count(&pg, "commerce.products").await
        + count(&pg, "commerce.users").await
        <= 150 + 10
    {
        assert!(Instant::now() < deadline, "no changes committed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped promptly"
    );
    assert_eq!(
        out.status.code(),
        Some(EXIT_OK as i32),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["interrupted"], true);
    assert!(report["changes"]["events"].as_i64().unwrap() > 0);
    for table in DEMO {
        let (i, _, d) = counts(&report, table);
        assert_eq!(
            count(&pg, table).await,
            i - d,
            "{table}: the report is what was committed"
        );
    }
}
