"""Tests for the {{name}} worker.

Most tests run worker.py as a subprocess, exactly as the host does: a task on stdin, one
JSON result on stdout, an exit code. Run them with `pytest`; `wh test-worker` checks the
full protocol.
"""

import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).resolve().parents[1] / "src" / "{{package}}" / "worker.py"
TASK_TYPES = {{task_types_json}}
FIRST_TYPE = TASK_TYPES[0]


def run_worker(stdin: bytes):
    """Run the worker on `stdin`; return (exit code, parsed result, raw stdout)."""
    proc = subprocess.run(
        [sys.executable, str(WORKER)], input=stdin, capture_output=True, timeout=30
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
