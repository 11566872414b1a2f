#!/usr/bin/env bash
# Load speed of `cdcctl load` into DuckDB, against kcat's raw read speed of the same topic.
#
# One consistent stream of Debezium change events of the `users` table is made once
# (scripts/lib/bench-events.sh: schemas enabled, ~3.4 KB a message, made from the real messages
# in tests/fixtures/debezium; 70% updates, 20% creates, 10% deletes over ids that exist at that
# point, strictly increasing LSNs, REPLICA IDENTITY FULL, no tombstones). For each size of
# BENCH_SIZES (default "100000 300000 1000000") the first SIZE events go to topic
# bench.public.users.SIZE of a private broker (the stack's noida-db binary on a free port with a
# throwaway data dir, stopped by PID). The broker keeps its log in RAM (~2.5x the bytes: 8-9 GB
# for 1M events), so each size gets its own broker, stopped before the next one starts. Then,
# BENCH_RUNS times each (default 3; medians count):
#
#   kcat -C -e -o beginning -X fetch.wait.max.ms=10    raw messages to /dev/null (the read limit)
#   CDCCTL_KAFKA_BROKERS=<broker> CDCCTL_KAFKA_TOPIC_PREFIX=bench \
#   cdcctl load --topic <topic> --duckdb <new file> --group bench-<random> \
#     --until-caught-up --metrics-file <file>
#
# (kcat's -e needs one empty fetch to see the end of the topic; with librdkafka's default
# fetch.wait.max.ms of 500 that idle wait alone was ~40% of the 100k read, so 10 ms keeps the
# reference a read limit.) The load rate is events / wall time of the whole cdcctl process
# (start-up, table creation and the last commit included). Peak RSS is GNU time's %M (the
# process's maximum resident set, exact, unlike polling /proc/PID/status VmHWM which misses the
# end; needs /usr/bin/time, Debian package `time`); the table shows the highest of the runs.
# "p99 batch ms" is `batch_ms.p99` of the loader's metrics file (median of the runs). After
# every run the script checks that the metrics count SIZE events and, if a DuckDB reader is
# available (the `duckdb` CLI, or python's duckdb module: python3 or the stack's venv), that
# public.users holds exactly the rows (count and sum of ids) the stream leaves; a mismatch fails
# the script (op counts in the metrics that differ from the stream's are only reported).
#
# Targets, each marked PASS/FAIL: load >= 150,000 events/s; load/raw >= 0.7; peak RSS < 200 MB;
# peak RSS flat across sizes (largest <= 1.25x smallest, or within 20 MB). Exit status 0 unless
# something failed to run or a correctness check failed (a missed target is not an error).
#
#   scripts/bench-load.sh                                  # all sizes, 3 runs: ~10 minutes
#   BENCH_SIZES=100000 BENCH_RUNS=1 scripts/bench-load.sh  # quick look
#   BENCH_SKIP_BUILD=1 ...        use $CARGO_TARGET_DIR/release/cdcctl as it is (no cargo build)
#   BENCH_LOAD_ARGS='--batch-size 50000' ...   extra `cdcctl load` arguments (word-split)
#   BENCH_SHOW_LOG=1 ...          print each run's loader stderr (with BENCH_LOAD_ARGS=-vv: timings)
set -euo pipefail

# Targets (see the header).
TARGET_EPS=150000
TARGET_RATIO=0.7
TARGET_RSS_MB=200
FLAT_FACTOR=1.25
FLAT_SLACK_MB=20

# bench_load_report RESULTS RUNS: prints the result table. RESULTS has a line per size:
#   EVENTS MIB RAW_S LOAD_S P99_MS RSS_KB CHECK
# (median seconds of kcat and of cdcctl load, median p99 batch ms, highest peak RSS in KiB,
# CHECK = ok | fail | n/a). Returns 0.
bench_load_report() {
  awk -v runs="$2" -v teps="$TARGET_EPS" -v tratio="$TARGET_RATIO" -v trss="$TARGET_RSS_MB" \
    -v flat="$FLAT_FACTOR" -v slack="$FLAT_SLACK_MB" '
    function mark(ok) { if (ok) return "PASS"; failed++; return "FAIL" }
    {
      n = $1; raw = n / $3; load = n / $4; ratio = load / raw; rss = $6 / 1024
      if (NR == 1 || rss < lo) lo = rss
      if (NR == 1 || rss > hi) hi = rss
      line[NR] = sprintf("%9d %7.0f %12.0f %10.0f %s %6.2f %s %12s %8.0f %s   %s", n, $2, raw,
        load, mark(load >= teps), ratio, mark(ratio >= tratio), $5, rss, mark(rss < trss), $7)
      if ($7 == "fail") bad++
    }
    END {
      if (NR == 0) { print "no results"; exit }
      printf "\ncdcctl load into DuckDB: %d run(s) per size, medians (peak RSS: highest run)\n\n", runs
      printf "%9s %7s %12s %15s %11s %12s %13s   %s\n", "events", "MiB", "raw ev/s", \
        "load ev/s", "load/raw", "p99 batch ms", "peak RSS MB", "DuckDB rows"
      for (i = 1; i <= NR; i++) print line[i]
      flat_ok = hi <= lo * flat || hi - lo <= slack
      printf "\nRSS across sizes: %.0f..%.0f MB (%.2fx) %s\n", lo, hi, (lo > 0 ? hi / lo : 0), \
        mark(flat_ok)
      fmt = "targets: load >= %d events/s, load/raw >= %.2f, peak RSS < %d MB and flat across"
      printf fmt " sizes (<= %.2fx or within %d MB)\n", teps, tratio, trss, flat, slack
      printf "raw = kcat -C -e -o beginning -X fetch.wait.max.ms=10 to /dev/null; " \
        "load = events / wall time of cdcctl load\n"
      if (failed) printf "result: FAIL (%d target mark(s) missed)\n", failed
      else printf "result: PASS (every target met)\n"
      if (bad) printf "correctness: FAIL (%d size(s) with wrong rows or event counts)\n", bad
    }' "$1"
}

