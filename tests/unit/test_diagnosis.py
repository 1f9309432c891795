"""Diagnosis on facts modelled on real reported breakages; each test cites the report it reproduces.

Every diagnosis code has at least one test here that fails if its rule is removed
(test_every_code_is_exercised keeps that true as codes are added).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from factories import (
    CompatLibcuda,
    cudnn_copy_in_toolkit,
    cudnn_deb,
    cudnn_wheel,
    driver,
    host,
    ld_path,
    tf,
    toolkit,
    torch,
    venv,
)

from remediator.diagnosis import CODES, Finding, diagnose, has_errors
from remediator.facts import (
    Driver,
    ElfDeps,
    HostFacts,
    LaunchEnv,
    LdPathEntry,
    LibDir,
    LibFile,
    LoaderConfig,
    PythonEnv,
)
from remediator.matrix import load_matrix, parse_target
from remediator.resolve import Resolver, version_from_name

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MATRIX = load_matrix()
SEEN_CODES: set[str] = set()


def run(facts: HostFacts, target: str | None) -> list[Finding]:
    findings = diagnose(facts, parse_target(target) if target else None, MATRIX)
    SEEN_CODES.update(f.code for f in findings)
    return findings


def codes(findings: list[Finding], severity: str | None = None) -> set[str]:
    return {f.code for f in findings if severity is None or f.severity == severity}


def one(findings: list[Finding], code: str) -> Finding:
    matching = [f for f in findings if f.code == code]
    assert len(matching) == 1, f"expected one {code}, got {[f.code for f in findings]}"
    return matching[0]


TF24_ENV = venv("/opt/venvs/tf", "3.8.10", tf("2.4.1", "11.0", "8"))


def healthy_tf24(**overrides: object) -> HostFacts:
    # The configuration tensorflow.org tested for 2.4: CUDA 11.0, cuDNN 8.0, Python 3.6-3.8.
    base: dict[str, object] = dict(
        driver=driver("450.80.02"),
        toolkits=(toolkit("11.0.221", default=True),),
        cudnn=(cudnn_copy_in_toolkit("8.0.5", "/usr/local/cuda-11.0"),),
        loader=ld_path("/usr/local/cuda/lib64"),
        envs=(TF24_ENV,),
    )
    base.update(overrides)
    return host(**base)


# --- healthy stacks -----------------------------------------------------------------------------


def test_healthy_tf24_on_system_cuda_has_no_finding() -> None:
    assert run(healthy_tf24(), "tensorflow==2.4.1") == []


def test_healthy_pytorch_wheel_needs_only_a_driver() -> None:
    env = "/opt/torch"
    facts = host(
        driver=driver("580.65.06"),
        cudnn=(cudnn_wheel("9.19.0", env, py="3.12", dist="nvidia-cudnn-cu13"),),
        envs=(venv(env, "3.12.3", torch("2.11.0+cu130", "13.0"), wheels=(("nvidia-cudnn-cu13", "9.19.0.56"),)),),
    )
    assert not has_errors(run(facts, "pytorch==2.11.0"))


def test_real_h200_host_survey_is_healthy_for_its_pytorch() -> None:
    """Facts of the real H200 host in tests/fixtures (driver 580.159.04, CUDA 13.0 via alternatives,
    system cuDNN 9.14 from libcudnn9-cuda-13, cuDNN 9.19 wheel in /opt/torch/.venv, compat libcuda)."""
    facts = HostFacts.from_json((FIXTURES / "h200-ubuntu24.04.facts.json").read_text(), source="h200")
    findings = run(facts, "pytorch==2.11.0")
    assert not has_errors(findings), findings
    # Two cuDNN copies on one host are not a problem while nothing puts the system one in front.
    assert "LIB_SHADOWED" not in codes(findings)


def test_no_target_checks_only_target_free_rules() -> None:
    facts = healthy_tf24(driver=Driver(source="none", error="NVIDIA-SMI has failed"))
    assert codes(run(facts, None)) == {"DRIVER_MISSING"}


# --- driver -------------------------------------------------------------------------------------


def test_driver_library_mismatch_after_unattended_upgrade() -> None:
    # https://github.com/lyulyul/shine-cluster/issues/30: unattended-upgrade moved the userspace
    # driver to 460.73.01 while the 460.56 kernel module stayed loaded.
    facts = healthy_tf24(driver=Driver(
        version=None, source="nvidia-smi", kernel_module_version="460.56", userspace_version="460.73.01",
        error="Failed to initialize NVML: Driver/library version mismatch"))
    f = one(run(facts, "tensorflow==2.4.1"), "DRIVER_LIBRARY_MISMATCH")
    assert f.severity == "error"
    assert ("kernel module", "460.56") in f.evidence
    assert "reboot" in (f.fix or "")


def test_mismatch_detected_from_versions_alone() -> None:
    facts = healthy_tf24(driver=Driver(version="535.161.08", source="nvml", kernel_module_version="535.129.03",
                                       userspace_version="535.161.08"))
    assert "DRIVER_LIBRARY_MISMATCH" in codes(run(facts, None))


def test_no_driver_at_all() -> None:
    facts = healthy_tf24(driver=Driver(source="none", error="NVIDIA-SMI has failed because it couldn't "
                                       "communicate with the NVIDIA driver."))
    assert codes(run(facts, "tensorflow==2.4.1"), "error") >= {"DRIVER_MISSING"}


def test_driver_too_old_for_cuda8_tensorflow() -> None:
    # https://github.com/NVIDIA/nvidia-docker/issues/399: driver 367.35 with a CUDA 8.0 TensorFlow
    # ("CUDA driver version is insufficient for CUDA runtime version"); CUDA 8.0 GA2 needs >= 375.26.
    facts = host(driver=driver("367.35"), toolkits=(toolkit("8.0.61", default=True),),
                 cudnn=(cudnn_copy_in_toolkit("5.1.10", "/usr/local/cuda-8.0"),),
                 envs=(venv("/opt/tf", "3.5.2", tf("1.2.0", "8.0", "5.1", name="tensorflow-gpu")),))
    f = one(run(facts, "tensorflow==1.2.0"), "DRIVER_TOO_OLD")
    assert ("driver", "367.35") in f.evidence
    assert f.severity == "error"


def test_driver_display_keeps_nvidia_zero_padding() -> None:
    # 450.51.06 must display as written, not as packaging's 450.51.6.
    facts = healthy_tf24(driver=driver("418.87.01"))
    f = one(run(facts, "tensorflow==2.4.1"), "DRIVER_TOO_OLD")
    assert "418.87.01" in f.message


def test_driver_below_tested_but_within_minor_version_compat() -> None:
    # TF 2.12 was tested with CUDA 11.8 (driver >= 520.61.05); a 470 driver still runs 11.x code under
    # CUDA minor version compatibility (>= 450.80.02), without PTX JIT.
    facts = host(driver=driver("470.57.02"), toolkits=(toolkit("11.8.89", default=True),),
                 cudnn=(cudnn_deb("8.6.0", "libcudnn8=8.6.0.163-1+cuda11.8"),),
                 envs=(venv("/opt/tf212", "3.10.12", tf("2.12.0", "11.8", "8")),))
    found = run(facts, "tensorflow==2.12.0")
    f = one(found, "DRIVER_MINOR_COMPAT")
    assert f.severity == "warning"
    assert not has_errors(found), found


def test_driver_too_old_for_a_toolkit_present() -> None:
    # https://github.com/tensorflow/tensorflow/issues/31319: driver 410.72 on a host that also carries
    # a newer toolkit it cannot run.
    facts = healthy_tf24(toolkits=(toolkit("11.0.221", default=True), toolkit("12.4.131")))
    f = one(run(facts, "tensorflow==2.4.1"), "DRIVER_TOO_OLD_FOR_TOOLKIT")
    assert ("toolkit", "/usr/local/cuda-12.4") in f.evidence
    assert f.severity == "warning"


def test_forward_compat_libcuda_is_named_as_evidence() -> None:
    facts = healthy_tf24(toolkits=(toolkit("11.0.221", default=True), toolkit("12.4.131")),
                         compat_libcuda=(CompatLibcuda("/usr/local/cuda-12.4/compat/libcuda.so.550.54.15",
                                                       "550.54.15"),))
    f = one(run(facts, None), "DRIVER_TOO_OLD_FOR_TOOLKIT")
    assert any(k == "forward-compat libcuda" for k, _ in f.evidence)


# --- toolkits -----------------------------------------------------------------------------------


def test_two_toolkits_and_cuda_link_at_the_wrong_one() -> None:
    # https://github.com/tensorflow/tensorflow/issues/45930: TF 2.4 wants libcudart.so.11.0, the host
    # has CUDA 10.1 as /usr/local/cuda beside the right toolkit.
    facts = healthy_tf24(
        toolkits=(toolkit("10.1.243", default=True), toolkit("11.0.221")),
        loader=ld_path("/usr/local/cuda/lib64"),
    )
    findings = run(facts, "tensorflow==2.4.1")
    wrong = [f for f in findings if f.code == "CUDA_WRONG_DEFAULT"]
    assert {f.severity for f in wrong} == {"error"}
    assert any(("/usr/local/cuda", "/usr/local/cuda-10.1") in f.evidence for f in wrong)
    assert any(("reached", "/usr/local/cuda-10.1") in f.evidence for f in wrong)


def test_loader_reaching_wrong_toolkit_through_ld_library_path() -> None:
    # https://github.com/NVIDIA/tensorflow/issues/55: /usr/local/cuda-11.2/lib64 on LD_LIBRARY_PATH
    # ahead of the toolkit the framework needs.
    facts = healthy_tf24(
        toolkits=(toolkit("11.0.221", default=True), toolkit("10.2.89")),
        loader=ld_path("/usr/local/cuda-10.2/lib64", "/usr/local/cuda/lib64"),
    )
    f = one(run(facts, "tensorflow==2.4.1"), "CUDA_WRONG_DEFAULT")
    assert ("reached", "/usr/local/cuda-10.2") in f.evidence


def test_newer_11x_toolkit_is_fine_for_tf_built_with_112() -> None:
    # CUDA minor version compatibility: TF 2.6 built against 11.2 runs on a later 11.y toolkit
    # (https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html).
    facts = healthy_tf24(driver=driver("470.57.02"), toolkits=(toolkit("11.4.152", default=True),),
                         cudnn=(cudnn_copy_in_toolkit("8.2.4", "/usr/local/cuda-11.4"),),
                         envs=(venv("/opt/venvs/tf", "3.9.7", tf("2.6.0", "11.2", "8")),))
    assert not has_errors(run(facts, "tensorflow==2.6.0"))


def test_tf24_needs_exactly_cuda_110() -> None:
    # https://github.com/tensorflow/tensorflow/issues/45263: TF 2.4 loads libcusolver.so.10, which only
    # CUDA 11.0 ships, so an 11.1+ toolkit alone does not run it.
    facts = healthy_tf24(toolkits=(toolkit("11.4.152", default=True),),
                         cudnn=(cudnn_copy_in_toolkit("8.2.4", "/usr/local/cuda-11.4"),))
    assert "CUDA_MISSING" in codes(run(facts, "tensorflow==2.4.1"))


def test_missing_toolkit() -> None:
    facts = healthy_tf24(toolkits=(toolkit("10.1.243", default=True),), cudnn=())
    found = codes(run(facts, "tensorflow==2.4.1"))
    assert {"CUDA_MISSING", "CUDNN_MISSING"} <= found


# --- cuDNN --------------------------------------------------------------------------------------


def test_cudnn_older_minor_than_built_with() -> None:
    # https://github.com/tensorflow/tensorflow/issues/60913: "Loaded runtime CuDNN library: 8.5.0 but
    # source was compiled with: 8.6.0" on TF 2.12.
    facts = host(driver=driver("525.85.12"), toolkits=(toolkit("11.8.89", default=True),),
                 cudnn=(cudnn_deb("8.5.0", "libcudnn8=8.5.0.96-1+cuda11.7"),),
                 envs=(venv("/opt/tf212", "3.10.12", tf("2.12.0", "11.8", "8")),))
    f = one(run(facts, "tensorflow==2.12.0"), "CUDNN_MISMATCH")
    assert ("reached", "8.5.0 (/usr/lib/x86_64-linux-gnu)") in f.evidence


def test_cudnn_copied_into_toolkit_beside_packaged_one() -> None:
    # https://github.com/gladiaio/gladia/issues/928: the tarball cuDNN copied into /usr/local/cuda/lib64
    # over a host that also has the libcudnn8 package.
    facts = healthy_tf24(cudnn=(cudnn_copy_in_toolkit("8.5.0", "/usr/local/cuda-11.0"),
                                cudnn_deb("8.0.5", "libcudnn8=8.0.5.39-1+cuda11.0")))
    f = one(run(facts, "tensorflow==2.4.1"), "CUDNN_SHADOWED")
    assert ("reached first", "/usr/local/cuda-11.0/lib64") in f.evidence


def test_same_cudnn_copied_twice_is_not_shadowing() -> None:
    facts = healthy_tf24(cudnn=(cudnn_copy_in_toolkit("8.0.5", "/usr/local/cuda-11.0"),
                                cudnn_deb("8.0.5", "libcudnn8=8.0.5.39-1+cuda11.0")))
    assert "CUDNN_SHADOWED" not in codes(run(facts, "tensorflow==2.4.1"))


def test_cudnn7_for_tf24_is_a_mismatch() -> None:
    # https://github.com/tensorflow/tensorflow/issues/41091: runtime cuDNN older than the build.
    facts = healthy_tf24(cudnn=(cudnn_copy_in_toolkit("7.6.5", "/usr/local/cuda-11.0"),))
    assert "CUDNN_MISMATCH" in codes(run(facts, "tensorflow==2.4.1"), "error")


# --- frameworks and Python ----------------------------------------------------------------------


def test_tensorflow_and_tensorflow_gpu_side_by_side() -> None:
    # https://github.com/tensorflow/tensorflow/issues/35113: tensorflow 1.14.0 and tensorflow-gpu 1.14.0
    # in one env; TF ran on the CPU.
    facts = host(driver=driver("410.104"), toolkits=(toolkit("10.0.130", default=True),),
                 cudnn=(cudnn_copy_in_toolkit("7.4.2", "/usr/local/cuda-10.0"),),
                 envs=(venv("/home/dev/venv", "3.6.8", tf("1.14.0", "10.0", "7"),
                            tf("1.14.0", "10.0", "7", name="tensorflow-gpu")),))
    found = run(facts, "tensorflow==1.14.0")
    f = one(found, "FRAMEWORK_CONFLICT")
    assert "tensorflow 1.14.0" in dict(f.evidence)["installed"]
    # the plain `tensorflow` 1.14 package is CPU-only: GPU support was tensorflow-gpu then
    assert "FRAMEWORK_CPU_ONLY" in codes(found)


def test_cpu_only_torch_wheel() -> None:
    # https://github.com/xxyzz/WordDumb/issues/91: the CPU build of torch installed; "Torch not
    # compiled with CUDA enabled".
    facts = host(envs=(venv("/opt/app", "3.11.9", torch("2.11.0+cpu", None)),))
    f = one(run(facts, "pytorch==2.11.0"), "FRAMEWORK_CPU_ONLY")
    assert f.severity == "error"


def test_tensorflow_cpu_package() -> None:
    facts = healthy_tf24(envs=(venv("/opt/venvs/tf", "3.8.10",
                                    tf("2.4.1", None, None, name="tensorflow-cpu", cuda_build=False)),))
    assert "FRAMEWORK_CPU_ONLY" in codes(run(facts, "tensorflow==2.4.1"))


def test_python_outside_supported_range() -> None:
    # TF 2.4 wheels exist for Python 3.6-3.8 only (tensorflow.org tested build configurations); a venv
    # whose interpreter was upgraded to 3.10 under it cannot import them.
    facts = healthy_tf24(envs=(venv("/opt/venvs/tf", "3.10.12", tf("2.4.1", "11.0", "8")),))
    f = one(run(facts, "tensorflow==2.4.1"), "PYTHON_UNSUPPORTED")
    assert ("python", "3.10.12") in f.evidence


def test_no_python_in_range_explains_a_missing_framework() -> None:
    # https://github.com/tensorflow/tensorflow/issues/62054: pip finds no TensorFlow for a Python newer
    # than the release supports, so it is simply not installed.
    facts = healthy_tf24(envs=(venv("/usr", "3.11.2", kind="system"), venv("/home/u/venvs/tf", "3.11.2")))
    found = run(facts, "tensorflow==2.4.1")
    assert {"FRAMEWORK_MISSING", "PYTHON_UNSUPPORTED"} <= codes(found)
    assert ("pythons", "3.11.2") in one(found, "PYTHON_UNSUPPORTED").evidence


def test_framework_missing_and_version_mismatch() -> None:
    assert "FRAMEWORK_MISSING" in codes(run(healthy_tf24(envs=()), "tensorflow==2.4.1"))
    other = healthy_tf24(envs=(venv("/opt/venvs/tf", "3.8.10", tf("2.3.0", "10.1", "7")),))
    assert "FRAMEWORK_VERSION_MISMATCH" in codes(run(other, "tensorflow==2.4.1"))


# --- loader -------------------------------------------------------------------------------------


def test_system_cudnn_on_ld_library_path_shadows_torch_wheel() -> None:
    # https://github.com/pytorch/pytorch/issues/80637: LD_LIBRARY_PATH with a cuDNN 8.0.3 dir in front
    # of the cuDNN 8.3.2 that the torch 1.12 cu113 wheel bundles.
    env = "/home/rzou/venv"
    facts = host(
        driver=driver("470.57.02"),
        toolkits=(toolkit("11.0.221", default=True),),
        cudnn=(cudnn_copy_in_toolkit("8.0.3", "/usr/local/cuda-11.0"),),
        loader=ld_path("/usr/local/cuda-11.0/lib64", "/usr/local/cuda/lib64"),
        envs=(venv(env, "3.8.13", torch("1.12.0+cu113", "11.3")),),
    )
    f = one(run(facts, "pytorch==1.12.0"), "LIB_SHADOWED")
    assert ("shadowing", "8.0.3 (/usr/local/cuda-11.0/lib64)") in f.evidence


def test_env_libs_on_global_path_shadow_system_stack() -> None:
    # https://github.com/tensorflow/tensorflow/issues/60750: LD_LIBRARY_PATH order between a conda
    # env's libraries and the system ones decides which cuDNN TensorFlow loads.
    conda_env = "/opt/conda/envs/old"
    facts = healthy_tf24(
        loader=ld_path(f"{conda_env}/lib", "/usr/local/cuda/lib64"),
        envs=(TF24_ENV, venv(conda_env, "3.7.12", kind="conda", conda=(("cudatoolkit", "10.1.243"),))),
    )
    f = one(run(facts, "tensorflow==2.4.1"), "LIB_SHADOWED")
    assert ("env", conda_env) in f.evidence


def test_ld_library_path_entry_that_does_not_exist() -> None:
    # https://github.com/pytorch/pytorch/issues/80637 again: LD_LIBRARY_PATH full of cluster paths,
    # some of which are gone on the host.
    facts = healthy_tf24(loader=LoaderConfig(ld_library_path=(
        LdPathEntry("/public/apps/cuda/11.0/lib64", "login", exists=False),
        LdPathEntry("/usr/local/cuda/lib64", "/etc/profile.d/cuda.sh"),
    )))
    f = one(run(facts, "tensorflow==2.4.1"), "LDPATH_MISSING_DIR")
    assert f.severity == "warning"
    assert not has_errors(run(facts, "tensorflow==2.4.1"))


# --- untrusted input ----------------------------------------------------------------------------


def test_garbage_versions_from_a_host_do_not_crash() -> None:
    facts = healthy_tf24(driver=driver("$(reboot)"), toolkits=(toolkit("11.0.221", default=True),
                                                                toolkit("latest\n", path="/usr/local/cuda-x")))
    found = run(facts, "tensorflow==2.4.1")
    assert "UNPARSABLE_VERSION" in codes(found)


def test_findings_serialise_to_json() -> None:
    findings = run(healthy_tf24(toolkits=(toolkit("10.1.243", default=True), toolkit("11.0.221"))),
                   "tensorflow==2.4.1")
    data = json.loads(json.dumps([f.to_dict() for f in findings]))
    assert {"code", "severity", "message", "evidence", "fix"} <= set(data[0])


def test_diagnosis_is_deterministic() -> None:
    facts = healthy_tf24(toolkits=(toolkit("10.1.243", default=True), toolkit("11.0.221")))
    assert run(facts, "tensorflow==2.4.1") == run(facts, "tensorflow==2.4.1")


# --- libraries resolved like the loader (remediator.linkage) -------------------------------------------

SYS = "/usr/lib/x86_64-linux-gnu"


def lib(name: str, real: str | None = None, *, stub: bool = False) -> LibFile:
    real_name = real or name
    return LibFile(name=name, soname=name, real=real_name, version=version_from_name(real_name.rsplit("/", 1)[-1]),
                   stub=stub)


def libdir(path: str, *libs: LibFile, exists: bool = True) -> LibDir:
    return LibDir(path=path, real=path, exists=exists, libs=tuple(
        dataclasses.replace(f, real=f"{path}/{f.real}") if f.real and "/" not in f.real else f for f in libs))


DRIVER_LIBS = libdir(SYS, lib("libcuda.so.1", "libcuda.so.535.104.05"))


def resolved_host(*dirs: LibDir, envs: tuple[PythonEnv, ...] = (), launch: tuple[LaunchEnv, ...] = (),
                  cache: tuple[tuple[str, str], ...] = (), **kw: object) -> HostFacts:
    loader = LoaderConfig(cache=cache or tuple((f.name, f"{d.path}/{f.name}") for d in (DRIVER_LIBS, *dirs)
                                               if d.path.startswith(("/usr/lib", "/lib")) for f in d.libs))
    merged: dict[str, LibDir] = {}
    for d in (DRIVER_LIBS, *dirs):  # one entry per directory, as the probe reports them
        merged[d.path] = dataclasses.replace(d, libs=merged[d.path].libs + d.libs) if d.path in merged else d
    base: dict[str, object] = dict(driver=driver("535.104.05"), libdirs=tuple(merged.values()), envs=envs,
                                   launch_envs=launch, loader=loader)
    base.update(kw)
    return host(**base)


def test_the_loaders_order_rpath_then_ld_library_path_then_runpath_then_cache() -> None:
    a, b, c, d = (libdir(f"/d{i}", lib("libcudnn.so.8", f"libcudnn.so.8.{i}.0")) for i in range(4))
    facts = resolved_host(a, b, c, d, cache=(("libcudnn.so.8", "/d3/libcudnn.so.8"),))
    r = Resolver(facts)
    ld = LaunchEnv("login shell", ("/d1",), "/etc/profile.d/x.sh")
    assert r.resolve("libcudnn.so.8", ld, ElfDeps("o.so", rpath=("/d0",))).dir == "/d0"
    # A DT_RUNPATH turns DT_RPATH off, and comes after LD_LIBRARY_PATH.
    assert r.resolve("libcudnn.so.8", ld, ElfDeps("o.so", rpath=("/d0",), runpath=("/d2",))).dir == "/d1"
    assert r.resolve("libcudnn.so.8", None, ElfDeps("o.so", runpath=("/d2",))).dir == "/d2"
    hit = r.resolve("libcudnn.so.8")
    assert (hit.dir, hit.how, hit.version) == ("/d3", "ld.so.cache", "8.3.0")
    assert r.resolve("libcudnn.so.9").file is None


def test_the_toolkit_stub_as_the_only_libcuda_blocks_every_cuda_program() -> None:
    # Container images register lib64/stubs in ld.so.conf; ldconfig puts it before the driver's copy.
    stubs = libdir("/usr/local/cuda-12.2/lib64/stubs", lib("libcuda.so.1", "libcuda.so", stub=True))
    facts = resolved_host(stubs, cache=(("libcuda.so.1", f"{stubs.path}/libcuda.so.1"),
                                        ("libcuda.so.1", f"{SYS}/libcuda.so.1")))
    f = one(run(facts, None), "LIBCUDA_STUB")
    ev = dict(f.evidence)
    assert ev["reaches"] == f"{stubs.path}/libcuda.so.1" and ev["how"] == "ld.so.cache"
    assert "535.104.05" in ev["should reach"]


def test_a_loaded_module_without_its_userspace_library() -> None:
    facts = dataclasses.replace(resolved_host(), libdirs=(libdir(SYS),), loader=LoaderConfig(),
                                driver=Driver(version="535.104.05", source="proc", kernel_module_version="535.104.05"))
    f = one(run(facts, None), "DRIVER_USERSPACE_MISSING")
    assert dict(f.evidence)["reaches"] == "nothing" and "libnvidia-compute-535" in (f.fix or "")


def test_plain_tensorflow_215_without_its_cuda_wheels_finds_no_cuda_12() -> None:
    """pip install tensorflow==2.15.0 without [and-cuda] on a host with CUDA 11.8 and cuDNN 8.6 debs."""
    env = venv("/opt/tf", "3.11.4", tf("2.15.0", "12.2", "8"))
    facts = resolved_host(libdir(SYS, lib("libcudnn.so.8", "libcudnn.so.8.6.0")),
                          libdir("/usr/local/cuda-11.8/lib64", lib("libcudart.so.11.0", "libcudart.so.11.8.89")),
                          envs=(env,), toolkits=(toolkit("11.8.89", default=True),),
                          cudnn=(cudnn_deb("8.6.0", "libcudnn8=8.6.0.163-1+cuda11.8"),))
    findings = run(facts, "tensorflow==2.15.0")
    unresolved = {dict(f.evidence)["soname"]: f for f in findings if f.code == "CUDA_LIB_UNRESOLVED"}
    assert set(unresolved) == {"libcudart.so.12", "libcublas.so.12"}
    assert "[and-cuda]" in (unresolved["libcudart.so.12"].fix or "")
    # The system's cuDNN 8.6 has the soname TF asks for: it is what TF loads, and 8.6 is too old for 2.15.
    assert "cuDNN 8.6.0" in one(findings, "CUDNN_MISMATCH").message


def test_tensorflow_with_its_wheels_is_healthy_whatever_the_system_has() -> None:
    env = venv("/opt/tf", "3.11.4", tf("2.15.0", "12.2", "8"), wheels=(("nvidia-cudnn-cu12", "8.9.4.25"),))
    site = "/opt/tf/lib/python3.11/site-packages/nvidia"
    facts = resolved_host(libdir(f"{site}/cuda_runtime/lib", lib("libcudart.so.12", "libcudart.so.12.2.140")),
                          libdir(f"{site}/cublas/lib", lib("libcublas.so.12", "libcublas.so.12.2.5.6")),
                          libdir(f"{site}/cudnn/lib", lib("libcudnn.so.8", "libcudnn.so.8.9.4")),
                          libdir("/usr/local/cuda-11.4/lib64", lib("libcudart.so.11.0", "libcudart.so.11.4.148")),
                          envs=(env,), toolkits=(toolkit("11.4.148", default=True),))
    assert not has_errors(run(facts, "tensorflow==2.15.0"))


def test_a_conda_tensorflow_finds_its_libraries_only_in_an_activated_shell() -> None:
    """conda's cudatoolkit + cudnn with LD_LIBRARY_PATH exported in activate.d: a Jupyter kernel or an
    ssh command starts the same Python without it."""
    prefix = "/home/u/miniconda3/envs/tf"
    env = venv(prefix, "3.9.16", tf("2.10.0", "11.2", "8"), kind="conda",
               conda=(("cudatoolkit", "11.2.2"), ("cudnn", "8.1.0.77")))
    libs = libdir(f"{prefix}/lib", lib("libcudart.so.11.0", "libcudart.so.11.2.152"),
                  lib("libcublas.so.11", "libcublas.so.11.4.1.1043"), lib("libcudnn.so.8", "libcudnn.so.8.1.0"))
    launch = (LaunchEnv("ssh command"), LaunchEnv("conda activate", (f"{prefix}/lib",),
                                                  f"{prefix}/etc/conda/activate.d/env_vars.sh", prefix),
              LaunchEnv("jupyter kernel tf", (), f"{prefix}/share/jupyter/kernels/tf/kernel.json", prefix))
    findings = run(resolved_host(libs, envs=(env,), launch=launch), "tensorflow==2.10.0")
    f = next(f for f in findings if f.code == "CUDA_LIB_UNRESOLVED")
    assert dict(f.evidence)["launch"] in ("ssh command", "jupyter kernel tf")
    assert "it does resolve in the conda activate" in f.message


def test_torch_110_from_pypi_has_no_kernels_for_an_a100() -> None:
    """torch 1.10.2 from PyPI is the cu102 build: sm_37 to sm_70, nothing for compute capability 8.0."""
    env = venv("/opt/torch", "3.9.16", torch("1.10.2", "10.2"))
    torch_lib = libdir("/opt/torch/lib/python3.9/site-packages/torch/lib",
                       lib("libcudart-a7b20f20.so.10.2"), lib("libcudnn.so.7"))
    findings = run(resolved_host(torch_lib, envs=(env,), driver=driver("470.57.02")), "pytorch==1.10.2")
    f = one(findings, "GPU_ARCH_UNSUPPORTED")
    assert dict(f.evidence)["build"] == "cu102" and "sm_70" in dict(f.evidence)["kernels for"]


def test_torch_171_cu110_on_a_driver_for_cuda_102() -> None:
    env = venv("/opt/torch", "3.8.10", torch("1.7.1+cu110", "11.0"))
    torch_lib = libdir("/opt/torch/lib/python3.8/site-packages/torch/lib", lib("libcudart-3f3c6934.so.11.0"))
    findings = run(resolved_host(torch_lib, envs=(env,), driver=driver("440.33.01")), None)
    f = next(f for f in findings if f.code == "DRIVER_TOO_OLD")
    assert dict(f.evidence)["build"] == "cu110" and dict(f.evidence)["needs"] == ">= 450.51.06"


def test_one_env_with_frameworks_of_two_cuda_majors() -> None:
    """pytorch/pytorch#46807: torch 1.7.0+cu110 and tf-nightly for CUDA 10.1 in one conda env segfault."""
    env = venv("/opt/conda/envs/tmp", "3.8.5", torch("1.7.0+cu110", "11.0"),
               tf("2.4.0.dev20201023", "10.1", "7", name="tf-nightly"), kind="conda")
    f = one(run(resolved_host(envs=(env,)), None), "ENV_MIXED_CUDA_MAJORS")
    assert "CUDA 10.1" in dict(f.evidence)["frameworks"] and "CUDA 11.0" in dict(f.evidence)["frameworks"]


