#!/usr/bin/env bash
# End-to-end latency of the pipeline on the local stack: Postgres → Debezium (Kafka Connect) →
# broker → `cdcctl load` → DuckDB, at fixed change rates.
#
# In a scratch database of the stack's Postgres (created and dropped here), a table
# `public.events` gets a Debezium connector of its own (own topic prefix and slot, deleted with
# the slot at the end). For each rate of BENCH_RATES (default "1000 5000" events/s): a following
# `cdcctl load --flush-interval 100ms --metrics-file M` into a new DuckDB file is started, then
# `cdcctl generate-data --table events --duration BENCH_DURATION --rate RATE --mix insert=100`
# (every event a new row, so every event stays visible in DuckDB), then the loader is left to
# drain and stopped by PID (SIGTERM; it commits and exits 0). Two measurements per event:
#
#   loader metrics   the loader's own histograms (`latency_ms` of the metrics file): source commit
#                    (source.ts_ms) → warehouse commit, and Kafka append → warehouse commit
#                    (the loader's share);
#   warehouse        independently, per row of DuckDB: _cdc_processed_at − _cdc_timestamp, the
#                    same source commit → warehouse interval from what was stored (DuckDB's
#                    now() is the transaction's start, so this side is early by the time the
#                    batch took to apply, tens of milliseconds).
#
# It prints p50/p95/p99/max of each, a text histogram of the warehouse side, and PASS/FAIL for
# the targets: loader share p99 < 250 ms, end to end p99 < 2 s. Needs python's duckdb module (the
# stack's venv has it) to read the DuckDB file. Exit 0 unless something failed to run or the rows
# in DuckDB are not the rows generated (a missed target is reported, not an error).
#
#   scripts/bench-latency.sh                               # 1k and 5k events/s, 60 s each: ~3 min
#   BENCH_RATES=1000 BENCH_DURATION=20s scripts/bench-latency.sh
#   BENCH_SKIP_BUILD=1 ...   use $CARGO_TARGET_DIR/release/cdcctl as it is
#   BENCH_BIN=path ...       use that cdcctl binary (e.g. the debug build)
#   BENCH_FLUSH=50ms ...     the loader's --flush-interval (default 100ms)
#   BENCH_LOAD_ARGS='...'    more `cdcctl load` arguments (word-split)
#   BENCH_LOG_DIR=dir        keep the loader's debug log (per chunk and batch timings) there
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcctl/target}"
RATES=${BENCH_RATES:-"1000 5000"}
DURATION=${BENCH_DURATION:-60s}
TARGET_LOADER_P99_MS=250
TARGET_E2E_P99_MS=2000

step() { printf '\n==> %s\n' "$*" >&2; }

step "local stack (scripts/stack.sh up)"
scripts/stack.sh up >&2
eval "$(scripts/stack.sh env)"

if [[ -n ${BENCH_BIN:-} ]]; then
  cdcctl=$BENCH_BIN
elif [[ ${BENCH_SKIP_BUILD:-} == 1 ]]; then
  cdcctl="$CARGO_TARGET_DIR/release/cdcctl"
else
  step "building cdcctl (release)"
  cargo build --release --locked --bin cdcctl >&2
  cdcctl="$CARGO_TARGET_DIR/release/cdcctl"
fi
python=${CDCCTL_CACHE_DIR:-$HOME/.cache/cdcctl}/venv/bin/python
"$python" -c 'import duckdb' 2>/dev/null || python=python3
"$python" -c 'import duckdb' 2>/dev/null || {
  echo "bench-latency: python's duckdb module is needed (scripts/stack.sh install makes a venv with it)" >&2
  exit 1
}

log_level=(-q)
if [[ -n ${BENCH_LOG_DIR:-} ]]; then
  mkdir -p "$BENCH_LOG_DIR"
  log_level=(-vv)
fi

