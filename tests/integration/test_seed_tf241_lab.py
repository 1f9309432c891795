"""The seed's case end to end (issue #12, item 3) on a lab host of its own.

remediator/lab/scenarios/tf241-cuda112-cudnn81-copied.yaml: TensorFlow 2.4.1 wanted (CUDA 11.0 only, cuDNN 8,
Python 3.6-3.8, driver >= 450.51.05) on a host whose default toolkit is CUDA 11.2 with cuDNN 8.1 copied into
it, CUDA 10.1 still on LD_LIBRARY_PATH (profile.d), driver 455, the host's Python 3.11 (Debian 12).

- Without a Python mirror the host is blocked: no Python 3.6-3.8 on it or in Debian 12's archive.
- With the lab's mirror the plan quarantines what conflicts (both toolkits, the copied cuDNN going with 11.2,
  the profile.d entry), installs CUDA 11.0 and cuDNN 8.0 from packages, a CPython 3.6-3.8 from the mirror
  into an isolated venv for tensorflow==2.4.1, and pins the venv's loader path to 11.0 alone.
- Applied for real: the quarantine happens (every file moved whole, checked against its sha256); then the
  lab cannot provide NVIDIA's CUDA 11.0 packages (no NVIDIA repository here), and the result says, per
  action, what was done, what failed and why, and what was never attempted, in result.json and on the
  command line (the cp38 TensorFlow 2.4.1 wheel and a CPython 3.6-3.8 are beyond the lab too: the mirror
  serves 3.9.2 only, and those actions come after the packages).
- Rolled back: every file of the host as before, byte for byte.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator.cli import main
from remediator.lab import python_mirror
from remediator.lab.fleet import default_scenario_dir
from tests.integration.test_apply_lab import PLAYBOOKS, ApplyLab, own_lab, rollback_cli

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.path.exists("/proc/driver/nvidia/version"), reason="this machine has an NVIDIA driver"),
]

HOST = "tf241-cuda112-cudnn81-copied-001"
VENV = "/opt/remediator/venvs/tensorflow-2.4.1"
MOVED = {"/usr/local/cuda-11.2", "/usr/local/cuda-10.1", "/etc/profile.d/cuda.sh"}
NO_PACKAGE = "No package matching 'cuda-toolkit-11-0' is available"


@pytest.fixture(scope="module")
def seedlab(labkit: Any, tmp_path_factory: pytest.TempPathFactory, mirror: python_mirror.PythonMirror
            ) -> Iterator[ApplyLab]:
    scenario = default_scenario_dir() / "tf241-cuda112-cudnn81-copied.yaml"
    with own_lab(labkit, tmp_path_factory, scenario, 1, "seed") as lab:
        yield lab


def plan(lab: ApplyLab, inventory: Path, name: str) -> dict[str, Any]:
    out = lab.work / f"{name}.plan.json"
    assert main(["plan", "-i", str(inventory), "--out", str(out), "--format", "json"]) == 2
    (host,) = json.loads(out.read_text())["hosts"]
    return host  # type: ignore[no-any-return]


def without_mirror(lab: ApplyLab) -> Path:
    doc = yaml.safe_load(lab.inventory.read_text())
    doc["all"]["children"]["lab"]["hosts"][HOST].pop("remediator_python_mirror")
    path = lab.work / "inventory-no-mirror.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_without_a_python_mirror_the_seed_host_is_blocked_with_the_reason(seedlab: ApplyLab) -> None:
    host = plan(seedlab, without_mirror(seedlab), "blocked")
    assert host["status"] == "blocked"
    for part in ("needs Python 3.6-3.8", "Debian 12 (bookworm)", "remediator_python_mirror"):
        assert part in host["error"], host["error"]


def test_the_seed_case_planned_applied_as_far_as_the_lab_goes_and_rolled_back(
        seedlab: ApplyLab, mirror: python_mirror.PythonMirror) -> None:
    host = plan(seedlab, seedlab.inventory, "seed")
    assert host["status"] == "changes" and [f["code"] for f in host["findings"] if f["severity"] == "error"] == [
        "CUDA_MISSING"]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for a in host["actions"]:
        by_kind.setdefault(a["kind"], []).append(a["params"])
    assert {p["path"] for p in by_kind["quarantine_path"]} == MOVED
    assert [(p["name"], p["version"]) for p in by_kind["install_package"]] == [
        ("cuda-toolkit-11-0", None), ("libcudnn8", "8.0.*+cuda11.0")]
    assert by_kind["set_cuda_link"] == [{"link": "/usr/local/cuda", "target": "/usr/local/cuda-11.0",
                                         "previous": "/usr/local/cuda-11.2", "via_alternatives": False}]
    assert by_kind["install_python"] == [{"version": ">=3.6,<3.9", "home": VENV + "-python", "mirror": mirror.url}]
    assert by_kind["create_venv"][0]["path"] == VENV
    assert by_kind["pip_install"][0]["requirements"] == ["tensorflow==2.4.1"]
    assert by_kind["pin_loader_path"] == [{"venv": VENV, "ld_library_path": ["/usr/local/cuda-11.0/lib64"]}]
    before = seedlab.tree(HOST)
    copied = sorted(p for p in before if p.startswith("/usr/local/cuda-11.2/targets/x86_64-linux/lib/libcudnn"))
    assert copied, "the scenario's cuDNN copy is not in the toolkit"

    # Applied for real, with the CLI's own output.
    result_path = seedlab.work / "seed.result.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["apply", str(seedlab.work / "seed.plan.json"), "-i", str(seedlab.inventory), "--playbooks",
                       str(PLAYBOOKS), "--state-dir", str(seedlab.work / "runs"), "--state-db",
                       str(seedlab.work / "state.db"), "--yes", "--no-verify", "--result", str(result_path)])
    result = json.loads(result_path.read_text())
    (h,) = result["hosts"]
    assert status == 1 and h["status"] == "failed" and h["error"] == NO_PACKAGE, h
    outcomes = {(a["what"], a["outcome"]) for a in h["actions"]}
    assert {(f"quarantine_path {p}", "done") for p in MOVED} <= outcomes
    assert ("install_package cuda-toolkit-11-0", "failed") in outcomes
    failed = next(a for a in h["actions"] if a["outcome"] == "failed")
    assert failed["why"] == NO_PACKAGE
    stopped = "not attempted: the run stopped on this host when install_package cuda-toolkit-11-0 failed"
    later = [a for a in h["actions"] if a["kind"] in ("set_cuda_link", "install_python", "create_venv",
                                                       "pip_install", "pin_loader_path")
             or a["what"].startswith("install_package libcudnn8")]
    assert len(later) == 6 and all((a["outcome"], a["why"]) == ("not_reached", stopped) for a in later), later
    text = out.getvalue()
    assert f"failed: install_package cuda-toolkit-11-0: {NO_PACKAGE}" in text, text
    assert f"not_reached: install_python CPython >=3.6,<3.9 from {mirror.url}: {stopped}" in text, text
    assert f"not_reached: pip_install tensorflow==2.4.1: {stopped}" in text, text

    # The quarantine is real: the toolkits (the copied cuDNN inside 11.2) and the loader config, moved whole.
    manifest = seedlab.manifest(HOST, result["run_id"])
    assert {i["original_path"] for i in manifest["items"]} == MOVED
    assert all(i["state"] == "moved" for i in manifest["items"]), manifest["items"]
    for i in manifest["items"]:
        if i["original_path"] == "/etc/profile.d/cuda.sh":
            stored = f"/var/lib/remediator/quarantine/{result['run_id']}/{i['stored_as']}"
            assert before[i["original_path"]].startswith("f:" + seedlab.in_host(HOST, ["sha256sum", stored]).split()[0])
    after_apply = seedlab.tree(HOST)
    assert not [p for p in after_apply if p.startswith(("/usr/local/cuda-11.2", "/usr/local/cuda-10.1"))]
    assert "/etc/profile.d/cuda.sh" not in after_apply and VENV not in after_apply

    # Rolled back: every file of the host as before.
    status_undo, undone = rollback_cli(seedlab, result["run_id"])
    assert status_undo == 0 and [u["status"] for u in undone["hosts"]] == ["rolled_back"], undone
    assert seedlab.tree(HOST) == before