# The DuckDB reader for the row check: prints a command that takes DB_FILE and prints
# "ROWS ID_SUM" of public.users, or nothing when there is none.
duckdb_reader() {
  local py
  if command -v duckdb >/dev/null 2>&1; then
    echo cli
    return
  fi
  for py in python3 "$1/venv/bin/python"; do
    if "$py" -c 'import duckdb' >/dev/null 2>&1; then
      command -v "$py"
      return
    fi
  done
}

# duckdb_rows READER DB_FILE: prints "ROWS ID_SUM" of public.users in DB_FILE.
duckdb_rows() {
  local sql='SELECT count(*), coalesce(sum(id), 0) FROM public.users'
  if [[ $1 == cli ]]; then
    duckdb -readonly -csv -noheader "$2" "$sql" | tr ',' ' '
  else
    "$1" -c 'import duckdb, sys
con = duckdb.connect(sys.argv[1], read_only=True)
print(*con.execute(sys.argv[2]).fetchone())' "$2" "$sql"
  fi
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  # shellcheck source=scripts/lib/bench-events.sh
  source scripts/lib/bench-events.sh

  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcctl/target}"
  local runs=${BENCH_RUNS:-3}
  local cache=${CDCCTL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcctl}
  local fixture=tests/fixtures/debezium/schemas-true/cdc.public.users.jsonl
  local time_bin=/usr/bin/time
  local sizes=() load_args=() s
  read -r -a sizes <<<"${BENCH_SIZES:-100000 300000 1000000}"
  read -r -a load_args <<<"${BENCH_LOAD_ARGS:-}"
  # -q, unless -v is asked for (they conflict).
  quiet=-q
  if [[ " ${BENCH_LOAD_ARGS:-} " == *" -v"* ]]; then quiet=; fi
  ((${#sizes[@]} > 0)) || bench_die "BENCH_SIZES is empty"
  for s in "${sizes[@]}" "$runs"; do
    [[ $s =~ ^[1-9][0-9]*$ ]] || bench_die "not a positive integer: $s (BENCH_SIZES, BENCH_RUNS)"
  done
  mapfile -t sizes < <(printf '%s\n' "${sizes[@]}" | sort -n -u)
  local max=${sizes[-1]}
  [[ -x $time_bin ]] || bench_die "$time_bin is missing (peak RSS): apt-get install time"

  bench_step "installing what is missing (scripts/stack.sh install)"
  scripts/stack.sh install >&2

  local cdcctl="$CARGO_TARGET_DIR/release/cdcctl"
  if [[ ${BENCH_SKIP_BUILD:-} == 1 ]]; then
    bench_step "using $cdcctl as it is (BENCH_SKIP_BUILD=1)"
  else
    bench_step "building cdcctl (release)"
    cargo build --release --locked --bin cdcctl >&2
  fi
  [[ -x $cdcctl ]] || bench_die "$cdcctl is missing"

  local reader
  reader=$(duckdb_reader "$cache")
  if [[ -z $reader ]]; then
    bench_step "no DuckDB reader (duckdb CLI or python duckdb module): row counts not checked"
  fi

  tmp=$(mktemp -d)
  trap 'bench_stop_broker; rm -rf "$tmp"' EXIT

  local events=$tmp/events.tsv start secs
  bench_step "making $max events from $fixture"
  start=$(bench_now)
  bench_make_events "$fixture" "$max" "$events" "${sizes[@]}"
  bench_step "made $max events ($(($(wc -c <"$events") / 1048576)) MiB) in $(bench_since "$start") s"

  local size results=$tmp/results
  : >"$results"
  for size in "${sizes[@]}"; do
    local topic=bench.public.users.$size
    local want_rows want_sum want_c want_u want_d bytes
    read -r _ want_rows want_sum want_c want_u want_d < <(awk -v n="$size" '$1 == n' "$events.stats")
    bytes=$(head -n "$size" "$events" | wc -c)

    bench_step "$size events: private broker"
    bench_private_broker "$tmp/data" "$tmp/broker.log"
    bench_step "producing $size events ($((bytes / 1048576)) MiB) to $topic on $BENCH_BROKERS"
    start=$(bench_now)
    bench_produce "$BENCH_BROKERS" "$topic" "$events" "$size"
    secs=$(bench_since "$start")
    bench_step "produced in $secs s; waiting for the broker to settle"
    start=$(bench_now)
    bench_broker_settle
    local got
    got=$(bench_topic_count "$BENCH_BROKERS" "$topic") # untimed first read
    bench_step "settled in $(bench_since "$start") s; the topic holds $got messages"
    ((got == size)) || bench_die "$topic holds $got messages, expected $size"

    local raw_times=() load_times=() p99s=() rss_max=0 check=ok run
    for run in $(seq "$runs"); do
      start=$(bench_now)
      bench_kcat_read "$BENCH_BROKERS" "$topic" -X fetch.wait.max.ms=10
      raw_times+=("$(bench_since "$start")")

      local db=$tmp/load.duckdb metrics=$tmp/metrics-$size-$run.json rss
      rm -rf "$db" "$db.wal" "$db.tmp"
      start=$(bench_now)
      if ! CDCCTL_KAFKA_BROKERS=$BENCH_BROKERS CDCCTL_KAFKA_TOPIC_PREFIX=bench \
        "$time_bin" -f %M -o "$tmp/rss" \
        "$cdcctl" ${quiet:+"$quiet"} load --topic "$topic" --duckdb "$db" --group "bench-$$-$size-$run-$RANDOM" \
        --until-caught-up --metrics-file "$metrics" "${load_args[@]}" >"$tmp/load.log" 2>&1; then
        tail -n 30 "$tmp/load.log" >&2
        bench_die "cdcctl load failed ($(head -n 1 "$tmp/rss"))"
      fi
      load_times+=("$(bench_since "$start")")
      if [[ -n ${BENCH_SHOW_LOG:-} ]]; then cat "$tmp/load.log" >&2; fi
      rss=$(tail -n 1 "$tmp/rss")
      if ((rss > rss_max)); then rss_max=$rss; fi

      [[ -s $metrics ]] || bench_die "cdcctl load wrote no metrics file ($metrics)"
      local m_events m_p99 m_ops
      read -r m_events m_p99 m_ops < <(python3 - "$metrics" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
ops = (m.get("tables") or {}).get("public.users") or {}
print(m.get("events", "?"), (m.get("batch_ms") or {}).get("p99", "?"),
      ",".join("%s=%s" % (k, ops.get(k, 0)) for k in "cud"))
EOF
      )
      p99s+=("$m_p99")
      local verdict="metrics: $m_events events"
      if [[ $m_events != "$size" ]]; then
        verdict+=" (expected $size: FAIL)"
        check=fail
      fi
      if [[ $m_ops != "c=$want_c,u=$want_u,d=$want_d" ]]; then
        verdict+=", ops $m_ops (stream has c=$want_c,u=$want_u,d=$want_d)"
      fi
      if [[ -n $reader ]]; then
        local rows
        if rows=$(duckdb_rows "$reader" "$db" 2>"$tmp/reader.err"); then
          if [[ $rows == "$want_rows $want_sum" ]]; then
            verdict+="; DuckDB: $want_rows rows ok"
          else
            verdict+="; DuckDB: rows/id sum $rows, expected $want_rows $want_sum: FAIL"
            check=fail
          fi
        else
          verdict+="; DuckDB not readable: $(tail -n 1 "$tmp/reader.err")"
          [[ $check == fail ]] || check=n/a
        fi
      else
        [[ $check == fail ]] || check=n/a
      fi
      bench_step "$size events, run $run of $runs: kcat ${raw_times[-1]} s; cdcctl load" \
        "${load_times[-1]} s, peak RSS $((rss / 1024)) MiB, p99 batch $m_p99 ms; $verdict"
      rm -rf "$db" "$db.wal" "$db.tmp"
    done
    bench_stop_broker
    rm -rf "$tmp/data"

    local raw_s load_s p99
    raw_s=$(printf '%s\n' "${raw_times[@]}" | bench_median)
    load_s=$(printf '%s\n' "${load_times[@]}" | bench_median)
    p99=$(printf '%s\n' "${p99s[@]}" | bench_median)
    if [[ $check == ok ]]; then check="ok:$want_rows"; fi
    printf '%s %s %s %s %s %s %s\n' "$size" "$((bytes / 1048576))" "$raw_s" "$load_s" "$p99" \
      "$rss_max" "$check" >>"$results"
    printf '\nruns of %d events: kcat [%s] s, cdcctl load [%s] s\n' "$size" "${raw_times[*]}" \
      "${load_times[*]}" >&2
  done

  bench_load_report "$results" "$runs"
  ! grep -q ' fail$' "$results"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
