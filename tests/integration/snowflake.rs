//! Snowflake against the stack's fakesnow server: the client (password and key-pair login,
//! Arrow and JSON results, array binding, errors, session renewal) and
//! `load --sink snowflake` (convergence with Postgres column for column, SIGKILL and restart).

use std::process::Command;
use std::time::{Duration, Instant};

use cdcctl::clients::snowflake::{
    Bind, ResultFormat, Retry, SnowflakeError, public_key_fingerprint,
};
use cdcctl::error::{EXIT_OK, EXIT_UNREACHABLE};

use crate::load::{
    Column, DEMO, Rows, columns, demo_pipeline, load, pg_rows, rows_difference, spawn_loader,
};
use crate::support::{TestContext, free_port};

fn snowflake_error(err: &anyhow::Error) -> &SnowflakeError {
    err.chain()
        .find_map(|e| e.downcast_ref::<SnowflakeError>())
        .unwrap_or_else(|| panic!("not a Snowflake error: {err:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn password_login_arrow_and_json_results_array_binding_and_errors() {
    let ctx = TestContext::new("sf_client").await;
    let sf = ctx.snowflake();

    // DDL and SELECT results come back as Arrow (fakesnow's only SELECT format).
    sf.query(
        "CREATE OR REPLACE TABLE \"PUBLIC\".\"T\" (\"ID\" NUMBER(38,0), \"AMOUNT\" NUMBER(12,2), \
         \"NAME\" VARCHAR, \"AT\" TIMESTAMP_TZ(6), \"OK\" BOOLEAN, \"D\" DATE)",
        &[],
        Retry::Idempotent,
    )
    .await
    .unwrap();
    // A DML result comes back as JSON, with the affected rows.
    let inserted = sf
        .query(
            "INSERT INTO \"PUBLIC\".\"T\" SELECT ?, CAST(? AS NUMBER(12,2)), ?, \
             CAST(? AS TIMESTAMP_TZ(6)), CAST(? AS BOOLEAN), CAST(? AS DATE)",
            &[
                Bind::Fixed(Some(1)),
                Bind::Text(Some("12.30".into())),
                Bind::Text(Some("it's \"quoted\"; DROP TABLE T".into())),
                Bind::Text(Some("2024-01-02 03:04:05.123456+00:00".into())),
                Bind::Text(Some("true".into())),
                Bind::Text(Some("2024-02-29".into())),
            ],
            Retry::Once,
        )
        .await
        .unwrap();
    assert_eq!(inserted.format, ResultFormat::Json);
    assert_eq!(inserted.rows_affected(), 1);

    let selected = sf
        .query(
            "SELECT \"ID\", \"AMOUNT\", \"NAME\", \"AT\", \"OK\", \"D\" FROM \"PUBLIC\".\"T\"",
            &[],
            Retry::Idempotent,
        )
        .await
        .unwrap();
    assert_eq!(selected.format, ResultFormat::Arrow);
    let names: Vec<&str> = selected.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["ID", "AMOUNT", "NAME", "AT", "OK", "D"]);
    let row: Vec<&str> = selected.rows[0]
        .iter()
        .map(|c| c.as_deref().unwrap())
        .collect();
    assert_eq!(
        row,
        [
            "1",
            "12.30",
            "it's \"quoted\"; DROP TABLE T",
            "2024-01-02 03:04:05.123456+00:00",
            "true",
            "2024-02-29"
        ]
    );

    // Array binding: 10,000 rows in one INSERT, NULLs included.
    let n = 10_000;
    let ids: Vec<Option<String>> = (0..n).map(|i| Some(i.to_string())).collect();
    let texts: Vec<Option<String>> = (0..n)
        .map(|i| (i % 7 != 0).then(|| format!("row {i}")))
        .collect();
    sf.query(
        "CREATE OR REPLACE TABLE \"PUBLIC\".\"MANY\" (\"ID\" NUMBER(38,0), \"S\" VARCHAR)",
        &[],
        Retry::Idempotent,
    )
    .await
    .unwrap();
    let started = Instant::now();
    let rows = sf
        .insert_rows(
            "INSERT INTO \"PUBLIC\".\"MANY\" (\"ID\", \"S\") VALUES (?, ?)",
            &[("FIXED", ids), ("TEXT", texts)],
        )
        .await
        .unwrap();
    eprintln!("array-bound insert of {n} rows: {:?}", started.elapsed());
    assert_eq!(rows, n);
    let counts = sf
        .query(
            "SELECT count(*), count(\"S\"), sum(\"ID\") FROM \"PUBLIC\".\"MANY\"",
            &[],
            Retry::Idempotent,
        )
        .await
        .unwrap();
    let counts: Vec<&str> = counts.rows[0]
        .iter()
        .map(|c| c.as_deref().unwrap())
        .collect();
    let nulls = (0..n).filter(|i| i % 7 == 0).count() as u64;
    assert_eq!(
        counts,
        [
            n.to_string(),
            (n - nulls).to_string(),
            (n * (n - 1) / 2).to_string()
        ]
    );

    // Errors keep Snowflake's code, SQL state and message.
    let err = sf
        .query(
            "SELECT \"NOPE\" FROM \"PUBLIC\".\"T\"",
            &[],
            Retry::Idempotent,
        )
        .await
        .unwrap_err();
    let e = snowflake_error(&err);
    assert_eq!(e.code(), Some("002043"), "{e}");
    assert_eq!(e.sql_state(), Some("02000"), "{e}");
    assert!(e.to_string().contains("NOPE"), "{e}");
    let err = sf
        .query("SELEC 1", &[], Retry::Idempotent)
        .await
        .unwrap_err();
    assert_eq!(snowflake_error(&err).code(), Some("001003"));

    // An expired session is renewed and the statement sent again.
    assert_eq!(sf.logins(), 1);
    sf.expire_session().await.unwrap();
    let again = sf
        .query(
            "SELECT count(*) FROM \"PUBLIC\".\"T\"",
            &[],
            Retry::Idempotent,
        )
        .await
        .unwrap();
    assert_eq!(again.scalar(), Some("1"));
    assert_eq!(
        sf.logins(),
        2,
        "the session was renewed by logging in again"
    );
    sf.logout().await;
}

/// Writes an RSA key with openssl: PKCS#8, encrypted PKCS#8 or PKCS#1; returns its path and
/// the SHA-256 fingerprint of its public key as openssl computes it.
fn openssl_key(dir: &std::path::Path, name: &str, form: &str) -> (std::path::PathBuf, String) {
    let sh = |script: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    sh(&format!("openssl genrsa -out {name}.rsa 2048 2>/dev/null"));
    match form {
        "pkcs8" => sh(&format!(
            "openssl pkcs8 -topk8 -nocrypt -in {name}.rsa -out {name}.pem"
        )),
        "encrypted" => sh(&format!(
            "openssl pkcs8 -topk8 -v2 aes-256-cbc -passout pass:s3cret -in {name}.rsa -out {name}.pem"
        )),
        _ => sh(&format!(
            "openssl rsa -traditional -in {name}.rsa -out {name}.pem 2>/dev/null"
        )),
    };
    let fingerprint = sh(&format!(
        "openssl rsa -in {name}.rsa -pubout -outform DER 2>/dev/null | openssl dgst -sha256 -binary | openssl base64 -A"
    ));
    (
        dir.join(format!("{name}.pem")),
        format!("SHA256:{fingerprint}"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn key_pair_login_signs_a_jwt_with_the_public_key_fingerprint() {
    use base64::Engine as _;
    let ctx = TestContext::new("sf_keypair").await;
    for form in ["pkcs8", "encrypted", "pkcs1"] {
        let (path, fingerprint) = openssl_key(ctx.dir.path(), form, form);
        let mut config = ctx.snowflake_config();
        config.account = "myorg-acct".into();
        config.user = "loader".into();
        config.password = None;
        config.private_key_path = Some(path.clone());
        config.private_key_passphrase =
            (form == "encrypted").then(|| cdcctl::config::Secret::new("s3cret"));
        let sf = cdcctl::clients::snowflake::Snowflake::new(&config).unwrap();

        // The token: RS256, issuer ACCOUNT.USER.SHA256:<fingerprint of the public key>,
        // verifiable with the public key.
        let token = sf.login_token(1_700_000_000).unwrap().unwrap();
        let public = Command::new("openssl")
            .args(["rsa", "-pubout", "-in"])
            .arg(ctx.dir.path().join(format!("{form}.rsa")))
            .output()
            .unwrap()
            .stdout;
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(&public).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<cdcctl::clients::snowflake::JwtClaims>(
            &token,
            &key,
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims.sub, "MYORG-ACCT.LOADER", "{form}");
        assert_eq!(
            claims.iss,
            format!("MYORG-ACCT.LOADER.{fingerprint}"),
            "{form}"
        );
        assert_eq!(claims.iat, 1_700_000_000);
        assert!(claims.exp > claims.iat && claims.exp - claims.iat <= 3600);
        let der = base64::engine::general_purpose::STANDARD
            .decode(fingerprint.trim_start_matches("SHA256:"))
            .unwrap();
        assert_eq!(der.len(), 32);

        // The emulator accepts any JWT: the login itself goes through.
        let one = sf.query("SELECT 1", &[], Retry::Idempotent).await.unwrap();
        assert_eq!(one.scalar(), Some("1"), "{form}");
        sf.logout().await;
    }
    // A fingerprint is over the DER public key.
    assert!(public_key_fingerprint(b"x").starts_with("SHA256:"));

    // A wrong passphrase or a missing key is a usage error naming the file.
    let (path, _) = openssl_key(ctx.dir.path(), "enc2", "encrypted");
    let mut config = ctx.snowflake_config();
    config.private_key_path = Some(path);
    config.private_key_passphrase = Some(cdcctl::config::Secret::new("wrong"));
    let err = cdcctl::clients::snowflake::Snowflake::new(&config).unwrap_err();
    let cli = cdcctl::error::find_cli_error(&err).unwrap();
    assert_eq!(cli.exit_code(), cdcctl::error::EXIT_USAGE);
    assert!(err.to_string().contains("enc2.pem"), "{err}");
    assert!(
        !format!("{err:#}").contains("wrong"),
        "the passphrase is never shown"
    );
}

/// Rows of a Snowflake table in key order, rendered like [`crate::load::columns`] renders
/// Postgres: timestamps as epoch microseconds, JSON and arrays canonical.
async fn snowflake_rows(
    sf: &cdcctl::clients::snowflake::Snowflake,
    schema: &str,
    table: &str,
    cols: &[Column],
    filter: &str,
) -> Option<Rows> {
    let select: Vec<String> = cols
        .iter()
        .map(|c| format!("\"{}\"", c.name.to_uppercase()))
        .collect();
    let sql = format!(
        "SELECT {} FROM \"{}\".\"{}\" WHERE {filter} ORDER BY \"ID\"",
        select.join(", "),
        schema.to_uppercase(),
        table.to_uppercase()
    );
    let result = sf.query(&sql, &[], Retry::Idempotent).await.ok()?;
    Some(
        result
            .rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .zip(cols)
                    .map(|(cell, c)| {
                        cell.map(|text| match c.data_type.as_str() {
                            "timestamp with time zone" | "timestamp without time zone" => {
                                epoch_micros(&text)
                            }
                            _ => text,
                        })
                    })
                    .collect()
            })
            .collect(),
    )
}

/// `2024-01-02 03:04:05.123456+00:00` (or without zone) as epoch microseconds.
fn epoch_micros(text: &str) -> String {
    let micros = chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z")
        .map(|t| t.timestamp_micros())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .map(|t| t.and_utc().timestamp_micros())
        })
        .unwrap_or_else(|e| panic!("`{text}` is not a timestamp: {e}"));
    micros.to_string()
}

