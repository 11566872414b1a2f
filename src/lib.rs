//! cdcctl: operate change data capture pipelines, PostgreSQL -> Debezium -> Kafka -> DuckDB or
//! Snowflake. The binary (`src/main.rs`) parses the command line and maps errors to exit codes;
//! everything else lives in these modules so integration tests can reuse them.

#![warn(missing_docs)]

pub mod cdc;
pub mod cli;
pub mod clients;
pub mod commands;
pub mod complete;
pub mod config;
pub mod datagen;
pub mod demo;
pub mod docs;
pub mod error;
pub mod output;
pub mod retry;