def test_an_installed_framework_the_matrix_does_not_know_is_a_warning_when_inferred() -> None:
    from remediator.targets import diagnose_inferred, infer_targets

    facts = host(envs=(venv("/opt/tf", "3.11.4", tf("2.99.0", "12.9", "9")),))
    findings = diagnose_inferred(facts, infer_targets(facts, MATRIX), MATRIX)
    SEEN_CODES.update(f.code for f in findings)
    f = one(findings, "INFERRED_TARGET_UNKNOWN")
    assert f.severity == "warning" and "2.99.0" in f.message


def test_a_conda_cudatoolkit_has_its_own_driver_floor() -> None:
    """pytorch/pytorch#28321: conda's cudatoolkit 10.1.243 on driver 410.104 (CUDA 10.1 needs >= 418.39)."""
    env = venv("/opt/conda/envs/t", "3.7.4", torch("1.3.0", "10.1"), kind="conda",
               conda=(("cudatoolkit", "10.1.243"), ("pytorch", "1.3.0")))
    findings = run(resolved_host(envs=(env,), driver=driver("410.104")), None)
    assert any(f.code == "DRIVER_TOO_OLD" and "conda cudatoolkit 10.1.243" in f.message for f in findings)


def test_a_known_defect_of_the_installed_release_is_named_with_its_source() -> None:
    env = venv("/opt/tf", "3.11.4", tf("2.15.0", "12.2", "8"), wheels=(("nvidia-cudnn-cu12", "8.9.4.25"),))
    f = one(run(resolved_host(envs=(env,)), None), "KNOWN_DEFECT")
    ev = dict(f.evidence)
    assert ev["fixed in"] == "2.15.0.post1" and ev["source"] == "https://github.com/tensorflow/tensorflow/issues/66517"