/// The first difference between Postgres and Snowflake over the demo tables, or `None`.
async fn difference(ctx: &TestContext, filter: &str) -> Option<String> {
    let pg = ctx.pg().await;
    let sf = ctx.snowflake();
    let mut found = None;
    for qualified in DEMO {
        let (schema, table) = qualified.split_once('.').unwrap();
        let cols = columns(&pg, schema, table).await;
        let want = pg_rows(&pg, schema, table, &cols).await;
        let have = snowflake_rows(&sf, schema, table, &cols, filter).await;
        found = rows_difference(qualified, "Snowflake", &cols, want, have);
        if found.is_some() {
            break;
        }
    }
    sf.logout().await;
    found
}

async fn load_until_equal(ctx: &TestContext, extra: &[&str], filter: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let mut args = vec!["--sink", "snowflake", "--until-caught-up"];
        args.extend_from_slice(extra);
        let (code, _, stderr) = load(ctx, &args);
        assert_eq!(code, EXIT_OK, "load {args:?}: {stderr}");
        let Some(diff) = difference(ctx, filter).await else {
            return;
        };
        assert!(
            Instant::now() < deadline,
            "Snowflake never equalled Postgres: {diff}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn load_into_snowflake_converges_and_survives_sigkill() {
    let ctx = TestContext::new("sf_load").await;
    demo_pipeline(&ctx, "100", "600").await;

    // Killed at random points while loading (by PID: no chance to flush or commit).
    let mut seed = std::process::id() as u64;
    for _ in 0..3 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut loader = spawn_loader(
            &ctx,
            &[
                "--sink",
                "snowflake",
                "--batch-size",
                "150",
                "--flush-interval",
                "200ms",
                "--commit-interval",
                "0s",
            ],
        );
        tokio::time::sleep(Duration::from_millis(800 + (seed >> 33) % 1500)).await;
        loader.kill().unwrap();
        let out = loader.wait_with_output().unwrap();
        assert!(
            out.status.code().is_none(),
            "the loader exited by itself: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    load_until_equal(&ctx, &["--batch-size", "400"], "true").await;

    let sf = ctx.snowflake();
    for qualified in DEMO {
        let (schema, table) = qualified.split_once('.').unwrap();
        let dupes = sf
            .query(
                &format!(
                    "SELECT count(*) FROM (SELECT \"ID\" FROM \"{}\".\"{}\" GROUP BY \"ID\" \
                     HAVING count(*) > 1)",
                    schema.to_uppercase(),
                    table.to_uppercase()
                ),
                &[],
                Retry::Idempotent,
            )
            .await
            .unwrap();
        assert_eq!(dupes.scalar(), Some("0"), "{qualified}");
    }
    // Metadata columns: operations recorded, LSNs and commit times set.
    let meta = sf
        .query(
            "SELECT count(DISTINCT \"_CDC_OPERATION\"), count(\"_CDC_SOURCE_LSN\"), \
             count(\"_CDC_TIMESTAMP\"), count(*) FROM \"PUBLIC\".\"USERS\"",
            &[],
            Retry::Idempotent,
        )
        .await
        .unwrap();
    let meta: Vec<u64> = meta.rows[0]
        .iter()
        .map(|c| c.as_deref().unwrap().parse().unwrap())
        .collect();
    assert!(meta[0] >= 2, "snapshot reads and updates: {meta:?}");
    assert_eq!(meta[1], meta[3], "every row has its LSN: {meta:?}");
    assert_eq!(meta[2], meta[3], "every row has its commit time: {meta:?}");
    sf.logout().await;

    // A replay from the beginning (another group) changes nothing.
    let group = format!("{}-replay", ctx.group);
    load_until_equal(&ctx, &["--group", &group], "true").await;

    // verify agrees, table by table, through the Snowflake client.
    let mut args = vec!["verify", "--sink", "snowflake", "-o", "json"];
    args.extend(DEMO);
    let out = ctx.cdcctl().args(&args).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("verify: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["equal"], true, "{report:#}");
    assert_eq!(report["tables"].as_array().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn load_into_an_unreachable_snowflake_exits_3() {
    let ctx = TestContext::new("sf_unreachable").await;
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = ctx
        .cdcctl()
        .env("CDCCTL_SNOWFLAKE_URL", &url)
        .args(["load", "--sink", "snowflake", "--until-caught-up"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(i32::from(EXIT_UNREACHABLE)),
        "{stderr}"
    );
    assert!(stderr.contains("Snowflake is unreachable"), "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
}

/// Message 8 of the users fixture (an update of id 1) with a new column `nickname` in its
/// schema and row, and a later LSN: what Debezium sends after `ALTER TABLE … ADD COLUMN`.
fn users_update_with_a_new_column() -> (String, String) {
    let (key, value) = crate::load::users_fixture(9).remove(8);
    let mut value: serde_json::Value = serde_json::from_str(&value.unwrap()).unwrap();
    for image in value["schema"]["fields"].as_array_mut().unwrap() {
        if image["field"] == "before" || image["field"] == "after" {
            image["fields"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!(
                    {"type": "string", "optional": true, "field": "nickname"}
                ));
        }
    }
    let payload = &mut value["payload"];
    assert_eq!(payload["op"], "u");
    payload["after"]["nickname"] = "neo".into();
    payload["before"]["nickname"] = serde_json::Value::Null;
    let lsn = payload["source"]["lsn"].as_i64().unwrap();
    payload["source"]["lsn"] = (lsn + 1_000).into();
    (key, value.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn snowflake_tables_are_named_mapped_and_gain_new_columns() {
    let ctx = TestContext::new("sf_evolve").await;
    let topic = format!("{}.public.users", ctx.topic_prefix);
    crate::load::produce_users_fixture(&ctx, &topic, 11, &[]).await;
    let args = |extra: &[&str]| {
        let mut a = vec![
            "--sink",
            "snowflake",
            "--topic",
            &topic,
            "--until-caught-up",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stdout, stderr) = load(&ctx, &refs);
        assert_eq!(code, EXIT_OK, "{stderr}");
        (stdout, stderr)
    };
    let (stdout, _) = run(args(&["--table-map", "public.users=app.people"]));
    assert!(stdout.contains("\"APP\".\"PEOPLE\""), "{stdout}");

    let sf = ctx.snowflake();
    let ids = |table: &'static str| {
        let sf = &sf;
        async move {
            let r = sf
                .query(
                    &format!("SELECT \"ID\" FROM {table} ORDER BY \"ID\""),
                    &[],
                    Retry::Idempotent,
                )
                .await
                .unwrap();
            r.rows
                .into_iter()
                .map(|row| row[0].clone().unwrap())
                .collect::<Vec<_>>()
        }
    };
    // Ids 2 and 3 were deleted in the stream; id 1 remains.
    assert_eq!(ids("\"APP\".\"PEOPLE\"").await, ["1"]);

    // A new source column: added before the batch that needs it, filled for the new event.
    let (key, value) = users_update_with_a_new_column();
    crate::load::produce_users_fixture(&ctx, &topic, 0, &[(key.as_str(), value.as_str())]).await;
    let (_, stderr) = run(args(&["--table-map", "public.users=app.people", "-v"]));
    assert!(stderr.contains("ADD COLUMN \"NICKNAME\""), "{stderr}");
    let row = sf
        .query(
            "SELECT \"NICKNAME\", \"_CDC_OPERATION\" FROM \"APP\".\"PEOPLE\"",
            &[],
            Retry::Idempotent,
        )
        .await
        .unwrap();
    assert_eq!(
        row.rows,
        vec![vec![Some("neo".to_string()), Some("u".to_string())]]
    );

    // --target-schema puts the table in another schema, created on first sight.
    let group = format!("{}-raw", ctx.group);
    run(args(&["--target-schema", "raw", "--group", &group]));
    assert_eq!(ids("\"RAW\".\"USERS\"").await, ["1"]);
    sf.logout().await;
}

/// A TCP proxy in front of `target` that can be cut: while down it listens on nothing (connections
/// are refused) and the connections it forwarded are closed.
struct Proxy {
    port: u16,
    target: String,
    listener: Option<tokio::task::JoinHandle<()>>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(target: &str) -> Proxy {
        let mut proxy = Proxy {
            port: free_port(),
            target: target.to_string(),
            listener: None,
            connections: Default::default(),
        };
        proxy.up().await;
        proxy
    }

    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let (target, connections) = (self.target.clone(), self.connections.clone());
        self.listener = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections.lock().unwrap().push(task.abort_handle());
            }
        }));
    }

    fn down(&mut self) {
        if let Some(listener) = self.listener.take() {
            listener.abort();
        }
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

fn metrics(path: &std::path::Path) -> serde_json::Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

async fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warehouse_outage_opens_the_breaker_moves_no_offsets_and_recovers() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let ctx = TestContext::new("sf_outage").await;
    let topic = format!("{}.public.users", ctx.topic_prefix);
    let fakesnow = url::Url::parse(&ctx.snowflake_config().url).unwrap();
    let mut proxy = Proxy::start(&format!(
        "{}:{}",
        fakesnow.host_str().unwrap(),
        fakesnow.port().unwrap()
    ))
    .await;
    let lines = crate::load::users_fixture(11);
    let produce = |range: std::ops::Range<usize>| {
        // Tombstones (no value) are left out: the loader would only skip them.
        let extra: Vec<(String, String)> = lines[range]
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        let (ctx, topic) = (&ctx, &topic);
        async move {
            let refs: Vec<(&str, &str)> = extra
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            crate::load::produce_users_fixture(ctx, topic, 0, &refs).await;
        }
    };
    produce(0..5).await;

    let metrics_path = ctx.dir.path().join("metrics.json");
    let loader = ctx
        .command()
        .env(
            "CDCCTL_SNOWFLAKE_URL",
            format!("http://127.0.0.1:{}", proxy.port),
        )
        .args(["load", "--sink", "snowflake", "--topic", &topic])
        .args(["--flush-interval", "200ms", "--commit-interval", "0s"])
        .args(["--retry-base", "200ms", "--retry-cap", "1s"])
        .args(["--breaker-threshold", "2", "--breaker-open", "3s"])
        .arg("--metrics-file")
        .arg(&metrics_path)
        .args(["--metrics-interval", "200ms"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the first batch", 60, || {
        metrics(&metrics_path)["events"] == 5
    })
    .await;

    let group: BaseConsumer = ctx
        .kafka_config()
        .set("group.id", &ctx.group)
        .create()
        .unwrap();
    let committed = || {
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition(&topic, 0);
        let list = group
            .committed_offsets(list, Duration::from_secs(10))
            .unwrap();
        list.elements()[0].offset().to_raw().unwrap_or(-1)
    };
    let before = committed();
    assert_eq!(before, 5);

    // The outage, 60 s: new changes arrive, the warehouse cannot take them.
    proxy.down();
    let down_at = Instant::now();
    produce(5..11).await;
    wait_for("the breaker to open", 90, || {
        metrics(&metrics_path)["warehouse"]["breaker"] != "closed"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = metrics(&metrics_path);
    assert!(
        during["warehouse"]["retries"].as_u64().unwrap() >= 2,
        "{during}"
    );
    assert_eq!(
        committed(),
        before,
        "no offsets move while the warehouse is down"
    );
    // `health` shows the running loader's breaker from its metrics file.
    let out = ctx
        .cdcctl()
        .args([
            "health",
            "-o",
            "json",
            "--sink",
            "snowflake",
            "--loader-metrics",
        ])
        .arg(&metrics_path)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let breaker = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "warehouse circuit breaker")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_ne!(breaker["status"], "ok", "{breaker}");
    assert_eq!(out.status.code(), Some(1));

    // Back after 60 s: the next probe succeeds, the breaker closes, everything lands.
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(down_at.elapsed())).await;
    let during = metrics(&metrics_path);
    assert_ne!(
        during["warehouse"]["breaker"], "closed",
        "still open after a minute: {during}"
    );
    assert_eq!(
        committed(),
        before,
        "no offsets moved during the whole outage"
    );
    proxy.up().await;
    wait_for("the loader to recover", 90, || {
        let m = metrics(&metrics_path);
        m["warehouse"]["breaker"] == "closed" && m["events"].as_u64() >= Some(9)
    })
    .await;
    // SIGTERM: flush, commit, exit 0.
    // SAFETY: kill(2) on the PID of the child this test started.
    unsafe { libc::kill(loader.id() as i32, libc::SIGTERM) };
    let out = loader.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("the warehouse is unavailable"), "{stderr}");
    assert!(stderr.contains("available again"), "{stderr}");
    assert!(committed() > before);

    let sf = ctx.snowflake();
    let ids = sf
        .query(
            "SELECT \"ID\" FROM \"PUBLIC\".\"USERS\" ORDER BY \"ID\"",
            &[],
            Retry::Idempotent,
        )
        .await
        .unwrap();
    let ids: Vec<String> = ids
        .rows
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(ids, ["1"], "the end state of the stream");
    sf.logout().await;
}
