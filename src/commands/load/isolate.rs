//! What the warehouse refuses, isolated from its batch (`load` and `replay-dlq replay`).
//!
//! When a batch fails for a reason that is not transient, each table is applied on its own. A
//! table the warehouse refuses even without rows (an incompatible schema change, no primary
//! key) is refused whole. Otherwise some of its rows are refused: the table's keys are split in
//! halves, failing halves again, until the refused rows are found (`cdc::batch`, "Isolating
//! rows"); the others land. Each part is applied on its own and is idempotent, like a batch.

use anyhow::Result;

use super::{Targets, apply_compacted};
use crate::cdc::batch::{Compacted, TablePlan};
use crate::cdc::schema::TableName;
use crate::clients::warehouse::{Applied, Sink, TableWrite};

/// How many times one table of a batch is applied while looking for the rows the warehouse
/// refuses; what still fails then is refused in parts.
const ATTEMPTS: usize = 256;

/// Events of a batch that did not land, and why.
pub(crate) struct Refused {
    /// Where they were read (topic, partition, offset): the final event of each key, events
    /// without key, the truncate.
    pub positions: Vec<(String, i32, i64)>,
    /// The source table.
    pub table: String,
    /// Why, on one line.
    pub reason: String,
    /// The dead-letter class: `warehouse_rejected` (here), or `missing_key` (`load`).
    pub class: &'static str,
}

/// Applies a batch in one [`Sink::apply`]; if the warehouse refuses it (not a transient error),
/// applies each table on its own, isolating what it refuses. Returns what landed and what was
/// refused. A transient error (the warehouse went away) is an error, and so is a batch that
/// fails while each of its tables alone goes through.
pub(crate) fn apply(
    db: &mut dyn Sink,
    targets: &mut Targets,
    compacted: &Compacted,
) -> Result<(Applied, Vec<Refused>)> {
    match apply_compacted(db, targets, compacted) {
        Ok(applied) => Ok((applied, Vec::new())),
        Err(e) if !crate::clients::is_transient(&e) => {
            let (applied, refused) = apply_tables(db, targets, compacted)?;
            if refused.is_empty() {
                return Err(e);
            }
            Ok((applied, refused))
        }
        Err(e) => Err(e),
    }
}

fn apply_tables(
    db: &mut dyn Sink,
    targets: &mut Targets,
    compacted: &Compacted,
) -> Result<(Applied, Vec<Refused>)> {
    let (mut applied, mut refused) = (Applied::default(), Vec::new());
    for plan in &compacted.tables {
        let target = targets.target(&plan.table)?;
        apply_table(db, &target, plan, &mut applied, &mut refused)?;
    }
    Ok((applied, refused))
}

fn apply_table(
    db: &mut dyn Sink,
    target: &TableName,
    plan: &TablePlan,
    applied: &mut Applied,
    refused: &mut Vec<Refused>,
) -> Result<()> {
    let mut apply = |db: &mut dyn Sink, plan: &TablePlan| -> Result<Option<anyhow::Error>> {
        match db.apply(&[TableWrite { target, plan }]) {
            Ok(one) => {
                applied.add(one);
                Ok(None)
            }
            Err(e) if crate::clients::is_transient(&e) => Err(e),
            Err(e) => Ok(Some(e)),
        }
    };
    let refuse = |part: &TablePlan, e: &anyhow::Error| Refused {
        positions: positions_of(part),
        table: part.table.to_string(),
        reason: crate::error::one_line(e),
        class: "warehouse_rejected",
    };
    let Some(first) = apply(db, plan)? else {
        return Ok(());
    };
    let halves = match plan.split() {
        Some(halves) if apply(db, &plan.schema_only())?.is_none() => halves,
        _ => {
            refused.push(refuse(plan, &first));
            return Ok(());
        }
    };
    let mut parts = vec![halves.1, halves.0];
    let mut attempts = 0;
    while let Some(part) = parts.pop() {
        attempts += 1;
        let Some(e) = apply(db, &part)? else {
            continue;
        };
        match part.split().filter(|_| attempts < ATTEMPTS) {
            Some((a, b)) => parts.extend([b, a]),
            None => refused.push(refuse(&part, &e)),
        }
    }
    tracing::debug!(attempts, table = %plan.table, "isolated the rows the warehouse refuses");
    Ok(())
}

/// Where the events of a table plan were read.
fn positions_of(plan: &TablePlan) -> Vec<(String, i32, i64)> {
    let mut positions: Vec<(String, i32, i64)> = plan
        .upserts
        .iter()
        .map(|u| &u.kafka)
        .chain(plan.deletes.iter().map(|d| &d.kafka))
        .chain(plan.keyless.iter().map(|e| &e.kafka))
        .chain(plan.truncate.iter().map(|t| &t.kafka))
        .map(|k| (k.topic.to_string(), k.partition, k.offset))
        .collect();
    positions.sort();
    positions.dedup();
    positions
}
