//! Catalog reads for `generate-data`: a table's columns, types (domains, arrays, enums), primary
//! key, unique indexes and foreign keys, the sequence behind a key, and the tables referencing a
//! table. Returns the plain data types of `datagen::schema` ([`CatalogTable`]); resolving a type
//! to a generator kind is datagen's pure logic ([`TypeCatalog::kind`]). No CLI knowledge.
//!
//! Every value is a bound parameter; identifiers never enter the SQL text here.

use std::collections::HashMap;

use anyhow::{Context, Result};
use tokio_postgres::Client;

use super::TableName;
use crate::datagen::schema::{
    CatalogColumn, CatalogForeignKey, CatalogTable, TypeCatalog, TypeRow,
};

/// Reads what generation needs to know about a table.
pub async fn read_table(client: &Client, name: &TableName) -> Result<CatalogTable> {
    let ctx = || format!("cannot read the columns of `{name}` from the catalog");
    let oid: u32 = client
        .query_one(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&name.schema, &name.name],
        )
        .await
        .with_context(ctx)?
        .get(0);
    let rows = client
        .query(
            "SELECT a.attnum, a.attname::text, format_type(a.atttypid, a.atttypmod), \
                    a.atttypid, a.atttypmod, a.attnotnull, a.attidentity::text, \
                    a.attgenerated::text, pg_get_expr(d.adbin, d.adrelid) \
             FROM pg_attribute a \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .with_context(ctx)?;
    let type_oids: Vec<u32> = rows.iter().map(|r| r.get(3)).collect();
    let types = load_types(client, type_oids).await.with_context(ctx)?;
    let mut attnums = Vec::with_capacity(rows.len());
    let mut columns = Vec::with_capacity(rows.len());
    for r in &rows {
        let attnum: i16 = r.get(0);
        let identity: String = r.get(6);
        let generated: String = r.get(7);
        let default: Option<String> = r.get(8);
        attnums.push(attnum);
        columns.push(CatalogColumn {
            name: r.get(1),
            sql_type: r.get(2),
            kind: types.kind(r.get(3), r.get(4)),
            not_null: r.get(5),
            has_default: default.is_some() || !identity.is_empty(),
            identity: !identity.is_empty(),
            identity_always: identity == "a",
            generated: !generated.is_empty(),
            serial: default
                .as_deref()
                .is_some_and(|d| d.starts_with("nextval(")),
        });
    }
    // Column positions (in `columns`) of an `int2[]` of attribute numbers.
    let positions = |attnums_of: Vec<i16>| -> Vec<usize> {
        attnums_of
            .into_iter()
            .filter_map(|attnum| attnums.iter().position(|a| *a == attnum))
            .collect()
    };

    let mut primary_key = Vec::new();
    let mut unique = Vec::new();
    for r in client
        .query(
            "SELECT indisprimary, indkey::int2[] FROM pg_index \
             WHERE indrelid = $1 AND indisunique AND indpred IS NULL AND indexprs IS NULL \
             ORDER BY indexrelid",
            &[&oid],
        )
        .await
        .with_context(ctx)?
    {
        let cols = positions(r.get(1));
        if r.get(0) {
            primary_key = cols;
        } else {
            unique.push(cols);
        }
    }

    let mut foreign_keys = Vec::new();
    let mut multi_column_fk_columns = Vec::new();
    for r in client
        .query(
            "SELECT con.conkey::int2[], fn.nspname::text, fc.relname::text, \
                    (SELECT attname::text FROM pg_attribute \
                     WHERE attrelid = con.confrelid AND attnum = con.confkey[1]) \
             FROM pg_constraint con \
             JOIN pg_class fc ON fc.oid = con.confrelid \
             JOIN pg_namespace fn ON fn.oid = fc.relnamespace \
             WHERE con.conrelid = $1 AND con.contype = 'f' ORDER BY con.conname",
            &[&oid],
        )
        .await
        .with_context(ctx)?
    {
        let cols = positions(r.get(0));
        match cols.as_slice() {
            [column] => foreign_keys.push(CatalogForeignKey {
                column: *column,
                parent: TableName::new(r.get::<_, String>(1), r.get::<_, String>(2)),
                parent_column: r.get(3),
            }),
            many => multi_column_fk_columns.extend_from_slice(many),
        }
    }
    Ok(CatalogTable {
        name: name.clone(),
        columns,
        primary_key,
        unique,
        foreign_keys,
        multi_column_fk_columns,
    })
}

