"""The built wheel and sdist, installed as a new user would: no path into the source tree (docs/packaging.md).

`python -m build` runs on a copy of the project's files as git sees them (tests/integration/project_files.py:
a checkout's build/, .venv, egg-info or bytecode never leak in) and builds the wheel from the sdist, so both
must be complete. The wheel then goes into a fresh venv in a temp dir outside the repository (its
dependencies from the index, as pip finds them), and that venv's own `remediate` runs with its cwd outside
the repository: `--help` from / (what `pipx install` gives), then `lab up` of scenarios the wheel ships,
`plan` and `apply --check` with the playbooks the wheel ships, and `lab down`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import remediator
from tests.integration.project_files import have_git_checkout, project_copy, project_files

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
VERSION = remediator.__version__
COLLECTION = "remediator/ansible_collections/remediator/gpu"
# What a wheel must hold for `remediate` to work without the source tree, relative to site-packages.
REQUIRED = (
    f"{COLLECTION}/galaxy.yml",
    f"{COLLECTION}/meta/runtime.yml",
    f"{COLLECTION}/playbooks/ansible.cfg",
    f"{COLLECTION}/playbooks/remediate.yml",
    f"{COLLECTION}/playbooks/rollback.yml",
    f"{COLLECTION}/playbooks/verify.yml",
    f"{COLLECTION}/roles/quarantine/tasks/main.yml",
    f"{COLLECTION}/roles/python_venv/tasks/main.yml",
    f"{COLLECTION}/roles/gpu_check/files/gpu_check.py",
    f"{COLLECTION}/plugins/modules/remediator_quarantine.py",
    f"{COLLECTION}/plugins/modules/remediator_lock.py",
    f"{COLLECTION}/plugins/module_utils/remediator_common.py",
    f"{COLLECTION}/plugins/module_utils/gpu_probe.py",
    "remediator/lab/scenarios/healthy-pytorch.yaml",
    "remediator/lab/files/nvidia_smi.py",
    "remediator/matrix/data/gpus.yaml",
    "remediator/py.typed",
)
# Scenarios for the installed venv's lab: a healthy host, two that need changes which check mode can run
# through (nothing from apt), and one that is blocked on its driver.
SCENARIOS = ("healthy-pytorch", "lib-shadowed-pip", "framework-cpu-only", "driver-too-old")
# A line of the build's output that would mean a deprecation (SetuptoolsDeprecationWarning, "`project.license`
# as a TOML table is deprecated", ...) or any other warning.
WARNING_LINE = re.compile(r"deprecat|warning", re.IGNORECASE)


def clean_env(home: Path, bin_dir: Path | None = None) -> dict[str, str]:
    """The environment of a user's shell: nothing pointing at this checkout or its venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE", "PYTHONHOME")
           and not k.startswith(("REMEDIATE_", "ANSIBLE_", "PYTEST_"))}  # fmt: skip
    ours = os.path.dirname(sys.executable)
    path = [p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p and p != ours]
    env["PATH"] = os.pathsep.join(([str(bin_dir)] if bin_dir else []) + path)
    env["HOME"] = str(home)
    return env


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path
    output: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    pytest.importorskip("build", reason="`build` is in the dev extras: pip install -e '.[dev]'")
    if not have_git_checkout():
        pytest.skip("needs the git checkout (the build copies the files git knows)")
    base = tmp_path_factory.mktemp("build")
    src, dist = base / "src", base / "dist"
    project_copy(src)
    # Bytecode as a test run of the collection's modules leaves it: pyproject's exclude-package-data must keep
    # it out of both archives (package-data takes ansible_collections/**/*).
    pycache = src / COLLECTION / "plugins" / "modules" / "__pycache__"
    pycache.mkdir()
    (pycache / "remediator_lock.cpython-311.pyc").write_bytes(b"\0")
    # Without PYTHONDONTWRITEBYTECODE, which makes setuptools warn "byte-compiling is disabled".
    env = clean_env(base)
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(src)], cwd=base, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return Built(dist / f"remediator-{VERSION}-py3-none-any.whl", dist / f"remediator-{VERSION}.tar.gz", output)


