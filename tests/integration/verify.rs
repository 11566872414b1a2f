//! `cdcctl verify` against the real stack: equal after a convergence run; after a delete, a
//! change and an insert made directly in DuckDB, it differs and `--diff` names exactly those
//! keys and the changed column.

use cdcctl::error::{EXIT_FAILED, EXIT_OK};

use crate::load::{DEMO, demo_pipeline, load_until_equal, wait_for_topic};
use crate::support::TestContext;

fn verify(ctx: &TestContext, args: &[&str]) -> (u8, serde_json::Value) {
    let out = ctx
        .cdcctl()
        .args(["verify", "-o", "json"])
        .args(args)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1) as u8, report)
}

fn table<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_is_equal_after_loading_and_names_what_was_changed_in_the_warehouse() {
    let ctx = TestContext::new("verify").await;
    demo_pipeline(&ctx, "100", "300").await;
    for t in DEMO {
        wait_for_topic(&ctx, t).await;
    }
    load_until_equal(&ctx, &[], &ctx.duckdb_path, "true").await;

    let (code, report) = verify(&ctx, &[]);
    assert_eq!(code, EXIT_OK, "{report:#}");
    assert_eq!(report["equal"], true);
    assert_eq!(
        report["tables"].as_array().unwrap().len(),
        4,
        "every loaded table"
    );
    let users = table(&report, "public.users");
    assert_eq!(users["source_rows"], users["warehouse_rows"]);
    assert_eq!(users["source_checksum"], users["warehouse_checksum"]);

    // Tamper with the warehouse: a delete, a change, an insert.
    let (deleted, changed, inserted) = {
        let conn = duckdb::Connection::open(&ctx.duckdb_path).unwrap();
        let deleted: i64 = conn
            .query_row("SELECT min(id) FROM public.users", [], |r| r.get(0))
            .unwrap();
        conn.execute("DELETE FROM public.users WHERE id = ?", [deleted])
            .unwrap();
        let changed: i64 = conn
            .query_row("SELECT max(id) FROM commerce.products", [], |r| r.get(0))
            .unwrap();
        conn.execute(
            "UPDATE commerce.products SET name = name || ' (edited)' WHERE id = ?",
            [changed],
        )
        .unwrap();
        let inserted: i64 = 9_000_000;
        conn.execute(
            "INSERT INTO public.users SELECT * REPLACE (CAST(? AS BIGINT) AS id) FROM public.users \
             LIMIT 1",
            [inserted],
        )
        .unwrap();
        (deleted, changed, inserted)
    };

    let (code, report) = verify(&ctx, &["--diff"]);
    assert_eq!(code, EXIT_FAILED, "{report:#}");
    assert_eq!(report["equal"], false);
    let users = table(&report, "public.users");
    assert_eq!(
        (
            users["missing"].as_u64(),
            users["extra"].as_u64(),
            users["different"].as_u64()
        ),
        (Some(1), Some(1), Some(0)),
        "{users}"
    );
    let diff = users["diff"].as_array().unwrap();
    assert!(
        diff.iter()
            .any(|d| d["kind"] == "missing"
                && d["key"].as_str() == Some(deleted.to_string().as_str())),
        "{users}"
    );
    assert!(
        diff.iter()
            .any(|d| d["kind"] == "extra"
                && d["key"].as_str() == Some(inserted.to_string().as_str())),
        "{users}"
    );
    let products = table(&report, "commerce.products");
    assert_eq!(products["different"], 1, "{products}");
    let d = &products["diff"][0];
    assert_eq!(d["key"], changed.to_string());
    assert_eq!(d["columns"], serde_json::json!(["name"]));
    assert_eq!(table(&report, "commerce.users")["equal"], true);
}
