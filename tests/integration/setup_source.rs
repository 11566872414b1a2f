//! `cdcctl setup-source` against real Postgres: idempotent actions, dry run, teardown, awkward
//! names, and a cluster whose wal_level is not logical.

use cdcctl::error::{EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE};
use serde_json::Value;

use crate::support::{PrivateCluster, TestContext, TestDir};

/// Runs the command, checks the exit code, and parses the JSON report.
fn run_json(cmd: &mut assert_cmd::Command, args: &[&str], code: u8) -> Value {
    let out = cmd
        .args(["-o", "json", "setup-source"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(code as i32),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn statuses(report: &Value) -> Vec<(String, String)> {
    report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_string(),
                a["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report}"))
}

async fn catalog(pg: &tokio_postgres::Client, slot: &str) -> String {
    let rows = pg
        .query(
            "SELECT 'pub ' || pubname FROM pg_publication \
             UNION ALL SELECT 'pubtable ' || pubname || ' ' || schemaname || '.' || tablename FROM pg_publication_tables \
             UNION ALL SELECT 'slot ' || slot_name FROM pg_replication_slots WHERE slot_name = $1 \
             UNION ALL SELECT 'table ' || n.nspname || '.' || c.relname || ' ' || c.relreplident::text \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             ORDER BY 1",
            &[&slot],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_setup_twice_second_run_is_all_unchanged() {
    let ctx = TestContext::new("setup_twice").await;
    let args = [
        "--demo",
        "--slot",
        &ctx.slot,
        "--publication",
        "pub_twice",
        "--replica-identity",
        "full",
    ];
    let first = run_json(&mut ctx.cdcctl(), &args, EXIT_OK);
    assert_eq!(
        statuses(&first),
        [
            ("demo schema", "created"),
            ("replica identity", "changed"),
            ("replica identity", "changed"),
            ("replica identity", "changed"),
            ("replica identity", "changed"),
            ("publication", "created"),
            ("slot", "created"),
        ]
        .map(|(a, s)| (a.to_string(), s.to_string()))
    );
    let second = run_json(&mut ctx.cdcctl(), &args, EXIT_OK);
    for (action, status) in statuses(&second) {
        assert_eq!(status, "unchanged", "{action} on the second run");
    }

    let pg = ctx.pg().await;
    let state = catalog(&pg, &ctx.slot).await;
    for line in [
        "pubtable pub_twice public.users",
        "pubtable pub_twice public.credit_card_transactions",
        "pubtable pub_twice commerce.users",
        "pubtable pub_twice commerce.products",
        "table public.users f",
        "table commerce.products f",
    ] {
        assert!(state.contains(line), "missing `{line}` in\n{state}");
    }
    let slot = pg
        .query_one(
            "SELECT plugin::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&ctx.slot],
        )
        .await
        .unwrap();
    assert_eq!(slot.get::<_, String>(0), "pgoutput");

    // A table the publication lacks is added; tables it has but that were not asked for stay.
    pg.batch_execute("CREATE TABLE extra (id int PRIMARY KEY)")
        .await
        .unwrap();
    let third = run_json(
        &mut ctx.cdcctl(),
        &["--tables", "extra", "--publication", "pub_twice"],
        EXIT_OK,
    );
    let publication = third["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "publication")
        .unwrap();
    assert_eq!(publication["status"], "extended");
    assert!(
        publication["detail"].as_str().unwrap().contains("(kept)"),
        "{publication}"
    );
    assert!(
        catalog(&pg, &ctx.slot)
            .await
            .contains("pubtable pub_twice public.users")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_sql_and_changes_nothing() {
    let ctx = TestContext::new("setup_dry_run").await;
    let pg = ctx.pg().await;
    pg.batch_execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
        .await
        .unwrap();
    let before = catalog(&pg, &ctx.slot).await;
    let out = ctx
        .cdcctl()
        .args([
            "setup-source",
            "--demo",
            "--tables",
            "orders",
            "--slot",
            &ctx.slot,
        ])
        .args(["--replica-identity", "full", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(EXIT_OK as i32),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for sql in [
        "CREATE TABLE IF NOT EXISTS \"public\".\"users\"",
        "ALTER TABLE \"public\".\"orders\" REPLICA IDENTITY FULL;",
        "CREATE PUBLICATION \"cdcctl_publication\" FOR TABLE",
        &format!(
            "SELECT pg_create_logical_replication_slot('{}', 'pgoutput');",
            ctx.slot
        ),
    ] {
        assert!(text.contains(sql), "dry run lacks `{sql}`:\n{text}");
    }
    assert_eq!(
        catalog(&pg, &ctx.slot).await,
        before,
        "--dry-run changed the catalog"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn teardown_drops_slot_and_publication_and_reports_retained_wal() {
    let ctx = TestContext::new("setup_teardown").await;
    run_json(&mut ctx.cdcctl(), &["--demo", "--slot", &ctx.slot], EXIT_OK);
    let pg = ctx.pg().await;
    // Make the slot retain some WAL.
    pg.batch_execute("INSERT INTO users (name, email) SELECT 'n' || g, 'e' || g || '@x' FROM generate_series(1, 2000) g")
        .await
        .unwrap();

    // Without a terminal and without --yes, teardown refuses (exit 2) and keeps everything.
    let out = ctx
        .cdcctl()
        .args(["setup-source", "--teardown", "--slot", &ctx.slot])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE as i32));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert!(
        catalog(&pg, &ctx.slot)
            .await
            .contains(&format!("slot {}", ctx.slot))
    );

    let report = run_json(
        &mut ctx.cdcctl(),
        &["--teardown", "--yes", "--slot", &ctx.slot],
        EXIT_OK,
    );
    assert_eq!(
        statuses(&report),
        [("slot", "dropped"), ("publication", "dropped")]
            .map(|(a, s)| (a.to_string(), s.to_string()))
    );
    let detail = report["actions"][0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("was retaining ") && detail.ends_with(" of WAL"),
        "{detail}"
    );
    let state = catalog(&pg, &ctx.slot).await;
    assert!(
        !state.contains("slot ") && !state.contains("pub "),
        "{state}"
    );

    let again = run_json(
        &mut ctx.cdcctl(),
        &["--teardown", "--yes", "--slot", &ctx.slot],
        EXIT_OK,
    );
    assert_eq!(
        statuses(&again),
        [("slot", "absent"), ("publication", "absent")]
            .map(|(a, s)| (a.to_string(), s.to_string()))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn awkward_table_names_and_missing_primary_keys() {
    let ctx = TestContext::new("setup_names").await;
    let pg = ctx.pg().await;
    pg.batch_execute(
        "CREATE SCHEMA \"Sales Dept\"; \
         CREATE TABLE \"Sales Dept\".\"My \"\"Odd\"\" Table\" (id int PRIMARY KEY); \
         CREATE TABLE \"MixedCase\" (id int PRIMARY KEY); \
         CREATE TABLE nopk (a int)",
    )
    .await
    .unwrap();
    let report = run_json(
        &mut ctx.cdcctl(),
        &[
            "--tables",
            "\"Sales Dept\".\"My \"\"Odd\"\" Table\",\"MixedCase\",NOPK",
        ],
        EXIT_OK,
    );
    assert_eq!(
        report["tables"],
        serde_json::json!([
            "Sales Dept.My \"Odd\" Table",
            "public.MixedCase",
            "public.nopk"
        ])
    );
    assert_eq!(check(&report, "primary key public.nopk")["status"], "warn");
    assert!(
        check(&report, "replica identity public.nopk")["fix"]
            .as_str()
            .unwrap()
            .contains("--replica-identity full")
    );
    let state = catalog(&pg, "-").await;
    assert!(
        state.contains("pubtable cdcctl_publication Sales Dept.My \"Odd\" Table"),
        "{state}"
    );
    assert!(
        state.contains("pubtable cdcctl_publication public.MixedCase"),
        "{state}"
    );

    let out = ctx
        .cdcctl()
        .args(["setup-source", "--tables", "no_such_table"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE as i32));
    assert!(String::from_utf8_lossy(&out.stderr).contains("table `no_such_table` does not exist"));
}

#[test]
fn without_terminal_tables_are_required_and_dead_server_is_exit_3() {
    let dir = TestDir::new("setup_usage");
    let out = dir
        .cdcctl()
        .arg("setup-source")
        .env(
            "CDCCTL_POSTGRES_URL",
            crate::support::Stack::get().postgres_url("app"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE as i32));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("pass `--tables LIST`, `--schemas LIST` or `--demo`")
    );

    let port = crate::support::free_port();
    let out = dir
        .cdcctl()
        .args(["setup-source", "--demo"])
        .env(
            "CDCCTL_POSTGRES_URL",
            format!("postgres://cdc:secret-pw@127.0.0.1:{port}/app"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_UNREACHABLE as i32));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PostgreSQL is unreachable") && !err.contains("secret-pw"),
        "{err}"
    );
}

#[test]
fn wal_level_replica_fails_with_the_fix_and_apply_system_repairs_it() {
    let cluster = PrivateCluster::start("setup_wal", &["wal_level=replica"]);
    let dir = TestDir::new("setup_wal");
    let cmd = || {
        let mut c = dir.cdcctl();
        c.env("CDCCTL_POSTGRES_URL", cluster.url());
        c
    };
    let report = run_json(&mut cmd(), &["--demo"], EXIT_FAILED);
    let wal = check(&report, "wal_level");
    assert_eq!(wal["status"], "fail");
    assert!(
        wal["fix"].as_str().unwrap().contains("--apply-system"),
        "{wal}"
    );
    assert!(statuses(&report).contains(&("publication".into(), "skipped".into())));

    let report = run_json(&mut cmd(), &["--demo", "--apply-system"], EXIT_FAILED);
    assert_eq!(report["restart_required"], true);
    let system = report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "system settings")
        .unwrap();
    assert_eq!(system["status"], "changed");
    assert!(
        system["sql"][0]
            .as_str()
            .unwrap()
            .contains("wal_level = 'logical'")
    );

    cluster.restart();
    let report = run_json(&mut cmd(), &["--demo", "--slot", "after_restart"], EXIT_OK);
    assert_eq!(check(&report, "wal_level")["status"], "ok");
    assert!(statuses(&report).contains(&("slot".into(), "created".into())));
}
