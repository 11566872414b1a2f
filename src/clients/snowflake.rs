//! The Snowflake client (reqwest), speaking the protocol the official connectors use: the sink of
//! `cdcctl load --sink snowflake`, and the warehouse side of `health`.
//!
//! - **Login** (`POST /session/v1/login-request`) with a password, or with a key pair: a JWT
//!   (RS256) signed by the user's PEM private key (PKCS#8, PKCS#8 encrypted with a passphrase, or
//!   PKCS#1), whose issuer names the SHA-256 fingerprint of the public key. The session's role,
//!   warehouse, database and schema are set at login.
//! - **Queries** (`POST /queries/v1/query-request`, `Authorization: Snowflake Token="…"`) with
//!   bound parameters: positional ([`Bind`]) or array binding (many rows in one `INSERT`,
//!   [`Snowflake::insert_rows`]). Values are never part of the statement text.
//! - **Results**: JSON rowsets and base64 Arrow IPC rowsets, plus result chunks fetched from
//!   their URLs, all turned into text cells in one documented form ([`QueryResult`]); a query
//!   still running (codes 333333/333334) is polled at its result URL until it ends.
//! - **Errors** keep Snowflake's code, SQL state, message and query id ([`SnowflakeError`]).
//! - **Retries** with exponential backoff and jitter when the endpoint cannot be reached, is
//!   throttled (429) or fails (5xx); a statement that may have run on the server is only sent
//!   again when the caller says it is idempotent ([`Retry`]). An expired session is renewed with
//!   the master token (or by logging in again) and the statement resent: it never ran.
//!
//! No CLI knowledge here: secrets (password, passphrase, tokens) never appear in errors or logs.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Cursor;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Field};
use base64::Engine as _;
use chrono::{DateTime, FixedOffset, NaiveDate};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::config::{Secret, SnowflakeConfig};
use crate::error::CliError;

/// Human name of the service, for errors.
pub const SERVICE: &str = "Snowflake";
/// How long to wait for the TCP (and TLS) connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one HTTP request may take. Snowflake answers a long query after ~45 s with
/// "still running" and a result URL, so this bounds one exchange, not a query.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts of a retried request (the first included).
pub const MAX_ATTEMPTS: u32 = 6;
/// Wait before the first retry; doubled each time (with jitter), capped at [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Longest a running query is polled for.
pub const MAX_QUERY_TIME: Duration = Duration::from_secs(3600);
/// A key-pair JWT is valid this long (Snowflake accepts at most one hour).
const JWT_LIFETIME: Duration = Duration::from_secs(59 * 60);

/// Codes of a query that is still running.
const QUERY_IN_PROGRESS: &[&str] = &["333333", "333334"];
/// Codes meaning the session token expired or is unknown: renew or log in again.
const SESSION_EXPIRED: &[&str] = &["390112", "390104", "390111"];

/// What went wrong talking to Snowflake.
#[derive(Debug, thiserror::Error)]
pub enum SnowflakeError {
    /// The statement (or login) was answered with an error: Snowflake's own code, SQL state and
    /// message, verbatim.
    #[error(
        "Snowflake error {code}{}: {message}{}",
        state_suffix(sql_state),
        query_suffix(query_id)
    )]
    Query {
        /// Snowflake's error code, e.g. `002003`.
        code: String,
        /// The SQL state, e.g. `42S02`.
        sql_state: Option<String>,
        /// The message.
        message: String,
        /// The query id, when the statement got one.
        query_id: Option<String>,
    },
    /// The login was refused (wrong user, password or key; locked user; unknown account).
    #[error("Snowflake refused the login of user `{user}`: {message} (code {code})")]
    Login {
        /// The user name.
        user: String,
        /// Snowflake's code, e.g. `390100`.
        code: String,
        /// The message.
        message: String,
    },
    /// The endpoint answered with something that is not the protocol.
    #[error("unexpected answer from Snowflake to {what}: {detail}")]
    Protocol {
        /// The request.
        what: String,
        /// What was wrong with it.
        detail: String,
    },
}

fn state_suffix(state: &Option<String>) -> String {
    state
        .as_deref()
        .map_or_else(String::new, |s| format!(" ({s})"))
}

fn query_suffix(query_id: &Option<String>) -> String {
    query_id
        .as_deref()
        .map_or_else(String::new, |q| format!(" [query id {q}]"))
}

impl SnowflakeError {
    /// Snowflake's error code, when the server gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            SnowflakeError::Query { code, .. } | SnowflakeError::Login { code, .. } => Some(code),
            SnowflakeError::Protocol { .. } => None,
        }
    }

    /// The SQL state of a failed statement.
    pub fn sql_state(&self) -> Option<&str> {
        match self {
            SnowflakeError::Query { sql_state, .. } => sql_state.as_deref(),
            _ => None,
        }
    }
}

/// Whether a statement may be sent again after a failure that happened once it reached the
/// server (a timeout, a 5xx): it may have run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Running it twice has the effect of running it once (`SELECT`, `CREATE OR REPLACE`, the
    /// loader's LSN-guarded `MERGE`).
    Idempotent,
    /// Send once after it reached the server; only failures before that are retried.
    Once,
}

/// One bound parameter (Snowflake's binding types); `None` binds SQL NULL.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    /// `TEXT`.
    Text(Option<String>),
    /// `FIXED` (an integer).
    Fixed(Option<i64>),
    /// `BOOLEAN`.
    Boolean(Option<bool>),
    /// `REAL`.
    Real(Option<f64>),
}

impl Bind {
    fn kind(&self) -> &'static str {
        match self {
            Bind::Text(_) => "TEXT",
            Bind::Fixed(_) => "FIXED",
            Bind::Boolean(_) => "BOOLEAN",
            Bind::Real(_) => "REAL",
        }
    }

    /// The value as the protocol sends it: text, or null.
    fn text(&self) -> Option<String> {
        match self {
            Bind::Text(v) => v.clone(),
            Bind::Fixed(v) => v.map(|v| v.to_string()),
            Bind::Boolean(v) => v.map(|v| v.to_string()),
            Bind::Real(v) => v.map(|v| v.to_string()),
        }
    }
}

/// The `bindings` object of a request with positional parameters `?`.
pub fn bindings(values: &[Bind]) -> Json {
    let map: serde_json::Map<String, Json> = values
        .iter()
        .enumerate()
        .map(|(i, b)| {
            (
                (i + 1).to_string(),
                json!({"type": b.kind(), "value": b.text()}),
            )
        })
        .collect();
    Json::Object(map)
}

/// The `bindings` object of an array binding: per column its type and one value per row.
/// Null cells are bound as `TEXT` nulls whatever the column (Snowflake converts them).
pub fn array_bindings(columns: &[(&str, Vec<Option<String>>)]) -> Json {
    let map: serde_json::Map<String, Json> = columns
        .iter()
        .enumerate()
        .map(|(i, (kind, values))| ((i + 1).to_string(), json!({"type": kind, "value": values})))
        .collect();
    Json::Object(map)
}

/// A column of a result.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ResultColumn {
    /// Column name.
    pub name: String,
    /// Snowflake's type: `fixed`, `real`, `text`, `boolean`, `date`, `time`, `timestamp_ntz`,
    /// `timestamp_ltz`, `timestamp_tz`, `binary`, `variant`, `object`, `array`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Precision of `fixed`.
    #[serde(default)]
    pub precision: Option<i64>,
    /// Scale of `fixed`, fractional digits of times.
    #[serde(default)]
    pub scale: Option<i64>,
}

