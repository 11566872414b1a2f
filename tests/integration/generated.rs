//! `completions/` and `man/` must be what the current CLI generates.

use std::path::Path;

use cdcctl::docs;

const REGENERATE: &str = "CDCCTL_UPDATE_GENERATED";

/// Compares (or, with `CDCCTL_UPDATE_GENERATED=1`, writes) generated files; returns stale ones.
fn check(dir: &Path, files: Vec<(String, Vec<u8>)>) -> Vec<String> {
    let update = std::env::var_os(REGENERATE).is_some();
    let mut stale = Vec::new();
    for (name, content) in files {
        let path = dir.join(&name);
        if update {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(&path, &content).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(content.as_slice()) {
            stale.push(path.display().to_string());
        }
    }
    stale
}

#[test]
fn completions_and_man_pages_are_up_to_date() {
    let root = crate::support::repo_root();
    let completions = docs::SHELLS
        .iter()
        .map(|s| (docs::completion_file_name(*s), docs::completion(*s)))
        .collect();
    let mut stale = check(&root.join("completions"), completions);
    stale.extend(check(&root.join("man"), docs::man_pages().unwrap()));
    assert!(
        stale.is_empty(),
        "generated files are stale: {}\nregenerate with: {REGENERATE}=1 cargo test --test \
         integration generated",
        stale.join(", ")
    );
}

#[test]
fn every_subcommand_has_a_man_page() {
    let names: Vec<String> = docs::man_pages()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for sub in cdcctl::cli::command()
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
    {
        let page = format!("cdcctl-{}.1", sub.get_name());
        assert!(names.contains(&page), "no man page {page}");
    }
}
