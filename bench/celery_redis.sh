#!/usr/bin/env bash
# celery_redis.sh: `wh host` against a Celery prefork worker, both draining the same number of
# trivial tasks from the same Redis at the same concurrency, interleaved in one run.
#
# What is measured, per run and per "contender" (same N tasks, same concurrency C):
#   celery      N tasks are put on the queue first, untimed (`app.send_task` in a loop, one
#               LPUSH each, into Redis db $REDIS_DB). Then the clock starts and
#                 celery -A celery_bench_app worker --pool prefork --concurrency C -O fair
#                        --without-gossip --without-mingle --without-heartbeat --loglevel WARNING
#               is started; a driver polls (every 20 ms, a pipelined EXISTS on the next few
#               result keys) until all N results are stored, then stops the worker (SIGTERM,
#               warm shutdown, untimed). The task (`bench.trivial`) returns {} like
#               bench/trivial_worker.py. Results go to the redis result backend
#               (`celery-task-meta-<id>`, same db): wh host records every outcome in Redis, so
#               the comparison has Celery store its outcomes too. `-O fair` is Celery 5's
#               default profile, written out; gossip, mingle and heartbeats are switched off
#               (they are cluster chatter a single worker does not need and wh has no
#               equivalent of). Everything else is Celery's default, which favours Celery's
#               throughput: prefetch multiplier 4 and early acks (wh prefetches nothing and
#               acknowledges a task only after its outcome is written).
#   wh_oneshot  N tasks are enqueued first, untimed, with `wh enqueue --file` (one Lua script,
#               stream prefix whbench-wh_oneshot, same db). Then the clock starts and
#                 wh host --config wh_oneshot.yaml --drain --concurrency C
#               runs until it exits (the queue is drained). Its one worker runs
#               `VPY bench/trivial_worker.py` one-shot: one fresh interpreter per task.
#               VPY is the venv's interpreter, the one Celery runs under: the same
#               interpreter on both sides, with a venv's clean site-packages, as a wh worker
#               in its own venv has. (The base interpreter on these machines runs a .pth file
#               at every start that imports certifi: ~36 ms of CPU per start instead of ~11.
#               WORKER_PYTHON=... picks another interpreter for wh's worker.)
#   wh_persistent  the same with `mode: persistent` in the worker's section: a pool of C warm
#               processes of the same script (worker_pool min_workers = max_workers = C, as
#               many as Celery's pool), one task line and one result line each.
#   wh_persistent_prefetch  the same with worker_pool.prefetch: 64: the host claims up to 64
#               tasks ahead of its free processes (Celery prefetches 4 per pool process).
# For every contender the timed span is "process start -> last result stored": the last
# result's time is read afterwards from Redis (Celery's `date_done`, wh's `completed_at`, both
# stamped on this machine's clock), so the poller's 20 ms tick and the shutdown are not in it.
# tasks/s = N / that span; start-up is included, and shown apart: "first" is process start ->
# first result, "ready" is process start -> Celery's `worker_ready` signal. CPU per task: "all"
# is the whole process tree's (wait4 of the started process: itself plus the children it
# reaped, Celery's pool processes or wh's workers); "main process" is the started process's
# own threads (/proc/PID/stat every 20 ms, so up to the last 20 ms may be missing: Celery's
# consumer and dispatcher, or wh host itself); "Redis" is what the Redis server used over the
# same span (INFO cpu, server-wide: its housekeeping and other clients count too). "load" is
# the 1-minute load average at the end of the run (other tenants share these machines).
# Every run checks that all N outcomes are successes; a run that is not is an error.
#
# The contenders run interleaved (run 1: celery, wh_oneshot, wh_persistent; run 2: the same
# order; ...) so that the runs of one round share the machine's load; the ratio of each wh row
# to celery's is reported per round, with medians. Before every run (and on exit, via trap)
# the Redis db is flushed; the script refuses to start on a db that already holds keys
# (BENCH_REDIS_FLUSH=1 overrides).
#
# More rows: a contender is one function `contender_NAME` (see contender_wh_persistent: a config
# from write_wh_config with extra worker YAML lines, then run_wh) plus its NAME in CONTENDERS.
# The first contender (celery) is the baseline of every ratio.
#
# Usage: bash bench/celery_redis.sh   (from anywhere; results in $BENCH_OUT or a temp dir, kept
# and printed). Env: CONCURRENCY (default 2, this machine's cores), TASKS (default 5000), RUNS
# (default 3), WARMUP (tasks per contender before the timed runs, default 200, 0 for none),
# REDIS_URL (default redis://127.0.0.1:6379), REDIS_DB (default 9), CELERY_VERSION (default
# 5.7.0), BENCH_VENV (a venv to reuse, or to create and keep; default: one made in the results
# dir and deleted on exit), PYTHON (the interpreter the venv is made from), WORKER_PYTHON (wh's
# worker's, default the venv's), WH_COMMIT (label when the tree is not a git checkout),
# CARGO_TARGET_DIR (honoured).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
runs=${RUNS:-3}
tasks=${TASKS:-5000}
concurrency=${CONCURRENCY:-2}
warmup=${WARMUP:-200}
redis_db=${REDIS_DB:-9}
redis_url=${REDIS_URL:-redis://127.0.0.1:6379}/$redis_db
celery_version=${CELERY_VERSION:-5.7.0}
out=${BENCH_OUT:-$(mktemp -d -t wh-celery-bench.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
venv=${BENCH_VENV:-$out/venv}
CONTENDERS=(celery wh_oneshot wh_persistent wh_persistent_prefetch)

command -v python3 >/dev/null || { echo "missing: python3" >&2; exit 1; }
[ "$redis_db" != 0 ] || { echo "REDIS_DB must not be 0: the script flushes it" >&2; exit 1; }
python=${PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}
worker=$root/bench/trivial_worker.py
# Paths end up in YAML double quotes and in Python source.
case "$root$out$python$venv" in *[\'\"\ \\]*) echo "paths must not contain quotes, spaces or backslashes" >&2; exit 1 ;; esac

cargo build --release --quiet
# A private copy: another build in this tree during the run must not swap the binary.
cp "${CARGO_TARGET_DIR:-target}/release/wh" "$out/wh"
wh=$out/wh

# The venv: Celery and its Redis client, nothing system-wide. Reused when it has the version.
if ! "$venv/bin/python" -c "import celery, redis, sys; sys.exit(celery.__version__ != '$celery_version')" 2>/dev/null; then
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "celery[redis]==$celery_version"
fi
vpy=$venv/bin/python
worker_python=${WORKER_PYTHON:-$vpy}
case "$worker_python" in *[\'\"\ \\]*) echo "WORKER_PYTHON must not contain quotes, spaces or backslashes" >&2; exit 1 ;; esac

# --- files -----------------------------------------------------------------------------------
cat >"$out/celery_bench_app.py" <<EOF
"""The Celery side: one trivial task, results in the redis backend, JSON only."""
import os
import time

from celery import Celery
from celery.signals import worker_ready

app = Celery("celery_bench_app", broker="$redis_url", backend="$redis_url")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue="bench",
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.trivial")
def trivial():
    # bench/trivial_worker.py answers {"success": true, "result": {}}.
    return {}


@worker_ready.connect
def _ready(**_):
    path = os.environ.get("BENCH_READY_FILE")
    if path:
        with open(path, "w") as f:
            f.write(repr(time.time()))
EOF

cat >"$out/bench.py" <<'PY'
"""bench.py COMMAND ...: the Redis side of celery_redis.sh (run with the venv's python).

  check-empty URL            exit 1 if the db holds keys (prints a few)
  flush URL                  FLUSHDB
  celery-enqueue URL N IDS   send N bench.trivial tasks, task ids to the file IDS
  run KIND LABEL URL N PIDFILE LOG [IDS] -- CMD...
      KIND wh: run CMD to its exit. KIND celery: run CMD until the N results whose ids are in
      IDS are stored, then SIGTERM it. Either way: wait4 for CPU, then read the outcomes
      from Redis, check all N succeeded, print one JSON line.
"""
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import redis

LIMIT_S = float(os.environ.get("BENCH_RUN_LIMIT", "1800"))
TICK = os.sysconf("SC_CLK_TCK")


def conn(url):
    return redis.Redis.from_url(url)


def redis_cpu(r):
    info = r.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def chunks(seq, n=1000):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def celery_outcomes(r, ids):
    ok, times = 0, []
    for part in chunks(ids):
        for raw in r.mget([f"celery-task-meta-{i}" for i in part]):
            if raw is None:
                continue
            meta = json.loads(raw)
            if meta.get("status") == "SUCCESS" and meta.get("result") == {}:
                ok += 1
            d = datetime.fromisoformat(meta["date_done"])
            if d.tzinfo is None:
                d = d.replace(tzinfo=timezone.utc)
            times.append(d.timestamp())
    return ok, times


def wh_outcomes(r, prefix):
    ids = [i.decode() for i in r.zrange(f"{prefix}:index", 0, -1)]
    ok, times = 0, []
    for part in chunks(ids):
        pipe = r.pipeline(transaction=False)
        for i in part:
            pipe.hmget(f"{prefix}:task:{i}", "status", "result", "completed_at")
        for status, result, done in pipe.execute():
            if status == b"completed" and json.loads(result) == {}:
                ok += 1
            if done:
                times.append(float(done))
    return ok, times


def own_cpu(pid):
    """utime + stime of the process's own threads (not its children), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else (int(fields[11]) + int(fields[12])) / TICK


def reap(pid, limit, own):
    """wait4 the process (its CPU includes the children it reaped), reading its own CPU every
    20 ms while own is not None; SIGKILL its group after limit seconds (None: no limit).
    Returns (exit code, rusage, own CPU at the last reading)."""
    t = time.time()
    while True:
        got, status, usage = os.wait4(pid, os.WNOHANG)
        if got:
            return os.waitstatus_to_exitcode(status), usage, own
        if own is not None:
            own = own_cpu(pid) or own
        if limit is not None and time.time() - t > limit:
            os.killpg(pid, signal.SIGKILL)
            limit = None
        time.sleep(0.02)


def run(kind, label, url, n, pidfile, log, ids_file, cmd):
    r = conn(url)
    ids = open(ids_file).read().split() if kind == "celery" else []
    ready_file = os.path.join(os.path.dirname(log), f"{label}.ready")
    if os.path.exists(ready_file):
        os.unlink(ready_file)
    env = dict(os.environ, BENCH_READY_FILE=ready_file)
    cpu0 = redis_cpu(r)
    with open(log, "wb") as logf:
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                start_new_session=True, env=env)
        with open(pidfile, "w") as f:
            f.write(str(proc.pid))
        if kind == "celery":
            # Results complete roughly in queue order: check the oldest not yet seen.
            k, own = 0, 0.0
            while k < len(ids):
                own = own_cpu(proc.pid) or own
                if proc.poll() is not None:
                    sys.exit(f"{label}: the worker exited ({proc.returncode}) with {k}/{n} done; see {log}")
                if time.time() - t0 > LIMIT_S:
                    os.killpg(proc.pid, signal.SIGKILL)
                    sys.exit(f"{label}: not drained after {LIMIT_S} s ({k}/{n})")
                pipe = r.pipeline(transaction=False)
                window = ids[k:k + 64]
                for i in window:
                    pipe.exists(f"celery-task-meta-{i}")
                for seen in pipe.execute():
                    if not seen:
                        break
                    k += 1
                else:
                    continue
                time.sleep(0.02)
            t_seen = time.time()
            cpu1 = redis_cpu(r)
            proc.send_signal(signal.SIGTERM)
            status, usage, _ = reap(proc.pid, 60, None)
        else:
            status, usage, own = reap(proc.pid, None, 0.0)
        t_exit = time.time()
        if kind == "wh":
            t_seen = t_exit
            cpu1 = redis_cpu(r)
            if status != 0:
                sys.exit(f"{label}: exit status {status}; see {log}")
    os.unlink(pidfile)
    if kind == "celery":
        ok, times = celery_outcomes(r, ids)
    else:
        ok, times = wh_outcomes(r, os.environ["BENCH_PREFIX"])
    if ok != n or len(times) != n:
        sys.exit(f"{label}: {ok}/{n} successful outcomes ({len(times)} stamped); see {log}")
    ready = float(open(ready_file).read()) - t0 if os.path.exists(ready_file) else None
    last = max(times) - t0
    print(json.dumps({
        "label": label, "tasks": n, "start_to_last_s": round(last, 4),
        "first_s": round(min(times) - t0, 4), "ready_s": None if ready is None else round(ready, 4),
        "seen_s": round(t_seen - t0, 4), "exit_s": round(t_exit - t0, 4),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3), "own_cpu_s": round(own, 3),
        "redis_cpu_s": round(cpu1 - cpu0, 3), "tasks_per_s": round(n / last, 2),
        "loadavg": open("/proc/loadavg").read().split()[0],
    }))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "check-empty":
        r = conn(args[0])
        if r.dbsize():
            print(f"{args[0]} holds {r.dbsize()} keys, e.g. {[k.decode() for k in r.scan(0, count=5)[1]][:5]}; "
                  "use another REDIS_DB or set BENCH_REDIS_FLUSH=1", file=sys.stderr)
            sys.exit(1)
    elif cmd == "flush":
        conn(args[0]).flushdb()
    elif cmd == "celery-enqueue":
        url, n, ids_file = args[0], int(args[1]), args[2]
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from celery_bench_app import app
        ids = []
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                ids.append(app.send_task("bench.trivial", producer=producer).id)
        with open(ids_file, "w") as f:
            f.write("\n".join(ids) + "\n")
        queued = conn(url).llen("bench")
        if queued != n:
            sys.exit(f"celery-enqueue: {queued} on the queue, expected {n}")
    elif cmd == "run":
        sep = args.index("--")
        kind, label, url, n, pidfile, log, *rest = args[:sep]
        run(kind, label, url, int(n), pidfile, log, rest[0] if rest else None, args[sep + 1:])
    else:
        sys.exit(f"unknown command {cmd}")


main()
PY

python3 - "$out/tasks.ndjson" "$tasks" "$out/warmup.ndjson" "$warmup" <<'PY'
import sys
for path, n in ((sys.argv[1], sys.argv[2]), (sys.argv[3], sys.argv[4])):
    with open(path, "w") as f:
        for _ in range(int(n)):
            f.write('{"type": "Bench.Trivial", "params": {}}\n')
PY

# --- clean-up --------------------------------------------------------------------------------
# Each contender runs as a background job in its own process group (in_job), so that a signal
# to this script is handled at once rather than after the drain. The processes it starts
# (celery worker, wh host) lead their own sessions and write their pid to $out/*.pid while
# they run. On exit: the job's group, then those groups, are killed and the db is flushed.
job=
in_job() {
    local rc=0
    set -m
    "$@" &
    job=$!
    set +m
    wait "$job" || rc=$?
    job=
    return "$rc"
}
cleanup() {
    local f pid
    [ -z "$job" ] || kill -TERM -- "-$job" 2>/dev/null || true
    for f in "$out"/*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        kill -TERM -- "-$pid" 2>/dev/null || true
        sleep 0.5
        kill -KILL -- "-$pid" 2>/dev/null || true
        rm -f "$f"
    done
    "$vpy" "$out/bench.py" flush "$redis_url" 2>/dev/null || true
    # A venv this script made for itself goes too; one named by BENCH_VENV is kept for reuse.
    [ -n "${BENCH_VENV:-}" ] || rm -rf "$venv"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${BENCH_REDIS_FLUSH:-}" != 1 ]; then
    "$vpy" "$out/bench.py" check-empty "$redis_url"
fi

# --- contenders ------------------------------------------------------------------------------
# Each contender_NAME N LABEL: prepares N tasks untimed (after a flush), runs one timed drain and
# prints bench.py's JSON line.

# write_wh_config FILE PREFIX [LINE...]: a redis-source config with one worker running
# trivial_worker.py; each LINE is added to the worker's section as it is (e.g. "mode: persistent").
write_wh_config() {
    local file=$1 prefix=$2 line
    shift 2
    {
        cat <<EOF
version: "1.0"
task_manager: {type: redis, url: "$redis_url", prefix: $prefix, poll_interval: 0.05}
workers:
  - name: trivial
    command: ["$worker_python", "$worker"]
    task_types: [Bench.Trivial]
    timeout: 30
    max_retries: 0
EOF
        for line in "$@"; do printf '    %s\n' "$line"; done
        cat <<EOF
logging: {level: WARNING}
monitoring: {enabled: false}
EOF
        # Persistent rows: as many warm processes as Celery has pool processes.
        printf 'advanced:\n  worker_pool: {min_workers: %s, max_workers: %s, prefetch: %s}\n' \
            "$concurrency" "$concurrency" "${prefetch:-0}"
    } >"$file"
}

# run_wh NAME CONFIG PREFIX N LABEL: enqueue N tasks with wh enqueue, then time wh host --drain.
run_wh() {
    local name=$1 config=$2 prefix=$3 n=$4 label=$5 file=$out/tasks.ndjson
    [ "$n" = "$tasks" ] || file=$out/warmup.ndjson
    "$vpy" "$out/bench.py" flush "$redis_url"
    "$wh" enqueue --config "$config" --file "$file" >/dev/null
    BENCH_PREFIX=$prefix "$vpy" "$out/bench.py" run wh "$label" "$redis_url" "$n" "$out/$name.pid" "$out/$label.log" -- \
        "$wh" host --config "$config" --drain --concurrency "$concurrency"
}

contender_celery() {
    local n=$1 label=$2
    "$vpy" "$out/bench.py" flush "$redis_url"
    (cd "$out" && "$vpy" bench.py celery-enqueue "$redis_url" "$n" "$out/$label.ids")
    (cd "$out" && PYTHONPATH=$out "$vpy" bench.py run celery "$label" "$redis_url" "$n" "$out/celery.pid" "$out/$label.log" "$out/$label.ids" -- \
        "$venv/bin/celery" -A celery_bench_app worker --pool prefork --concurrency "$concurrency" -O fair \
        --without-gossip --without-mingle --without-heartbeat --loglevel WARNING -n "bench@%h")
}

contender_wh_oneshot() {
    write_wh_config "$out/wh_oneshot.yaml" whbench-wh_oneshot
    run_wh wh_oneshot "$out/wh_oneshot.yaml" whbench-wh_oneshot "$@"
}

contender_wh_persistent() {
    write_wh_config "$out/wh_persistent.yaml" whbench-wh_persistent "mode: persistent"
    run_wh wh_persistent "$out/wh_persistent.yaml" whbench-wh_persistent "$@"
}

# Persistent, with the host claiming up to 64 tasks ahead of its free processes.
contender_wh_persistent_prefetch() {
    prefetch=64 write_wh_config "$out/wh_persistent_prefetch.yaml" whbench-wh_persistent_prefetch "mode: persistent"
    run_wh wh_persistent_prefetch "$out/wh_persistent_prefetch.yaml" whbench-wh_persistent_prefetch "$@"
}

# --- run -------------------------------------------------------------------------------------
echo "== machine"
echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "commit:    ${WH_COMMIT:-$(git describe --always --dirty 2>/dev/null || echo unknown)}"
echo "nproc:     $(nproc)"
echo "cpu:       $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "kernel:    $(uname -r)"
echo "python:    $("$python" --version 2>&1) ($python; venv $venv; wh's worker: $worker_python)"
echo "celery:    $("$vpy" -c 'import celery, kombu, redis; print(f"celery {celery.__version__}, kombu {kombu.__version__}, redis-py {redis.__version__}")')"
echo "redis:     $("$vpy" -c "import redis; print(redis.Redis.from_url('$redis_url').info('server')['redis_version'])") at $redis_url"
echo "loadavg:   $(cat /proc/loadavg)"
echo "settings:  TASKS=$tasks CONCURRENCY=$concurrency RUNS=$runs WARMUP=$warmup contenders: ${CONTENDERS[*]}"
echo "results:   $out"
echo

if [ "$warmup" -gt 0 ]; then
    echo "== warm-up, $warmup tasks each (untimed: page cache, venv imports)"
    for name in "${CONTENDERS[@]}"; do in_job "contender_$name" "$warmup" "warmup-$name" >/dev/null; done
fi

echo "== $runs interleaved runs, $tasks tasks each, concurrency $concurrency"
: >"$out/runs.ndjson"
for run in $(seq 1 "$runs"); do
    for name in "${CONTENDERS[@]}"; do
        in_job "contender_$name" "$tasks" "run$run-$name" >"$out/run$run-$name.json"
        line=$(cat "$out/run$run-$name.json")
        printf '{"run": %d, "contender": "%s", "result": %s}\n' "$run" "$name" "$line" >>"$out/runs.ndjson"
        echo "run $run $name: $line"
    done
done
echo

python3 - "$out/runs.ndjson" "${CONTENDERS[@]}" <<'PY'
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1])]
names = sys.argv[2:]
base = names[0]
by = {(r["run"], r["contender"]): r["result"] for r in rows}
runs = sorted({r["run"] for r in rows})
fmt = lambda v, spec: "-" if v is None else format(v, spec)

print("| run | contender | start→last (s) | tasks/s | first result (s) | ready (s) | CPU ms/task: all | main process | Redis | load | ratio to " + base + " |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for run in runs:
    for name in names:
        r = by[(run, name)]
        n = r["tasks"]
        ratio = r["tasks_per_s"] / by[(run, base)]["tasks_per_s"]
        print(f"| {run} | {name} | {r['start_to_last_s']:.2f} | {r['tasks_per_s']:.1f} | {r['first_s']:.3f} | "
              f"{fmt(r['ready_s'], '.3f')} | {1000 * r['cpu_s'] / n:.2f} | {1000 * r['own_cpu_s'] / n:.2f} | "
              f"{1000 * r['redis_cpu_s'] / n:.3f} | {r['loadavg']} | {'1' if name == base else format(ratio, '.4f')} |")
print()
print("medians over the runs:")
for name in names:
    rs = [by[(run, name)] for run in runs]
    tps = statistics.median(r["tasks_per_s"] for r in rs)
    line = f"  {name:<12} {tps:9.1f} tasks/s"
    line += f", CPU {statistics.median(1000 * r['cpu_s'] / r['tasks'] for r in rs):.2f} ms/task"
    line += f" (main process {statistics.median(1000 * r['own_cpu_s'] / r['tasks'] for r in rs):.2f})"
    if name != base:
        ratios = [by[(run, name)]["tasks_per_s"] / by[(run, base)]["tasks_per_s"] for run in runs]
        line += f", {name}/{base} per run {', '.join(f'{x:.4f}' for x in ratios)}, median {statistics.median(ratios):.4f}"
    print(line)
PY
echo
echo "results kept in $out"
