# shellcheck shell=bash
# What the Kafka benchmarks (scripts/bench-tail.sh, scripts/bench-load.sh) share: a private
# broker, a consistent stream of Debezium change events of the `users` table, producing it, and
# timing helpers.
#
# Meant to be sourced, not executed:
#   source scripts/lib/bench-events.sh
#   bench_private_broker "$tmp/data" "$tmp/broker.log"   # sets BENCH_BROKERS, BENCH_BROKER_PID
#   bench_make_events "$fixture" 1000000 "$tmp/events.tsv" 100000 300000
#   bench_produce "$BENCH_BROKERS" bench.public.users "$tmp/events.tsv" 100000
#   bench_broker_settle
#   bench_stop_broker                                     # by PID; call it from an EXIT trap too
#
# Needs python3 and kcat on PATH and the stack's noida-db binary (`scripts/stack.sh install`).
# Sets no shell option and no trap; safe under `set -euo pipefail`.

_BENCH_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/broker.sh
source "$_BENCH_LIB_DIR/broker.sh" # broker_default_root: where `stack.sh install` puts noida-db

BENCH_BROKER_PID=
BENCH_BROKERS=

bench_step() { printf '\n==> %s\n' "$*" >&2; }
bench_die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# Wall clock in seconds (for bench_since).
bench_now() { date +%s.%N; }

# bench_since START: seconds since START (a bench_now value), 3 decimals.
bench_since() { awk -v a="$1" -v b="$(bench_now)" 'BEGIN { printf "%.3f", b - a }'; }

# Median of the numbers on stdin, one a line (the lower middle one of an even count).
bench_median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# bench_private_broker DATA_DIR LOG
# Starts the stack's noida-db (Kafka only) on a free port of 127.0.0.1 with DATA_DIR as its
# throwaway data dir, in the background of the calling shell, and waits until it answers.
# Sets BENCH_BROKER_PID and BENCH_BROKERS (host:port). Call it directly, not in $(...).
bench_private_broker() {
  local data=$1 log=$2 bin port
  bin="$(broker_default_root)/bin/noida-db"
  [[ -x $bin ]] || bench_die "$bin is missing (run scripts/stack.sh install)"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # A throwaway log: never saved while running (the save copies the log under the broker's lock).
  #
  # One malloc arena that keeps what it freed: glibc gives each connection thread of the broker
  # an arena, and one that inherits a crowded arena (the producer's, which holds the topic) maps
  # a fresh heap for every ~1 MB Fetch response and unmaps it after, page-faulting on every byte
  # it sends. That doubles the broker's CPU for one reader's connection, at random, whichever
  # reader it is (measured: 423,684 faults, the whole 1.6 GB topic, and 0.5 -> 1.1 CPU-s; kcat
  # was hit on one broker instance, cdcctl on another). `bench_faults` shows it.
  GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824 \
    NOIDA_AUTOSAVE_SECS=0 "$bin" start --only kafka --kafka-port "$port" --data-dir "$data" \
    >"$log" 2>&1 &
  BENCH_BROKER_PID=$!
  BENCH_BROKERS="127.0.0.1:$port"
  local _
  for _ in $(seq 100); do
    if kcat -b "$BENCH_BROKERS" -L -m 1 >/dev/null 2>&1; then return 0; fi
    kill -0 "$BENCH_BROKER_PID" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 20 "$log" >&2 || true
  bench_die "the private broker on $BENCH_BROKERS did not come up (log above)"
}

# Stops the private broker by its PID (never by name) and waits for it. Idempotent.
bench_stop_broker() {
  if [[ -n $BENCH_BROKER_PID ]]; then
    # SIGKILL: on SIGTERM the broker first persists its whole log (minutes for 1M events) to a
    # data directory that is thrown away anyway.
    kill -9 "$BENCH_BROKER_PID" 2>/dev/null || true
    wait "$BENCH_BROKER_PID" 2>/dev/null || true
  fi
  BENCH_BROKER_PID=
  BENCH_BROKERS=
}

# CPU time (user + system, in ticks) the private broker used so far.
_bench_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$BENCH_BROKER_PID/stat"; }

