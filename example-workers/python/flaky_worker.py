#!/usr/bin/env python3
"""A worker that fails on purpose before it succeeds: it shows `wh host` retrying.

Task type "PrismQ.Example.Flaky", params {"succeed_on_attempt": N} (default 2). Under a host,
the task's metadata carries the delivery number ("attempt"); deliveries before N fail with a
retriable error (exit 1, retry_possible true), as a worker does when a network call times out.
The host retries with backoff, and delivery N succeeds. Without an "attempt" (wh send,
wh test-worker) it succeeds at once, so the worker stays protocol compliant.
"""

import json
import sys

TASK_TYPE = "PrismQ.Example.Flaky"


def reply(result: dict, code: int) -> int:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return code


def failure(error_type: str, message: str, retriable: bool) -> int:
    error = {"type": error_type, "message": message, "traceback": None, "retry_possible": retriable}
    return reply({"success": False, "error": error}, 1 if retriable else 2)


def main() -> int:
    try:
        task = json.loads(sys.stdin.buffer.read().decode("utf-8"))
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
    return reply({"success": True, "result": {"task_id": task["id"], "attempt": attempt}}, 0)


if __name__ == "__main__":
    sys.exit(main())
