//! The one Postgres client of cdcctl (tokio-postgres), shared by every subcommand that reads or
//! changes the source: connecting with sslmode disable/prefer/require, identifier quoting, and
//! qualified table names. No CLI knowledge: errors are typed, the command decides what to print.
//! `generate-data`'s catalog reads live in [`catalog`], its key reads and sequence reservations
//! in [`keys`].

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_postgres::config::SslMode;

use crate::config::PostgresConfig;
use crate::error::CliError;

pub mod catalog;
pub mod keys;

/// How long to wait for the server to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected client; the connection task runs on the current tokio runtime.
pub struct Postgres {
    client: tokio_postgres::Client,
    endpoint: String,
}

impl Postgres {
    /// Connects with the configured sslmode. A server that does not answer is
    /// [`CliError::Unreachable`] (exit 3) naming the endpoint without its password.
    pub async fn connect(cfg: &PostgresConfig) -> Result<Postgres> {
        let endpoint = cfg.redacted_url();
        let mut pg = tokio_postgres::Config::new();
        pg.host(&cfg.host)
            .port(cfg.port)
            .user(&cfg.user)
            .dbname(&cfg.database)
            .application_name("cdcctl")
            .connect_timeout(CONNECT_TIMEOUT)
            .ssl_mode(match cfg.sslmode.as_str() {
                "disable" => SslMode::Disable,
                "require" => SslMode::Require,
                _ => SslMode::Prefer,
            });
        if let Some(pw) = &cfg.password {
            pg.password(pw.expose());
        }
        let tls = native_tls::TlsConnector::builder()
            // libpq's `prefer`/`require` encrypt without verifying the certificate; match them.
            .danger_accept_invalid_certs(true)
            .danger_accept_invalid_hostnames(true)
            .build()
            .context("cannot initialise TLS for Postgres")?;
        let tls = postgres_native_tls::MakeTlsConnector::new(tls);
        let (client, connection) = match pg.connect(tls).await {
            Ok(pair) => pair,
            Err(e) if e.as_db_error().is_none() && is_connection_failure(&e) => {
                return Err(CliError::Unreachable {
                    service: "PostgreSQL".into(),
                    endpoint,
                    source: Some(anyhow::Error::new(e)),
                }
                .into());
            }
            Err(e) => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("cannot connect to PostgreSQL at `{endpoint}`"));
            }
        };
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("postgres connection closed: {e}");
            }
        });
        Ok(Postgres { client, endpoint })
    }

    /// The underlying client, for queries.
    pub fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    /// The endpoint, password removed, for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// True when connecting failed below the protocol: refused, timed out, DNS, reset.
fn is_connection_failure(e: &tokio_postgres::Error) -> bool {
    let text = e.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        source = s.source();
    }
    text.contains("timed out") || text.contains("error connecting")
}

/// Quotes an SQL identifier: `"name"`, doubling embedded quotes. Always used, so names with
/// capitals, spaces or quotes work.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal (`'it''s'`), only for SQL that is *shown* (e.g. `--dry-run`); SQL
/// that runs binds values as parameters.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A schema-qualified table name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    /// Schema, exactly as in the catalog.
    pub schema: String,
    /// Table, exactly as in the catalog.
    pub name: String,
}

impl TableName {
    /// A table name from catalog spelling.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// `"schema"."name"`, for SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl fmt::Display for TableName {
    /// `schema.name`, the way Debezium's `table.include.list` and topic names spell it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// One part of a user-typed table reference: the text and whether it was double-quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePart {
    /// The name, quotes removed and `""` unescaped.
    pub text: String,
    /// Written in double quotes: match exactly, never fold case.
    pub quoted: bool,
}

/// A table as typed by a user: `name`, `schema.name`, `"My Schema"."My Table"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    /// The schema, if given.
    pub schema: Option<NamePart>,
    /// The table.
    pub name: NamePart,
}

/// Splits a comma-separated list of table references, honouring double quotes.
pub fn parse_table_list(list: &str) -> Result<Vec<TableRef>, String> {
    let mut refs = Vec::new();
    let mut parts: Vec<NamePart> = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut chars = list.chars().peekable();
    let finish_part = |current: &mut String, quoted: &mut bool, parts: &mut Vec<NamePart>| {
        let text = if *quoted {
            std::mem::take(current)
        } else {
            std::mem::take(current).trim().to_string()
        };
        parts.push(NamePart {
            text,
            quoted: *quoted,
        });
        *quoted = false;
    };
    let finish_ref = |parts: &mut Vec<NamePart>, refs: &mut Vec<TableRef>| -> Result<(), String> {
        let taken = std::mem::take(parts);
        match taken.as_slice() {
            [n] if n.text.is_empty() && !n.quoted => Ok(()),
            [n] => {
                refs.push(TableRef {
                    schema: None,
                    name: n.clone(),
                });
                Ok(())
            }
            [s, n] if !s.text.is_empty() && !n.text.is_empty() => {
                refs.push(TableRef {
                    schema: Some(s.clone()),
                    name: n.clone(),
                });
                Ok(())
            }
            _ => Err("expected `table` or `schema.table`".to_string()),
        }
    };
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            ('"', true) => in_quotes = false,
            ('"', false) if current.trim().is_empty() => {
                current.clear();
                in_quotes = true;
                quoted = true;
            }
            ('.', false) => finish_part(&mut current, &mut quoted, &mut parts),
            (',', false) => {
                finish_part(&mut current, &mut quoted, &mut parts);
                finish_ref(&mut parts, &mut refs).map_err(|e| format!("{e} in `{list}`"))?;
            }
            (c, _) => {
                if quoted && !in_quotes && !c.is_whitespace() {
                    return Err(format!(
                        "unexpected `{c}` after a closing quote in `{list}`"
                    ));
                }
                if !quoted || in_quotes {
                    current.push(c);
                }
            }
        }
    }
    if in_quotes {
        return Err(format!("unclosed double quote in `{list}`"));
    }
    finish_part(&mut current, &mut quoted, &mut parts);
    finish_ref(&mut parts, &mut refs).map_err(|e| format!("{e} in `{list}`"))?;
    Ok(refs)
}

