//! `cdcctl scd2`. First on hand-written changes tables in DuckDB (no services): every rule of
//! the history — no-op changes, same-instant changes, delete and re-insert, late changes,
//! truncates, `--keep-deleted`, `--as-of`, `--check` — with exact expected rows. Then the real
//! pipeline: generate-data → Debezium → `load --history` → `scd2`, compared with a change log
//! Postgres keeps by trigger, in DuckDB and in Snowflake (fakesnow).

use std::path::Path;

use cdcctl::error::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};

use crate::support::TestDir;

/// One hand-written change: (seq, op, id, name, commit time in seconds, lsn).
type Change = (i64, &'static str, i64, Option<&'static str>, i64, i64);

fn write_changes(path: &Path, changes: &[Change]) {
    let conn = duckdb::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE SCHEMA IF NOT EXISTS public;
         CREATE TABLE IF NOT EXISTS public.people__changes (id BIGINT, name VARCHAR,
           _cdc_operation VARCHAR, _cdc_timestamp TIMESTAMPTZ, _cdc_source_lsn BIGINT,
           _cdc_processed_at TIMESTAMPTZ, _cdc_seq BIGINT)",
    )
    .unwrap();
    for &(seq, op, id, name, at, lsn) in changes {
        let id = (op != "t").then_some(id);
        conn.execute(
            "INSERT INTO public.people__changes VALUES (?, ?, ?, CAST(to_timestamp(?) AS \
             TIMESTAMPTZ), ?, CAST(to_timestamp(0) AS TIMESTAMPTZ), ?)",
            duckdb::params![id, name, op, at, lsn, seq],
        )
        .unwrap();
    }
}

/// The history as (id, version, name, valid_from s, valid_to s, is_current, is_deleted).
type Version = (i64, i64, Option<String>, i64, Option<i64>, bool, bool);

