"""A Python the host's distro does not ship, from a local mirror through uv, on a lab host of its own.

The host is remediator/lab/scenarios/python-unsupported.yaml: TensorFlow 2.10 wanted (Python 3.7-3.10), the
host's only Python 3.11. Lab hosts are Debian 12 (their /etc/os-release is the outer machine's), whose
archive ships python3.11 only (matrix/data/distro_pythons.yaml), so:

- without a mirror the plan blocks the host, naming the Python, the release and how to unblock;
- with remediator_python_mirror (inventory) or --python-mirror, it plans install_python, and apply, for real,
  copies the control node's uv onto the host, which installs the mirror's CPython 3.9.2 (a relocatable build
  of Debian 11's python3.9, remediator/lab/python_mirror.py) beside the venv and makes the venv with it;
  the venv's python runs and says 3.9.2. TensorFlow 2.10's wheels are what the lab does not provide offline:
  the apply says so for that action, precisely;
- rollback puts every file of the host back as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator.cli import main
from remediator.lab import python_mirror
from remediator.lab.fleet import default_scenario_dir
from tests.integration.test_apply_lab import ApplyLab, apply_cli, own_lab, rollback_cli

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.path.exists("/proc/driver/nvidia/version"), reason="this machine has an NVIDIA driver"),
]

HOST = "python-unsupported-001"
VENV = "/opt/remediator/venvs/tensorflow-2.10.0"
HOME = VENV + "-python"


@pytest.fixture(scope="module")
def pylab(labkit: Any, tmp_path_factory: pytest.TempPathFactory, mirror: python_mirror.PythonMirror
          ) -> Iterator[ApplyLab]:
    scenario = default_scenario_dir() / "python-unsupported.yaml"
    with own_lab(labkit, tmp_path_factory, scenario, 1, "pymirror") as lab:
        yield lab


def plan(lab: ApplyLab, inventory: Path, *extra: str) -> tuple[int, dict[str, Any], Path]:
    out = lab.work / f"plan-{len(list(lab.work.glob('plan-*')))}.json"
    status = main(["plan", "-i", str(inventory), "--limit", HOST, "--out", str(out), "--format", "json", *extra])
    return status, json.loads(out.read_text()), out


def with_mirror_var(lab: ApplyLab, url: str | None) -> Path:
    """The lab's inventory with the host's remediator_python_mirror set to `url` (None: not set)."""
    doc = yaml.safe_load(lab.inventory.read_text())
    host = doc["all"]["children"]["lab"]["hosts"][HOST]
    host.pop("remediator_python_mirror", None)
    if url is not None:
        host["remediator_python_mirror"] = url
    path = lab.work / f"inventory-{'mirror' if url else 'none'}.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_without_a_mirror_the_host_is_blocked_with_the_reason(pylab: ApplyLab) -> None:
    status, doc, _ = plan(pylab, with_mirror_var(pylab, None))
    (host,) = doc["hosts"]
    assert status == 2 and host["status"] == "blocked", host
    for part in ("needs Python 3.7-3.10", "Debian 12 (bookworm)", "Python 3.11 only", "remediator_python_mirror"):
        assert part in host["error"], host["error"]
    assert not [a for a in host["actions"] if a["kind"] in ("install_package", "install_python", "create_venv")]


def test_the_mirror_s_cpython_is_installed_by_uv_and_the_venv_runs_it(pylab: ApplyLab,
                                                                     mirror: python_mirror.PythonMirror) -> None:
    # The inventory var and the option plan the same actions.
    status, by_var, plan_path = plan(pylab, with_mirror_var(pylab, mirror.url))
    _, by_option, _ = plan(pylab, with_mirror_var(pylab, None), "--python-mirror", mirror.url)
    (host,) = by_var["hosts"]
    assert status == 2 and host["status"] == "changes", host
    assert host["actions"] == by_option["hosts"][0]["actions"]
    kinds = [a["kind"] for a in host["actions"]]
    assert kinds[kinds.index("install_python"):] == ["install_python", "create_venv", "pip_install", "pin_loader_path"]
    install = host["actions"][kinds.index("install_python")]
    assert install["params"] == {"version": ">=3.7,<3.11", "home": HOME, "mirror": mirror.url}
    before = pylab.tree(HOST)

    # Applied for real, offline (no package index): TensorFlow 2.10's wheels are what the lab cannot provide,
    # and the run stops there and says so.
    status, result = apply_cli(pylab, plan_path, "--pip-arg=--no-index", "--pip-arg=--offline", "--no-verify")
    (h,) = result["hosts"]
    assert h["status"] == "failed", h
    assert h["error"].startswith(f"pip_install: tensorflow==2.10.0 could not be installed into {VENV}: "), h
    assert "tensorflow was not found in the provided package locations" in h["error"], h

    # uv installed the mirror's CPython beside the venv (checked against the mirror's sha256 by uv itself)...
    link = pylab.in_host(HOST, ["readlink", "-f", f"{HOME}/bin/python3"]).strip()
    assert link.startswith(f"{HOME}/installs/cpython-3.9.2-linux-x86_64-gnu/"), link
    # The host's uv is the control node's (read here: a lab host does not see a checkout under /tmp).
    control_uv = hashlib.sha256((Path(sys.executable).parent / "uv").read_bytes()).hexdigest()
    assert pylab.in_host(HOST, ["sha256sum", f"{HOME}/uv"]).split()[0] == control_uv
    # ...and the venv runs it: a real interpreter with its own ssl and ctypes, nothing set in the environment.
    out = pylab.in_host(HOST, ["env", "-i", f"{VENV}/bin/python", "-c",
                               "import ctypes, ssl, sys; print(sys.version.split()[0], sys.prefix, "
                               "ssl.OPENSSL_VERSION.split()[1])"]).split()
    assert out == ["3.9.2", VENV, "1.1.1w"], out
    cfg = pylab.in_host(HOST, ["cat", f"{VENV}/pyvenv.cfg"])
    assert f"home = {HOME}/installs/cpython-3.9.2-linux-x86_64-gnu/bin" in cfg or "3.9.2" in cfg, cfg
    manifest = pylab.manifest(HOST, result["run_id"])
    made = {c["path"] for c in manifest["changes"] if c["kind"] == "venv" and c.get("before") is None}
    assert {HOME, VENV} <= made, manifest["changes"]

    # Rolled back: the venv and the Python home moved aside, every file of the host as before.
    status_undo, undone = rollback_cli(pylab, result["run_id"])
    assert status_undo == 0 and [u["status"] for u in undone["hosts"]] == ["rolled_back"], undone
    assert pylab.tree(HOST) == before
