//! The pure core: no IO. Decoding of Debezium change events (`event`), per-key compaction of a
//! micro-batch (`batch`), and warehouse types, names, DDL and schema evolution per dialect
//! (`schema`), the staging and MERGE statements of the sinks (`sql`), the Type 2 history statements
//! (`scd2`), topic selection
//! (`topics`), and the dead-letter record format (`dlq`).

pub mod batch;
pub mod dlq;
pub mod event;
pub mod scd2;
pub mod schema;
pub mod sql;
pub mod topics;

#[cfg(test)]
pub(crate) mod testing;
