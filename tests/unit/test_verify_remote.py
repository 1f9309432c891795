"""The remote verify script itself, run by this machine's Python, without a GPU.

NVML and the PCI bus cannot be faked from outside a process, so a small wrapper imports the script,
replaces its driver rung with a canned answer, and runs its `main`. Everything after that is real:
rung 2 calls a stub libcuda.so.1 (an ELF stub from remediator.lab.elf) through ctypes, and rungs 3
and 4 run in the script's child process against the fake torch and NumPy under
tests/fixtures/verify/fakes, which load stub libcudart/libcudnn/libcublas so /proc/self/maps holds them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from remediator.apply import collection_dir
from remediator.lab.elf import Export, Kind, shared_object
from remediator.matrix import load_matrix, parse_target
from remediator.verify import CheckOptions, build_payload, judge, remote_script_source

HERE = Path(__file__).resolve().parent
REMOTE = collection_dir() / "roles" / "gpu_check" / "files" / "gpu_check.py"
FAKES = HERE.parent / "fixtures" / "verify" / "fakes"
PYTHON36 = Path("/root/.pyenv/versions/3.6.15/bin/python3.6")
TARGET = parse_target("pytorch==2.11.0")
UUID_VALUE = 0x11223344
UUID = "GPU-44332211-0000-0000-0000-000000000000"  # what cuDeviceGetUuid's stub writes, as CUDA prints it

WRAPPER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("remote", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
canned = json.loads(sys.argv[2])
m.driver_rung = lambda options: canned
m.main([], payload_options=json.loads(sys.argv[3]))
"""


def canned_driver(busy: bool = False, gpus: int = 1) -> dict[str, Any]:
    return {
        "proc_version": "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build\n",
        "modules": ["nvidia_uvm", "nvidia"],
        "proc_modules_readable": True,
        "pci": [{"address": f"0000:00:0{6 + i}.0", "class": "0x030200", "device": "0x2335", "driver": "nvidia"}
                for i in range(gpus)],
        "container": False,
        "device_nodes": {"/dev/nvidiactl": True, "/dev/nvidia-uvm": True,
                         **{f"/dev/nvidia{i}": True for i in range(gpus)}},
        "dev_listing": ["nvidia0", "nvidiactl", "nvidia-uvm"],
        "nvml": {
            "ok": True, "loaded": True, "error": None, "error_code": None, "errors": {},
            "driver_version": "580.159.04", "cuda_driver_version": 13000, "device_count": gpus,
            "gpus": [{
                "index": i, "name": "Fake GPU", "uuid": UUID if i == 0 else f"GPU-{i}", "minor_number": i,
                "memory_total": 80 << 30, "memory_used": 1 << 30, "pci_bus_id": f"00000000:00:0{6 + i}.0",
                "compute_capability": [9, 0], "compute_mode": 0,
                "processes": [{"pid": 4242, "used_memory": 1 << 30, "name": "python3"}] if busy else [],
            } for i in range(gpus)],
        },
    }


