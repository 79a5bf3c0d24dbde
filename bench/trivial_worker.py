#!/usr/bin/env python3
"""Benchmark worker: answers success to every task and does nothing else.

One-shot (the default): reads the task to EOF, answers, exits 0. Used by bench/send_overhead.sh
and bench/host_throughput.sh to measure interpreter start-up plus wh's own cost, with no task
processing (no json/logging imports) in the way.

With WH_WORKER_MODE=persistent (docs/protocol.md section 8): the handshake line, then one
answer line per task line until EOF. This loop is also what bench/persistent.sh drives
directly as "the bare loop": the fastest a Python process can answer on a pipe.
"""
import os
import sys

RESULT = '{"success": true, "result": {}}\n'

if os.environ.get("WH_WORKER_MODE") == "persistent":
    out = sys.stdout
    out.write('{"ready": true, "mode": "persistent"}\n')
    out.flush()
    for line in sys.stdin:
        out.write(RESULT)
        out.flush()
    sys.exit(0)

sys.stdin.buffer.read()
sys.stdout.write(RESULT)
sys.exit(0)
