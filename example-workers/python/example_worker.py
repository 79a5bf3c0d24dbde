#!/usr/bin/env python3
"""Example worker for WorkerHost (`wh`): tasks in on stdin, results out on stdout.

This is a complete, protocol-compliant worker that needs only the Python standard library
(Python >= 3.8). Copy it to start your own worker: replace SUPPORTED_TASK_TYPES and
process_task() with your business logic and keep the rest.

What the protocol asks of a worker (the WorkerHost protocol page has the full contract):

  * read ONE JSON task object from stdin, to EOF (the task may span several lines);
  * write exactly ONE JSON result object to stdout, and nothing else;
  * send logs, progress and debug output to stderr;
  * exit with a code that says what happened:

        code  meaning                                              retry_possible
        ----  ---------------------------------------------------  --------------
          0   success                                              (no error)
          1   failure, retriable (unexpected error, SIGTERM)       true
          2   failure, not retriable (validation error, invalid    false
              JSON input, unknown task type)
          3   timeout (for a worker that enforces its own          -
              deadline; this example does not)
        130   interrupted (SIGINT / Ctrl+C)                        true

Persistent mode (opt-in, protocol section 8): started with WH_WORKER_MODE=persistent (the host
does so for a worker whose config entry says `mode: persistent`), the worker first writes the
handshake line {"ready": true, "mode": "persistent", ...}, then answers each task line on
stdin with one result line on stdout, flushed, until stdin ends (exit 0). There is no exit code
per task: "retry_possible" says what it would have said. A failed task, or a line that is not
JSON, gets its failure result and the worker reads the next line; blank lines are ignored.
Both modes run each task through the same run_task() and process_task().

Task handled here: "PrismQ.Example.ProcessData"
  params:  {"input_data": "<string, optional, default ''>"}
  result:  {"task_id": ..., "input_length": n, "word_count": n, "processed": "<INPUT UPPERCASED>"}

Run it:

    wh test-worker example-workers/python/example_worker.py

    printf '%s\n' '{"id": "1", "type": "PrismQ.Example.ProcessData", "params": {}}' \
      | WH_WORKER_MODE=persistent python3 example_worker.py    # the handshake, one result

    echo '{"id": "task-1", "type": "PrismQ.Example.ProcessData",
           "params": {"input_data": "hello"}}' | python3 example_worker.py

The second prints (on one line):

    {"success": true, "result": {"task_id": "task-1", "input_length": 5, "word_count": 1,
     "processed": "HELLO"}, "logs": [{"level": "INFO", "message": "..."}, ...]}
"""

import json
import logging
import os
import signal
import sys
import traceback
from typing import Any, Callable, Dict, List, NamedTuple, Tuple

# Exit codes of the protocol.
EXIT_SUCCESS = 0
EXIT_RETRIABLE = 1
EXIT_NOT_RETRIABLE = 2
EXIT_TIMEOUT = 3  # not used by this example; listed so the table is complete
EXIT_INTERRUPTED = 130

# The task types this worker handles. The host routes tasks by type; anything else is refused
# as a validation error.
SUPPORTED_TASK_TYPES = ("PrismQ.Example.ProcessData",)

# The host sets this variable to this value to run the worker persistently (protocol section 8),
# and the worker confirms with this handshake line before it reads any task.
MODE_ENV = "WH_WORKER_MODE"
MODE_PERSISTENT = "persistent"
HANDSHAKE = {"ready": True, "mode": MODE_PERSISTENT, "name": "example_worker"}

# Log levels the protocol allows in the result's "logs" list, lowest first.
PROTOCOL_LEVELS = (
    (logging.DEBUG, "DEBUG"),
    (logging.INFO, "INFO"),
    (logging.WARNING, "WARNING"),
    (logging.ERROR, "ERROR"),
    (logging.CRITICAL, "CRITICAL"),
)

logger = logging.getLogger("example_worker")


# --------------------------------------------------------------------------------------------
# Errors. Each class knows the exit code it ends the worker with, so run_task() has one rule
# for all of them and "retry_possible" can never disagree with the exit code.
# --------------------------------------------------------------------------------------------


class WorkerError(Exception):
    """A failure the worker expected and reports as a failure result (retriable by default)."""

    exit_code = EXIT_RETRIABLE


class ValidationError(WorkerError):
    """The task itself is wrong: running it again will not help."""

    exit_code = EXIT_NOT_RETRIABLE


