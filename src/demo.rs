//! The demo schema: the four tables of the seed pipelines (seed 000 `public.users` and
//! `public.credit_card_transactions`, seed 002 `commerce.users` and `commerce.products`), with
//! primary keys, a foreign key from transactions to users, and columns covering numeric(12,2),
//! timestamptz, date, jsonb, uuid, boolean and text[]. `setup-source --demo` creates it and
//! `generate-data` fills it.

use crate::clients::postgres::TableName;

/// `CREATE ... IF NOT EXISTS` statements, in dependency order; running them twice is harmless.
pub const DDL: &[&str] = &[
    "CREATE SCHEMA IF NOT EXISTS \"commerce\"",
    "CREATE TABLE IF NOT EXISTS \"public\".\"users\" (
    \"id\" bigserial PRIMARY KEY,
    \"name\" varchar(100) NOT NULL,
    \"email\" varchar(255) NOT NULL UNIQUE,
    \"address\" text,
    \"is_active\" boolean NOT NULL DEFAULT true,
    \"birth_date\" date,
    \"tags\" text[] NOT NULL DEFAULT '{}',
    \"created_at\" timestamptz NOT NULL DEFAULT now(),
    \"updated_at\" timestamptz NOT NULL DEFAULT now()
)",
    "CREATE TABLE IF NOT EXISTS \"public\".\"credit_card_transactions\" (
    \"id\" bigserial PRIMARY KEY,
    \"transaction_uuid\" uuid NOT NULL UNIQUE,
    \"user_id\" bigint NOT NULL REFERENCES \"public\".\"users\" (\"id\"),
    \"amount\" numeric(12,2) NOT NULL,
    \"currency\" char(3) NOT NULL DEFAULT 'USD',
    \"card_brand\" varchar(20) NOT NULL,
    \"card_number_masked\" varchar(19) NOT NULL,
    \"merchant\" varchar(255) NOT NULL,
    \"category\" varchar(50) NOT NULL,
    \"status\" varchar(20) NOT NULL,
    \"metadata\" jsonb,
    \"notes\" text,
    \"transaction_date\" timestamptz NOT NULL DEFAULT now()
)",
    "CREATE INDEX IF NOT EXISTS \"credit_card_transactions_user_id_idx\"
    ON \"public\".\"credit_card_transactions\" (\"user_id\")",
    "CREATE TABLE IF NOT EXISTS \"commerce\".\"users\" (
    \"id\" bigserial PRIMARY KEY,
    \"username\" varchar(50) NOT NULL UNIQUE,
    \"email\" varchar(255) NOT NULL,
    \"full_name\" varchar(100),
    \"country\" char(2),
    \"is_premium\" boolean NOT NULL DEFAULT false,
    \"signup_date\" date NOT NULL DEFAULT current_date,
    \"preferences\" jsonb,
    \"updated_at\" timestamptz NOT NULL DEFAULT now()
)",
    "CREATE TABLE IF NOT EXISTS \"commerce\".\"products\" (
    \"id\" bigserial PRIMARY KEY,
    \"sku\" uuid NOT NULL UNIQUE,
    \"name\" varchar(200) NOT NULL,
    \"description\" text,
    \"price\" numeric(12,2) NOT NULL,
    \"category\" varchar(50),
    \"tags\" text[] NOT NULL DEFAULT '{}',
    \"in_stock\" boolean NOT NULL DEFAULT true,
    \"attributes\" jsonb,
    \"updated_at\" timestamptz NOT NULL DEFAULT now()
)",
];

/// The demo tables, parents before children.
pub fn tables() -> Vec<TableName> {
    vec![
        TableName::new("public", "users"),
        TableName::new("public", "credit_card_transactions"),
        TableName::new("commerce", "users"),
        TableName::new("commerce", "products"),
    ]
}