/// Finds the catalog spelling of a typed table reference: quoted parts match exactly; unquoted
/// ones match exactly first, then folded to lower case (Postgres' rule). The schema defaults to
/// `public`. Returns `None` when no such table (or partitioned table) exists.
pub async fn resolve_table(
    client: &tokio_postgres::Client,
    table: &TableRef,
) -> Result<Option<TableName>> {
    let candidates = |p: &NamePart| -> Vec<String> {
        let mut v = vec![p.text.clone()];
        if !p.quoted && p.text.to_lowercase() != p.text {
            v.push(p.text.to_lowercase());
        }
        v
    };
    let schemas = match &table.schema {
        Some(s) => candidates(s),
        None => vec!["public".to_string()],
    };
    for schema in &schemas {
        for name in candidates(&table.name) {
            let found = TableName::new(schema.clone(), name);
            if table_exists(client, &found).await? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

/// A publication as Postgres has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// `FOR ALL TABLES`.
    pub all_tables: bool,
    /// The tables it publishes (every table of the database when `all_tables`).
    pub tables: BTreeSet<TableName>,
}

impl Publication {
    /// True when it publishes every one of `tables`.
    pub fn covers(&self, tables: &[TableName]) -> bool {
        self.all_tables || tables.iter().all(|t| self.tables.contains(t))
    }
}

/// The publication `name`, or `None` when there is none.
pub async fn find_publication(
    client: &tokio_postgres::Client,
    name: &str,
) -> Result<Option<Publication>> {
    let Some(row) = client
        .query_opt(
            "SELECT puballtables FROM pg_publication WHERE pubname = $1",
            &[&name],
        )
        .await
        .context("cannot read publications")?
    else {
        return Ok(None);
    };
    let rows = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables \
             WHERE pubname = $1",
            &[&name],
        )
        .await
        .context("cannot read the publication's tables")?;
    Ok(Some(Publication {
        all_tables: row.get(0),
        tables: rows
            .iter()
            .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect(),
    }))
}

/// True when the table (ordinary or partitioned) exists, spelled exactly as given.
pub async fn table_exists(client: &tokio_postgres::Client, table: &TableName) -> Result<bool> {
    let row = client
        .query_opt(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&table.schema, &table.name],
        )
        .await
        .context("cannot look up tables in the catalog")?;
    Ok(row.is_some())
}

/// Ordinary and partitioned tables of the given schemas, in name order.
pub async fn list_tables(
    client: &tokio_postgres::Client,
    schemas: &[String],
) -> Result<Vec<TableName>> {
    let rows = client
        .query(
            "SELECT n.nspname, c.relname FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
             ORDER BY 1, 2",
            &[&schemas],
        )
        .await
        .context("cannot list tables")?;
    Ok(rows
        .iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(text: &str, quoted: bool) -> NamePart {
        NamePart {
            text: text.into(),
            quoted,
        }
    }

    #[test]
    fn identifiers_are_quoted_and_escaped() {
        assert_eq!(quote_ident("users"), "\"users\"");
        assert_eq!(quote_ident("My \"odd\" table"), "\"My \"\"odd\"\" table\"");
        assert_eq!(TableName::new("a b", "C").quoted(), "\"a b\".\"C\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn table_lists_honour_quotes() {
        let refs =
            parse_table_list("users, commerce.products,\"My Schema\".\"Tab.le, x\"").unwrap();
        assert_eq!(refs.len(), 3);
        assert_eq!(
            refs[0],
            TableRef {
                schema: None,
                name: part("users", false)
            }
        );
        assert_eq!(refs[1].schema, Some(part("commerce", false)));
        assert_eq!(refs[2].schema, Some(part("My Schema", true)));
        assert_eq!(refs[2].name, part("Tab.le, x", true));
        let refs = parse_table_list("\"say \"\"hi\"\"\"").unwrap();
        assert_eq!(refs[0].name, part("say \"hi\"", true));
    }

    #[test]
    fn bad_table_lists_are_rejected() {
        assert!(parse_table_list("a.b.c").is_err());
        assert!(parse_table_list("\"unclosed").is_err());
        assert!(parse_table_list(".x").is_err());
        assert_eq!(parse_table_list("a,,b").unwrap().len(), 2);
    }
}
