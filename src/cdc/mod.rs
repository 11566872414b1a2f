//! The pure core: no IO. Decoding of Debezium change events (`event`), and later per-key
//! compaction, SQL generation and type mapping for the warehouse sinks.

pub mod batch;
pub mod event;
