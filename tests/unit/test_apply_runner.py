"""apply and rollback with the real ansible-runner, on `ansible_connection=local` hosts running the stand-in
playbooks of tests/fixtures/playbooks, and the CLI end to end (its re-probe reads this machine)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from remediator.apply import ApplyEvent, ApplyOptions, Serial, apply_plan, read_plan, rollback_run
from remediator.cli import main
from remediator.errors import ExitStatus
from remediator.inventory import InventoryHost
from tests.unit.test_apply import FakeProbe, host_entry, write_plan

PLAYBOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks"


def local(*names: str) -> list[InventoryHost]:
    return [InventoryHost(name=n, address="localhost", connection="local") for n in names]


def test_apply_and_rollback_through_ansible_runner(tmp_path: Path) -> None:
    quarantine = tmp_path / "q"
    (quarantine / "control").mkdir(parents=True)
    (quarantine / "control" / "h3.fail").write_text("")
    names = ["h1", "h2", "h3", "h4"]
    plan = read_plan(str(write_plan(tmp_path / "plan.json", [host_entry(n) for n in names])))
    opts = ApplyOptions(playbooks_dir=PLAYBOOKS, state_dir=tmp_path / "state", quarantine_root=str(quarantine),
                        serial=Serial.parse("2"), max_fail_percent=50, record_state=False,
                        pip_index_url="https://mirror.example/simple", pip_extra_args=("--no-cache-dir",))
    events: list[ApplyEvent] = []
    result = apply_plan(plan, local(*names), opts, probe=FakeProbe(), on_event=events.append)

    assert {h.host: h.status for h in result.hosts} == {"h1": "applied", "h2": "applied", "h3": "failed",
                                                        "h4": "applied"}
    h3 = next(h for h in result.hosts if h.host == "h3")
    assert (h3.task, h3.error) == ("fail when told to", "stub failure on h3")
    assert [b.hosts for b in result.batches] == [("h1",), ("h2", "h3"), ("h4",)]  # 1 of 2 failed: 50% is allowed
    assert result.exit_status == ExitStatus.CHANGES
    run_dir = quarantine / result.run_id
    handed = json.loads((run_dir / "h1.vars.json").read_text())
    assert handed["run_id"] == result.run_id and handed["fingerprint"] == plan.host("h1").fingerprint
    assert handed["actions"] == [a.to_dict() for a in plan.host("h1").actions]
    assert (handed["pip_index_url"], handed["pip_extra_args"], handed["allow_approval"]) == (
        "https://mirror.example/simple", ["--no-cache-dir"], False)
    h1 = result.hosts[0]
    assert h1.manifest == {"run_id": result.run_id, "host": "h1", "items": []}
    assert h1.quarantine_manifest == f"{quarantine}/{result.run_id}/manifest.json"
    assert h1.counts["changed"] >= 1
    pdd = Path(result.private_data_dir)
    assert sorted(p.name for p in (pdd / "artifacts").iterdir()) == ["01-canary", "02-batch1", "03-batch2"]
    assert json.loads((pdd / "result.json").read_text())["summary"] == {"applied": 3, "failed": 1}
    runner_events = [e.runner for e in events if e.kind == "runner" and e.runner is not None]
    assert {e.host for e in runner_events if e.kind == "failed"} == {"h3"}

    (quarantine / "control" / "h3.fail").unlink()
    undone = rollback_run(result.run_id, local(*names), opts)
    assert [b.hosts for b in undone.batches] == [tuple(names)]
    assert {h.host: h.status for h in undone.hosts} == dict.fromkeys(names, "rolled_back")
    for name in names:
        assert (run_dir / f"{name}.rolled_back").read_text().strip() == undone.run_id


def test_the_cli_applies_and_rolls_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from remediator.plan import fingerprint
    from remediator.probe import probe_host
    from remediator.transport.local import LocalTransport

    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                         f"      ansible_python_interpreter: {sys.executable}\n")
    facts = probe_host(LocalTransport("localhost"), "localhost")
    plan_path = write_plan(tmp_path / "plan.json", [host_entry("localhost", fp=fingerprint(facts))])
    quarantine = tmp_path / "q"
    common = ["-i", str(inventory), "--playbooks", str(PLAYBOOKS), "--state-dir", str(tmp_path / "state"),
              "--quarantine-root", str(quarantine), "--state-db", str(tmp_path / "state.db")]

    assert main(["apply", str(plan_path), *common]) == ExitStatus.ERROR  # no terminal, no --yes: refused
    assert "--yes" in capsys.readouterr().err

    # This machine has no GPU to verify on: --no-verify (the lab tests run verify).
    status = main(["apply", str(plan_path), *common, "--yes", "--no-verify", "--result", str(tmp_path / "result.json")])
    out, err = capsys.readouterr()
    assert status == ExitStatus.OK, (out, err)
    doc = json.loads((tmp_path / "result.json").read_text())
    assert doc["kind"] == "apply" and doc["state"] == "finished" and doc["exit_status"] == 0
    assert doc["hosts"][0]["status"] == "applied"
    assert doc["hosts"][0]["quarantine_manifest"] == f"{quarantine}/{doc['run_id']}/manifest.json"
    assert f"undo with: remediate rollback {doc['run_id']}" in out
    assert "batch 01-batch1: localhost" in err and "localhost: applied" in err
    assert json.loads((quarantine / doc["run_id"] / "localhost.vars.json").read_text())["allow_approval"] is True

    status = main(["rollback", doc["run_id"], *common, "--yes", "--format", "json"])
    out, _ = capsys.readouterr()
    rolled: dict[str, Any] = json.loads(out)
    assert status == ExitStatus.OK and rolled["kind"] == "rollback" and rolled["undoes"] == doc["run_id"]
    assert [h["status"] for h in rolled["hosts"]] == ["rolled_back"]

    # The same plan again: the host changed in between? No: the stub changed nothing the probe reads,
    # so it is applied again, as a new run (the first one finished).
    assert main(["apply", str(plan_path), *common, "--yes", "--check", "--format", "json"]) == ExitStatus.OK
    checked = json.loads(capsys.readouterr().out)
    assert checked["check"] and checked["hosts"][0]["status"] == "check" and checked["run_id"] != doc["run_id"]
