//! `cdcctl completions SHELL`: print the shell completion script on stdout.

use anyhow::{Context, Result};

use crate::cli::CompletionsArgs;
use crate::docs;
use crate::error::Outcome;
use crate::output::Output;

/// Writes the completion script for `args.shell` to stdout.
pub fn run(args: &CompletionsArgs, out: &Output) -> Result<Outcome> {
    out.raw(&docs::completion(args.shell))
        .context("cannot write the completion script")?;
    Ok(Outcome::Ok)
}
