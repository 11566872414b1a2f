//! The Kafka Connect REST client (reqwest), shared by `create-connector` and `health`: typed
//! requests and responses for the worker, its plugins, config validation and the connector
//! lifecycle (create or update, status, tasks, pause, resume, stop, restart, delete, offsets).
//!
//! Every call has a timeout. Calls that are safe to repeat are retried, bounded, with exponential
//! backoff when the worker answers 409 or says a rebalance is in progress (Connect 3.9 also
//! answers 500 "a rebalance is expected"), or when the connection is reset.
//! A worker that cannot be reached (refused, timed out) is [`CliError::Unreachable`] (exit 3)
//! naming the URL; any other answer the worker gives as an error keeps its `error_code` and
//! `message` verbatim. No CLI knowledge here: nothing is printed, and secrets (the basic-auth
//! password, passwords inside connector configs) never appear in errors.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::{ConnectConfig, Secret};
use crate::error::CliError;

/// Human name of the service, for errors.
pub const SERVICE: &str = "Kafka Connect";
/// How long to wait for the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take. Validation makes Debezium connect to the database, so this is
/// generous.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts of a retried call (the first included).
pub const MAX_ATTEMPTS: u32 = 6;
/// Wait before the first retry; doubled each time, capped at [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3);

/// A connector configuration: Connect keeps every value as a string.
pub type ConnectorConfig = BTreeMap<String, String>;

/// What went wrong talking to the worker.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `connect.url` is not an http(s) URL.
    #[error("invalid Kafka Connect URL `{url}`: {message}")]
    InvalidUrl {
        /// The URL, credentials removed.
        url: String,
        /// Why it was rejected.
        message: String,
    },
    /// The worker could not be reached: refused, timed out, or the connection kept being reset.
    /// The source is a [`CliError::Unreachable`] naming service and endpoint, so the exit code
    /// is 3.
    #[error("{method} {path} got no answer")]
    Unreachable {
        /// HTTP method.
        method: Method,
        /// Path and query.
        path: String,
        /// [`CliError::Unreachable`].
        #[source]
        source: anyhow::Error,
    },
    /// The worker answered with an error status; `message` is its own, verbatim.
    #[error(
        "Kafka Connect answered {method} {path} with HTTP {status}: {message}{}",
        code_suffix(*error_code, *status)
    )]
    Api {
        /// HTTP method.
        method: Method,
        /// Path and query.
        path: String,
        /// HTTP status.
        status: u16,
        /// The worker's `error_code`, when the body had one.
        error_code: Option<u16>,
        /// The worker's `message` (or the raw body when it was not Connect's error JSON).
        message: String,
    },
    /// The request failed below HTTP for another reason (TLS, redirect loop, body error).
    #[error("{method} {path} failed")]
    Http {
        /// HTTP method.
        method: Method,
        /// Path and query.
        path: String,
        /// The reqwest error.
        #[source]
        source: reqwest::Error,
    },
    /// The worker answered 2xx with a body that is not what the REST API documents.
    #[error("unexpected answer from Kafka Connect to {method} {path}: {detail}")]
    Decode {
        /// HTTP method.
        method: Method,
        /// Path and query.
        path: String,
        /// The parse error.
        detail: String,
    },
}

fn code_suffix(error_code: Option<u16>, status: u16) -> String {
    match error_code {
        Some(code) if code != status => format!(" (error_code {code})"),
        _ => String::new(),
    }
}

impl ConnectError {
    /// The HTTP status of an [`ConnectError::Api`] error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ConnectError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the worker said 404 (no such connector, plugin or task).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// `GET /`: the worker's version.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WorkerInfo {
    /// Kafka Connect version, e.g. `3.9.0`.
    pub version: String,
    /// Git commit of the build.
    pub commit: String,
    /// Id of the Kafka cluster the worker uses.
    pub kafka_cluster_id: String,
}

/// One entry of `GET /connector-plugins`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PluginInfo {
    /// Fully qualified class name.
    pub class: String,
    /// `source` or `sink`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Plugin version, e.g. `3.6.3.Final`.
    #[serde(default)]
    pub version: Option<String>,
}

