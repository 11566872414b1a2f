#!/usr/bin/env bash
# The demo: install what is missing, start (or reuse) the local stack, build cdcctl and show what
# it sees, prepare the source, apply the Debezium connector, fill the source with data, load the
# change topics into DuckDB (.stack/demo.duckdb, every change kept too) and print the row counts of
# Postgres and DuckDB side by side, then the Type 2 history of users and the pipeline's health.
# Idempotent: a second run adds data and loads only what is new.
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

step "cdcctl load (the change topics into DuckDB until caught up; again until Debezium has sent all)"
duckdb_file=.stack/demo.duckdb
pg_url=$(scripts/stack.sh env | sed -n 's/^export CDCCTL_POSTGRES_URL=//p')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tables=(public.users public.credit_card_transactions commerce.users commerce.products)
for attempt in $(seq 60); do
  cdcctl -o json load --until-caught-up --history --duckdb "$duckdb_file" --group cdcctl-demo >"$tmp/load.json"
  for t in "${tables[@]}"; do
    printf '%s %s\n' "$t" "$(psql "$pg_url" -tAc "SELECT count(*) FROM $t")"
  done >"$tmp/pg.txt"
  if python3 - "$tmp/load.json" "$tmp/pg.txt" <<'PY'
import json, sys
load = json.load(open(sys.argv[1]))
duck = {t["source"]: t["rows"] for t in load["targets"]}
rows = [line.split() for line in open(sys.argv[2])]
print(f"{'TABLE':34} {'POSTGRES':>9} {'DUCKDB':>9}")
for table, pg in rows:
    print(f"{table:34} {pg:>9} {str(duck.get(table, '-')):>9}")
sys.exit(0 if all(str(duck.get(t)) == pg for t, pg in rows) else 1)
PY
  then
    printf 'equal after %s load run(s): %s\n' "$attempt" "$duckdb_file"
    break
  fi
  if [[ $attempt == 60 ]]; then
    echo "DuckDB did not catch up with Postgres; see cdcctl connector status" >&2
    exit 1
  fi
  sleep 2
done

step "cdcctl tail (the last changes of public.users, decoded)"
cdcctl tail users --from offset:-5 --until-end

step "cdcctl scd2 (Type 2 history of public.users from the changes load --history kept)"
cdcctl scd2 --duckdb "$duckdb_file" --table users --key id --track name,email,address,is_active
cdcctl scd2 --duckdb "$duckdb_file" --table users --check

step "cdcctl health (Connect, Postgres slot, Kafka lag, DuckDB freshness)"
# Exit 0 healthy, 1 a check failed, 3 a service is down: shown, not fatal to the demo.
cdcctl health --duckdb "$duckdb_file" --group cdcctl-demo || echo "cdcctl health exited $?"

printf '\nThe stack keeps running; stop it with scripts/stack.sh down.\n'
