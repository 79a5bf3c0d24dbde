"""Tests for the {{name}} worker.

Most tests run worker.py as a subprocess, exactly as the host does: a task on stdin, one
JSON result on stdout, an exit code; the persistent-mode tests keep one worker process and
send it one task line at a time. Run them with `pytest`; `wh test-worker` checks the full
protocol.
"""

import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

WORKER = Path(__file__).resolve().parents[1] / "src" / "{{package}}" / "worker.py"
TASK_TYPES = {{task_types_json}}
FIRST_TYPE = TASK_TYPES[0]


def environment(persistent: bool = False) -> dict:
    """This environment, with WH_WORKER_MODE set only when the test asks for it."""
    env = {k: v for k, v in os.environ.items() if k != "WH_WORKER_MODE"}
    if persistent:
        env["WH_WORKER_MODE"] = "persistent"
    return env


def run_worker(stdin: bytes):
    """Run the worker on `stdin`; return (exit code, parsed result, raw stdout)."""
    proc = subprocess.run(
        [sys.executable, str(WORKER)], input=stdin, capture_output=True, timeout=30,
        env=environment(),
    )
    return proc.returncode, json.loads(proc.stdout.decode("utf-8")), proc.stdout


def task(**fields) -> bytes:
    body = {"id": "test-1", "type": FIRST_TYPE, "params": {}}
    body.update(fields)
    return json.dumps(body).encode("utf-8")


def load_worker_module():
    """Import worker.py by path (works without installing the package)."""
    spec = importlib.util.spec_from_file_location("{{package}}_worker_under_test", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_success_for_first_task_type():
    code, result, stdout = run_worker(task(params={"input_data": "hello"}))
    assert code == 0
    assert result["success"] is True
    assert isinstance(result["result"], dict)
    assert stdout.endswith(b"\n") and stdout.count(b"\n") == 1  # exactly one line
    for entry in result.get("logs", []):
        assert entry["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def test_unknown_type_is_not_retriable():
    code, result, _ = run_worker(task(type="No.Such.Type"))
    assert code == 2
    assert result["success"] is False
    assert result["error"]["retry_possible"] is False
    assert "Unknown task type" in result["error"]["message"]


def test_missing_id_is_not_retriable():
    code, result, _ = run_worker(json.dumps({"type": FIRST_TYPE, "params": {}}).encode())
    assert code == 2
    assert result["success"] is False
    assert result["error"]["retry_possible"] is False


def test_invalid_json():
    code, result, _ = run_worker(b'{"id": "test-1", "type": ')
    assert code == 2
    assert result["error"]["type"] == "JSONDecodeError"
    assert result["error"]["retry_possible"] is False


def test_pretty_printed_task_is_read_whole():
    body = {"id": "test-1", "type": FIRST_TYPE, "params": {"input_data": "a\nb"}}
    code, result, _ = run_worker(json.dumps(body, indent=2).encode("utf-8"))
    assert code == 0
    assert result["success"] is True


def test_unicode_round_trip():
    text = "héllo wörld, こんにちは, 🎉"
    code, result, _ = run_worker(task(params={"input_data": text}))
    assert code == 0
    assert result["result"]["params"]["input_data"] == text
    assert result["result"]["processed_input"] == text.upper()


def test_process_task_returns_a_dict():
    worker = load_worker_module()
    for task_type in worker.TASK_TYPES:
        assert isinstance(worker.process_task(task_type, {"input_data": "x"}), dict)


def test_failing_business_logic_is_retriable(monkeypatch):
    worker = load_worker_module()

    def broken(task_type, params):
        raise RuntimeError("database is down")

    monkeypatch.setattr(worker, "process_task", broken)
    monkeypatch.delenv("WH_WORKER_MODE", raising=False)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(task())))
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, encoding="utf-8"))
    code = worker.main()
    result = json.loads(out.getvalue().decode("utf-8"))
    assert code == 1
    assert result["success"] is False
    assert result["error"]["type"] == "RuntimeError"
    assert result["error"]["retry_possible"] is True
    assert "database is down" in result["error"]["traceback"]


