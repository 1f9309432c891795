"""The probe's ctypes NVML reader against stand-in libnvidia-ml.so.1 libraries built here with gcc.

No GPU can be lent to these tests, so each stand-in is a real shared object (compiled from the C below)
that exports NVML's entry points with NVML's signatures and answers what a real driver answered: the
H200 host recorded in tests/fixtures/probe/h200-real-device.probe.json (through nvidia-ml-py, before
the probe had its own reader), then failures a real fleet has: an error from nvmlInit, one with a code
pynvml did not word, a driver that hangs, a buffer NVML calls too small, an old driver without the _v2
entry points, a GPU that fell off the bus. Each runs in its own python3 child, with the probe's file
imported as a module (as the gpu_facts Ansible module imports it), since a hung stand-in must not hang
the test runner and two stand-ins with one soname must not meet in one process.
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
from remediator.probe import parse_probe_document

GPU_PROBE = collection_dir() / "plugins" / "module_utils" / "gpu_probe.py"
RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "probe" / "h200-real-device.probe.json"
PYTHON36 = Path("/root/.pyenv/versions/3.6.15/bin/python3.6")

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the stand-in libraries")

# What each stand-in does is chosen at compile time (-D...): one C file, one library per behaviour.
STAND_IN = r"""
#include <string.h>
#include <unistd.h>

typedef struct { int index; } dev_t_;
static dev_t_ devices[8];

#ifndef INIT_RET
#define INIT_RET 0
#endif
#ifndef GPUS
#define GPUS 1
#endif
#ifndef NAME_MIN
#define NAME_MIN 1
#endif

static int put(char *buf, unsigned n, const char *value, unsigned need) {
    if (n < need || n <= strlen(value)) return 7; /* NVML_ERROR_INSUFFICIENT_SIZE */
    strcpy(buf, value);
    return 0;
}

#ifdef OLD_DRIVER
int nvmlInit(void) { return INIT_RET; }
int nvmlDeviceGetCount(unsigned *n) { *n = GPUS; return 0; }
int nvmlDeviceGetHandleByIndex(unsigned i, void **h) { devices[i].index = i; *h = &devices[i]; return 0; }
/* nvmlPciInfo_t v1: char busId[16] first */
int nvmlDeviceGetPciInfo(void *h, char *info) { strcpy(info, "0000:3B:00.0"); return 0; }
int nvmlSystemGetCudaDriverVersion(int *v) { *v = 7050; return 0; }
#else
int nvmlInit_v2(void) {
#ifdef HANG
    sleep(3600);
#endif
    return INIT_RET;
}
int nvmlDeviceGetCount_v2(unsigned *n) { *n = GPUS; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void **h) {
    if (i >= 8) return 2;
    devices[i].index = i; *h = &devices[i]; return 0;
}
/* nvmlPciInfo_t v3: char busIdLegacy[16]; 5 unsigned; char busId[32] */
int nvmlDeviceGetPciInfo_v3(void *h, char *info) {
    memset(info, 0, 68);
    strcpy(info, "0000:00:06.0");
    strcpy(info + 36, ((dev_t_ *)h)->index ? "00000000:00:07.0" : "00000000:00:06.0");
    return 0;
}
int nvmlSystemGetCudaDriverVersion_v2(int *v) { *v = 13000; return 0; }
int nvmlDeviceGetCudaComputeCapability(void *h, int *major, int *minor) { *major = 9; *minor = 0; return 0; }
#endif

