//! Clients of the services cdcctl talks to. They know nothing of the command line: they take
//! resolved configuration, return typed errors, and leave printing to the commands.

pub mod connect;
pub mod duckdb;
pub mod kafka;
pub mod postgres;
pub mod snowflake;
pub mod snowflake_sink;
pub mod warehouse;

/// Whether an error means a dependency is (perhaps briefly) unavailable rather than that the
/// request is wrong: unreachable, timed out, connection reset, throttled, a server error. Such
/// an operation is worth retrying later; anything else fails the same way again.
pub fn is_transient(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        if let Some(cli) = cause.downcast_ref::<crate::error::CliError>() {
            return matches!(cli, crate::error::CliError::Unreachable { .. });
        }
        if let Some(e) = cause.downcast_ref::<rdkafka::error::KafkaError>() {
            return kafka::is_transient_error(e);
        }
        if let Some(e) = cause.downcast_ref::<reqwest::Error>() {
            return e.is_timeout() || e.is_connect() || e.is_request() || e.is_body();
        }
        if let Some(snowflake::SnowflakeError::Protocol { detail, .. }) =
            cause.downcast_ref::<snowflake::SnowflakeError>()
        {
            return detail.starts_with("HTTP 5") || detail.starts_with("HTTP 429");
        }
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::BrokenPipe
            )
        })
    })
}

#[cfg(test)]
mod testing;
