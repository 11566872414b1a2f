//! `cdcctl health` against the real stack: all ok on a loaded pipeline; a paused connector, an
//! orphaned slot and a loader that fell behind each give the right row and exit code; Kafka
//! Connect down exits 3.

use std::time::{Duration, Instant};

use cdcctl::error::{EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE};

use crate::load::{DEMO, cdcctl_ok, demo_pipeline, load_until_equal, wait_for_topic};
use crate::support::{TestContext, free_port};

/// Runs `cdcctl health -o json ARGS`; returns the exit code and the report.
fn health(ctx: &TestContext, args: &[&str]) -> (u8, serde_json::Value) {
    let out = ctx
        .cdcctl()
        .env("CDCCTL_CONNECT_CONNECTOR", &ctx.connector)
        .args(["health", "-o", "json"])
        .args(args)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "health {args:?} printed no report ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1) as u8, report)
}

/// The row of `check` (its name starts with it).
fn row<'a>(report: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"].as_str().unwrap().starts_with(check))
        .unwrap_or_else(|| panic!("no `{check}` row in {report}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn health_of_a_pipeline_and_what_breaks_it() {
    let ctx = TestContext::new("health").await;
    demo_pipeline(&ctx, "50", "100").await;
    for table in DEMO {
        wait_for_topic(&ctx, table).await;
    }
    load_until_equal(&ctx, &[], &ctx.duckdb_path, "true").await;

    // Everything loaded: all ok (the connector may still stream a little: lag stays under 10k).
    let (code, report) = health(&ctx, &[]);
    let not_ok: Vec<&serde_json::Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "ok")
        .collect();
    assert!(not_ok.is_empty(), "{not_ok:#?}");
    assert_eq!(code, EXIT_OK);
    assert_eq!(report["status"], "ok");
    for check in [
        "reachable",
        "wal_level",
        "slot ",
        "change topics",
        "lag of group",
    ] {
        assert_eq!(row(&report, check)["status"], "ok", "{check}: {report:#}");
    }
    assert_eq!(
        row(&report, &format!("connector {}", ctx.connector))["value"],
        "RUNNING"
    );
    assert_eq!(row(&report, "task 0")["status"], "ok");
    for table in DEMO {
        assert_eq!(
            row(&report, &format!("freshness {table}"))["status"],
            "ok",
            "{report:#}"
        );
    }

    // A publication that stops publishing a captured table fails, naming it.
    let publication = row(&report, "publication ")["check"]
        .as_str()
        .unwrap()
        .trim_start_matches("publication ")
        .to_string();
    assert_eq!(row(&report, "publication ")["status"], "ok");
    let pg = ctx.pg().await;
    let alter = |verb: &str| {
        format!("ALTER PUBLICATION \"{publication}\" {verb} TABLE \"commerce\".\"products\"")
    };
    pg.batch_execute(&alter("DROP")).await.unwrap();
    let (code, broken) = health(&ctx, &[]);
    let p = row(&broken, "publication ");
    assert_eq!(p["status"], "fail", "{broken:#}");
    assert!(
        p["value"].as_str().unwrap().contains("commerce.products"),
        "{p}"
    );
    assert_eq!(code, EXIT_FAILED);
    pg.batch_execute(&alter("ADD")).await.unwrap();

    // Thresholds come from the profile or the environment too.
    let out = ctx
        .cdcctl()
        .env("CDCCTL_CONNECT_CONNECTOR", &ctx.connector)
        .env("CDCCTL_HEALTH_FRESHNESS_WARN", "0s")
        .args(["health", "-o", "json"])
        .output()
        .unwrap();
    let stale: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        row(&stale, "freshness public.users")["status"],
        "warn",
        "{stale:#}"
    );
    assert_eq!(out.status.code(), Some(0), "warnings exit 0");

    // An orphaned slot: a warning (exit 0), failing with --strict.
    let orphan = format!("{}_orphan", ctx.slot);
    pg.query_one(
        "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
        &[&orphan],
    )
    .await
    .unwrap();
    let (code, report) = health(&ctx, &[]);
    assert_eq!(code, EXIT_OK, "{report:#}");
    let orphaned = row(&report, &format!("orphaned slot {orphan}"));
    assert_eq!(orphaned["status"], "warn", "{report:#}");
    assert!(
        orphaned["hint"]
            .as_str()
            .unwrap()
            .contains("pg_drop_replication_slot")
    );
    let (code, _) = health(&ctx, &["--strict"]);
    assert_eq!(code, EXIT_FAILED);
    pg.query_one("SELECT pg_drop_replication_slot($1)", &[&orphan])
        .await
        .unwrap();

    // The loader stopped while changes keep coming: the lag grows past the threshold.
    cdcctl_ok(&ctx, &["generate-data", "--events", "200", "--seed", "11"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, report) = health(&ctx, &["--lag-warn", "1", "--lag-fail", "50"]);
        let lag = row(&report, "lag of group");
        if lag["status"] == "fail" {
            assert_eq!(code, EXIT_FAILED, "{report:#}");
            assert!(lag["hint"].as_str().unwrap().contains("cdcctl load"));
            break;
        }
        assert!(Instant::now() < deadline, "the lag never grew: {report:#}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // A paused connector fails, with the command that resumes it.
    cdcctl_ok(&ctx, &["connector", "pause", &ctx.connector]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, report) = health(&ctx, &[]);
        let connector = row(&report, &format!("connector {}", ctx.connector));
        if connector["value"] == "PAUSED" {
            assert_eq!(connector["status"], "fail");
            assert!(
                connector["hint"]
                    .as_str()
                    .unwrap()
                    .contains("connector resume")
            );
            assert_eq!(code, EXIT_FAILED);
            break;
        }
        assert!(Instant::now() < deadline, "never paused: {report:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cdcctl_ok(&ctx, &["connector", "resume", &ctx.connector]);

    // --watch: a report per interval as JSON lines; Ctrl-C ends it with the last report's code.
    let mut watch = ctx
        .command()
        .env("CDCCTL_CONNECT_CONNECTOR", &ctx.connector)
        .args(["-o", "json", "health", "--watch", "1s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take(2)
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    assert_eq!(lines.len(), 2);
    // SAFETY: kill(2) on the PID of the child this test started.
    unsafe { libc::kill(watch.id() as i32, libc::SIGINT) };
    let status = watch.wait().unwrap();
    let last: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(last["type"], "health");
    let want = if last["data"]["status"] == "fail" {
        EXIT_FAILED
    } else {
        EXIT_OK
    };
    assert_eq!(status.code(), Some(i32::from(want)), "{last}");

    // A failed task (its config names a publication that does not exist, which Connect's
    // validation does not check): the task row fails with the first line of its trace.
    let connect = ctx.connect();
    let mut config = connect.config(&ctx.connector).await.unwrap();
    let good = config.clone();
    config.insert("publication.name".into(), "no_such_publication".into());
    config.insert("publication.autocreate.mode".into(), "disabled".into());
    connect.put_config(&ctx.connector, &config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, report) = health(&ctx, &[]);
        let task = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "task 0" && c["status"] == "fail");
        if let Some(task) = task {
            assert!(
                task["value"].as_str().unwrap().starts_with("FAILED: "),
                "{task}"
            );
            assert!(
                task["hint"].as_str().unwrap().contains("connector restart"),
                "{task}"
            );
            assert_eq!(code, EXIT_FAILED);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the task never failed: {report:#}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    connect.put_config(&ctx.connector, &good).await.unwrap();

    // Kafka Connect down: exit 3, the report still printed.
    let url = format!("http://127.0.0.1:{}", free_port());
    let (code, report) = health(&ctx, &["--connect-url", &url]);
    assert_eq!(code, EXIT_UNREACHABLE, "{report:#}");
    assert_eq!(row(&report, "reachable")["status"], "fail");
}
