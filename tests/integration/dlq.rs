//! The dead-letter queue of `load` against the real broker: malformed messages mixed into a
//! valid stream all land in the DLQ, unchanged and with the documented headers, while the valid
//! stream is loaded; a second run neither loads nor dead-letters anything twice.

use std::collections::BTreeMap;
use std::time::Duration;

use cdcctl::cdc::dlq::{self, DeadLetter};
use chrono::Utc;
use rdkafka::Message;
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::load::load;
use crate::support::TestContext;

/// A produced message: key, value, and the error class when it is malformed.
type Produced = (Vec<u8>, Option<Vec<u8>>, Option<&'static str>);

/// (key, value) of the users fixture: a consistent stream that leaves only id 1.
fn fixture() -> Vec<(String, Option<String>)> {
    crate::load::users_fixture(11)
}

/// Malformed message number `i` and the error class it must get.
fn malformed(i: usize, good: &str) -> (Vec<u8>, &'static str) {
    let mut event: serde_json::Value = serde_json::from_str(good).unwrap();
    match i % 6 {
        0 => (format!("{{ not json {i}").into_bytes(), "invalid_json"),
        1 => (good.as_bytes()[..good.len() / 2].to_vec(), "invalid_json"),
        2 => {
            event["payload"]["op"] = "x".into();
            (event.to_string().into_bytes(), "unknown_op")
        }
        3 => {
            event["payload"]["after"]["id"] = format!("id-{i}").into();
            (event.to_string().into_bytes(), "type_mismatch")
        }
        4 => {
            event["payload"]["after"]["created_at"] = serde_json::json!({"not": "a time"});
            (event.to_string().into_bytes(), "type_mismatch")
        }
        // A valid change of a new row, produced without its key.
        _ => {
            event["payload"]["after"]["id"] = (100_000 + i).into();
            (event.to_string().into_bytes(), "missing_key")
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_messages_go_to_the_dlq_and_the_valid_stream_loads() {
    let ctx = TestContext::new("dlq_faults").await;
    let topic = format!("{}.public.users", ctx.topic_prefix);
    let dlq_topic = dlq::default_topic(&ctx.topic_prefix);
    let good = fixture();
    let template = good[8].1.clone().unwrap();
    const BAD: usize = 10_000;

    // A topic that takes a 5 MB message (the broker's default is 1 MB).
    let kafka = cdcctl::clients::kafka::Kafka::new(&ctx.stack.config.kafka);
    let created = {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Handle::current();
            kafka.ensure_topic(&runtime, &topic, 1, &[("max.message.bytes", "16777216")])
        })
        .await
        .unwrap()
        .unwrap()
    };
    assert!(created);

    // The valid stream with the malformed messages in its middle, and one 5 MB value.
    let mut messages: Vec<Produced> = Vec::new();
    for (i, (key, value)) in good.iter().enumerate() {
        if i == 5 {
            for b in 0..BAD - 1 {
                let (value, class) = malformed(b, &template);
                let name = if class == "missing_key" {
                    "nokey"
                } else {
                    "bad"
                };
                messages.push((
                    format!("{{\"{name}\":{b}}}").into_bytes(),
                    Some(value),
                    Some(class),
                ));
            }
            let huge = vec![b'x'; 5 * 1024 * 1024];
            messages.push((b"{\"huge\":1}".to_vec(), Some(huge), Some("invalid_json")));
        }
        messages.push((
            key.clone().into_bytes(),
            value.clone().map(String::into_bytes),
            None,
        ));
    }
    let producer: FutureProducer = ctx
        .kafka_config()
        .set("message.max.bytes", "16777216")
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let sends: Vec<_> = messages
        .iter()
        .map(|(key, value, _)| {
            let mut record = FutureRecord::<[u8], [u8]>::to(&topic);
            // Messages are told apart by their key, also sent as the `trace-id` header; the
            // missing-key ones have only the header.
            if !key.starts_with(b"{\"nokey\"") {
                record = record.key(key);
            }
            if let Some(value) = value {
                record = record.payload(value);
            }
            let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                key: "trace-id",
                value: Some(key.as_slice()),
            });
            producer.send(record.headers(headers), Duration::from_secs(30))
        })
        .collect();
    for result in futures_util::future::join_all(sends).await {
        result.map_err(|(e, _)| e).unwrap();
    }

    for run in 0..2 {
        let (code, stdout, stderr) = load(
            &ctx,
            &["--topic", &topic, "--until-caught-up", "-o", "json"],
        );
        assert_eq!(code, 0, "run {run}: {stderr}");
        let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let expected = if run == 0 { BAD } else { 0 };
        assert_eq!(summary["dead_letters"], expected, "run {run}: {stdout}");
        if run == 0 {
            assert!(
                stderr.contains(&format!("went to `{dlq_topic}`")),
                "{stderr}"
            );
        }
        assert_eq!(
            crate::load::duck_ids(&ctx.duckdb_path, "public.users"),
            vec![1],
            "run {run}: the valid stream is loaded"
        );
    }

    // Every malformed message is in the DLQ once, unchanged, with its headers.
    let by_key: BTreeMap<Vec<u8>, (Vec<u8>, &'static str, i64)> = messages
        .iter()
        .enumerate()
        .filter_map(|(offset, (key, value, class))| {
            class.map(|c| (key.clone(), (value.clone().unwrap(), c, offset as i64)))
        })
        .collect();
    let reader = ctx.topic_reader(&dlq_topic);
    let mut seen = 0;
    let mut classes: BTreeMap<String, usize> = BTreeMap::new();
    while seen < BAD {
        let message = reader
            .poll(Duration::from_secs(10))
            .expect("the DLQ holds every malformed message")
            .unwrap();
        seen += 1;
        let headers: dlq::Headers = message
            .headers()
            .unwrap()
            .iter()
            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
            .collect();
        let key = headers[0].1.clone().unwrap();
        assert_eq!(
            message.key().map(<[u8]>::to_vec),
            (!key.starts_with(b"{\"nokey\"")).then(|| key.clone()),
            "unchanged key"
        );
        let (value, class, offset) = by_key.get(&key).expect("a malformed message's key");
        assert_eq!(
            message.payload().unwrap(),
            value.as_slice(),
            "unchanged value"
        );
        assert_eq!(
            headers[0],
            ("trace-id".into(), Some(key.clone())),
            "original headers first"
        );
        let letter = DeadLetter::from_headers(&headers).unwrap();
        assert_eq!(letter.class, *class, "{}", letter.message);
        assert_eq!(letter.topic, topic);
        assert_eq!(letter.partition, 0);
        assert_eq!(letter.offset, *offset);
        assert_eq!(letter.table.as_deref(), Some("public.users"));
        assert_eq!(letter.attempts, 1);
        assert!(!letter.message.is_empty());
        *classes.entry(letter.class.clone()).or_default() += 1;
    }
    assert!(
        reader.poll(Duration::from_secs(2)).is_none(),
        "nothing dead-lettered twice"
    );
    assert_eq!(classes.len(), 4, "{classes:?}");
}

/// Runs `cdcctl replay-dlq ARGS -o json --yes` and returns its JSON report.
fn replay_dlq(ctx: &TestContext, args: &[&str]) -> serde_json::Value {
    let out = ctx
        .cdcctl()
        .arg("replay-dlq")
        .args(args)
        .args(["-o", "json", "--yes"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "replay-dlq {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The users fixture's update of id 1 with `name` set and a later LSN.
fn update_of_id_1(name: &str, lsn_step: i64) -> (String, String) {
    let (key, value) = fixture()[8].clone();
    let mut event: serde_json::Value = serde_json::from_str(&value.unwrap()).unwrap();
    event["payload"]["after"]["name"] = name.into();
    let lsn = event["payload"]["source"]["lsn"].as_i64().unwrap();
    event["payload"]["source"]["lsn"] = (lsn + lsn_step).into();
    (key, event.to_string())
}

/// Produces `records` (key, value, letter) to the dead-letter topic.
async fn produce_dead_letters(
    ctx: &TestContext,
    topic: &str,
    records: &[(String, String, DeadLetter)],
) {
    let producer: FutureProducer = ctx.kafka_config().create().unwrap();
    for (key, value, letter) in records {
        let mut headers = rdkafka::message::OwnedHeaders::new();
        for (name, value) in letter.headers(&[]) {
            headers = headers.insert(rdkafka::message::Header {
                key: &name,
                value: value.as_deref(),
            });
        }
        producer
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(value)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

/// Produces (key, value) messages to `topic`.
async fn produce(ctx: &TestContext, topic: &str, messages: &[(String, String)]) {
    let extra: Vec<(&str, &str)> = messages
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    crate::load::produce_users_fixture(ctx, topic, 0, &extra).await;
}

/// A test context whose users topic holds the fixture, loaded once into DuckDB.
async fn users_loaded(name: &str) -> (TestContext, String) {
    let ctx = TestContext::new(name).await;
    let topic = format!("{}.public.users", ctx.topic_prefix);
    crate::load::produce_users_fixture(&ctx, &topic, 11, &[]).await;
    let (code, _, stderr) = load(&ctx, &["--topic", &topic, "--until-caught-up"]);
    assert_eq!(code, 0, "{stderr}");
    (ctx, topic)
}

fn name_of_id_1(ctx: &TestContext) -> String {
    let conn = duckdb::Connection::open(&ctx.duckdb_path).unwrap();
    let names: Vec<String> = conn
        .prepare("SELECT CAST(name AS VARCHAR) FROM public.users WHERE id = 1")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(names.len(), 1, "one row for id 1");
    names[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_dead_letter_replays_once_and_a_broken_one_stays_counted() {
    let ctx = TestContext::new("dlq_replay").await;
    let topic = format!("{}.public.users", ctx.topic_prefix);
    let dlq_topic = dlq::default_topic(&ctx.topic_prefix);
    crate::load::produce_users_fixture(&ctx, &topic, 11, &[]).await;
    let (code, _, stderr) = load(&ctx, &["--topic", &topic, "--until-caught-up"]);
    assert_eq!(code, 0, "{stderr}");
    let loaded = name_of_id_1(&ctx);

    // Two dead letters: one that decodes now (its cause was fixed), one still broken.
    let letter = |class: &str, offset: i64| DeadLetter {
        class: class.into(),
        message: "failed before the fix".into(),
        topic: topic.clone(),
        partition: 0,
        offset,
        table: Some("public.users".into()),
        failed_at: Utc::now(),
        attempts: 1,
    };
    let (key, fixed) = update_of_id_1("fixed", 1_000);
    produce_dead_letters(
        &ctx,
        &dlq_topic,
        &[
            (key.clone(), fixed, letter("invalid_value", 100)),
            (
                key.clone(),
                "{ still broken".into(),
                letter("invalid_json", 101),
            ),
        ],
    )
    .await;

    let listed = replay_dlq(&ctx, &["list"]);
    assert_eq!(listed["total"], 2, "{listed}");
    let groups = listed["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{listed}");
    let now: u64 = groups
        .iter()
        .map(|g| g["decode_now"].as_u64().unwrap())
        .sum();
    assert_eq!(now, 1, "{listed}");
    let shown = replay_dlq(&ctx, &["show", "--error-class", "invalid_json"]);
    assert_eq!(shown["total"], 1, "{shown}");
    assert!(
        shown["records"][0]["fails_now"]
            .as_str()
            .unwrap()
            .starts_with("invalid_json"),
        "{shown}"
    );

    // A dry run changes nothing.
    let dry = replay_dlq(&ctx, &["replay", "--dry-run"]);
    assert_eq!(
        (dry["replayed"].as_u64(), dry["failed_again"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(name_of_id_1(&ctx), loaded);
    assert_eq!(replay_dlq(&ctx, &["list"])["total"], 2);

    // The replay applies the fixed one and puts the broken one back, counted.
    let done = replay_dlq(&ctx, &["replay"]);
    assert_eq!(
        (done["replayed"].as_u64(), done["failed_again"].as_u64()),
        (Some(1), Some(1)),
        "{done}"
    );
    assert_eq!(name_of_id_1(&ctx), "fixed");
    let listed = replay_dlq(&ctx, &["list"]);
    assert_eq!(
        listed["total"], 1,
        "only the broken one is pending: {listed}"
    );
    let shown = replay_dlq(&ctx, &["show"]);
    assert_eq!(shown["records"][0]["attempts"], 2, "{shown}");

    // Replaying again changes nothing and duplicates nothing.
    let again = replay_dlq(&ctx, &["replay"]);
    assert_eq!(
        (again["replayed"].as_u64(), again["failed_again"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(name_of_id_1(&ctx), "fixed");
    assert_eq!(replay_dlq(&ctx, &["list"])["total"], 1);
    assert_eq!(
        replay_dlq(&ctx, &["list", "--all"])["total"],
        4,
        "2 letters + 2 re-queued"
    );

    // --to-source-topic sends it back to the loader's topic instead.
    let (key, via_topic) = update_of_id_1("via the topic", 2_000);
    produce_dead_letters(
        &ctx,
        &dlq_topic,
        &[(key, via_topic, letter("invalid_value", 102))],
    )
    .await;
    let sent = replay_dlq(
        &ctx,
        &[
            "replay",
            "--error-class",
            "invalid_value",
            "--to-source-topic",
        ],
    );
    assert_eq!(sent["replayed"], 1, "{sent}");
    assert_eq!(name_of_id_1(&ctx), "fixed", "not applied directly");
    let (code, _, stderr) = load(&ctx, &["--topic", &topic, "--until-caught-up"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(name_of_id_1(&ctx), "via the topic");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_the_warehouse_rejects_is_dead_lettered_and_lands_once_after_the_fix() {
    let (ctx, topic) = users_loaded("dlq_rejected").await;

    // The source changed `name` to an integer: DuckDB's VARCHAR column cannot take it as is.
    let (key, value) = fixture()[8].clone();
    let mut event: serde_json::Value = serde_json::from_str(&value.unwrap()).unwrap();
    for image in event["schema"]["fields"].as_array_mut().unwrap() {
        if image["field"] == "before" || image["field"] == "after" {
            for field in image["fields"].as_array_mut().unwrap() {
                if field["field"] == "name" {
                    field["type"] = "int32".into();
                }
            }
        }
    }
    event["payload"]["after"]["name"] = 42.into();
    event["payload"]["before"]["name"] = 41.into();
    let lsn = event["payload"]["source"]["lsn"].as_i64().unwrap();
    event["payload"]["source"]["lsn"] = (lsn + 1_000).into();
    let value = event.to_string();
    crate::load::produce_users_fixture(&ctx, &topic, 0, &[(key.as_str(), value.as_str())]).await;

    let (code, stdout, stderr) = load(
        &ctx,
        &["--topic", &topic, "--until-caught-up", "-o", "json"],
    );
    assert_eq!(code, 0, "the loader goes on: {stderr}");
    assert!(
        stderr.contains("the warehouse rejected the changes of public.users"),
        "{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["dead_letters"], 1, "{stdout}");
    assert_ne!(name_of_id_1(&ctx), "42");
    let listed = replay_dlq(&ctx, &["list"]);
    assert_eq!(
        listed["groups"][0]["error_class"], "warehouse_rejected",
        "{listed}"
    );
    assert_eq!(listed["total"], 1);

    // Nothing fixed yet: the replay fails again and the letter stays, counted.
    let again = replay_dlq(&ctx, &["replay"]);
    assert_eq!(
        (again["replayed"].as_u64(), again["failed_again"].as_u64()),
        (Some(0), Some(1)),
        "{again}"
    );
    assert_eq!(replay_dlq(&ctx, &["list"])["total"], 1, "still pending");
    let shown = replay_dlq(&ctx, &["show"]);
    assert_eq!(shown["records"][0]["attempts"], 2, "{shown}");
    assert_eq!(shown["records"][0]["error_class"], "warehouse_rejected");

    // The fix: migrate the column. Then the replay lands it, once.
    {
        let conn = duckdb::Connection::open(&ctx.duckdb_path).unwrap();
        conn.execute_batch(
            "UPDATE public.users SET name = '0'; \
             ALTER TABLE public.users ALTER COLUMN name SET DATA TYPE INTEGER",
        )
        .unwrap();
    }
    let done = replay_dlq(&ctx, &["replay"]);
    assert_eq!(done["replayed"], 1, "{done}");
    assert_eq!(name_of_id_1(&ctx), "42");
    assert_eq!(replay_dlq(&ctx, &["list"])["total"], 0);
    let again = replay_dlq(&ctx, &["replay"]);
    assert_eq!(again["replayed"], 0, "{again}");
    assert_eq!(name_of_id_1(&ctx), "42");
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_the_warehouse_refuses_are_isolated_and_the_rest_of_their_table_lands() {
    let (ctx, topic) = users_loaded("dlq_rows").await;

    // The warehouse gets a constraint the source does not have: `name` NOT NULL.
    {
        let conn = duckdb::Connection::open(&ctx.duckdb_path).unwrap();
        conn.execute_batch("ALTER TABLE public.users ALTER COLUMN name SET NOT NULL")
            .unwrap();
    }
    // 1,000 new users in one batch; 7 of them, spread out, without a name.
    let (key, value) = fixture()[0].clone();
    let template: serde_json::Value = serde_json::from_str(&value.unwrap()).unwrap();
    let key_template: serde_json::Value = serde_json::from_str(&key).unwrap();
    let lsn = template["payload"]["source"]["lsn"].as_i64().unwrap() + 1_000_000;
    let nameless = [2, 3, 150, 151, 600, 999, 1001];
    let messages: Vec<(String, String)> = (2..=1001_i64)
        .map(|id| {
            let mut event = template.clone();
            event["payload"]["op"] = "c".into();
            event["payload"]["after"]["id"] = id.into();
            event["payload"]["after"]["email"] = format!("user{id}@example.com").into();
            event["payload"]["after"]["name"] = if nameless.contains(&id) {
                serde_json::Value::Null
            } else {
                format!("User {id}").into()
            };
            event["payload"]["source"]["lsn"] = (lsn + id * 8).into();
            let mut key = key_template.clone();
            key["payload"]["id"] = id.into();
            (key.to_string(), event.to_string())
        })
        .collect();
    produce(&ctx, &topic, &messages).await;

    let (code, stdout, stderr) = load(
        &ctx,
        &[
            "--topic",
            &topic,
            "--until-caught-up",
            "--batch-size",
            "5000",
            "-o",
            "json",
        ],
    );
    assert_eq!(code, 0, "the loader goes on: {stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        summary["dead_letters"],
        nameless.len(),
        "{stdout}\n{stderr}"
    );
    let loaded = crate::load::duck_ids(&ctx.duckdb_path, "public.users");
    let expected: Vec<i64> = std::iter::once(1)
        .chain((2..=1001).filter(|id| !nameless.contains(id)))
        .collect();
    assert_eq!(loaded, expected, "every other row landed");

    // The dead letters are exactly the refused rows, each with the warehouse's reason.
    let shown = replay_dlq(&ctx, &["show", "--limit", "100"]);
    let records = shown["records"].as_array().unwrap();
    let mut ids: Vec<i64> = records
        .iter()
        .map(|r| {
            assert_eq!(r["error_class"], "warehouse_rejected", "{r}");
            assert!(
                r["error_message"]
                    .as_str()
                    .unwrap()
                    .to_lowercase()
                    .contains("not null"),
                "{r}"
            );
            let key: serde_json::Value = serde_json::from_str(r["key"].as_str().unwrap()).unwrap();
            key["payload"]["id"].as_i64().unwrap()
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, nameless);

    // Ids 2 and 3 got a name later, loaded: their dead letters are older than the stored rows,
    // so their replay changes nothing and succeeds; the other 5 are refused again, alone.
    let named: Vec<(String, String)> = [2_i64, 3]
        .iter()
        .map(|&id| {
            let (key, value) = &messages[(id - 2) as usize];
            let mut event: serde_json::Value = serde_json::from_str(value).unwrap();
            event["payload"]["op"] = "u".into();
            event["payload"]["after"]["name"] = format!("Named {id}").into();
            event["payload"]["source"]["lsn"] = (lsn + 100_000 + id).into();
            (key.clone(), event.to_string())
        })
        .collect();
    produce(&ctx, &topic, &named).await;
    let (code, _, stderr) = load(&ctx, &["--topic", &topic, "--until-caught-up"]);
    assert_eq!(code, 0, "{stderr}");
    let partly = replay_dlq(&ctx, &["replay"]);
    assert_eq!(
        (partly["replayed"].as_u64(), partly["failed_again"].as_u64()),
        (Some(2), Some(5)),
        "{partly}"
    );
    assert_eq!(replay_dlq(&ctx, &["list"])["total"], 5, "each once");
    let loaded = crate::load::duck_ids(&ctx.duckdb_path, "public.users");
    assert_eq!(loaded.len(), 1 + 1000 - 5);

    // After the fix (the constraint dropped), the replay lands them, once.
    {
        let conn = duckdb::Connection::open(&ctx.duckdb_path).unwrap();
        conn.execute_batch("ALTER TABLE public.users ALTER COLUMN name DROP NOT NULL")
            .unwrap();
    }
    let done = replay_dlq(&ctx, &["replay"]);
    assert_eq!(done["replayed"], 5, "{done}");
    assert_eq!(
        crate::load::duck_ids(&ctx.duckdb_path, "public.users"),
        (1..=1001).collect::<Vec<i64>>()
    );
    assert_eq!(replay_dlq(&ctx, &["list"])["total"], 0);
}
