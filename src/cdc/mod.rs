//! The pure core: no IO. Decoding of Debezium change events (`event`), per-key compaction of a
//! micro-batch (`batch`), and warehouse types, names, DDL and schema evolution per dialect
//! (`schema`); the MERGE statements of the sinks come with the loader.

pub mod batch;
pub mod event;
pub mod schema;
pub mod topics;

#[cfg(test)]
mod testing;
