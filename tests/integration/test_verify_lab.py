"""`remediate verify -i` against the lab: real OpenSSH hosts on loopback with a fake nvidia-smi and no GPU.

No lab host has a GPU, so over SSH every host must be checked (none unreachable, none an error of the
tool) and stop at rung 1 with a reason, the later rungs skipped with theirs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from remediator.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_every_lab_host_reports_no_device(lab: Any, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["verify", "-i", str(lab.inventory), "--target", "pytorch==2.11.0", "--format", "json",
                   "--forks", "8", "--timeout", "120"])
    document = json.loads(capsys.readouterr().out)
    hosts = {h["host"]: h for h in document["hosts"]}
    assert set(hosts) == set(lab.hosts)
    not_checked = [(name, h["status"], h["error"]) for name, h in hosts.items() if h["verification"] is None]
    assert not_checked == []
    for name, h in hosts.items():
        rungs = h["verification"]["rungs"]
        # Lab hosts have a driver on disk but no GPU on the bus: every rung that needs one says so.
        assert h["status"] == "passed", name
        assert [r["status"] for r in rungs] == ["skip", "skip", "skip", "skip"], (name, rungs[0])
        assert {r["summary"] for r in rungs} == {"no device: no NVIDIA GPU on this host's PCI bus, nothing to check"}
    assert status == 0
