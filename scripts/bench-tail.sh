#!/usr/bin/env bash
# Read speed of `cdcctl tail`: BENCH_EVENTS (default 500,000) Debezium change events of the
# `users` table (schemas enabled, ~3.2 KB each, made from the real messages in
# tests/fixtures/debezium with a new id, email and LSN per event; 70% updates, 20% creates, 10%
# deletes) are produced to one topic of a private broker (the stack's noida-db binary on a free
# port with a throwaway data dir, stopped by PID at the end). Then, in the same run, BENCH_RUNS
# times each (median counts):
#
#   kcat -C -e -o beginning            raw messages to /dev/null (the read limit)
#   cdcctl tail --from beginning --until-end -o json    decoded events to /dev/null
#
# and prints both rates and the ratio cdcctl/kcat (target: >= 1.0).
#
#   scripts/bench-tail.sh               # BENCH_EVENTS=500000 BENCH_RUNS=3
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcctl/target}"
EVENTS=${BENCH_EVENTS:-500000}
RUNS=${BENCH_RUNS:-3}
CACHE=${CDCCTL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcctl}
FIXTURE=tests/fixtures/debezium/schemas-true/cdc.public.users.jsonl

step() { printf '\n==> %s\n' "$*" >&2; }
now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

step "installing what is missing (scripts/stack.sh install)"
scripts/stack.sh install >&2

step "building cdcctl (release)"
cargo build --release --locked --bin cdcctl >&2
cdcctl="$CARGO_TARGET_DIR/release/cdcctl"

tmp=$(mktemp -d)
broker_pid=
cleanup() {
  if [[ -n $broker_pid ]]; then
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
step "private broker on 127.0.0.1:$port"
"$CACHE/noida/bin/noida-db" start --only kafka --kafka-port "$port" --data-dir "$tmp/data" \
  >"$tmp/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 100); do
  if kcat -b "127.0.0.1:$port" -L -m 1 >/dev/null 2>&1; then break; fi
  sleep 0.1
done
brokers="127.0.0.1:$port"
topic=bench.public.users

step "making $EVENTS events from $FIXTURE"
python3 - "$FIXTURE" "$EVENTS" >"$tmp/events.tsv" <<'EOF'
import json, random, sys

fixture, count = sys.argv[1], int(sys.argv[2])
templates = {}
for line in open(fixture):
    m = json.loads(line)
    if m["payload"] is None:
        continue
    value = json.loads(m["payload"])
    templates.setdefault(value["payload"]["op"], (json.loads(m["key"]), value))
rng = random.Random(1)
out = sys.stdout
compact = dict(separators=(",", ":"), ensure_ascii=False)
# The schema part is the same bytes in every message of a topic: render it once.
schema_text = {op: json.dumps(v["schema"], **compact) for op, (_, v) in templates.items()}
key_schema = json.dumps(templates["c"][0]["schema"], **compact)
lsn = 30_000_000
for i in range(count):
    r = rng.random()
    op = "u" if r < 0.7 else ("c" if r < 0.9 else "d")
    key, value = templates[op]
    payload = dict(value["payload"])
    ident = rng.randrange(1, 100_000)
    lsn += rng.randrange(40, 400)
    row = {"id": ident, "email": f"user{ident}.{i}@example.com", "name": f"User {i}",
           "active": i % 7 != 0, "created_at": "2026-12-03T10:%02d:%02d.%06dZ" % (i // 60 % 60, i % 60, i % 1_000_000)}
    if op == "d":
        payload["before"] = dict(payload["before"] or row, id=ident)
        payload["after"] = None
    else:
        payload["after"] = row
    payload["source"] = dict(payload["source"], lsn=lsn, txId=1000 + i // 10, ts_ms=1_796_000_000_000 + i)
    payload["ts_ms"] = 1_796_000_000_100 + i
    k = '{"schema":%s,"payload":{"id":%d}}' % (key_schema, ident)
    v = '{"schema":%s,"payload":%s}' % (schema_text[op], json.dumps(payload, **compact))
    out.write(k + "\t" + v + "\n")
EOF
bytes=$(wc -c <"$tmp/events.tsv")
step "producing $EVENTS events ($((bytes / 1024 / 1024)) MiB) to $topic"
kcat -b "$brokers" -P -t "$topic" -K $'\t' -l "$tmp/events.tsv" \
  -X queue.buffering.max.messages=1000000 -X linger.ms=50
rm -f "$tmp/events.tsv"

# The broker persists what it was sent in the background; timing reads meanwhile would measure
# that (a 1.6 GB topic keeps it busy for a minute or two). Wait until it is idle (under 5% of a
# CPU for a second), then read once untimed.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$broker_pid/stat"; }
step "waiting for the broker to settle"
for _ in $(seq 300); do
  before=$(cpu_ticks)
  sleep 1
  if (($(cpu_ticks) - before < 5)); then break; fi
done
kcat -b "$brokers" -C -e -o beginning -q -t "$topic" >/dev/null

kcat_times=()
ours_times=()
for run in $(seq "$RUNS"); do
  step "run $run of $RUNS: kcat -C -e -o beginning"
  start=$(now)
  kcat -b "$brokers" -C -e -o beginning -q -t "$topic" >/dev/null
  kcat_times+=("$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')")

  step "run $run of $RUNS: cdcctl tail --from beginning --until-end -o json"
  start=$(now)
  "$cdcctl" -q tail --brokers "$brokers" --topic "$topic" --from beginning --until-end -o json \
    >/dev/null
  ours_times+=("$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')")
done

# Check once that cdcctl printed every event (not timed).
lines=$("$cdcctl" -q tail --brokers "$brokers" --topic "$topic" --from beginning --until-end \
  -o json | wc -l)
if [[ $lines -ne $EVENTS ]]; then
  echo "bench-tail: cdcctl printed $lines events, expected $EVENTS" >&2
  exit 1
fi

kcat_s=$(printf '%s\n' "${kcat_times[@]}" | median)
ours_s=$(printf '%s\n' "${ours_times[@]}" | median)
awk -v n="$EVENTS" -v k="$kcat_s" -v o="$ours_s" -v mb="$bytes" -v kt="${kcat_times[*]}" \
  -v ot="${ours_times[*]}" 'BEGIN {
  printf "\nevents: %d (%.0f MiB)   runs: kcat [%s] s, cdcctl [%s] s\n", n, mb / 1048576, kt, ot
  printf "kcat -C -e (raw, /dev/null):          %8.0f events/s  %6.0f MiB/s  (%.2f s)\n", n / k, mb / 1048576 / k, k
  printf "cdcctl tail -o json (decoded):        %8.0f events/s  %6.0f MiB/s  (%.2f s)\n", n / o, mb / 1048576 / o, o
  printf "ratio cdcctl/kcat: %.2fx (target >= 1.0x)\n", k / o
}'
