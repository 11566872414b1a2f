//! Key values and sequence reservations for `generate-data`: a table's keys in order, the
//! distinct values of a referenced column, column maxima, and reserving values of a key
//! sequence. Returns plain values; tracking them is `datagen::keys`' job. No CLI knowledge.
//!
//! Identifiers are quoted with [`quote_ident`]; values are bound parameters.

use anyhow::{Context, Result};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::{TableName, quote_ident};

/// The integer key `column` of every row of `table`, ascending.
pub async fn ordered_int_keys(
    client: &Client,
    table: &TableName,
    column: &str,
) -> Result<Vec<i64>> {
    let col = quote_ident(column);
    Ok(client
        .query(
            &format!("SELECT {col}::int8 FROM {} ORDER BY {col}", table.quoted()),
            &[],
        )
        .await
        .with_context(|| format!("cannot read the keys of `{table}`"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The text of the key `columns` of every row of `table`, ordered by the key.
pub async fn ordered_text_keys(
    client: &Client,
    table: &TableName,
    columns: &[&str],
) -> Result<Vec<Vec<String>>> {
    let order: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let cols: Vec<String> = order.iter().map(|c| format!("{c}::text")).collect();
    Ok(client
        .query(
            &format!(
                "SELECT {} FROM {} ORDER BY {}",
                cols.join(", "),
                table.quoted(),
                order.join(", ")
            ),
            &[],
        )
        .await
        .with_context(|| format!("cannot read the keys of `{table}`"))?
        .iter()
        .map(|r| (0..cols.len()).map(|i| r.get::<_, String>(i)).collect())
        .collect())
}

/// Distinct non-NULL values of `table.column` as text, ordered by value.
pub async fn distinct_values(
    client: &Client,
    table: &TableName,
    column: &str,
) -> Result<Vec<String>> {
    let col = quote_ident(column);
    let rows = client
        .query(
            &format!(
                "SELECT DISTINCT {col}::text AS k, {col} AS v FROM {} WHERE {col} IS NOT NULL \
                 ORDER BY v",
                table.quoted()
            ),
            &[],
        )
        .await
        .with_context(|| format!("cannot read `{table}.{column}`"))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// The largest value of the integer `table.column`, `None` when the table is empty.
pub async fn max_int8(client: &Client, table: &TableName, column: &str) -> Result<Option<i64>> {
    Ok(client
        .query_one(
            &format!(
                "SELECT max({})::int8 FROM {}",
                quote_ident(column),
                table.quoted()
            ),
            &[],
        )
        .await
        .with_context(|| format!("cannot read the largest `{column}`"))?
        .get(0))
}

/// The number of rows of `table` and its largest key as text (`key_columns` joined with `/`;
/// empty when the table is empty).
pub async fn count_and_max_key(
    client: &Client,
    table: &TableName,
    key_columns: &[&str],
) -> Result<(i64, String)> {
    let parts: Vec<String> = key_columns
        .iter()
        .map(|c| format!("{}::text", quote_ident(c)))
        .collect();
    let key_text = format!("concat_ws('/', {})", parts.join(", "));
    let row = client
        .query_one(
            &format!(
                "SELECT count(*)::int8, coalesce(max({key_text}), '') FROM {}",
                table.quoted()
            ),
            &[],
        )
        .await
        .with_context(|| format!("cannot count the rows of `{table}`"))?;
    Ok((row.get(0), row.get(1)))
}

/// Draws `count` values of sequence `seq` one `nextval` at a time (in the caller's transaction,
/// if any). Returns them ascending.
pub async fn next_sequence_values(client: &Client, seq: &str, count: i64) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(count.max(0) as usize);
    let mut left = count;
    while left > 0 {
        let batch = left.min(100_000);
        // One array rather than a row per value: less to ship and decode.
        let row = client
            .query_one(
                "SELECT array_agg(nextval($1::text::regclass)) \
                 FROM generate_series(1, $2::int8)",
                &[&seq, &batch],
            )
            .await
            .with_context(|| format!("cannot reserve keys from sequence `{seq}`"))?;
        ids.extend(row.get::<_, Vec<i64>>(0));
        left -= batch;
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Takes `count` consecutive values of `seq` in one step: `nextval`, then `setval` past the
/// range; returns the first value and the sequence's increment. `SHARE ROW EXCLUSIVE` on
/// `table`, held meanwhile, keeps inserts into it (which draw from the sequence) out, so nobody
/// else gets a value of the range. `None` when the lock is not allowed (it needs UPDATE, DELETE
/// or TRUNCATE privilege) or not granted within 2 s: the caller then draws values one by one.
pub async fn reserve_sequence_range(
    client: &Client,
    table: &TableName,
    seq: &str,
    count: i64,
) -> Result<Option<(i64, i64)>> {
    let declined = |e: &tokio_postgres::Error| {
        e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
            || e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
    };
    let lock = format!(
        "BEGIN; SET LOCAL lock_timeout = '2s'; LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
        table.quoted()
    );
    let taken = async {
        client.batch_execute(&lock).await?;
        let row = client
            .query_one(
                "SELECT nextval($1::text::regclass), \
                        (SELECT seqincrement FROM pg_sequence WHERE seqrelid = $1::text::regclass)",
                &[&seq],
            )
            .await?;
        let (first, step): (i64, i64) = (row.get(0), row.get(1));
        let last = step
            .checked_mul(count - 1)
            .and_then(|span| first.checked_add(span))
            .unwrap_or(i64::MAX);
        client
            .execute(
                "SELECT setval($1::text::regclass, $2::int8)",
                &[&seq, &last],
            )
            .await?;
        client.batch_execute("COMMIT").await?;
        Ok::<_, tokio_postgres::Error>((first, step))
    }
    .await;
    match taken {
        Ok(r) => Ok(Some(r)),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            if declined(&e) {
                tracing::info!("reserving keys one by one: {e}");
                Ok(None)
            } else {
                Err(anyhow::Error::new(e))
                    .with_context(|| format!("cannot reserve keys from sequence `{seq}`"))
            }
        }
    }
}
