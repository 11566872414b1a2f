//! `cdcctl config`: value sources, precedence, redaction and configuration errors.

use cdcctl::error::{EXIT_OK, EXIT_USAGE};
use serde_json::Value;

use crate::support::TestDir;

const FILE: &str = r#"
default_profile = "dev"

[postgres]
host = "db.internal"
password = "file-secret"

[kafka]
brokers = "file-broker:9092"

[kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.password" = "kafka-secret"

[profiles.dev.kafka]
topic_prefix = "dev"

[profiles.prod.kafka]
brokers = "prod-broker:9092"
"#;

/// Runs `cdcctl -o json config EXTRA...` and parses the report.
fn json_config(cmd: &mut assert_cmd::Command, extra: &[&str]) -> Value {
    let out = cmd
        .args(["-o", "json", "config"])
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(EXIT_OK as i32),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("config JSON")
}

fn setting<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no setting {key}"))
}

#[test]
fn file_profile_env_and_flag_layers_with_sources() {
    let dir = TestDir::new("config-layers");
    dir.write("cdcctl.toml", FILE);

    let report = json_config(&mut dir.cdcctl(), &[]);
    assert_eq!(report["profile"], "dev");
    assert!(
        report["config_file"]
            .as_str()
            .unwrap()
            .ends_with("cdcctl.toml")
    );
    let host = setting(&report, "postgres.host");
    assert_eq!(
        (&host["value"], &host["source"]),
        (&Value::from("db.internal"), &Value::from("file"))
    );
    let prefix = setting(&report, "kafka.topic_prefix");
    assert_eq!(prefix["value"], "dev");
    assert!(
        prefix["origin"]
            .as_str()
            .unwrap()
            .ends_with("[profiles.dev]")
    );
    assert_eq!(setting(&report, "postgres.port")["source"], "default");

    // env beats file
    let report = json_config(
        dir.cdcctl().env("KAFKA_BOOTSTRAP_SERVERS", "env-broker:1"),
        &[],
    );
    let brokers = setting(&report, "kafka.brokers");
    assert_eq!(brokers["value"], "env-broker:1");
    assert_eq!(
        (&brokers["source"], &brokers["origin"]),
        (&Value::from("env"), &Value::from("KAFKA_BOOTSTRAP_SERVERS"))
    );

    // flag beats env
    let report = json_config(
        dir.cdcctl().env("CDCCTL_KAFKA_BROKERS", "env-broker:1"),
        &["--brokers", "flag-broker:1"],
    );
    let brokers = setting(&report, "kafka.brokers");
    assert_eq!(brokers["value"], "flag-broker:1");
    assert_eq!(
        (&brokers["source"], &brokers["origin"]),
        (&Value::from("flag"), &Value::from("--brokers"))
    );

    // --profile selects another profile section
    let report = json_config(&mut dir.cdcctl(), &["--profile", "prod"]);
    assert_eq!(
        setting(&report, "kafka.brokers")["value"],
        "prod-broker:9092"
    );
}

#[test]
fn secrets_never_appear_in_text_or_json() {
    let dir = TestDir::new("config-secrets");
    dir.write("cdcctl.toml", FILE);
    for format in ["text", "json"] {
        let out = dir
            .cdcctl()
            .env("SNOWFLAKE_PASSWORD", "sf-secret")
            .env("CDCCTL_POSTGRES_URL", "postgres://u:url-secret@h:1/d")
            .args(["-o", format, "config"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(EXIT_OK as i32));
        let text = String::from_utf8(out.stdout).unwrap();
        for secret in ["file-secret", "kafka-secret", "sf-secret", "url-secret"] {
            assert!(!text.contains(secret), "{format} output shows {secret}");
        }
        assert!(text.contains("****"));
    }
}

#[test]
fn config_text_output() {
    let dir = TestDir::new("config-text");
    dir.write("cdcctl.toml", FILE);
    let out = dir
        .cdcctl()
        .env("PGPORT", "6543")
        .args([
            "--config",
            "cdcctl.toml",
            "config",
            "--duckdb-path",
            "/data/w.duckdb",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_OK as i32));
    let text = String::from_utf8(out.stdout).unwrap();
    insta::assert_snapshot!("config_text", text);
}

#[test]
fn malformed_file_exits_2_with_line_and_column() {
    let dir = TestDir::new("config-malformed");
    dir.write(
        "cdcctl.toml",
        "[kafka]\nbrokers = \"ok\"\ntopic_prefix = [unclosed\n",
    );
    let out = dir.cdcctl().arg("config").output().unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE as i32));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cdcctl.toml` at line 3, column"), "{err}");

    dir.write(
        "cdcctl.toml",
        "[kafka]\nbrokers = \"ok\"\n\n[postgres]\nhots = \"x\"\n",
    );
    let out = dir
        .cdcctl()
        .args(["-o", "json", "config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE as i32));
    let err: Value = serde_json::from_slice(&out.stderr).unwrap();
    let message = err["error"].as_str().unwrap();
    assert!(
        message.contains("line 5, column 1") && message.contains("unknown key `postgres.hots`"),
        "{message}"
    );
}

#[test]
fn unknown_profile_exits_2_listing_known_profiles() {
    let dir = TestDir::new("config-profile");
    dir.write("cdcctl.toml", FILE);
    let out = dir
        .cdcctl()
        .args(["--profile", "staging", "config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE as i32));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown profile `staging`"), "{err}");
    assert!(err.contains("known profiles: `dev`, `prod`"), "{err}");
}

#[test]
fn missing_named_file_and_bad_values_exit_2() {
    let dir = TestDir::new("config-missing");
    let out = dir
        .cdcctl()
        .args(["--config", "nope.toml", "config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE as i32));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read configuration file `nope.toml`")
    );

    let out = dir
        .cdcctl()
        .env("PGPORT", "99999")
        .arg("config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_USAGE as i32));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("`postgres.port` (from env PGPORT)"), "{err}");
}

#[test]
fn config_env_var_and_user_config_dir_are_searched() {
    let dir = TestDir::new("config-search");
    let user = dir.path().join(".config/cdcctl");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(
        user.join("cdcctl.toml"),
        "[duckdb]\npath = \"user.duckdb\"\n",
    )
    .unwrap();
    let report = json_config(&mut dir.cdcctl(), &[]);
    assert_eq!(setting(&report, "duckdb.path")["value"], "user.duckdb");

    let other = dir.write("other.toml", "[duckdb]\npath = \"other.duckdb\"\n");
    let report = json_config(dir.cdcctl().env("CDCCTL_CONFIG", &other), &[]);
    assert_eq!(setting(&report, "duckdb.path")["value"], "other.duckdb");
}