/// How the rows came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultFormat {
    /// A JSON rowset.
    Json,
    /// Base64 Arrow IPC.
    Arrow,
}

/// The result of a statement. Every cell is text (or `None` for NULL), in one form whatever
/// the wire format: numbers exact (`12.30` keeps its scale), booleans `true`/`false`, dates
/// `2024-01-31`, times `13:45:00.123456`, timestamps `2024-01-31 13:45:00.123456` and, with
/// zone, `2024-01-31 13:45:00.123456+01:00` (fractions only as long as needed), binary as
/// lower-case hex, semi-structured values as their JSON text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    /// The query id.
    pub query_id: Option<String>,
    /// The wire format of the first rowset.
    pub format: ResultFormat,
    /// The columns.
    pub columns: Vec<ResultColumn>,
    /// The rows.
    pub rows: Vec<Vec<Option<String>>>,
}

impl QueryResult {
    /// Rows inserted, updated and deleted by a DML statement: the sum of its
    /// `number of rows …` columns (0 for other statements).
    pub fn rows_affected(&self) -> u64 {
        let mut total = 0;
        for (i, column) in self.columns.iter().enumerate() {
            if !column
                .name
                .to_ascii_lowercase()
                .starts_with("number of rows")
            {
                continue;
            }
            for row in &self.rows {
                if let Some(Some(v)) = row.get(i) {
                    total += v.parse::<u64>().unwrap_or(0);
                }
            }
        }
        total
    }

    /// The first cell of the first row.
    pub fn scalar(&self) -> Option<&str> {
        self.rows.first()?.first()?.as_deref()
    }
}

/// How the client proves who it is.
enum Credentials {
    Password(Secret),
    KeyPair {
        /// PKCS#1 DER of the private key, for signing.
        der: Secret,
        /// `SHA256:<base64>` of the public key.
        fingerprint: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Password(_) => f.write_str("Password(****)"),
            Credentials::KeyPair { fingerprint, .. } => write!(f, "KeyPair({fingerprint})"),
        }
    }
}

/// Tokens of a logged-in session.
#[derive(Clone)]
struct Tokens {
    session: Secret,
    master: Option<Secret>,
}

