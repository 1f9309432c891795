"""Real TensorFlow through the whole flow: probe, plan, apply, verify, replan and rollback on a lab host.

The host (tests/fixtures/apply-lab/tf-and-cuda-real.yaml, a lab of its own) first gets a real plain
`tensorflow==2.21.0` (no `[and-cuda]`) in the login user's venv, from the lab's wheel cache
(tests/integration/wheelcache.py). The diagnosis of that venv is CUDA_LIB_UNRESOLVED (libcudart.so.12 & co
resolve to nothing) and verify run with its python says the same of the real TensorFlow. The plan's fix,
`tensorflow[and-cuda]==2.21.0` in a managed venv, is applied for real with uv from the same cache (the
nvidia-*-cu12 wheels linked, not copied: seconds), verified (TensorFlow imports there, its build info is read
and the CUDA libraries it would dlopen are found in its wheels; no GPU, so the rungs that need one are
no-device skips), planned again (compliant), and rolled back: every file of the host as before.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from remediator.cli import main
from tests.integration import wheelcache
from tests.integration.test_apply_lab import FIXTURES, ApplyLab, apply_cli, own_lab, replan_statuses, rollback_cli
from tests.integration.wheelcache import WheelCache

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(os.path.exists("/proc/driver/nvidia/version"), reason="this machine has an NVIDIA driver"),
]

VERSION = "2.21.0"
TARGET = f"tensorflow=={VERSION}"
AND_CUDA = f"tensorflow[and-cuda]=={VERSION}"
HOST = "tf-and-cuda-real-001"  # own_lab numbers its hosts
PLAIN_VENV = "/home/ubuntu/venvs/tf"
MANAGED_VENV = f"/opt/remediator/venvs/tensorflow-{VERSION}"
SONAMES = {"libcudart.so.12", "libcublas.so.12", "libcudnn.so.9"}
KERAS = "/root/.keras"
SIZE = "256"  # rung 4's matmul runs on the CPU here: keep it small

TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def cache() -> WheelCache:
    """tensorflow[and-cuda] 2.21.0 and its nvidia-*-cu12 wheels (a few GB) in the lab's shared cache."""
    t0 = time.monotonic()
    try:
        filled = wheelcache.fill(AND_CUDA)
    except wheelcache.CacheUnavailable as exc:
        pytest.skip(str(exc))
    TIMES["fill"] = time.monotonic() - t0
    return filled


@pytest.fixture(scope="module")
def tflab(labkit: Any, tmp_path_factory: pytest.TempPathFactory, cache: WheelCache) -> Iterator[ApplyLab]:
    with own_lab(labkit, tmp_path_factory, FIXTURES / "tf-and-cuda-real.yaml", 1, "tf-real") as lab:
        # The scenario's venv holds a TensorFlow file layout; the real plain wheel replaces it, as
        # `pip install tensorflow` would have left it (owned by the user).
        lab.in_host(HOST, [str(cache.uv), "pip", "install", "-q", "--no-config", "--python",
                           f"{PLAIN_VENV}/bin/python", "--cache-dir", str(cache.uv_cache), "--find-links",
                           str(cache.wheelhouse), "--no-index", "--offline", "--link-mode", "symlink",
                           "--reinstall-package", "tensorflow", TARGET])
        lab.in_host(HOST, ["chown", "-R", "ubuntu:ubuntu", PLAIN_VENV])
        yield lab


def cli_json(argv: list[str]) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main([*argv, "--format", "json"])
    return status, json.loads(out.getvalue())


def verify(lab: ApplyLab, *extra: str) -> dict[str, Any]:
    status, doc = cli_json(["verify", "-i", str(lab.inventory), "--limit", HOST, "--target", TARGET, "--size", SIZE,
                            *extra])
    assert status == 0, doc
    (host,) = doc["hosts"]
    assert host["status"] == "passed", host
    return host  # type: ignore[no-any-return]


def libraries(host: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lib["soname"]: lib for lib in host["verification"]["report"]["runtime"]["cuda_libraries"]}


