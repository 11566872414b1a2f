//! The local stack and the per-test isolation work: each test gets its own database and topic,
//! Connect serves the Debezium plugin, fakesnow accepts a Snowflake-protocol login.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::support::TestContext;

#[tokio::test(flavor = "multi_thread")]
async fn isolated_database_is_private_and_writable() {
    let ctx = TestContext::new("harness_db").await;
    let other = TestContext::new("harness_db_other").await;
    assert_ne!(ctx.database, other.database);

    let pg = ctx.pg().await;
    pg.batch_execute("CREATE TABLE probe (id int PRIMARY KEY, note text)")
        .await
        .unwrap();
    pg.execute("INSERT INTO probe VALUES ($1, $2)", &[&1i32, &"hello"])
        .await
        .unwrap();
    let row = pg
        .query_one("SELECT note FROM probe WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "hello");

    let seen = other
        .pg()
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'probe'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        seen.get::<_, i64>(0),
        0,
        "the other test's database must not see the table"
    );

    let wal = pg.query_one("SHOW wal_level", &[]).await.unwrap();
    assert_eq!(wal.get::<_, String>(0), "logical");
}

#[tokio::test(flavor = "multi_thread")]
async fn isolated_topic_round_trips_a_message() {
    let ctx = TestContext::new("harness_topic").await;
    let topic = format!("{}.public.probe", ctx.topic_prefix);
    let producer: FutureProducer = ctx.kafka_config().create().unwrap();
    let payload = format!("{{\"probe\":\"{}\"}}", ctx.topic_prefix);
    producer
        .send(
            FutureRecord::to(&topic).key("k1").payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce");

    let consumer = ctx.topic_reader(&topic);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let msg = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no message within 20 s"
        );
        if let Some(r) = consumer.poll(Duration::from_millis(500)) {
            break r.expect("consume").detach();
        }
    };
    assert_eq!(msg.key(), Some(&b"k1"[..]));
    assert_eq!(msg.payload(), Some(payload.as_bytes()));
    assert_eq!(msg.offset(), 0, "a fresh topic per run starts at offset 0");
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_serves_the_debezium_postgres_plugin() {
    let ctx = TestContext::new("harness_connect").await;
    let url = format!("{}/connector-plugins", ctx.stack.config.connect.url);
    let plugins: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    let classes: Vec<&str> = plugins
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["class"].as_str())
        .collect();
    assert!(
        classes.contains(&"io.debezium.connector.postgresql.PostgresConnector"),
        "{classes:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fakesnow_accepts_a_snowflake_protocol_login() {
    let ctx = TestContext::new("harness_snowflake").await;
    let sf = &ctx.stack.config.snowflake;
    let body = serde_json::json!({"data": {
        "LOGIN_NAME": sf.user,
        "PASSWORD": sf.password.as_ref().unwrap().expose(),
        "ACCOUNT_NAME": sf.account,
        "SESSION_PARAMETERS": {},
    }});
    let url = format!(
        "{}/session/v1/login-request?databaseName={}",
        sf.url, ctx.snowflake_database
    );
    let resp: serde_json::Value = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["success"], true, "{resp}");
    assert!(
        !resp["data"]["token"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{resp}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cdcctl_config_points_at_the_test_resources() {
    let ctx = TestContext::new("harness_cli").await;
    let out = ctx
        .cdcctl()
        .args(["-o", "json", "config"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let get = |key: &str| {
        report["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap()["value"]
            .clone()
    };
    assert_eq!(get("postgres.database"), ctx.database.as_str());
    assert_eq!(get("kafka.topic_prefix"), ctx.topic_prefix.as_str());
    assert_eq!(get("postgres.password"), "****");
}
