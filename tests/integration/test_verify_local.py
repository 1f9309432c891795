"""`remediate verify --local` on this machine, through the real CLI, LocalTransport and the remote script.

The development machine has no NVIDIA GPU and no driver: every rung is skipped as "no device" (nothing
to check, nothing broken) and the exit is 0. On a machine with a driver the test is skipped
(tests/fixtures/verify holds real GPU recordings instead).
"""

from __future__ import annotations

import json
import os

import pytest

from remediator.cli import main

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.path.exists("/proc/driver/nvidia/version"), reason="this machine has an NVIDIA driver"),
]


def test_local_ladder_without_a_gpu_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--local", "--target", "pytorch==2.11.0"]) == 0
    out = capsys.readouterr().out
    assert "localhost: PASS" in out
    assert out.count("skip  no device: no NVIDIA GPU on this host's PCI bus") == 4
    assert "1 passed, 0 failed a rung, 0 unreachable" in out


def test_local_ladder_without_a_gpu_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--local", "--target", "torch==2.11.0", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["exit_status"] == 0 and document["target"] == "torch==2.11.0"
    (host,) = document["hosts"]
    assert host["host"] == "localhost" and host["status"] == "passed"
    v = host["verification"]
    assert [(r["name"], r["status"]) for r in v["rungs"]] == [
        ("driver", "skip"), ("cuda", "skip"), ("runtime", "skip"), ("matmul", "skip")]
    assert v["first_failure"] is None
    assert {r["summary"] for r in v["rungs"]} == {"no device: no NVIDIA GPU on this host's PCI bus, nothing to check"}
    assert v["report"]["script"] == "remediator-verify"
    assert v["report"]["framework"] == {"ran": False}


def test_local_with_a_missing_interpreter_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--local", "--target", "pytorch==2.11.0", "--python", "/nonexistent/bin/python"]) == 1
    out = capsys.readouterr().out
    assert "localhost: error: no interpreter to run the check: /nonexistent/bin/python found on the host" in out


def test_local_without_target_runs_the_driver_rungs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--local", "--format", "json"]) == 0
    v = json.loads(capsys.readouterr().out)["hosts"][0]["verification"]
    assert v["target"] is None and v["rungs"][0]["status"] == "skip"


def test_a_standalone_verify_is_in_the_history(tmp_path: object, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`remediate history` promises verify runs; a verify on its own (not after an apply) is recorded too."""
    db = f"{tmp_path}/state.db"
    monkeypatch.setenv("REMEDIATE_STATE_DB", db)
    assert main(["verify", "--local", "--target", "pytorch==2.11.0"]) == 0
    capsys.readouterr()
    assert main(["history", "localhost", "--format", "json"]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    verifies = [e for e in events if e["kind"] == "verify"]
    assert len(verifies) == 1 and verifies[0]["status"] == "passed", events
    assert verifies[0]["data"]["verification"]["target"] == "pytorch==2.11.0"
    # Judging a saved report again is not a new check of the host: nothing more is recorded.
    report = tmp_path / "check.json"  # type: ignore[operator]
    assert main(["verify", "--local", "--target", "pytorch==2.11.0", "--format", "json"]) == 0
    report.write_text(json.dumps(json.loads(capsys.readouterr().out)))
    assert main(["verify", "--report", str(report)]) == 0
    capsys.readouterr()
    assert main(["history", "localhost", "--format", "json"]) == 0
    assert len([e for e in json.loads(capsys.readouterr().out)["events"] if e["kind"] == "verify"]) == 2
