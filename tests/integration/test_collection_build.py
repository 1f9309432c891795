"""The remediator.gpu collection as Ansible's own tools build and install it (docs/packaging.md).

`ansible-galaxy collection build` of a copy of the collection's files as git sees them (a checkout's
bytecode or other ignored files never leak in; tests/integration/project_files.py), then `ansible-galaxy
collection install` of the tarball into a temp collections path, and Ansible finding everything by its
FQCN there: the playbooks pass `--syntax-check` (which resolves every role and module they name) and
`ansible-doc` reads a module's documentation. Everything runs with its cwd outside the repository and no
ansible.cfg of ours, so only the installed copy can be found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

import remediator
from tests.integration.project_files import have_git_checkout, project_copy, project_files

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SOURCE = "remediator/ansible_collections/remediator/gpu"
BIN = Path(sys.executable).parent  # this venv's ansible-galaxy, ansible-playbook, ansible-doc
PLAYBOOKS = ("remediate", "rollback", "verify")


def ansible(tool: str, *argv: str, cwd: Path, collections: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_NOCOLOR"] = "1"
    if collections is not None:
        env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
    return subprocess.run([str(BIN / tool), *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not have_git_checkout():
        pytest.skip("needs the git checkout (the build copies the files git knows)")
    base = tmp_path_factory.mktemp("collection")
    src = base / "src"
    project_copy(src, SOURCE)
    # Bytecode as a test run of the modules leaves it: build_ignore must keep it out.
    (src / "plugins" / "modules" / "__pycache__").mkdir()
    (src / "plugins" / "modules" / "__pycache__" / "remediator_lock.cpython-311.pyc").write_bytes(b"\0")
    out = base / "dist"
    done = ansible("ansible-galaxy", "collection", "build", str(src), "--output-path", str(out), cwd=base)
    assert done.returncode == 0, done.stdout + done.stderr
    return out / f"remediator-gpu-{remediator.__version__}.tar.gz"


def test_galaxy_yml_version_is_the_package_version() -> None:
    galaxy = yaml.safe_load((REPO / SOURCE / "galaxy.yml").read_text())
    assert (galaxy["namespace"], galaxy["name"]) == ("remediator", "gpu")
    assert galaxy["version"] == remediator.__version__
    assert galaxy["license"] == ["Apache-2.0"]


def test_the_collection_asks_for_the_ansible_core_the_package_depends_on() -> None:
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+")
    deps = [Requirement(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]
    core = next(d for d in deps if d.name == "ansible-core")
    runtime = yaml.safe_load((REPO / SOURCE / "meta" / "runtime.yml").read_text())
    floors = [(s.operator, Version(s.version)) for s in (*core.specifier, *SpecifierSet(runtime["requires_ansible"]))]
    assert len(floors) == 2 and floors[0] == floors[1] and floors[0][0] == ">=", floors  # 2.15 == 2.15.0


def test_the_tarball_holds_playbooks_roles_and_plugins_and_no_bytecode(tarball: Path) -> None:
    with tarfile.open(tarball) as t:
        names = set(t.getnames())
        manifest_file = t.extractfile("MANIFEST.json")
        assert manifest_file is not None
        manifest = json.load(manifest_file)
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == ("remediator", "gpu", remediator.__version__)
    expected = {
        "MANIFEST.json", "FILES.json", "README.md", "meta/runtime.yml",
        *(f"playbooks/{p}.yml" for p in PLAYBOOKS),
        "roles/quarantine/tasks/main.yml", "roles/gpu_check/files/gpu_check.py", "roles/python_venv/tasks/main.yml",
        "plugins/modules/remediator_quarantine.py", "plugins/modules/remediator_restore.py",
        "plugins/module_utils/remediator_common.py", "plugins/module_utils/gpu_probe.py",
    }  # fmt: skip
    assert expected <= names, sorted(expected - names)
    # Every file of the collection is in it (galaxy.yml becomes MANIFEST.json).
    rel = {str(Path(p).relative_to(SOURCE)) for p in project_files(SOURCE)} - {"galaxy.yml"}
    assert rel <= names, sorted(rel - names)
    junk = [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".tar.gz"))]
    assert not junk, junk


@pytest.fixture(scope="module")
def installed(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("installed")
    cols = base / "collections"
    done = ansible("ansible-galaxy", "collection", "install", str(tarball), "-p", str(cols), cwd=base)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (cols / "ansible_collections" / "remediator" / "gpu" / "MANIFEST.json").is_file()
    return cols


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_each_playbook_by_fqcn_passes_syntax_check_from_the_installed_collection(installed: Path,
                                                                                  playbook: str) -> None:
    work = installed.parent
    inventory = work / "hosts.ini"
    inventory.write_text("gpu1 ansible_connection=local\n")
    done = ansible("ansible-playbook", f"remediator.gpu.{playbook}", "--syntax-check", "-i", str(inventory),
                   cwd=work, collections=installed)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    where = installed / "ansible_collections" / "remediator" / "gpu" / "playbooks" / f"{playbook}.yml"
    assert f"playbook: {where}" in done.stdout


def test_a_playbook_not_in_the_collection_is_an_error(installed: Path) -> None:
    done = ansible("ansible-playbook", "remediator.gpu.no_such_playbook", "--syntax-check", cwd=installed.parent,
                   collections=installed)  # fmt: skip
    assert done.returncode != 0


def test_ansible_doc_reads_a_module_of_the_installed_collection(installed: Path) -> None:
    done = ansible("ansible-doc", "-t", "module", "--json", "remediator.gpu.remediator_quarantine",
                   cwd=installed.parent, collections=installed)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)["remediator.gpu.remediator_quarantine"]
    assert doc["doc"]["module"] == "remediator_quarantine"
    assert doc["doc"]["filename"].startswith(str(installed))
    assert "paths" in doc["doc"]["options"]
