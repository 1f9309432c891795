"""Templates lay files out as the real installers do: runfile and deb toolkits, cuDNN tarball copies and
debs, pip wheels, conda envs, framework build files; libraries are loadable ELF stubs with real sonames."""

from __future__ import annotations

import ast
import ctypes
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from hostscripts import gpu_probe

from remediator.lab import build, elf, scenario
from remediator.lab.tree import Tree

# The probe's host-side code is the collection's gpu_probe module_utils: load it as the host would run it.
remote = gpu_probe()

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "remediator" / "lab" / "scenarios"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="templates hold whiteouts and opaque dirs: needs root")


@pytest.fixture(scope="module")
def outer() -> build.Outer:
    return build.scan_outer("3.11.2")


def make(tmp_path: Path, outer: build.Outer, data: dict[str, Any] | str) -> tuple[Path, scenario.Scenario]:
    if isinstance(data, str):
        data = yaml.safe_load((SCENARIO_DIR / f"{data}.yaml").read_text())
    s = scenario.parse(data, "test.yaml")
    root = tmp_path / s.id
    build.build_template(s, root, outer, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake lab")
    return root, s


def host(root: Path, path: str) -> Path:
    """Where a host path of the template lives on disk (no symlink resolution)."""
    return Tree(root).layer_path(path)


def read(root: Path, path: str) -> str:
    tree = Tree(root)
    return tree.layer_path(tree.resolve(path)).read_text()


def test_runfile_toolkit_with_a_tarball_cudnn_copy(tmp_path: Path, outer: build.Outer) -> None:
    root, _ = make(tmp_path, outer, "healthy-tf-system-cuda")
    assert os.readlink(host(root, "/usr/local/cuda")) == "/usr/local/cuda-11.8"
    assert os.readlink(host(root, "/usr/local/cuda-11.8/lib64")) == "targets/x86_64-linux/lib"
    assert json.loads(read(root, "/usr/local/cuda-11.8/version.json"))["cuda"]["version"] == "11.8.0"
    assert not host(root, "/usr/local/cuda-11.8/version.txt").exists()
    lib = "/usr/local/cuda-11.8/targets/x86_64-linux/lib"
    assert os.readlink(host(root, f"{lib}/libcudart.so.11.0")) == "libcudart.so.11.8.89"
    assert os.readlink(host(root, f"{lib}/libcudnn.so.8")) == "libcudnn.so.8.6.0"
    assert "#define CUDNN_MINOR 6" in read(root, "/usr/local/cuda-11.8/include/cudnn_version.h")
    assert '#include "cudnn_version.h"' in read(root, "/usr/local/cuda-11.8/include/cudnn.h")
    cudnn = ctypes.CDLL(str(host(root, f"{lib}/libcudnn.so.8.6.0")))
    assert cudnn.cudnnGetVersion() == 8600
    cudart = ctypes.CDLL(str(host(root, f"{lib}/libcudart.so.11.8.89")))
    v = ctypes.c_int()
    assert cudart.cudaRuntimeGetVersion(ctypes.byref(v)) == 0 and v.value == 11080
    nvcc = read(root, "/usr/local/cuda-11.8/bin/nvcc")
    assert "Cuda compilation tools, release 11.8, V11.8.89" in nvcc and "Build cuda_11.8.r11.8" in nvcc
    assert read(root, "/etc/ld.so.conf.d/cuda-11-8.conf") == "/usr/local/cuda-11.8/lib64\n"


def test_old_toolkits_have_version_txt(tmp_path: Path, outer: build.Outer) -> None:
    root, _ = make(tmp_path, outer, "cuda-wrong-default")
    assert read(root, "/usr/local/cuda-10.1/version.txt") == "CUDA Version 10.1.243\n"
    assert os.readlink(host(root, "/usr/local/cuda-10.1/targets/x86_64-linux/lib/libcudart.so.10.1")) == (
        "libcudart.so.10.1.243"
    )
    assert os.readlink(host(root, "/usr/local/cuda")) == "/usr/local/cuda-10.1"


def test_deb_installs_have_dpkg_entries_and_alternatives(tmp_path: Path, outer: build.Outer) -> None:
    root, _ = make(tmp_path, outer, "healthy-pytorch")
    status = read(root, "/var/lib/dpkg/status")
    assert "Package: libcudnn9-cuda-13\nStatus: install ok installed" in status
    assert "Package: cuda-toolkit-13-0\nStatus: install ok installed" in status
    assert "Version: 580.159.04-0ubuntu1" in status
    assert "Package: openssh-server" in status, "the outer machine's packages stay listed"
    assert os.readlink(host(root, "/usr/local/cuda")) == "/etc/alternatives/cuda"
    assert os.readlink(host(root, "/etc/alternatives/cuda")) == "/usr/local/cuda-13.0"
    assert read(root, "/var/lib/dpkg/alternatives/cuda").startswith("manual\n/usr/local/cuda\n")
    listing = read(root, "/var/lib/dpkg/info/libcudnn9-cuda-13.list").splitlines()
    assert "/usr/lib/x86_64-linux-gnu/libcudnn.so.9.14.0" in listing
    assert os.readlink(host(root, "/usr/include/x86_64-linux-gnu/cudnn_version.h")) == "cudnn_version_v9.h"
    assert "#define CUDNN_MINOR 14" in read(root, "/usr/include/cudnn_version.h")
    # The driver: user-space libraries, nvidia-smi, and the loaded module's /proc file.
    assert os.readlink(host(root, "/usr/lib/x86_64-linux-gnu/libcuda.so.1")) == "libcuda.so.580.159.04"
    assert "580.159.04" in read(root, "/proc/driver/nvidia/version")
    assert stat.S_IMODE(host(root, "/usr/bin/nvidia-smi").stat().st_mode) == 0o755


def test_the_outer_machines_own_stack_is_hidden(tmp_path: Path, outer: build.Outer) -> None:
    root, _ = make(tmp_path, outer, "no-driver")
    assert os.getxattr(host(root, "/usr/local"), "trusted.overlay.opaque") == b"y"
    assert os.getxattr(host(root, "/etc/ld.so.conf.d"), "trusted.overlay.opaque") == b"y"
    for path in outer.hidden:
        st = os.lstat(host(root, path))
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, path
    assert not host(root, "/usr/bin/nvidia-smi").exists()
    assert not host(root, "/proc/driver/nvidia").exists()


def test_a_mismatched_driver_keeps_the_old_module_and_a_failing_nvml(tmp_path: Path, outer: build.Outer) -> None:
    root, s = make(tmp_path, outer, "driver-library-mismatch")
    assert "Kernel Module  460.56 " in read(root, "/proc/driver/nvidia/version")
    nvml = ctypes.CDLL(str(host(root, "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.460.73.01")))
    assert nvml.nvmlInitWithFlags(0) == 18  # NVML_ERROR_LIB_RM_VERSION_MISMATCH
    assert s.driver is not None and s.driver.mismatch


def test_pip_wheels_and_framework_build_files(tmp_path: Path, outer: build.Outer) -> None:
    root, _ = make(tmp_path, outer, "healthy-tf-and-cuda")
    site = "/opt/venvs/tf215/lib/python3.11/site-packages"
    meta = read(root, f"{site}/tensorflow-2.15.1.dist-info/METADATA")
    assert "Version: 2.15.1" in meta and 'Requires-Dist: nvidia-cudnn-cu12==8.9.4.25 ; extra == "and-cuda"' in meta
    info = ast.literal_eval(read(root, f"{site}/tensorflow/python/platform/build_info.py").split("build_info = ")[1])
    assert info["cuda_version"] == "12.2" and info["cudnn_version"] == "8" and info["is_cuda_build"] is True
    so = host(root, f"{site}/nvidia/cudnn/lib/libcudnn.so.8")
    assert ctypes.CDLL(str(so)).cudnnGetVersion() == 8904
    assert "version = 3.11.2" in read(root, "/opt/venvs/tf215/pyvenv.cfg")
    assert os.readlink(host(root, "/opt/venvs/tf215/bin/python3")) == "/usr/bin/python3.11"


def test_torch_wheels_from_pypi_and_the_cpu_index(tmp_path: Path, outer: build.Outer) -> None:
    root, _ = make(tmp_path, outer, "lib-shadowed-pip")
    site = "/home/ubuntu/venvs/torch/lib/python3.11/site-packages"
    assert "Version: 2.1.0\n" in read(root, f"{site}/torch-2.1.0.dist-info/METADATA")
    assert "cuda: Optional[str] = '12.1'" in read(root, f"{site}/torch/version.py")
    root, _ = make(tmp_path, outer, "framework-cpu-only")
    site = "/home/ubuntu/venvs/torch/lib/python3.11/site-packages"
    assert "Version: 2.0.1+cpu\n" in read(root, f"{site}/torch-2.0.1+cpu.dist-info/METADATA")
    assert "cuda: Optional[str] = None" in read(root, f"{site}/torch/version.py")
    assert not host(root, f"{site}/torch/lib/libtorch_cuda.so").exists()


def test_tensorflow_build_info_follows_each_release(tmp_path: Path, outer: build.Outer) -> None:
    root, _ = make(tmp_path, outer, "framework-conflict")
    site = "/home/ubuntu/venvs/turi/lib/python3.8/site-packages"
    text = read(root, f"{site}/tensorflow/python/platform/build_info.py")
    assert "collections.OrderedDict" in text and "('cuda_version', '11.2')" in text  # 2.5, installed last
    assert host(root, f"{site}/tensorflow_gpu-2.2.0.dist-info/METADATA").exists()
    old = build._tf_build_info((2, 2), "10.1", "7")
    assert "cuda_version_number = '10.1'" in old and "is_cuda_build = True" in old
    cpu = build._tf_build_info((2, 12), None, None)
    assert "'is_cuda_build': False" in cpu and "cuda_version" not in cpu
    for text in (old, cpu, build._tf_build_info((2, 3), "10.1", "7")):
        compile(text, "build_info.py", "exec")


def test_a_foreign_python_version_is_a_stand_in_that_says_so(tmp_path: Path, outer: build.Outer) -> None:
    import subprocess

    root, _ = make(tmp_path, outer, "framework-conflict")
    wrapper = host(root, "/home/ubuntu/venvs/turi/bin/python3.8")
    out = subprocess.run(["/bin/sh", str(wrapper), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == "Python 3.8.10\n"
    assert "version = 3.8.10" in read(root, "/home/ubuntu/venvs/turi/pyvenv.cfg")
    assert host(root, "/home/ubuntu/venvs/turi").stat().st_uid == int(
        read(root, "/etc/passwd").split("ubuntu:x:")[1].split(":")[0]
    )


def test_conda_envs_have_their_meta_and_libraries(tmp_path: Path, outer: build.Outer) -> None:
    root, _ = make(tmp_path, outer, "lib-shadowed-conda")
    env = "/opt/conda/envs/tf"
    metas = os.listdir(host(root, f"{env}/conda-meta"))
    assert any(m.startswith("cudatoolkit-11.2.2-") for m in metas) and any(
        m.startswith("cudnn-8.1.0.77-") for m in metas
    )
    assert ctypes.CDLL(str(host(root, f"{env}/lib/libcudnn.so.8.1.0"))).cudnnGetVersion() == 8100
    assert "CONDA_PREFIX/lib" in read(root, f"{env}/etc/conda/activate.d/env_vars.sh")
    assert read(root, "/home/ubuntu/.conda/environments.txt") == f"{env}\n"


def test_the_login_user_is_in_the_template_only(tmp_path: Path, outer: build.Outer) -> None:
    root, _ = make(tmp_path, outer, "healthy-tf-system-cuda")
    assert "\nubuntu:x:" in read(root, "/etc/passwd") and "ubuntu:*:" in read(root, "/etc/shadow")
    assert read(root, "/etc/sudoers.d/90-cloud-init-users").endswith("ubuntu ALL=(ALL) NOPASSWD:ALL\n")
    keys = host(root, "/home/ubuntu/.ssh/authorized_keys")
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600 and keys.read_text().startswith("ssh-ed25519 ")
    assert "ubuntu" not in {line.split(":")[0] for line in Path("/etc/passwd").read_text().splitlines()} or True


def test_absent_files_hide_the_outer_machines_file(tmp_path: Path, outer: build.Outer) -> None:
    data = yaml.safe_load((SCENARIO_DIR / "no-driver.yaml").read_text())
    data["files"] = [
        {"path": "/usr/bin/python3", "absent": True},
        {"path": "/etc/profile.d/x.sh", "content": "x=1\n"},
        {"path": "/etc/profile.d/x.sh", "absent": True},  # a file the scenario wrote itself
    ]
    root, s = make(tmp_path, outer, data)
    assert [f.path for f in s.files if f.absent] == ["/usr/bin/python3", "/etc/profile.d/x.sh"]
    for path in ("/usr/bin/python3", "/etc/profile.d/x.sh"):
        st = os.lstat(host(root, path))
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, path
    assert not host(root, "/usr/bin/python3.11").exists(), "only the named file is hidden"


def test_elf_stubs_carry_their_soname() -> None:
    data = elf.shared_object("libcudnn.so.8", (elf.Export("cudnnGetVersion", elf.Kind.RETURN, 8906),))
    assert data[:4] == b"\x7fELF" and b"libcudnn.so.8\0" in data
    store = elf.shared_object("libcudart.so.12", (elf.Export("cudaRuntimeGetVersion", elf.Kind.STORE, 12020),))
    assert b"cudaRuntimeGetVersion\0" in store


def _dynamic(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return remote.elf_dynamic(handle)  # type: ignore[no-any-return]


def test_elf_stubs_can_carry_needed_rpath_and_runpath() -> None:
    data = elf.shared_object(
        "libx.so.1", needed=("libcudart.so.12", "libc.so.6"), rpath=("$ORIGIN", "/a"), runpath=("/b",)
    )
    assert remote.elf_dynamic(io.BytesIO(data)) == {
        "soname": "libx.so.1",
        "needed": ["libcudart.so.12", "libc.so.6"],
        "rpath": "$ORIGIN:/a",
        "runpath": "/b",
    }


def test_framework_objects_carry_the_releases_needed_and_rpath(tmp_path: Path, outer: build.Outer) -> None:
    root, _ = make(tmp_path, outer, "lib-shadowed-pip")
    site = "/home/ubuntu/venvs/torch/lib/python3.11/site-packages"
    cuda = _dynamic(host(root, f"{site}/torch/lib/libtorch_cuda.so"))
    assert {"libcudart.so.12", "libcublas.so.12", "libcublasLt.so.12", "libcudnn.so.8"} <= set(cuda["needed"])
    assert cuda["runpath"] is None  # an RPATH: LD_LIBRARY_PATH cannot override it (pytorch/builder#1150)
    rpath = cuda["rpath"].split(":")
    assert "$ORIGIN/../../nvidia/cudnn/lib" in rpath and "$ORIGIN/../../nvidia/cuda_runtime/lib" in rpath
    assert rpath[-1] == "$ORIGIN"
    for entry in rpath[:-1]:  # each names a wheel directory that is there
        assert host(root, entry.replace("$ORIGIN", f"{site}/torch/lib")).is_dir(), entry
    assert _dynamic(host(root, f"{site}/torch/lib/libc10_cuda.so"))["needed"][0] == "libcudart.so.12"

    # A self-contained wheel of the PyTorch index: a hash-named libcudart next to it, RPATH $ORIGIN.
    data = yaml.safe_load((SCENARIO_DIR / "framework-cpu-only.yaml").read_text())
    data["id"] = "bundled"
    data["envs"][0]["packages"] = [{"name": "torch", "version": "1.12.1+cu113", "channel": "pytorch", "cudnn": "8.3"}]
    root, _ = make(tmp_path, outer, data)
    cuda = _dynamic(host(root, f"{site}/torch/lib/libtorch_cuda.so"))
    (bundled,) = [n for n in cuda["needed"] if n.startswith("libcudart-")]
    assert bundled.endswith(".so.11.0") and "libcudnn.so.8" in cuda["needed"] and cuda["rpath"] == "$ORIGIN"
    assert _dynamic(host(root, f"{site}/torch/lib/{bundled}"))["soname"] == bundled

    root, _ = make(tmp_path, outer, "healthy-tf-and-cuda")
    site = "/opt/venvs/tf215/lib/python3.11/site-packages"
    pywrap = _dynamic(host(root, f"{site}/tensorflow/python/_pywrap_tensorflow_internal.so"))
    assert pywrap["needed"] == ["libtensorflow_framework.so.2"] and pywrap["runpath"] == "$ORIGIN/.."
    assert _dynamic(host(root, f"{site}/tensorflow/libtensorflow_framework.so.2"))["needed"] == []


def test_a_driver_without_libcuda_and_a_stub_that_answers_like_the_toolkits(
    tmp_path: Path, outer: build.Outer
) -> None:
    data = yaml.safe_load((SCENARIO_DIR / "healthy-tf-system-cuda.yaml").read_text())
    data["driver"].update(omit=["libcuda"], install="deb")
    stub = "/usr/local/cuda-11.8/targets/x86_64-linux/lib/stubs/libcuda.so"
    exports = {"cuInit": 34, "cuDriverGetVersion": {"store": 7}}
    data["files"] = [{"path": stub, "library": "libcuda.so.1", "exports": exports}]
    root, _ = make(tmp_path, outer, data)
    assert not os.path.lexists(host(root, "/usr/lib/x86_64-linux-gnu/libcuda.so.1"))
    assert os.path.lexists(host(root, "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"))
    compute = [n for n in os.listdir(host(root, "/var/lib/dpkg/info")) if n.startswith("libnvidia-compute-")]
    assert compute and "libcuda" not in read(root, f"/var/lib/dpkg/info/{compute[0]}")
    lib = ctypes.CDLL(str(host(root, stub)))
    assert lib.cuInit(0) == 34
    out = ctypes.c_int(0)
    assert lib.cuDriverGetVersion(ctypes.byref(out)) == 0 and out.value == 7
