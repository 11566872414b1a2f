//! The one output handle: tables or JSON on stdout, messages and progress on stderr, prompts on
//! the terminal. Built once in `main.rs` from the global flags and terminal probes; commands never
//! ask the terminal themselves and never use `println!`.

use std::io::{self, IsTerminal, Write};

use comfy_table::{ContentArrangement, Table, presets};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::error::{CliError, find_cli_error};

/// What the terminal probes found, taken once at start-up.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminals {
    /// stdout is a terminal.
    pub stdout: bool,
    /// stderr is a terminal.
    pub stderr: bool,
    /// stdin is a terminal (prompts are possible).
    pub stdin: bool,
}

impl Terminals {
    /// Probes the three standard streams.
    pub fn probe() -> Self {
        Terminals {
            stdout: io::stdout().is_terminal(),
            stderr: io::stderr().is_terminal(),
            stdin: io::stdin().is_terminal(),
        }
    }
}

/// The output handle every command receives.
#[derive(Debug, Clone)]
pub struct Output {
    format: OutputFormat,
    quiet: bool,
    yes: bool,
    color: bool,
    color_stdout: bool,
    terminals: Terminals,
}

impl Output {
    /// Builds the handle from the global flags, `NO_COLOR` and the terminal probes.
    pub fn new(global: &GlobalArgs, no_color_env: bool, terminals: Terminals) -> Self {
        Output {
            format: global.output,
            quiet: global.quiet,
            yes: global.yes,
            color: !global.no_color && !no_color_env && terminals.stderr,
            color_stdout: !global.no_color && !no_color_env && terminals.stdout,
            terminals,
        }
    }

    /// The selected output format.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// True when stdout is a terminal (follow by default, colour, boxed tables).
    pub fn stdout_is_terminal(&self) -> bool {
        self.terminals.stdout
    }

    /// True when what goes to stdout may be coloured: a terminal, and neither `--no-color` nor
    /// `NO_COLOR`.
    pub fn color_stdout(&self) -> bool {
        self.color_stdout
    }

    /// True with `--quiet`.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// True with `--output json`.
    pub fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// A table styled for where stdout goes: boxed on a terminal, plain aligned columns in a pipe
    /// (easy to `grep`/`awk`).
    pub fn table<I, S>(&self, header: I) -> Table
    where
        I: IntoIterator<Item = S>,
        S: Into<comfy_table::Cell>,
    {
        let mut table = Table::new();
        if self.terminals.stdout {
            table
                .load_style(presets::UTF8_FULL_CONDENSED)
                .set_content_arrangement(ContentArrangement::Dynamic);
        } else {
            table.load_style(presets::NOTHING);
        }
        table.set_header(header);
        table
    }

    /// Renders a table as text, without the padding comfy-table leaves at line ends.
    pub fn render_table(&self, table: &Table) -> String {
        let mut text = String::new();
        for line in table.lines() {
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }

    /// Prints a report: `text` renders it for people, `--output json` serialises it.
    pub fn report<T: Serialize>(
        &self,
        report: &T,
        text: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let stdout = io::stdout();
        let mut out = io::BufWriter::new(stdout.lock());
        match self.format {
            OutputFormat::Json => {
                serde_json::to_writer_pretty(&mut out, report).map_err(io::Error::from)?;
                writeln!(out)?;
            }
            OutputFormat::Text => text(&mut out)?,
        }
        out.flush()
    }

    /// Writes raw text to stdout (a completion script, a man page).
    pub fn raw(&self, bytes: &[u8]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }

    /// Writes one JSON Lines record `{"type": kind, "data": data}` and flushes it.
    pub fn json_line<T: Serialize>(&self, kind: &str, data: &T) -> io::Result<()> {
        #[derive(Serialize)]
        struct Envelope<'a, T> {
            r#type: &'a str,
            data: &'a T,
        }
        let mut out = io::stdout().lock();
        serde_json::to_writer(&mut out, &Envelope { r#type: kind, data })
            .map_err(io::Error::from)?;
        writeln!(out)?;
        out.flush()
    }

    /// A warning on stderr, unless `--quiet`.
    pub fn warn(&self, message: &str) {
        if !self.quiet {
            let label = self.paint("warning", "1;33");
            let _ = writeln!(io::stderr(), "{label}: {message}");
        }
    }

    /// A progress bar on stderr; hidden unless stderr is a terminal, text output and not quiet.
    pub fn progress(&self, len: Option<u64>, message: &str) -> ProgressBar {
        let bar = match len {
            Some(n) => ProgressBar::with_draw_target(Some(n), self.progress_target()),
            None => ProgressBar::with_draw_target(None, self.progress_target()),
        };
        let style = match len {
            Some(_) => progress_style("{msg} [{bar:30}] {pos}/{len} ({rate})"),
            None => progress_style("{spinner} {msg} {pos} ({rate})"),
        };
        if let Some(style) = style {
            bar.set_style(style);
        }
        bar.set_message(message.to_string());
        bar
    }

    fn progress_target(&self) -> ProgressDrawTarget {
        if self.terminals.stderr && !self.quiet && !self.is_json() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        }
    }

    /// Asks a yes/no question. `--yes` answers yes; without a terminal on stdin and without
    /// `--yes` this is a usage error (exit 2), never a hang.
    pub fn confirm(&self, question: &str) -> Result<bool, CliError> {
        if self.yes {
            return Ok(true);
        }
        if !self.terminals.stdin || !self.terminals.stderr {
            return Err(CliError::Usage {
                message: format!("confirmation needed: {question}"),
                hint: Some("stdin is not a terminal; pass `--yes` to confirm".into()),
            });
        }
        dialoguer::Confirm::new()
            .with_prompt(question)
            .default(false)
            .interact()
            .map_err(|e| CliError::Usage {
                message: format!("no answer to `{question}`: {e}"),
                hint: Some("pass `--yes` to confirm without a prompt".into()),
            })
    }

    /// Lets the user pick items on a terminal; without one, asks for `flag` instead (exit 2).
    pub fn multi_select(
        &self,
        question: &str,
        items: &[String],
        flag: &str,
    ) -> Result<Vec<usize>, CliError> {
        if !self.terminals.stdin || !self.terminals.stderr {
            return Err(CliError::Usage {
                message: format!("{question}: no terminal to ask on"),
                hint: Some(format!("pass `{flag}`")),
            });
        }
        dialoguer::MultiSelect::new()
            .with_prompt(question)
            .items(items)
            .interact()
            .map_err(|e| CliError::Usage {
                message: format!("no answer to `{question}`: {e}"),
                hint: Some(format!("pass `{flag}`")),
            })
    }

    /// Prints an error that ended the command, in the selected format, on stderr.
    pub fn error(&self, err: &anyhow::Error, exit_code: u8) {
        let report = ErrorReport::new(err, exit_code);
        let mut stderr = io::stderr().lock();
        let _ = match self.format {
            OutputFormat::Json => serde_json::to_writer(&mut stderr, &report)
                .map_err(io::Error::from)
                .and_then(|()| writeln!(stderr)),
            OutputFormat::Text => {
                let label = self.paint("error", "1;31");
                let hint = self.paint("hint", "1;36");
                write!(stderr, "{}", report.to_text(&label, &hint))
            }
        };
    }

    fn paint(&self, text: &str, sgr: &str) -> String {
        if self.color {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// A progress style from an indicatif template, plus a `{rate}` key (whole units per second:
/// indicatif's own `{per_sec}` prints four decimals).
pub fn progress_style(template: &str) -> Option<ProgressStyle> {
    let style = ProgressStyle::with_template(template).ok()?;
    Some(
        style
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}/s", state.per_sec());
                },
            )
            .progress_chars("=> "),
    )
}

/// An error as printed: `--output json` writes exactly these fields on stderr.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ErrorReport {
    /// What failed, one line.
    pub error: String,
    /// The chain of underlying causes, outermost first.
    pub causes: Vec<String>,
    /// The fix, when one is known.
    pub hint: Option<String>,
    /// The process exit code.
    pub exit_code: u8,
}