# --------------------------------------------------------------------------------------------
# Persistent mode: one process, the handshake, then one result line per task line.
# --------------------------------------------------------------------------------------------


class PersistentWorker:
    """The worker started as the host starts it with `mode: persistent`. Every read has a
    deadline: a worker that stops answering is killed, so the test fails instead of hanging."""

    def __init__(self, argv=None, stderr=subprocess.DEVNULL, deadline: float = 30):
        self.proc = subprocess.Popen(
            argv or [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
            env=environment(persistent=True),
        )
        self.watchdog = threading.Timer(deadline, self.proc.kill)
        self.watchdog.start()

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        assert line.endswith(b"\n"), "no line from the worker (it ended or was killed)"
        return json.loads(line.decode("utf-8"))

    def send(self, line: bytes) -> dict:
        """Write one line, return the result line it gets."""
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> int:
        """EOF on stdin; return the exit code once it has exited."""
        self.proc.stdin.close()
        try:
            rest = self.proc.stdout.read()
            return self.proc.wait()
        finally:
            self.watchdog.cancel()
            assert rest == b"", "stdout after the last result: %r" % rest

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.watchdog.cancel()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_persistent_handshake_comes_first():
    with PersistentWorker() as worker:
        handshake = worker.read()  # before any task is sent
        assert handshake["ready"] is True
        assert handshake["mode"] == "persistent"
        assert worker.close() == 0


def test_persistent_tasks_are_answered_in_order():
    with PersistentWorker() as worker:
        worker.read()
        for n in range(5):
            result = worker.send(task(id="t-%d" % n, params={"input_data": "task %d" % n}))
            assert result["success"] is True
            assert result["result"]["processed_input"] == "TASK %d" % n
            # Each result carries its own task's log records, not those of earlier tasks.
            received = [e["message"] for e in result["logs"] if "Received task" in e["message"]]
            assert received == ["Received task t-%d of type %s" % (n, FIRST_TYPE)]
        assert worker.close() == 0


def test_persistent_failure_does_not_end_the_worker():
    with PersistentWorker() as worker:
        worker.read()
        failed = worker.send(task(type="No.Such.Type"))
        assert failed["success"] is False
        assert failed["error"]["retry_possible"] is False
        assert worker.send(task())["success"] is True
        assert worker.close() == 0


def test_persistent_invalid_json_then_a_task():
    with PersistentWorker() as worker:
        worker.read()
        failed = worker.send(b'{"id": "test-1", "type": ')
        assert failed["error"]["type"] == "JSONDecodeError"
        assert failed["error"]["retry_possible"] is False
        worker.proc.stdin.write(b"\n   \n")  # blank lines are not tasks: no answer
        assert worker.send(task(id="after"))["success"] is True
        assert worker.close() == 0


def test_persistent_sigterm_during_a_task_answers_then_exits():
    # The worker with a process_task() that says "started" on stderr, then takes its time, so
    # that SIGTERM arrives during the task.
    slow = (
        "import sys, time; sys.path.insert(0, %r); import worker; "
        "worker.process_task = lambda task_type, params: "
        "(print('started', file=sys.stderr, flush=True), time.sleep(60)); "
        "sys.exit(worker.main())" % str(WORKER.parent)
    )
    with PersistentWorker([sys.executable, "-c", slow], stderr=subprocess.PIPE) as worker:
        worker.read()
        worker.proc.stdin.write(task() + b"\n")
        worker.proc.stdin.flush()
        while worker.proc.stderr.readline() not in (b"started\n", b""):
            pass
        worker.proc.send_signal(signal.SIGTERM)
        result = worker.read()
        assert result["error"]["type"] == "TerminatedError"
        assert result["error"]["retry_possible"] is True
        assert worker.proc.wait(timeout=10) == 1