class TerminatedError(BaseException):
    """The host asked the worker to stop (SIGTERM) before the task was done: retriable.

    Like KeyboardInterrupt it derives from BaseException, so an `except Exception` in business
    code (or inside the logging module) cannot swallow the stop request.
    """


# --------------------------------------------------------------------------------------------
# Business logic: the part to replace.
# --------------------------------------------------------------------------------------------


def process_task(task_type: str, params: Dict[str, Any]) -> Dict[str, Any]:
    """Do the work for one task and return the result object.

    Raise ValidationError for bad params (not retried), WorkerError for a failure worth
    retrying (a network hiccup, say); any other exception is reported as an unexpected,
    retriable error with its traceback (a built-in TimeoutError keeps its name, "TimeoutError",
    which persistent mode's host counts as a timeout).

    In persistent mode one process runs many tasks: keep no per-task state in globals.
    """
    if task_type == "PrismQ.Example.ProcessData":
        input_data = params.get("input_data", "")
        if not isinstance(input_data, str):
            raise ValidationError("params.input_data must be a string")
        logger.info("Processing %d characters", len(input_data))
        return {
            "input_length": len(input_data),
            "word_count": len(input_data.split()),
            # Echoing the text back lets a caller check that large and non-ASCII inputs
            # survive the round trip.
            "processed": input_data.upper(),
        }
    # validate_task() has already refused unknown types; this is a guard against the two
    # lists drifting apart.
    raise ValidationError("Unknown task type: %s" % task_type)


# --------------------------------------------------------------------------------------------
# Protocol plumbing: reading the task, checking it, writing the result.
# --------------------------------------------------------------------------------------------


def validate_task(task: Any) -> None:
    """Check the task's shape. Raises ValidationError. Unknown metadata keys are ignored."""
    if not isinstance(task, dict):
        raise ValidationError("Task must be a JSON object, got %s" % type(task).__name__)
    if "id" not in task:
        raise ValidationError("Task is missing required field 'id'")
    if not isinstance(task["id"], str):
        raise ValidationError("Task field 'id' must be a string")
    if "type" not in task:
        raise ValidationError("Task is missing required field 'type'")
    if not isinstance(task["type"], str):
        raise ValidationError("Task field 'type' must be a string")
    if "params" not in task:
        raise ValidationError("Task is missing required field 'params'")
    if not isinstance(task["params"], dict):
        raise ValidationError("Task field 'params' must be a JSON object")
    if task["type"] not in SUPPORTED_TASK_TYPES:
        raise ValidationError("Unknown task type: %s" % task["type"])


class LogCollector(logging.Handler):
    """Keeps log records as {"level", "message"} entries for the result's "logs" list.

    run_task() gives it a fresh list for each task: a result carries that task's records only,
    and a persistent worker does not pile up the records of every task it has run."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: List[Dict[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Custom levels (say 25, or a "TRACE" below DEBUG) map to the protocol level below.
        level = "DEBUG"
        for number, name in PROTOCOL_LEVELS:
            if record.levelno >= number:
                level = name
        self.entries.append({"level": level, "message": record.getMessage()})


def configure_logging() -> LogCollector:
    """Log to stderr (for a human) and into the result (for the host), from the root logger
    so that libraries' log records are kept too."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(to_stderr)
    collector = LogCollector()
    root.addHandler(collector)
    return collector


def on_sigterm(signum: int, frame: Any) -> None:
    """The host sends SIGTERM to stop a worker (timeout, shutdown). Raising here unwinds the
    task like any other error, so the host gets a failure result instead of silence."""
    raise TerminatedError("Received SIGTERM: the host asked the worker to stop")


def failure(
    error: BaseException, exit_code: int, collector: LogCollector, with_traceback: bool
) -> Tuple[Dict[str, Any], int]:
    """Build a failure result whose retry_possible agrees with the exit code.

    Must be called from inside the `except` block that caught `error` (for the traceback).
    """
    message = str(error) or type(error).__name__
    logger.error("%s: %s", type(error).__name__, message)
    result = {
        "success": False,
        "error": {
            "type": type(error).__name__,
            "message": message,
            "traceback": traceback.format_exc() if with_traceback else None,
            "retry_possible": exit_code != EXIT_NOT_RETRIABLE,
        },
        "logs": collector.entries,
    }
    return result, exit_code