def test_a_libcuda_of_another_driver_version_reached_before_the_drivers_own() -> None:
    """A forward-compatibility libcuda older than the driver, on LD_LIBRARY_PATH (the H200 host of
    shared/fixtures has /usr/local/cuda-13.0/compat/libcuda.so.580.95.05 beside driver 580.159.04)."""
    compat = libdir("/usr/local/cuda-13.0/compat", lib("libcuda.so.1", "libcuda.so.580.95.05"))
    own = libdir(SYS, lib("libcuda.so.1", "libcuda.so.580.159.04"))
    launch = (LaunchEnv("login shell", (compat.path,), "/etc/profile.d/cuda.sh"),)
    base = dict(driver=driver("580.159.04"), launch=launch)
    facts = dataclasses.replace(resolved_host(compat, **base), libdirs=(own, compat))
    f = one(run(facts, None), "DRIVER_LIBRARY_MISMATCH")
    assert dict(f.evidence)["reaches"].endswith("(580.95.05)") and "older than the driver" in f.message
    # Without it on the path the driver's own libcuda is reached: nothing to say.
    quiet = dataclasses.replace(facts, launch_envs=(LaunchEnv("login shell", (), ""),))
    assert "DRIVER_LIBRARY_MISMATCH" not in codes(run(quiet, None))


def test_a_place_the_probe_could_not_read_is_unknown_not_empty() -> None:
    """Without become a 0750 home or /root cannot be listed: a warning naming the place, the env there
    is neither reported missing from it nor invented."""
    facts = dataclasses.replace(host(), unread=("/home/alice", "/root"))
    found = [f for f in run(facts, None) if f.code == "PLACE_UNREAD"]
    assert [dict(f.evidence)["path"] for f in found] == ["/home/alice", "/root"]
    assert all(f.severity == "warning" and "unknown, not absent" in f.message for f in found)
    assert all(f.fix and "ansible_become" in f.fix for f in found)
    assert "PLACE_UNREAD" not in codes(run(host(), None))


def test_every_code_is_exercised() -> None:
    """Runs last in this module (pytest keeps file order): each code must have been produced above."""
    missing = set(CODES) - SEEN_CODES
    assert not missing, f"codes without a test: {sorted(missing)}"