/// A Snowflake connection: one session, logged in on first use, renewed when it expires.
pub struct Snowflake {
    http: reqwest::Client,
    base: url::Url,
    endpoint: String,
    account: String,
    user: String,
    credentials: Credentials,
    role: Option<String>,
    warehouse: Option<String>,
    database: String,
    schema: String,
    tokens: Mutex<Option<Tokens>>,
    sequence: std::sync::atomic::AtomicU64,
    logins: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Snowflake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snowflake")
            .field("endpoint", &self.endpoint)
            .field("user", &self.user)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Snowflake {
    /// A client for the configured account; reads (and checks) the private key when one is
    /// configured. Nothing is sent until the first statement.
    pub fn new(config: &SnowflakeConfig) -> Result<Self> {
        let base = url::Url::parse(&config.url).map_err(|e| CliError::ConfigValue {
            key: "snowflake.url".into(),
            origin: "the configuration".into(),
            message: format!("`{}` is not a URL ({e})", config.url),
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(CliError::ConfigValue {
                key: "snowflake.url".into(),
                origin: "the configuration".into(),
                message: format!("`{}` is not an http(s) URL", config.url),
            }
            .into());
        }
        let credentials = match (&config.private_key_path, &config.password) {
            (Some(path), _) => read_private_key(path, config.private_key_passphrase.as_ref())?,
            (None, Some(password)) => Credentials::Password(password.clone()),
            (None, None) => {
                return Err(CliError::Usage {
                    message: "no Snowflake credentials: neither a password nor a private key \
                              is configured"
                        .into(),
                    hint: Some(
                        "set SNOWFLAKE_PASSWORD, or SNOWFLAKE_PRIVATE_KEY_PATH (and \
                         SNOWFLAKE_PRIVATE_KEY_PASSPHRASE for an encrypted key)"
                            .into(),
                    ),
                }
                .into());
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("cdcctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        let mut endpoint = base.clone();
        let _ = endpoint.set_password(None);
        let _ = endpoint.set_username("");
        Ok(Snowflake {
            http,
            endpoint: endpoint.as_str().trim_end_matches('/').to_string(),
            base,
            account: config.account.clone(),
            user: config.user.clone(),
            credentials,
            role: config.role.clone(),
            warehouse: config.warehouse.clone(),
            database: config.database.clone(),
            schema: config.schema.clone(),
            tokens: Mutex::new(None),
            sequence: std::sync::atomic::AtomicU64::new(1),
            logins: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The endpoint URL (no credentials), for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// How many times this client logged in (once, plus once per session it could not renew).
    pub fn logins(&self) -> u64 {
        self.logins.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The session's database.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The session's schema.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Runs one statement with positional parameters.
    pub async fn query(&self, sql: &str, binds: &[Bind], retry: Retry) -> Result<QueryResult> {
        let bindings = (!binds.is_empty()).then(|| bindings(binds));
        self.execute(sql, bindings, retry).await
    }

    /// Runs an `INSERT … VALUES (?, …)` once for many rows with array binding: `columns` holds
    /// per placeholder its binding type (`TEXT`, `FIXED`, …) and one value per row. Returns
    /// the rows inserted.
    pub async fn insert_rows(
        &self,
        sql: &str,
        columns: &[(&str, Vec<Option<String>>)],
    ) -> Result<u64> {
        let rows = columns.first().map_or(0, |(_, v)| v.len());
        if let Some((_, bad)) = columns.iter().find(|(_, v)| v.len() != rows) {
            anyhow::bail!(
                "array binding needs the same number of values per column ({rows} and {})",
                bad.len()
            );
        }
        if rows == 0 {
            return Ok(0);
        }
        let result = self
            .execute(sql, Some(array_bindings(columns)), Retry::Once)
            .await?;
        Ok(result.rows_affected())
    }

    /// The token a key-pair login sends, issued at `now` (seconds since the epoch); `None`
    /// with password authentication. For checking a key setup (`cdcctl health`, tests).
    pub fn login_token(&self, now: i64) -> Result<Option<String>> {
        match &self.credentials {
            Credentials::Password(_) => Ok(None),
            Credentials::KeyPair { der, fingerprint } => Ok(Some(key_pair_jwt(
                &self.account,
                &self.user,
                fingerprint,
                der,
                now,
            )?)),
        }
    }

    /// Ends the session on the server but keeps its token, as if it had expired: the next
    /// statement is refused, renews the session and is sent again. For tests.
    #[doc(hidden)]
    pub async fn expire_session(&self) -> Result<()> {
        let tokens = self.tokens().await?;
        let mut url = self.url("session")?;
        url.query_pairs_mut().append_pair("delete", "true");
        self.http
            .post(url)
            .header("Authorization", auth_header(&tokens.session))
            .header("Accept", "application/json")
            .send()
            .await
            .context("cannot end the session")?;
        Ok(())
    }

    /// Logs out (best effort): the session ends now instead of timing out on the server.
    pub async fn logout(&self) {
        let tokens = self.tokens.lock().ok().and_then(|mut t| t.take());
        let Some(tokens) = tokens else {
            return;
        };
        let Ok(mut url) = self.base.join("session") else {
            return;
        };
        url.query_pairs_mut().append_pair("delete", "true");
        let _ = self
            .http
            .post(url)
            .header("Authorization", auth_header(&tokens.session))
            .header("Accept", "application/json")
            .timeout(Duration::from_secs(5))
            .send()
            .await;
    }

    async fn execute(
        &self,
        sql: &str,
        bindings: Option<Json>,
        retry: Retry,
    ) -> Result<QueryResult> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let sequence = self
            .sequence
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut body = json!({
            "sqlText": sql,
            "asyncExec": false,
            "sequenceId": sequence,
            "querySubmissionTime": chrono::Utc::now().timestamp_millis(),
        });
        if let Some(bindings) = bindings {
            body["bindings"] = bindings;
        }
        let mut renewed = false;
        loop {
            let tokens = self.tokens().await?;
            let mut url = self.url("queries/v1/query-request")?;
            url.query_pairs_mut().append_pair("requestId", &request_id);
            let answer = self
                .send(&url, &body, Some(&tokens.session), retry, "a query")
                .await?;
            let answer = self.wait_while_running(answer, &tokens.session).await?;
            if !answer.success && is_code(&answer, SESSION_EXPIRED) && !renewed {
                // The statement never ran: renew the session and send it again.
                renewed = true;
                self.renew(&tokens).await?;
                continue;
            }
            return self.result(answer).await;
        }
    }

    /// The current tokens, logging in first when there is no session.
    async fn tokens(&self) -> Result<Tokens> {
        if let Some(tokens) = self.tokens.lock().ok().and_then(|t| t.clone()) {
            return Ok(tokens);
        }
        let tokens = self.login().await?;
        if let Ok(mut slot) = self.tokens.lock() {
            *slot = Some(tokens.clone());
        }
        Ok(tokens)
    }

    async fn login(&self) -> Result<Tokens> {
        let mut url = self.url("session/v1/login-request")?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("request_id", &uuid::Uuid::new_v4().to_string());
            q.append_pair("databaseName", &self.database);
            q.append_pair("schemaName", &self.schema);
            if let Some(warehouse) = &self.warehouse {
                q.append_pair("warehouse", warehouse);
            }
            if let Some(role) = &self.role {
                q.append_pair("roleName", role);
            }
        }
        let mut data = json!({
            "CLIENT_APP_ID": "cdcctl",
            "CLIENT_APP_VERSION": env!("CARGO_PKG_VERSION"),
            "ACCOUNT_NAME": account_name(&self.account),
            "LOGIN_NAME": self.user,
            "CLIENT_ENVIRONMENT": {
                "APPLICATION": "cdcctl",
                "OS": std::env::consts::OS,
            },
            "SESSION_PARAMETERS": {
                "TIMEZONE": "UTC",
                "CLIENT_SESSION_KEEP_ALIVE": false,
            },
        });
        match &self.credentials {
            Credentials::Password(password) => {
                data["PASSWORD"] = Json::String(password.expose().to_string());
            }
            Credentials::KeyPair { der, fingerprint } => {
                data["AUTHENTICATOR"] = Json::String("SNOWFLAKE_JWT".into());
                data["TOKEN"] = Json::String(key_pair_jwt(
                    &self.account,
                    &self.user,
                    fingerprint,
                    der,
                    chrono::Utc::now().timestamp(),
                )?);
                tracing::debug!(fingerprint, "key-pair login");
            }
        }
        let answer = self
            .send(
                &url,
                &json!({ "data": data }),
                None,
                Retry::Idempotent,
                "the login",
            )
            .await?;
        if !answer.success {
            return Err(SnowflakeError::Login {
                user: self.user.clone(),
                code: answer.code.unwrap_or_default(),
                message: answer.message.unwrap_or_default(),
            }
            .into());
        }
        self.logins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let data = answer.data.unwrap_or(Json::Null);
        let token =
            data.get("token")
                .and_then(Json::as_str)
                .ok_or_else(|| SnowflakeError::Protocol {
                    what: "the login".into(),
                    detail: "no session token in the answer".into(),
                })?;
        let master = data
            .get("masterToken")
            .and_then(Json::as_str)
            .map(Secret::new);
        tracing::debug!(endpoint = %self.endpoint, user = %self.user, "logged in to Snowflake");
        Ok(Tokens {
            session: Secret::new(token),
            master,
        })
    }

    /// Renews an expired session with the master token; logs in again when that fails.
    async fn renew(&self, expired: &Tokens) -> Result<()> {
        let mut renewed = None;
        if let Some(master) = &expired.master {
            let mut url = self.url("session/token-request")?;
            url.query_pairs_mut()
                .append_pair("requestId", &uuid::Uuid::new_v4().to_string());
            let body = json!({
                "oldSessionToken": expired.session.expose(),
                "requestType": "RENEW",
            });
            if let Ok(answer) = self
                .send(
                    &url,
                    &body,
                    Some(master),
                    Retry::Idempotent,
                    "the session renewal",
                )
                .await
                && answer.success
                && let Some(token) = answer
                    .data
                    .as_ref()
                    .and_then(|d| d.get("sessionToken"))
                    .and_then(Json::as_str)
            {
                let master = answer
                    .data
                    .as_ref()
                    .and_then(|d| d.get("masterToken"))
                    .and_then(Json::as_str)
                    .map(Secret::new)
                    .or_else(|| expired.master.clone());
                renewed = Some(Tokens {
                    session: Secret::new(token),
                    master,
                });
            }
        }
        let tokens = match renewed {
            Some(tokens) => tokens,
            None => self.login().await?,
        };
        tracing::debug!("renewed the Snowflake session");
        if let Ok(mut slot) = self.tokens.lock() {
            *slot = Some(tokens);
        }
        Ok(())
    }

    fn url(&self, path: &str) -> Result<url::Url> {
        let mut base = self.base.clone();
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        base.join(path)
            .with_context(|| format!("cannot build the URL of `{path}`"))
    }

    /// One POST with the retry policy (module doc); the answer is Snowflake's envelope.
    async fn send(
        &self,
        url: &url::Url,
        body: &Json,
        token: Option<&Secret>,
        retry: Retry,
        what: &str,
    ) -> Result<Answer> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .post(url.clone())
                .header("Accept", "application/json")
                .json(body);
            if let Some(token) = token {
                request = request.header("Authorization", auth_header(token));
            }
            let failure = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() || status == StatusCode::UNAUTHORIZED {
                        let text = response.text().await.map_err(|e| {
                            anyhow::Error::new(e)
                                .context(format!("cannot read the answer to {what}"))
                        })?;
                        return parse_answer(&text, what);
                    }
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS
                        || (status.is_server_error() && retry == Retry::Idempotent);
                    let text = response.text().await.unwrap_or_default();
                    if !retryable || attempt >= MAX_ATTEMPTS {
                        // Snowflake's envelope, when it sent one, says more than the status.
                        if let Ok(answer) = parse_answer(&text, what)
                            && !answer.success
                        {
                            return Ok(answer);
                        }
                        return Err(SnowflakeError::Protocol {
                            what: what.into(),
                            detail: format!("HTTP {status}: {}", truncate(&text, 300)),
                        }
                        .into());
                    }
                    format!("HTTP {status}")
                }
                Err(e) => {
                    // Not connected: it never reached the server. Timed out or reset after
                    // sending: it may have run.
                    let before_sending = e.is_connect();
                    if !(before_sending || retry == Retry::Idempotent) || attempt >= MAX_ATTEMPTS {
                        if before_sending || e.is_timeout() {
                            return Err(CliError::Unreachable {
                                service: SERVICE.into(),
                                endpoint: self.endpoint.clone(),
                                source: Some(anyhow::Error::new(e.without_url())),
                            }
                            .into());
                        }
                        return Err(anyhow::Error::new(e.without_url())
                            .context(format!("{what} to Snowflake failed")));
                    }
                    e.without_url().to_string()
                }
            };
            let wait = backoff(attempt);
            tracing::debug!(attempt, ?wait, %failure, "retrying {what}");
            tokio::time::sleep(wait).await;
        }
    }

    /// Polls the result URL of a query that is still running.
    async fn wait_while_running(&self, mut answer: Answer, token: &Secret) -> Result<Answer> {
        let started = Instant::now();
        let mut attempt = 0;
        while is_code(&answer, QUERY_IN_PROGRESS) {
            let Some(path) = answer
                .data
                .as_ref()
                .and_then(|d| d.get("getResultUrl"))
                .and_then(Json::as_str)
            else {
                return Err(SnowflakeError::Protocol {
                    what: "a running query".into(),
                    detail: "no result URL to poll".into(),
                }
                .into());
            };
            if started.elapsed() > MAX_QUERY_TIME {
                anyhow::bail!(
                    "the query ran longer than {} s; it keeps running in Snowflake",
                    MAX_QUERY_TIME.as_secs()
                );
            }
            attempt += 1;
            tokio::time::sleep(backoff(attempt).min(Duration::from_secs(2))).await;
            let url = self.url(path.trim_start_matches('/'))?;
            let response = self
                .http
                .get(url)
                .header("Accept", "application/json")
                .header("Authorization", auth_header(token))
                .send()
                .await
                .map_err(|e| CliError::Unreachable {
                    service: SERVICE.into(),
                    endpoint: self.endpoint.clone(),
                    source: Some(anyhow::Error::new(e.without_url())),
                })?;
            let text = response
                .text()
                .await
                .context("cannot read the answer of a running query")?;
            answer = parse_answer(&text, "a running query")?;
        }
        Ok(answer)
    }

    /// Turns a final answer into rows (fetching result chunks) or a typed error.
    async fn result(&self, answer: Answer) -> Result<QueryResult> {
        let data = answer.data.unwrap_or(Json::Null);
        if !answer.success {
            return Err(SnowflakeError::Query {
                code: answer.code.unwrap_or_default(),
                sql_state: data
                    .get("sqlState")
                    .and_then(Json::as_str)
                    .map(str::to_owned),
                message: answer.message.unwrap_or_default(),
                query_id: data
                    .get("queryId")
                    .and_then(Json::as_str)
                    .map(str::to_owned),
            }
            .into());
        }
        let mut result = parse_result(&data)?;
        if let Some(chunks) = data.get("chunks").and_then(Json::as_array) {
            let headers = chunk_headers(&data);
            for chunk in chunks {
                let Some(url) = chunk.get("url").and_then(Json::as_str) else {
                    continue;
                };
                let mut request = self.http.get(url);
                for (name, value) in &headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                let bytes = request
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| anyhow::Error::new(e.without_url()))
                    .context("cannot fetch a result chunk")?
                    .bytes()
                    .await
                    .context("cannot read a result chunk")?;
                let rows = match result.format {
                    ResultFormat::Arrow => arrow_rows(&bytes, &result.columns)?,
                    ResultFormat::Json => json_chunk_rows(&bytes, &result.columns)?,
                };
                result.rows.extend(rows);
            }
        }
        Ok(result)
    }
}

/// Snowflake's response envelope.
#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    data: Option<Json>,
    #[serde(default)]
    success: bool,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

fn parse_answer(text: &str, what: &str) -> Result<Answer> {
    serde_json::from_str(text).map_err(|e| {
        SnowflakeError::Protocol {
            what: what.into(),
            detail: format!("not Snowflake's JSON ({e}): {}", truncate(text, 200)),
        }
        .into()
    })
}

fn is_code(answer: &Answer, codes: &[&str]) -> bool {
    answer
        .code
        .as_deref()
        .is_some_and(|code| codes.contains(&code))
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

fn auth_header(token: &Secret) -> String {
    format!("Snowflake Token=\"{}\"", token.expose())
}

/// Exponential backoff with jitter: 250 ms, 500 ms, 1 s, … capped at [`MAX_BACKOFF`], each
/// between half and all of that.
fn backoff(attempt: u32) -> Duration {
    let full = FIRST_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let jitter = rand::random::<f64>() * 0.5 + 0.5;
    full.mul_f64(jitter)
}

/// The account name as the login and the JWT want it: upper case, without region or cloud
/// (`xy12345.us-east-1` → `XY12345`; `myorg-acct` stays `MYORG-ACCT`).
pub fn account_name(account: &str) -> String {
    let account = account.trim();
    let account = account
        .strip_suffix(".snowflakecomputing.com")
        .unwrap_or(account);
    account
        .split('.')
        .next()
        .unwrap_or(account)
        .to_ascii_uppercase()
}

/// Reads a PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`), encrypted PKCS#8 (`BEGIN ENCRYPTED
/// PRIVATE KEY`, with the passphrase) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
fn read_private_key(path: &Path, passphrase: Option<&Secret>) -> Result<Credentials> {
    use pkcs8::{DecodePrivateKey, EncodePublicKey};
    use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};

    let bad = |message: String, hint: &str| CliError::Usage {
        message,
        hint: Some(hint.into()),
    };
    let shown = path.display();
    let pem = std::fs::read_to_string(path).map_err(|e| {
        bad(
            format!("cannot read the Snowflake private key `{shown}`: {e}"),
            "set snowflake.private_key_path (SNOWFLAKE_PRIVATE_KEY_PATH) to a PEM file",
        )
    })?;
    let key = if pem.contains("BEGIN ENCRYPTED PRIVATE KEY") {
        let Some(passphrase) = passphrase else {
            return Err(bad(
                format!(
                    "the Snowflake private key `{shown}` is encrypted and no passphrase is set"
                ),
                "set SNOWFLAKE_PRIVATE_KEY_PASSPHRASE",
            )
            .into());
        };
        rsa::RsaPrivateKey::from_pkcs8_encrypted_pem(&pem, passphrase.expose().as_bytes()).map_err(
            |e| {
                bad(
                    format!("cannot decrypt the Snowflake private key `{shown}` ({e})"),
                    "check SNOWFLAKE_PRIVATE_KEY_PASSPHRASE",
                )
            },
        )?
    } else if pem.contains("BEGIN RSA PRIVATE KEY") {
        rsa::RsaPrivateKey::from_pkcs1_pem(&pem).map_err(|e| {
            bad(
                format!("`{shown}` is not a valid PKCS#1 RSA private key ({e})"),
                "generate one with `openssl genrsa 2048 | openssl pkcs8 -topk8 -nocrypt`",
            )
        })?
    } else {
        rsa::RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|e| {
            bad(
                format!("`{shown}` is not a PEM RSA private key ({e})"),
                "generate one with `openssl genrsa 2048 | openssl pkcs8 -topk8 -nocrypt`",
            )
        })?
    };
    let public = key
        .to_public_key()
        .to_public_key_der()
        .context("cannot encode the public key")?;
    let fingerprint = public_key_fingerprint(public.as_bytes());
    let der = key
        .to_pkcs1_der()
        .context("cannot encode the private key")?;
    Ok(Credentials::KeyPair {
        der: Secret::new(base64::engine::general_purpose::STANDARD.encode(der.as_bytes())),
        fingerprint,
    })
}

/// `SHA256:` and the base64 SHA-256 of the DER public key: what `DESCRIBE USER` shows as
/// `RSA_PUBLIC_KEY_FP`.
pub fn public_key_fingerprint(public_der: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(public_der);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The claims of a key-pair login.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct JwtClaims {
    /// `ACCOUNT.USER.SHA256:…`.
    pub iss: String,
    /// `ACCOUNT.USER`.
    pub sub: String,
    /// Issued at (seconds).
    pub iat: i64,
    /// Expires (seconds).
    pub exp: i64,
}

/// The JWT of a key-pair login, issued at `now` (seconds).
fn key_pair_jwt(
    account: &str,
    user: &str,
    fingerprint: &str,
    der_base64: &Secret,
    now: i64,
) -> Result<String> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(der_base64.expose())
        .context("the private key was not kept intact")?;
    let qualified = format!("{}.{}", account_name(account), user.to_ascii_uppercase());
    let claims = JwtClaims {
        iss: format!("{qualified}.{fingerprint}"),
        sub: qualified,
        iat: now,
        exp: now + JWT_LIFETIME.as_secs() as i64,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_der(&der),
    )
    .context("cannot sign the key-pair login token")
}

/// The headers a chunk download needs: `chunkHeaders`, or the key `qrmk` of older answers.
fn chunk_headers(data: &Json) -> Vec<(String, String)> {
    if let Some(headers) = data.get("chunkHeaders").and_then(Json::as_object) {
        return headers
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect();
    }
    match data.get("qrmk").and_then(Json::as_str) {
        Some(key) => vec![
            (
                "x-amz-server-side-encryption-customer-algorithm".into(),
                "AES256".into(),
            ),
            (
                "x-amz-server-side-encryption-customer-key".into(),
                key.into(),
            ),
        ],
        None => Vec::new(),
    }
}

/// The columns and first rowset of a successful answer's `data`.
pub fn parse_result(data: &Json) -> Result<QueryResult> {
    let columns: Vec<ResultColumn> = match data.get("rowtype") {
        Some(rowtype) => {
            serde_json::from_value(rowtype.clone()).map_err(|e| SnowflakeError::Protocol {
                what: "a query".into(),
                detail: format!("bad rowtype ({e})"),
            })?
        }
        None => Vec::new(),
    };
    let query_id = data
        .get("queryId")
        .and_then(Json::as_str)
        .map(str::to_owned);
    let format = match data.get("queryResultFormat").and_then(Json::as_str) {
        Some("arrow") => ResultFormat::Arrow,
        _ => ResultFormat::Json,
    };
    let rows = match format {
        ResultFormat::Arrow => {
            let encoded = data
                .get("rowsetBase64")
                .and_then(Json::as_str)
                .unwrap_or("");
            if encoded.is_empty() {
                Vec::new()
            } else {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|e| SnowflakeError::Protocol {
                        what: "a query".into(),
                        detail: format!("rowsetBase64 is not base64 ({e})"),
                    })?;
                arrow_rows(&bytes, &columns)?
            }
        }
        ResultFormat::Json => match data.get("rowset") {
            Some(Json::Array(rows)) => rows
                .iter()
                .map(|row| json_row(row, &columns))
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        },
    };
    Ok(QueryResult {
        query_id,
        format,
        columns,
        rows,
    })
}