/// `PUT /connector-plugins/{class}/config/validate`.
#[derive(Debug, Clone, Deserialize)]
pub struct ValidationResult {
    /// The plugin class.
    pub name: String,
    /// Number of error messages (a field may repeat one).
    pub error_count: u32,
    /// Config groups, in the plugin's order.
    #[serde(default)]
    pub groups: Vec<String>,
    /// One entry per config key the plugin defines.
    pub configs: Vec<ConfigInfo>,
}

/// One key of a validation result.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigInfo {
    /// What the plugin declares about the key.
    pub definition: ConfigDefinition,
    /// What it thinks of the value given.
    pub value: ConfigValueInfo,
}

/// The declaration of a config key.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigDefinition {
    /// Key name.
    pub name: String,
    /// `STRING`, `INT`, `BOOLEAN`, `PASSWORD`, `LIST`, `CLASS`...
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether a value is required.
    #[serde(default)]
    pub required: bool,
    /// Default, if any.
    #[serde(default)]
    pub default_value: Option<String>,
    /// Documentation text.
    #[serde(default)]
    pub documentation: Option<String>,
}

/// The validated value of a config key.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigValueInfo {
    /// Key name.
    pub name: String,
    /// The value as the plugin saw it (often null even when one was given).
    #[serde(default)]
    pub value: Option<String>,
    /// Values the plugin suggests.
    #[serde(default)]
    pub recommended_values: Vec<String>,
    /// Error messages; empty when the value is fine.
    #[serde(default)]
    pub errors: Vec<String>,
    /// Whether the key applies given the other values.
    #[serde(default)]
    pub visible: bool,
}

/// One field with its errors, from [`ValidationResult::field_errors`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Config key.
    pub field: String,
    /// Error message, verbatim.
    pub message: String,
}

impl ValidationResult {
    /// Every (field, message) pair in the plugin's order, repeated messages of a field once.
    pub fn field_errors(&self) -> Vec<FieldError> {
        let mut out: Vec<FieldError> = Vec::new();
        for c in &self.configs {
            for message in &c.value.errors {
                let dup = out
                    .iter()
                    .any(|e| e.field == c.value.name && &e.message == message);
                if !dup {
                    out.push(FieldError {
                        field: c.value.name.clone(),
                        message: message.clone(),
                    });
                }
            }
        }
        out
    }

    /// Keys the plugin declares as `PASSWORD`.
    pub fn password_keys(&self) -> Vec<String> {
        self.configs
            .iter()
            .filter(|c| c.definition.kind == "PASSWORD")
            .map(|c| c.definition.name.clone())
            .collect()
    }
}

/// `{name, config, tasks, type}`: a connector as created or read.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectorInfo {
    /// Connector name.
    pub name: String,
    /// Its config (secrets in clear: never print it whole).
    pub config: ConnectorConfig,
    /// Its tasks; empty right after creation.
    #[serde(default)]
    pub tasks: Vec<TaskId>,
    /// `source` or `sink`; absent in some answers.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

/// Identifies one task.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TaskId {
    /// Connector name.
    pub connector: String,
    /// Task number.
    pub task: u32,
}

/// One entry of `GET /connectors/{name}/tasks`.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskInfo {
    /// Which task.
    pub id: TaskId,
    /// The task's config: for Debezium the connector config plus `task.class`.
    pub config: ConnectorConfig,
}

/// State of a connector or task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "String")]
pub enum State {
    /// Running.
    Running,
    /// Paused by `PUT .../pause`.
    Paused,
    /// Stopped by `PUT .../stop` (no tasks).
    Stopped,
    /// Failed; the status carries a trace.
    Failed,
    /// Not yet given to a worker.
    Unassigned,
    /// Being restarted.
    Restarting,
    /// A state this client does not know.
    Other(String),
}

impl From<String> for State {
    fn from(s: String) -> Self {
        match s.as_str() {
            "RUNNING" => State::Running,
            "PAUSED" => State::Paused,
            "STOPPED" => State::Stopped,
            "FAILED" => State::Failed,
            "UNASSIGNED" => State::Unassigned,
            "RESTARTING" => State::Restarting,
            _ => State::Other(s),
        }
    }
}

