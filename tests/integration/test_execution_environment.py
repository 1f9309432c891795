"""execution-environment.yml as ansible-builder reads it: the build context it creates (docs/packaging.md).

No container is built here (no podman or docker); instead the context is checked for everything the
Containerfile copies from it, and the context's galaxy step (the `ansible-galaxy collection install` the
image's galaxy stage runs) is run for real into a temp collections path. The wheel the EE installs is built
from a copy of the project's files first, as the CI job does (tests/integration/project_files.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import remediator
from tests.integration.project_files import REPO, have_git_checkout, project_copy

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
VERSION = remediator.__version__


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k != "PYTHONDONTWRITEBYTECODE"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (BIN / "ansible-builder").exists():
        pytest.skip("ansible-builder is in the dev extras: pip install -e '.[dev]'")
    if not have_git_checkout():
        pytest.skip("needs the git checkout (the build copies the files git knows)")
    base = tmp_path_factory.mktemp("ee")
    src = base / "src"
    project_copy(src)
    done = run([sys.executable, "-m", "build", "--wheel", "--outdir", str(src / "dist"), str(src)], cwd=base)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    ctx = base / "context"
    done = run([str(BIN / "ansible-builder"), "create", "--file", "execution-environment.yml", "--context", str(ctx),
                "--output-filename", "Containerfile", "-v", "2"], cwd=src)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    # ansible-builder only warns when an additional_build_files source matches nothing.
    assert "No matches" not in output and "does not exist" not in output, output[-4000:]
    return ctx


def test_the_containerfile_starts_from_the_base_image_and_installs_the_collection_and_wheel(context: Path) -> None:
    ee = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    assert ee["version"] == 3
    text = (context / "Containerfile").read_text()
    assert f'ARG EE_BASE_IMAGE="{ee["images"]["base_image"]["name"]}"' in text
    assert "ansible-galaxy collection install" in text and "-r requirements.yml" in text
    assert "--no-deps /tmp/remediator-wheels/remediator-" in text


def test_every_file_the_containerfile_copies_from_the_context_is_there(context: Path) -> None:
    sources = []
    for line in (context / "Containerfile").read_text().splitlines():
        words = shlex.split(line)
        if words[:1] == ["COPY"] and not any(w.startswith("--from=") for w in words):
            sources.extend(words[1:-1])
    assert "_build/wheels/" in sources
    missing = [s for s in sources if not (context / s).exists()]
    assert not missing, missing


def test_the_context_holds_the_requirements_the_collection_and_the_wheel(context: Path) -> None:
    build = context / "_build"
    assert (build / "requirements.txt").read_text() == (REPO / "ee" / "requirements.txt").read_text()
    assert (build / "bindep.txt").read_text() == (REPO / "ee" / "bindep.txt").read_text()
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())
    assert galaxy == {"collections": [{"name": "collections/remediator.gpu", "type": "dir"}]}
    collection = build / "collections" / "remediator.gpu"
    assert yaml.safe_load((collection / "galaxy.yml").read_text())["version"] == VERSION
    for rel in ("playbooks/remediate.yml", "plugins/modules/remediator_quarantine.py",
                "plugins/module_utils/gpu_probe.py", "roles/gpu_check/files/gpu_check.py"):  # fmt: skip
        assert (collection / rel).is_file(), rel
    assert [p.name for p in (build / "wheels").iterdir()] == [f"remediator-{VERSION}-py3-none-any.whl"]


def test_the_galaxy_stage_installs_the_collection(context: Path, tmp_path: Path) -> None:
    # The galaxy stage's command, run where the stage runs it (WORKDIR /build holds _build's files).
    build = context / "_build"
    (build / "collections" / "remediator.gpu" / "plugins" / "__pycache__").mkdir(exist_ok=True)
    (build / "collections" / "remediator.gpu" / "plugins" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    done = run([str(BIN / "ansible-galaxy"), "collection", "install", "-r", "requirements.yml", "--collections-path",
                str(tmp_path)], cwd=build)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    installed = tmp_path / "ansible_collections" / "remediator" / "gpu"
    info = json.loads((installed / "MANIFEST.json").read_text())["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == ("remediator", "gpu", VERSION)
    assert (installed / "playbooks" / "verify.yml").is_file()
    assert not list(installed.rglob("__pycache__")), "galaxy.yml's build_ignore must keep bytecode out"


def test_the_ee_python_requirements_are_the_package_dependencies() -> None:
    """The wheel goes in with --no-deps: ee/requirements.txt must carry everything it needs."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+")
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = (REPO / "ee" / "requirements.txt").read_text().splitlines()
    listed = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert sorted(listed) == sorted(declared)


def test_a_definition_ansible_builder_rejects_fails_the_create(tmp_path: Path) -> None:
    if not (BIN / "ansible-builder").exists():
        pytest.skip("ansible-builder is in the dev extras")
    bad = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    bad["dependencies"]["pyhton"] = bad["dependencies"].pop("python")  # a typo the schema must catch
    (tmp_path / "execution-environment.yml").write_text(yaml.safe_dump(bad))
    done = run([str(BIN / "ansible-builder"), "create", "--file", "execution-environment.yml", "--context",
                str(tmp_path / "ctx")], cwd=tmp_path)  # fmt: skip
    assert done.returncode != 0
    assert re.search(r"pyhton", done.stdout + done.stderr)
