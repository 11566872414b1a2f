#!/usr/bin/env bash
# The demo: install what is missing, start (or reuse) the local stack, build cdcctl and show what
# it sees, prepare the source, apply the Debezium connector and fill the source with data. Later
# issues extend this until it runs the whole pipeline into DuckDB.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcctl/target}"

step() { printf '\n==> %s\n' "$*"; }

step "starting the local stack (scripts/stack.sh up)"
scripts/stack.sh up
# cdcctl's defaults are the stack on its default ports; only point it elsewhere when they moved.
if env | grep -q '^CDCCTL_STACK_[A-Z]*_PORT='; then
  eval "$(scripts/stack.sh env)"
fi

step "building cdcctl"
cargo build --locked --bin cdcctl
cdcctl() { "$CARGO_TARGET_DIR/debug/cdcctl" "$@"; }

step "scripts/stack.sh status"
scripts/stack.sh status

step "cdcctl config (every setting and where it came from)"
cdcctl config

step "cdcctl setup-source --demo (checks, demo tables, publication)"
cdcctl setup-source --demo --replica-identity full

step "cdcctl create-connector (Debezium on Kafka Connect, reusing the publication; waits for RUNNING)"
# Idempotent: a re-run reports `unchanged`; --yes applies a changed config without a prompt.
cdcctl create-connector --tables users,credit_card_transactions,commerce.users,commerce.products \
  --wait --yes

step "cdcctl generate-data (bulk load, then a stream of inserts, updates and deletes)"
cdcctl generate-data --rows 10000 --seed 42
cdcctl generate-data --events 2000 --tx-size 10 --rate 1000

step "cdcctl connector status (the connector streams those changes to Kafka)"
cdcctl connector status

step "cdcctl tail (the last changes of public.users, decoded)"
cdcctl tail users --from offset:-5 --until-end

printf '\nThe stack keeps running; stop it with scripts/stack.sh down.\n'