impl State {
    /// The worker's spelling, e.g. `RUNNING`.
    pub fn as_str(&self) -> &str {
        match self {
            State::Running => "RUNNING",
            State::Paused => "PAUSED",
            State::Stopped => "STOPPED",
            State::Failed => "FAILED",
            State::Unassigned => "UNASSIGNED",
            State::Restarting => "RESTARTING",
            State::Other(s) => s,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for State {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The connector part of a status.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectorState {
    /// State.
    pub state: State,
    /// Worker running it, `host:port`.
    pub worker_id: String,
    /// Java stack trace when FAILED.
    #[serde(default)]
    pub trace: Option<String>,
}

/// One task of a status.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskState {
    /// Task number.
    pub id: u32,
    /// State.
    pub state: State,
    /// Worker running it.
    pub worker_id: String,
    /// Java stack trace when FAILED.
    #[serde(default)]
    pub trace: Option<String>,
}

/// `GET /connectors/{name}/status`.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectorStatus {
    /// Connector name.
    pub name: String,
    /// The connector itself.
    pub connector: ConnectorState,
    /// Its tasks (none while starting, or when STOPPED).
    #[serde(default)]
    pub tasks: Vec<TaskState>,
    /// `source` or `sink`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

impl ConnectorStatus {
    /// True when the connector and at least one task exist and all are RUNNING.
    pub fn is_running(&self) -> bool {
        self.connector.state == State::Running
            && !self.tasks.is_empty()
            && self.tasks.iter().all(|t| t.state == State::Running)
    }

    /// True when the connector or any task is FAILED.
    pub fn has_failure(&self) -> bool {
        self.connector.state == State::Failed || self.tasks.iter().any(|t| t.state == State::Failed)
    }
}

/// One connector of `GET /connectors?expand=status&expand=info`.
#[derive(Debug, Clone, Deserialize)]
pub struct ExpandedConnector {
    /// Its status.
    pub status: Option<ConnectorStatus>,
    /// Its config and tasks.
    pub info: Option<ConnectorInfo>,
}

/// `GET /connectors/{name}/offsets`.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectorOffsets {
    /// One entry per source partition (Debezium Postgres: one, `{"server": <topic.prefix>}`).
    pub offsets: Vec<PartitionOffset>,
}

/// The offset of one source partition; the shapes belong to the connector.
#[derive(Debug, Clone, Deserialize)]
pub struct PartitionOffset {
    /// The source partition, e.g. `{"server": "cdc"}`.
    pub partition: serde_json::Map<String, serde_json::Value>,
    /// The offset, e.g. `{"lsn": 30700376, "txId": 731, ...}`.
    pub offset: serde_json::Map<String, serde_json::Value>,
}

/// What `PUT /connectors/{name}/config` did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// True for 201 (the connector did not exist), false for 200 (updated).
    pub created: bool,
    /// The connector as stored.
    pub info: ConnectorInfo,
}

/// Options of `POST /connectors/{name}/restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restart {
    /// Also restart tasks (`includeTasks`).
    pub include_tasks: bool,
    /// Only the instances that are FAILED (`onlyFailed`).
    pub only_failed: bool,
}

/// Connect's error body.
#[derive(Deserialize)]
struct ErrorBody {
    error_code: Option<u16>,
    message: Option<String>,
}

/// Whether a call may be sent again after a 409 or a reset connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Repeating it cannot do harm (GET, PUT, DELETE, restart).
    Idempotent,
    /// `POST /connectors`: a repeat would answer 409 "already exists".
    Never,
}

/// A status and a body.
struct Answer {
    status: StatusCode,
    body: bytes::Bytes,
}

/// A client of one Connect worker (or of the load balancer in front of a cluster).
#[derive(Clone)]
pub struct ConnectClient {
    http: reqwest::Client,
    base: url::Url,
    endpoint: String,
    user: Option<String>,
    password: Option<Secret>,
    attempts: u32,
    first_backoff: Duration,
}

impl fmt::Debug for ConnectClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectClient")
            .field("endpoint", &self.endpoint)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// `url` without user and password, for messages.
fn redact_url(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.as_str().trim_end_matches('/').to_string()
}

