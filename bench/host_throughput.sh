#!/usr/bin/env bash
# host_throughput.sh: how fast `wh host` drains the local queue, against the rate at which this
# machine can start the same worker at all, and how much memory the host itself holds.
#
# The protocol starts one process per task, so the host's ceiling is the interpreter start
# rate. Section 1 compares, in ONE hyperfine run (-N: no shell from hyperfine), for each
# concurrency C in $CONCURRENCY (default "2 16": this machine's cores, and 8x that):
#   raw C=…    PY raw_spawn.py … N C : a small Python driver (written below) that keeps C
#              children running with os.posix_spawn + os.wait, no shell: each child is
#              `PY bench/trivial_worker.py` with task.json on stdin and stdout on /dev/null.
#              The driver's own start (one interpreter, ~25 ms) is paid once per run.
#   host C=…   wh host --config host.yaml --drain --concurrency C : the same worker, one
#              process per task, claimed from and recorded in the SQLite queue.
# Before EVERY timed run of every command, --prepare deletes queue.db* and enqueues N tasks
# with `wh enqueue --file` (so only the drain is timed; the raw rows pay the same prepare,
# untimed). Read it as tasks/s = N / mean, and the ratio host/raw at the same C; the target
# is host >= 0.9 x raw.
# hyperfine runs all runs of one command, then the next (not interleaved), so on a machine
# whose load swings from minute to minute (other tenants' builds) its rows are taken minutes
# apart. Section 1b therefore also times $PAIRS interleaved pairs per C (raw then host, host
# then raw, alternately; same --prepare, untimed) and reports each pair's ratio: the two
# drains of a pair are seconds apart, so they share the load.
#
# Section 2 (memory, and CPU of the host process alone): a Python poller reads
# /proc/PID/status (VmRSS, VmHWM) and /proc/PID/stat (utime, stime: the host's own threads,
# not its workers) every 10 ms. (a) idle: `wh host` (no --drain) on an empty queue, read after
# 2 s, then SIGTERM; target VmRSS < 20 MiB. (b) `wh host --drain --concurrency 16` over N
# tasks; target: the host's own VmHWM < 50 MiB. /usr/bin/time is not used: it reports the max
# over the workers too. The raw driver is polled the same way, for its CPU per task.
#
# Usage: bash bench/host_throughput.sh   (from anywhere; results in $BENCH_OUT or a temp dir,
# kept and printed). Env: RUNS (default 5), PAIRS (default 3), TASKS (default 1000),
# CONCURRENCY (default "2 16"), PYTHON, WH_COMMIT (label when the tree is not a git checkout),
# CARGO_TARGET_DIR (honoured).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
runs=${RUNS:-5}
pairs=${PAIRS:-3}
tasks=${TASKS:-1000}
concurrency=${CONCURRENCY:-2 16}
out=${BENCH_OUT:-$(mktemp -d -t wh-host-bench.XXXXXX)}
mkdir -p "$out"

for tool in hyperfine python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install -y hyperfine)" >&2; exit 1; }
done

cargo build --release --quiet
# A private copy: another build in this tree during the run must not swap the binary.
cp "${CARGO_TARGET_DIR:-target}/release/wh" "$out/wh"
wh=$out/wh
python=${PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}
worker=$root/bench/trivial_worker.py

