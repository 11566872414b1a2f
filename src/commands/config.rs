//! `cdcctl config`: every effective setting, its value (secrets as `****`) and where it came
//! from — default, file (and profile), environment variable or flag.

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::{Config, SettingView};
use crate::error::Outcome;
use crate::output::Output;

/// `cdcctl config --output json`.
#[derive(Debug, Serialize)]
pub struct ConfigReport<'a> {
    /// The profile in use (`default` when none is selected).
    pub profile: &'a str,
    /// The configuration file that was read, or null.
    pub config_file: Option<String>,
    /// Every setting: `key`, `value` (`****` for secrets, null when unset), `source`
    /// (`default`, `file`, `env`, `flag`, `derived`, `unset`), `origin` (file and profile,
    /// variable or flag) and `secret`.
    pub settings: &'a [SettingView],
}

/// Prints the effective configuration.
pub fn run(config: &Config, out: &Output) -> Result<Outcome> {
    let report = ConfigReport {
        profile: &config.profile,
        config_file: config.file.as_ref().map(|p| p.display().to_string()),
        settings: config.settings(),
    };
    out.report(&report, |w| {
        writeln!(w, "profile:     {}", report.profile)?;
        writeln!(
            w,
            "config file: {}",
            report.config_file.as_deref().unwrap_or("(none found)")
        )?;
        writeln!(w)?;
        let mut table = out.table(["KEY", "VALUE", "SOURCE", "ORIGIN"]);
        for s in report.settings {
            table.add_row([
                s.key.as_str(),
                s.value.as_deref().unwrap_or("-"),
                s.source.as_str(),
                s.origin.as_str(),
            ]);
        }
        write!(w, "{}", out.render_table(&table))
    })
    .context("cannot write the configuration")?;
    Ok(Outcome::Ok)
}