/// The rows of a JSON result chunk: rows separated by commas, without the outer brackets.
fn json_chunk_rows(bytes: &[u8], columns: &[ResultColumn]) -> Result<Vec<Vec<Option<String>>>> {
    let mut wrapped = Vec::with_capacity(bytes.len() + 2);
    wrapped.push(b'[');
    wrapped.extend_from_slice(bytes);
    wrapped.push(b']');
    let rows: Vec<Json> =
        serde_json::from_slice(&wrapped).map_err(|e| SnowflakeError::Protocol {
            what: "a result chunk".into(),
            detail: format!("not JSON rows ({e})"),
        })?;
    rows.iter().map(|row| json_row(row, columns)).collect()
}

fn json_row(row: &Json, columns: &[ResultColumn]) -> Result<Vec<Option<String>>> {
    let Json::Array(cells) = row else {
        return Err(SnowflakeError::Protocol {
            what: "a query".into(),
            detail: "a rowset row is not an array".into(),
        }
        .into());
    };
    cells
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            let text = match cell {
                Json::Null => return Ok(None),
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            match columns.get(i) {
                Some(column) => json_cell(&text, column).map(Some),
                None => Ok(Some(text)),
            }
        })
        .collect()
}

/// One JSON rowset cell in the result's text form ([`QueryResult`]). JSON rowsets encode
/// dates as days, times and timestamps as `seconds.fraction` since midnight / the epoch, and
/// `TIMESTAMP_TZ` as `seconds.fraction offset` with the offset in minutes plus 1440.
pub fn json_cell(text: &str, column: &ResultColumn) -> Result<String> {
    let bad = || SnowflakeError::Protocol {
        what: "a query".into(),
        detail: format!("`{text}` is not a {} value", column.kind),
    };
    Ok(match column.kind.as_str() {
        "boolean" => match text.to_ascii_lowercase().as_str() {
            "1" | "true" => "true".into(),
            "0" | "false" => "false".into(),
            _ => return Err(bad().into()),
        },
        "date" => {
            let days: i64 = text.parse().map_err(|_| bad())?;
            format_date(days).ok_or_else(bad)?
        }
        "time" => {
            let nanos = decimal_nanos(text).ok_or_else(bad)?;
            format_time(nanos).ok_or_else(bad)?
        }
        "timestamp_ntz" | "timestamp_ltz" => {
            let nanos = decimal_nanos(text).ok_or_else(bad)?;
            format_timestamp(nanos, None).ok_or_else(bad)?
        }
        "timestamp_tz" => {
            let (instant, offset) = text.split_once(' ').ok_or_else(bad)?;
            let nanos = decimal_nanos(instant).ok_or_else(bad)?;
            let tz: i32 = offset.parse().map_err(|_| bad())?;
            format_timestamp(nanos, Some(tz - 1440)).ok_or_else(bad)?
        }
        "binary" => text.to_ascii_lowercase(),
        _ => text.to_string(),
    })
}

