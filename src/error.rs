//! Typed errors that decide the process exit code, and the named exit codes themselves.
//!
//! Clients return their own errors with context; only the failures whose exit code is not 1 need a
//! variant here. `main.rs` calls [`exit_code_for`] once on whatever error escapes a command.

use std::io;
use std::path::PathBuf;

/// The command did what was asked, or everything checked is healthy.
pub const EXIT_OK: u8 = 0;
/// The operation failed, a check is unhealthy, or a comparison differs.
pub const EXIT_FAILED: u8 = 1;
/// The command line or the configuration is wrong; nothing was changed.
pub const EXIT_USAGE: u8 = 2;
/// A service the command needs (Postgres, Kafka, Connect, Snowflake) could not be reached.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Interrupted by Ctrl-C before the command finished (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// What a command reports when it ran to the end without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Success: exit 0.
    Ok,
    /// Ran fine but the answer is "no" (unhealthy, differs): exit 1 with no error text.
    Failed,
    /// Ran and reported, but a required service did not answer: exit 3 with no error text.
    Unreachable,
}

impl Outcome {
    /// The process exit code for this outcome.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Ok => EXIT_OK,
            Outcome::Failed => EXIT_FAILED,
            Outcome::Unreachable => EXIT_UNREACHABLE,
        }
    }
}

/// Failures with a known cause, a hint, and an exit code other than the default 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration file is not valid TOML or holds an unknown key or a wrong type.
    #[error("invalid configuration in `{}` at line {line}, column {column}: {message}", path.display())]
    ConfigFile {
        /// The file that was read.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column (in characters) of the offending text.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// The configuration file named by `--config` or `CDCCTL_CONFIG` cannot be read.
    #[error("cannot read configuration file `{}` (named by {origin})", path.display())]
    ConfigUnreadable {
        /// The file that was named.
        path: PathBuf,
        /// Where the name came from: `--config` or `CDCCTL_CONFIG`.
        origin: String,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// `--profile` (or `CDCCTL_PROFILE`) names a profile the file does not define.
    #[error("unknown profile `{name}`")]
    UnknownProfile {
        /// The requested profile.
        name: String,
        /// The profiles the configuration file defines.
        known: Vec<String>,
        /// The configuration file that was searched, if any.
        path: Option<PathBuf>,
    },
    /// A configuration value is present but cannot be used.
    #[error("invalid value for `{key}` (from {origin}): {message}")]
    ConfigValue {
        /// The setting, e.g. `postgres.port`.
        key: String,
        /// Where the value came from, e.g. `env PGPORT`.
        origin: String,
        /// Why it was rejected.
        message: String,
    },
    /// A usage error that clap cannot see (a missing value that would need a prompt, and so on).
    #[error("{message}")]
    Usage {
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: Option<String>,
    },
    /// A required service did not answer.
    #[error("{service} is unreachable at `{endpoint}`")]
    Unreachable {
        /// Human name of the service: `PostgreSQL`, `Kafka`, `Kafka Connect`, `Snowflake`.
        service: String,
        /// Where we tried to reach it (secrets removed).
        endpoint: String,
        /// The underlying error.
        #[source]
        source: Option<anyhow::Error>,
    },
    /// The operation failed for a reason the user can act on (exit 1).
    #[error("{message}")]
    Failed {
        /// What went wrong.
        message: String,
        /// How to fix it.
        hint: Option<String>,
    },
    /// Ctrl-C arrived before the command finished.
    #[error("interrupted")]
    Interrupted,
}

impl CliError {
    /// The exit code of this error; one exhaustive match so a new variant must choose.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::ConfigFile { .. }
            | CliError::ConfigUnreadable { .. }
            | CliError::UnknownProfile { .. }
            | CliError::ConfigValue { .. }
            | CliError::Usage { .. } => EXIT_USAGE,
            CliError::Unreachable { .. } => EXIT_UNREACHABLE,
            CliError::Failed { .. } => EXIT_FAILED,
            CliError::Interrupted => EXIT_INTERRUPTED,
        }
    }

    /// A one-line fix, when one is known.
    pub fn hint(&self) -> Option<String> {
        match self {
            CliError::ConfigFile { .. } => {
                Some("fix the file, or point `--config` at another one".to_string())
            }
            CliError::ConfigUnreadable { .. } => {
                Some("check the path, or unset it to use `./cdcctl.toml`".to_string())
            }
            CliError::UnknownProfile { known, path, .. } => Some(match (known.is_empty(), path) {
                (_, None) => "no configuration file was found; create `cdcctl.toml` with a \
                              `[profiles.NAME]` section"
                    .to_string(),
                (true, Some(p)) => format!("`{}` defines no profiles", p.display()),
                (false, Some(_)) => format!(
                    "known profiles: {}",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            CliError::ConfigValue { .. } => {
                Some("run `cdcctl config` to see every value and where it came from".to_string())
            }
            CliError::Usage { hint, .. } | CliError::Failed { hint, .. } => hint.clone(),
            CliError::Unreachable { .. } => Some(
                "is it running? For the local stack run `scripts/stack.sh up`; \
                 `cdcctl config` shows the endpoints in use"
                    .to_string(),
            ),
            CliError::Interrupted => None,
        }
    }
}

/// Kinds of IO error that mean "the other side is not there".
fn is_unreachable_io(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::TimedOut
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::AddrNotAvailable
    )
}

/// True when the error chain holds a broken pipe: the reader went away (`cdcctl tail | head`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The outermost [`CliError`] in the chain, if any: one attached with `.context(CliError::..)`
/// (which `chain()` shows only as text) or one that is a cause.
pub fn find_cli_error(err: &anyhow::Error) -> Option<&CliError> {
    err.downcast_ref::<CliError>().or_else(|| {
        err.chain()
            .find_map(|cause| cause.downcast_ref::<CliError>())
    })
}

/// The exit code for an error that escaped a command.
///
/// A typed [`CliError`] anywhere in the chain decides; otherwise an IO error meaning "connection
/// refused/timed out" is exit 3; anything unclassified is exit 1.
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    if is_broken_pipe(err) {
        return EXIT_OK;
    }
    if let Some(cli) = find_cli_error(err) {
        return cli.exit_code();
    }
    let unreachable = err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| is_unreachable_io(e.kind()))
    });
    if unreachable {
        EXIT_UNREACHABLE
    } else {
        EXIT_FAILED
    }
}

