//! The pure core: no IO. Decoding of Debezium change events (`event`), per-key compaction of a
//! micro-batch (`batch`), and warehouse types, names, DDL and schema evolution per dialect
//! (`schema`), the staging and MERGE statements of the sinks (`sql`), and topic selection
//! (`topics`).

pub mod batch;
pub mod event;
pub mod schema;
pub mod sql;
pub mod topics;

#[cfg(test)]
pub(crate) mod testing;