/// `seconds[.fraction]` (possibly negative) as nanoseconds.
fn decimal_nanos(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || fraction.len() > 9 {
        return None;
    }
    let whole: i128 = whole.parse().ok()?;
    let fraction: i128 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().ok()?
    };
    let nanos = whole * 1_000_000_000 + fraction;
    Some(if negative { -nanos } else { nanos })
}

fn format_date(days: i64) -> Option<String> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    let date = epoch.checked_add_signed(chrono::Duration::try_days(days)?)?;
    Some(date.format("%Y-%m-%d").to_string())
}

fn format_time(nanos: i128) -> Option<String> {
    let secs = u32::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
    let frac = u32::try_from(nanos.rem_euclid(1_000_000_000)).ok()?;
    let time = chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs, frac)?;
    Some(time.format("%H:%M:%S%.f").to_string())
}

/// A timestamp from nanoseconds since the epoch; with an offset in minutes, the local time
/// at that offset and the offset.
fn format_timestamp(nanos: i128, offset_minutes: Option<i32>) -> Option<String> {
    let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
    let frac = u32::try_from(nanos.rem_euclid(1_000_000_000)).ok()?;
    let utc = DateTime::from_timestamp(secs, frac)?;
    Some(match offset_minutes {
        None => utc.naive_utc().format("%Y-%m-%d %H:%M:%S%.f").to_string(),
        Some(minutes) => {
            let offset = FixedOffset::east_opt(minutes.checked_mul(60)?)?;
            utc.with_timezone(&offset)
                .format("%Y-%m-%d %H:%M:%S%.f%:z")
                .to_string()
        }
    })
}