fn history(path: &Path) -> Vec<Version> {
    let conn = duckdb::Connection::open(path).unwrap();
    let mut statement = conn
        .prepare(
            "SELECT id, version, name, epoch_us(valid_from) // 1000000, epoch_us(valid_to) // 1000000, \
             is_current, is_deleted FROM public.people_history ORDER BY id, version",
        )
        .unwrap();
    statement
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn v(id: i64, version: i64, name: &str, from: i64, to: Option<i64>, deleted: bool) -> Version {
    (
        id,
        version,
        Some(name.to_owned()),
        from,
        to,
        to.is_none(),
        deleted,
    )
}

fn scd2(dir: &TestDir, db: &Path, args: &[&str]) -> (u8, serde_json::Value, String) {
    let out = dir
        .cdcctl()
        .args(["scd2", "-o", "json", "--duckdb"])
        .arg(db)
        .args(["--table", "people"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1) as u8, report, stderr)
}

fn ok(dir: &TestDir, db: &Path, args: &[&str]) -> serde_json::Value {
    let (code, report, stderr) = scd2(dir, db, args);
    assert_eq!(code, EXIT_OK, "scd2 {args:?}: {stderr}\n{report:#}");
    report
}

fn as_of(dir: &TestDir, db: &Path, at: i64) -> Vec<(String, Option<String>)> {
    let at = chrono::DateTime::from_timestamp(at, 0)
        .unwrap()
        .to_rfc3339();
    let report = ok(dir, db, &["--as-of", &at]);
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["name"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[test]
fn versions_follow_the_rules_incrementally_and_late_changes_land_in_place() {
    let dir = TestDir::new("scd2_rules");
    let db = dir.path().join("w.duckdb");
    write_changes(
        &db,
        &[
            // id 1: insert, a no-op update, a change, a delete, a re-insert of the same values.
            (1, "c", 1, Some("A"), 1000, 10),
            (2, "u", 1, Some("A"), 2000, 20),
            (3, "u", 1, Some("B"), 3000, 30),
            (4, "d", 1, None, 4000, 40),
            (5, "c", 1, Some("B"), 5000, 50),
            // id 2: two updates committed at the same instant: only the last was ever visible.
            (6, "r", 2, Some("W"), 5500, 55),
            (7, "u", 2, Some("X"), 6000, 60),
            (8, "u", 2, Some("Y"), 6000, 61),
        ],
    );
    // The first run needs the key.
    let (code, _, stderr) = scd2(&dir, &db, &[]);
    assert_eq!(code, EXIT_USAGE, "{stderr}");
    assert!(stderr.contains("--key"), "{stderr}");

    let report = ok(&dir, &db, &["--key", "id"]);
    assert_eq!(report["changes_read"], 8, "{report:#}");
    assert_eq!(report["inserted"], 5, "{report:#}");
    assert_eq!(report["tracked"], serde_json::json!(["name"]));
    let first = vec![
        v(1, 1, "A", 1000, Some(3000), false),
        v(1, 2, "B", 3000, Some(4000), true),
        v(1, 3, "B", 5000, None, false),
        v(2, 1, "W", 5500, Some(6000), false),
        v(2, 2, "Y", 6000, None, false),
    ];
    assert_eq!(history(&db), first);

    // Nothing new: nothing changes, the key is remembered.
    let again = ok(&dir, &db, &[]);
    assert_eq!(again["changes_read"], 0, "{again:#}");
    assert_eq!(history(&db), first);

    // A late change of id 1 (LSN 35, between versions 2 and the delete) and a new one of id 2.
    write_changes(
        &db,
        &[
            (9, "u", 1, Some("C"), 3500, 35),
            (10, "u", 2, Some("Z"), 6500, 65),
        ],
    );
    let late = ok(&dir, &db, &[]);
    assert_eq!(late["changes_read"], 2, "{late:#}");
    assert_eq!(late["keys"], 2, "{late:#}");
    assert_eq!(late["inserted"], 2, "{late:#}");
    // Closed: id 1 v2 (now ends at 3500, not deleted), id 1 v3 renumbered to v4, id 2 v2.
    assert_eq!(late["updated"], 3, "{late:#}");
    assert_eq!(late["removed"], 0, "{late:#}");
    assert_eq!(
        history(&db),
        vec![
            v(1, 1, "A", 1000, Some(3000), false),
            v(1, 2, "B", 3000, Some(3500), false),
            v(1, 3, "C", 3500, Some(4000), true),
            v(1, 4, "B", 5000, None, false),
            v(2, 1, "W", 5500, Some(6000), false),
            v(2, 2, "Y", 6000, Some(6500), false),
            v(2, 3, "Z", 6500, None, false),
        ]
    );
    let check = ok(&dir, &db, &["--check"]);
    assert_eq!(check["ok"], true, "{check:#}");

    // As of several instants: the rows valid then.
    let row = |id: &str, name: &str| (id.to_owned(), Some(name.to_owned()));
    assert_eq!(as_of(&dir, &db, 999), vec![]);
    assert_eq!(as_of(&dir, &db, 3000), vec![row("1", "B")]);
    assert_eq!(as_of(&dir, &db, 4200), vec![]);
    assert_eq!(as_of(&dir, &db, 6000), vec![row("1", "B"), row("2", "Y")]);

    // A truncate closes every current version.
    write_changes(&db, &[(11, "t", 0, None, 7000, 70)]);
    let truncated = ok(&dir, &db, &[]);
    assert_eq!(truncated["keys"], 2, "{truncated:#}");
    let after = history(&db);
    assert!(after.iter().all(|r| !r.5), "no current row: {after:?}");
    assert_eq!(after[3], v(1, 4, "B", 5000, Some(7000), true));
    assert_eq!(as_of(&dir, &db, 7001), vec![]);
    assert_eq!(ok(&dir, &db, &["--check"])["ok"], true);

    // Another delete mode needs --rebuild.
    let (code, _, stderr) = scd2(&dir, &db, &["--keep-deleted"]);
    assert_eq!(code, EXIT_USAGE, "{stderr}");
    assert!(stderr.contains("--rebuild"), "{stderr}");
    let rebuilt = ok(&dir, &db, &["--keep-deleted", "--rebuild"]);
    assert_eq!(rebuilt["rebuilt"], true);
    let kept = history(&db);
    let deleted_rows: Vec<&Version> = kept.iter().filter(|r| r.6).collect();
    assert_eq!(
        deleted_rows,
        vec![
            &v(1, 4, "C", 4000, Some(5000), true),
            &v(1, 6, "B", 7000, None, true),
            &v(2, 4, "Z", 7000, None, true),
        ],
        "{kept:?}"
    );
    // Deletion rows are not rows as of their time, and every rule holds.
    assert_eq!(as_of(&dir, &db, 4200), vec![]);
    assert_eq!(ok(&dir, &db, &["--check"])["ok"], true);

    // A damaged history is reported rule by rule, exit 1.
    let conn = duckdb::Connection::open(&db).unwrap();
    conn.execute_batch(
        "UPDATE public.people_history SET valid_to = CAST(to_timestamp(3200) AS TIMESTAMPTZ) \
         WHERE id = 1 AND version = 1;
         UPDATE public.people_history SET is_current = true WHERE id = 2 AND version = 1;",
    )
    .unwrap();
    drop(conn);
    let (code, report, stderr) = scd2(&dir, &db, &["--check"]);
    assert_eq!(code, EXIT_FAILED, "{stderr}");
    let rules: Vec<&str> = report["violations"]
        .as_array()
        .unwrap_or_else(|| panic!("no violations: {stderr}"))
        .iter()
        .map(|v| v["rule"].as_str().unwrap())
        .collect();
    for rule in ["overlap", "current_flag", "current"] {
        assert!(rules.contains(&rule), "{rule} not in {report:#}");
    }
}

#[test]
fn unknown_columns_and_a_missing_changes_table_are_explained() {
    let dir = TestDir::new("scd2_errors");
    let db = dir.path().join("w.duckdb");
    write_changes(&db, &[(1, "c", 1, Some("A"), 1000, 10)]);
    let (code, _, stderr) = scd2(&dir, &db, &["--key", "id", "--track", "nope"]);
    assert_eq!(code, EXIT_USAGE, "{stderr}");
    assert!(stderr.contains("no column `nope`"), "{stderr}");
    assert!(stderr.contains("id, name"), "{stderr}");
    let out = dir
        .cdcctl()
        .args(["scd2", "--duckdb"])
        .arg(&db)
        .args(["--table", "orders", "--key", "id"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_FAILED as i32));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("load --history"), "{stderr}");
}
