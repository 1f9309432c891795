"""Become for probe, plan and verify against real lab hosts (issue: the probe sees what root sees).

A lab of its own: `become-hidden-envs` (login user ubuntu with passwordless sudo; alice's 0750 home with a
venv whose TensorFlow has no CUDA libraries; a conda env under /root), `become-sudo-password` (group
sudopassword: sudo wants a password) and a healthy host. With the inventory's `ansible_become` the probe
runs through `sudo -n` and finds every env; without it the facts and the plan name the places it could not
read; the password host fails alone, saying how to fix it; verify runs as the env's owner.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator.cli import main
from remediator.lab import fleet, scenario

HIDDEN = "become-hidden-envs"
PASSWORD = "become-sudo-password"
HEALTHY = "healthy-tf-and-cuda"
ALICE = "/home/alice/venvs/tf216"
ROOT_CONDA = "/root/miniconda3/envs/tf"
UBUNTU = "/home/ubuntu/venvs/torch"


@pytest.fixture(scope="module")
def become_lab(labkit: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    why = labkit.unavailable()
    if why:
        pytest.skip(why)
    state = tmp_path_factory.mktemp("become-lab")
    try:
        up = fleet.up([labkit.scenario_dir / f"{n}.yaml" for n in (HIDDEN, PASSWORD, HEALTHY)], state)
        yield up.inventory
    finally:
        fleet.down(state)


def edited(inventory: Path, tmp_path: Path, **per_host: dict[str, Any]) -> str:
    """A copy of the lab's inventory with some host vars changed (None removes one)."""
    doc = yaml.safe_load(inventory.read_text())
    hosts = doc["all"]["children"]["lab"]["hosts"]
    for name, changes in per_host.items():
        for host in hosts if name == "all" else [name]:
            for key, value in changes.items():
                if value is None:
                    hosts[host].pop(key, None)
                else:
                    hosts[host][key] = value
    out = tmp_path / "inventory.yml"
    out.write_text(yaml.safe_dump(doc))
    return str(out)


def json_run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    rc = main([*argv, "--format", "json"])
    return rc, json.loads(capsys.readouterr().out)