/// Decimal text of an unscaled integer with `scale` fractional digits.
fn scaled(unscaled: i128, scale: u32) -> String {
    if scale == 0 {
        return unscaled.to_string();
    }
    let digits = unscaled.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    let sign = if unscaled < 0 { "-" } else { "" };
    format!("{sign}{whole}.{fraction}")
}

/// The rows of an Arrow IPC stream, in the result's text form.
fn arrow_rows(bytes: &[u8], columns: &[ResultColumn]) -> Result<Vec<Vec<Option<String>>>> {
    let reader =
        arrow_ipc::reader::StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| {
            SnowflakeError::Protocol {
                what: "a query".into(),
                detail: format!("the Arrow rowset cannot be read ({e})"),
            }
        })?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| SnowflakeError::Protocol {
            what: "a query".into(),
            detail: format!("the Arrow rowset cannot be read ({e})"),
        })?;
        append_batch(&batch, columns, &mut rows)?;
    }
    Ok(rows)
}

fn append_batch(
    batch: &RecordBatch,
    columns: &[ResultColumn],
    rows: &mut Vec<Vec<Option<String>>>,
) -> Result<()> {
    let schema = batch.schema();
    let first = rows.len();
    rows.extend((0..batch.num_rows()).map(|_| Vec::with_capacity(batch.num_columns())));
    for (c, array) in batch.columns().iter().enumerate() {
        let field = schema.field(c);
        for r in 0..batch.num_rows() {
            let cell = arrow_cell(array.as_ref(), field, columns.get(c), r)?;
            rows[first + r].push(cell);
        }
    }
    Ok(())
}

/// The Snowflake type of an Arrow column: the rowtype's, else the field's `logicalType`.
fn logical_type(field: &Field, column: Option<&ResultColumn>) -> String {
    column
        .map(|c| c.kind.to_ascii_lowercase())
        .or_else(|| {
            field
                .metadata()
                .get("logicalType")
                .map(|t| t.to_ascii_lowercase())
        })
        .unwrap_or_default()
}

fn field_scale(field: &Field, column: Option<&ResultColumn>) -> u32 {
    field
        .metadata()
        .get("scale")
        .and_then(|s| s.parse().ok())
        .or_else(|| {
            column
                .and_then(|c| c.scale)
                .and_then(|s| u32::try_from(s).ok())
        })
        .unwrap_or(0)
}

