"""The pure parser: recorded probe documents in, expected facts out; bad documents give clear errors.

Each `tests/fixtures/probe/<name>.probe.json` is what the remote script printed for one real-world
oddity (see tests/fixtures/probe/README.md); `<name>.facts.json` is the facts it must give. To
regenerate the expected facts after an intended parser change (and then read the diff!):

    REMEDIATOR_RECORD_PROBE=1 .venv/bin/pytest tests/unit/test_probe_parse.py -k expected
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remediator.facts import HostFacts
from remediator.probe import ProbeError, parse_probe_document, parse_probe_output
from remediator.probe.parse import TfBuildInfo, TorchVersion, parse_tf_build_info, parse_torch_version

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "probe"
RECORD = os.environ.get("REMEDIATOR_RECORD_PROBE") == "1"
DOCUMENTS = sorted(p.name.removesuffix(".probe.json") for p in FIXTURES.glob("*.probe.json"))
RECORDED = [n for n in DOCUMENTS if n != "schema-v2"]


def document(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.probe.json").read_text())


def facts_of(name: str) -> HostFacts:
    return parse_probe_output((FIXTURES / f"{name}.probe.json").read_bytes(), host=name)


@pytest.mark.parametrize("name", RECORDED)
def test_expected_facts(name: str) -> None:
    facts = facts_of(name)
    path = FIXTURES / f"{name}.facts.json"
    if RECORD:
        path.write_text(facts.to_json(indent=1) + "\n")
    expected = HostFacts.from_json(path.read_text(), source=str(path))
    assert facts == expected
    assert HostFacts.from_json(facts.to_json()) == facts  # what the parser makes, the model loads


# --- one test per real-world oddity, said in words --------------------------------------------


def test_h200_two_cudnn_copies_compat_libcuda_and_alternatives() -> None:
    facts = facts_of("h200-ubuntu24.04")
    assert (facts.driver.version, facts.driver.source, facts.driver.cuda_driver_version) == (
        "580.159.04",
        "nvml",
        "13.0",
    )
    assert facts.driver.kernel_module_version == facts.driver.userspace_version == "580.159.04"
    (gpu,) = facts.gpus
    assert (gpu.name, gpu.memory_mib, gpu.compute_capability, gpu.pci_bus_id) == (
        "NVIDIA H200",
        143771,
        "9.0",
        "00000000:00:06.0",
    )
    default = facts.default_toolkit()
    assert default is not None
    assert (default.path, default.version, default.version_source) == ("/usr/local/cuda-13.0", "13.0.88", "nvcc")
    assert default.via_alternatives and default.install_method == "deb"
    assert "cuda-cudart-13-0=13.0.96-1" in default.packages
    assert [(c.path, c.version) for c in facts.compat_libcuda] == [
        ("/usr/local/cuda-13.0/compat/libcuda.so.580.95.05", "580.95.05")
    ]
    deb, wheel = facts.cudnn
    assert (deb.version, deb.install_method, deb.package, deb.path) == (
        "9.14.0",
        "deb",
        "libcudnn9-cuda-13=9.14.0.64-1",
        "/usr/lib/x86_64-linux-gnu",
    )
    assert deb.header == "/usr/include/x86_64-linux-gnu/cudnn_version_v9.h"  # cudnn_version.h links to it
    assert (wheel.version, wheel.install_method, wheel.package, wheel.env) == (
        "9.19.0",
        "pip",
        "nvidia-cudnn-cu13=9.19.0.56",
        "/opt/torch/.venv",
    )
    venv = next(e for e in facts.envs if e.path == "/opt/torch/.venv")
    assert (venv.kind, venv.python_version) == ("venv", "3.12.3")
    torch = next(f for f in venv.frameworks if f.name == "torch")
    assert (torch.version, torch.cuda_build, torch.cudnn_build, torch.is_cuda_build) == (
        "2.11.0+cu130",
        "13.0",
        "9.19.0",
        True,
    )
    jax = next(f for f in venv.frameworks if f.name == "jax")
    assert (jax.version, jax.cuda_build, jax.is_cuda_build) == ("0.11.2", "13", True)
    assert ("nvidia-cudnn-cu13", "9.19.0.56") in venv.nvidia_wheels
    system = next(e for e in facts.envs if e.kind == "system")
    assert system.python_version == "3.12.3"  # the interpreter that ran the probe said so itself
    assert [(e.path, e.exists) for e in facts.loader.ld_library_path] == [
        ("/usr/local/nvidia/lib64", True),
        ("/usr/local/nvidia/lib", True),
    ]
    assert ("libcuda.so.1", "/usr/local/nvidia/lib64/libcuda.so.1") in facts.loader.cache


def test_real_h200_run_agrees_with_the_rebuilt_layout() -> None:
    """The script on the real H200 (NVML, and again with --no-nvml: nvidia-smi) against the layout
    rebuilt from its survey: the same facts, but for the longer package and wheel lists."""
    real = facts_of("h200-real-device")
    smi = facts_of("h200-real-device-nvidia-smi")
    rebuilt = facts_of("h200-ubuntu24.04")
    assert real.driver == rebuilt.driver
    assert real.gpus == rebuilt.gpus
    assert [g.source for g in real.gpus] == ["nvml"] and [g.source for g in smi.gpus] == ["nvidia-smi"]
    assert [dataclasses.replace(g, source="nvml") for g in smi.gpus] == list(real.gpus)
    assert (smi.driver.source, smi.driver.version, smi.driver.cuda_driver_version) == ("nvidia-smi", "580.159.04", None)
    assert real.cudnn == rebuilt.cudnn == smi.cudnn
    assert real.compat_libcuda == rebuilt.compat_libcuda
    assert [e.frameworks for e in real.envs] == [e.frameworks for e in rebuilt.envs]
    assert sorted((e.path, e.exists) for e in real.loader.ld_so_conf) == sorted(
        (e.path, e.exists) for e in rebuilt.loader.ld_so_conf
    )
    assert [(t.path, t.version, t.install_method, t.via_alternatives) for t in real.toolkits] == [
        (t.path, t.version, t.install_method, t.via_alternatives) for t in rebuilt.toolkits
    ]
    assert real.notes == rebuilt.notes == ()


def test_driver_library_mismatch_keeps_both_versions_and_the_exact_message() -> None:
    driver = facts_of("driver-library-mismatch").driver
    assert driver.kernel_module_version == "535.183.01"
    assert driver.userspace_version == "550.90.07"  # from libnvidia-ml.so.1 -> libnvidia-ml.so.550.90.07
    assert driver.error == "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 550.90"
    assert (driver.source, driver.version) == ("proc", "535.183.01")


def test_removed_package_with_config_files_left_is_not_installed() -> None:
    facts = facts_of("toolkits-alternatives")
    assert not any("12-4" in p for t in facts.toolkits for p in t.packages)


def test_driver_not_loaded() -> None:
    facts = facts_of("driver-not-loaded")
    assert facts.driver.error == (
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running."
    )
    assert (facts.driver.version, facts.driver.kernel_module_version) == (None, None)
    assert facts.driver.userspace_version == "535.161.08"
    (tk,) = facts.toolkits
    assert (tk.path, tk.version, tk.install_method) == ("/usr/lib/nvidia-cuda-toolkit", "11.8.89", "deb")


def test_no_driver_is_said_cleanly() -> None:
    facts = facts_of("no-driver")
    assert facts.driver.source == "none"
    assert facts.driver.version is facts.driver.error is facts.driver.userspace_version is None
    assert facts.gpus == () and facts.toolkits == () and facts.cudnn == ()
    assert any(n.where == "driver" and "no NVIDIA driver found" in n.message for n in facts.notes)
    tf = facts.envs[1].frameworks[0]
    assert (tf.name, tf.is_cuda_build, tf.cuda_build) == ("tensorflow-cpu", False, None)


def test_old_nvidia_smi_without_compute_cap() -> None:
    facts = facts_of("old-driver-no-compute-cap")
    runs = document("old-driver-no-compute-cap")["driver"]["nvidia_smi"]
    # The loaded module (470) says compute_cap is unknown: asked without it at once.
    assert [r["rc"] for r in runs] == [0] and "compute_cap" not in runs[0]["argv"][1]
    # Where the module's version is unknown, the failed query comes first: the parser takes the answer.
    doc = document("old-driver-no-compute-cap")
    failed = dict(runs[0], rc=2, stdout='Field "compute_cap" is not a valid field to query.\n',
                  argv=[runs[0]["argv"][0], runs[0]["argv"][1] + ",compute_cap", runs[0]["argv"][2]])  # fmt: skip
    doc["driver"]["nvidia_smi"] = [failed, *runs]
    assert parse_probe_document(doc, host="old-driver-no-compute-cap") == facts
    assert (facts.driver.source, facts.driver.version, facts.driver.error) == ("nvidia-smi", "470.223.02", None)
    assert [(g.index, g.name, g.compute_capability, g.pci_bus_id) for g in facts.gpus] == [
        (0, "Tesla K80", None, "00000000:00:1E.0"),
        (1, "Tesla K80", None, "00000000:00:1F.0"),
    ]
    (tk,) = facts.toolkits
    assert (tk.install_method, tk.via_alternatives, tk.version) == ("rpm", True, "11.4.4")
    (cudnn,) = facts.cudnn
    assert (cudnn.version, cudnn.install_method, cudnn.package) == ("8.2.4", "rpm", "libcudnn8=8.2.4.15-1.cuda11.4")
    (system,) = facts.envs
    tf = system.frameworks[0]
    assert (tf.name, tf.version, tf.cuda_build, tf.cudnn_build) == ("tensorflow-gpu", "2.6.2", "11.2", "8")


def test_toolkits_side_by_side_and_through_alternatives() -> None:
    facts = facts_of("toolkits-alternatives")
    by_path = {t.path: t for t in facts.toolkits}
    assert set(by_path) == {"/usr/local/cuda-10.1", "/usr/local/cuda-11.2", "/usr/local/cuda-12.4"}
    old, default, new = (
        by_path["/usr/local/cuda-10.1"],
        by_path["/usr/local/cuda-11.2"],
        by_path["/usr/local/cuda-12.4"],
    )
    assert (old.version, old.version_source, old.install_method) == ("10.1.243", "version.txt", "runfile")
    assert (default.version, default.version_source, default.install_method) == ("11.2.2", "version.json", "deb")
    assert default.is_default and default.via_alternatives and not old.is_default
    assert (new.version, new.version_source, new.install_method) == ("12.4.131", "nvcc", "unknown")
    assert [(e.path, e.source, e.exists) for e in facts.loader.ld_library_path] == [
        ("/usr/local/cuda-9.0/lib64", "/etc/environment", False),
        ("/usr/local/cuda-12.4/lib64", "/etc/profile.d/cuda.sh", True),
    ]
    assert [e.source for e in facts.loader.ld_so_conf] == [
        "/etc/ld.so.conf.d/cuda-10-1.conf",
        "/etc/ld.so.conf.d/cuda-11-2.conf",
    ]
    assert any(n.where == "/usr/local/cuda-loop" and n.message == "symlink loop" for n in facts.notes)


def test_cudnn_7_in_cudnn_h_and_8_in_cudnn_version_h() -> None:
    facts = facts_of("cudnn-copies")
    copies = {(c.version, c.path): c for c in facts.cudnn}
    in_101 = copies[("7.6.5", "/usr/local/cuda-10.1/lib64")]
    assert (in_101.header, in_101.in_toolkit, in_101.install_method) == (
        "/usr/local/cuda-10.1/include/cudnn.h",
        "/usr/local/cuda-10.1",
        "tarball",
    )
    in_112 = copies[("8.1.0", "/usr/local/cuda-11.2/targets/x86_64-linux/lib")]
    assert in_112.header == "/usr/local/cuda-11.2/targets/x86_64-linux/include/cudnn_version.h"
    assert in_112.in_toolkit == "/usr/local/cuda-11.2"
    assert "libcudnn_ops_infer.so.8.1.0" in in_112.libraries
    deb = copies[("8.9.7", "/usr/lib/x86_64-linux-gnu")]
    assert (deb.install_method, deb.package) == ("deb", "libcudnn8=8.9.7.29-1+cuda12.2")
    assert deb.header == "/usr/include/x86_64-linux-gnu/cudnn_version_v8.h"  # through /etc/alternatives
    wheel = copies[("8.9.4", "/home/bob/venvs/tf215/lib/python3.10/site-packages/nvidia/cudnn/lib")]
    assert (wheel.header, wheel.package, wheel.libraries) == (
        None,
        "nvidia-cudnn-cu12=8.9.4.25",
        ("libcudnn.so.8", "libcudnn_ops_infer.so.8"),
    )
    stale = copies[("7.6.5", "/usr/include")]
    assert (stale.header, stale.libraries) == ("/usr/include/cudnn.h", ())
    assert any(n.where == "/usr/include/cudnn.h" and "without cuDNN 7 libraries" in n.message for n in facts.notes)
    assert len(facts.cudnn) == 5


def test_tensorflow_build_info_formats() -> None:
    envs = {e.path: e for e in facts_of("frameworks").envs}

    def tf(path: str) -> tuple[Any, ...]:
        (fw,) = envs[path].frameworks
        return fw.name, fw.version, fw.cuda_build, fw.cudnn_build, fw.is_cuda_build

    assert tf("/opt/envs/tf112") == ("tensorflow-gpu", "1.12.0", None, None, True)
    assert tf("/opt/envs/tf115") == ("tensorflow-gpu", "1.15.5", "10.0", "7", True)
    assert tf("/opt/envs/tf21") == ("tensorflow", "2.1.0", "10.1", "7", True)
    assert tf("/opt/envs/tf23") == ("tensorflow", "2.3.0", "10.1", "7", True)
    assert tf("/root/.local") == ("tensorflow", "2.4.1", "11.0", "8", True)
    assert tf("/opt/envs/nightly") == ("tf-nightly", "2.16.0.dev20231101", "12.2", "8", True)
    assert envs["/root/.local"].kind == "user"
    assert (
        envs["/opt/envs/tf115"]
        .frameworks[0]
        .build_info_source.endswith("tensorflow_core/python/platform/build_info.py")
    )


def test_torch_version_py_and_the_cudnn_it_loads() -> None:
    envs = {e.path: e for e in facts_of("frameworks").envs}

    def torch(path: str) -> tuple[Any, ...]:
        fw = next(f for f in envs[path].frameworks if f.name == "torch")
        return fw.version, fw.cuda_build, fw.cudnn_build, fw.is_cuda_build

    assert torch("/opt/envs/torch2") == ("2.11.0+cu130", "13.0", "9.19.0", True)
    assert torch("/opt/envs/torch113") == ("1.13.1+cu117", "11.7", "8.5.0", True)
    assert torch("/opt/envs/torchcpu") == ("2.2.0+cpu", None, None, False)
    assert torch("/opt/conda/envs/pt") == ("1.12.1", "11.3", "8.2.1", True)  # cuDNN from conda, egg-info
    assert envs["/opt/envs/torch2"].python_version == "3.12.3"  # pyvenv.cfg `version_info` (uv)


def test_tensorflow_and_tensorflow_gpu_in_one_env() -> None:
    facts = facts_of("frameworks")
    envs = {e.path: e for e in facts.envs}
    builds = {f.name: (f.version, f.cuda_build, f.cudnn_build) for f in envs["/opt/envs/conflict"].frameworks}
    # RECORD hashes show the build_info.py on disk is tensorflow 2.5.0's, not tensorflow-gpu 2.2.0's.
    assert builds == {"tensorflow": ("2.5.0", "11.2", "8"), "tensorflow-gpu": ("2.2.0", None, None)}
    assert any("not the file tensorflow-gpu 2.2.0 installed" in n.message for n in facts.notes)
    # Without hashes both read the copy on disk, and a note says whose it may be.
    assert any(n.where.startswith("/opt/envs/conflict-nohash/") and "share this file" in n.message for n in facts.notes)


def test_jax_plugin_and_old_jaxlib() -> None:
    envs = {e.path: e for e in facts_of("frameworks").envs}
    (new,) = envs["/opt/envs/jax"].frameworks
    assert (new.version, new.cuda_build, new.cudnn_build, new.is_cuda_build) == ("0.4.30", "12", "9.1.0", True)
    assert new.build_info_source.endswith("jax_cuda12_plugin-0.4.30.dist-info")
    (old,) = envs["/opt/envs/jaxold"].frameworks
    assert (old.version, old.cuda_build, old.cudnn_build) == ("0.4.7", "11", "8.6")


def test_conda_env_toolkit_and_packages() -> None:
    facts = facts_of("frameworks")
    (tk,) = facts.toolkits
    assert (tk.version, tk.install_method, tk.env, tk.packages) == (
        "11.3.1",
        "conda",
        "/opt/conda/envs/pt",
        ("cudatoolkit=11.3.1",),
    )
    (cudnn,) = facts.cudnn
    assert (cudnn.install_method, cudnn.env, cudnn.package) == ("conda", "/opt/conda/envs/pt", "cudnn=8.2.1")
    pt = next(e for e in facts.envs if e.path == "/opt/conda/envs/pt")
    assert (pt.kind, pt.python_version) == ("conda", "3.9.13")
    assert ("cudatoolkit", "11.3.1") in pt.conda_packages


def test_wedged_driver() -> None:
    driver = facts_of("wedged-driver").driver
    assert driver.error == "nvidia-smi timed out (a wedged driver?)"
    assert (driver.source, driver.version) == ("proc", "550.54.15")


# --- hostile and malformed documents ---------------------------------------------------------


def test_hostile_values_stay_inert_data() -> None:
    marker = Path("/tmp/remediator-probe-pwned")
    marker.unlink(missing_ok=True)
    facts = facts_of("hostile-paths")
    assert not marker.exists()  # version.py's `__version__ = __import__('os').system(...)` never ran
    envs = {e.path: e for e in facts.envs}
    assert "/opt/new\nline" in envs
    evil = envs["/home/eve/$(touch pwned);x"]
    (torch,) = evil.frameworks
    assert (torch.version, torch.is_cuda_build, torch.build_info_source) == ("2.0.0", None, "")
    (tk,) = facts.toolkits
    assert (tk.path, tk.version) == ("/usr/local/cuda-12.1`reboot`", "12.1.1'; rm -rf / #")
    assert facts.os.pretty_name == "Ubuntu $(reboot)" and facts.os.version_id == "22.04; rm -rf /"
    assert facts.gpus[0].name == "NVIDIA A100 $(reboot); `id`"
    assert [e.path for e in facts.loader.ld_so_conf] == ["/usr/local/cuda/../../../etc", "/opt/$(id)/lib"]
    assert [e.path for e in facts.loader.ld_library_path] == ["/opt/a b/lib", "/opt/`id`/lib"]


def test_banner_before_the_document_is_a_clear_error() -> None:
    output = (FIXTURES / "banner-before-json.out").read_bytes()
    with pytest.raises(ProbeError) as info:
        parse_probe_output(output, host="gpu07")
    assert info.value.host == "gpu07"
    assert "probe output is not JSON" in info.value.message and "'Welcome to gpu07" in info.value.message
    assert info.value.hint and "stdout" in info.value.hint


def test_wrong_schema_version_is_a_clear_error() -> None:
    with pytest.raises(ProbeError, match=r"schema_version is 2; this remediate reads 1"):
        parse_probe_output((FIXTURES / "schema-v2.probe.json").read_bytes(), host="gpu07")


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (b"", "the probe printed nothing"),
        (b"   \n", "the probe printed nothing"),
        (b"[1, 2]", "probe document: <document>: expected an object, got a list"),
        (b'{"schema_version": "1"}', "schema_version is '1'"),
        (b"{}", "schema_version is None"),
        (b"[" * 100000 + b"]" * 100000, "nested too deep"),
    ],
)
def test_malformed_output(output: bytes, message: str) -> None:
    with pytest.raises(ProbeError) as info:
        parse_probe_output(output, host="h")
    assert message in info.value.message


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("toolkits",), {"path": "/usr/local/cuda"}, "toolkits: expected a list, got an object"),
        (("toolkits", 0, "path"), ["/a"], "toolkits[0].path: expected a string, got a list"),
        (
            ("driver", "nvml", "gpus", 0, "memory_total"),
            "lots",
            "driver.nvml.gpus[0].memory_total: expected an integer",
        ),
        (("driver", "nvml", "ok"), "yes", "driver.nvml.ok: expected true or false"),
        (("envs", 1, "kind"), "docker", "'docker' is not one of system, venv, conda, user"),
        (("lib_dirs", 0, "files", 0), ["libcudnn.so"], "lib_dirs[0].files[0]: expected [name, link target]"),
        (("driver",), "nvidia", "driver: expected an object, got a string"),
    ],
)
def test_wrong_types_name_the_field(path: tuple[Any, ...], value: Any, message: str) -> None:
    doc = document("h200-ubuntu24.04")
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ProbeError) as info:
        parse_probe_document(doc, host="h")
    assert message in info.value.message


def test_undecodable_bytes_and_lone_surrogates_become_replacement_characters() -> None:
    doc = document("no-driver")
    doc["envs"][1]["path"] = "/home/caf\udce9"
    raw = json.dumps(doc).encode()  # ensure_ascii: the surrogate travels as \udce9, as from the script
    facts = parse_probe_output(raw, host="h")
    assert facts.envs[1].path == "/home/caf?"
    facts.to_json().encode("utf-8")
    output = json.dumps(document("no-driver")).encode().replace(b"Ubuntu 20.04.6 LTS", b"Ubuntu \xff")
    assert parse_probe_output(output, host="h").os.pretty_name == "Ubuntu \ufffd"


def test_sections_the_script_lost_are_absent_not_fatal() -> None:
    doc = {"schema_version": 1, "notes": [{"where": "toolkits", "message": "probe section failed: OSError: x"}]}
    facts = parse_probe_document(doc, host="h")
    assert facts.toolkits == () and facts.driver.source == "none"
    assert facts.notes[0].message == "probe section failed: OSError: x"


# --- the small readers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("is_cuda_build = True\n", TfBuildInfo(None, None, True)),
        ("is_cuda_build = False\n", TfBuildInfo(None, None, False)),
        (
            "is_cuda_build = True\ncuda_version_number = '10.0'\ncudnn_version_number = '7'\n",
            TfBuildInfo("10.0", "7", True),
        ),
        (
            "build_info = {'cuda_version': '64_101', 'cudnn_version': '64_7', 'is_cuda_build': True}\n",
            TfBuildInfo("10.1", "7", True),
        ),
        (
            "import collections\nbuild_info = collections.OrderedDict([('cuda_version', '64_112'),"
            " ('cudnn_version', '64_8'), ('is_cuda_build', True)])\n",
            TfBuildInfo("11.2", "8", True),
        ),
        ("build_info = {'cuda_version': '64_90', 'cudnn_version': '64_7'}\n", TfBuildInfo("9.0", "7", True)),
        (
            "from collections import OrderedDict\nbuild_info = OrderedDict(\n  [('cuda_version', '12.5.1'),"
            " ('cudnn_version', '9'), ('is_cuda_build', True)])\n",
            TfBuildInfo("12.5.1", "9", True),
        ),
        ("build_info = __import__('os').system('id')\n", None),
        ("def broken(:\n", None),
        ("# nothing here\n", None),
    ],
)
def test_parse_tf_build_info(text: str, expected: TfBuildInfo | None) -> None:
    assert parse_tf_build_info(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "from typing import Optional\n__version__ = '2.11.0+cu130'\ncuda: Optional[str] = '13.0'\n"
            "git_version = 'abc'\nhip: Optional[str] = None\n",
            TorchVersion("2.11.0+cu130", "13.0", None, "abc"),
        ),
        (
            "__version__ = '1.8.1+rocm4.0.1'\ncuda = None\nhip = '4.0.21025'\n",
            TorchVersion("1.8.1+rocm4.0.1", None, "4.0.21025"),
        ),
        ("__version__ = '1.4.0'\ncuda = '10.1'\n", TorchVersion("1.4.0", "10.1")),
        ("__version__ = open('/etc/passwd').read()\ncuda = '11.8'\n", None),
    ],
)
def test_parse_torch_version(text: str, expected: TorchVersion | None) -> None:
    assert parse_torch_version(text) == expected


# --- malformed host output: a named-field error for that host, never a crash -----------------------

SMI_ROW = "NVIDIA H200, 580.159.04, 143771, GPU-00000000-0000-0000-0000-000000000000, 00000000:00:06.0, 9.0\n"


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        (
            SMI_ROW + "NVIDIA H200, 580.159.04, 143771\n",
            "driver.nvidia_smi[0].stdout: nvidia-smi --query-gpu row 2: expected 6 fields, got 3",
        ),
        ("NVIDIA H200, 580.159.04\n", "nvidia-smi --query-gpu row 1: expected 6 fields, got 2"),
        (SMI_ROW.replace("143771", "143771, 1"), "nvidia-smi --query-gpu row 1: expected 6 fields, got 7"),
        (SMI_ROW.replace("143771", "14 GiB"), "row 1: memory.total: expected MiB, got '14 GiB'"),
        (SMI_ROW.replace("143771", "1" + "0" * 5000), "row 1: memory.total: expected MiB"),
        (SMI_ROW.replace("143771", "\u0663"), "row 1: memory.total: expected MiB, got '\u0663'"),
    ],
)
def test_malformed_nvidia_smi_rows_name_the_row(stdout: str, message: str) -> None:
    doc = document("h200-real-device-nvidia-smi")
    doc["driver"]["nvidia_smi"][0]["stdout"] = stdout
    with pytest.raises(ProbeError) as info:
        parse_probe_document(doc, host="h")
    assert message in info.value.message and info.value.host == "h"


def test_a_message_of_nvidia_smi_among_its_rows_is_a_note() -> None:
    doc = document("h200-real-device-nvidia-smi")
    doc["driver"]["nvidia_smi"][0]["stdout"] = "WARNING: infoROM is corrupted at gpu 0000:00:06.0\n" + SMI_ROW
    facts = parse_probe_document(doc, host="h")
    assert [g.name for g in facts.gpus] == ["NVIDIA H200"] and facts.driver.version == "580.159.04"
    assert ("nvidia-smi", "WARNING: infoROM is corrupted at gpu 0000:00:06.0") in [
        (n.where, n.message) for n in facts.notes
    ]


def test_huge_values_name_the_field() -> None:
    doc = document("h200-real-device")
    doc["driver"]["nvml"]["gpus"][0]["memory_total"] = 10**30
    with pytest.raises(ProbeError, match=r"driver\.nvml\.gpus\[0\]\.memory_total: integer out of range"):
        parse_probe_document(doc, host="h")
    doc = document("h200-real-device")
    doc["toolkits"][0]["path"] = "/" * (2 * 1024 * 1024)
    with pytest.raises(ProbeError, match=r"toolkits\[0\]\.path: a string of 2097152 characters"):
        parse_probe_document(doc, host="h")


def test_an_integer_of_thousands_of_digits_is_not_json_not_a_crash() -> None:
    output = json.dumps(document("no-driver")).replace('"schema_version": 1', '"schema_version": 1' + "0" * 5000)
    with pytest.raises(ProbeError, match="probe output is not JSON"):
        parse_probe_output(output.encode(), host="h")
    doc = document("toolkits-alternatives")
    doc["toolkits"][0]["version_json"] = '{"cuda": {"version": 1' + "0" * 5000 + "}}"
    parse_probe_document(doc, host="h")  # the version comes from elsewhere; no ValueError


def test_unreasonable_numbers_in_file_texts_are_ignored() -> None:
    doc = document("cudnn-copies")
    for header in doc["headers"]:
        header["defines"] = [d.replace(" 8", " 8" + "0" * 5000) for d in header["defines"]]
    for directory in doc["lib_dirs"]:
        directory["files"] = [[n.replace(".so.8", ".so.8" + "0" * 5000), t] for n, t in directory["files"]]
    parse_probe_document(doc, host="h")
    assert parse_tf_build_info("build_info = {'cuda_version': '64_1" + "0" * 5000 + "'}\n") is not None


def _mutations(value: Any) -> list[Any]:
    """Wrong types, out-of-range numbers, and broken versions of the value itself."""
    wrong: list[Any] = [None, True, 0, -1, 10**30, 1.5, "", "x,y", [], {}, [None], {"a": 1}, [["a", "b", "c"]]]
    if isinstance(value, str):
        wrong += [
            value[: len(value) // 2],
            value.split(",")[0],
            value.splitlines()[0] if value.strip() else "\n",
            value.replace(",", ""),
            value.replace(",", ",,"),
            value.replace("\t", ""),
            value + "\x00,\u0663",
            value.replace("1", "1" + "0" * 5000),
            value.replace("=>", ""),
            value.replace("define", "define\t").replace(" ", "\t"),
        ]
    if isinstance(value, list) and value:
        wrong += [value[:-1], value + value, value[::-1], [value[0]]]
    if isinstance(value, dict):
        wrong += [{k: v for k, v in value.items() if k != key} for key in value]
    return wrong


def _slots(value: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) of a decoded document, depth first."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield value, key
        yield from _slots(item)


@pytest.mark.parametrize("name", DOCUMENTS)
def test_fuzzed_documents_give_facts_or_the_probe_error(name: str) -> None:
    """Every field of a real document replaced by a wrong type, a huge number or a truncated or
    reshaped string, one at a time: the parser gives facts or a ProbeError, nothing else."""
    rng = random.Random(f"remediator-{name}")
    doc = document(name)
    slots = list(_slots(doc))
    # Every command output with a string's own mutations (truncated rows, lost separators), and a
    # sample of every field with all of them: a few seconds for all the documents.
    outputs = [(c, k) for c, k in slots if k in ("stdout", "version_json", "version_txt") and isinstance(c[k], str)]
    cases = [(c, k, m) for c, k in outputs for m in _mutations(c[k])[13:]]
    cases += [(c, k, m) for c, k in rng.sample(slots, min(len(slots), 12)) for m in _mutations(c[k])]
    for container, key, mutated in cases:
        original = container[key]
        container[key] = mutated
        try:
            facts = parse_probe_document(doc, host=name)
        except ProbeError as exc:
            assert exc.host == name and exc.message.startswith(("probe document", "probe document schema"))
        else:
            assert HostFacts.from_json(facts.to_json()) == facts
        finally:
            container[key] = original


# --- resolving like the loader: search dirs, launch envs, framework objects, GPUs without a driver ---


def test_loader_search_dirs_launch_envs_and_framework_objects() -> None:
    facts = facts_of("loader-search")
    torch_env = next(e for e in facts.envs if e.path == "/opt/torch21")
    (torch,) = torch_env.frameworks
    cuda_so = next(o for o in torch.elf if o.path.endswith("/libtorch_cuda.so"))
    site = "/opt/torch21/lib/python3.10/site-packages"
    assert "libcudnn.so.8" in cuda_so.needed and cuda_so.runpath == ()
    assert cuda_so.rpath == (
        f"{site}/nvidia/cublas/lib",
        f"{site}/nvidia/cuda_runtime/lib",
        f"{site}/nvidia/cudnn/lib",
        f"{site}/torch/lib",
    )
    (tf,) = next(e for e in facts.envs if e.kind == "conda").frameworks
    pywrap = next(o for o in tf.elf if o.path.endswith("_pywrap_tensorflow_internal.so"))
    assert pywrap.runpath == ("/opt/conda/envs/tf/lib/python3.10/site-packages/tensorflow",)
    assert any("$LIB" in n.message for n in facts.notes)

    dirs = {d.path: d for d in facts.libdirs}
    cudnn = dirs[f"{site}/nvidia/cudnn/lib"]
    assert [(f.name, f.soname, f.stub) for f in cudnn.libs] == [("libcudnn.so.8", "libcudnn.so.8", False)]
    lib64 = dirs["/usr/local/cuda-11.8/lib64"]
    assert lib64.real == "/usr/local/cuda-11.8/targets/x86_64-linux/lib"
    cudart = next(f for f in lib64.libs if f.name == "libcudart.so.11.0")
    assert (cudart.soname, cudart.version) == ("libcudart.so.11.0", "11.8.89")
    (stub,) = dirs["/usr/local/cuda-11.8/lib64/stubs"].libs
    assert stub.stub and stub.version is None
    (old,) = dirs["/opt/old/lib"].libs
    assert (old.soname, old.version) == ("", "10.0")  # a 32-bit object: no SONAME read
    assert not dirs["/opt/env/lib"].exists

    envs = {(e.name, e.env): e for e in facts.launch_envs}
    assert envs[("ssh command", None)].ld_library_path == ("/opt/env/lib",)
    login = envs[("login shell", None)].ld_library_path
    assert login == ("/root/mylibs", "/usr/local/cuda-11.8/lib64", "/opt/env/lib")
    assert envs[("venv activate", "/opt/torch21")].ld_library_path == ("/opt/torch21/lib/extra", *login)
    # `$CUDNN_PATH/lib` came from `$(...)`: nothing the probe can know, so it is left out.
    assert envs[("conda activate", "/opt/conda/envs/tf")].ld_library_path == (*login, "/opt/conda/envs/tf/lib/")
    kernel = envs[("jupyter kernel torch21", "/opt/torch21")]
    assert kernel.ld_library_path == ("/usr/local/cuda-11.8/lib64", *login)
    assert envs[("jupyter kernel python3", "/opt/conda/envs/tf")].ld_library_path == login


def test_gpus_from_proc_and_pci_when_nvml_and_nvidia_smi_fail() -> None:
    facts = facts_of("loader-search")
    assert facts.driver.source == "proc"
    assert [(g.index, g.name, g.pci_bus_id, g.source, g.pci_device_id) for g in facts.gpus] == [
        (0, "NVIDIA H100 80GB HBM3", "0000:17:00.0", "proc", "0x2330"),
        (1, "NVIDIA PCI device 0x2330", "0000:65:00.0", "pci", "0x2330"),
    ]
    doc = document("loader-search")
    doc["driver"]["proc_gpus"] = []
    assert [g.source for g in parse_probe_document(doc, host="x").gpus] == ["pci", "pci"]
    assert [g.source for g in facts_of("old-driver-no-compute-cap").gpus] == ["nvidia-smi", "nvidia-smi"]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("libdirs",), {}, "libdirs: expected a list"),
        (("libdirs", 2, "libs", 0, "stub"), "yes", "libdirs[2].libs[0].stub: expected true or false"),
        (("libdirs", 0, "exists"), 1, "libdirs[0].exists: expected true or false"),
        (("libdirs",), [{"path": "/x"}] * 1001, "libdirs: 1001 entries, more than the 1000 allowed"),
        (("launch_envs", 1, "ld_library_path"), "/a:/b", "launch_envs[1].ld_library_path: expected a list"),
        (("launch_envs", 1, "env"), 3, "launch_envs[1].env: expected a string"),
        (("envs", 1, "elf", 0, "rpath", 0), None, None),
        (("envs", 1, "elf", 0, "needed"), "libcudart.so.12", "envs[1].elf[0].needed: expected a list"),
        (("driver", "pci", 0, "device"), 8240, "driver.pci[0].device: expected a string"),
        (("driver", "proc_gpus"), {"a": 1}, "driver.proc_gpus: expected a list"),
    ],
)
def test_malformed_loader_fields_name_the_field(path: tuple[Any, ...], value: Any, message: str | None) -> None:
    doc = document("loader-search")
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    if message is None:  # a null entry reads as an empty string: no error, nothing invented
        parse_probe_document(doc, host="x")
        return
    with pytest.raises(ProbeError, match=re.escape(message)):
        parse_probe_document(doc, host="x")


def test_a_document_without_the_loader_sections_still_parses() -> None:
    doc = document("loader-search")
    for key in ("libdirs", "launch_envs"):
        del doc[key]
    for env in doc["envs"]:
        env.pop("elf", None)
    del doc["driver"]["pci"], doc["driver"]["proc_gpus"]
    facts = parse_probe_document(doc, host="x")
    assert facts.libdirs == () and facts.launch_envs == () and facts.gpus == ()
    assert all(f.elf == () for e in facts.envs for f in e.frameworks)


def test_library_file_versions() -> None:
    from remediator.probe.parse import _lib_file_version

    assert _lib_file_version("libcudart.so.11.2.152") == "11.2.152"
    assert _lib_file_version("libcudnn.so.8.1.1") == "8.1.1"
    assert _lib_file_version("libcuda.so.535.104.05") == "535.104.05"
    assert _lib_file_version("libcuda.so") is None
    assert _lib_file_version("libcudart.so.1" + "0" * 40) is None
