#!/usr/bin/env python3
"""A worker that fails on purpose before it succeeds: it shows `wh host` retrying.

Task type "PrismQ.Example.Flaky", params {"succeed_on_attempt": N} (default 2). Under a host,
the task's metadata carries the delivery number ("attempt"); deliveries before N fail with a
retriable error (exit 1, retry_possible true), as a worker does when a network call times out.
The host retries with backoff, and delivery N succeeds. Without an "attempt" (wh send,
wh test-worker) it succeeds at once, so the worker stays protocol compliant.

With WH_WORKER_MODE=persistent it serves many tasks from one process (protocol section 8): the
handshake line, then one result line per task line until EOF. Each decision comes from the
task's own metadata.attempt, so retries work the same whether a delivery lands in a fresh
process or in one that has already failed it.
"""

import json
import os
import sys
from typing import Tuple

TASK_TYPE = "PrismQ.Example.Flaky"


def failure(error_type: str, message: str, retriable: bool) -> Tuple[dict, int]:
    """A failure result and the exit code that agrees with its retry_possible."""
    error = {"type": error_type, "message": message, "traceback": None, "retry_possible": retriable}
    return {"success": False, "error": error}, 1 if retriable else 2


def handle(data: bytes) -> Tuple[dict, int]:
    """One task's result and exit code, from the task's raw bytes. Both modes use it."""
    try:
        task = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return failure(type(e).__name__, str(e), retriable=False)
    if not isinstance(task, dict) or not isinstance(task.get("id"), str):
        return failure("ValidationError", "task must be an object with a string 'id'", retriable=False)
    if task.get("type") != TASK_TYPE or not isinstance(task.get("params"), dict):
        return failure("ValidationError", "Unknown task type: %s" % task.get("type"), retriable=False)
    wanted = task["params"].get("succeed_on_attempt", 2)
    attempt = (task.get("metadata") or {}).get("attempt")
    if isinstance(attempt, int) and isinstance(wanted, int) and attempt < wanted:
        print("attempt %d of %d: simulated outage" % (attempt, wanted), file=sys.stderr)
        return failure("NetworkError", "simulated outage on attempt %d" % attempt, retriable=True)
    print("attempt %s: success" % attempt, file=sys.stderr)
    return {"success": True, "result": {"task_id": task["id"], "attempt": attempt}}, 0


def reply(result: dict) -> None:
    """One line on stdout, flushed."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def main() -> int:
    if os.environ.get("WH_WORKER_MODE") != "persistent":
        result, code = handle(sys.stdin.buffer.read())  # one task, read to EOF
        reply(result)
        return code
    reply({"ready": True, "mode": "persistent", "name": "flaky_worker"})
    for line in sys.stdin.buffer:  # one task per line; EOF ends the loop
        if line.strip(b" \t\r\n"):  # a blank line is not a task: no answer
            reply(handle(line)[0])  # no exit code per task: retry_possible says it
    return 0


if __name__ == "__main__":
    sys.exit(main())
