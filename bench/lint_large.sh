#!/usr/bin/env bash
# lint_large.sh: how long `wh lint` takes on a generated config with 1,000 workers (the
# target is under 200 ms on these 2-core machines). The config mixes the three start forms,
# env substitution and metadata, so every rule runs on every worker.
#
# Usage: bash bench/lint_large.sh   (results in $BENCH_OUT or a temp dir, kept and printed)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v hyperfine >/dev/null || { echo "missing: hyperfine (apt-get install -y hyperfine)" >&2; exit 1; }
out=${BENCH_OUT:-$(mktemp -d -t wh-lint-bench.XXXXXX)}
mkdir -p "$out"
cargo build --release --quiet
wh=$PWD/target/release/wh

python3 - "$out/large.yaml" <<'PY'
import sys
lines = ["# yaml-language-server: $schema=schemas/config.schema.json", 'version: "1.0"',
         "task_manager:", "  type: local", "  path: ${WH_QUEUE:-queue.db}", "workers:"]
for i in range(1000):
    lines += [f"  - name: worker-{i:04d}", f'    description: "Generated worker {i}"']
    form = i % 3
    if form == 0:
        lines += ["    venv_python: ./venvs/w/bin/python", f"    module: src.workers.w{i}", "    function: main"]
    elif form == 1:
        lines += [f"    script: workers/w{i}.py"]
    else:
        lines += ['    command: ["node", "worker.js"]']
    lines += [f"    task_types: [Bench.Type{i}, Bench.Other{i}]", "    timeout: 300", "    max_retries: 3",
              "    env:", f'      WORKER_INDEX: "{i}"', "    metadata:", '      version: "1.0.0"',
              "      dependencies: [requests, numpy]"]
lines += ["monitoring:", "  metrics: {port: 9090, path: /metrics}", "  health_check: {port: 8080, path: /health}"]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
echo "config: $out/large.yaml ($(wc -l <"$out/large.yaml") lines, $(du -k "$out/large.yaml" | cut -f1) KiB)"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  commit: $(git describe --always --dirty 2>/dev/null || echo unknown)  loadavg: $(cat /proc/loadavg)"
# Exit code 0 (warnings only) or 1 would both be fine; -i keeps hyperfine from stopping on 1.
hyperfine -N -i --warmup 3 --runs 30 --export-json "$out/lint_large.json" \
    -n 'wh lint (1,000 workers)' "$wh lint $out/large.yaml" \
    -n 'wh lint --format json' "$wh lint --format json $out/large.yaml" \
    -n 'wh --version (floor)' "$wh --version"
python3 - "$out/lint_large.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"{r['command']:<28} median {r['median']*1000:7.1f} ms  mean {r['mean']*1000:7.1f} ± {r['stddev']*1000:.1f} ms  min {r['min']*1000:.1f} ms")
PY
echo "results kept in $out"