def stub(path: Path, soname: str, *exports: Export) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(shared_object(soname, exports))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fake venv site-packages (fake torch, NumPy, CUDA wheels) and two stub libcuda directories."""
    root = tmp_path_factory.mktemp("verify-env")
    site = root / "site-packages"
    shutil.copytree(FAKES, site)
    cudart = stub(site / "nvidia/cu13/lib/libcudart.so.13", "libcudart.so.13",
                  Export("cudaRuntimeGetVersion", Kind.STORE, 13000))
    cublas = stub(site / "nvidia/cu13/lib/libcublas.so.13", "libcublas.so.13")
    cudnn = stub(site / "nvidia/cudnn/lib/libcudnn.so.9", "libcudnn.so.9",
                 Export("cudnnGetVersion", Kind.RETURN, 91900), Export("cudnnGetCudartVersion", Kind.RETURN, 13000))
    system_cudnn = stub(root / "usr-lib/libcudnn.so.9.1.0", "libcudnn.so.9",
                        Export("cudnnGetVersion", Kind.RETURN, 90100), Export("cudnnGetCudartVersion", Kind.RETURN,
                                                                               12080))
    cuda_exports = (
        Export("cuDriverGetVersion", Kind.STORE, 13000),
        Export("cuDeviceGetCount", Kind.STORE, 1),
        Export("cuDeviceGet", Kind.STORE, 0),
        Export("cuDeviceGetName", Kind.STORE, 0x00555047),  # "GPU"
        Export("cuDeviceTotalMem_v2", Kind.STORE, 1 << 30),
        Export("cuDeviceGetAttribute", Kind.STORE, 9),
        Export("cuDeviceGetPCIBusId", Kind.STORE, 0x00303030),
        Export("cuDeviceGetUuid", Kind.STORE, UUID_VALUE),
    )
    good = stub(root / "cuda-ok/libcuda.so.1", "libcuda.so.1", Export("cuInit", Kind.RETURN, 0), *cuda_exports)
    stub(root / "cuda-nodev/libcuda.so.1", "libcuda.so.1", Export("cuInit", Kind.RETURN, 100), *cuda_exports)
    return {"site": site, "cudart": cudart, "cublas": cublas, "cudnn": cudnn, "system_cudnn": system_cudnn,
            "cuda_ok": good.parent, "cuda_nodev": root / "cuda-nodev"}


def run_ladder(env: dict[str, Path], *, busy: bool = False, cuda: str = "cuda_ok", libs: tuple[str, ...] = (
        "cudart", "cublas", "cudnn"), timeout: float = 60.0, force: bool = False, **fake: str) -> dict[str, Any]:
    options = {"framework": "pytorch", "framework_version": "2.11.0", "size": 16, "reference_rows": 8,
               "repeats": 2, "framework_timeout": timeout, "force": force}
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_TORCH_")}
    environ.update({
        "PYTHONPATH": str(env["site"]),
        "LD_LIBRARY_PATH": str(env[cuda]),
        "FAKE_TORCH_LIBS": ":".join(str(env[name]) for name in libs),
        **{f"FAKE_TORCH_{k.upper()}": v for k, v in fake.items()},
    })
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(REMOTE), json.dumps(canned_driver(busy)), json.dumps(options)],
        capture_output=True, env=environ, timeout=timeout + 60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def ladder(doc: dict[str, Any]) -> list[str]:
    verification = judge(doc, host="t", target=TARGET, matrix=load_matrix())
    return [r.status for r in verification.rungs]


def test_every_rung_runs_and_the_child_reports_what_it_loaded(env: dict[str, Path]) -> None:
    doc = run_ladder(env)
    assert doc["cuda"]["init_rc"] == 0 and doc["cuda"]["device_count"] == 1
    assert doc["cuda"]["devices"][0]["uuid"] == UUID
    assert doc["cuda"]["devices"][0]["name"] == "GPU"
    assert doc["framework"]["rc"] == 0 and not doc["framework"]["timed_out"]
    runtime = doc["runtime"]
    assert runtime["import_ok"] and runtime["op"]["ok"]
    by_name = {Path(lib["path"]).name: lib for lib in runtime["libraries"]}
    assert by_name["libcudnn.so.9"]["api_version"] == 91900
    assert by_name["libcudnn.so.9"]["cudart_version"] == 13000
    assert by_name["libcudart.so.13"]["api_version"] == 13000
    assert any(d["dir"].endswith("nvidia/cudnn/lib") for d in runtime["wheel_lib_dirs"])
    gpu = doc["matmul"]["gpus"][0]
    assert gpu["finite"] and gpu["rel_error"] < 1e-6 and gpu["seconds"] > 0
    assert ladder(doc) == ["pass", "pass", "pass", "pass"]


def test_busy_gpu_gets_no_matmul_unless_forced(env: dict[str, Path]) -> None:
    doc = run_ladder(env, busy=True)
    assert doc["devices"] == [{"ordinal": 0, "uuid": UUID, "busy_pids": [4242]}]
    assert doc["matmul"]["gpus"] == [{"index": 0, "name": "Fake GPU 0", "skipped": "busy"}]
    assert ladder(doc) == ["pass", "pass", "pass", "skip"]
    forced = run_ladder(env, busy=True, force=True)
    assert ladder(forced) == ["pass", "pass", "pass", "pass"]


def test_no_device_stops_at_rung_2(env: dict[str, Path]) -> None:
    doc = run_ladder(env, cuda="cuda_nodev")
    assert doc["cuda"]["init_rc"] == 100
    assert doc["framework"] == {"ran": False} and doc["skipped"] == {"framework": "cuda"}
    assert ladder(doc) == ["pass", "fail", "skip", "skip"]


def test_wrong_matmul_fails_rung_4(env: dict[str, Path]) -> None:
    doc = run_ladder(env, wrong="1")
    assert doc["matmul"]["gpus"][0]["rel_error"] > 1e-3
    assert ladder(doc) == ["pass", "pass", "pass", "fail"]


def test_older_cudnn_first_on_the_path_fails_rung_3(env: dict[str, Path]) -> None:
    doc = run_ladder(env, libs=("cudart", "cublas", "system_cudnn"))
    verification = judge(doc, host="t", target=TARGET, matrix=load_matrix())
    rung = verification.rung("runtime")
    assert rung.status == "fail"
    assert "9.1.0" in rung.summary and str(env["system_cudnn"].parent) in (rung.cause or "")


def test_import_error_is_a_rung_3_failure_not_a_crash(env: dict[str, Path]) -> None:
    doc = run_ladder(env, import_error="libcudnn.so.9: cannot open shared object file: No such file or directory")
    assert doc["runtime"]["import_ok"] is False
    verification = judge(doc, host="t", target=TARGET, matrix=load_matrix())
    assert [r.status for r in verification.rungs] == ["pass", "pass", "fail", "skip"]
    assert "libcudnn.so.9" in (verification.rung("runtime").cause or "")


def test_a_hung_gpu_op_is_killed_and_named(env: dict[str, Path]) -> None:
    doc = run_ladder(env, hang="op", timeout=5)
    assert doc["framework"]["timed_out"] and doc["framework"]["last_step"] == "op"
    verification = judge(doc, host="t", target=TARGET, matrix=load_matrix())
    assert verification.rung("runtime").status == "fail"
    assert "first GPU operation" in verification.rung("runtime").summary


def test_a_hung_matmul_keeps_rung_3(env: dict[str, Path]) -> None:
    doc = run_ladder(env, hang="matmul", timeout=8)
    assert doc["framework"]["timed_out"] and doc["framework"]["last_step"] == "matmul:0"
    assert [*ladder(doc)] == ["pass", "pass", "pass", "fail"]


def test_a_crash_is_reported_with_its_signal(env: dict[str, Path]) -> None:
    doc = run_ladder(env, crash="op")
    assert doc["framework"]["signal"] == 11
    verification = judge(doc, host="t", target=TARGET, matrix=load_matrix())
    assert verification.rung("runtime").status == "fail"
    assert "SIGSEGV" in verification.rung("runtime").summary


def test_payload_runs_through_stdin_on_this_machine() -> None:
    """The real payload, as verify_host sends it: on a machine without a GPU the check stops cleanly."""
    payload = build_payload(CheckOptions(framework="pytorch", framework_version="2.11.0", timeout=60))
    proc = subprocess.run([sys.executable, "-"], input=payload, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    if doc["driver"]["nvml"].get("ok"):  # pragma: no cover - a machine with a GPU
        pytest.skip("this machine has an NVIDIA driver")
    assert doc["skipped"] == {"cuda": "driver", "framework": "driver"}
    assert doc["driver"]["pci"] == []  # no NVIDIA GPU on this machine's bus
    assert ladder(doc) == ["skip", "skip", "skip", "skip"]


def test_payload_carries_options_as_data() -> None:
    payload = build_payload(CheckOptions(framework="pytorch", framework_version="2.11.0'; import os #")).decode()
    assert payload.count("\nPAYLOAD_OPTIONS = json.loads(") == 1
    assert "SCRIPT_SOURCE_Z = '" in payload and "PYNVML_SOURCE_Z = '" in payload
    compile(payload, "<payload>", "exec")  # the hostile version stayed inside a string literal


@pytest.mark.skipif(not PYTHON36.exists(), reason="no Python 3.6 here")
def test_script_runs_on_python36() -> None:
    proc = subprocess.run([str(PYTHON36), "-"], input=remote_script_source().encode(), capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    assert doc["schema_version"] == 1 and doc["driver"]["nvml"]["ok"] is False


RESOLVE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("remote", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
print(json.dumps([m.resolve_library(name, [sys.argv[2]]) for name in sys.argv[3:]]))
"""


