#!/usr/bin/env bash
# Bulk-load speed of `cdcctl generate-data --rows`: 1,000,000 rows, half into `public.users` and
# half into `public.credit_card_transactions` (foreign key to users, unique uuid, three indexes),
# in a scratch database of the local stack's Postgres that this script creates and drops.
#
# For reference it then exports the very same rows to files and times psql's `\copy` loading
# them back into the emptied tables over one connection: what this Postgres ingests from a
# pre-generated file. Each side runs BENCH_RUNS times (default 3); the median counts.
#
#   scripts/bench-generate.sh            # BENCH_ROWS=1000000 BENCH_RUNS=3 BENCH_SEED=1
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcctl/target}"
ROWS=${BENCH_ROWS:-1000000}
RUNS=${BENCH_RUNS:-3}
SEED=${BENCH_SEED:-1}
per_table=$((ROWS / 2))

step() { printf '\n==> %s\n' "$*" >&2; }

step "local stack (scripts/stack.sh up)"
scripts/stack.sh up >&2
eval "$(scripts/stack.sh env)"

step "building cdcctl (release)"
cargo build --release --locked --bin cdcctl >&2
cdcctl="$CARGO_TARGET_DIR/release/cdcctl"

admin_url=$CDCCTL_POSTGRES_URL
server_url=${admin_url%/*}
db="cdcctl_bench_$$"
tmp=$(mktemp -d)
admin() { psql "$admin_url" -X -q -v ON_ERROR_STOP=1 "$@"; }
scratch() { psql "$server_url/$db" -X -q -v ON_ERROR_STOP=1 "$@"; }
cleanup() {
  admin -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

step "scratch database $db with the demo schema"
admin -c "CREATE DATABASE \"$db\""
export CDCCTL_POSTGRES_URL="$server_url/$db"
"$cdcctl" -q setup-source --demo >/dev/null
empty() { scratch -c 'TRUNCATE public.credit_card_transactions, public.users RESTART IDENTITY'; }
now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

cpus=$(nproc)
ours=()
for run in $(seq "$RUNS"); do
  empty
  step "cdcctl generate-data --rows $per_table (2 tables), run $run of $RUNS"
  start=$(now)
  json=$("$cdcctl" -o json generate-data --table users,credit_card_transactions \
    --rows "$per_table" --seed "$SEED")
  wall=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
  rows=$(jq -r '.bulk.rows' <<<"$json")
  rate=$(jq -r '.bulk.rows_per_sec | floor' <<<"$json")
  secs=$(jq -r '.bulk.elapsed_ms / 1000' <<<"$json")
  conns=$(jq -r '.bulk.connections' <<<"$json")
  [[ $rows == "$((per_table * 2))" ]] || { echo "expected $((per_table * 2)) rows, got $rows" >&2; exit 1; }
  printf '    %s rows in %s s over %s connections: %s rows/s (process wall time %s s)\n' \
    "$rows" "$secs" "$conns" "$rate" "$wall" >&2
  ours+=("$rate")
done

step "reference: psql \\copy of the same rows from files"
scratch -c "\\copy public.users TO '$tmp/users.tsv'" \
  -c "\\copy public.credit_card_transactions TO '$tmp/transactions.tsv'"
theirs=()
for run in $(seq "$RUNS"); do
  empty
  start=$(now)
  scratch -c "\\copy public.users FROM '$tmp/users.tsv'" \
    -c "\\copy public.credit_card_transactions FROM '$tmp/transactions.tsv'"
  secs=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
  rate=$(awk -v r="$((per_table * 2))" -v s="$secs" 'BEGIN { printf "%d", r / s }')
  printf '    run %s: %s rows in %s s: %s rows/s\n' "$run" "$((per_table * 2))" "$secs" "$rate" >&2
  theirs+=("$rate")
done

ours_median=$(printf '%s\n' "${ours[@]}" | median)
theirs_median=$(printf '%s\n' "${theirs[@]}" | median)
ratio=$(awk -v a="$ours_median" -v b="$theirs_median" 'BEGIN { printf "%.2f", a / b }')
printf '\ncdcctl generate-data bulk load: %s rows/s (median of %s runs, %s rows, %s CPUs)\n' \
  "$ours_median" "$RUNS" "$((per_table * 2))" "$cpus"
printf 'psql \\copy of the same rows:    %s rows/s (median of %s runs)\n' "$theirs_median" "$RUNS"
printf 'ratio:                          %sx\n' "$ratio"
