#!/usr/bin/env bash
# Read speed of `cdcctl tail`: BENCH_EVENTS (default 500,000) Debezium change events of the
# `users` table (schemas enabled, ~3.4 KB each, made from the real messages in
# tests/fixtures/debezium by scripts/lib/bench-events.sh: a consistent stream of 70% updates,
# 20% creates, 10% deletes with increasing LSNs) are produced to one topic of a private broker
# (the stack's noida-db binary on a free port with a throwaway data dir, stopped by PID at the
# end). Then, in the same run, BENCH_RUNS times each (median counts):
#
#   kcat -C -e -o beginning            raw messages to /dev/null (the read limit)
#   cdcctl tail --from beginning --until-end -o json    decoded events to /dev/null
#
# and prints both rates and the ratio cdcctl/kcat (target: >= 1.0).
#
#   scripts/bench-tail.sh               # BENCH_EVENTS=500000 BENCH_RUNS=3
#   BENCH_SKIP_BUILD=1 ...              use $CARGO_TARGET_DIR/release/cdcctl as it is
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/bench-events.sh
source scripts/lib/bench-events.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcctl/target}"
EVENTS=${BENCH_EVENTS:-500000}
RUNS=${BENCH_RUNS:-3}
FIXTURE=tests/fixtures/debezium/schemas-true/cdc.public.users.jsonl

bench_step "installing what is missing (scripts/stack.sh install)"
scripts/stack.sh install >&2

cdcctl="$CARGO_TARGET_DIR/release/cdcctl"
if [[ ${BENCH_SKIP_BUILD:-} == 1 ]]; then
  bench_step "using $cdcctl as it is (BENCH_SKIP_BUILD=1)"
else
  bench_step "building cdcctl (release)"
  cargo build --release --locked --bin cdcctl >&2
fi

tmp=$(mktemp -d)
trap 'bench_stop_broker; rm -rf "$tmp"' EXIT

bench_private_broker "$tmp/data" "$tmp/broker.log"
bench_step "private broker on $BENCH_BROKERS"
brokers=$BENCH_BROKERS
topic=bench.public.users

bench_step "making $EVENTS events from $FIXTURE"
bench_make_events "$FIXTURE" "$EVENTS" "$tmp/events.tsv"
bytes=$(wc -c <"$tmp/events.tsv")
bench_step "producing $EVENTS events ($((bytes / 1024 / 1024)) MiB) to $topic"
bench_produce "$brokers" "$topic" "$tmp/events.tsv"
rm -f "$tmp/events.tsv" "$tmp/events.tsv.stats"

# The broker persists what it was sent in the background; timing reads meanwhile would measure
# that. Wait until it is idle, then read once untimed.
bench_step "waiting for the broker to settle"
bench_broker_settle
bench_kcat_read "$brokers" "$topic" # once untimed

kcat_times=()
ours_times=()
# The broker's page faults during each reader's runs: near zero unless the broker's allocator
# misbehaves (see bench_private_broker), which would weigh on that reader's times.
kcat_faults=0
ours_faults=0
for run in $(seq "$RUNS"); do
  bench_step "run $run of $RUNS: kcat -C -e -o beginning"
  faults=$(bench_faults)
  start=$(bench_now)
  bench_kcat_read "$brokers" "$topic"
  kcat_times+=("$(bench_since "$start")")
  kcat_faults=$((kcat_faults + $(bench_faults) - faults))

  bench_step "run $run of $RUNS: cdcctl tail --from beginning --until-end -o json"
  faults=$(bench_faults)
  start=$(bench_now)
  "$cdcctl" -q tail --brokers "$brokers" --topic "$topic" --from beginning --until-end -o json \
    >/dev/null
  ours_times+=("$(bench_since "$start")")
  ours_faults=$((ours_faults + $(bench_faults) - faults))
done

# Check once that cdcctl printed every event (not timed).
lines=$("$cdcctl" -q tail --brokers "$brokers" --topic "$topic" --from beginning --until-end \
  -o json | wc -l)
if [[ $lines -ne $EVENTS ]]; then
  echo "bench-tail: cdcctl printed $lines events, expected $EVENTS" >&2
  exit 1
fi

kcat_s=$(printf '%s\n' "${kcat_times[@]}" | bench_median)
ours_s=$(printf '%s\n' "${ours_times[@]}" | bench_median)
awk -v n="$EVENTS" -v k="$kcat_s" -v o="$ours_s" -v mb="$bytes" -v kt="${kcat_times[*]}" \
  -v ot="${ours_times[*]}" -v kf="$kcat_faults" -v of="$ours_faults" 'BEGIN {
  printf "\nevents: %d (%.0f MiB)   runs: kcat [%s] s, cdcctl [%s] s\n", n, mb / 1048576, kt, ot
  printf "broker page faults while reading: kcat %d, cdcctl %d\n", kf, of
  printf "kcat -C -e (raw, /dev/null):          %8.0f events/s  %6.0f MiB/s  (%.2f s)\n", n / k, mb / 1048576 / k, k
  printf "cdcctl tail -o json (decoded):        %8.0f events/s  %6.0f MiB/s  (%.2f s)\n", n / o, mb / 1048576 / o, o
  printf "ratio cdcctl/kcat: %.2fx (target >= 1.0x)\n", k / o
}'