def resolve(env: dict[str, Path], ld_path: str | None, *sonames: str) -> list[dict[str, Any]]:
    environ = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    if ld_path is not None:
        environ["LD_LIBRARY_PATH"] = ld_path
    proc = subprocess.run([sys.executable, "-c", RESOLVE, str(REMOTE), str(env["site"]), *sonames],
                          capture_output=True, env=environ, timeout=60, check=True)
    found: list[dict[str, Any]] = json.loads(proc.stdout)
    return found


def test_cuda_libraries_resolve_as_tensorflows_loader_would(env: dict[str, Path], tmp_path: Path) -> None:
    # TF's RUNPATH names site-packages/nvidia/<dir>/lib; LD_LIBRARY_PATH comes before it, ld.so.cache after.
    (wheel,) = resolve(env, None, "libcudnn.so.9")
    assert wheel["found"] and wheel["via"] == "wheel" and wheel["path"] == str(env["cudnn"])
    assert wheel["api_version"] == 91900 and wheel["searched"] == [str(env["cudnn"])]
    (tmp_path / "libcudnn.so.9").symlink_to(env["system_cudnn"])
    (shadow,) = resolve(env, str(tmp_path), "libcudnn.so.9")
    assert shadow["via"] == "LD_LIBRARY_PATH" and shadow["path"] == str(env["system_cudnn"])  # symlink resolved
    assert shadow["api_version"] == 90100
    (missing,) = resolve(env, None, "libcudart.so.12")
    assert not missing["found"] and missing["path"] is None
    assert missing["error"] == "libcudart.so.12: cannot open shared object file: No such file or directory"
    assert missing["searched"] == [str(env["site"] / "nvidia/cuda_runtime/lib/libcudart.so.12"),
                                   "ld.so.cache and the system directories"]
