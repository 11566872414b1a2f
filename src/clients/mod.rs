//! Clients of the services cdcctl talks to. They know nothing of the command line: they take
//! resolved configuration, return typed errors, and leave printing to the commands.

pub mod connect;
pub mod duckdb;
pub mod kafka;
pub mod postgres;
pub mod snowflake;
pub mod snowflake_sink;
pub mod warehouse;

#[cfg(test)]
mod testing;
