//! The command line itself: help, version, usage errors and exit codes, broken pipes.

use cdcctl::error::{EXIT_OK, EXIT_USAGE};

use crate::support::TestDir;

fn code(out: &std::process::Output) -> u8 {
    out.status.code().expect("exit code") as u8
}

#[test]
fn help_tells_the_story_and_lists_exit_codes() {
    let dir = TestDir::new("help");
    let out = dir.cdcctl().arg("--help").output().unwrap();
    assert_eq!(code(&out), EXIT_OK);
    insta::assert_snapshot!("help", String::from_utf8(out.stdout).unwrap());
    let out = dir.cdcctl().args(["config", "--help"]).output().unwrap();
    assert_eq!(code(&out), EXIT_OK);
    insta::assert_snapshot!("help_config", String::from_utf8(out.stdout).unwrap());
}

#[test]
fn version_prints_the_crate_version() {
    let out = TestDir::new("version")
        .cdcctl()
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(code(&out), EXIT_OK);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("cdcctl {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2_in_text_and_json() {
    let dir = TestDir::new("usage");
    let out = dir.cdcctl().arg("--no-such-flag").output().unwrap();
    assert_eq!(code(&out), EXIT_USAGE);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected argument '--no-such-flag'"));

    let out = dir
        .cdcctl()
        .args(["-o", "json", "config", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(code(&out), EXIT_USAGE);
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).expect("JSON error on stderr");
    assert_eq!(err["exit_code"], 2);
    assert!(err["error"].as_str().unwrap().contains("--no-such-flag"));
    assert!(out.stdout.is_empty());

    let out = dir.cdcctl().args(["-q", "-v", "config"]).output().unwrap();
    assert_eq!(code(&out), EXIT_USAGE, "--quiet and --verbose conflict");
}

#[test]
fn broken_pipe_exits_0_quietly() {
    let dir = TestDir::new("pipe");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // the reader is gone before cdcctl writes a byte, like `cdcctl ... | head -0`
    let bin = assert_cmd::cargo::cargo_bin("cdcctl");
    let out = std::process::Command::new(bin)
        .args(["completions", "zsh"])
        .current_dir(dir.path())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(code(&out), EXIT_OK);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn completions_cover_subcommands_and_global_flags() {
    let dir = TestDir::new("completions");
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = dir.cdcctl().args(["completions", shell]).output().unwrap();
        assert_eq!(code(&out), EXIT_OK, "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        for word in ["config", "completions", "profile", "output", "no-color"] {
            assert!(text.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = dir.cdcctl().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(code(&out), EXIT_USAGE);
}

#[test]
fn readme_documents_every_variable_and_exit_code() {
    let readme = std::fs::read_to_string(crate::support::repo_root().join("README.md")).unwrap();
    for var in cdcctl::config::env::ALL {
        assert!(
            readme.contains(&format!("`{var}`")),
            "README.md does not document `{var}`"
        );
    }
    for code in ["| 0 |", "| 1 |", "| 2 |", "| 3 |"] {
        assert!(
            readme.contains(code),
            "README.md exit code table lacks {code}"
        );
    }
}

/// Completes the words of `line` (the last one being completed) through bash itself: the
/// registration script `COMPLETE=bash cdcctl` prints, sourced, then its completion function
/// called as bash calls it. Returns the candidates.
fn complete_in_bash(mut cmd: std::process::Command, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let script = format!(
        "source <(COMPLETE=bash cdcctl)\n\
         COMP_WORDS=({words})\n\
         COMP_CWORD={cword}\n\
         COMP_TYPE=9\n\
         _clap_complete_cdcctl cdcctl {current} {previous}\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        words = quoted.join(" "),
        cword = words.len() - 1,
        current = quoted[words.len() - 1],
        previous = quoted[words.len().saturating_sub(2)],
    );
    let bin = std::path::PathBuf::from(assert_cmd::cargo::cargo_bin!("cdcctl"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = cmd
        .env("PATH", path)
        .env_remove("COMPLETE")
        .output_with_script(&script);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

trait WithScript {
    fn output_with_script(&mut self, script: &str) -> std::process::Output;
}

impl WithScript for std::process::Command {
    /// Runs bash with `script` on the environment and directory of this command.
    fn output_with_script(&mut self, script: &str) -> std::process::Output {
        let mut bash = std::process::Command::new("bash");
        bash.arg("-c").arg(script);
        for (k, v) in self.get_envs() {
            match v {
                Some(v) => bash.env(k, v),
                None => bash.env_remove(k),
            };
        }
        if let Some(dir) = self.get_current_dir() {
            bash.current_dir(dir);
        }
        bash.output().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bash_completes_live_connector_table_and_profile_names() {
    let ctx = crate::support::TestContext::new("complete_live").await;
    ctx.pg()
        .await
        .batch_execute(
            "CREATE SCHEMA shop; CREATE TABLE shop.orders (id int PRIMARY KEY); \
             CREATE TABLE customers (id int PRIMARY KEY)",
        )
        .await
        .unwrap();
    ctx.create_connector(&["public.customers"]).await;

    let connectors = complete_in_bash(ctx.command(), &["cdcctl", "connector", "status", "t-"]);
    assert!(
        connectors.contains(&ctx.connector),
        "{} not offered: {connectors:?}",
        ctx.connector
    );
    assert!(
        connectors.iter().all(|c| c.starts_with("t-")),
        "{connectors:?}"
    );

    let tables = complete_in_bash(ctx.command(), &["cdcctl", "tail", ""]);
    for table in ["customers", "shop.orders"] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} not offered: {tables:?}"
        );
    }
    let scd2 = complete_in_bash(ctx.command(), &["cdcctl", "scd2", "--table", "sh"]);
    assert_eq!(scd2, ["shop.orders"]);

    let dir = TestDir::new("complete_profiles");
    dir.write(
        "cdcctl.toml",
        "[profiles.staging.kafka]\nbrokers = \"a:9092\"\n[profiles.prod.kafka]\nbrokers = \"b:9092\"\n",
    );
    let profiles = complete_in_bash(dir.command(), &["cdcctl", "--profile", ""]);
    assert_eq!(profiles, ["prod", "staging"]);
}

#[test]
fn completion_offers_nothing_live_and_stays_quick_when_services_are_down() {
    let dir = TestDir::new("complete_down");
    let mut cmd = dir.command();
    cmd.env(
        "CDCCTL_CONNECT_URL",
        format!("http://127.0.0.1:{}", crate::support::free_port()),
    )
    .env(
        "CDCCTL_POSTGRES_URL",
        format!("postgres://u@127.0.0.1:{}/db", crate::support::free_port()),
    );
    let started = std::time::Instant::now();
    let connectors = complete_in_bash(cmd, &["cdcctl", "connector", "delete", "x"]);
    assert!(connectors.is_empty(), "{connectors:?}");
    let mut cmd = dir.command();
    cmd.env(
        "CDCCTL_POSTGRES_URL",
        format!("postgres://u@127.0.0.1:{}/db", crate::support::free_port()),
    );
    let tables = complete_in_bash(cmd, &["cdcctl", "load", "x"]);
    assert!(tables.is_empty(), "{tables:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
