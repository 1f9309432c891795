"""Lab scenarios: the shipped set covers every failure class with a cited report, and a malformed
scenario is reported with its file and field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator.errors import InputError
from remediator.lab import scenario

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "remediator" / "lab" / "scenarios"
FAILURE_CLASSES = {
    "DRIVER_MISSING", "DRIVER_LIBRARY_MISMATCH", "DRIVER_TOO_OLD", "DRIVER_TOO_OLD_FOR_TOOLKIT",
    "CUDA_WRONG_DEFAULT", "CUDA_MISSING", "CUDNN_MISMATCH", "CUDNN_SHADOWED", "CUDNN_MISSING",
    "PYTHON_UNSUPPORTED", "FRAMEWORK_CPU_ONLY", "FRAMEWORK_CONFLICT", "FRAMEWORK_MISSING",
    "FRAMEWORK_VERSION_MISMATCH", "LIB_SHADOWED", "LDPATH_MISSING_DIR",
}  # fmt: skip


def shipped() -> list[scenario.Scenario]:
    return scenario.load_all([SCENARIO_DIR])


def test_the_shipped_scenarios_cover_every_failure_class() -> None:
    all_ = shipped()
    assert len(all_) >= 14
    covered = {code for s in all_ for code in s.expect}
    assert covered >= FAILURE_CLASSES
    healthy = [s for s in all_ if not s.expect]
    assert {s.framework for s in healthy} == {"tensorflow", "pytorch"} and len(healthy) >= 3
    assert any(s.driver is None for s in all_), "a host with no NVIDIA driver at all"
    assert any(s.user == "root" for s in all_) and any(s.sudo and s.user != "root" for s in all_)


def test_every_failure_scenario_cites_a_public_report() -> None:
    for s in shipped():
        assert s.source.startswith("https://")
        if s.expect and "hostile" not in s.groups:  # hostile hosts cite the class of attack they model
            assert "github.com" in s.source or "nvidia.com" in s.source, s.id
        text = Path(s.path).read_text()
        assert text.startswith("#"), f"{s.path}: open with a comment saying what the host models"
        assert Path(s.path).stem == s.id


def test_the_healthy_hosts_are_the_three_the_issue_names() -> None:
    by_id = {s.id: s for s in shipped()}
    system = by_id["healthy-tf-system-cuda"]
    assert system.cuda and not any(p.name.startswith("nvidia-") for e in system.envs for p in e.packages)
    wheels = by_id["healthy-tf-and-cuda"]
    assert not wheels.cuda and any(p.name == "nvidia-cudnn-cu12" for e in wheels.envs for p in e.packages)
    assert tuple(int(x) for x in wheels.target_version.split(".")[:2]) >= (2, 15)
    assert by_id["healthy-pytorch"].framework == "pytorch"


def base() -> dict[str, Any]:
    data = yaml.safe_load((SCENARIO_DIR / "healthy-tf-system-cuda.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = data
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


_DELETE = object()

BAD = [
    ("id", _DELETE, "id: is required"),
    ("id", "Bad Id", "id: 'Bad Id' is not valid"),
    ("target", "tensorflow", "target: 'tensorflow' is not FRAMEWORK==VERSION"),
    ("target", "caffe==1.0", "target: 'caffe==1.0' is not FRAMEWORK==VERSION"),
    ("expect", ["CUDA_BROKEN"], "expect[0]: unknown finding code 'CUDA_BROKEN'"),
    ("expect", _DELETE, "expect: is required"),
    ("drivers", {}, "drivers: unknown field"),
    ("driver.version", 525.85, "driver.version: must be a quoted string"),
    ("driver.version", "52x", "driver.version: '52x' is not valid"),
    ("driver.gpus.0.model", "GTX 9999", "driver.gpus[0].model: unknown GPU model 'GTX 9999'"),
    ("driver.gpus.0.count", 0, "driver.gpus[0].count: must be a whole number"),
    ("driver.gpus", [], "driver.gpus: a driver needs at least one GPU"),
    ("cuda.0.version", "11.8", "cuda[0].version: '11.8': give the full toolkit version"),
    ("cuda.0.install", "conda", "cuda[0].install: 'conda' is not one of runfile, deb"),
    ("default_cuda", "12.1", "default_cuda: '12.1' is not one of the scenario's cuda toolkits"),
    ("cudnn.0.install", "zip", "cudnn[0].install: 'zip' is not one of tarball, deb"),
    ("cudnn.0.version", "6.0.21", "cudnn[0].version: '6.0.21': the lab lays out cuDNN 7, 8 and 9"),
    ("cudnn.0.into", "/srv/cudnn", "cudnn[0].into: '/srv/cudnn' must be under one of"),
    ("ld_so_conf", {"cuda": ["/usr/local/cuda/lib64"]}, "ld_so_conf.cuda: file names in /etc/ld.so.conf.d"),
    ("profile", {"cuda.sh": ["x"]}, "profile.cuda.sh: must be the file's text"),
    ("envs.0.path", "venvs/tf", "envs[0].path: 'venvs/tf' must be an absolute path"),
    ("envs.0.kind", "pipenv", "envs[0].kind: 'pipenv' is not one of venv, conda, system"),
    ("envs.0.python", "3.8", "envs[0].python: '3.8' is not valid"),
    ("envs.0.packages.0", "tensorflow==2.12.0", "envs[0].packages[0]: 'tensorflow==2.12.0': give tensorflow"),
    ("envs.0.packages.1", "numpy>=1", "envs[0].packages[1]: 'numpy>=1' is not NAME==VERSION"),
    ("envs.0.conda", ["cudnn==8.1"], "envs[0].conda: only a conda environment has conda packages"),
    ("files", [{"path": "/etc/x", "content": "a", "link": "/b"}], "files[0].path: give exactly one of"),
    ("files", [{"path": "/etc/x", "content": "a", "absent": True}], "files[0].path: give exactly one of"),
    ("files", [{"path": "/opt/x", "absent": True}], "files[0].absent: '/opt/x': only files under /etc, /usr"),
    ("files", [{"path": "/usr/bin/x", "absent": "yes"}], "files[0].absent: must be true or false"),
    ("login", {"user": "Root!"}, "login.user: 'Root!' is not valid"),
]  # fmt: skip


@pytest.mark.parametrize(("field", "value", "message"), BAD, ids=[b[2].split(":")[0] for b in BAD])
def test_a_malformed_scenario_names_the_file_and_the_field(
    tmp_path: Path, field: str, value: Any, message: str
) -> None:
    data = copy.deepcopy(base())
    _set(data, field, value)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError) as info:
        scenario.load(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)


def test_yaml_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("id: x\nsummary: [unclosed\n")
    with pytest.raises(InputError, match=r"bad\.yaml: line \d+: not valid YAML"):
        scenario.load(path)


def test_ids_are_unique_across_files(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text((SCENARIO_DIR / "no-driver.yaml").read_text())
    with pytest.raises(InputError, match=r"b\.yaml: id: id 'no-driver' is already used by .*a\.yaml"):
        scenario.load_all([tmp_path])


def test_home_relative_paths_expand_for_the_login_user() -> None:
    data = base()
    data["login"] = {"user": "gpuops"}
    s = scenario.parse(data, "x.yaml")
    assert s.envs[0].path == "/home/gpuops/venvs/tf"
    data["login"] = {"user": "root"}
    assert scenario.parse(data, "x.yaml").envs[0].path == "/root/venvs/tf"


def test_python_defaults_to_the_hosts_own() -> None:
    s = scenario.parse(base(), "x.yaml", host_python="3.11.7")
    assert s.envs[0].python == "3.11.7"


def test_driver_omit_and_library_exports_are_checked() -> None:
    data = base()
    data["driver"]["omit"] = ["libnvidia-ml"]
    with pytest.raises(InputError, match=r"driver.omit\[0\]"):
        scenario.parse(data, "x.yaml")
    data["driver"]["omit"] = ["libcuda"]
    data["files"] = [{"path": "/opt/x/libcuda.so", "library": "libcuda.so.1", "exports": {"cuInit": 34}}]
    s = scenario.parse(data, "x.yaml")
    assert s.driver is not None and s.driver.omit == ("libcuda",)
    assert s.files[0].exports == (("cuInit", "return", 34),)
    data["files"] = [{"path": "/opt/x/a", "content": "x", "exports": {"cuInit": 34}}]
    with pytest.raises(InputError, match="only a library"):
        scenario.parse(data, "x.yaml")
    data["files"] = [{"path": "/opt/x/libcuda.so", "library": "libcuda.so.1", "exports": {"cuInit": "34"}}]
    with pytest.raises(InputError, match=r"exports.cuInit"):
        scenario.parse(data, "x.yaml")