int nvmlShutdown(void) { return 0; }
int nvmlSystemGetDriverVersion(char *b, unsigned n) { return put(b, n, DRIVER, 1); }
int nvmlSystemGetNVMLVersion(char *b, unsigned n) { return put(b, n, "13." DRIVER, 1); }
int nvmlDeviceGetName(void *h, char *b, unsigned n) { return put(b, n, "NVIDIA H200", NAME_MIN); }
int nvmlDeviceGetUUID(void *h, char *b, unsigned n) {
    return put(b, n, ((dev_t_ *)h)->index ? "GPU-11111111-1111-1111-1111-111111111111"
                                           : "GPU-00000000-0000-0000-0000-000000000000", 1);
}
int nvmlDeviceGetMemoryInfo(void *h, unsigned long long *m) {
#ifdef LOST_GPU
    if (((dev_t_ *)h)->index == LOST_GPU) return 15; /* NVML_ERROR_GPU_IS_LOST */
#endif
    m[0] = 150754820096ULL; m[1] = 1; m[2] = 2; return 0;
}
#ifdef ERROR_STRING
const char *nvmlErrorString(int code) { return "Argument version mismatch (stand-in's words)"; }
#endif
"""


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Any:
    top = tmp_path_factory.mktemp("nvml")
    source = top / "stand_in.c"
    source.write_text(STAND_IN)

    def build(name: str, *defines: str, driver: str = "580.159.04") -> Path:
        out = top / name / "libnvidia-ml.so.1"
        out.parent.mkdir()
        flags = [f"-D{d}" for d in defines] + [f'-DDRIVER="{driver}"']
        subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(source), *flags], check=True)
        return out

    return build


# The child: imports the probe's file as a module and asks the stand-in, through the watchdog.
CHILD = r"""
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("gpu_probe", sys.argv[1])
gpu_probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_probe)
options = dict(gpu_probe.DEFAULT_OPTIONS, nvml_timeout=float(sys.argv[3]))
probe = gpu_probe.Probe(options)
probe.nvml_libraries = lambda: [sys.argv[2]]
result = probe.nvml_with_timeout()
sys.stdout.write(json.dumps({"nvml": result, "hung": probe.nvml_hung, "notes": probe.notes}) + "\n")
sys.stdout.flush()
os._exit(0)  # a hung NVML thread must not keep the child alive
"""


def ask(library: Path, *, timeout: float = 20.0, python: str = sys.executable) -> dict[str, Any]:
    proc = subprocess.run(
        [python, "-c", CHILD, str(GPU_PROBE), str(library), str(timeout)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def recorded_nvml() -> dict[str, Any]:
    return json.loads(RECORDED.read_text())["driver"]["nvml"]  # type: ignore[no-any-return]


def test_a_healthy_driver_reads_exactly_as_nvidia_ml_py_read_it(build: Any) -> None:
    out = ask(build("h200"))
    assert out["hung"] is False
    assert out["nvml"] == recorded_nvml()


def test_the_document_with_the_ctypes_answer_parses_to_the_recorded_facts(build: Any) -> None:
    doc = json.loads(RECORDED.read_text())
    doc["driver"]["nvml"] = ask(build("h200-doc"))["nvml"]
    facts = parse_probe_document(doc, host="h200")
    expected = parse_probe_document(json.loads(RECORDED.read_text()), host="h200")
    assert facts == expected
    assert (facts.driver.version, facts.driver.source, facts.driver.cuda_driver_version) == (
        "580.159.04",
        "nvml",
        "13.0",
    )
    assert [(g.name, g.compute_capability, g.pci_bus_id) for g in facts.gpus] == [
        ("NVIDIA H200", "9.0", "00000000:00:06.0")
    ]


def test_every_gpu_is_read(build: Any) -> None:
    gpus = ask(build("two", "GPUS=2"))["nvml"]["gpus"]
    assert [(g["index"], g["uuid"], g["pci_bus_id"]) for g in gpus] == [
        (0, "GPU-00000000-0000-0000-0000-000000000000", "00000000:00:06.0"),
        (1, "GPU-11111111-1111-1111-1111-111111111111", "00000000:00:07.0"),
    ]


@pytest.mark.parametrize(
    ("defines", "error", "code"),
    [
        (("INIT_RET=9",), "Driver Not Loaded", 9),
        (("INIT_RET=18",), "RM has detected an NVML/RM version mismatch.", 18),
        (("INIT_RET=25",), "NVML Error with code 25", 25),
        (("INIT_RET=25", "ERROR_STRING"), "Argument version mismatch (stand-in's words)", 25),
    ],
)
def test_an_init_error_is_worded_as_pynvml_worded_it(
    build: Any, defines: tuple[str, ...], error: str, code: int
) -> None:
    nvml = ask(build("init-" + "-".join(d.replace("=", "") for d in defines), *defines))["nvml"]
    assert nvml == {"ok": False, "loaded": True, "error": error, "error_code": code, "errors": {}, "gpus": []}


def test_a_library_without_nvml_functions_is_function_not_found(tmp_path: Path) -> None:
    """The lab's healthy hosts: a libnvidia-ml.so.1 that loads but exports nothing (then nvidia-smi is asked)."""
    source = tmp_path / "empty.c"
    source.write_text("int not_nvml(void) { return 0; }\n")
    library = tmp_path / "libnvidia-ml.so.1"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    nvml = ask(library)["nvml"]
    assert nvml == {"ok": False, "loaded": True, "error": "Function Not Found", "error_code": 13, "errors": {},
                    "gpus": []}  # fmt: skip


