#!/usr/bin/env bash
# send_overhead.sh: what `wh send` costs per task on top of running the worker directly.
#
# Section 1 (time): ONE hyperfine run (-N: no shell is spawned by hyperfine) of these commands,
# each wrapped identically in `sh -c 'exec ... < TASK'` (hyperfine 1.15 has no --input, so the
# task reaches stdin through that wrapper; `exec` leaves one sh start per run, equal on every
# side, and the `wrapper floor` row measures it):
#   direct example   PY example-workers/python/example_worker.py < TASK
#   wh example       wh send --python PY --task TASK example-workers/python/example_worker.py
#   direct trivial   PY bench/trivial_worker.py < TASK     (start-up only, no imports)
#   wh trivial       wh send --python PY --task TASK bench/trivial_worker.py
#   direct cat       cat RESULT < TASK    (a worker with no interpreter: wh's cost stands out)
#   wh cat           wh send --task TASK -- cat RESULT
#   wh --version     wh's start-up and exit alone (no runtime, no worker)
#   wrapper floor    sh -c 'exec true < TASK'
# PY is the real interpreter behind `python3` (resolved through sys.executable, so a pyenv
# shim's own start-up, a bash script, is not counted; set PYTHON to override).
# Read it as: "wh - direct" (median, ms) is what wh adds per task; the target is <= 2 ms.
# hyperfine runs all runs of one command, then the next (not interleaved), so drift in a
# noisy machine's load shows up between rows: run the script more than once and compare.
#
# Section 2 (memory): wh's peak RSS while fixtures/workers/stdout_flood.py writes stdout
# without end (wh must stop it at the 16 MiB cap). Target: under 64 MiB.
#
# Usage: bash bench/send_overhead.sh   (from anywhere; results go to $BENCH_OUT or a temp dir,
# which is kept and printed). Env: WARMUP (default 20), RUNS (default 300), PYTHON, WH_COMMIT
# (label printed when the tree is not a git checkout, e.g. one made with `git archive`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
warmup=${WARMUP:-20}
runs=${RUNS:-300}
out=${BENCH_OUT:-$(mktemp -d -t wh-bench.XXXXXX)}
mkdir -p "$out"

for tool in hyperfine python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install -y hyperfine time)" >&2; exit 1; }
done

cargo build --release --quiet
wh=$root/target/release/wh
python=${PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}

task=$out/task.json
printf '%s\n' '{"id":"bench-1","type":"PrismQ.Example.ProcessData","params":{"input_data":"hello world"}}' >"$task"
result=$out/result.json
printf '%s\n' '{"success": true, "result": {}}' >"$result"

# Paths in the commands must be safe inside sh's single quotes.
case "$root$out$python" in *"'"*) echo "paths must not contain a single quote" >&2; exit 1 ;; esac

wrap() { printf "sh -c 'exec %s < %s'" "$1" "$task"; }

echo "== machine"
echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "commit:    ${WH_COMMIT:-$(git describe --always --dirty 2>/dev/null || echo unknown)}"
echo "nproc:     $(nproc)"
echo "cpu:       $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "kernel:    $(uname -r)"
echo "python:    $("$python" --version 2>&1) ($python; python3 on PATH: $(command -v python3))"
echo "hyperfine: $(hyperfine --version)"
echo "loadavg:   $(cat /proc/loadavg)"
echo "results:   $out"
echo

echo "== section 1: per-task time (hyperfine, warmup $warmup, runs $runs)"
hyperfine -N --warmup "$warmup" --runs "$runs" \
    --export-json "$out/send_overhead.json" \
    --export-markdown "$out/send_overhead.md" \
    -n 'direct example' "$(wrap "$python $root/example-workers/python/example_worker.py")" \
    -n 'wh example' "$(wrap "$wh send --python $python --task $task $root/example-workers/python/example_worker.py")" \
    -n 'direct trivial' "$(wrap "$python $root/bench/trivial_worker.py")" \
    -n 'wh trivial' "$(wrap "$wh send --python $python --task $task $root/bench/trivial_worker.py")" \
    -n 'direct cat' "$(wrap "cat $result")" \
    -n 'wh cat' "$(wrap "$wh send --task $task -- cat $result")" \
    -n 'wh --version' "$(wrap "$wh --version")" \
    -n 'wrapper floor' "$(wrap true)"

echo
echo "== summary (ms)"
python3 - "$out/send_overhead.json" <<'PY'
import json, sys
rows = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
ms = lambda s: s * 1000
print(f"{'command':<16} {'median':>8} {'mean':>8} {'stddev':>8} {'min':>8}")
for name, r in rows.items():
    print(f"{name:<16} {ms(r['median']):8.2f} {ms(r['mean']):8.2f} {ms(r['stddev']):8.2f} {ms(r['min']):8.2f}")
print()
for worker in ("example", "trivial", "cat"):
    d, w = rows[f"direct {worker}"], rows[f"wh {worker}"]
    print(f"wh - direct ({worker}): median {ms(w['median'] - d['median']):+.2f} ms, "
          f"min {ms(w['min'] - d['min']):+.2f} ms")
f, v = rows["wrapper floor"], rows["wh --version"]
print(f"wh --version - wrapper floor: median {ms(v['median'] - f['median']):+.2f} ms")
PY

echo
echo "== section 2: peak RSS while the worker floods stdout (cap 16 MiB, target < 64 MiB)"
# /usr/bin/time reports the largest max RSS among the processes it waited for, wh and (through
# wh's wait) the worker; the /proc poll below reads wh's own high-water mark (VmHWM).
set +e
/usr/bin/time -v "$wh" send --python "$python" --type T fixtures/workers/stdout_flood.py >/dev/null 2>"$out/flood_time.txt"
rc=$?
set -e
rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$out/flood_time.txt")
echo "wh exit code: $rc (4 = protocol violation expected: stdout over the cap)"
grep -m1 'stdout' "$out/flood_time.txt" | sed 's/^/wh said: /' || true
echo "Maximum resident set size (/usr/bin/time): $rss_kb KiB = $(awk -v k="$rss_kb" 'BEGIN {printf "%.1f", k/1024}') MiB"

"$wh" send --python "$python" --type T fixtures/workers/stdout_flood.py >/dev/null 2>/dev/null &
pid=$!
hwm=0
while kill -0 "$pid" 2>/dev/null; do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [[ -n "$v" && "$v" -gt "$hwm" ]] && hwm=$v
    sleep 0.005
done
wait "$pid" || true
echo "wh's own VmHWM (polled /proc every 5 ms): $hwm KiB = $(awk -v k="$hwm" 'BEGIN {printf "%.1f", k/1024}') MiB"
echo
echo "results kept in $out"