admin_url=$CDCCTL_POSTGRES_URL
db="cdcctl_latency_$$"
tmp=$(mktemp -d)
loader_pid=
export CDCCTL_POSTGRES_URL="${admin_url%/*}/$db"
export CDCCTL_KAFKA_TOPIC_PREFIX="latency_$$"
export CDCCTL_CONNECT_CONNECTOR="latency_$$"
cleanup() {
  [[ -n $loader_pid ]] && kill "$loader_pid" 2>/dev/null && wait "$loader_pid" 2>/dev/null
  "$cdcctl" connector delete --drop-slot --yes >/dev/null 2>&1 || true
  psql "$admin_url" -X -q -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

step "scratch database $db, table public.events, connector $CDCCTL_CONNECT_CONNECTOR"
psql "$admin_url" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$db\""
psql "$CDCCTL_POSTGRES_URL" -X -q -v ON_ERROR_STOP=1 -c \
  "CREATE TABLE public.events (id bigserial PRIMARY KEY, kind text, amount numeric(12,2), note text)"
# Connect creates the topic with `message.timestamp.type=LogAppendTime`: each message's Kafka
# timestamp is then the broker's append time, not the time Connect's producer was handed it
# (which can be earlier by as long as the producer queues it).
"$cdcctl" create-connector --tables public.events --wait --yes \
  --set topic.creation.default.replication.factor=1 --set topic.creation.default.partitions=1 \
  --set topic.creation.default.message.timestamp.type=LogAppendTime >&2
# One row makes Debezium create the topic; each loader starts at its end (`--from end`), so it
# measures only the events generated after it started.
psql "$CDCCTL_POSTGRES_URL" -X -q -c "INSERT INTO public.events (kind) VALUES ('warm-up')"
topic="$CDCCTL_KAFKA_TOPIC_PREFIX.public.events"
for _ in $(seq 60); do
  [[ -n $(kcat -b "$CDCCTL_KAFKA_BROKERS" -C -t "$topic" -o beginning -e -q 2>/dev/null | head -c 1) ]] && break
  sleep 1
done

results=()
for rate in $RATES; do
  duck="$tmp/latency-$rate.duckdb"
  metrics="$tmp/metrics-$rate.json"
  before=$(psql "$CDCCTL_POSTGRES_URL" -X -tAc "SELECT count(*) FROM public.events")
  step "rate $rate events/s for $DURATION: loader following, then generate-data"
  # shellcheck disable=SC2086 # BENCH_LOAD_ARGS is split on purpose
  "$cdcctl" load events --from end --duckdb "$duck" --group "latency-$$-$rate" \
    --flush-interval "${BENCH_FLUSH:-100ms}" --metrics-file "$metrics" --metrics-interval 1s \
    "${log_level[@]}" ${BENCH_LOAD_ARGS:-} 2>"$tmp/load-$rate.err" &
  loader_pid=$!
  sleep 2
  "$cdcctl" generate-data --table events --duration "$DURATION" --rate "$rate" --tx-size 10 \
    --mix insert=100 -q >&2
  want=$(psql "$CDCCTL_POSTGRES_URL" -X -tAc "SELECT count(*) FROM public.events")
  want=$((want - before))
  # Drain: until the loader's metrics count every generated row (bounded).
  for _ in $(seq 120); do
    loaded=$("$python" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(t["c"] for t in d["tables"].values()))' "$metrics" 2>/dev/null || echo 0)
    [[ $loaded -ge $want ]] && break
    sleep 1
  done
  kill -TERM "$loader_pid"
  wait "$loader_pid" || { cat "$tmp/load-$rate.err" >&2; exit 1; }
  loader_pid=
  [[ -n ${BENCH_LOG_DIR:-} ]] && cp "$tmp/load-$rate.err" "$BENCH_LOG_DIR/load-$rate.log"
  results+=("$rate $want $duck $metrics")
done

step "results"
"$python" - "$TARGET_LOADER_P99_MS" "$TARGET_E2E_P99_MS" "$DURATION" "${results[@]}" <<'PY'
import json, sys
import duckdb

loader_target, e2e_target, duration = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
failed_run = False
missed = []
for run in sys.argv[4:]:
    rate, want, path, metrics = run.split()
    want = int(want)
    m = json.load(open(metrics))
    con = duckdb.connect(path, read_only=True)
    rows = con.execute("SELECT count(*) FROM public.events").fetchone()[0]
    lat = [r[0] / 1000.0 for r in con.execute(
        "SELECT epoch_us(_cdc_processed_at) - epoch_us(_cdc_timestamp) FROM public.events").fetchall()]
    lat.sort()
    def pct(xs, p):
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]
    lm = m["latency_ms"]
    print(f"\nrate {rate} events/s for {duration}: {want} events generated, {rows} rows in DuckDB, "
          f"{m['batches']} batches, loader {m['events_per_second']} events/s")
    if rows != want:
        print(f"  ERROR: DuckDB holds {rows} rows, {want} were generated")
        failed_run = True
    print(f"  {'measurement':46} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}  (ms)")
    for name, d in [("source commit → warehouse commit (loader)", lm["source_to_commit"]),
                    ("Kafka append → warehouse commit (loader)", lm["kafka_to_commit"])]:
        print(f"  {name:46} {d['p50']:>8} {d['p95']:>8} {d['p99']:>8} {d['max']:>8}")
    w = {p: round(pct(lat, p)) for p in (50, 95, 99, 100)}
    print(f"  {'source commit → warehouse (DuckDB rows)':46} {w[50]:>8} {w[95]:>8} {w[99]:>8} {w[100]:>8}")
    diff = lm["source_to_commit"]["p99"] - w[99]
    print(f"  loader − warehouse at p99: {diff} ms (the warehouse side stamps the transaction's start)")
    edges = [50, 100, 250, 500, 1000, 2000, 5000]
    counts = [0] * (len(edges) + 1)
    for x in lat:
        i = 0
        while i < len(edges) and x >= edges[i]:
            i += 1
        counts[i] += 1
    top = max(counts) or 1
    labels = [f"< {edges[0]} ms"] + [f"{a}-{b} ms" for a, b in zip(edges, edges[1:])] + [f">= {edges[-1]} ms"]
    print("  histogram (DuckDB rows, source commit → warehouse):")
    for label, n in zip(labels, counts):
        bar = "#" * round(40 * n / top)
        print(f"    {label:>14} {n:>8} {bar}")
    loader_p99 = lm["kafka_to_commit"]["p99"]
    e2e_p99 = lm["source_to_commit"]["p99"]
    ok1 = loader_p99 < loader_target
    ok2 = e2e_p99 < e2e_target
    print(f"  target loader share p99 < {loader_target} ms: {loader_p99} ms {'PASS' if ok1 else 'FAIL'}")
    print(f"  target end to end p99 < {e2e_target} ms: {e2e_p99} ms {'PASS' if ok2 else 'FAIL'}")
    if not (ok1 and ok2):
        missed.append(rate)
if missed:
    print(f"\nmissed a target at {', '.join(missed)} events/s")
sys.exit(1 if failed_run else 0)
PY