impl ErrorReport {
    /// Collects message, causes and hint from an error chain.
    pub fn new(err: &anyhow::Error, exit_code: u8) -> Self {
        let mut chain = err.chain().map(|c| c.to_string());
        let error = chain.next().unwrap_or_default();
        let mut causes: Vec<String> = chain.collect();
        causes.dedup();
        ErrorReport {
            error,
            causes,
            hint: find_cli_error(err).and_then(CliError::hint),
            exit_code,
        }
    }

    /// `error: ...`, one `caused by:` line per cause, then a blank line and `hint: ...`.
    pub fn to_text(&self, error_label: &str, hint_label: &str) -> String {
        let mut s = format!("{error_label}: {}\n", self.error);
        for cause in &self.causes {
            s.push_str(&format!("  caused by: {cause}\n"));
        }
        if let Some(hint) = &self.hint {
            s.push_str(&format!("\n{hint_label}: {hint}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn error_text_has_causes_and_hint() {
        let err = Err::<(), _>(CliError::Unreachable {
            service: "Kafka Connect".into(),
            endpoint: "http://127.0.0.1:8083".into(),
            source: Some(anyhow::anyhow!("connection refused")),
        })
        .context("cannot list connectors")
        .unwrap_err();
        let report = ErrorReport::new(&err, 3);
        insta::assert_snapshot!(report.to_text("error", "hint"), @r"
        error: cannot list connectors
          caused by: Kafka Connect is unreachable at `http://127.0.0.1:8083`
          caused by: connection refused

        hint: is it running? For the local stack run `scripts/stack.sh up`; `cdcctl config` shows the endpoints in use
        ");
    }

    #[test]
    fn error_json_fields_are_stable() {
        let err = anyhow::Error::new(CliError::Usage {
            message: "tables needed".into(),
            hint: Some("pass `--tables`".into()),
        });
        let json = serde_json::to_value(ErrorReport::new(&err, 2)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": "tables needed", "causes": [], "hint": "pass `--tables`", "exit_code": 2})
        );
    }

    #[test]
    fn prompts_without_terminal_are_usage_errors() {
        let global = GlobalArgs {
            profile: None,
            config: None,
            output: OutputFormat::Text,
            verbose: 0,
            quiet: false,
            no_color: false,
            yes: false,
        };
        let out = Output::new(&global, false, Terminals::default());
        let err = out.confirm("drop it?").unwrap_err();
        assert_eq!(err.exit_code(), crate::error::EXIT_USAGE);
        let err = out
            .multi_select("which tables", &["a".into()], "--tables")
            .unwrap_err();
        assert_eq!(err.hint().unwrap(), "pass `--tables`");
        let yes = Output::new(
            &GlobalArgs {
                yes: true,
                ..global
            },
            false,
            Terminals::default(),
        );
        assert!(yes.confirm("drop it?").unwrap());
    }
}
