//! Shell completion of live names: connectors from Kafka Connect, tables from Postgres, profiles
//! from `cdcctl.toml`. clap_complete's engine calls these while a shell completes a
//! `COMPLETE=bash cdcctl` registration (README, "Shell completion"). Each reads the settings the
//! way every command does (file and `CDCCTL_*` variables; flags on the line being completed are
//! not seen), asks its service with a short timeout, and offers nothing when the service does not
//! answer: completion never hangs and never prints an error.

use std::future::Future;
use std::time::Duration;

use clap_complete::CompletionCandidate;

use crate::config::{Config, LoadRequest};

/// How long a completion may wait for a service.
const TIMEOUT: Duration = Duration::from_millis(1500);

/// The request every completer loads the settings with.
fn request<'a>(env: &'a dyn Fn(&str) -> Option<String>) -> LoadRequest<'a> {
    LoadRequest {
        config_path: None,
        profile: None,
        flags: Vec::new(),
        env,
        cwd: std::env::current_dir().unwrap_or_default(),
        user_config_dir: dirs::config_dir(),
    }
}

fn config() -> Option<Config> {
    let env = |name: &str| std::env::var(name).ok();
    Config::load(&request(&env)).ok()
}

/// Runs `future` on a small runtime of its own, at most [`TIMEOUT`].
fn ask<T>(future: impl Future<Output = Option<T>>) -> Option<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime
        .block_on(async { tokio::time::timeout(TIMEOUT, future).await })
        .ok()
        .flatten()
}

/// The connectors of the Kafka Connect worker.
pub fn connectors() -> Vec<CompletionCandidate> {
    let Some(config) = config() else {
        return Vec::new();
    };
    let names = ask(async {
        let client = crate::clients::connect::ConnectClient::with_timeouts(
            &config.connect,
            TIMEOUT,
            TIMEOUT,
        )
        .ok()?;
        client.connectors().await.ok()
    });
    names
        .unwrap_or_default()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

/// The tables of the Postgres database outside the system schemas: `users` for `public.users`,
/// `schema.table` otherwise.
pub fn tables() -> Vec<CompletionCandidate> {
    let Some(config) = config() else {
        return Vec::new();
    };
    let rows = ask(async {
        let pg = crate::clients::postgres::Postgres::connect(&config.postgres)
            .await
            .ok()?;
        pg.client()
            .query(
                "SELECT n.nspname, c.relname FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
                 AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2",
                &[],
            )
            .await
            .ok()
    });
    rows.unwrap_or_default()
        .iter()
        .map(|r| {
            let (schema, table): (String, String) = (r.get(0), r.get(1));
            CompletionCandidate::new(if schema == "public" {
                table
            } else {
                format!("{schema}.{table}")
            })
        })
        .collect()
}

/// The profiles of the configuration file, sorted.
pub fn profiles() -> Vec<CompletionCandidate> {
    let env = |name: &str| std::env::var(name).ok();
    let mut names = crate::config::profile_names(&request(&env));
    names.sort();
    names.into_iter().map(CompletionCandidate::new).collect()
}
