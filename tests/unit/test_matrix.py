"""Behaviour of the matrix API: lookup, errors, ranges and rules, the loader's validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from remediator.errors import MatrixError, UnknownVersionError, UsageError
from remediator.matrix import Matrix, Target, load_matrix, parse_target
from remediator.matrix.load import DATA_FILES
from remediator.matrix.model import VersionRange

DATA = Path(__file__).resolve().parents[2] / "remediator" / "matrix" / "data"


@pytest.fixture(scope="module")
def m() -> Matrix:
    return load_matrix()


def test_loads_once_and_carries_its_version(m: Matrix) -> None:
    assert load_matrix() is m
    assert m.version == "2026.11.26"
    assert m.frameworks == ("pytorch", "tensorflow")


def test_every_tensorflow_series_1_0_to_2_21_is_present(m: Matrix) -> None:
    series = {m.requirements("tensorflow", v).series for v in m.known_versions("tensorflow")}
    expected = {f"1.{n}" for n in range(16)} | {f"2.{n}" for n in range(22)}
    assert series == expected


@pytest.mark.parametrize("framework", ["tensorflow", "pytorch"])
def test_every_known_release_resolves_completely(m: Matrix, framework: str) -> None:
    versions = m.known_versions(framework)
    assert list(versions) == sorted(versions, key=Version)
    for version in versions:
        req = m.requirements(framework, version)
        assert req.version == version
        assert req.cuda is not None and req.cuda_ok(req.cuda)
        assert req.cudnn is not None and req.cudnn_ok(req.cudnn)
        assert req.cudnn_range is not None
        assert req.min_driver == m.min_driver_for_cuda(req.cuda)
        assert req.sources and all(u.startswith("https://") for u in req.sources)
        assert req.packages
        json.dumps(req.to_dict())  # JSON-ready


def test_tensorflow_first_and_last_releases(m: Matrix) -> None:
    known = m.known_versions("tensorflow")
    assert known[0] == "1.0.0" and known[-1] == "2.21.0"
    for version in ("2.4.0", "2.4.1", "2.4.2", "2.4.3", "2.4.4", "2.15.0.post1", "1.15.5"):
        assert version in known


def test_unknown_version_lists_the_nearest(m: Matrix) -> None:
    with pytest.raises(UnknownVersionError) as caught:
        m.requirements("tensorflow", "2.4.9")
    assert caught.value.what == "tensorflow"
    assert caught.value.version == "2.4.9"
    assert caught.value.nearest == ("2.4.4", "2.4.3", "2.4.2", "2.4.1", "2.4.0")
    assert "2.4.4" in str(caught.value)


def test_unknown_cuda_is_reported_with_neighbours(m: Matrix) -> None:
    # There was never a CUDA 12.7; 13.4+ are listed without a confirmed driver floor.
    with pytest.raises(UnknownVersionError) as caught:
        m.min_driver_for_cuda("12.7")
    assert caught.value.what == "CUDA"
    assert any(v.startswith(("12.6", "12.8")) for v in caught.value.nearest)
    with pytest.raises(UnknownVersionError):
        m.min_driver_for_cuda("13.4")


def test_lookup_forms(m: Matrix) -> None:
    assert m.requirements("tensorflow", "2.4").version == "2.4.0"
    assert m.requirements("tensorflow", "2.15").version == "2.15.0"
    assert m.requirements("tensorflow", "2.15.0.post1").version == "2.15.0.post1"
    assert m.requirements("torch", "2.11.0+cu128").version == "2.11.0"
    assert m.requirements("tensorflow-gpu", "1.14.0").framework == "tensorflow"
    with pytest.raises(UsageError):
        m.requirements("jax", "0.4.30")


def test_raw_versions_are_displayed_as_written(m: Matrix) -> None:
    driver = m.min_driver_for_cuda("11.0.3")
    assert str(driver) == "450.51.06"  # packaging would print 450.51.6
    assert m.cuda_release("11.0.3").driver_raw == ">= 450.51.06"
    req = m.requirements("tensorflow", "2.4.1")
    assert req.to_dict()["min_driver"] == "450.51.05"
    assert req.to_dict()["cuda"] == "11.0" and req.to_dict()["python"] == "3.6-3.8"


def test_to_dict_keys(m: Matrix) -> None:
    data = m.requirements("tensorflow", "2.15.0").to_dict()
    for key in (
        "framework",
        "version",
        "cuda",
        "cudnn",
        "python",
        "min_driver",
        "sources",
        "cuda_range",
        "cudnn_range",
        "bundles_cuda",
        "wheels",
        "variants",
        "packages",
    ):
        assert key in data
    assert data["cuda_range"]["rule"] == "cuda-minor-compat"
    assert data["cudnn_range"]["rule"] == "cudnn-same-major"
    assert {"name": "nvidia-cudnn-cu12", "version": "8.9.4.25"} in data["wheels"]


def test_cuda_minor_compat_rule(m: Matrix) -> None:
    # TF 2.5 built with 11.2 runs on any 11.x >= 11.2, with a driver down to the 11.x compat floor.
    req = m.requirements("tensorflow", "2.5.0")
    assert req.cuda_range is not None and req.cuda_range.rule == "cuda-minor-compat"
    assert req.cuda_ok("11.2.1") and req.cuda_ok("11.8")
    assert not req.cuda_ok("11.1") and not req.cuda_ok("12.0")
    assert req.min_driver.raw == "460.27.03"
    assert req.min_driver_compat is not None and req.min_driver_compat.raw == "450.80.02"


def test_tf_2_4_is_tied_to_cuda_11_0(m: Matrix) -> None:
    # libcusolver.so.10 only ships with CUDA 11.0 (tensorflow/tensorflow#45263).
    req = m.requirements("tensorflow", "2.4.1")
    assert req.cuda_range is not None and req.cuda_range.rule == "tested-only"
    assert req.cuda_ok("11.0.3") and not req.cuda_ok("11.1")
    assert req.min_driver_compat is None
    assert any("libcusolver.so.10" in note for note in req.notes)


def test_cuda_exact_minor_before_11(m: Matrix) -> None:
    req = m.requirements("tensorflow", "1.14.0")
    assert req.cuda_range is not None and req.cuda_range.rule == "cuda-exact-minor"
    assert req.cuda_ok("10.0.130") and not req.cuda_ok("10.1") and not req.cuda_ok("9.2")
    old = m.requirements("tensorflow", "1.4.0")
    assert old.cuda_ok("8.0.61") and not old.cuda_ok("9.0")


def test_cudnn_rules(m: Matrix) -> None:
    tf25 = m.requirements("tensorflow", "2.5.0")
    assert tf25.cudnn_ok("8.1.0") and tf25.cudnn_ok("8.9.7")
    assert not tf25.cudnn_ok("8.0.5") and not tf25.cudnn_ok("9.0.0") and not tf25.cudnn_ok("7.6.5")
    tf114 = m.requirements("tensorflow", "1.14.0")  # tested 7.4: 7.x with minor >= 4
    assert tf114.cudnn_ok("7.6.5") and not tf114.cudnn_ok("7.3.1") and not tf114.cudnn_ok("8.0.5")
    tf14 = m.requirements("tensorflow", "1.4.0")  # cuDNN 6: exact major.minor
    assert tf14.cudnn_range is not None and tf14.cudnn_range.rule == "cudnn-exact-minor"
    assert tf14.cudnn_ok("6.0.21") and not tf14.cudnn_ok("7.0.5")
    assert not tf14.cudnn_ok("not a version")


def test_pytorch_ranges_cover_every_variant(m: Matrix) -> None:
    req = m.requirements("pytorch", "2.11.0")
    assert req.cuda_range is not None and req.cuda_range.rule == "bundled-variant"
    assert req.cuda_ok("12.6") and req.cuda_ok("12.8") and req.cuda_ok("13.0")
    assert not req.cuda_ok("12.4")
    assert req.cudnn_ok("9.10.2.21") and not req.cudnn_ok("8.9.7")


def test_runnable_with_driver_tensorflow(m: Matrix) -> None:
    runnable = m.runnable_with_driver("tensorflow", "450.80.02")
    # 11.x through minor-version compat (floor 450.80.02), 2.4 on its own 11.0 driver (450.51.05).
    for version in ("1.0.0", "1.15.5", "2.3.4", "2.4.0", "2.5.0", "2.11.1", "2.13.1", "2.14.1"):
        assert version in runnable
    # CUDA 12 builds need the 12.x floor 525.60.13.
    for version in ("2.15.0", "2.16.1", "2.21.0"):
        assert version not in runnable
    older = m.runnable_with_driver("tensorflow", "440.33")
    assert "2.3.4" in older and "2.4.0" not in older and "2.5.0" not in older
    assert m.runnable_with_driver("tensorflow", "600.1") == m.known_versions("tensorflow")


def test_runnable_with_driver_pytorch_counts_every_variant(m: Matrix) -> None:
    runnable = m.runnable_with_driver("torch", "535.104.05")
    assert "2.11.0" in runnable  # its cu126 / cu128 builds run on any driver >= 525.60.13
    assert "2.15.0" not in runnable  # only the CUDA 13.2 build is known: needs >= 580
    r520 = m.runnable_with_driver("pytorch", "520.61.05")
    assert "2.1.0" in r520 and "2.7.1" in r520  # cu118 builds, 11.x compat floor 450.80.02
    assert "2.8.0" not in r520  # only CUDA 12.x builds
    with pytest.raises(UsageError):
        m.runnable_with_driver("pytorch", "latest")


def test_driver_ok_uses_the_lowest_supported_floor(m: Matrix) -> None:
    req = m.requirements("tensorflow", "2.5.0")
    assert req.driver_ok("450.80.02") and not req.driver_ok("450.51.06")
    assert req.driver_floor.raw == "450.80.02"


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("tensorflow==2.4.1", Target("tensorflow", "2.4.1")),
        ("pytorch==2.11.0", Target("pytorch", "2.11.0")),
        ("torch==2.11.0", Target("pytorch", "2.11.0")),
        ("tensorflow-gpu==1.14.0", Target("tensorflow", "1.14.0")),
        (" Torch == 2.9.1 ", Target("pytorch", "2.9.1")),
    ],
)
def test_parse_target(text: str, target: Target) -> None:
    assert parse_target(text) == target


@pytest.mark.parametrize(
    "text", ["tensorflow", "tensorflow=2.4.1", "tensorflow==", "jax==0.4.1", "torch==abc", ""]
)
def test_parse_target_rejects_bad_syntax(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_target(text)
    assert "FRAMEWORK==VERSION" in str(caught.value)


def test_requirements_for_target(m: Matrix) -> None:
    target = parse_target("torch==2.11.0")
    assert str(target) == "pytorch==2.11.0"
    assert m.requirements_for(target) == m.requirements("pytorch", "2.11.0")


def test_version_range_contains() -> None:
    r = VersionRange("2.7, 3.3-3.6", (">=2.7,<2.8", ">=3.3,<3.7"))
    assert "3.6.15" in r and "2.7.18" in r and "3.7.0" not in r and object() not in r
    assert r.spec == ">=2.7,<2.8 || >=3.3,<3.7"
    with pytest.raises(ValueError):
        VersionRange("bad", ("=>1",))


def test_cudnn_release_lookup_forms(m: Matrix) -> None:
    assert m.cudnn_release("8.1.0.77").version.raw == "8.1.0"  # dpkg-style build number
    assert m.cudnn_release("8.1").version.raw == "8.1.0"  # "8.1" is 8.1.0, as "11.2" is 11.2 GA
    assert m.cudnn_release("7.1").version.raw == "7.1.4"  # no 7.1.0 row: the newest of the series
    assert m.cudnn_soname_major("9.99.0") == 9  # unknown release, soname still follows the major
    with pytest.raises(UnknownVersionError):
        m.cudnn_release("4.0")


# --- the loader refuses broken data -------------------------------------------------------------


def _copy_data(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    target.mkdir()
    for name in DATA_FILES:
        shutil.copy(DATA / name, target / name)
    return target


def _edit(path: Path, change) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_loader_accepts_a_faithful_copy(tmp_path: Path) -> None:
    data = _copy_data(tmp_path)
    copy = load_matrix(data)
    assert copy.known_versions("tensorflow") == load_matrix().known_versions("tensorflow")


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("tensorflow.yaml", lambda d: d["series"][0].pop("source"), "source"),
        ("tensorflow.yaml", lambda d: d["series"][0].update(source="see the website"), "not a URL"),
        ("tensorflow.yaml", lambda d: d["series"][0].update(cuda_rule="cuda-anything-goes"), "cuda_rule"),
        ("tensorflow.yaml", lambda d: d["series"][0].update(cuda="12.7"), "CUDA 12.7"),
        ("tensorflow.yaml", lambda d: d["series"][0].update(cudnn="4.0"), "cuDNN 4.0"),
        ("tensorflow.yaml", lambda d: d["series"][0].update(python="three"), "python"),
        ("tensorflow.yaml", lambda d: d["series"][0]["releases"].append({"version": "1.0.0"}), "series"),
        ("tensorflow.yaml", lambda d: d["series"][1].update(typo_key=1), "typo_key"),
        ("pytorch.yaml", lambda d: d["series"][0].update(default_variant="cu999"), "default_variant"),
        ("cuda.yaml", lambda d: d["releases"][0].update(linux_driver="latest"), "linux_driver"),
        ("cuda.yaml", lambda d: d.update(matrix_version="2026.12.01"), "matrix_version"),
        ("cudnn.yaml", lambda d: d["releases"][0].update(version="9.x"), "version"),
        ("rules.yaml", lambda d: d["rules"][0].update(id="made-up"), "made-up"),
        ("rules.yaml", lambda d: d["defects"][0].update(fixed_in="2.15.0"), "inside the affected range"),
        ("rules.yaml", lambda d: d["defects"][0].update(fixed_in="2.15.9"), "not a known release"),
        ("rules.yaml", lambda d: d["defects"][0].pop("source"), "source"),
        ("pytorch.yaml", lambda d: d["series"][-1]["variants"][0].update(archs=["sm_86"]), "archs"),
        ("pytorch.yaml", lambda d: d["series"][-1]["variants"][0].update(toolkit="10.0.130"), "toolkit"),
        ("pytorch.yaml", lambda d: d["series"][-1]["releases"][0].update(torchvision=["zero"]), "torchvision"),
        ("tensorflow.yaml", lambda d: d["series"][0]["releases"][0].update(torchvision=["0.1"]), "pytorch"),
        ("conda.yaml", lambda d: d["packages"][0].update(cuda="11.9"), "CUDA 11.9"),
        ("conda.yaml", lambda d: d["packages"].append(dict(d["packages"][0])), "duplicate"),
    ],
)
def test_loader_rejects_broken_rows(tmp_path: Path, name: str, change, message: str) -> None:
    data = _copy_data(tmp_path)
    _edit(data / name, change)
    with pytest.raises(MatrixError) as caught:
        load_matrix(data)
    assert message in str(caught.value)
    assert name in str(caught.value) or "matrix_version" in str(caught.value)


def test_loader_rejects_invalid_yaml(tmp_path: Path) -> None:
    data = _copy_data(tmp_path)
    (data / "cudnn.yaml").write_text("releases: [unclosed\n")
    with pytest.raises(MatrixError, match="not valid YAML"):
        load_matrix(data)