def test_tensorflow_and_cuda_installed_verified_and_rolled_back_for_real(tflab: ApplyLab, cache: WheelCache) -> None:
    version = tflab.in_host(HOST, [f"{PLAIN_VENV}/bin/python", "-c",
                                   "import importlib.metadata as m; print(m.version('tensorflow'))"])
    assert version.strip() == VERSION

    # a. The diagnosis of the plain install and the fix the plan proposes.
    plan_path = tflab.work / "tf.plan.json"
    assert main(["plan", "-i", str(tflab.inventory), "--limit", HOST, "--out", str(plan_path)]) == 2
    (planned,) = json.loads(plan_path.read_text())["hosts"]
    unresolved = [f for f in planned["findings"] if f["code"] == "CUDA_LIB_UNRESOLVED"]
    assert unresolved, planned["findings"]
    assert any("libcudart.so.12" in f["message"] + json.dumps(f["evidence"]) for f in unresolved), unresolved
    assert any(PLAIN_VENV in f["message"] + json.dumps(f["evidence"]) for f in unresolved), unresolved
    pip = [a for a in planned["actions"] if a["kind"] == "pip_install"]
    assert len(pip) == 1, planned["actions"]
    assert pip[0]["params"]["requirements"] == [AND_CUDA], pip
    assert pip[0]["params"]["venv"] == MANAGED_VENV, pip

    # The real plain TensorFlow says the same: built for CUDA 12.5.1 / cuDNN 9, its libraries not found.
    plain = verify(tflab, "--python", f"{PLAIN_VENV}/bin/python")
    runtime = plain["verification"]["report"]["runtime"]
    assert runtime["import_ok"] and runtime["build"]["version"] == VERSION and runtime["build"]["cuda"] == "12.5.1"
    assert {s for s, lib in libraries(plain).items() if not lib["found"]} == SONAMES
    # The host as the run finds it (that import wrote ~/.keras/keras.json and bytecode into the user's venv).
    before = tflab.tree(HOST)

    # b. Applied for real from the cache's wheels.
    t0 = time.monotonic()
    status, doc = apply_cli(
        tflab, plan_path,
        "--pip-find-links", str(cache.wheelhouse), "--pip-arg=--no-index", "--pip-arg=--offline",
        "--var", "remediator_pip_installer=uv", "--var", f"remediator_uv_bin={cache.uv}",
        "--var", f"remediator_uv_cache_dir={cache.uv_cache}", "--var", "remediator_uv_link_mode=symlink")
    TIMES["apply"] = time.monotonic() - t0
    (h,) = doc["hosts"]
    assert (h["status"], h["error"]) == ("applied", None), doc
    dists = json.loads(tflab.in_host(HOST, [f"{MANAGED_VENV}/bin/python", "-c",
                                           "import importlib.metadata as m, json; print(json.dumps("
                                           "{d.metadata['Name'].lower(): d.version for d in m.distributions()}))"]))
    assert dists["tensorflow"] == VERSION
    cu12 = {name for name in dists if name.startswith("nvidia-") and name.endswith("-cu12")}
    assert {"nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12", "nvidia-cudnn-cu12", "nvidia-nccl-cu12"} <= cu12
    # Apply's own verify: no GPU on a lab host, so the rungs that need one say skip; the host is not failed.
    assert h["verify"] is not None and h["verify"]["passed"] is True, h["verify"]
    assert status == 0, doc
    keras_after_apply = sorted(p for p in tflab.tree(HOST) if p.startswith(KERAS))

    # c. verify with the managed venv (the default for the target): TF imports, its build info is read, and
    # what it would dlopen is found in its nvidia wheels.
    t0 = time.monotonic()
    fixed = verify(tflab)
    TIMES["verify"] = time.monotonic() - t0
    report = fixed["verification"]["report"]
    runtime = report["runtime"]
    assert runtime["import_ok"] and runtime["python"]["executable"].startswith(MANAGED_VENV), runtime["python"]
    build = runtime["build"]
    assert (build["version"], build["cuda"], build["cudnn"], build["is_cuda_build"]) == (VERSION, "12.5.1", "9", True)
    libs = libraries(fixed)
    assert set(libs) == SONAMES
    for lib in libs.values():
        assert lib["found"] and lib["via"] == "wheel", lib
        # Found through the venv's nvidia wheel dir; mapped from the uv cache its files link to.
        assert lib["searched"][-1].startswith(MANAGED_VENV + "/lib/") and "/nvidia/" in lib["path"], lib
    assert report["skipped"] == {"cuda": "no_device"} and report["matmul"]["device"] == "CPU:0"
    assert [r["status"] for r in fixed["verification"]["rungs"]] == ["skip"] * 4

    # d. Planned again: nothing left to do.
    assert replan_statuses(tflab, [HOST]) == {HOST: "compliant"}

    # e. Rolled back: every file of the host as before the run.
    t0 = time.monotonic()
    status_undo, undone = rollback_cli(tflab, doc["run_id"])
    TIMES["rollback"] = time.monotonic() - t0
    assert status_undo == 0 and [u["status"] for u in undone["hosts"]] == ["rolled_back"], undone
    after = tflab.tree(HOST)
    # Apply's own verify imported TensorFlow as root without leaving Keras's keras.json in /root (its
    # KERAS_HOME is a scratch dir): every file is as before, byte for byte.
    assert keras_after_apply == []
    assert after == before
    print(" ".join(f"{k} {v:.1f} s," for k, v in TIMES.items()).rstrip(","))