/// One Arrow cell in the result's text form. Snowflake encodes `FIXED` as integers with the
/// scale in the field metadata, times and timestamps as integers of that scale or as
/// `{epoch, fraction[, timezone]}` structs.
fn arrow_cell(
    array: &dyn Array,
    field: &Field,
    column: Option<&ResultColumn>,
    row: usize,
) -> Result<Option<String>> {
    if array.is_null(row) {
        return Ok(None);
    }
    let kind = logical_type(field, column);
    let scale = field_scale(field, column);
    let integer = match array.data_type() {
        DataType::Int8 => Some(i128::from(array.as_primitive::<Int8Type>().value(row))),
        DataType::Int16 => Some(i128::from(array.as_primitive::<Int16Type>().value(row))),
        DataType::Int32 => Some(i128::from(array.as_primitive::<Int32Type>().value(row))),
        DataType::Int64 => Some(i128::from(array.as_primitive::<Int64Type>().value(row))),
        _ => None,
    };
    let unsupported = || SnowflakeError::Protocol {
        what: "a query".into(),
        detail: format!(
            "column `{}`: Arrow type {} for Snowflake type `{kind}` is not supported",
            field.name(),
            array.data_type()
        ),
    };
    if let Some(v) = integer {
        let nanos = || v.checked_mul(10_i128.pow(9_u32.saturating_sub(scale)));
        return Ok(Some(match kind.as_str() {
            "time" => nanos().and_then(format_time).ok_or_else(unsupported)?,
            "timestamp_ntz" | "timestamp_ltz" => nanos()
                .and_then(|n| format_timestamp(n, None))
                .ok_or_else(unsupported)?,
            "date" => format_date(v as i64).ok_or_else(unsupported)?,
            _ => scaled(v, scale),
        }));
    }
    Ok(Some(match array.data_type() {
        DataType::Decimal128(_, s) => {
            let v = array
                .as_primitive::<arrow_array::types::Decimal128Type>()
                .value(row);
            scaled(v, u32::try_from(*s).unwrap_or(0))
        }
        DataType::Float64 => array.as_primitive::<Float64Type>().value(row).to_string(),
        DataType::Float32 => array.as_primitive::<Float32Type>().value(row).to_string(),
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_string(),
        DataType::Boolean => array.as_boolean().value(row).to_string(),
        DataType::Date32 => format_date(i64::from(array.as_primitive::<Date32Type>().value(row)))
            .ok_or_else(unsupported)?,
        DataType::Binary => hex(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => hex(array.as_binary::<i64>().value(row)),
        DataType::FixedSizeBinary(_) => hex(array.as_fixed_size_binary().value(row)),
        DataType::Struct(_) => {
            let parts = array.as_struct();
            let int_of = |name: &str| -> Option<i64> {
                let child = parts.column_by_name(name)?;
                match child.data_type() {
                    DataType::Int64 => Some(child.as_primitive::<Int64Type>().value(row)),
                    DataType::Int32 => {
                        Some(i64::from(child.as_primitive::<Int32Type>().value(row)))
                    }
                    _ => None,
                }
            };
            let epoch = int_of("epoch").ok_or_else(unsupported)?;
            let fraction = int_of("fraction").unwrap_or(0);
            let nanos = i128::from(epoch) * 1_000_000_000 + i128::from(fraction);
            let offset = int_of("timezone").map(|tz| tz as i32 - 1440);
            let offset = if kind == "timestamp_tz" {
                offset.or(Some(0))
            } else {
                None
            };
            format_timestamp(nanos, offset).ok_or_else(unsupported)?
        }
        _ => return Err(unsupported().into()),
    }))
}

/// Lower-case hex, Snowflake's default binary text form.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Rows of a result by column name, for callers that read a few named columns.
pub fn rows_by_name(result: &QueryResult) -> Vec<BTreeMap<String, Option<String>>> {
    result
        .rows
        .iter()
        .map(|row| {
            result
                .columns
                .iter()
                .zip(row)
                .map(|(c, v)| (c.name.clone(), v.clone()))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(kind: &str, scale: Option<i64>) -> ResultColumn {
        ResultColumn {
            name: "C".into(),
            kind: kind.into(),
            precision: None,
            scale,
        }
    }

    #[test]
    fn json_cells_take_the_documented_text_form() {
        let cases = [
            ("boolean", "1", "true"),
            ("boolean", "FALSE", "false"),
            ("date", "19723", "2024-01-01"),
            ("date", "-1", "1969-12-31"),
            ("time", "49500.123456000", "13:45:00.123456"),
            (
                "timestamp_ntz",
                "1704164645.123456000",
                "2024-01-02 03:04:05.123456",
            ),
            ("timestamp_ntz", "-1.500000000", "1969-12-31 23:59:58.500"),
            (
                "timestamp_tz",
                "1704164645.000000000 1500",
                "2024-01-02 04:04:05+01:00",
            ),
            (
                "timestamp_tz",
                "1704164645.5 1440",
                "2024-01-02 03:04:05.500+00:00",
            ),
            ("fixed", "12.30", "12.30"),
            ("binary", "00FF", "00ff"),
            ("variant", "{\"a\":1}", "{\"a\":1}"),
        ];
        for (kind, wire, want) in cases {
            assert_eq!(
                json_cell(wire, &column(kind, None)).unwrap(),
                want,
                "{kind} {wire}"
            );
        }
        assert!(json_cell("yes", &column("boolean", None)).is_err());
        assert!(json_cell("1.5", &column("timestamp_tz", None)).is_err());
        assert!(json_cell("1.1234567890", &column("time", None)).is_err());
    }

    #[test]
    fn decimals_keep_their_scale_and_sign() {
        assert_eq!(scaled(1234, 2), "12.34");
        assert_eq!(scaled(-5, 3), "-0.005");
        assert_eq!(scaled(0, 2), "0.00");
        assert_eq!(scaled(-1234567, 0), "-1234567");
        assert_eq!(
            scaled(12_345_678_901_234_567_890_123_456_789_012_345_678, 2),
            "123456789012345678901234567890123456.78"
        );
    }

    #[test]
    fn dml_results_sum_their_counts_and_json_rowsets_parse() {
        let data = json!({
            "queryId": "01ab",
            "queryResultFormat": "json",
            "rowtype": [
                {"name": "number of rows inserted", "type": "fixed", "precision": 38, "scale": 0},
                {"name": "number of rows updated", "type": "fixed", "precision": 38, "scale": 0},
                {"name": "number of rows deleted", "type": "fixed", "precision": 38, "scale": 0}
            ],
            "rowset": [["3", "2", null]]
        });
        let result = parse_result(&data).unwrap();
        assert_eq!(result.format, ResultFormat::Json);
        assert_eq!(result.rows_affected(), 5);
        assert_eq!(result.query_id.as_deref(), Some("01ab"));
        assert_eq!(
            result.rows,
            vec![vec![Some("3".into()), Some("2".into()), None]]
        );
    }

    #[test]
    fn json_chunks_are_rows_without_brackets() {
        let columns = vec![column("fixed", Some(0)), column("date", None)];
        let rows = json_chunk_rows(br#"["1","0"],["2",null]"#, &columns).unwrap();
        assert_eq!(
            rows,
            vec![
                vec![Some("1".into()), Some("1970-01-01".into())],
                vec![Some("2".into()), None]
            ]
        );
        assert!(json_chunk_rows(b"[1", &columns).is_err());
    }

    #[test]
    fn arrow_rowsets_in_snowflake_encoding() {
        use arrow_array::{
            ArrayRef, BinaryArray, BooleanArray, Int32Array, Int64Array, StringArray, StructArray,
        };
        use arrow_schema::Schema;
        use std::collections::HashMap;
        use std::sync::Arc;

        let meta = |t: &str, scale: &str| {
            HashMap::from([
                ("logicalType".to_string(), t.to_string()),
                ("scale".to_string(), scale.to_string()),
            ])
        };
        let ts_fields = vec![
            Field::new("epoch", DataType::Int64, false),
            Field::new("fraction", DataType::Int32, false),
            Field::new("timezone", DataType::Int32, false),
        ];
        let tz = StructArray::new(
            ts_fields.clone().into(),
            vec![
                Arc::new(Int64Array::from(vec![1_704_164_645, 0])) as ArrayRef,
                Arc::new(Int32Array::from(vec![123_456_000, 0])) as ArrayRef,
                Arc::new(Int32Array::from(vec![1500, 1440])) as ArrayRef,
            ],
            None,
        );
        let fields = vec![
            Field::new("AMOUNT", DataType::Int64, true).with_metadata(meta("FIXED", "2")),
            Field::new("NAME", DataType::Utf8, true).with_metadata(meta("TEXT", "0")),
            Field::new("T", DataType::Int64, true).with_metadata(meta("TIME", "9")),
            Field::new("Z", DataType::Struct(ts_fields.into()), true)
                .with_metadata(meta("TIMESTAMP_TZ", "9")),
            Field::new("B", DataType::Binary, true).with_metadata(meta("BINARY", "0")),
            Field::new("OK", DataType::Boolean, true).with_metadata(meta("BOOLEAN", "0")),
        ];
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            vec![
                Arc::new(Int64Array::from(vec![Some(1234), None])),
                Arc::new(StringArray::from(vec![Some("a"), Some("b")])),
                Arc::new(Int64Array::from(vec![Some(49_500_123_456_000), Some(0)])),
                Arc::new(tz),
                Arc::new(BinaryArray::from(vec![Some(&[0_u8, 255][..]), None])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
            ],
        )
        .unwrap();
        let mut bytes = Vec::new();
        {
            let mut writer =
                arrow_ipc::writer::StreamWriter::try_new(&mut bytes, &batch.schema()).unwrap();
            writer.write(&batch).unwrap();
            writer.finish().unwrap();
        }
        let rows = arrow_rows(&bytes, &[]).unwrap();
        let text = |r: &[Option<String>]| -> Vec<String> {
            r.iter()
                .map(|c| c.clone().unwrap_or("NULL".into()))
                .collect()
        };
        assert_eq!(
            text(&rows[0]),
            [
                "12.34",
                "a",
                "13:45:00.123456",
                "2024-01-02 04:04:05.123456+01:00",
                "00ff",
                "true"
            ]
        );
        assert_eq!(
            text(&rows[1]),
            [
                "NULL",
                "b",
                "00:00:00",
                "1970-01-01 00:00:00+00:00",
                "NULL",
                "false"
            ]
        );
        assert!(arrow_rows(b"not arrow", &[]).is_err());
    }

    #[test]
    fn bindings_are_positional_and_typed() {
        let b = bindings(&[
            Bind::Text(Some("it's".into())),
            Bind::Fixed(Some(42)),
            Bind::Text(None),
            Bind::Boolean(Some(true)),
        ]);
        assert_eq!(
            b,
            json!({
                "1": {"type": "TEXT", "value": "it's"},
                "2": {"type": "FIXED", "value": "42"},
                "3": {"type": "TEXT", "value": null},
                "4": {"type": "BOOLEAN", "value": "true"}
            })
        );
        let a = array_bindings(&[("FIXED", vec![Some("1".into()), Some("2".into())])]);
        assert_eq!(a, json!({"1": {"type": "FIXED", "value": ["1", "2"]}}));
    }

    #[test]
    fn account_names_drop_region_and_domain() {
        assert_eq!(account_name("xy12345.us-east-1"), "XY12345");
        assert_eq!(account_name("myorg-acct"), "MYORG-ACCT");
        assert_eq!(
            account_name("myorg-acct.snowflakecomputing.com"),
            "MYORG-ACCT"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let wait = backoff(attempt);
            assert!(wait <= MAX_BACKOFF, "{attempt}: {wait:?}");
            assert!(wait >= FIRST_BACKOFF / 2, "{attempt}: {wait:?}");
        }
        assert!(backoff(10) >= MAX_BACKOFF / 2);
    }

    #[test]
    fn errors_keep_code_state_and_query_id() {
        let e = SnowflakeError::Query {
            code: "002003".into(),
            sql_state: Some("42S02".into()),
            message: "Table 'X' does not exist".into(),
            query_id: Some("01b2".into()),
        };
        assert_eq!(
            e.to_string(),
            "Snowflake error 002003 (42S02): Table 'X' does not exist [query id 01b2]"
        );
        assert_eq!(e.code(), Some("002003"));
        assert_eq!(e.sql_state(), Some("42S02"));
    }

    fn scripted_client(url: &str) -> Snowflake {
        Snowflake::new(&SnowflakeConfig {
            account: "xy12345.us-east-1".into(),
            user: "loader".into(),
            password: Some(Secret::new("pw-not-shown")),
            private_key_path: None,
            private_key_passphrase: None,
            role: Some("LOADER".into()),
            warehouse: Some("LOAD_WH".into()),
            database: "RAW".into(),
            schema: "CDC".into(),
            url: url.into(),
        })
        .unwrap()
    }

    const LOGIN_OK: &str = r#"{"data":{"token":"T1","masterToken":"M1"},"success":true}"#;
    const ROWS_42: &str = r#"{"data":{"queryId":"01ab","queryResultFormat":"json",
        "rowtype":[{"name":"N","type":"fixed","scale":0}],"rowset":[["42"]]},"success":true}"#;

    #[tokio::test]
    async fn a_refused_login_names_the_user_and_code_but_not_the_password() {
        let refused = r#"{"data":null,"code":"390100",
            "message":"Incorrect username or password was specified.","success":false}"#;
        let (url, requests) = crate::clients::testing::server(vec![Some((200, refused))]).await;
        let sf = scripted_client(&url);
        let err = sf
            .query("SELECT 1", &[], Retry::Idempotent)
            .await
            .unwrap_err();
        let e = err.downcast_ref::<SnowflakeError>().unwrap();
        assert_eq!(e.code(), Some("390100"));
        let text = format!("{err:#}");
        assert!(text.contains("user `loader`"), "{text}");
        assert!(!text.contains("pw-not-shown"), "{text}");
        // The session's account, role, warehouse, database and schema go with the login.
        let line = &requests.lines()[0];
        assert!(
            line.starts_with("POST /session/v1/login-request?request_id="),
            "{line}"
        );
        for part in [
            "databaseName=RAW",
            "schemaName=CDC",
            "warehouse=LOAD_WH",
            "roleName=LOADER",
        ] {
            assert!(line.contains(part), "{line}");
        }
        let body: Json = serde_json::from_str(&requests.body(0)).unwrap();
        assert_eq!(body["data"]["ACCOUNT_NAME"], "XY12345");
        assert_eq!(body["data"]["LOGIN_NAME"], "loader");
        assert!(body["data"]["SESSION_PARAMETERS"].is_object());
    }

    #[tokio::test]
    async fn throttling_is_retried_and_a_running_query_is_polled() {
        let running = r#"{"data":{"getResultUrl":"/queries/01ab/result","queryId":"01ab"},
            "code":"333334","message":"Asynchronous execution in progress.","success":true}"#;
        let (url, requests) = crate::clients::testing::server(vec![
            Some((200, LOGIN_OK)),
            Some((429, "")),
            Some((200, running)),
            Some((200, running)),
            Some((200, ROWS_42)),
        ])
        .await;
        let sf = scripted_client(&url);
        let result = sf.query("SELECT 42", &[], Retry::Once).await.unwrap();
        assert_eq!(result.scalar(), Some("42"));
        let lines: Vec<String> = requests
            .lines()
            .iter()
            .map(|l| l.split('?').next().unwrap().to_string())
            .collect();
        assert_eq!(
            lines,
            [
                "POST /session/v1/login-request",
                "POST /queries/v1/query-request",
                "POST /queries/v1/query-request",
                "GET /queries/01ab/result HTTP/1.1",
                "GET /queries/01ab/result HTTP/1.1",
            ]
        );
        assert!(requests.head(1).contains("Snowflake Token=\"T1\""));
        // The retry is the same request (same requestId), so Snowflake can tell.
        let id = |i: usize| {
            requests.lines()[i]
                .split("requestId=")
                .nth(1)
                .unwrap()
                .to_string()
        };
        assert_eq!(id(1), id(2));
        let body: Json = serde_json::from_str(&requests.body(1)).unwrap();
        assert_eq!(body["sqlText"], "SELECT 42");
    }

    #[tokio::test]
    async fn an_expired_session_is_renewed_with_the_master_token() {
        let expired = r#"{"data":null,"code":"390112",
            "message":"Your session has expired. Please login again.","success":false}"#;
        let renewed = r#"{"data":{"sessionToken":"T2","masterToken":"M2"},"success":true}"#;
        let (url, requests) = crate::clients::testing::server(vec![
            Some((200, LOGIN_OK)),
            Some((200, expired)),
            Some((200, renewed)),
            Some((200, ROWS_42)),
        ])
        .await;
        let sf = scripted_client(&url);
        let result = sf.query("SELECT 42", &[], Retry::Once).await.unwrap();
        assert_eq!(result.scalar(), Some("42"));
        assert!(requests.lines()[2].starts_with("POST /session/token-request"));
        assert!(requests.head(2).contains("Snowflake Token=\"M1\""));
        let body: Json = serde_json::from_str(&requests.body(2)).unwrap();
        assert_eq!(body["requestType"], "RENEW");
        assert_eq!(body["oldSessionToken"], "T1");
        assert!(requests.head(3).contains("Snowflake Token=\"T2\""));
        assert_eq!(sf.logins(), 1, "renewed, not logged in again");
    }

    #[tokio::test]
    async fn a_server_error_is_retried_only_for_idempotent_statements() {
        let (url, requests) = crate::clients::testing::server(vec![
            Some((200, LOGIN_OK)),
            Some((503, "")),
            Some((200, ROWS_42)),
            Some((503, "")),
        ])
        .await;
        let sf = scripted_client(&url);
        let result = sf.query("SELECT 42", &[], Retry::Idempotent).await.unwrap();
        assert_eq!(result.scalar(), Some("42"));
        assert_eq!(requests.count(), 3);
        let err = sf
            .query("INSERT INTO T VALUES (1)", &[], Retry::Once)
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("HTTP 503"), "{err:#}");
        assert_eq!(requests.count(), 4, "sent once: it may have run");
    }
}