# Paths end up in YAML double quotes and in hyperfine's argument splitting.
case "$root$out$python" in *[\'\"\ \\]*) echo "paths must not contain quotes, spaces or backslashes" >&2; exit 1 ;; esac

cat >"$out/host.yaml" <<EOF
version: "1.0"
task_manager: {type: local, path: queue.db, poll_interval: 0.05}
workers:
  - name: trivial
    command: ["$python", "$worker"]
    task_types: [Bench.Trivial]
    timeout: 30
    max_retries: 0
logging: {level: WARNING}
monitoring: {enabled: false}
EOF
python3 - "$out/tasks.ndjson" "$tasks" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for _ in range(int(sys.argv[2])):
        f.write('{"type": "Bench.Trivial", "params": {}}\n')
PY
# What the host writes to a worker's stdin, give or take the ids: the raw driver feeds this.
printf '%s\n' '{"id":"00000000-0000-0000-0000-000000000000","type":"Bench.Trivial","params":{},"metadata":{"priority":0,"created_at":"2026-01-01T00:00:00Z","worker_id":"bench:1","attempt":1}}' >"$out/task.json"

cat >"$out/reset.sh" <<EOF
#!/bin/sh
# hyperfine --prepare: a fresh queue with $tasks pending tasks (or none, with "empty").
set -e
rm -f "$out/queue.db" "$out/queue.db-wal" "$out/queue.db-shm"
[ "\${1:-}" = empty ] || "$wh" enqueue --config "$out/host.yaml" --file "$out/tasks.ndjson" >/dev/null
EOF
chmod +x "$out/reset.sh"

cat >"$out/raw_spawn.py" <<'PY'
"""raw_spawn.py PY WORKER TASK N C: run N times `PY WORKER < TASK > /dev/null`, C at a time.

os.posix_spawn (vfork+exec in CPython 3.11) and os.wait: no shell, no pipes, no threads.
Exits 1 if any child did not exit 0."""
import os
import sys

py, worker, task = sys.argv[1:4]
n, c = int(sys.argv[4]), int(sys.argv[5])
devnull = os.open(os.devnull, os.O_WRONLY)
started = running = failed = 0


def start():
    global started, running
    fd = os.open(task, os.O_RDONLY)  # one open file per child: its own read offset
    os.posix_spawn(py, [py, worker], os.environ,
                   file_actions=[(os.POSIX_SPAWN_DUP2, fd, 0), (os.POSIX_SPAWN_DUP2, devnull, 1)])
    os.close(fd)
    started += 1
    running += 1


while running < min(c, n):
    start()
while running:
    _, status = os.wait()
    running -= 1
    failed += status != 0
    if started < n:
        start()
sys.exit(1 if failed else 0)
PY

cat >"$out/poll.py" <<'PY'
"""poll.py LABEL IDLE_SECONDS -- CMD...: run CMD, poll its /proc entry every 10 ms.

IDLE_SECONDS > 0: read once after that long, then SIGTERM (the idle host). 0: wait for exit.
Prints one JSON line: VmRSS/VmHWM (KiB), the process's own CPU (utime+stime of its threads,
from the last sample before exit) and its waited-for children's (cutime+cstime), wall time."""
import json
import os
import signal
import subprocess
import sys
import time

label, idle = sys.argv[1], float(sys.argv[2])
cmd = sys.argv[sys.argv.index("--") + 1:]
tick = os.sysconf("SC_CLK_TCK")


def sample(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z" or "VmRSS" not in status:  # exiting: its memory is already gone
        return None
    kib = lambda k: int(status[k].split()[0]) if k in status else 0
    return {"rss": kib("VmRSS"), "hwm": kib("VmHWM"), "threads": kib("Threads"),
            "self_cpu": (int(fields[11]) + int(fields[12])) / tick,
            "children_cpu": (int(fields[13]) + int(fields[14])) / tick}


t0 = time.monotonic()
proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
last, peak = None, 0
if idle > 0:
    time.sleep(idle)
    last = sample(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
else:
    while proc.poll() is None:
        s = sample(proc.pid)
        if s:
            last = s
            peak = max(peak, s["hwm"])
        time.sleep(0.01)
wall = time.monotonic() - t0
last = last or {}
print(json.dumps({"label": label, "exit": proc.returncode, "wall_s": round(wall, 3),
                  "peak_hwm_kib": max(peak, last.get("hwm", 0)), **last}))
PY

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

# Warm the page cache for the interpreter and both binaries (untimed).
"$python" "$out/raw_spawn.py" "$python" "$worker" "$out/task.json" 20 2
"$out/reset.sh" && "$wh" host --config "$out/host.yaml" --drain --concurrency 2 >/dev/null

echo "== section 1: drain throughput, $tasks tasks (hyperfine, runs $runs, --prepare: fresh queue)"
cmds=()
for c in $concurrency; do
    cmds+=(-n "raw C=$c" "$python $out/raw_spawn.py $python $worker $out/task.json $tasks $c")
    cmds+=(-n "host C=$c" "$wh host --config $out/host.yaml --drain --concurrency $c")
done
hyperfine -N --runs "$runs" --prepare "$out/reset.sh" \
    --export-json "$out/host_throughput.json" \
    --export-markdown "$out/host_throughput.md" \
    "${cmds[@]}"

# The last timed run was a host drain: every task must have completed, once.
"$wh" tasks --config "$out/host.yaml" --limit $((tasks * 2)) --json | python3 -c '
import collections, json, sys
n = int(sys.argv[1])
seen = collections.Counter((t["status"], t["attempts"]) for t in map(json.loads, sys.stdin))
print("after the last host run (status, attempts): count =", dict(seen))
sys.exit(0 if seen == {("completed", 1): n} else "the host did not complete every task exactly once")
' "$tasks"

echo
echo "== section 1b: $pairs interleaved pairs per concurrency (wall s; load = 1-min loadavg before the run)"
python3 - "$out/pairs.ndjson" "$pairs" "$out/reset.sh" "$tasks" "$concurrency" \
    "$python $out/raw_spawn.py $python $worker $out/task.json $tasks {c}" \
    "$wh host --config $out/host.yaml --drain --concurrency {c}" <<'PY'
import json, subprocess, sys, time
out, pairs, reset, n, cs, raw, host = sys.argv[1:8]
with open(out, "w") as f:
    for c in cs.split():
        for i in range(int(pairs)):
            sides = [("raw", raw), ("host", host)]
            if i % 2:
                sides.reverse()
            row = {"c": int(c), "pair": i + 1, "first": sides[0][0]}
            for name, cmd in sides:
                subprocess.run([reset], check=True)
                load = open("/proc/loadavg").read().split()[0]
                t0 = time.monotonic()
                subprocess.run(cmd.format(c=c).split(), check=True, stdout=subprocess.DEVNULL)
                row[name], row[f"{name}_load"] = round(time.monotonic() - t0, 3), float(load)
            row["ratio"] = round(row["raw"] / row["host"], 3)
            print(f"C={c:<3} pair {i + 1} ({row['first']} first): raw {row['raw']:7.2f} s "
                  f"(load {row['raw_load']:5.2f})  host {row['host']:7.2f} s (load {row['host_load']:5.2f})  "
                  f"host/raw {row['ratio']:.3f}", flush=True)
            f.write(json.dumps(row) + "\n")
PY

echo
echo "== section 2: memory and CPU of the host process alone (poll /proc every 10 ms)"
"$out/reset.sh" empty
python3 "$out/poll.py" "host idle (2 s, empty queue)" 2 -- "$wh" host --config "$out/host.yaml" | tee "$out/memory.ndjson"
top=${concurrency##* }
"$out/reset.sh"
python3 "$out/poll.py" "host drain C=$top" 0 -- "$wh" host --config "$out/host.yaml" --drain --concurrency "$top" | tee -a "$out/memory.ndjson"
python3 "$out/poll.py" "raw C=$top" 0 -- "$python" "$out/raw_spawn.py" "$python" "$worker" "$out/task.json" "$tasks" "$top" | tee -a "$out/memory.ndjson"

echo
echo "== summary"
python3 - "$out/host_throughput.json" "$out/memory.ndjson" "$tasks" "$out/pairs.ndjson" <<'PY'
import json, statistics, sys
rows = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
n = int(sys.argv[3])
print(f"{'command':<10} {'mean s':>8} {'± σ':>6} {'median s':>9} {'min s':>7} {'tasks/s (mean)':>15}")
for name, r in rows.items():
    print(f"{name:<10} {r['mean']:8.2f} {r['stddev'] or 0:6.2f} {r['median']:9.2f} {r['min']:7.2f} {n / r['mean']:15.1f}")
print()
for name in rows:
    if name.startswith("host "):
        c = name.split()[1]
        h, raw = rows[name], rows[f"raw {c}"]
        ratio = raw["mean"] / h["mean"]
        print(f"hyperfine host/raw at {c}: {ratio:.3f} on the mean, {raw['median'] / h['median']:.3f} on the median "
              f"(target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")
pairs = [json.loads(line) for line in open(sys.argv[4])]
for c in sorted({p["c"] for p in pairs}):
    mine = [p for p in pairs if p["c"] == c]
    ratios = [p["ratio"] for p in mine]
    raw_s, host_s = sum(p["raw"] for p in mine), sum(p["host"] for p in mine)
    print(f"interleaved host/raw at C={c}: per pair {', '.join(f'{r:.3f}' for r in ratios)}; "
          f"median {statistics.median(ratios):.3f}; pooled {raw_s / host_s:.3f} "
          f"(raw {n * len(mine) / raw_s:.1f} tasks/s, host {n * len(mine) / host_s:.1f} tasks/s)")
print()
mib = lambda k: k / 1024
for line in open(sys.argv[2]):
    m = json.loads(line)
    print(f"{m['label']}: exit {m['exit']}, VmRSS {mib(m.get('rss', 0)):.1f} MiB, "
          f"VmHWM {mib(m['peak_hwm_kib']):.1f} MiB, threads {m.get('threads', '?')}, wall {m['wall_s']:.2f} s")
    if "idle" in m["label"]:
        print(f"  idle target VmRSS < 20 MiB: {'met' if mib(m.get('rss', 0)) < 20 else 'NOT met'}")
    else:
        print(f"  own CPU {m['self_cpu']:.2f} s = {1000 * m['self_cpu'] / n:.2f} ms/task; "
              f"workers' CPU {m['children_cpu']:.2f} s = {1000 * m['children_cpu'] / n:.2f} ms/task; "
              f"{n / m['wall_s']:.1f} tasks/s")
        if m["label"].startswith("host"):
            print(f"  drain target VmHWM < 50 MiB: {'met' if mib(m['peak_hwm_kib']) < 50 else 'NOT met'}")
PY
echo
echo "results kept in $out"
