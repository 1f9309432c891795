"""Where the venv's Python comes from: the host, the distro's archive (distro_pythons.yaml), a mirror, or nowhere."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest
from factories import cudnn_copy_in_toolkit, driver, host, ld_path, tf, toolkit, venv

from remediator.action_rules import check_actions, mirror_problem
from remediator.cli import main
from remediator.errors import MatrixError
from remediator.facts import OsRelease, PythonEnv
from remediator.matrix import load_matrix, parse_target
from remediator.plan import HostPlan, Plan, Policy, plan_host
from remediator.pythons import choose_python, load_distro_pythons

MATRIX = load_matrix()
TF241 = MATRIX.requirements_for(parse_target("tensorflow==2.4.1"))  # Python 3.6-3.8
VENV = "/opt/remediator/venvs/tensorflow-2.4.1"
MIRROR = "file:///srv/python-mirror"
BOOKWORM = OsRelease(id="debian", version_id="12", pretty_name="Debian GNU/Linux 12 (bookworm)")
PY311 = PythonEnv("/usr", "system", "/usr/bin/python3", "3.11.2")


def facts_on(os: OsRelease, *envs: PythonEnv) -> object:
    return host(os=os, driver=driver("460.32.03"), toolkits=(toolkit("11.0.221", default=True),), envs=envs)


def plan(os: OsRelease, mirror: str | None = None, *envs: PythonEnv) -> HostPlan:
    return plan_host(facts_on(os, *(envs or (PY311,))), parse_target("tensorflow==2.4.1"), MATRIX,  # type: ignore[arg-type]
                     Policy(python_mirror=mirror))


def kinds(result: HostPlan) -> list[str]:
    return [a.kind for a in result.actions]


# --- the data ---------------------------------------------------------------------------------------


def test_every_release_row_is_sourced_from_the_distro_or_its_vendor() -> None:
    data = load_distro_pythons()
    assert {(r.distro, r.release) for r in data.releases} >= {
        ("debian", "10"), ("debian", "11"), ("debian", "12"), ("debian", "13"), ("ubuntu", "18.04"),
        ("ubuntu", "20.04"), ("ubuntu", "22.04"), ("ubuntu", "24.04"), ("rhel", "8"), ("rhel", "9"),
        ("amzn", "2023")}
    vendors = ("https://packages.debian.org/", "https://packages.ubuntu.com/", "https://docs.redhat.com/",
               "https://access.redhat.com/", "https://docs.aws.amazon.com/")
    for r in data.releases:
        for p in r.pythons:
            assert p.source.startswith(vendors), (r.name, p)
            assert "deadsnakes" not in p.source and "launchpad.net/~" not in p.source
            if r.distro in ("debian", "ubuntu"):  # the archive's package page names the package itself
                assert p.source.endswith("/" + p.package) and p.extra == (f"{p.package}-venv",)


@pytest.mark.parametrize(("os_id", "version_id", "expected"), [
    ("debian", "12", ("debian", "12")), ("ubuntu", "22.04", ("ubuntu", "22.04")),
    ("rocky", "8.9", ("rhel", "8")), ("almalinux", "9.4", ("rhel", "9")), ("amzn", "2023", ("amzn", "2023")),
    ("ubuntu", "22.10", None), ("arch", "", None), ("amzn", "2", None),
])
def test_a_hosts_os_release_finds_its_row(os_id: str, version_id: str, expected: tuple[str, str] | None) -> None:
    found = load_distro_pythons().release_for(OsRelease(id=os_id, version_id=version_id))
    assert (None if found is None else (found.distro, found.release)) == expected


def test_a_row_without_a_source_is_refused(tmp_path: Path) -> None:
    (tmp_path / "distro_pythons.yaml").write_text(
        'matrix_version: "2026.12.08"\nreleases:\n  - {distro: debian, release: "12", name: Debian 12,\n'
        '     pythons: [{version: "3.11", package: python3.11}]}\n')
    with pytest.raises(MatrixError, match="source"):
        load_distro_pythons(str(tmp_path))


# --- the choice ---------------------------------------------------------------------------------------


def test_a_fitting_host_python_wins() -> None:
    py38 = PythonEnv("/usr", "system", "/usr/bin/python3.8", "3.8.10")
    choice = choose_python(facts_on(BOOKWORM, PY311, py38), TF241.python, VENV, MIRROR)  # type: ignore[arg-type]
    assert (choice.source, choice.interpreter) == ("host", "/usr/bin/python3.8")


@pytest.mark.parametrize(("os", "package", "extra"), [
    (OsRelease(id="ubuntu", version_id="20.04"), "python3.8", ("python3.8-venv",)),
    (OsRelease(id="ubuntu", version_id="18.04"), "python3.8", ("python3.8-venv",)),
    (OsRelease(id="rocky", version_id="8.10"), "python38", ("python38-pip",)),
    (OsRelease(id="debian", version_id="10"), "python3.7", ("python3.7-venv",)),
])
def test_the_distro_archive_is_asked_only_for_what_it_ships(os: OsRelease, package: str,
                                                            extra: tuple[str, ...]) -> None:
    choice = choose_python(facts_on(os, PY311), TF241.python, VENV, None)  # type: ignore[arg-type]
    assert choice.source == "distro" and choice.package is not None
    assert (choice.package.package, choice.package.extra) == (package, extra)


def test_without_the_distro_or_a_mirror_the_host_is_blocked_with_how_to_unblock() -> None:
    result = plan(BOOKWORM)
    assert result.status == "blocked"
    assert result.error is not None
    for part in ("3.6-3.8", "Debian 12 (bookworm)", "Python 3.11 only", "remediator_python_mirror"):
        assert part in result.error, result.error
    assert "install_package" not in kinds(result) or all(a.params["name"] != "python3.8" for a in result.actions
                                                           if a.kind == "install_package")
    assert "create_venv" not in kinds(result)


def test_an_unknown_distro_is_blocked_too_not_asked_for_a_guessed_package() -> None:
    result = plan(OsRelease(id="gentoo", version_id="2.17", pretty_name="Gentoo Linux"))
    assert result.status == "blocked" and "Gentoo Linux" in (result.error or "")
    assert "does not know which Pythons" in (result.error or "")


def test_with_a_mirror_uv_installs_the_range_beside_the_venv_and_builds_it() -> None:
    result = plan(BOOKWORM, MIRROR)
    assert result.status == "changes", result.error
    (install,) = [a for a in result.actions if a.kind == "install_python"]
    assert install.params == {"version": ">=3.6,<3.9", "home": VENV + "-python", "mirror": MIRROR}
    (venv,) = [a for a in result.actions if a.kind == "create_venv"]
    assert venv.params == {"path": VENV, "python": VENV + "-python/bin/python3", "uv": VENV + "-python/uv"}
    assert kinds(result).index("install_python") < kinds(result).index("create_venv")
    assert check_actions(result.actions, "/opt/remediator/venvs") == []
    schema = json.loads((Path(__file__).resolve().parents[2] / "docs" / "plan-schema.json").read_text())
    doc = Plan(hosts=(result,), matrix_version=MATRIX.version, created_at="2026-12-08T00:00:00+00:00").to_dict()
    jsonschema.validate(json.loads(json.dumps(doc)), schema)


def test_a_trailing_slash_of_the_mirror_is_dropped() -> None:
    (install,) = [a for a in plan(BOOKWORM, MIRROR + "/").actions if a.kind == "install_python"]
    assert install.params["mirror"] == MIRROR


def test_the_distro_wins_over_a_mirror() -> None:
    result = plan(OsRelease(id="ubuntu", version_id="20.04"), MIRROR)
    assert "install_python" not in kinds(result)
    assert next(a.params["name"] for a in result.actions if a.kind == "install_package") == "python3.8"


@pytest.mark.parametrize("mirror", ["http://mirror.example/pbs", "https://user:pw@mirror.example/pbs",
                                    "file:///srv/a b", "https://mirror.example/$(reboot)", "file:///srv/../etc",
                                    "https://mirror.example/{{ lookup('pipe', 'id') }}", "ftp://x/y", "file://"])
def test_a_mirror_that_is_not_a_plain_https_or_file_url_blocks_the_host(mirror: str) -> None:
    assert mirror_problem(mirror) is not None
    result = plan(BOOKWORM, mirror)
    assert result.status == "blocked"
    refused = [f for f in result.findings if f.code == "VALUE_REFUSED"]
    assert refused and any(("field", "params.mirror") in f.evidence for f in refused)


def test_install_python_and_its_venv_keep_to_the_venv_root() -> None:
    good = plan(BOOKWORM, MIRROR)
    moved = [dataclasses.replace(a, params={**a.params, "home": "/usr/local/python"})
             if a.kind == "install_python" else a for a in good.actions]
    assert [v.field for v in check_actions(moved, "/opt/remediator/venvs")] == ["params.home"]
    other_uv = [dataclasses.replace(a, params={**a.params, "uv": "/usr/bin/uv"})
                if a.kind == "create_venv" else a for a in good.actions]
    assert [v.field for v in check_actions(other_uv, "/opt/remediator/venvs")] == ["params.uv"]
    foreign = [dataclasses.replace(a, params={**a.params, "python": "/usr/bin/python3"})
               if a.kind == "create_venv" else a for a in good.actions]
    assert [v.field for v in check_actions(foreign, "/opt/remediator/venvs")] == ["params.python"]


# --- the seed's host (issue #12): TF 2.4.1 with CUDA 11.2 as default, cuDNN 8.1 copied into it ---------------


def test_the_seed_host_quarantines_what_conflicts_and_never_pins_what_it_moves_aside() -> None:
    facts = host(os=BOOKWORM, driver=driver("455.45.01"),
                 toolkits=(toolkit("11.2.1", default=True), toolkit("10.1.243")),
                 cudnn=(cudnn_copy_in_toolkit("8.1.1", "/usr/local/cuda-11.2"),),
                 loader=ld_path("/usr/local/cuda-11.2/lib64", "/usr/local/cuda-10.1/lib64", "/usr/local/cuda/lib64"),
                 envs=(PY311, venv("/home/ubuntu/venvs/tf24", "3.8.10", tf("2.4.1", "11.0", "8"))))
    result = plan_host(facts, parse_target("tensorflow==2.4.1"), MATRIX, Policy(python_mirror=MIRROR))
    assert result.status == "changes", result.error
    moved = {a.params["path"] for a in result.actions if a.kind == "quarantine_path"}
    assert moved == {"/usr/local/cuda-11.2", "/usr/local/cuda-10.1", "/etc/profile.d/cuda.sh"}
    # The cuDNN 8.1 copy goes with its toolkit: a cuDNN 8.0 for CUDA 11.0 is installed, and the pin names
    # only what will be there.
    installs = [a.params["name"] + "=" + (a.params["version"] or "") for a in result.actions
                if a.kind == "install_package"]
    assert installs == ["cuda-toolkit-11-0=", "libcudnn8=8.0.*+cuda11.0"]
    (pin,) = [a for a in result.actions if a.kind == "pin_loader_path"]
    assert pin.params["ld_library_path"] == ["/usr/local/cuda-11.0/lib64"]
    assert not any("/usr/local/cuda-11.2" in k for k in result.kept), result.kept
    assert [a.kind for a in result.actions][-4:] == ["install_python", "create_venv", "pip_install", "pin_loader_path"]


# --- the command line ---------------------------------------------------------------------------------


def facts_file(tmp_path: Path) -> Path:
    path = tmp_path / "facts.json"
    path.write_text(facts_on(BOOKWORM, PY311).to_json())  # type: ignore[attr-defined]
    return path


def test_plan_python_mirror_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    facts = facts_file(tmp_path)
    assert main(["plan", "--facts", str(facts), "--target", "tensorflow==2.4.1", "--format", "json"]) == 2
    (blocked,) = json.loads(capsys.readouterr().out)["hosts"]
    assert blocked["status"] == "blocked" and "remediator_python_mirror" in blocked["error"]
    assert main(["plan", "--facts", str(facts), "--target", "tensorflow==2.4.1", "--python-mirror", MIRROR]) == 2
    text = capsys.readouterr().out
    assert f"install CPython >=3.6,<3.9 with uv into {VENV}-python from {MIRROR}" in text


def test_a_bad_python_mirror_option_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["plan", "--facts", str(facts_file(tmp_path)), "--target", "tensorflow==2.4.1",
                   "--python-mirror", "https://mirror.example/;reboot"])
    err = capsys.readouterr().err
    assert status == 1, status  # bad input (docs: exit codes)
    assert "--python-mirror" in err and "Traceback" not in err