def encode(result: Dict[str, Any]) -> bytes:
    """Serialize the result as strict JSON (no NaN/Infinity) in UTF-8, with a final newline."""
    try:
        text = json.dumps(result, ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate (a task can send "\ud800") cannot be written as UTF-8; \u escapes
        # keep the JSON valid and the text exactly as received.
        return json.dumps(result, ensure_ascii=True, allow_nan=False).encode("ascii") + b"\n"


class Outcome(NamedTuple):
    """What one task came to."""

    payload: bytes  # the result line to write on stdout, "\n" included
    exit_code: int  # one-shot mode exits with it; retry_possible in the payload agrees with it
    stop: bool  # SIGTERM or Ctrl+C arrived: the worker must not serve another task


def run_task(read_task: Callable[[], bytes], collector: LogCollector) -> Outcome:
    """Read one task with `read_task`, run it and build its result line: both modes use it.

    `read_task` returns the task's raw bytes: all of stdin in one-shot mode, one line in
    persistent mode. While the task runs, SIGTERM raises TerminatedError (a failure result).
    """
    collector.entries = []  # this task's records only
    stop = False
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        try:
            task = json.loads(read_task().decode("utf-8"))
            validate_task(task)
            logger.info("Received task %s of type %s", task["id"], task["type"])
            result = {"task_id": task["id"]}
            result.update(process_task(task["type"], task["params"]))
            logger.info("Task %s done", task["id"])
            payload = encode({"success": True, "result": result, "logs": collector.entries})
            exit_code = EXIT_SUCCESS
        finally:
            # The outcome is decided: a SIGTERM from here on simply ends the process.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        # Not a task at all: retrying the same bytes cannot help.
        response, exit_code = failure(exc, EXIT_NOT_RETRIABLE, collector, False)
        payload = encode(response)
    except WorkerError as exc:
        response, exit_code = failure(exc, exc.exit_code, collector, False)
        payload = encode(response)
    except TerminatedError as exc:
        response, exit_code = failure(exc, EXIT_RETRIABLE, collector, False)
        payload, stop = encode(response), True
    except KeyboardInterrupt as exc:
        response, exit_code = failure(exc, EXIT_INTERRUPTED, collector, False)
        payload, stop = encode(response), True
    except Exception as exc:  # anything unexpected: report it with its traceback, retriable
        response, exit_code = failure(exc, EXIT_RETRIABLE, collector, True)
        payload = encode(response)
    return Outcome(payload, exit_code, stop)


def write_line(result_stream: Any, payload: bytes) -> bool:
    """Write one line on stdout and flush it. False when nobody reads stdout any more."""
    try:
        result_stream.write(payload)
        result_stream.flush()
        return True
    except BrokenPipeError:
        # Nobody reads the result any more (the host gave up on us). Say so on stderr, and
        # point stdout at /dev/null so Python's final flush does not fail a second time.
        logger.error("stdout was closed before the result could be written")
        os.dup2(os.open(os.devnull, os.O_WRONLY), result_stream.fileno())
        return False


def serve_once(result_stream: Any, collector: LogCollector) -> int:
    """One-shot mode, the default: one task, stdin read to EOF (a task may span lines)."""
    outcome = run_task(sys.stdin.buffer.read, collector)
    if not write_line(result_stream, outcome.payload):
        return EXIT_RETRIABLE
    return outcome.exit_code


def serve_persistent(result_stream: Any, collector: LogCollector) -> int:
    """Persistent mode: the handshake, then one result line per task line until EOF.

    Between tasks SIGTERM has its default effect (the process ends at once); during a task it
    gives a TerminatedError result, and then the worker exits 1.
    """
    if not write_line(result_stream, encode(HANDSHAKE)):
        return EXIT_RETRIABLE
    while True:
        try:
            line = sys.stdin.buffer.readline()
        except KeyboardInterrupt:  # Ctrl+C while waiting for a task
            return EXIT_INTERRUPTED
        if not line:  # EOF: the host is done with this process
            return EXIT_SUCCESS
        if not line.strip(b" \t\r\n"):  # a blank line is not a task: no answer
            continue
        outcome = run_task(lambda: line.rstrip(b"\r\n"), collector)
        if not write_line(result_stream, outcome.payload):
            return EXIT_RETRIABLE
        if outcome.stop:
            return outcome.exit_code


def main() -> int:
    # stdout belongs to the results alone. Keep a handle on it, then point sys.stdout at stderr
    # so that a stray print() in business logic cannot corrupt the protocol.
    result_stream = sys.stdout.buffer
    sys.stdout = sys.stderr

    collector = configure_logging()
    if os.environ.get(MODE_ENV) == MODE_PERSISTENT:
        return serve_persistent(result_stream, collector)
    return serve_once(result_stream, collector)


if __name__ == "__main__":
    sys.exit(main())