# Minor page faults of the private broker so far (see bench_private_broker).
bench_faults() { awk '{ print $10 }' "/proc/$BENCH_BROKER_PID/stat"; }

# The broker persists what it was sent in the background; timing reads meanwhile would measure
# that (a 1.6 GB topic keeps it busy for a minute or two). Waits (at most 5 minutes) until it is
# idle: under 5% of a CPU for a second.
bench_broker_settle() {
  local before _
  for _ in $(seq 300); do
    before=$(_bench_cpu_ticks)
    sleep 1
    if (($(_bench_cpu_ticks) - before < 5)); then return 0; fi
  done
}

# bench_kcat_read BROKERS TOPIC [KCAT_ARG...]: reads the whole topic with kcat, messages to
# /dev/null.
bench_kcat_read() { kcat -b "$1" -C -e -o beginning -q -t "$2" "${@:3}" >/dev/null; }

# bench_topic_count BROKERS TOPIC: reads the whole topic with kcat; prints how many messages.
bench_topic_count() { kcat -b "$1" -C -e -o beginning -q -t "$2" -f '\n' | wc -l; }

# bench_produce BROKERS TOPIC FILE [COUNT]
# Produces the first COUNT (default: all) lines of FILE, each `key<TAB>value`, to TOPIC.
bench_produce() {
  local brokers=$1 topic=$2 file=$3 count=${4:-}
  local args=(-b "$brokers" -P -t "$topic" -K $'\t'
    -X queue.buffering.max.messages=1000000 -X linger.ms=50)
  if [[ -n $count ]]; then
    head -n "$count" "$file" | kcat "${args[@]}"
  else
    kcat "${args[@]}" -l "$file"
  fi
}

