"""`molecule test` of molecule/default: lab hosts created with `remediate lab up`, planned, converged with
playbooks/remediate.yml, checked for idempotence and verified by the scenario's verify.yml."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"


def test_molecule_default_scenario(tmp_path: Path) -> None:
    molecule = BIN / "molecule"
    if not molecule.exists():
        pytest.skip("molecule is not installed (pip install -e '.[dev]')")
    if os.geteuid() != 0 or not shutil.which("unshare") or not os.access("/usr/sbin/sshd", os.X_OK):
        pytest.skip("the lab needs root, unshare and /usr/sbin/sshd")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "NO_COLOR": "1", "ANSIBLE_NOCOLOR": "1",
           # A private molecule cache: its ephemeral dir holds the lab's state (keys, inventory, plan).
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = subprocess.run([str(molecule), "test", "--scenario-name", "default"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-6000:]
    for step in ("create", "converge", "idempotence", "verify", "destroy"):
        assert f"{step}: Executed: Successful" in text, f"{step} did not run: {text[-3000:]}"
