#!/usr/bin/env bash
# persistent.sh: persistent mode on the embedded queue, against its physical limit and against
# one-shot mode, with the same number of Python processes, interleaved in one run.
#
# Rows, for P = $PROCESSES (default 2, this machine's cores) and N = $TASKS (default 20000):
#   bare        target/release/examples/bare_loop N P -- PY bench/trivial_worker.py : P
#               processes of the trivial worker in persistent mode, each driven by its own
#               thread with strict request/response round trips of a task line shaped like the
#               host's (examples/bare_loop.rs). No queue, no parsing, no supervision: the most
#               round trips these P processes can answer. The clock starts after the P
#               handshakes.
#   persistent  wh host --drain --concurrency P on a local queue holding N tasks (enqueued
#               untimed with wh enqueue --file), worker `mode: persistent`, worker_pool
#               min_workers = max_workers = P, prefetch 0: one claim per free process.
#   prefetch    the same with worker_pool.prefetch: 64.
#   oneshot     the same worker one-shot (a new interpreter per task), on N_ONESHOT tasks
#               (default 1000: at ~100 tasks/s a full N would take minutes).
# wh rows are timed from the start of `wh host` to its exit: start-up (pool warm-up
# included, ~30 ms) and the final summary are in it. Every wh run checks that all its tasks
# completed. Read tasks/s = N / seconds, and the ratio of each row to `bare` in the same round.
# Rounds are interleaved (bare, persistent, prefetch, oneshot, bare, ...) so each round's rows
# share the machine's load; medians over $RUNS rounds (default 3).
#
# The worker runs under $WORKER_PYTHON (default: a venv made in the results dir from PYTHON or
# python3, because the base interpreter on these machines imports certifi from a .pth file at
# every start, which triples one-shot start-up; it changes nothing in persistent mode).
#
# Usage: bash bench/persistent.sh   (from anywhere; results in $BENCH_OUT or a temp dir, kept
# and printed). Env: TASKS, N_ONESHOT, PROCESSES, RUNS, PYTHON, WORKER_PYTHON, WH_COMMIT,
# CARGO_TARGET_DIR (honoured).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
tasks=${TASKS:-20000}
n_oneshot=${N_ONESHOT:-1000}
processes=${PROCESSES:-2}
runs=${RUNS:-3}
out=${BENCH_OUT:-$(mktemp -d -t wh-persistent-bench.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
python=${PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}
case "$root$out" in *[\'\"\ \\]*) echo "paths must not contain quotes, spaces or backslashes" >&2; exit 1 ;; esac

cargo build --release --quiet --bin wh --example bare_loop
target=${CARGO_TARGET_DIR:-target}/release
# Private copies: another build in this tree during the run must not swap the binaries.
cp "$target/wh" "$out/wh"
cp "$target/examples/bare_loop" "$out/bare_loop"
if [ -z "${WORKER_PYTHON:-}" ]; then
    "$python" -m venv "$out/venv"
    WORKER_PYTHON=$out/venv/bin/python
fi
worker=$root/bench/trivial_worker.py

"$WORKER_PYTHON" - "$out" "$tasks" "$n_oneshot" <<'PY'
import json, sys
out, n, n_oneshot = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for name, count in (("tasks", n), ("tasks_oneshot", n_oneshot)):
    with open(f"{out}/{name}.ndjson", "w") as f:
        for i in range(count):
            f.write(json.dumps({"type": "Bench.Trivial", "params": {"n": i}}) + "\n")
PY

# config NAME MODE PREFETCH
config() {
    cat >"$out/$1.yaml" <<EOF
version: "1.0"
task_manager: {type: local, path: $1.db, poll_interval: 0.05}
workers:
  - name: trivial
    command: ["$WORKER_PYTHON", "$worker"]
    task_types: [Bench.Trivial]
    mode: $2
    timeout: 30
    max_retries: 0
logging: {level: WARNING}
monitoring: {enabled: false}
advanced:
  worker_pool: {min_workers: $processes, max_workers: $processes, prefetch: $3}
EOF
}
config persistent persistent 0
config prefetch persistent 64
config oneshot oneshot 0

# seconds of one timed command, from the monotonic clock
timed() {
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    echo "$start $end" | awk '{printf "%.4f", $2 - $1}'
}

run_bare() {
    "$out/bare_loop" "$tasks" "$processes" -- "$WORKER_PYTHON" "$worker" | sed 's/.*seconds=\([0-9.]*\).*/\1/'
}

# run_wh NAME FILE COUNT
run_wh() {
    rm -f "$out/$1.db" "$out/$1.db-wal" "$out/$1.db-shm"
    "$out/wh" enqueue --config "$out/$1.yaml" --file "$out/$2.ndjson" >/dev/null
    local s
    s=$(timed "$out/wh" host --config "$out/$1.yaml" --drain --concurrency "$processes")
    local done
    done=$("$out/wh" tasks --config "$out/$1.yaml" --status completed --json --limit 1000000 | wc -l)
    [ "$done" = "$3" ] || { echo "$1: only $done of $3 tasks completed" >&2; exit 1; }
    echo "$s"
}

echo "== machine"
echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "commit:    ${WH_COMMIT:-$(git describe --always --dirty 2>/dev/null || echo unknown)}"
echo "nproc:     $(nproc)"
echo "cpu:       $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "python:    $("$WORKER_PYTHON" --version 2>&1) ($WORKER_PYTHON)"
echo "loadavg:   $(cat /proc/loadavg)"
echo "settings:  TASKS=$tasks N_ONESHOT=$n_oneshot PROCESSES=$processes RUNS=$runs"
echo "results:   $out"
echo

: >"$out/runs.tsv"
for run in $(seq 1 "$runs"); do
    for row in bare persistent prefetch oneshot; do
        case $row in
            bare) n=$tasks; s=$(run_bare) ;;
            oneshot) n=$n_oneshot; s=$(run_wh oneshot tasks_oneshot "$n") ;;
            *) n=$tasks; s=$(run_wh "$row" tasks "$n") ;;
        esac
        printf '%s\t%s\t%s\t%s\t%s\n' "$run" "$row" "$n" "$s" "$(cut -d' ' -f1 /proc/loadavg)" >>"$out/runs.tsv"
        echo "run $run $row: $n tasks in $s s"
    done
done
echo

python3 - "$out/runs.tsv" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
rate = {(int(r[0]), r[1]): int(r[2]) / float(r[3]) for r in rows}
load = {(int(r[0]), r[1]): r[4] for r in rows}
runs = sorted({k[0] for k in rate})
names = ["bare", "persistent", "prefetch", "oneshot"]
print("| round | row | tasks/s | ratio to bare | load |")
print("|---:|---|---:|---:|---:|")
for run in runs:
    for name in names:
        r = rate[(run, name)]
        print(f"| {run} | {name} | {r:,.0f} | {r / rate[(run, 'bare')]:.3f} | {load[(run, name)]} |")
print()
print("medians:")
for name in names:
    med = statistics.median(rate[(run, name)] for run in runs)
    ratio = statistics.median(rate[(run, name)] / rate[(run, "bare")] for run in runs)
    print(f"  {name:<11} {med:9,.0f} tasks/s, ratio to bare {ratio:.3f}")
PY
echo
echo "results kept in $out"