# bench_make_events FIXTURE N OUT [CHECKPOINT...]
#
# Writes N Debezium change events (JsonConverter with schemas, as the stack's connector writes
# them) of table public.users to OUT, one `key<TAB>value` a line, made from the real messages in
# FIXTURE (tests/fixtures/debezium/schemas-true/cdc.public.users.jsonl): its key and value schemas
# and its source block, with REPLICA IDENTITY FULL (updates and deletes carry the `before` row).
#
# The stream is consistent, and so is every prefix of it: 70% updates, 20% creates, 10% deletes
# (seeded, the same every time). Ids 1..25,000 exist before the stream starts (as with
# snapshot.mode=no_data); creates take new ids; updates and deletes pick a random id that exists
# at that point, and `before` is its current row. A deleted id never comes back. Events are
# grouped into transactions of 1 to 4 (txId), `source.lsn` strictly increases, `source.sequence`
# is [last commit LSN, LSN], `source.ts_ms` is the commit time (about 5,000 events/s, ending
# now) and the envelope's `ts_ms` a few hundred ms later. Keys are `{"schema":..,"payload":
# {"id":N}}`. No tombstones. About 3.3 KB a message.
#
# Also writes OUT.stats: for N and each CHECKPOINT (< N) a line `EVENTS ROWS ID_SUM C U D`: what a
# loader that applied the first EVENTS events to an empty table holds (ROWS rows with ids
# summing to ID_SUM; ids only ever seen in updates are upserted, deletes of ids it never saw
# change nothing) and the op counts.
bench_make_events() {
  local fixture=$1 count=$2 out=$3
  shift 3
  python3 - "$fixture" "$count" "$out" "$@" <<'EOF'
import datetime, json, random, sys, time

fixture, count, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
checkpoints = sorted({int(a) for a in sys.argv[4:] if 0 < int(a) < count} | {count})
INITIAL = 25_000  # ids that exist before the stream; the pool updates and deletes draw from

# The last message of each op: for `u` and `d` that is after REPLICA IDENTITY FULL.
templates = {}
for line in open(fixture):
    m = json.loads(line)
    if m["payload"] is None:
        continue
    value = json.loads(m["payload"])
    templates[value["payload"]["op"]] = (json.loads(m["key"]), value)
compact = dict(separators=(",", ":"), ensure_ascii=False)
# The schema part is the same bytes in every message of a topic: render it once.
schema_text = {op: json.dumps(v["schema"], **compact) for op, (_, v) in templates.items()}
key_schema = json.dumps(templates["c"][0]["schema"], **compact)
source_template = templates["c"][1]["payload"]["source"]

rng = random.Random(1)
now_ms = int(time.time() * 1000)
ts_ms = now_ms - count // 5          # ~5,000 events/s of source commits, ending now
created_base = ts_ms - 86_400_000 * 30

def iso(ms, us):
    t = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%06dZ" % (ms % 1000 * 1000 + us)

def initial_row(ident):
    return {"id": ident, "email": f"user{ident}@example.com", "name": f"User {ident}",
            "active": True, "created_at": iso(created_base + ident * 1000, ident % 1000)}

live = list(range(1, INITIAL + 1))   # ids that exist now
pos = {i: i - 1 for i in live}       # id -> index in live
rows = {}                            # current row of every id the stream touched
next_id = INITIAL + 1
seen = set()                         # ids that appeared in the stream
n_rows = id_sum = 0                  # what a loader that started empty holds
ops = {"c": 0, "u": 0, "d": 0}

lsn = 30_000_000
commit_lsn = lsn
tx_id = 1000
tx_left = 0

out = open(out_path, "w", buffering=1 << 20)
stats = open(out_path + ".stats", "w")
next_checkpoint = 0
for i in range(count):
    if tx_left == 0:
        commit_lsn = lsn
        tx_id += 1
        tx_left = rng.randint(1, 4)
        ts_ms += rng.randint(0, 1)
        tx_us = rng.randrange(1000)
    tx_left -= 1
    r = rng.random()
    op = "u" if r < 0.7 else ("c" if r < 0.9 else "d")
    if op != "c" and not live:
        op = "c"
    if op == "c":
        ident = next_id
        next_id += 1
        before = None
        after = {"id": ident, "email": f"user{ident}@example.com", "name": f"User {ident}",
                 "active": True, "created_at": iso(ts_ms, tx_us)}
        pos[ident] = len(live)
        live.append(ident)
        seen.add(ident)
        n_rows += 1
        id_sum += ident
    else:
        ident = live[rng.randrange(len(live))]
        before = rows.get(ident) or initial_row(ident)
        if op == "u":
            after = dict(before, name=f"User {ident} #{i}")
            if rng.random() < 0.15:
                after["active"] = not before["active"]
            if rng.random() < 0.1:
                after["email"] = f"user{ident}.{i}@example.com"
            if ident not in seen:
                seen.add(ident)
                n_rows += 1
                id_sum += ident
        else:
            after = None
            j, last = pos.pop(ident), live.pop()
            if last != ident:
                live[j] = last
                pos[last] = j
            if ident in seen:
                n_rows -= 1
                id_sum -= ident
            else:
                seen.add(ident)
    if after is None:
        rows.pop(ident, None)
    else:
        rows[ident] = after
    ops[op] += 1

    lsn += rng.randrange(40, 400)
    source = dict(source_template, ts_ms=ts_ms, ts_us=ts_ms * 1000 + tx_us,
                  ts_ns=(ts_ms * 1000 + tx_us) * 1000, sequence=f'["{commit_lsn}","{lsn}"]',
                  txId=tx_id, lsn=lsn)
    env_us = (ts_ms + rng.randrange(5, 400)) * 1000 + rng.randrange(1000)
    payload = {"before": before, "after": after, "source": source, "transaction": None,
               "op": op, "ts_ms": env_us // 1000, "ts_us": env_us,
               "ts_ns": env_us * 1000 + rng.randrange(1000)}
    out.write('{"schema":%s,"payload":{"id":%d}}\t{"schema":%s,"payload":%s}\n'
              % (key_schema, ident, schema_text[op], json.dumps(payload, **compact)))
    if i + 1 == checkpoints[next_checkpoint]:
        stats.write("%d %d %d %d %d %d\n" % (i + 1, n_rows, id_sum, ops["c"], ops["u"], ops["d"]))
        next_checkpoint += 1
out.close()
stats.close()
EOF
}
