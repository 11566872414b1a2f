//! The one integration test binary (rdkafka and the other heavy crates link once). Modules by
//! subcommand or area; `support` holds the stack helper and per-test isolation.

#[path = "../support/mod.rs"]
mod support;

mod broker;
mod cli;
mod config;
mod create_connector;
mod dlq;
mod generate_data;
mod generated;
mod harness;
mod health;
mod load;
mod scd2;
mod setup_source;
mod snowflake;
mod tail;
mod verify;
