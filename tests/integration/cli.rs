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
