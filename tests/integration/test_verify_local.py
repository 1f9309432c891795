"""`remediate verify --local` on this machine, through the real CLI, LocalTransport and the remote script.

The development machine has no NVIDIA GPU and no driver: the ladder must stop cleanly at rung 1 with
a plain reason, skip the rest with theirs, and exit 2 (a rung failed). On a machine with a driver the
test is skipped (tests/fixtures/verify holds real GPU recordings instead).
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
    assert main(["verify", "--local", "--target", "pytorch==2.11.0"]) == 2
    out = capsys.readouterr().out
    assert "localhost: FAIL" in out
    assert "FAIL  no NVIDIA kernel module loaded (/proc/driver/nvidia/version missing)" in out
    assert out.count("skip  driver rung failed") == 3
    assert "verdict: fail at rung 1 (driver)" in out
    assert "0 passed, 1 failed a rung, 0 unreachable" in out


def test_local_ladder_without_a_gpu_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--local", "--target", "torch==2.11.0", "--format", "json"]) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["exit_status"] == 2 and document["target"] == "torch==2.11.0"
    (host,) = document["hosts"]
    assert host["host"] == "localhost" and host["status"] == "failed"
    v = host["verification"]
    assert [(r["name"], r["status"]) for r in v["rungs"]] == [
        ("driver", "fail"), ("cuda", "skip"), ("runtime", "skip"), ("matmul", "skip")]
    assert v["first_failure"]["rung"] == 1 and v["first_failure"]["fix"]
    assert [r["summary"] for r in v["rungs"][1:]] == ["driver rung failed"] * 3
    assert v["report"]["script"] == "remediator-verify"
    assert v["report"]["framework"] == {"ran": False}


def test_local_with_a_missing_interpreter_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--local", "--target", "pytorch==2.11.0", "--python", "/nonexistent/bin/python"]) == 1
    out = capsys.readouterr().out
    assert "localhost: error: no interpreter to run the check: /nonexistent/bin/python found on the host" in out


def test_local_without_target_runs_the_driver_rungs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--local", "--format", "json"]) == 2
    v = json.loads(capsys.readouterr().out)["hosts"][0]["verification"]
    assert v["target"] is None and v["rungs"][0]["status"] == "fail"