def test_with_become_every_env_is_found_and_the_password_host_fails_alone(
        become_lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = json_run(capsys, "probe", "-i", str(become_lab))
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert rc == 1
    assert {n: h["status"] for n, h in hosts.items()} == {HIDDEN: "ok", HEALTHY: "ok", PASSWORD: "failed"}
    envs = {e["path"]: e for e in hosts[HIDDEN]["facts"]["envs"]}
    found = {p: (envs[p]["owner"], [(f["name"], f["version"]) for f in envs[p]["frameworks"]])
             for p in (ALICE, ROOT_CONDA, UBUNTU) if p in envs}
    assert found == {
        ALICE: ("alice", [("tensorflow", "2.16.1")]),
        ROOT_CONDA: ("root", [("tensorflow", "2.10.0")]),
        UBUNTU: ("ubuntu", [("torch", "2.0.1+cpu")]),
    }
    assert hosts[HIDDEN]["facts"]["unread"] == []
    # The password host: what sudo said, and what to do; never a prompt, never a hang.
    error, hint = hosts[PASSWORD]["error"], hosts[PASSWORD]["hint"]
    assert "sudo on the host wants a password to run as root (sudo: a password is required)" in error
    assert "NOPASSWD" in hint and "ansible_become: false" in hint

    # Diagnosis with become: the codes of the scenario (both TensorFlow envs miss their CUDA libraries).
    s = scenario.load(Path(__file__).resolve().parents[2] / "remediator" / "lab" / "scenarios" / f"{HIDDEN}.yaml")
    rc, plan = json_run(capsys, "plan", "-i", str(become_lab), "--limit", HIDDEN)
    host = plan["hosts"][0]
    assert {f["code"] for f in host["findings"] if f["severity"] == "error"} == set(s.expect)
    assert any(ALICE in f["message"] for f in host["findings"])
    assert "PLACE_UNREAD" not in {f["code"] for f in host["findings"]}


def test_without_become_the_unread_places_are_named_and_nothing_is_invented(
        become_lab: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    inv = edited(become_lab, tmp_path, all={"ansible_become": False})
    rc, doc = json_run(capsys, "probe", "-i", inv)
    hosts = {h["host"]: h for h in doc["hosts"]}
    # Without sudo even the password host is probed (as its login user).
    assert rc == 0 and {h["status"] for h in hosts.values()} == {"ok"}
    facts = hosts[HIDDEN]["facts"]
    assert {"/home/alice", "/root"} <= set(facts["unread"])
    paths = {e["path"] for e in facts["envs"]}
    assert UBUNTU in paths and not any(p.startswith(("/home/alice", "/root")) for p in paths)

    # The same through --no-become with the lab's own inventory (ansible_become: true there).
    rc, plan = json_run(capsys, "plan", "-i", str(become_lab), "--no-become", "--limit", HIDDEN)
    findings = plan["hosts"][0]["findings"]
    unread = {f["evidence"]["path"] for f in findings if f["code"] == "PLACE_UNREAD"}
    assert {"/home/alice", "/root"} <= unread
    assert all(f["severity"] == "warning" for f in findings if f["code"] == "PLACE_UNREAD")
    # No env there is invented: no finding or action names one.
    text = json.dumps([f for f in findings if f["code"] != "PLACE_UNREAD"] + plan["hosts"][0]["actions"])
    assert ALICE not in text and ROOT_CONDA not in text


def assert_passed_or_stand_in(host: dict[str, Any]) -> None:
    """Passed (every rung a no-device skip), or failed only at rung 3 because the lab's TensorFlow is a file
    layout that refuses to import: what verify's real TensorFlow check does on a GPU-less host."""
    if host["status"] == "passed":
        return
    failed = [r for r in host["verification"]["rungs"] if r["status"] == "fail"]
    assert host["status"] == "failed" and [r["name"] for r in failed] == ["runtime"], host
    assert "tensorflow" in failed[0]["summary"].lower(), failed[0]


@pytest.mark.parametrize(("python", "owner"), [
    (f"{ALICE}/bin/python", "alice"), (f"{ROOT_CONDA}/bin/python", "root"), (f"{UBUNTU}/bin/python", "ubuntu"),
])
def test_verify_runs_the_check_as_the_owner_of_the_env(
        become_lab: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, python: str, owner: str) -> None:
    inv = edited(become_lab, tmp_path, **{HIDDEN: {"remediate_python": python}})
    rc, doc = json_run(capsys, "verify", "-i", inv)
    hosts = {h["host"]: h for h in doc["hosts"]}
    # Lab frameworks are file layouts whose import fails on purpose: on this GPU-less host verify runs
    # TensorFlow's CPU check (docs/verify.md) and stops at rung 3 for it; torch's rungs are skips. The point
    # here is who ran the check.
    assert_passed_or_stand_in(hosts[HIDDEN])
    v = hosts[HIDDEN]["verification"]
    assert v["user"] == owner and v["report"]["python"]["user"] == owner
    assert_passed_or_stand_in(hosts[HEALTHY])
    assert hosts[HEALTHY]["verification"]["user"] == "root"
    assert hosts[PASSWORD]["status"] == "error" and "a password is required" in hosts[PASSWORD]["error"]
    assert rc == 1


def test_verify_without_a_target_checks_each_env_as_its_owner(
        become_lab: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    inv = edited(become_lab, tmp_path, **{HIDDEN: {"remediate_target": None}})
    rc, doc = json_run(capsys, "verify", "-i", inv, "--limit", HIDDEN)
    v = doc["hosts"][0]["verification"]
    # The host's ladder is that of the first inferred target; its note names the env it came from.
    first = v["notes"][0]
    assert first.startswith("no target given: tensorflow=="), first
    assert v["user"] == ("alice" if f"inferred from {ALICE}" in first else "root"), (first, v["user"])
    assert f"inferred from {ALICE}" in first or f"inferred from {ROOT_CONDA}" in first
    assert rc in (0, 2)  # 2: the lab's stand-in TensorFlow does not import (see above)
