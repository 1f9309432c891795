"""The pure half of verify: recorded check documents in, a judged ladder out (rung statuses, cause, fix).

tests/fixtures/verify/*.verify.json are real `remediate verify --format json` outputs from GPU machines
(the name says the machine and the case); each host keeps the raw document the remote script printed
(`verification.report`), which is judged again here. A new recorded case needs a line in EXPECTED.
The other cases are that real document with one thing changed, as the host would have printed it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from remediator.cli import main
from remediator.matrix import Target, load_matrix, parse_target
from remediator.transport.base import HostUnreachable
from remediator.transport.fake import FakeConnector, FakeTransport
from remediator.verify import (
    NO_DEVICE,
    VERIFY_ARGV,
    HostVerification,
    VerifyError,
    cudnn_version_text,
    file_version,
    judge,
    parse_verify_output,
    python_candidates,
    verify_fleet,
    verify_host,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "verify"
TARGET = parse_target("pytorch==2.11.0")
MATRIX = load_matrix()

# fixture -> rung statuses (driver, cuda, runtime, matmul), and words the first failure's cause must hold.
EXPECTED: dict[str, tuple[tuple[str, str, str, str], tuple[str, ...]]] = {
    "h200-pass": (("pass", "pass", "pass", "pass"), ()),
    "h200-busy": (("pass", "pass", "pass", "skip"), ()),
    "h200-cvd-empty": (("pass", "fail", "skip", "skip"), ("CUDA_VISIBLE_DEVICES=''", "hides every GPU")),
    "h200-system-cudnn": (("pass", "pass", "fail", "pass"),
                          ("9.19.0", "9.14.0", "/usr/lib/x86_64-linux-gnu", "not from the env")),
    "h200-toolkit-cudart": (("pass", "pass", "pass", "pass"), ()),
    "h200x2-pass": (("pass", "pass", "pass", "pass"), ()),
    "h200x2-busy-gpu1": (("pass", "pass", "pass", "pass"), ()),
    "h200x2-cvd-1": (("pass", "pass", "pass", "pass"), ()),
    "h200x2-cvd-empty": (("pass", "fail", "skip", "skip"), ("CUDA_VISIBLE_DEVICES=''",)),
    "h200x2-system-cudnn": (("pass", "pass", "fail", "pass"), ("9.14.0", "/usr/lib/x86_64-linux-gnu")),
}


def recorded(name: str) -> dict[str, Any]:
    document = json.loads((FIXTURES / f"{name}.verify.json").read_text())
    report: dict[str, Any] = document["hosts"][0]["verification"]["report"]
    return report


def statuses(v: HostVerification) -> tuple[str, ...]:
    return tuple(r.status for r in v.rungs)


def judged(doc: dict[str, Any], target: Target | None = TARGET) -> HostVerification:
    return judge(doc, host="gpu01", target=target, matrix=MATRIX)


def changed(name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(recorded(name))
    change(doc)
    return doc


# --- the real recordings -------------------------------------------------------------------------


def test_every_recorded_fixture_has_an_expectation() -> None:
    names = {p.name.removesuffix(".verify.json") for p in FIXTURES.glob("*.verify.json")}
    assert names == set(EXPECTED), "add the new recording's expected ladder to EXPECTED"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_ladders(name: str) -> None:
    want, words = EXPECTED[name]
    document = json.loads((FIXTURES / f"{name}.verify.json").read_text())
    v = judged(recorded(name))
    assert statuses(v) == want
    # What was printed on the GPU machine is what this code judges now.
    assert tuple(r["status"] for r in document["hosts"][0]["verification"]["rungs"]) == want
    failure = v.first_failure
    if words:
        assert failure is not None
        for word in words:
            assert word in (failure.cause or ""), (word, failure.cause)
        assert failure.fix
    else:
        assert failure is None and v.passed
    assert document["exit_status"] == (2 if failure else 0)


def test_pass_reports_loaded_libraries_and_speed() -> None:
    v = judged(recorded("h200-pass"))
    libs = {lib.kind: lib for lib in v.libraries}
    assert libs["cudnn"].version == "9.19.0" and libs["cudnn"].origin == "env"
    assert libs["cudnn"].built_for_cuda == "13.1"
    assert libs["cudart"].version == "13.0" and libs["cublas"].version == "13.1.0"
    assert libs["cuda"].version == "580.159.04" and libs["cuda"].origin == "system"
    (gpu,) = v.gpus
    assert gpu.matmul is not None and gpu.matmul.status == "pass"
    assert gpu.matmul.tflops is not None and gpu.matmul.tflops > 10
    assert gpu.matmul.rel_error is not None and gpu.matmul.rel_error < 1e-5
    assert "TFLOP/s" in v.rung("matmul").summary
    assert v.verdict == "pass: every rung passed"


def test_busy_gpu_is_reported_and_skipped() -> None:
    v = judged(recorded("h200x2-busy-gpu1"))
    gpu0, gpu1 = v.gpus
    assert gpu1.busy and gpu1.processes[0].name == "python3"
    assert gpu1.matmul is not None and gpu1.matmul.status == "skip"
    assert gpu0.matmul is not None and gpu0.matmul.status == "pass"
    assert any("GPU 1 is busy" in n for n in v.rung("driver").notes)
    assert any("GPU 1 skipped" in n for n in v.rung("matmul").notes)


def test_cuda_visible_devices_subset_names_the_physical_gpu() -> None:
    v = judged(recorded("h200x2-cvd-1"))
    assert "GPU 1 " in v.rung("matmul").summary
    assert v.gpus[0].cuda_ordinal is None and v.gpus[1].cuda_ordinal == 0
    assert any("CUDA_VISIBLE_DEVICES='1'" in n for n in v.rung("cuda").notes)


def test_split_cudnn_fix_names_the_path_entry() -> None:
    v = judged(recorded("h200-system-cudnn"))
    fix = v.rung("runtime").fix or ""
    assert fix.startswith("take /usr/lib/x86_64-linux-gnu off LD_LIBRARY_PATH")


def test_no_gpu_machine_skips_every_rung_as_no_device() -> None:
    # A host with no NVIDIA GPU on its PCI bus (CI, a lab host): nothing to check, nothing broken.
    doc = json.loads((FIXTURES / "nogpu-container.remote.json").read_text())
    v = judged(doc)
    assert statuses(v) == ("skip", "skip", "skip", "skip")
    assert {r.summary for r in v.rungs} == {NO_DEVICE}
    assert v.passed and v.verdict.startswith("pass (4 rung(s) skipped")


def test_gpu_on_the_bus_without_a_driver_fails_rung_1() -> None:
    doc = json.loads((FIXTURES / "nogpu-container.remote.json").read_text())
    doc["driver"]["pci"] = [{"address": "0000:00:06.0", "driver": None}]
    v = judged(doc)
    assert statuses(v) == ("fail", "skip", "skip", "skip")
    driver = v.rung("driver")
    assert driver.summary == "no NVIDIA kernel module loaded (/proc/driver/nvidia/version missing)"
    assert "1 NVIDIA GPU on its PCI bus" in (driver.cause or "") and "modprobe nvidia" in (driver.fix or "")
    assert {r.summary for r in v.rungs[1:]} == {"driver rung failed"}


# --- one thing changed ----------------------------------------------------------------------------


def no_framework_run(doc: dict[str, Any], reason: str) -> None:
    doc["framework"] = {"ran": False}
    doc["runtime"] = doc["matmul"] = None
    doc["skipped"] = {"framework": reason}


def test_libcuda_missing_fails_rung_2() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["cuda"] = {"error": "cannot load libcuda.so.1: libcuda.so.1: cannot open shared object file: No such "
                       "file or directory", "init_rc": None, "devices": [], "timed_out": False, "path": None}
        no_framework_run(doc, "cuda")

    v = judged(changed("h200-pass", change))
    assert statuses(v) == ("pass", "fail", "skip", "skip")
    assert v.rung("cuda").summary == "libcuda.so.1 not found"
    assert "580.159.04" in (v.rung("cuda").fix or "")
    assert v.rung("runtime").summary == "CUDA driver API rung failed"


def test_wrong_matmul_fails_rung_4() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["matmul"]["gpus"][0]["rel_error"] = 0.31

    v = judged(changed("h200-pass", change))
    assert statuses(v) == ("pass", "pass", "pass", "fail")
    rung = v.rung("matmul")
    assert "GPU 0 computed a wrong matmul" in rung.summary and "3.10e-01" in rung.summary
    assert "ECC" in (rung.fix or "")


def test_nan_fails_rung_4() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["matmul"]["gpus"][0].update(finite=False, rel_error=None)

    assert "NaN" in judged(changed("h200-pass", change)).rung("matmul").summary


def test_numpy_missing_fails_rung_4_with_the_install_command() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["matmul"].update(gpus=[], error="cannot import numpy: ModuleNotFoundError: No module named 'numpy'")

    rung = judged(changed("h200-pass", change)).rung("matmul")
    assert rung.status == "fail" and "-m pip install numpy" in (rung.fix or "")


def test_framework_seeing_fewer_gpus_fails_rung_4() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["runtime"]["devices"] = doc["runtime"]["devices"][:1]
        doc["matmul"]["gpus"] = doc["matmul"]["gpus"][:1]

    rung = judged(changed("h200x2-pass", change)).rung("matmul")
    assert rung.status == "fail" and rung.summary == "torch sees 1 of the 2 GPUs CUDA sees"


def test_driver_library_mismatch_fails_rung_1() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["driver"]["nvml"] = {"ok": False, "loaded": True, "error": "Driver/library version mismatch",
                                 "error_code": 18, "errors": {}, "gpus": []}
        doc["cuda"] = None
        no_framework_run(doc, "driver")
        doc["skipped"]["cuda"] = "driver"

    v = judged(changed("h200-pass", change))
    assert statuses(v) == ("fail", "skip", "skip", "skip")
    assert "without a reboot" in (v.rung("driver").cause or "") and "580.159.04" in (v.rung("driver").cause or "")
    assert (v.rung("driver").fix or "").startswith("reboot")


def test_gpu_bound_to_vfio_fails_rung_1() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["driver"]["container"] = False
        doc["driver"]["pci"].append({"address": "0000:00:07.0", "class": "0x030200", "device": "0x2335",
                                     "driver": "vfio-pci"})

    rung = judged(changed("h200-pass", change)).rung("driver")
    assert rung.status == "fail" and "only 1" in rung.summary
    assert "0000:00:07.0 is bound to vfio-pci" in (rung.cause or "")


def test_missing_device_node_fails_rung_1() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["driver"]["device_nodes"]["/dev/nvidia0"] = False

    rung = judged(changed("h200-pass", change)).rung("driver")
    assert rung.status == "fail" and "/dev/nvidia0" in rung.summary and "nvidia-modprobe" in (rung.fix or "")


def test_driver_older_than_any_supported_setup_fails_rung_1() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["driver"]["nvml"]["driver_version"] = "470.57.02"

    rung = judged(changed("h200-pass", change)).rung("driver")
    assert rung.status == "fail" and "580.65.06" in (rung.fix or "")


def test_uvm_missing_names_modprobe() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["driver"]["modules"] = ["nvidia"]
        doc["driver"]["device_nodes"]["/dev/nvidia-uvm"] = False
        doc["cuda"].update(init_rc=999, init_error="CUDA_ERROR_UNKNOWN", device_count=None, devices=[])
        no_framework_run(doc, "cuda")

    rung = judged(changed("h200-pass", change)).rung("cuda")
    assert rung.status == "fail" and "nvidia_uvm" in (rung.cause or "") and "modprobe nvidia-uvm" in (rung.fix or "")


def test_forward_compat_libcuda_refused() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["cuda"].update(init_rc=803, init_error="CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", device_count=None,
                           devices=[], path="/usr/local/cuda-13.0/compat/libcuda.so.580.65.06")
        no_framework_run(doc, "cuda")

    rung = judged(changed("h200-pass", change)).rung("cuda")
    assert "forward-compatibility" in (rung.cause or "")
    assert "/usr/local/cuda-13.0/compat" in (rung.fix or "")


def test_torch_not_installed_for_the_interpreter() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["runtime"] = {"framework": "pytorch", "import_ok": False,
                          "import_error": "ModuleNotFoundError: No module named 'torch'"}
        doc["matmul"] = None
        doc["python"]["executable"] = "/usr/bin/python3"

    v = judged(changed("h200-pass", change))
    assert statuses(v) == ("pass", "pass", "fail", "skip")
    rung = v.rung("runtime")
    assert rung.summary.startswith("cannot import torch")
    assert "/usr/bin/python3" in (rung.cause or "")
    assert "--python" in (rung.fix or "") and "/opt/remediator/venvs/pytorch-2.11.0" in (rung.fix or "")
    assert v.rung("matmul").summary == "runtime rung failed: no GPU op ran"


def test_other_torch_version_than_the_target() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["runtime"]["build"]["version"] = "2.10.0+cu128"

    rung = judged(changed("h200-pass", change)).rung("runtime")
    assert rung.status == "fail" and "2.10.0+cu128 is installed" in rung.summary


def test_cpu_only_build() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["runtime"]["build"].update(cuda=None, is_cuda_build=False, version="2.11.0+cpu")

    rung = judged(changed("h200-pass", change)).rung("runtime")
    assert rung.summary == "torch 2.11.0+cpu is a CPU-only build" and "torch==2.11.0" in (rung.fix or "")


def test_cudnn_built_for_another_cuda_major() -> None:
    def change(doc: dict[str, Any]) -> None:
        for lib in doc["runtime"]["libraries"]:
            if lib["path"].endswith("/libcudnn.so.9"):
                lib["cudart_version"] = 12080

    rung = judged(changed("h200-pass", change)).rung("runtime")
    assert rung.status == "fail" and "built for CUDA 12.8" in rung.summary


def test_cudnn_outside_the_target_range() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["runtime"]["build"]["cudnn"] = "9.1.0"
        for lib in doc["runtime"]["libraries"]:
            if lib["path"].endswith("/libcudnn.so.9"):
                lib["api_version"] = 90100

    rung = judged(changed("h200-pass", change)).rung("runtime")
    assert rung.status == "fail" and ">=9.10,<10" in rung.summary


def test_shadowed_cudart_of_the_same_version_fails_a_wheel_framework() -> None:
    def change(doc: dict[str, Any]) -> None:
        for lib in doc["runtime"]["libraries"]:
            if lib["path"].endswith("/libcudart.so.13"):
                lib["path"] = "/usr/local/cuda-13.0/targets/x86_64-linux/lib/libcudart.so.13.0.96"
        doc["env"]["LD_LIBRARY_PATH"] = "/usr/local/cuda-13.0/targets/x86_64-linux/lib"

    rung = judged(changed("h200-pass", change)).rung("runtime")
    assert rung.status == "fail" and "not from the env's wheel" in rung.summary
    assert rung.fix == ("take /usr/local/cuda-13.0/targets/x86_64-linux/lib off LD_LIBRARY_PATH (it is "
                        "'/usr/local/cuda-13.0/targets/x86_64-linux/lib'); the env's own wheels then load")


@pytest.mark.parametrize(("error", "words"), [
    ("RuntimeError: CUDA error: no kernel image is available for execution on the device", "no GPU code"),
    ("RuntimeError: The NVIDIA driver on your system is too old (found version 12020)", "upgrade the driver to"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB", "other processes"),
])
def test_gpu_op_errors_get_a_plain_cause(error: str, words: str) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["runtime"]["op"] = {"ok": False, "index": 0, "error": error}
        doc["matmul"] = None

    rung = judged(changed("h200-pass", change)).rung("runtime")
    assert rung.status == "fail"
    assert words in (rung.cause or "") + (rung.fix or "")


def test_timeout_and_crash_of_the_framework_child() -> None:
    def hung(doc: dict[str, Any]) -> None:
        doc["framework"].update(timed_out=True, last_step="import", rc=-9)
        doc["runtime"] = doc["matmul"] = None

    v = judged(changed("h200-pass", hung))
    assert statuses(v) == ("pass", "pass", "fail", "skip")
    assert "stuck in importing torch" in v.rung("runtime").summary

    def crashed(doc: dict[str, Any]) -> None:
        doc["framework"].update(signal=6, rc=-6, last_step="matmul:0", stderr_tail="free(): invalid pointer\n")
        doc["matmul"]["gpus"] = []

    v = judged(changed("h200-pass", crashed))
    assert statuses(v) == ("pass", "pass", "pass", "fail")
    assert "SIGABRT during the matmul on GPU 0" in v.rung("matmul").summary
    assert "free(): invalid pointer" in (v.rung("matmul").cause or "")


def test_without_a_target_the_framework_rungs_are_skipped() -> None:
    def change(doc: dict[str, Any]) -> None:
        no_framework_run(doc, "no_target")
        doc["options"].update(framework=None, framework_version=None)

    v = judged(changed("h200-pass", change), target=None)
    assert statuses(v) == ("pass", "pass", "skip", "skip") and v.passed
    assert "--target" in v.rung("runtime").summary


# --- parsing ---------------------------------------------------------------------------------------


def test_output_with_a_banner_before_the_document() -> None:
    text = "Welcome to gpu01\n" + json.dumps(recorded("h200-pass")) + "\n"
    assert parse_verify_output(text.encode(), host="gpu01", target=TARGET, matrix=MATRIX).passed


@pytest.mark.parametrize(("output", "message"), [
    (b"", "printed nothing"),
    (b"Traceback (most recent call last):\n", "not JSON"),
    (b"[1, 2]", "JSON list"),
    (b'{"schema_version": 1}', "not a remediator verify document"),
    (b'{"schema_version": 99, "script": "remediator-verify"}', "schema version 99"),
])
def test_bad_output(output: bytes, message: str) -> None:
    with pytest.raises(VerifyError, match=message):
        parse_verify_output(output, host="gpu01", target=TARGET, matrix=MATRIX)


def test_hostile_document_values_stay_data() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["driver"]["nvml"]["gpus"][0]["name"] = "\x1b[2J$(reboot)\n"

    v = judged(changed("h200-pass", change))
    assert v.gpus[0].name == "\x1b[2J$(reboot)\n"


@pytest.mark.parametrize(("field", "value", "message"), [
    (("runtime", "libraries"), "not a list", "runtime.libraries: expected a list, got a string"),
    (("matmul", "gpus"), [{"index": "zero"}], "matmul.gpus[0].index: expected an integer, got a string"),
    (("matmul", "gpus"), [None, 7], "matmul.gpus[1]: expected an object, got an integer"),
    (("cuda", "init_rc"), "0", "cuda.init_rc: expected an integer, got a string"),
    (("driver", "nvml"), [], "driver.nvml: expected an object, got a list"),
    (("driver", "device_nodes"), {"/dev/nvidia0": "yes"}, "driver.device_nodes./dev/nvidia0: expected true or false"),
    (("framework", "ran"), 1, "framework.ran: expected true or false, got an integer"),
])
def test_malformed_evidence_names_the_field(field: tuple[str, str], value: Any, message: str) -> None:
    """A field of the wrong type is an error naming it, not evidence quietly read as "not seen"."""
    def change(doc: dict[str, Any]) -> None:
        doc[field[0]][field[1]] = value

    with pytest.raises(VerifyError, match="check document is malformed: " + re.escape(message)):
        judged(changed("h200-pass", change))


def test_every_recorded_document_has_the_evidence_shape() -> None:
    """The shape is what the real script writes: every recording from real GPUs and CPU-only hosts passes."""
    from remediator.verify.evidence import check_shape

    names = sorted(p.name.removesuffix(".verify.json") for p in FIXTURES.glob("*.verify.json"))
    assert len(names) >= 10
    for name in names:
        check_shape(recorded(name))


def test_versions() -> None:
    assert cudnn_version_text(91900) == "9.19.0" and cudnn_version_text(8907) == "8.9.7"
    assert file_version("/x/libcudart.so.13.0.96") == "13.0.96" and file_version("/x/libcudnn.so") is None


# --- running on hosts (scripted transports) ---------------------------------------------------------


def stdout_of(name: str) -> bytes:
    return json.dumps(recorded(name)).encode()


def test_default_interpreter_is_the_managed_venv_then_python3() -> None:
    assert python_candidates(TARGET, None) == ("/opt/remediator/venvs/pytorch-2.11.0/bin/python", "python3")
    assert python_candidates(parse_target("torch==2.11"), None, "/srv/venvs/", MATRIX) == (
        "/srv/venvs/pytorch-2.11.0/bin/python", "python3")
    assert python_candidates(TARGET, "/opt/torch/.venv/bin/python3") == ("/opt/torch/.venv/bin/python3",)
    assert python_candidates(None, None) == ("python3",)


def test_verify_host_sends_the_script_to_the_candidates() -> None:
    transport = FakeTransport("gpu01").on("sh -c * python3", stdout=stdout_of("h200-pass"))
    v = verify_host(transport, "gpu01", TARGET, MATRIX)
    assert v.passed
    (call,) = transport.calls
    assert call.argv == (*VERIFY_ARGV, "/opt/remediator/venvs/pytorch-2.11.0/bin/python", "python3")
    assert call.stdin is not None and b"PAYLOAD_OPTIONS = json.loads(" in call.stdin
    assert call.timeout is not None and call.timeout > 300


def test_no_interpreter_on_the_host() -> None:
    transport = FakeTransport("gpu01").on("sh -c * /x/python", returncode=127,
                                          stderr="remediator: no python: /x/python\n")
    with pytest.raises(VerifyError, match="/x/python found on the host"):
        verify_host(transport, "gpu01", TARGET, MATRIX, python="/x/python")


def test_script_failure_is_an_error_with_its_last_line() -> None:
    transport = FakeTransport("gpu01").on("*", returncode=1, stderr="Traceback\nMemoryError\n")
    with pytest.raises(VerifyError, match=r"exit status 1.*MemoryError"):
        verify_host(transport, "gpu01", TARGET, MATRIX)


def test_fleet_keeps_every_host() -> None:
    from remediator.inventory import InventoryHost

    hosts = [InventoryHost("gpu01", "10.0.0.1", target="torch==2.11.0"), InventoryHost("gpu02", "10.0.0.2"),
             InventoryHost("gpu03", "10.0.0.3", target="pytorch==9.9.9")]
    connector = FakeConnector({
        "gpu01": FakeTransport("gpu01").on("*", stdout=stdout_of("h200-system-cudnn")),
        "gpu02": HostUnreachable("gpu02: connection refused"),
        "gpu03": FakeTransport("gpu03"),
    })
    fleet = verify_fleet(hosts, MATRIX, connect=connector)
    assert [r.status for r in fleet] == ["ok", "unreachable", "failed"]
    value = fleet["gpu01"].value
    assert value is not None and value.first_failure is not None and value.first_failure.name == "runtime"
    assert "unknown pytorch version '9.9.9'" in (fleet["gpu03"].error or "")


PROBE_OUT = (Path(__file__).resolve().parent.parent / "fixtures" / "probe" / "h200-ubuntu24.04.probe.json").read_bytes()
TORCH_PY = "/opt/torch/.venv/bin/python3"


def test_fleet_without_target_checks_the_framework_installed_with_its_env() -> None:
    # The surveyed H200 has torch 2.11.0+cu130 (and jax) in /opt/torch/.venv, and no remediate_target.
    from remediator.inventory import InventoryHost

    transport = (FakeTransport("gpu01").on("sh -c 'command -v python3*", stdout=PROBE_OUT)
                 .on(f"sh -c * remediator-verify {TORCH_PY}", stdout=stdout_of("h200-pass")))
    fleet = verify_fleet([InventoryHost("gpu01", "10.0.0.1")], MATRIX, connect=FakeConnector({"gpu01": transport}))
    value = fleet["gpu01"].value
    assert value is not None and value.passed and value.target == "pytorch==2.11.0"
    assert value.notes[0] == "no target given: pytorch==2.11.0 inferred from /opt/torch/.venv"
    assert any("jax 0.11.2 in /opt/torch/.venv is unknown to the matrix" in n for n in value.notes)
    _probe_call, verify_call = transport.calls
    assert verify_call.argv == (*VERIFY_ARGV, TORCH_PY)
    from remediator.cli.verify import render_text

    text = render_text(list(fleet.results), 1.0)
    assert text.startswith("gpu01: PASS   [pytorch==2.11.0, python /opt/torch/.venv/bin/python3 (3.12.3)]")
    assert "  note: no target given: pytorch==2.11.0 inferred from /opt/torch/.venv" in text


def test_fleet_without_target_or_framework_runs_the_driver_rungs_only() -> None:
    from remediator.inventory import InventoryHost

    facts = json.loads(PROBE_OUT)
    for env in facts.get("envs", []):
        env["dists"] = []
    transport = (FakeTransport("gpu01").on("sh -c 'command -v python3*", stdout=json.dumps(facts))
                 .on("sh -c * remediator-verify python3", stdout=stdout_of("h200-pass")))
    fleet = verify_fleet([InventoryHost("gpu01", "10.0.0.1")], MATRIX, connect=FakeConnector({"gpu01": transport}))
    value = fleet["gpu01"].value
    assert value is not None and value.target is None
    assert value.notes[0].startswith("no target and no framework installed that the matrix knows")


# --- the command line, on recorded documents ---------------------------------------------------------


def test_cli_report_json(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["verify", "--report", str(FIXTURES / "h200-system-cudnn.verify.json"), "--format", "json"])
    assert status == 2
    document = json.loads(capsys.readouterr().out)
    assert document["kind"] == "remediator-verify" and document["exit_status"] == 2
    assert document["summary"] == {"passed": 0, "failed": 1, "unreachable": 0, "error": 0}
    host = document["hosts"][0]
    assert host["status"] == "failed"
    assert host["verification"]["first_failure"]["rung"] == 3
    assert document["rungs"][0]["title"].startswith("driver")


def test_cli_report_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--report", str(FIXTURES / "h200x2-pass.verify.json")]) == 0
    out = capsys.readouterr().out
    assert "vm: PASS" in out and "TFLOP/s" in out and "verdict: pass: every rung passed" in out


@pytest.mark.parametrize("argv", [
    ["verify"],
    ["verify", "--local", "-i", "hosts.yml"],
    ["verify", "--local", "--limit", "gpu*"],
    ["verify", "--local", "--target", "pytorch=2.11"],
    ["verify", "--local", "--venv-root", "relative"],
])
def test_cli_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    assert "error" in capsys.readouterr().err.lower()


# --- real TensorFlow on a host with no GPU (tests/integration/test_verify_tf.py makes this document) -----

TF_TARGET = parse_target("tensorflow==2.21.0")


def tf_cpu(change: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """What remote.py printed with tensorflow 2.21.0 (the plain wheel) on a CPU-only machine, default size."""
    document = json.loads((FIXTURES / "tf-cpu-real.json").read_text())
    doc: dict[str, Any] = copy.deepcopy(document["hosts"][0]["verification"]["report"])
    if change is not None:
        change(doc)
    return doc


def test_real_tensorflow_without_a_gpu_reports_what_it_saw_as_no_device_skips() -> None:
    document = json.loads((FIXTURES / "tf-cpu-real.json").read_text())
    v = judged(tf_cpu(), TF_TARGET)
    assert statuses(v) == ("skip", "skip", "skip", "skip") and v.passed and v.gpus == ()
    # What was printed on that machine is what this code judges now.
    assert [r["summary"] for r in document["hosts"][0]["verification"]["rungs"]] == [r.summary for r in v.rungs]
    assert v.rung("driver").summary == v.rung("cuda").summary == NO_DEVICE
    runtime = v.rung("runtime")
    assert runtime.summary == (
        "no device (no NVIDIA GPU on this host's PCI bus): tensorflow 2.21.0 (built for CUDA 12.5.1, cuDNN 9) sees no "
        "GPU; libcudart.so.12, libcublas.so.12, libcudnn.so.9 not found in the env or on the loader path")
    evidence = dict(runtime.evidence)
    assert evidence["libcudnn.so.9"].startswith("libcudnn.so.9 not found; searched ")
    assert "/site-packages/nvidia/cudnn/lib/libcudnn.so.9" in evidence["libcudnn.so.9"]
    matmul = v.rung("matmul")
    assert matmul.summary.startswith("no device (no NVIDIA GPU on this host's PCI bus): tensorflow computes on CPU "
                                     "(not a GPU result): a 4096x4096 float32 matmul on CPU:0 is correct (relative "
                                     "error 3.5e-07)")
    assert "(not a GPU)" in dict(matmul.evidence)["matmul"]
    assert v.verdict.startswith("pass (4 rung(s) skipped") and "every rung passed" not in v.verdict


def test_tensorflow_without_a_gpu_names_the_cuda_libraries_it_found() -> None:
    def change(doc: dict[str, Any]) -> None:
        lib = doc["runtime"]["cuda_libraries"][0]
        lib.update(found=True, via="wheel", error=None, api_version=12050,
                   path="/opt/tf/lib/python3.11/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12")

    summary = judged(tf_cpu(change), TF_TARGET).rung("runtime").summary
    assert "libcublas.so.12, libcudnn.so.9 not found in the env or on the loader path; would load libcudart.so.12 " \
        "12.5 from /opt/tf/lib/python3.11/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12 (via wheel)" in summary


@pytest.mark.parametrize(("change", "words"), [
    (lambda doc: doc["matmul"]["cpu"].update(rel_error=0.2), "wrong matmul on the CPU: relative error 2.00e-01"),
    (lambda doc: doc["matmul"]["cpu"].update(finite=False, rel_error=None), "NaN/Inf from a CPU matmul"),
    (lambda doc: doc["matmul"]["cpu"].update(error="InternalError: oneDNN"), "failed to multiply on the CPU"),
    (lambda doc: doc["matmul"].update(error="cannot import numpy: ImportError: x"), "cannot import numpy"),
])
def test_tensorflow_without_a_gpu_fails_rung_4_when_the_cpu_cannot_compute(
        change: Callable[[dict[str, Any]], None], words: str) -> None:
    v = judged(tf_cpu(change), TF_TARGET)
    assert statuses(v) == ("skip", "skip", "skip", "fail")
    assert words in v.rung("matmul").summary and v.rung("matmul").fix


def test_tensorflow_without_a_gpu_still_fails_a_broken_or_wrong_install() -> None:
    def no_import(doc: dict[str, Any]) -> None:
        doc["runtime"] = {"framework": "tensorflow", "import_ok": False,
                          "import_error": "ModuleNotFoundError: No module named 'tensorflow'"}
        doc["matmul"] = None

    v = judged(tf_cpu(no_import), TF_TARGET)
    assert statuses(v) == ("skip", "skip", "fail", "skip")
    assert "tensorflow is not installed" in (v.rung("runtime").cause or "")
    other = judged(tf_cpu(), parse_target("tensorflow==2.20.0"))
    assert statuses(other) == ("skip", "skip", "fail", "skip")
    assert "2.21.0 is installed" in other.rung("runtime").summary

    def hung(doc: dict[str, Any]) -> None:
        doc["runtime"], doc["matmul"] = None, None
        doc["framework"].update(timed_out=True, last_step="import", rc=-9, signal=9)

    v = judged(tf_cpu(hung), TF_TARGET)
    assert statuses(v) == ("skip", "skip", "fail", "skip") and "stuck in importing tensorflow" in \
        v.rung("runtime").summary