impl ConnectClient {
    /// A client for `cfg.url` with basic auth when `cfg.user` is set (a user and password in
    /// the URL work too), default timeouts and retries.
    pub fn new(cfg: &ConnectConfig) -> Result<Self, ConnectError> {
        Self::with_timeouts(cfg, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
    }

    /// Like [`ConnectClient::new`] with other timeouts.
    pub fn with_timeouts(
        cfg: &ConnectConfig,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, ConnectError> {
        let invalid = |message: String| ConnectError::InvalidUrl {
            url: url::Url::parse(&cfg.url)
                .map(|u| redact_url(&u))
                .unwrap_or_else(|_| cfg.url.clone()),
            message,
        };
        let mut base = url::Url::parse(cfg.url.trim()).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid("expected `http://HOST:PORT`".into()));
        }
        let mut user = cfg.user.clone();
        let mut password = cfg.password.clone();
        if !base.username().is_empty() {
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            user.get_or_insert_with(|| decode(base.username()));
            if password.is_none() {
                password = base.password().map(|p| Secret::new(decode(p)));
            }
            let _ = base.set_username("");
            let _ = base.set_password(None);
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .user_agent(concat!("cdcctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(ConnectClient {
            endpoint: redact_url(&base),
            http,
            base,
            user,
            password,
            attempts: MAX_ATTEMPTS,
            first_backoff: FIRST_BACKOFF,
        })
    }

    /// Changes the retry budget: `attempts` tries in all, the first retry after `first_backoff`.
    pub fn with_retries(mut self, attempts: u32, first_backoff: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.first_backoff = first_backoff;
        self
    }

    /// The worker's base URL, credentials removed.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> url::Url {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().expect("checked in new");
            path.pop_if_empty();
            path.extend(segments);
        }
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        url
    }

    /// Sends one request, retrying as `retry` allows; returns any answer the worker gave.
    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        retry: Retry,
    ) -> Result<(Answer, String), ConnectError> {
        let url = self.url(segments, query);
        let shown = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut backoff = self.first_backoff;
        let mut attempt = 1;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(user) = &self.user {
                req = req.basic_auth(user, self.password.as_ref().map(Secret::expose));
            }
            if let Some(b) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            let result = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    resp.bytes().await.map(|body| Answer { status, body })
                }
                Err(e) => Err(e),
            };
            let retryable = retry == Retry::Idempotent && attempt < self.attempts;
            match result {
                Ok(a) if retryable && is_rebalance(&a) => {
                    tracing::debug!(
                        "{method} {shown}: {} ({}), retrying in {backoff:?}",
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    );
                }
                Ok(a) => return Ok((a, shown)),
                Err(e) if is_reset(&e) && retryable => {
                    tracing::debug!("{method} {shown}: {e}, retrying in {backoff:?}");
                }
                Err(e) if e.is_connect() || e.is_timeout() || is_reset(&e) => {
                    return Err(ConnectError::Unreachable {
                        method,
                        path: shown,
                        source: CliError::Unreachable {
                            service: SERVICE.into(),
                            endpoint: self.endpoint.clone(),
                            source: Some(anyhow::Error::new(e.without_url())),
                        }
                        .into(),
                    });
                }
                Err(e) => {
                    return Err(ConnectError::Http {
                        method,
                        path: shown,
                        source: e.without_url(),
                    });
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }

    /// Sends a request and returns the 2xx answer, or the worker's error.
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        retry: Retry,
    ) -> Result<(Answer, String), ConnectError> {
        let (answer, shown) = self
            .send(method.clone(), segments, query, body, retry)
            .await?;
        if answer.status.is_success() {
            return Ok((answer, shown));
        }
        let (error_code, message) = match serde_json::from_slice::<ErrorBody>(&answer.body) {
            Ok(ErrorBody {
                error_code,
                message: Some(m),
            }) => (error_code, m),
            _ => {
                let text = String::from_utf8_lossy(&answer.body).trim().to_string();
                let text = if text.is_empty() {
                    answer
                        .status
                        .canonical_reason()
                        .unwrap_or("no message")
                        .to_string()
                } else {
                    text.chars().take(500).collect()
                };
                (None, text)
            }
        };
        Err(ConnectError::Api {
            method,
            path: shown,
            status: answer.status.as_u16(),
            error_code,
            message,
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        retry: Retry,
    ) -> Result<T, ConnectError> {
        let (answer, shown) = self
            .call(method.clone(), segments, query, body, retry)
            .await?;
        decode(&answer.body).map_err(|detail| ConnectError::Decode {
            method,
            path: shown,
            detail,
        })
    }

    /// `GET /`: version and Kafka cluster of the worker.
    pub async fn root(&self) -> Result<WorkerInfo, ConnectError> {
        self.json(Method::GET, &[], &[], None, Retry::Idempotent)
            .await
    }

    /// `GET /connector-plugins`: the connector plugins installed on the worker.
    pub async fn plugins(&self) -> Result<Vec<PluginInfo>, ConnectError> {
        self.json(
            Method::GET,
            &["connector-plugins"],
            &[],
            None,
            Retry::Idempotent,
        )
        .await
    }

    /// `PUT /connector-plugins/{class}/config/validate`. Include `name` in `config`, or the
    /// worker reports it missing.
    pub async fn validate(
        &self,
        class: &str,
        config: &ConnectorConfig,
    ) -> Result<ValidationResult, ConnectError> {
        self.json(
            Method::PUT,
            &["connector-plugins", class, "config", "validate"],
            &[],
            Some(to_body(config)),
            Retry::Idempotent,
        )
        .await
    }

    /// `GET /connectors`: connector names.
    pub async fn connectors(&self) -> Result<Vec<String>, ConnectError> {
        self.json(Method::GET, &["connectors"], &[], None, Retry::Idempotent)
            .await
    }

    /// `GET /connectors?expand=status&expand=info`: every connector with status and config.
    pub async fn connectors_expanded(
        &self,
    ) -> Result<BTreeMap<String, ExpandedConnector>, ConnectError> {
        self.json(
            Method::GET,
            &["connectors"],
            &[("expand", "status"), ("expand", "info")],
            None,
            Retry::Idempotent,
        )
        .await
    }

    /// `GET /connectors/{name}/config`.
    pub async fn config(&self, name: &str) -> Result<ConnectorConfig, ConnectError> {
        self.json(
            Method::GET,
            &["connectors", name, "config"],
            &[],
            None,
            Retry::Idempotent,
        )
        .await
    }

    /// The connector's config, or `None` when there is no such connector.
    pub async fn find_config(&self, name: &str) -> Result<Option<ConnectorConfig>, ConnectError> {
        match self.config(name).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /connectors`: creates a connector; 409 when it exists (never retried).
    pub async fn create(
        &self,
        name: &str,
        config: &ConnectorConfig,
    ) -> Result<ConnectorInfo, ConnectError> {
        #[derive(Serialize)]
        struct Body<'a> {
            name: &'a str,
            config: &'a ConnectorConfig,
        }
        let body = serde_json::to_vec(&Body { name, config }).expect("maps of strings serialise");
        self.json(Method::POST, &["connectors"], &[], Some(body), Retry::Never)
            .await
    }

    /// `PUT /connectors/{name}/config`: creates the connector or replaces its config.
    pub async fn put_config(
        &self,
        name: &str,
        config: &ConnectorConfig,
    ) -> Result<Applied, ConnectError> {
        let segments = ["connectors", name, "config"];
        let (answer, shown) = self
            .call(
                Method::PUT,
                &segments,
                &[],
                Some(to_body(config)),
                Retry::Idempotent,
            )
            .await?;
        let info = decode(&answer.body).map_err(|detail| ConnectError::Decode {
            method: Method::PUT,
            path: shown,
            detail,
        })?;
        Ok(Applied {
            created: answer.status == StatusCode::CREATED,
            info,
        })
    }

    /// `GET /connectors/{name}/status`.
    pub async fn status(&self, name: &str) -> Result<ConnectorStatus, ConnectError> {
        self.json(
            Method::GET,
            &["connectors", name, "status"],
            &[],
            None,
            Retry::Idempotent,
        )
        .await
    }

    /// `GET /connectors/{name}/tasks`: each task's config.
    pub async fn tasks(&self, name: &str) -> Result<Vec<TaskInfo>, ConnectError> {
        self.json(
            Method::GET,
            &["connectors", name, "tasks"],
            &[],
            None,
            Retry::Idempotent,
        )
        .await
    }

    async fn no_content(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Answer, ConnectError> {
        Ok(self
            .call(method, segments, query, None, Retry::Idempotent)
            .await?
            .0)
    }

    /// `PUT /connectors/{name}/pause` (asynchronous: poll the status).
    pub async fn pause(&self, name: &str) -> Result<(), ConnectError> {
        self.no_content(Method::PUT, &["connectors", name, "pause"], &[])
            .await
            .map(drop)
    }

    /// `PUT /connectors/{name}/resume` (asynchronous: poll the status).
    pub async fn resume(&self, name: &str) -> Result<(), ConnectError> {
        self.no_content(Method::PUT, &["connectors", name, "resume"], &[])
            .await
            .map(drop)
    }

    /// `PUT /connectors/{name}/stop`: shuts the tasks down but keeps the connector (so its
    /// offsets can be changed); `resume` starts it again.
    pub async fn stop(&self, name: &str) -> Result<(), ConnectError> {
        self.no_content(Method::PUT, &["connectors", name, "stop"], &[])
            .await
            .map(drop)
    }

    /// `POST /connectors/{name}/restart`. With `include_tasks` the worker answers 202 with the
    /// status of what it restarts; without, 204 and `None`.
    pub async fn restart(
        &self,
        name: &str,
        options: Restart,
    ) -> Result<Option<ConnectorStatus>, ConnectError> {
        let include = options.include_tasks.to_string();
        let only = options.only_failed.to_string();
        let segments = ["connectors", name, "restart"];
        let query = [
            ("includeTasks", include.as_str()),
            ("onlyFailed", only.as_str()),
        ];
        let (answer, shown) = self
            .call(Method::POST, &segments, &query, None, Retry::Idempotent)
            .await?;
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        decode(&answer.body)
            .map(Some)
            .map_err(|detail| ConnectError::Decode {
                method: Method::POST,
                path: shown,
                detail,
            })
    }

    /// `DELETE /connectors/{name}`. The replication slot and publication of a Debezium
    /// connector stay behind in Postgres.
    pub async fn delete(&self, name: &str) -> Result<(), ConnectError> {
        self.no_content(Method::DELETE, &["connectors", name], &[])
            .await
            .map(drop)
    }

    /// `GET /connectors/{name}/offsets`.
    pub async fn offsets(&self, name: &str) -> Result<ConnectorOffsets, ConnectError> {
        self.json(
            Method::GET,
            &["connectors", name, "offsets"],
            &[],
            None,
            Retry::Idempotent,
        )
        .await
    }

    /// `DELETE /connectors/{name}/offsets`: forgets the source offsets, so the connector starts
    /// over (a new snapshot) when it runs again. The connector must be STOPPED. Returns the
    /// worker's message.
    pub async fn reset_offsets(&self, name: &str) -> Result<String, ConnectError> {
        #[derive(Deserialize)]
        struct Message {
            message: String,
        }
        let m: Message = self
            .json(
                Method::DELETE,
                &["connectors", name, "offsets"],
                &[],
                None,
                Retry::Idempotent,
            )
            .await?;
        Ok(m.message)
    }
}

fn to_body(config: &ConnectorConfig) -> Vec<u8> {
    serde_json::to_vec(config).expect("maps of strings serialise")
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(body);
        let head: String = text.chars().take(200).collect();
        format!("{e} in `{head}`")
    })
}

/// True when the worker says a rebalance is in progress or due: 409 ("conflicting operation",
/// "stale configuration"), and the 500 "Request cannot be completed because a rebalance is
/// expected" that Connect 3.9 answers while its group rebalances.
fn is_rebalance(a: &Answer) -> bool {
    a.status == StatusCode::CONFLICT
        || (a.status.is_server_error()
            && String::from_utf8_lossy(&a.body)
                .to_ascii_lowercase()
                .contains("rebalance"))
}

/// True when the connection was reset or closed under the request: worth one more try.
fn is_reset(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        // hyper's "connection closed before message completed" carries no io::Error.
        let text = s.to_string();
        if text.contains("connection closed before message completed")
            || text.contains("connection reset")
        {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The body of a captured response (its first line is `HTTP <status>  (<METHOD> <path>)`).
    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/connect-rest/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.split_once('\n').map_or("", |(_, b)| b).to_string()
    }

    fn parse<T: DeserializeOwned>(name: &str) -> T {
        decode(fixture(name).as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn worker_and_plugins_parse() {
        let root: WorkerInfo = parse("GET_root.200.txt");
        assert_eq!(root.version, "3.9.0");
        assert_eq!(root.kafka_cluster_id, "MkU3OEVBNTctOEUyRi00");
        let plugins: Vec<PluginInfo> = parse("GET_connector_plugins.200.txt");
        assert_eq!(plugins.len(), 1);
        assert_eq!(
            plugins[0].class,
            "io.debezium.connector.postgresql.PostgresConnector"
        );
        assert_eq!(plugins[0].kind, "source");
        assert_eq!(plugins[0].version.as_deref(), Some("3.6.3.Final"));
    }

    #[test]
    fn validation_errors_are_per_field_and_deduplicated() {
        let v: ValidationResult = parse("PUT_config_validate_bad.200.txt");
        assert_eq!(v.error_count, 7);
        let errors = v.field_errors();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "database.port",
                "database.user",
                "database.dbname",
                "plugin.name",
                "snapshot.mode"
            ]
        );
        assert_eq!(
            errors[4].message,
            "The 'plugin.name' value is invalid: Value must be one of decoderbufs, pgoutput"
        );
        assert!(v.password_keys().contains(&"database.password".to_string()));
    }

    #[test]
    fn statuses_parse_with_states_and_traces() {
        let running: ConnectorStatus = parse("GET_connector_status_running.200.txt");
        assert!(running.is_running() && !running.has_failure());
        assert_eq!(running.tasks[0].worker_id, "127.0.0.1:8083");

        let failed: ConnectorStatus = parse("GET_connector_status_task_failed_busy_slot.200.txt");
        assert_eq!(failed.connector.state, State::Running);
        assert_eq!(failed.tasks[0].state, State::Failed);
        assert!(!failed.is_running() && failed.has_failure());
        assert!(
            failed.tasks[0]
                .trace
                .as_deref()
                .unwrap()
                .contains("replication slot \"dbz_cdc\" is active")
        );

        let stopped: ConnectorStatus = parse("GET_connector_status_stopped.200.txt");
        assert_eq!(stopped.connector.state, State::Stopped);
        assert!(stopped.tasks.is_empty() && !stopped.is_running());

        let restarting: ConnectorStatus = parse("POST_connector_restart_include_tasks.202.txt");
        assert_eq!(restarting.tasks[0].state, State::Restarting);
        assert_eq!(State::from("SOMETHING".to_string()).as_str(), "SOMETHING");
    }

    #[test]
    fn connectors_tasks_config_and_offsets_parse() {
        let names: Vec<String> = parse("GET_connectors.200.txt");
        assert_eq!(names, ["pg-cdc"]);
        let expanded: BTreeMap<String, ExpandedConnector> =
            parse("GET_connectors_expand_status.200.txt");
        assert_eq!(
            expanded.keys().collect::<Vec<_>>(),
            ["pg-cdc", "pg-cdc-noschema"]
        );
        let noschema = &expanded["pg-cdc-noschema"];
        assert_eq!(
            noschema.info.as_ref().unwrap().config["value.converter.schemas.enable"],
            "false"
        );
        assert!(noschema.status.as_ref().unwrap().is_running());

        let created: ConnectorInfo = parse("POST_connectors.201.txt");
        assert!(created.tasks.is_empty());
        assert_eq!(created.kind.as_deref(), Some("source"));
        let tasks: Vec<TaskInfo> = parse("GET_connector_tasks.200.txt");
        assert_eq!(tasks[0].id.task, 0);
        assert_eq!(
            tasks[0].config["task.class"],
            "io.debezium.connector.postgresql.PostgresConnectorTask"
        );
        let config: ConnectorConfig = parse("GET_connector_config.200.txt");
        assert_eq!(config["slot.name"], "scratch_cc_slot");

        let offsets: ConnectorOffsets = parse("GET_connector_offsets.200.txt");
        assert_eq!(offsets.offsets[0].partition["server"], "scratchcc");
        assert_eq!(offsets.offsets[0].offset["lsn"], 30700376);
    }

    fn client(url: &str) -> ConnectClient {
        let cfg = ConnectConfig {
            url: url.to_string(),
            user: None,
            password: None,
            connector: "c".into(),
        };
        ConnectClient::with_timeouts(&cfg, Duration::from_secs(2), Duration::from_millis(800))
            .unwrap()
            .with_retries(4, Duration::from_millis(10))
    }

    const REBALANCE: &str = concat!(
        r#"{"error_code":409,"message":"Cannot complete request because of a conflicting "#,
        r#"operation (e.g. worker rebalance)"}"#
    );

    const REBALANCE_EXPECTED: &str = concat!(
        r#"{"error_code":500,"message":"Request cannot be completed because a rebalance is "#,
        r#"expected"}"#
    );

    #[tokio::test]
    async fn conflicts_and_resets_are_retried_then_succeed() {
        let (url, hits) = crate::clients::testing::server(vec![
            Some((409, REBALANCE)),
            None,
            Some((500, REBALANCE_EXPECTED)),
            Some((200, r#"["a","b"]"#)),
        ])
        .await;
        let names = client(&url).connectors().await.unwrap();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(hits.count(), 4);
    }

    #[tokio::test]
    async fn retries_are_bounded_and_keep_the_workers_message() {
        let (url, hits) = crate::clients::testing::server(vec![Some((409, REBALANCE)); 4]).await;
        let err = client(&url).status("x").await.unwrap_err();
        assert_eq!(hits.count(), 4);
        assert_eq!(err.status(), Some(409));
        assert_eq!(
            err.to_string(),
            "Kafka Connect answered GET /connectors/x/status with HTTP 409: Cannot complete \
             request because of a conflicting operation (e.g. worker rebalance)"
        );
    }

    #[tokio::test]
    async fn create_is_never_retried() {
        let (url, hits) = crate::clients::testing::server(vec![
            Some((
                409,
                r#"{"error_code":409,"message":"Connector a already exists"}"#,
            )),
            Some((201, "{}")),
        ])
        .await;
        let err = client(&url)
            .create("a", &ConnectorConfig::new())
            .await
            .unwrap_err();
        assert_eq!(hits.count(), 1);
        assert!(
            err.to_string().ends_with("Connector a already exists"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn not_found_and_odd_bodies() {
        let (url, _) = crate::clients::testing::server(vec![
            Some((
                404,
                r#"{"error_code":404,"message":"Connector a not found"}"#,
            )),
            Some((500, "<html>boom</html>")),
            Some((200, "not json")),
        ])
        .await;
        let c = client(&url);
        assert_eq!(c.find_config("a").await.unwrap(), None);
        let err = c.root().await.unwrap_err();
        assert_eq!(err.status(), Some(500));
        assert!(
            err.to_string().ends_with("HTTP 500: <html>boom</html>"),
            "{err}"
        );
        let err = c.root().await.unwrap_err();
        assert!(
            matches!(err, ConnectError::Decode { .. }),
            "{err:?} should be a decode error"
        );
    }

    #[tokio::test]
    async fn refused_and_silent_workers_are_unreachable_naming_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let err = client(&url).root().await.unwrap_err();
        let any = anyhow::Error::new(err);
        assert_eq!(
            crate::error::exit_code_for(&any),
            crate::error::EXIT_UNREACHABLE
        );
        let text = format!("{any:#}");
        assert!(
            text.contains(&format!("Kafka Connect is unreachable at `{url}`")),
            "{text}"
        );

        // Accepts, never answers: the request timeout applies.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let started = std::time::Instant::now();
        let err = client(&url).root().await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(err, ConnectError::Unreachable { .. }), "{err:?}");
        drop(listener);
    }

    #[tokio::test]
    async fn basic_auth_from_config_or_url_and_never_in_messages() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = sock.read(&mut buf).await.unwrap();
            let body = r#"{"error_code":401,"message":"Unauthorized"}"#;
            let text = format!(
                "HTTP/1.1 401 X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(text.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).to_string()
        });
        let cfg = ConnectConfig {
            url: format!("http://admin:s3cret@{addr}/"),
            user: None,
            password: None,
            connector: "c".into(),
        };
        let c = ConnectClient::new(&cfg).unwrap();
        assert_eq!(c.endpoint(), format!("http://{addr}"));
        assert!(!format!("{c:?}").contains("s3cret"));
        let err = c.connectors().await.unwrap_err();
        assert!(!err.to_string().contains("s3cret"));
        let request = seen.await.unwrap();
        // base64("admin:s3cret")
        assert!(
            request.contains("authorization: Basic YWRtaW46czNjcmV0"),
            "{request}"
        );
        assert!(request.starts_with("GET /connectors HTTP/1.1"), "{request}");
    }

    #[test]
    fn paths_are_encoded_and_queries_built() {
        let c = client("http://h:1/base");
        assert_eq!(
            c.url(
                &["connectors", "a b/c", "restart"],
                &[("onlyFailed", "true")]
            )
            .as_str(),
            "http://h:1/base/connectors/a%20b%2Fc/restart?onlyFailed=true"
        );
        assert!(matches!(
            ConnectClient::new(&ConnectConfig {
                url: "ftp://x".into(),
                user: None,
                password: None,
                connector: "c".into(),
            }),
            Err(ConnectError::InvalidUrl { .. })
        ));
    }
}