/// The `pg_type` rows of `wanted`, of their element and base types (transitively), and the
/// labels of the enums among them.
async fn load_types(client: &Client, mut wanted: Vec<u32>) -> Result<TypeCatalog> {
    let mut types: HashMap<u32, TypeRow> = HashMap::new();
    while !wanted.is_empty() {
        wanted.sort_unstable();
        wanted.dedup();
        let rows = client
            .query(
                "SELECT oid, typname::text, typtype::text, typcategory::text, typelem, \
                        typbasetype, typtypmod FROM pg_type WHERE oid = ANY($1)",
                &[&wanted],
            )
            .await?;
        wanted.clear();
        for r in rows {
            let row = TypeRow {
                name: r.get(1),
                typtype: r.get(2),
                category: r.get(3),
                elem: r.get(4),
                base: r.get(5),
                base_typmod: r.get(6),
            };
            for next in [row.elem, row.base] {
                if next != 0 && !types.contains_key(&next) {
                    wanted.push(next);
                }
            }
            types.insert(r.get(0), row);
        }
    }
    let enum_oids: Vec<u32> = types
        .iter()
        .filter(|(_, t)| t.typtype == "e")
        .map(|(oid, _)| *oid)
        .collect();
    let mut enums = HashMap::new();
    if !enum_oids.is_empty() {
        for r in client
            .query(
                "SELECT enumtypid, array_agg(enumlabel::text ORDER BY enumsortorder) \
                 FROM pg_enum WHERE enumtypid = ANY($1) GROUP BY enumtypid",
                &[&enum_oids],
            )
            .await?
        {
            enums.insert(r.get::<_, u32>(0), r.get::<_, Vec<String>>(1));
        }
    }
    Ok(TypeCatalog { types, enums })
}

/// The sequence filling `table.column` (serial or identity), if any.
pub async fn key_sequence(
    client: &Client,
    table: &TableName,
    column: &str,
) -> Result<Option<String>> {
    let row = client
        .query_one(
            "SELECT pg_get_serial_sequence($1, $2), pg_get_expr(d.adbin, d.adrelid) \
             FROM pg_attribute a \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = $1::text::regclass AND a.attname = $2",
            &[&table.quoted(), &column],
        )
        .await
        .with_context(|| format!("cannot find the sequence of `{table}.{column}`"))?;
    if let Some(seq) = row.get::<_, Option<String>>(0) {
        return Ok(Some(seq));
    }
    // A default `nextval('name'::regclass)` on a sequence the column does not own.
    let default: Option<String> = row.get(1);
    Ok(default.as_deref().and_then(sequence_of_default))
}

/// `nextval('public.my_seq'::regclass)` -> `public.my_seq`.
fn sequence_of_default(default: &str) -> Option<String> {
    let rest = default.strip_prefix("nextval('")?;
    let end = rest.find("'::regclass)")?;
    Some(rest[..end].replace("''", "'"))
}

/// A table referencing another with a single-column foreign key whose delete action is
/// `NO ACTION` or `RESTRICT`: its rows must be deleted first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildFk {
    /// The referencing table.
    pub child: TableName,
    /// The referencing column.
    pub column: String,
    /// `format_type()` of the referencing column.
    pub column_type: String,
    /// The referenced column.
    pub parent_column: String,
}

/// Tables referencing `table` with a single-column foreign key whose delete action leaves the
/// work to the caller (NO ACTION / RESTRICT; CASCADE and SET NULL/DEFAULT are Postgres' job).
pub async fn referencing_tables(client: &Client, table: &TableName) -> Result<Vec<ChildFk>> {
    let rows = client
        .query(
            "SELECT cn.nspname::text, cc.relname::text, ca.attname::text, \
                    format_type(ca.atttypid, ca.atttypmod), pa.attname::text \
             FROM pg_constraint con \
             JOIN pg_class pc ON pc.oid = con.confrelid \
             JOIN pg_namespace pn ON pn.oid = pc.relnamespace \
             JOIN pg_class cc ON cc.oid = con.conrelid \
             JOIN pg_namespace cn ON cn.oid = cc.relnamespace \
             JOIN pg_attribute ca ON ca.attrelid = con.conrelid AND ca.attnum = con.conkey[1] \
             JOIN pg_attribute pa ON pa.attrelid = con.confrelid AND pa.attnum = con.confkey[1] \
             WHERE con.contype = 'f' AND pn.nspname = $1 AND pc.relname = $2 \
               AND array_length(con.conkey, 1) = 1 AND con.confdeltype IN ('a', 'r') \
             ORDER BY cn.nspname, cc.relname, con.conname",
            &[&table.schema, &table.name],
        )
        .await
        .with_context(|| format!("cannot read the tables referencing `{table}`"))?;
    Ok(rows
        .iter()
        .map(|r| ChildFk {
            child: TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)),
            column: r.get(2),
            column_type: r.get(3),
            parent_column: r.get(4),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_found_in_defaults() {
        assert_eq!(
            sequence_of_default("nextval('public.users_id_seq'::regclass)").as_deref(),
            Some("public.users_id_seq")
        );
        assert_eq!(
            sequence_of_default("nextval('\"Odd''s seq\"'::regclass)").as_deref(),
            Some("\"Odd's seq\"")
        );
        assert_eq!(sequence_of_default("now()"), None);
    }
}