def test_a_hung_driver_is_cut_off_by_the_watchdog(build: Any) -> None:
    out = ask(build("hang", "HANG"), timeout=0.5)
    assert out["hung"] is True
    assert out["nvml"] == {"ok": False, "loaded": True, "timed_out": True, "error": "NVML did not answer in time"}


def test_a_buffer_nvml_calls_too_small_is_asked_again_larger(build: Any) -> None:
    nvml = ask(build("small", "NAME_MIN=200"))["nvml"]
    assert nvml["errors"] == {}
    assert nvml["gpus"][0]["name"] == "NVIDIA H200"


def test_a_string_longer_than_every_buffer_is_an_error_of_that_field_only(build: Any) -> None:
    nvml = ask(build("huge", "NAME_MIN=100000"))["nvml"]
    assert nvml["ok"] is True and nvml["errors"] == {"gpu0.name": "Insufficient Size"}
    assert nvml["gpus"][0]["name"] is None and nvml["gpus"][0]["uuid"].startswith("GPU-0000")


def test_an_old_driver_without_the_v2_entry_points(build: Any) -> None:
    nvml = ask(build("r375", "OLD_DRIVER", "GPUS=1", driver="375.66"))["nvml"]
    assert (nvml["ok"], nvml["driver_version"], nvml["cuda_driver_version"]) == (True, "375.66", 7050)
    gpu = nvml["gpus"][0]
    assert gpu["pci_bus_id"] == "0000:3B:00.0"  # from the v1 struct, whose busId comes first
    assert gpu["compute_capability"] is None
    assert nvml["errors"] == {"gpu0.compute_capability": "Function Not Found"}


def test_a_gpu_that_fell_off_the_bus_costs_its_own_fields_only(build: Any) -> None:
    nvml = ask(build("lost", "GPUS=2", "LOST_GPU=1"))["nvml"]
    assert nvml["ok"] is True
    assert nvml["errors"] == {"gpu1.memory": "GPU is lost"}
    assert [g["memory_total"] for g in nvml["gpus"]] == [150754820096, None]
    assert nvml["gpus"][1]["uuid"] == "GPU-11111111-1111-1111-1111-111111111111"


def test_the_probe_loads_nvml_by_its_checked_path_only(build: Any) -> None:
    library = build("unsafe")
    os.chmod(library.parent, 0o777)  # another user could swap the library: never loaded
    try:
        out = ask(library)
    finally:
        os.chmod(library.parent, 0o755)
    assert out["nvml"]["loaded"] is False
    assert out["nvml"]["error"].startswith("NVML not loaded: ") and "writable by others" in out["nvml"]["error"]


@pytest.mark.skipif(not PYTHON36.exists(), reason="python3.6 is not installed here")
def test_the_reader_runs_on_python36(build: Any) -> None:
    assert ask(build("h200-py36"), python=str(PYTHON36))["nvml"] == recorded_nvml()
