//! `cdcctl scd2`. First on hand-written changes tables in DuckDB (no services): every rule of
//! the history — no-op changes, same-instant changes, delete and re-insert, late changes,
//! truncates, `--keep-deleted`, `--as-of`, `--check` — with exact expected rows. Then the real
//! pipeline: generate-data → Debezium → `load --history` → `scd2`, compared with a change log
//! Postgres keeps by trigger, in DuckDB and in Snowflake (fakesnow).

use std::path::Path;

use cdcctl::error::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};

use std::collections::BTreeMap;

use crate::support::{TestContext, TestDir};

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
fn human_output_reads_like_a_report() {
    let dir = TestDir::new("scd2_text");
    let db = dir.path().join("w.duckdb");
    write_changes(
        &db,
        &[
            (1, "c", 1, Some("Ada"), 1000, 10),
            (2, "u", 1, Some("Ada L."), 2000, 20),
            (3, "c", 2, Some("Bo"), 2500, 25),
            (4, "d", 2, None, 3000, 30),
        ],
    );
    let text = |args: &[&str]| {
        let out = dir
            .cdcctl()
            .args(["scd2", "--duckdb"])
            .arg(&db)
            .args(["--table", "people"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let mut report = text(&["--key", "id"]);
    report.push_str(&text(&[]));
    report.push_str(&text(&["--as-of", "1970-01-01T00:41:40Z"]));
    report.push_str(&text(&["--check"]));
    let conn = duckdb::Connection::open(&db).unwrap();
    conn.execute_batch("UPDATE public.people_history SET version = 3 WHERE id = 2")
        .unwrap();
    drop(conn);
    report.push_str(&text(&["--check"]));
    insta::assert_snapshot!("scd2_text", report);
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

/// The tracked values of one version: (name, email, tier).
type Values = (Option<String>, Option<String>, Option<String>);

/// A version as the test compares it: values, is_deleted, is_current.
type Expected = (Values, bool, bool);

/// The source table, and a change log kept by trigger: one row per row change with the
/// transaction id, so the test knows every state each key went through without cdcctl.
const SOURCE: &str = "
CREATE TABLE people (id int PRIMARY KEY, name text, email text, tier text, notes text);
CREATE TABLE people_log (seq bigserial PRIMARY KEY, txid bigint NOT NULL DEFAULT txid_current(),
  op text NOT NULL, id int NOT NULL, name text, email text, tier text, notes_len int);
CREATE FUNCTION people_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO people_log (op, id) VALUES ('d', OLD.id);
  ELSE
    INSERT INTO people_log (op, id, name, email, tier, notes_len)
      VALUES ('u', NEW.id, NEW.name, NEW.email, NEW.tier, length(NEW.notes));
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER people_log AFTER INSERT OR UPDATE OR DELETE ON people
  FOR EACH ROW EXECUTE FUNCTION people_log();
";

/// Every key's versions from the change log: per transaction the key's last state; a state
/// that the key's next transaction replaced within the same commit millisecond was never
/// visible and is dropped (`commit_ms`: per key, the commit time of each change in order — the
/// one thing the trigger cannot know, taken from the changes table); a state with other values
/// than the one before starts a version; a delete ends one.
async fn expected_history(
    pg: &tokio_postgres::Client,
    commit_ms: &BTreeMap<i64, Vec<i64>>,
) -> BTreeMap<i64, Vec<Expected>> {
    let rows = pg
        .query(
            "SELECT txid, op, id, name, email, tier FROM people_log ORDER BY id, seq",
            &[],
        )
        .await
        .unwrap();
    // Per key: (txid, commit ms, state) with one state per transaction.
    let mut states: BTreeMap<i64, Vec<(i64, i64, Option<Values>)>> = BTreeMap::new();
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for r in rows {
        let (txid, op, id): (i64, String, i32) = (r.get(0), r.get(1), r.get(2));
        let id = i64::from(id);
        let n = seen.entry(id).or_default();
        let at = commit_ms[&id][*n];
        *n += 1;
        let state = (op == "u").then(|| (r.get(3), r.get(4), r.get(5)));
        let list = states.entry(id).or_default();
        match list.last_mut() {
            Some((t, _, s)) if *t == txid => *s = state,
            _ => list.push((txid, at, state)),
        }
    }
    let mut history = BTreeMap::new();
    for (id, mut list) in states {
        let next_at: Vec<Option<i64>> = (0..list.len())
            .map(|i| list.get(i + 1).map(|(_, at, _)| *at))
            .collect();
        let mut i = 0;
        list.retain(|(_, at, _)| {
            i += 1;
            next_at[i - 1] != Some(*at)
        });
        let list: Vec<(i64, Option<Values>)> = list.into_iter().map(|(t, _, s)| (t, s)).collect();
        let mut versions: Vec<Expected> = Vec::new();
        let mut live: Option<Values> = None;
        for (_, state) in list {
            match state {
                Some(values) if live.as_ref() != Some(&values) => {
                    if let Some(last) = versions.last_mut().filter(|_| live.is_some()) {
                        last.2 = false;
                    }
                    versions.push((values.clone(), false, true));
                    live = Some(values);
                }
                Some(_) => {}
                None => {
                    if let Some(last) = versions.last_mut().filter(|_| live.is_some()) {
                        last.1 = true;
                        last.2 = false;
                    }
                    live = None;
                }
            }
        }
        history.insert(id, versions);
    }
    history
}

/// The rows of a query on the test's warehouse, every column as text.
async fn warehouse_rows(ctx: &TestContext, snowflake: bool, sql: &str) -> Vec<Vec<Option<String>>> {
    if snowflake {
        use cdcctl::clients::snowflake::Retry;
        return ctx
            .snowflake()
            .query(sql, &[], Retry::Idempotent)
            .await
            .unwrap()
            .rows;
    }
    let conn = duckdb::Connection::open(&ctx.duckdb_path).unwrap();
    let mut statement = conn.prepare(sql).unwrap();
    let mut rows = statement.query([]).unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        let width = row.as_ref().column_count();
        out.push((0..width).map(|i| row.get(i).unwrap()).collect());
    }
    out
}

/// Per key, the commit time (ms) of each of its changes in the changes table, in LSN order.
async fn commit_times(ctx: &TestContext, snowflake: bool) -> BTreeMap<i64, Vec<i64>> {
    let ms = if snowflake {
        "DATE_PART(EPOCH_MILLISECOND, _cdc_timestamp)"
    } else {
        "epoch_us(_cdc_timestamp) // 1000"
    };
    let sql = format!(
        "SELECT CAST(id AS VARCHAR), CAST({ms} AS VARCHAR) FROM public.people__changes \
         ORDER BY id, _cdc_source_lsn"
    );
    let mut times: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for r in warehouse_rows(ctx, snowflake, &sql).await {
        let id: i64 = r[0].as_deref().unwrap().parse().unwrap();
        times
            .entry(id)
            .or_default()
            .push(r[1].as_deref().unwrap().parse().unwrap());
    }
    times
}

/// The history table as the test compares it, per key in version order.
async fn stored_history(ctx: &TestContext, snowflake: bool) -> BTreeMap<i64, Vec<Expected>> {
    let sql = "SELECT CAST(id AS VARCHAR), CAST(version AS VARCHAR), name, email, tier, \
               CAST(is_deleted AS VARCHAR), CAST(is_current AS VARCHAR) \
               FROM public.people_history ORDER BY id, version";
    let rows = warehouse_rows(ctx, snowflake, sql).await;
    let mut history: BTreeMap<i64, Vec<Expected>> = BTreeMap::new();
    let flag = |v: &Option<String>| v.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("true"));
    for r in rows {
        let id: i64 = r[0].as_deref().unwrap().parse().unwrap();
        let version: usize = r[1].as_deref().unwrap().parse().unwrap();
        let list = history.entry(id).or_default();
        assert_eq!(list.len() + 1, version, "versions of {id} are 1, 2, 3…");
        list.push((
            (r[2].clone(), r[3].clone(), r[4].clone()),
            flag(&r[5]),
            flag(&r[6]),
        ));
    }
    history
}

/// Per key, the length of `notes` after each insert or update, from the change log.
async fn logged_notes_lengths(pg: &tokio_postgres::Client) -> BTreeMap<i64, Vec<Option<i64>>> {
    let mut lengths: BTreeMap<i64, Vec<Option<i64>>> = BTreeMap::new();
    for r in pg
        .query(
            "SELECT id, notes_len FROM people_log WHERE op = 'u' ORDER BY id, seq",
            &[],
        )
        .await
        .unwrap()
    {
        let (id, len): (i32, Option<i32>) = (r.get(0), r.get(1));
        lengths
            .entry(i64::from(id))
            .or_default()
            .push(len.map(i64::from));
    }
    lengths
}

/// The same from the changes table.
async fn notes_lengths(ctx: &TestContext, snowflake: bool) -> BTreeMap<i64, Vec<Option<i64>>> {
    let sql = "SELECT CAST(id AS VARCHAR), CAST(LENGTH(notes) AS VARCHAR) FROM \
               public.people__changes WHERE _cdc_operation <> 'd' ORDER BY id, _cdc_source_lsn";
    let rows = warehouse_rows(ctx, snowflake, sql).await;
    let mut lengths: BTreeMap<i64, Vec<Option<i64>>> = BTreeMap::new();
    for r in rows {
        let id: i64 = r[0].as_deref().unwrap().parse().unwrap();
        lengths
            .entry(id)
            .or_default()
            .push(r[1].as_deref().map(|l| l.parse().unwrap()));
    }
    lengths
}

/// Asserts two histories are equal, naming only the keys that differ.
fn assert_same_history(
    stored: &BTreeMap<i64, Vec<Expected>>,
    expected: &BTreeMap<i64, Vec<Expected>>,
    what: &str,
) {
    let keys: std::collections::BTreeSet<&i64> = stored.keys().chain(expected.keys()).collect();
    let differing: Vec<String> = keys
        .into_iter()
        .filter(|k| stored.get(k) != expected.get(k))
        .map(|k| {
            format!(
                "key {k}:\n  stored   {:?}\n  expected {:?}",
                stored.get(k),
                expected.get(k)
            )
        })
        .collect();
    assert!(differing.is_empty(), "{what}:\n{}", differing.join("\n"));
}

/// The source table's rows (id, name, email, tier as text) and the Postgres clock, after a
/// pause so that the instant lies strictly between commits.
async fn source_state(pg: &tokio_postgres::Client) -> (Vec<Vec<Option<String>>>, String) {
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let rows = pg
        .query(
            "SELECT id::text, name, email, tier FROM people ORDER BY people.id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (0..4).map(|i| r.get(i)).collect())
        .collect();
    let at: String = pg
        .query_one(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    (rows, at)
}

/// `cdcctl scd2 --as-of` rows (id, name, email, tier).
fn as_of_rows(ctx: &TestContext, sink: &[&str], at: &str) -> Vec<Vec<Option<String>>> {
    let report = scd2_ok(ctx, sink, &["--as-of", at]);
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            ["id", "name", "email", "tier"]
                .iter()
                .map(|c| {
                    let v = r
                        .get(*c)
                        .or_else(|| r.get(c.to_uppercase().as_str()))
                        .unwrap_or_else(|| panic!("no {c} in {r}"));
                    v.as_str().map(str::to_owned)
                })
                .collect()
        })
        .collect()
}

fn scd2_ok(ctx: &TestContext, sink: &[&str], args: &[&str]) -> serde_json::Value {
    let out = ctx
        .cdcctl()
        .args(["scd2", "-o", "json", "--table", "people"])
        .args(sink)
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "scd2 {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Changes to `people` the generator does not make: two updates of one key in one
/// transaction, and a delete then a re-insert of the same key.
async fn hand_made_changes(pg: &tokio_postgres::Client, round: i32) {
    let id: i32 = pg
        .query_one("SELECT min(id) FROM people", &[])
        .await
        .unwrap()
        .get(0);
    pg.batch_execute(&format!(
        "BEGIN; UPDATE people SET tier = 'first-{round}' WHERE id = {id}; \
         UPDATE people SET tier = 'second-{round}' WHERE id = {id}; COMMIT;"
    ))
    .await
    .unwrap();
    let victim: i32 = pg
        .query_one("SELECT max(id) FROM people", &[])
        .await
        .unwrap()
        .get(0);
    pg.batch_execute(&format!(
        "CREATE TEMP TABLE kept AS SELECT * FROM people WHERE id = {victim}; \
         DELETE FROM people WHERE id = {victim};"
    ))
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    pg.batch_execute("INSERT INTO people SELECT * FROM kept; DROP TABLE kept;")
        .await
        .unwrap();
}

/// Rows of a warehouse table (0 when it does not exist yet).
async fn warehouse_count(ctx: &TestContext, snowflake: bool, table: &str) -> i64 {
    let sql = format!("SELECT CAST(COUNT(*) AS VARCHAR) FROM {table}");
    if snowflake {
        use cdcctl::clients::snowflake::Retry;
        // Not there yet: nothing loaded.
        if ctx
            .snowflake()
            .query(&sql, &[], Retry::Idempotent)
            .await
            .is_err()
        {
            return 0;
        }
    } else if duckdb::Connection::open(&ctx.duckdb_path)
        .and_then(|c| c.prepare(&sql).map(|_| ()))
        .is_err()
    {
        return 0;
    }
    let rows = warehouse_rows(ctx, snowflake, &sql).await;
    rows[0][0].as_deref().unwrap().parse().unwrap()
}

/// `load --history` until the changes table holds every change of the log.
async fn load_history(ctx: &TestContext, pg: &tokio_postgres::Client, sink: &[&str]) {
    let snowflake = sink.contains(&"snowflake");
    let want: i64 = pg
        .query_one("SELECT count(*) FROM people_log", &[])
        .await
        .unwrap()
        .get(0);
    let before = warehouse_count(ctx, snowflake, "public.people__changes").await;
    let mut recorded = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let out = ctx
            .cdcctl()
            .args(["-o", "json", "load", "--history", "--until-caught-up"])
            .args(sink)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "load: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        recorded += summary["changes_recorded"].as_i64().unwrap();
        assert_eq!(
            summary["dead_letters"], 0,
            "nothing dead-lettered: {summary:#}"
        );
        let have = warehouse_count(ctx, snowflake, "public.people__changes").await;
        if have >= want {
            assert_eq!(have, want, "the changes table has one row per change");
            let rows: i64 = pg
                .query_one("SELECT count(*) FROM people", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(
                warehouse_count(ctx, snowflake, "public.people").await,
                rows,
                "the target table has the source's rows"
            );
            assert_eq!(
                recorded,
                have - before,
                "the loader counts what it appended"
            );
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the changes table never held the {want} changes ({have})"
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The whole issue: generate-data (and hand-made changes) → Debezium → `load --history` →
/// `scd2`, twice; the history equals the change log, `--as-of` equals the recorded source
/// states, a run without changes changes nothing, a run after changes only adds and closes.
async fn history_follows_the_source(name: &str, sink: &[&str]) {
    let snowflake = sink.contains(&"snowflake");
    let ctx = TestContext::new(name).await;
    let pg = ctx.pg().await;
    pg.batch_execute(SOURCE).await.unwrap();
    ctx.create_connector(&["public.people"]).await;
    let (empty, t0) = source_state(&pg).await;
    assert!(empty.is_empty());

    let generate = |seed: &str, events: &str, large: &str| {
        crate::load::cdcctl_ok(
            &ctx,
            &[
                "generate-data",
                large,
                "--table",
                "people",
                "--events",
                events,
                "--rate",
                "150",
                "--tx-size",
                "1",
                "--mix",
                "insert=30,update=55,delete=15",
                "--seed",
                seed,
            ],
        );
    };
    crate::load::cdcctl_ok(
        &ctx,
        &[
            "generate-data",
            "--table",
            "people",
            "--rows",
            "25",
            "--seed",
            "1",
        ],
    );
    generate("2", "250", "-q");
    hand_made_changes(&pg, 1).await;
    let (state1, t1) = source_state(&pg).await;

    load_history(&ctx, &pg, sink).await;
    let first = scd2_ok(&ctx, sink, &["--key", "id", "--track", "name,email,tier"]);
    assert!(first["inserted"].as_i64().unwrap() > 25, "{first:#}");
    let expected = expected_history(&pg, &commit_times(&ctx, snowflake).await).await;
    let stored = stored_history(&ctx, snowflake).await;
    assert_same_history(&stored, &expected, "the history equals the change log");
    assert!(
        expected.values().any(|v| v.len() >= 3),
        "some key changed several times"
    );
    assert!(
        expected
            .values()
            .any(|v| v.iter().any(|(_, deleted, _)| *deleted)),
        "some key was deleted"
    );

    // Nothing new: nothing changes.
    let again = scd2_ok(&ctx, sink, &[]);
    assert_eq!(again["changes_read"], 0, "{again:#}");
    assert_eq!(stored_history(&ctx, snowflake).await, stored);

    // More changes: the versions stored before are kept, only closed.
    // Values over 8 KB in `notes`: an update that leaves them alone does not send them
    // (TOAST), and the changes table takes them from the stored row.
    generate("3", "120", "--large-text");
    hand_made_changes(&pg, 2).await;
    let (state2, t2) = source_state(&pg).await;
    load_history(&ctx, &pg, sink).await;
    let second = scd2_ok(&ctx, sink, &[]);
    assert!(second["changes_read"].as_i64().unwrap() > 0, "{second:#}");
    assert_eq!(second["removed"], 0, "{second:#}");
    assert_eq!(
        notes_lengths(&ctx, snowflake).await,
        logged_notes_lengths(&pg).await,
        "every change carries its `notes`, TOAST or not"
    );
    let after = stored_history(&ctx, snowflake).await;
    assert_same_history(
        &after,
        &expected_history(&pg, &commit_times(&ctx, snowflake).await).await,
        "the history equals the change log",
    );
    for (id, before) in &stored {
        let now = &after[id];
        for (i, (values, deleted, current)) in before.iter().enumerate() {
            let (v, d, c) = &now[i];
            assert_eq!(v, values, "key {id} version {} kept its values", i + 1);
            if !*current {
                assert_eq!(
                    (d, c),
                    (deleted, current),
                    "closed versions stay as they were"
                );
            }
        }
    }
    let check = scd2_ok(&ctx, sink, &["--check"]);
    assert_eq!(check["ok"], true, "{check:#}");

    if !snowflake {
        // The changes and history tables are not loaded tables: verify compares only `people`.
        let out = ctx
            .cdcctl()
            .args(["verify", "-o", "json"])
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{report:#}");
        let tables: Vec<&str> = report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["table"].as_str().unwrap())
            .collect();
        assert_eq!(tables, ["public.people"]);
    }

    // As of each recorded instant: the source table then.
    assert!(as_of_rows(&ctx, sink, &t0).is_empty());
    assert_eq!(as_of_rows(&ctx, sink, &t1), state1, "as of {t1}");
    assert_eq!(as_of_rows(&ctx, sink, &t2), state2, "as of {t2}");
}

#[tokio::test(flavor = "multi_thread")]
async fn history_in_duckdb_follows_the_postgres_change_log() {
    history_follows_the_source("scd2_duckdb", &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn history_in_snowflake_follows_the_postgres_change_log() {
    history_follows_the_source("scd2_snowflake", &["--sink", "snowflake"]).await;
}
