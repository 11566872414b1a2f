//! Generated documentation: shell completion scripts and man pages, from the clap definition only.
//!
//! `completions/` and `man/` in the repository hold this output; an integration test regenerates
//! it and fails when the committed files are stale.

use clap_complete::Shell;

use crate::cli;

/// Every shell `cdcctl completions` supports, in a stable order.
pub const SHELLS: [Shell; 5] = [
    Shell::Bash,
    Shell::Zsh,
    Shell::Fish,
    Shell::PowerShell,
    Shell::Elvish,
];

/// The completion script for one shell.
pub fn completion(shell: Shell) -> Vec<u8> {
    let mut cmd = cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "cdcctl", &mut buf);
    buf
}

/// File name of a shell's completion script inside `completions/`.
pub fn completion_file_name(shell: Shell) -> String {
    clap_complete::Generator::file_name(&shell, "cdcctl")
}

/// Man pages: `cdcctl.1` and one `cdcctl-<sub>.1` per subcommand, as (file name, roff text).
pub fn man_pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = cli::command();
    cmd.build();
    let mut pages = Vec::new();
    let mut main = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut main)?;
    pages.push(("cdcctl.1".to_string(), main));
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("cdcctl-{}", sub.get_name());
        let mut page = Vec::new();
        clap_mangen::Man::new(sub.clone().name(name.clone())).render(&mut page)?;
        pages.push((format!("{name}.1"), page));
    }
    Ok(pages)
}