def test_the_build_prints_no_deprecation_or_warning(built: Built) -> None:
    assert "Successfully built" in built.output
    warnings = [line for line in built.output.splitlines() if WARNING_LINE.search(line)]
    assert not warnings, "\n".join(warnings)


def test_the_wheel_holds_the_collection_scenarios_and_license(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as z:
        names = set(z.namelist())
        metadata = z.read(f"remediator-{VERSION}.dist-info/METADATA").decode()
    missing = [n for n in REQUIRED if n not in names]
    assert not missing, missing
    # Every file of the package, code or data, so a new data file or a subpackage without __init__.py that
    # pyproject's package-data or package finder misses fails here rather than for a user.
    left_out = sorted(set(project_files("remediator")) - names)
    assert not left_out, left_out
    assert f"remediator-{VERSION}.dist-info/licenses/LICENSE" in names
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert "License-File: LICENSE" in metadata.splitlines()
    junk = [n for n in names
            if "__pycache__" in n or n.endswith((".pyc", ".pyo")) or n.startswith(("tests/", "build/"))]
    assert not junk, junk


def test_the_sdist_holds_the_same_data_and_no_junk(built: Built) -> None:
    top = f"remediator-{VERSION}/"
    with tarfile.open(built.sdist) as t:
        names = {n.removeprefix(top) for n in t.getnames()}
        pkg_info = t.extractfile(f"{top}PKG-INFO")
        assert pkg_info is not None
        meta = pkg_info.read().decode()
    missing = [n for n in (*REQUIRED, "LICENSE", "pyproject.toml", "README.md") if n not in names]
    assert not missing, missing
    left_out = sorted(set(project_files("remediator")) - names)
    assert not left_out, left_out
    assert "License-Expression: Apache-2.0" in meta.splitlines()
    junk = [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo")) or n.startswith((".venv", ".git/"))]
    assert not junk, junk


@dataclass(frozen=True)
class Installed:
    venv: Path
    site: Path  # the fresh venv's site-packages
    home: Path  # HOME for its commands: a user's state lands here, not in ours
    work: Path  # cwd for its commands, outside the repository

    def env(self) -> dict[str, str]:
        return clean_env(self.home, self.venv / "bin")

    def remediate(self, *argv: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.venv / "bin" / "remediate"), *argv], cwd=cwd or self.work, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("fresh")
    assert not base.resolve().is_relative_to(REPO), f"{base} must be outside the repository"
    venv, home, work = base / "venv", base / "home", base / "work"
    home.mkdir()
    work.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(built.wheel)],
                          cwd=work, env=clean_env(home), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = subprocess.run([str(venv / "bin" / "python"), "-c", purelib], capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()  # fmt: skip
    return Installed(venv, Path(site), home, work)


def test_help_works_from_the_root_dir_as_after_pipx_install(installed: Installed) -> None:
    done = installed.remediate("--help", cwd=Path("/"))
    assert done.returncode == 0, done.stderr
    assert "remediate lab up" in done.stdout and "Commands:" in done.stdout
    version = installed.remediate("--version", cwd=Path("/"))
    assert version.returncode == 0 and VERSION in version.stdout


# Run by the fresh venv's Python: where the package finds each thing it ships.
WHERE = """
import json, remediator
from remediator import apply, probe, verify
from remediator.lab import fleet
print(json.dumps({
    "package": remediator.__file__,
    "collection": str(apply.collection_dir()),
    "playbooks": str(apply.default_playbooks_dir({})),
    "scenarios": str(fleet.default_scenario_dir()),
    "probe_script": len(probe.remote_script_source()),
    "check_script": len(verify.remote_script_source()),
}))
"""


def test_everything_is_found_inside_the_installed_package(installed: Installed) -> None:
    done = subprocess.run([str(installed.venv / "bin" / "python"), "-c", WHERE], cwd="/", env=installed.env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    where = json.loads(done.stdout)
    for key in ("package", "collection", "playbooks", "scenarios"):
        path = Path(where[key])
        assert path.is_relative_to(installed.site), (key, path)
        assert path.exists(), (key, path)
    assert (Path(where["playbooks"]) / "remediate.yml").is_file()
    assert where["probe_script"] > 1000 and where["check_script"] > 1000
    # The uv the python_venv role copies to hosts: beside the Python that runs ansible-playbook
    # (remediator_python_uv_local), a dependency of the package.
    assert (installed.venv / "bin" / "uv").is_file()


@pytest.fixture(scope="module")
def lab_up(installed: Installed, labkit: Any) -> Iterator[tuple[Path, dict[str, Any]]]:
    why = labkit.unavailable()
    if why:
        pytest.skip(why)
    state = installed.work / "lab"
    scenario_dir = installed.site / "remediator" / "lab" / "scenarios"
    files = [str(scenario_dir / f"{name}.yaml") for name in SCENARIOS]
    try:
        done = installed.remediate("lab", "up", *files, "--state", str(state), "--format", "json")
        assert done.returncode == 0, done.stderr[-4000:]
        yield state, json.loads(done.stdout)
    finally:
        down = installed.remediate("lab", "down", "--state", str(state))
        assert down.returncode == 0, down.stderr[-2000:]


def test_lab_plan_and_apply_check_from_the_installed_wheel(installed: Installed,
                                                           lab_up: tuple[Path, dict[str, Any]]) -> None:
    state, up = lab_up
    assert sorted(h["name"] for h in up["hosts"]) == sorted(SCENARIOS)
    inventory = up["inventory"]
    assert Path(inventory).is_relative_to(state)

    plan_path = installed.work / "plan.json"
    plan = installed.remediate("plan", "-i", inventory, "--out", str(plan_path), "--format", "json")
    assert plan.returncode == 2, plan.stderr[-4000:]  # changes planned, a host blocked
    planned = {h["host"]: h for h in json.loads(plan_path.read_text())["hosts"]}
    assert planned["healthy-pytorch"]["status"] == "compliant"
    assert planned["driver-too-old"]["status"] == "blocked"
    for name in ("lib-shadowed-pip", "framework-cpu-only"):
        assert planned[name]["status"] == "changes", planned[name]
        assert planned[name]["actions"], planned[name]

    runs, result = installed.work / "runs", installed.work / "result.json"
    apply = installed.remediate("apply", str(plan_path), "--check", "--yes", "-i", inventory,
                                "--max-fail-percent", "100", "--state-dir", str(runs),
                                "--state-db", str(installed.work / "state.db"), "--result", str(result),
                                timeout=600)  # fmt: skip
    # 2: some hosts checked, the others skipped (one compliant, one blocked).
    assert apply.returncode == 2, (apply.stdout + apply.stderr)[-4000:]
    doc = json.loads(result.read_text())
    assert doc["check"] is True
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert {n: hosts[n]["status"] for n in SCENARIOS} == {
        "healthy-pytorch": "skipped", "lib-shadowed-pip": "check", "framework-cpu-only": "check",
        "driver-too-old": "skipped"}  # fmt: skip

    # ansible-runner ran the wheel's playbooks: its `command` artifact records the project dir it ran in, and
    # every task event the file the task came from (the playbook's, then each role's tasks by FQCN).
    artifacts = [p.parent for p in runs.rglob("command") if p.parent.parent.name == "artifacts"]
    assert artifacts, f"no ansible-runner artifacts under {runs}"
    collection = installed.site / COLLECTION
    task_files: set[str] = set()
    for a in artifacts:
        command = json.loads((a / "command").read_text())
        assert Path(command["cwd"]) == collection / "playbooks", command["cwd"]
        assert not any(str(REPO) in part for part in command["command"]), command["command"]
        for event in a.glob("job_events/*.json"):
            data = json.loads(event.read_text()).get("event_data", {})
            if "task_path" in data:
                task_files.add(data["task_path"].rsplit(":", 1)[0])
    assert str(collection / "playbooks" / "remediate.yml") in task_files
    assert str(collection / "roles" / "quarantine" / "tasks" / "main.yml") in task_files
    outside = sorted(f for f in task_files if not Path(f).is_relative_to(collection))
    assert not outside, outside
    assert str(REPO) not in (apply.stdout + apply.stderr + result.read_text() + plan_path.read_text())
