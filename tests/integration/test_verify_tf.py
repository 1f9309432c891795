"""verify's TensorFlow rungs against a real TensorFlow, on this CPU-only machine (no NVIDIA GPU, no driver).

The wheels of tensorflow==2.21.0 (plain `tensorflow`, not `[and-cuda]`: no CUDA wheels) come from the lab's
shared wheel cache (tests/integration/wheelcache.py: downloaded once per machine, ~610 MB); a venv under
tmp_path links to them with uv. The real CLI then runs `remediate verify --local` with that venv's python:
rungs 1 and 2 are "no device" skips, rung 3 reports what TensorFlow saw (no GPU, built for CUDA 12.5.1 /
cuDNN 9, libcudart.so.12, libcublas.so.12 and libcudnn.so.9 not found), rung 4 its matmul on the CPU
device, marked as not a GPU result. Skipped where the wheels cannot be had, or on a machine with a driver.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from remediator.cli import main
from remediator.verify import REL_TOLERANCE
from tests.integration import wheelcache

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.path.exists("/proc/driver/nvidia/version"), reason="this machine has an NVIDIA driver"),
]

TF_VERSION = "2.21.0"
TARGET = f"tensorflow=={TF_VERSION}"
SIZE = "1024"  # a CPU matmul of the default 4096 takes ~0.7 s a run; 1024 keeps the test short


@pytest.fixture(scope="module")
def tf_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        cache = wheelcache.fill(TARGET)
    except wheelcache.CacheUnavailable as exc:
        pytest.skip(str(exc))
    venv = tmp_path_factory.mktemp("tf") / "venv"
    subprocess.run([str(cache.uv), "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(cache.uv), "pip", "install", "-q", "--no-config", "--python", str(python), "--cache-dir",
                    str(cache.uv_cache), "--find-links", str(cache.wheelhouse), "--no-index", "--offline",
                    "--link-mode", "symlink", TARGET], check=True, timeout=600)
    return python


@pytest.fixture(scope="module")
def checked(tf_python: Path) -> dict[str, Any]:
    """One real run of the CLI, JSON output (the TF import alone takes seconds: shared by the tests)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["verify", "--local", "--target", TARGET, "--python", str(tf_python), "--size", SIZE,
                   "--format", "json"])
    document: dict[str, Any] = json.loads(out.getvalue())
    assert rc == 0 and document["exit_status"] == 0
    return document


def test_the_document_says_what_real_tensorflow_sees(checked: dict[str, Any], tf_python: Path) -> None:
    report = checked["hosts"][0]["verification"]["report"]
    assert report["skipped"] == {"cuda": "no_device"} and report["cuda"] is None
    assert report["framework"]["ran"] and report["framework"]["cpu_only"] and report["framework"]["rc"] == 0
    rt = report["runtime"]
    assert rt["import_ok"] and rt["cpu_only"] and rt["python"]["executable"] == str(tf_python)
    build = rt["build"]
    assert build["version"] == TF_VERSION and build["is_cuda_build"] is True
    assert build["cuda"] == "12.5.1" and build["cudnn"] == "9"
    assert rt["devices"] == []  # tf.config.list_physical_devices('GPU')
    assert rt["libraries"] == []  # nothing CUDA got mapped
    libs = {lib["soname"]: lib for lib in rt["cuda_libraries"]}
    assert set(libs) == {"libcudart.so.12", "libcublas.so.12", "libcudnn.so.9"}
    for soname, lib in libs.items():
        assert lib["found"] is False and lib["path"] is None
        assert lib["error"] == f"{soname}: cannot open shared object file: No such file or directory"
        # The nvidia wheel directory TF's RUNPATH names was looked in first (the plain wheel brings none).
        assert lib["searched"][-1] == "ld.so.cache and the system directories"
        assert any("/site-packages/nvidia/" in p for p in lib["searched"])


def test_the_matmul_ran_on_the_cpu_and_is_marked_not_gpu(checked: dict[str, Any]) -> None:
    mm = checked["hosts"][0]["verification"]["report"]["matmul"]
    assert mm["size"] == int(SIZE) and mm["device"] == "CPU:0" and mm["gpu"] is False and mm["gpus"] == []
    cpu = mm["cpu"]
    assert cpu["device"] == "CPU:0" and cpu["gpu"] is False and cpu["tf_device"].endswith("/device:CPU:0")
    assert cpu["finite"] is True and cpu["seconds"] > 0
    assert cpu["rel_error"] < 1e-5 < REL_TOLERANCE  # float32 against float64: ~3e-7 at n = 1024


def test_the_ladder_skips_as_no_device_and_says_what_tf_saw(checked: dict[str, Any]) -> None:
    (host,) = checked["hosts"]
    v = host["verification"]
    assert host["status"] == "passed" and v["first_failure"] is None and v["gpus"] == []
    assert [(r["name"], r["status"]) for r in v["rungs"]] == [
        ("driver", "skip"), ("cuda", "skip"), ("runtime", "skip"), ("matmul", "skip")]
    runtime, matmul = v["rungs"][2]["summary"], v["rungs"][3]["summary"]
    assert runtime.startswith("no device") and f"tensorflow {TF_VERSION} (built for CUDA 12.5.1, cuDNN 9) sees " \
        "no GPU; libcudart.so.12, libcublas.so.12, libcudnn.so.9 not found" in runtime
    assert matmul.startswith("no device") and "tensorflow computes on CPU (not a GPU result)" in matmul
    assert f"a {SIZE}x{SIZE} float32 matmul on CPU:0 is correct" in matmul
    assert "pass: every rung passed" not in v["verdict"] and v["verdict"].startswith("pass (4 rung(s) skipped")


def test_text_output(tf_python: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--local", "--target", TARGET, "--python", str(tf_python), "--size", "256"]) == 0
    out = capsys.readouterr().out
    assert "localhost: PASS" in out
    assert out.count("skip  no device: no NVIDIA GPU on this host's PCI bus") == 2
    assert "sees no GPU; libcudart.so.12, libcublas.so.12, libcudnn.so.9 not found in the env" in out
    assert "tensorflow computes on CPU (not a GPU result): a 256x256 float32 matmul on CPU:0 is correct" in out