/// An error and its causes on one line (`a: b: c`), for warnings.
pub fn one_line(err: &anyhow::Error) -> String {
    err.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn exit_code_constants_are_the_documented_ones() {
        assert_eq!(
            (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE),
            (0, 1, 2, 3)
        );
        assert_eq!(Outcome::Failed.exit_code(), EXIT_FAILED);
    }

    #[test]
    fn typed_error_deep_in_the_chain_decides() {
        let err = anyhow::Error::new(CliError::Usage {
            message: "x".into(),
            hint: None,
        })
        .context("outer");
        assert_eq!(exit_code_for(&err), EXIT_USAGE);
        // Attached as context to another error, then wrapped again: still found.
        let err = anyhow::Error::new(io::Error::other("permission denied"))
            .context(CliError::Usage {
                message: "cannot change the setting".into(),
                hint: Some("ask a superuser".into()),
            })
            .context("applying");
        assert_eq!(exit_code_for(&err), EXIT_USAGE);
        assert_eq!(
            find_cli_error(&err).and_then(CliError::hint).as_deref(),
            Some("ask a superuser")
        );
    }

    #[test]
    fn refused_connection_is_unreachable_and_broken_pipe_is_ok() {
        let refused: anyhow::Result<()> =
            Err(io::Error::from(io::ErrorKind::ConnectionRefused)).context("connecting");
        assert_eq!(exit_code_for(&refused.unwrap_err()), EXIT_UNREACHABLE);
        let pipe: anyhow::Result<()> =
            Err(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing");
        assert_eq!(exit_code_for(&pipe.unwrap_err()), EXIT_OK);
        assert_eq!(exit_code_for(&anyhow::anyhow!("boom")), EXIT_FAILED);
    }

    #[test]
    fn unknown_profile_hint_lists_known_profiles() {
        let err = CliError::UnknownProfile {
            name: "prd".into(),
            known: vec!["dev".into(), "prod".into()],
            path: Some("cdcctl.toml".into()),
        };
        assert_eq!(err.hint().unwrap(), "known profiles: `dev`, `prod`");
        assert_eq!(err.exit_code(), EXIT_USAGE);
    }
}
