"""The remote probe script itself, run by this machine's Python over LocalTransport.

Each layout below is a file tree as real installers leave it (runfile, deb, rpm, tarball copies,
pip wheels, conda), with the commands a host would have (nvidia-smi, nvcc, dpkg-query, rpm,
ldconfig) as small shell scripts printing what the real ones print. The script reads the tree
through `--root`, so nothing of this machine is touched. The recorded documents under
tests/fixtures/probe are this script's output on these layouts (plus the NVML answer, which only a
real driver gives); `test_recorded_documents_match_the_script` keeps the two in step. To re-record
after changing the script on purpose:

    REMEDIATOR_RECORD_PROBE=1 .venv/bin/pytest tests/unit/test_probe_remote.py -k recorded
"""

from __future__ import annotations

import ast
import base64
import ctypes
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from remediator.lab.elf import shared_object
from remediator.probe import (
    PROBE_ARGV,
    ProbeError,
    build_payload,
    parse_probe_output,
    payload_source,
    probe_host,
    remote_script_source,
)
from remediator.transport.base import CommandResult
from remediator.transport.local import LocalTransport

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "probe"
RECORD = os.environ.get("REMEDIATOR_RECORD_PROBE") == "1"
PYTHON36 = Path("/root/.pyenv/versions/3.6.15/bin/python3.6")

# --- building trees ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    target: str


@dataclass(frozen=True)
class Exec:
    """An executable shell script standing in for a host command."""

    script: str


DIR = object()
Tree = dict[str, Any]


def build_tree(root: Path, tree: Tree) -> None:
    for path, content in tree.items():
        local = root / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Link):
            local.symlink_to(content.target)
        elif isinstance(content, Exec):
            local.write_text("#!/bin/sh\n" + content.script)
            local.chmod(0o755)
        elif content is DIR:
            local.mkdir(parents=True, exist_ok=True)
        elif isinstance(content, bytes):
            local.write_bytes(content)
        else:
            local.write_text(content)


def printing(text: str, status: int = 0) -> Exec:
    """A command that prints `text` exactly (through a quoted here-document) and exits `status`."""
    return Exec(f"cat <<'REMEDIATOR_EOF'\n{text}REMEDIATOR_EOF\nexit {status}\n")


def os_release(pretty: str, os_id: str, version_id: str) -> Tree:
    return {"/etc/os-release": f'PRETTY_NAME="{pretty}"\nID={os_id}\nVERSION_ID="{version_id}"\n'}


def versioned_lib(directory: str, name: str, version: str, *, soname: str | None = None) -> Tree:
    """lib.so -> lib.so.MAJOR -> lib.so.FULL, as packages and tarballs ship them."""
    major = soname or version.split(".")[0]
    return {
        f"{directory}/{name}.so.{version}": b"\x7fELF",
        f"{directory}/{name}.so.{major}": Link(f"{name}.so.{version}"),
        f"{directory}/{name}.so": Link(f"{name}.so.{major}"),
    }


def cudnn_libs(directory: str, version: str, parts: tuple[str, ...] = ("",)) -> Tree:
    tree: Tree = {}
    for part in parts:
        tree.update(versioned_lib(directory, f"libcudnn{part}", version))
    return tree


def cudnn_header(version: str) -> str:
    major, minor, patch = version.split(".")
    factor = 10000 if int(major) >= 9 else 1000
    return (
        "/*\n * Copyright NVIDIA Corporation.  All rights reserved.\n */\n\n"
        "#ifndef CUDNN_VERSION_H_\n#define CUDNN_VERSION_H_\n\n"
        f"#define CUDNN_MAJOR {major}\n#define CUDNN_MINOR {minor}\n#define CUDNN_PATCHLEVEL {patch}\n\n"
        f"#define CUDNN_VERSION (CUDNN_MAJOR * {factor} + CUDNN_MINOR * 100 + CUDNN_PATCHLEVEL)\n\n#endif\n"
    )


CUDNN8_CUDNN_H = (
    "/*   cudnn : Neural Networks Library */\n\n#if !defined(CUDNN_H_)\n#define CUDNN_H_\n\n"
    '#include <cuda_runtime.h>\n#include <stdint.h>\n\n#include "cudnn_version.h"\n'
    '#include "cudnn_ops_infer.h"\n\n#endif /* CUDNN_H_ */\n'
)


def cudnn7_cudnn_h(version: str) -> str:
    major, minor, patch = version.split(".")
    return (
        "/*   cudnn : Neural Networks Library */\n\n#if !defined(CUDNN_H_)\n#define CUDNN_H_\n\n"
        f"#define CUDNN_MAJOR {major}\n#define CUDNN_MINOR {minor}\n#define CUDNN_PATCHLEVEL {patch}\n\n"
        "#define CUDNN_VERSION (CUDNN_MAJOR * 1000 + CUDNN_MINOR * 100 + CUDNN_PATCHLEVEL)\n\n"
        '#include "driver_types.h"\n#include <cuda_runtime.h>\n\n' + "/* ... */\n" * 200 + "#endif\n"
    )


def record_hash(content: str) -> str:
    digest = hashlib.sha256(content.encode()).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def dist(site: str, name: str, version: str, *, egg: bool = False, files: dict[str, str] | None = None) -> Tree:
    """An installed distribution's metadata directory, as pip (dist-info) or setuptools (egg-info).

    `files` (path in site-packages -> content the wheel had) go into RECORD with their hashes."""
    stem = f"{name.replace('-', '_')}-{version}"
    record = "".join(f"{rel},{record_hash(text)},{len(text)}\n" for rel, text in (files or {}).items())
    if egg:
        return {f"{site}/{stem}-py3.9.egg-info/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"}
    return {
        f"{site}/{stem}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: x\n\nLong description\nVersion: 0\n"
        ),
        f"{site}/{stem}.dist-info/RECORD": record + f"{stem}.dist-info/RECORD,,\n",
    }


def venv(path: str, python: str, cfg_version: str, *, key: str = "version") -> Tree:
    return {
        f"{path}/pyvenv.cfg": f"home = /usr/bin\ninclude-system-site-packages = false\n{key} = {cfg_version}\n",
        f"{path}/bin/python3": Link(python),
        f"{path}/bin/python": Link("python3"),
    }


def site_of(env: str, minor: str) -> str:
    return f"{env}/lib/python{minor}/site-packages"


def toolkit_dirs(tk: str, arch: str = "x86_64-linux") -> Tree:
    return {
        f"{tk}/targets/{arch}/lib": DIR,
        f"{tk}/targets/{arch}/include/cuda.h": "/* cuda.h */\n",
        f"{tk}/lib64": Link(f"targets/{arch}/lib"),
        f"{tk}/include": Link(f"targets/{arch}/include"),
    }


def version_json(version: str, cudart: str | None = None) -> str:
    data = {
        "cuda": {"name": "CUDA SDK", "version": version},
        "cuda_cudart": {"name": "CUDA Runtime (cudart)", "version": cudart or version},
    }
    return json.dumps(data, indent=3) + "\n"


def nvcc(release: str, full: str) -> Exec:
    return printing(
        "nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2024 NVIDIA Corporation\n"
        f"Cuda compilation tools, release {release}, V{full}\nBuild cuda_{release}.r{release}/compiler.0_0\n"
    )


def dpkg(*rows: tuple[str, str] | tuple[str, str, str]) -> Exec:
    lines = "".join(f"{r[0]}\t{r[1]}\t{r[2] if len(r) > 2 else 'install ok installed'}\n" for r in rows)
    # Unrelated packages too, so that the script's filter is exercised.
    return printing(
        "adduser\t3.118ubuntu2\tinstall ok installed\n" + lines + "zlib1g\t1:1.2.11\tinstall ok installed\n"
    )


def ldconfig(*entries: tuple[str, str]) -> Exec:
    lines = "".join(f"\t{so} (libc6,x86-64) => {path}\n" for so, path in entries)
    return printing(
        f"{len(entries) + 2} libs found in cache `/etc/ld.so.cache'\n"
        + lines
        + "\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1\n"
    )


USRMERGE: Tree = {"/lib": Link("usr/lib"), "/lib64": Link("usr/lib64"), "/usr/lib64": DIR}
LD_SO_CONF: Tree = {"/etc/ld.so.conf": "include /etc/ld.so.conf.d/*.conf\n\n"}


# --- the layouts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    name: str
    about: str
    tree: Tree
    kernel: str
    nvml: dict[str, Any] | None = None  # what NVML answered on the real kind of host; None: not asked
    env: dict[str, str] = field(default_factory=dict)
    command_timeout: float = 20.0
    python: str = "3.10.12"


def h200() -> Layout:
    """The real H200 host of /work/shared/fixtures/nvidia-h200-ubuntu24.04/host-survey.txt, rebuilt:
    every file the survey lists is here, laid out as the script found them on that host (see
    h200-real-device.probe.json); the package list is shortened. The GPU's UUID is zeros."""
    tk = "/usr/local/cuda-13.0"
    lib = f"{tk}/targets/x86_64-linux/lib"
    site = site_of("/opt/torch/.venv", "3.12")
    tree: Tree = {
        **USRMERGE,
        **LD_SO_CONF,
        "/etc/os-release": (
            'PRETTY_NAME="Ubuntu 24.04.3 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\n'
            'VERSION="24.04.3 LTS (Noble Numbat)"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n'
            'HOME_URL="https://www.ubuntu.com/"\nUBUNTU_CODENAME=noble\nLOGO=ubuntu-logo\n'
        ),
        "/proc/driver/nvidia/version": (
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (nixbld@)  \n"
            "GCC version:  gcc version 15.3.0 (GCC) \n"
        ),
        "/etc/ld.so.conf.d/000_cuda.conf": "/usr/local/cuda/targets/x86_64-linux/lib\n",
        "/etc/ld.so.conf.d/987_cuda-13.conf": "/usr/local/cuda-13/targets/x86_64-linux/lib\n",
        "/etc/ld.so.conf.d/gds-13-0.conf": "/usr/local/cuda-13.0/targets/x86_64-linux/lib\n",
        "/etc/ld.so.conf.d/libc.conf": "# libc default configuration\n/usr/local/lib\n",
        "/etc/ld.so.conf.d/nvidia.conf": "/usr/local/cuda/lib64\n",
        "/etc/ld.so.conf.d/nvidia-folders.conf": "/usr/local/nvidia/lib64\n/usr/local/nvidia/lib\n",
        "/etc/ld.so.conf.d/x86_64-linux-gnu.conf": "# Multiarch support\n/usr/local/lib/x86_64-linux-gnu\n"
        "/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n",
        "/usr/local/cuda": Link("/etc/alternatives/cuda"),
        "/usr/local/cuda-13": Link("/etc/alternatives/cuda-13"),
        "/etc/alternatives/cuda": Link(tk),
        "/etc/alternatives/cuda-13": Link(tk),
        **toolkit_dirs(tk),
        f"{tk}/bin/nvcc": printing(
            "nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2025 NVIDIA Corporation\n"
            "Built on Wed_Aug_20_01:58:59_PM_PDT_2025\nCuda compilation tools, release 13.0, V13.0.88\n"
            "Build cuda_13.0.r13.0/compiler.36424714_0\n"
        ),
        **versioned_lib(lib, "libcudart", "13.0.96"),
        f"{lib}/stubs/libcuda.so": b"\x7fELF",
        **versioned_lib(f"{tk}/compat", "libcuda", "580.95.05", soname="1"),
        **cudnn_libs(
            "/usr/lib/x86_64-linux-gnu",
            "9.14.0",
            (
                "",
                "_ops",
                "_cnn",
                "_adv",
                "_graph",
                "_heuristic",
                "_engines_precompiled",
                "_engines_runtime_compiled",
            ),
        ),
        # libcudnn9-headers-cuda-13: versioned names, the plain names link to them.
        "/usr/include/x86_64-linux-gnu/cudnn_v9.h": CUDNN8_CUDNN_H,
        "/usr/include/x86_64-linux-gnu/cudnn.h": Link("cudnn_v9.h"),
        "/usr/include/x86_64-linux-gnu/cudnn_version_v9.h": cudnn_header("9.14.0"),
        "/usr/include/x86_64-linux-gnu/cudnn_version.h": Link("cudnn_version_v9.h"),
        **versioned_lib("/usr/local/nvidia/lib64", "libcuda", "580.159.04", soname="1"),
        **versioned_lib("/usr/local/nvidia/lib64", "libnvidia-ml", "580.159.04", soname="1"),
        "/usr/local/nvidia/lib": Link("lib64"),
        "/usr/local/lib": DIR,
        "/usr/lib/libcuda.so.1": Link("/usr/local/nvidia/lib64/libcuda.so.1"),
        "/usr/lib/libcuda.so": Link("/usr/local/nvidia/lib64/libcuda.so"),
        "/usr/lib/libnvidia-ml.so.1": Link("/usr/local/nvidia/lib64/libnvidia-ml.so.1"),
        "/usr/lib/libnvidia-ml.so": Link("/usr/local/nvidia/lib64/libnvidia-ml.so"),
        "/usr/bin/python3": Link("python3.12"),
        "/usr/bin/python3.12": b"\x7fELF",
        "/usr/lib/python3/dist-packages": DIR,
        "/usr/bin/ldconfig": ldconfig(
            ("libnvidia-ml.so.1", "/usr/local/nvidia/lib64/libnvidia-ml.so.1"),
            ("libnvidia-ml.so.1", "/lib/libnvidia-ml.so.1"),
            ("libcudnn_ops.so.9", "/lib/x86_64-linux-gnu/libcudnn_ops.so.9"),
            ("libcudnn.so.9", "/lib/x86_64-linux-gnu/libcudnn.so.9"),
            ("libcudart.so.13", "/usr/local/cuda/targets/x86_64-linux/lib/libcudart.so.13"),
            ("libcuda.so.1", "/usr/local/nvidia/lib64/libcuda.so.1"),
            ("libcuda.so.1", "/lib/libcuda.so.1"),
        ),
        "/usr/bin/dpkg-query": dpkg(
            ("cuda-compat-13-0", "580.95.05-0ubuntu1"),
            ("cuda-cudart-13-0", "13.0.96-1"),
            ("cuda-cudart-dev-13-0", "13.0.96-1"),
            ("cuda-libraries-13-0", "13.0.2-1"),
            ("cuda-nsight-compute-13-0", "13.0.2-1"),
            ("cuda-nvcc-13-0", "13.0.88-1"),
            ("cuda-toolkit-13-0-config-common", "13.0.96-1"),
            ("cuda-toolkit-config-common", "13.0.96-1"),
            ("libcudnn9-cuda-13", "9.14.0.64-1"),
            ("libcudnn9-dev-cuda-13", "9.14.0.64-1"),
            ("libcudnn9-headers-cuda-13", "9.14.0.64-1"),
        ),
        **venv("/opt/torch/.venv", "/usr/bin/python3.12", "3.12.3"),
        "/opt/torch/.venv/pyvenv.cfg": "home = /usr/bin\nimplementation = CPython\nuv = 0.11.15\n"
        "version_info = 3.12.3\ninclude-system-site-packages = false\n",
        **dist(site, "torch", "2.11.0"),
        f"{site}/torch/version.py": (
            "from typing import Optional\n\n"
            "__all__ = ['__version__', 'debug', 'cuda', 'git_version', 'hip', 'xpu']\n"
            "__version__ = '2.11.0+cu130'\ndebug = False\ncuda: Optional[str] = '13.0'\n"
            "git_version = '0000000000000000000000000000000000000000'\n"
            "hip: Optional[str] = None\nxpu: Optional[str] = None\n"
        ),
        **dist(site, "jax", "0.11.2"),
        **dist(site, "jaxlib", "0.11.2"),
        **dist(site, "jax-cuda13-plugin", "0.11.2"),
        **dist(site, "jax-cuda13-pjrt", "0.11.2"),
        **dist(site, "nvidia-cublas", "13.1.0.3"),
        **dist(site, "nvidia-cuda-runtime", "13.0.96"),
        **dist(site, "nvidia-cudnn-cu13", "9.19.0.56"),
        **dist(site, "nvidia-nccl-cu13", "2.28.9"),
        **dist(site, "nvidia-nvjitlink", "13.0.88"),
        **dist(site, "nvidia-ml-py", "13.610.43"),
        **dist(site, "numpy", "2.3.0"),
        # The wheel holds each header under both names, as regular files, and only .so.9 libraries.
        f"{site}/nvidia/cudnn/include/cudnn.h": CUDNN8_CUDNN_H,
        f"{site}/nvidia/cudnn/include/cudnn_v9.h": CUDNN8_CUDNN_H,
        f"{site}/nvidia/cudnn/include/cudnn_version.h": cudnn_header("9.19.0"),
        f"{site}/nvidia/cudnn/include/cudnn_version_v9.h": cudnn_header("9.19.0"),
        **{
            f"{site}/nvidia/cudnn/lib/libcudnn{part}.so.9": b"\x7fELF"
            for part in (
                "",
                "_adv",
                "_cnn",
                "_engines_precompiled",
                "_engines_runtime_compiled",
                "_graph",
                "_heuristic",
                "_ops",
            )
        },
        f"{site}/nvidia/cu13/lib/libcudart.so.13": b"\x7fELF",
    }
    nvml = {
        "ok": True,
        "loaded": True,
        "error": None,
        "error_code": None,
        "errors": {},
        "driver_version": "580.159.04",
        "nvml_version": "13.580.159.04",
        "cuda_driver_version": 13000,
        "gpus": [
            {
                "index": 0,
                "name": "NVIDIA H200",
                "uuid": "GPU-00000000-0000-0000-0000-000000000000",
                "memory_total": 150754820096,
                "pci_bus_id": "00000000:00:06.0",
                "compute_capability": [9, 0],
            }
        ],
    }
    return Layout(
        "h200-ubuntu24.04",
        h200.__doc__ or "",
        tree,
        kernel="6.18.44-fc-v657-gpu",
        nvml=nvml,
        env={"LD_LIBRARY_PATH": "/usr/local/nvidia/lib64:/usr/local/nvidia/lib"},
        python="3.12.3",
    )


def mismatch() -> Layout:
    """apt upgraded the driver from 535 to 550 and nobody rebooted: the loaded kernel module is 535,
    the userspace libraries are 550, NVML and nvidia-smi refuse with 'Driver/library version mismatch'.
    The toolkit is a runfile install (cuda-uninstaller present)."""
    tk = "/usr/local/cuda-12.2"
    return Layout(
        "driver-library-mismatch",
        mismatch.__doc__ or "",
        {
            **USRMERGE,
            **LD_SO_CONF,
            **os_release("Ubuntu 22.04.4 LTS", "ubuntu", "22.04"),
            "/proc/driver/nvidia/version": (
                "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\n"
                "GCC version:  gcc version 11.4.0 (Ubuntu 11.4.0-1ubuntu1~22.04) \n"
            ),
            **versioned_lib("/usr/lib/x86_64-linux-gnu", "libnvidia-ml", "550.90.07", soname="1"),
            **versioned_lib("/usr/lib/x86_64-linux-gnu", "libcuda", "550.90.07", soname="1"),
            "/usr/bin/nvidia-smi": printing(
                "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 550.90\n",
                18,
            ),
            "/usr/bin/dpkg-query": dpkg(
                ("libnvidia-compute-550", "550.90.07-0ubuntu0.22.04.1"),
                ("nvidia-driver-535", "535.183.01-0ubuntu0.22.04.1", "deinstall ok config-files"),
                ("nvidia-driver-550", "550.90.07-0ubuntu0.22.04.1"),
                ("nvidia-kernel-common-550", "550.90.07-0ubuntu0.22.04.1"),
            ),
            "/sbin/ldconfig": ldconfig(
                ("libnvidia-ml.so.1", "/lib/x86_64-linux-gnu/libnvidia-ml.so.1"),
                ("libcuda.so.1", "/lib/x86_64-linux-gnu/libcuda.so.1"),
            ),
            "/usr/local/cuda": Link(tk),
            **toolkit_dirs(tk),
            f"{tk}/version.json": version_json("12.2.2", "12.2.140"),
            f"{tk}/bin/nvcc": nvcc("12.2", "12.2.140"),
            f"{tk}/bin/cuda-uninstaller": b"\x7fELF",
            **versioned_lib(f"{tk}/targets/x86_64-linux/lib", "libcudart", "12.2.140"),
            "/etc/ld.so.conf.d/cuda.conf": "/usr/local/cuda/lib64\n",
            "/usr/bin/python3": Link("python3.10"),
            "/usr/bin/python3.10": b"\x7fELF",
        },
        kernel="5.15.0-107-generic",
        nvml={
            "ok": False,
            "loaded": True,
            "error": "RM has detected an NVML/RM version mismatch.",
            "error_code": 18,
            "errors": {},
            "gpus": [],
        },
    )


def not_loaded() -> Layout:
    """A kernel upgrade without a rebuilt module: the 535 userspace is installed, the module is not
    loaded (no /proc/driver/nvidia), nvidia-smi says it cannot communicate with the driver. Debian's
    own nvidia-cuda-toolkit package provides the toolkit."""
    return Layout(
        "driver-not-loaded",
        not_loaded.__doc__ or "",
        {
            **USRMERGE,
            **LD_SO_CONF,
            **os_release("Debian GNU/Linux 12 (bookworm)", "debian", "12"),
            **versioned_lib("/usr/lib/x86_64-linux-gnu", "libnvidia-ml", "535.161.08", soname="1"),
            **versioned_lib("/usr/lib/x86_64-linux-gnu", "libcuda", "535.161.08", soname="1"),
            "/usr/bin/nvidia-smi": printing(
                "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that "
                "the latest NVIDIA driver is installed and running.\n\n",
                9,
            ),
            "/usr/bin/dpkg-query": dpkg(
                ("libcuda1", "535.161.08-1~deb12u1"),
                ("libnvidia-ml1", "535.161.08-1~deb12u1"),
                ("nvidia-cuda-toolkit", "11.8.89~11.8.0-5~deb12u1"),
                ("nvidia-driver", "535.161.08-1~deb12u1"),
                ("nvidia-kernel-dkms", "535.161.08-1~deb12u1"),
            ),
            "/usr/lib/nvidia-cuda-toolkit/bin/nvcc": nvcc("11.8", "11.8.89"),
            "/usr/lib/nvidia-cuda-toolkit/lib64": DIR,
            "/usr/bin/python3": Link("python3.11"),
            "/usr/bin/python3.11": b"\x7fELF",
        },
        kernel="6.1.0-21-amd64",
        python="3.11.2",
        nvml={
            "ok": False,
            "loaded": True,
            "error": "Driver Not Loaded",
            "error_code": 9,
            "errors": {},
            "gpus": [],
        },
    )


def no_driver() -> Layout:
    """A CPU-only host: nothing NVIDIA at all, a venv with tensorflow-cpu (is_cuda_build False)."""
    site = site_of("/home/alice/tf", "3.8")
    return Layout(
        "no-driver",
        no_driver.__doc__ or "",
        {
            **USRMERGE,
            **LD_SO_CONF,
            **os_release("Ubuntu 20.04.6 LTS", "ubuntu", "20.04"),
            "/usr/bin/dpkg-query": dpkg(),
            "/usr/bin/python3": Link("python3.8"),
            "/usr/bin/python3.8": b"\x7fELF",
            **venv("/home/alice/tf", "/usr/bin/python3.8", "3.8.10"),
            **dist(site, "tensorflow-cpu", "2.13.1"),
            f"{site}/tensorflow/python/platform/build_info.py": (
                '"""Auto-generated module providing information about the build."""\nimport collections\n\n'
                "build_info = collections.OrderedDict([('cpu_compiler', '/dt9/usr/bin/gcc'), "
                "('is_cuda_build', False), ('is_rocm_build', False), ('is_tensorrt_build', False)])\n"
            ),
        },
        kernel="5.4.0-182-generic",
        nvml={
            "ok": False,
            "loaded": True,
            "error": "NVML Shared Library Not Found",
            "error_code": 12,
            "errors": {},
            "gpus": [],
        },
        python="3.8.10",
    )


def old_driver() -> Layout:
    """CentOS 7, driver 470 from NVIDIA's rpm repository: nvidia-smi does not know `compute_cap`
    (added in 510), so the query is asked again without it. Toolkit and cuDNN from rpms, the toolkit
    reached through /etc/alternatives; python3.6 with tensorflow-gpu installed by pip as root."""
    tk = "/usr/local/cuda-11.4"
    site = "/usr/local/lib/python3.6/site-packages"
    smi = Exec(
        'case "$*" in\n'
        "  *compute_cap*) echo 'Field \"compute_cap\" is not a valid field to query.'; exit 2;;\n"
        "esac\n"
        "echo 'Tesla K80, 470.223.02, 11441, GPU-00000000-0000-0000-0000-000000000001, 00000000:00:1E.0'\n"
        "echo 'Tesla K80, 470.223.02, 11441, GPU-00000000-0000-0000-0000-000000000002, 00000000:00:1F.0'\n"
    )
    return Layout(
        "old-driver-no-compute-cap",
        old_driver.__doc__ or "",
        {
            **LD_SO_CONF,
            "/etc/os-release": 'NAME="CentOS Linux"\nVERSION="7 (Core)"\nID="centos"\nID_LIKE="rhel fedora"\n'
            'VERSION_ID="7"\nPRETTY_NAME="CentOS Linux 7 (Core)"\n',
            "/proc/driver/nvidia/version": (
                "NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.223.02  Sat Oct  7 15:39:11 UTC 2023\n"
                "GCC version:  gcc version 4.8.5 20150623 (Red Hat 4.8.5-44) (GCC) \n"
            ),
            **versioned_lib("/usr/lib64", "libnvidia-ml", "470.223.02", soname="1"),
            **versioned_lib("/usr/lib64", "libcuda", "470.223.02", soname="1"),
            "/usr/bin/nvidia-smi": smi,
            "/var/lib/rpm/Packages": b"",
            "/usr/bin/rpm": printing(
                "bash\t4.2.46-35.el7_9\n"
                "nvidia-driver-latest-dkms\t470.223.02-1.el7\n"
                "nvidia-driver-latest-dkms-NVML\t470.223.02-1.el7\n"
                "cuda-toolkit-11-4\t11.4.4-1\n"
                "cuda-cudart-11-4\t11.4.148-1\n"
                "libcudnn8\t8.2.4.15-1.cuda11.4\n"
                "libcudnn8-devel\t8.2.4.15-1.cuda11.4\n"
            ),
            "/sbin/ldconfig": ldconfig(
                ("libnvidia-ml.so.1", "/lib64/libnvidia-ml.so.1"),
                ("libcuda.so.1", "/lib64/libcuda.so.1"),
                ("libcudnn.so.8", "/lib64/libcudnn.so.8"),
            ),
            "/lib64": Link("usr/lib64"),
            "/usr/local/cuda": Link("/etc/alternatives/cuda"),
            "/usr/local/cuda-11": Link("/etc/alternatives/cuda-11"),
            "/etc/alternatives/cuda": Link(tk),
            "/etc/alternatives/cuda-11": Link(tk),
            **toolkit_dirs(tk),
            f"{tk}/version.json": version_json("11.4.4", "11.4.148"),
            **versioned_lib(f"{tk}/targets/x86_64-linux/lib", "libcudart", "11.4.148"),
            **cudnn_libs("/usr/lib64", "8.2.4", ("", "_ops_infer", "_cnn_infer")),
            "/usr/include/cudnn.h": CUDNN8_CUDNN_H,
            "/usr/include/cudnn_version.h": cudnn_header("8.2.4"),
            "/usr/bin/python3": Link("python3.6"),
            "/usr/bin/python3.6": b"\x7fELF",
            **dist(site, "tensorflow-gpu", "2.6.2"),
            f"{site}/tensorflow/python/platform/build_info.py": (
                "import collections\n\nbuild_info = collections.OrderedDict([('cpu_compiler', '/dt7/usr/bin/gcc'), "
                "('cuda_compute_capabilities', ['sm_35', 'sm_50', 'sm_60', 'sm_70', 'sm_75', 'compute_80']), "
                "('cuda_version', '11.2'), ('cudnn_version', '8'), ('is_cuda_build', True), "
                "('is_rocm_build', False), ('is_tensorrt_build', True)])\n"
            ),
        },
        kernel="3.10.0-1160.el7.x86_64",
        nvml={"ok": False, "loaded": False, "error": "pynvml was not sent with the probe"},
        python="3.6.8",
    )


def toolkits() -> Layout:
    """Three toolkits side by side: 10.1 from the runfile (version.txt, uninstall_cuda_10.1.pl),
    11.2 from debs (version.json; the default, through /etc/alternatives), 12.4 copied from a tarball
    (no version file: nvcc answers). A dangling cuda-9.0 link and a symlink loop are left over; the
    loader path is spread over ld.so.conf.d, profile.d (with ${LD_LIBRARY_PATH:+...}) and
    /etc/environment, one directory of which no longer exists."""
    tree: Tree = {
        **USRMERGE,
        **LD_SO_CONF,
        **os_release("Ubuntu 20.04.6 LTS", "ubuntu", "20.04"),
        "/usr/local/cuda": Link("/etc/alternatives/cuda"),
        "/usr/local/cuda-11": Link("/etc/alternatives/cuda-11"),
        "/etc/alternatives/cuda": Link("/usr/local/cuda-11.2"),
        "/etc/alternatives/cuda-11": Link("/usr/local/cuda-11.2"),
        "/usr/local/cuda-12": Link("cuda-12.4"),
        "/usr/local/cuda-9.0": Link("/usr/local/cuda-9.0-removed"),
        "/usr/local/cuda-loop": Link("cuda-loop"),
        # 10.1: runfile, no targets/ symlinks for lib64 in this old layout.
        "/usr/local/cuda-10.1/version.txt": "CUDA Version 10.1.243\n",
        "/usr/local/cuda-10.1/bin/uninstall_cuda_10.1.pl": "#!/usr/bin/perl\n",
        "/usr/local/cuda-10.1/bin/nvcc": nvcc("10.1", "10.1.243"),
        **versioned_lib("/usr/local/cuda-10.1/lib64", "libcudart", "10.1.243", soname="10.1"),
        **toolkit_dirs("/usr/local/cuda-11.2"),
        "/usr/local/cuda-11.2/version.json": version_json("11.2.2", "11.2.152"),
        "/usr/local/cuda-11.2/bin/nvcc": nvcc("11.2", "11.2.152"),
        **versioned_lib("/usr/local/cuda-11.2/targets/x86_64-linux/lib", "libcudart", "11.2.152", soname="11.0"),
        **toolkit_dirs("/usr/local/cuda-12.4"),
        "/usr/local/cuda-12.4/bin/nvcc": nvcc("12.4", "12.4.131"),
        **versioned_lib("/usr/local/cuda-12.4/targets/x86_64-linux/lib", "libcudart", "12.4.127", soname="12"),
        "/usr/bin/dpkg-query": dpkg(
            ("cuda-cudart-11-2", "11.2.152-1"),
            ("cuda-nvcc-11-2", "11.2.152-1"),
            ("cuda-toolkit-11-2", "11.2.2-1"),
            ("cuda-toolkit-12-4", "12.4.1-1", "deinstall ok config-files"),
        ),
        "/etc/ld.so.conf.d/cuda-10-1.conf": "/usr/local/cuda-10.1/lib64\n",
        "/etc/ld.so.conf.d/cuda-11-2.conf": "/usr/local/cuda-11.2/targets/x86_64-linux/lib\n",
        "/etc/profile.d/cuda.sh": (
            "export PATH=/usr/local/cuda-12.4/bin${PATH:+:${PATH}}\n"
            "export LD_LIBRARY_PATH=/usr/local/cuda-12.4/lib64${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}\n"
        ),
        "/etc/environment": 'PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"\n'
        'LD_LIBRARY_PATH="/usr/local/cuda-9.0/lib64"\n',
        "/usr/bin/python3": Link("python3.8"),
        "/usr/bin/python3.8": b"\x7fELF",
    }
    return Layout("toolkits-alternatives", toolkits.__doc__ or "", tree, kernel="5.4.0-182-generic", python="3.8.10")


def cudnn_copies() -> Layout:
    """Four cuDNN copies: 7.6.5 copied into the 10.1 toolkit (versions in cudnn.h), 8.1.0 copied into
    the 11.2 toolkit (cudnn.h holds no version since 8: cudnn_version.h does), 8.9.7 from the
    libcudnn8 deb (cudnn_version_v8.h reached through /etc/alternatives), and the nvidia-cudnn-cu12
    wheel of a TensorFlow venv (libcudnn.so.8 only: the wheel's version tells the rest). A stale
    cuDNN 7 cudnn.h is left in /usr/include from an old tarball copy."""
    site = site_of("/home/bob/venvs/tf215", "3.10")
    tree: Tree = {
        **USRMERGE,
        **LD_SO_CONF,
        **os_release("Ubuntu 20.04.6 LTS", "ubuntu", "20.04"),
        "/usr/local/cuda": Link("/usr/local/cuda-11.2"),
        "/usr/local/cuda-10.1/version.txt": "CUDA Version 10.1.243\n",
        "/usr/local/cuda-10.1/bin/uninstall_cuda_10.1.pl": "#!/usr/bin/perl\n",
        "/usr/local/cuda-10.1/include/cudnn.h": cudnn7_cudnn_h("7.6.5"),
        **cudnn_libs("/usr/local/cuda-10.1/lib64", "7.6.5"),
        **toolkit_dirs("/usr/local/cuda-11.2"),
        "/usr/local/cuda-11.2/version.json": version_json("11.2.2", "11.2.152"),
        "/usr/local/cuda-11.2/bin/cuda-uninstaller": b"\x7fELF",
        "/usr/local/cuda-11.2/targets/x86_64-linux/include/cudnn.h": CUDNN8_CUDNN_H,
        "/usr/local/cuda-11.2/targets/x86_64-linux/include/cudnn_version.h": cudnn_header("8.1.0"),
        **cudnn_libs("/usr/local/cuda-11.2/targets/x86_64-linux/lib", "8.1.0", ("", "_ops_infer", "_cnn_infer")),
        **cudnn_libs("/usr/lib/x86_64-linux-gnu", "8.9.7", ("", "_ops_infer", "_adv_infer")),
        "/usr/include/x86_64-linux-gnu/cudnn_v8.h": CUDNN8_CUDNN_H,
        "/usr/include/x86_64-linux-gnu/cudnn_version_v8.h": cudnn_header("8.9.7"),
        "/usr/include/cudnn_version.h": Link("/etc/alternatives/cudnn_version_h"),
        "/etc/alternatives/cudnn_version_h": Link("/usr/include/x86_64-linux-gnu/cudnn_version_v8.h"),
        "/etc/alternatives/libcudnn": Link("/usr/include/x86_64-linux-gnu/cudnn_v8.h"),
        "/usr/include/cudnn.h": cudnn7_cudnn_h("7.6.5"),
        "/usr/bin/dpkg-query": dpkg(
            ("libcudnn8", "8.9.7.29-1+cuda12.2"),
            ("libcudnn8-dev", "8.9.7.29-1+cuda12.2"),
        ),
        "/sbin/ldconfig": ldconfig(
            ("libcudnn.so.8", "/lib/x86_64-linux-gnu/libcudnn.so.8"),
            ("libcudnn.so.7", "/usr/local/cuda-10.1/lib64/libcudnn.so.7"),
        ),
        "/etc/ld.so.conf.d/cuda-10-1.conf": "/usr/local/cuda-10.1/lib64\n",
        "/usr/bin/python3": Link("python3.10"),
        "/usr/bin/python3.10": b"\x7fELF",
        **venv("/home/bob/venvs/tf215", "/usr/bin/python3.10", "3.10.12"),
        **dist(site, "tensorflow", "2.15.0"),
        f"{site}/tensorflow/python/platform/build_info.py": (
            "import collections\n\nbuild_info = collections.OrderedDict([('cpu_compiler', "
            "'/usr/lib/llvm-17/bin/clang'), ('cuda_compute_capabilities', ['sm_50', 'sm_60', 'sm_70', 'sm_75', "
            "'compute_80']), ('cuda_version', '12.2'), ('cudnn_version', '8'), ('is_cuda_build', True), "
            "('is_rocm_build', False), ('is_tensorrt_build', True)])\n"
        ),
        **dist(site, "nvidia-cudnn-cu12", "8.9.4.25"),
        **dist(site, "nvidia-cuda-runtime-cu12", "12.2.140"),
        f"{site}/nvidia/cudnn/lib/libcudnn.so.8": b"\x7fELF",
        f"{site}/nvidia/cudnn/lib/libcudnn_ops_infer.so.8": b"\x7fELF",
        f"{site}/nvidia/cuda_runtime/lib/libcudart.so.12": b"\x7fELF",
    }
    return Layout("cudnn-copies", cudnn_copies.__doc__ or "", tree, kernel="5.4.0-182-generic")


def frameworks() -> Layout:
    """Every TensorFlow build_info.py format and PyTorch version.py, read without importing them:
    tensorflow-gpu 1.12 (only is_cuda_build), 1.15 (tensorflow_core/, *_version_number), 2.1
    (constants with is_rocm_build), 2.3 (a dict), 2.4 in a user site (an OrderedDict), tf-nightly;
    torch 2.11 (annotated `cuda: Optional[str]`) with the cuDNN wheel, 1.13.1+cu117, a +cpu build;
    jax with its CUDA plugin and an old jaxlib whose version says +cuda11.cudnn86; a conda env
    with pytorch (egg-info), cudatoolkit and cudnn from conda."""
    root = "/opt/envs"
    tree: Tree = {
        **USRMERGE,
        **LD_SO_CONF,
        **os_release("Ubuntu 18.04.6 LTS", "ubuntu", "18.04"),
        "/usr/bin/python3": Link("python3.6"),
        "/usr/bin/python3.6": b"\x7fELF",
    }

    def tf_env(name: str, dist_name: str, version: str, text: str, *, core: bool = False) -> None:
        site = site_of(f"{root}/{name}", "3.6")
        tree.update(venv(f"{root}/{name}", "/usr/bin/python3.6", "3.6.9"))
        tree.update(dist(site, dist_name, version))
        package = "tensorflow_core" if core else "tensorflow"
        tree[f"{site}/{package}/python/platform/build_info.py"] = text

    tf_env("tf112", "tensorflow-gpu", "1.12.0", "# Generated by the build\nis_cuda_build = True\n")
    tf_env(
        "tf115",
        "tensorflow-gpu",
        "1.15.5",
        "is_cuda_build = True\ncuda_version_number = '10.0'\ncudnn_version_number = '7'\n",
        core=True,
    )
    tf_env(
        "tf21",
        "tensorflow",
        "2.1.0",
        "is_rocm_build = False\nis_cuda_build = True\ncuda_version_number = '10.1'\ncudnn_version_number = '7'\n",
        core=True,
    )
    tf_env(
        "tf23",
        "tensorflow",
        "2.3.0",
        "build_info = {'cuda_version': '10.1', 'cudnn_version': '7', 'cuda_compute_capabilities': ['sm_35', "
        "'sm_50', 'sm_60', 'sm_70', 'sm_75', 'compute_80'], 'cpu_compiler': '/usr/bin/gcc-5', "
        "'is_rocm_build': False, 'is_cuda_build': True}\n",
    )
    tf_env(
        "nightly",
        "tf-nightly",
        "2.16.0.dev20231101",
        "import collections\n\nbuild_info = collections.OrderedDict([('cuda_version', '12.2'), "
        "('cudnn_version', '8'), ('is_cuda_build', True), ('is_rocm_build', False)])\n",
    )
    # tensorflow-gpu 2.2.0 then tensorflow 2.5.0 into one venv: the second overwrote tensorflow/.
    # pip's RECORD hashes tell whose build_info.py is on disk; where a RECORD has none, the probe says so.
    bi = "tensorflow/python/platform/build_info.py"
    tf22 = "is_rocm_build = False\nis_cuda_build = True\ncuda_version_number = '10.1'\ncudnn_version_number = '7'\n"
    tf25 = (
        "import collections\n\nbuild_info = collections.OrderedDict([('cuda_version', '11.2'), "
        "('cudnn_version', '8'), ('is_cuda_build', True), ('is_rocm_build', False)])\n"
    )
    for env_name, hashed in (("conflict", True), ("conflict-nohash", False)):
        site = site_of(f"{root}/{env_name}", "3.6")
        tree.update(venv(f"{root}/{env_name}", "/usr/bin/python3.6", "3.6.9"))
        tree.update(dist(site, "tensorflow-gpu", "2.2.0", files={bi: tf22} if hashed else None))
        tree.update(dist(site, "tensorflow", "2.5.0", files={bi: tf25} if hashed else None))
        tree[f"{site}/{bi}"] = tf25

    user_site = "/root/.local/lib/python3.6/site-packages"
    tree.update(dist(user_site, "tensorflow", "2.4.1"))
    tree[f"{user_site}/tensorflow/python/platform/build_info.py"] = (
        "import collections\n\nbuild_info = collections.OrderedDict([('cpu_compiler', '/usr/bin/gcc-5'), "
        "('cuda_compute_capabilities', ['sm_35', 'sm_50', 'sm_60', 'sm_70', 'sm_75', 'compute_80']), "
        "('cuda_version', '11.0'), ('cudnn_version', '8'), ('is_cuda_build', True), ('is_rocm_build', False), "
        "('is_tensorrt_build', True)])\n"
    )

    site = site_of(f"{root}/torch2", "3.12")
    tree.update(venv(f"{root}/torch2", "/usr/local/bin/python3.12", "3.12.3.final.0", key="version_info"))
    tree["/usr/local/bin/python3.12"] = b"\x7fELF"
    tree.update(dist(site, "torch", "2.11.0"))
    tree.update(dist(site, "nvidia-cudnn-cu13", "9.19.0.56"))
    tree[f"{site}/torch/version.py"] = (
        "from typing import Optional\n\n__version__ = '2.11.0+cu130'\ndebug = False\n"
        "cuda: Optional[str] = '13.0'\ngit_version = 'abc'\nhip: Optional[str] = None\nxpu: Optional[str] = None\n"
    )
    site = site_of(f"{root}/torch113", "3.6")
    tree.update(venv(f"{root}/torch113", "/usr/bin/python3.6", "3.6.9"))
    tree.update(dist(site, "torch", "1.13.1+cu117"))
    tree.update(dist(site, "nvidia-cudnn-cu11", "8.5.0.96"))
    tree[f"{site}/torch/version.py"] = (
        "__version__ = '1.13.1+cu117'\ndebug = False\ncuda = '11.7'\ngit_version = 'def'\nhip = None\n"
    )
    site = site_of(f"{root}/torchcpu", "3.6")
    tree.update(venv(f"{root}/torchcpu", "/usr/bin/python3.6", "3.6.9"))
    tree.update(dist(site, "torch", "2.2.0+cpu"))
    tree[f"{site}/torch/version.py"] = "__version__ = '2.2.0+cpu'\ndebug = False\ncuda = None\nhip = None\n"

    site = site_of(f"{root}/jax", "3.6")
    tree.update(venv(f"{root}/jax", "/usr/bin/python3.6", "3.6.9"))
    for name, version in (
        ("jax", "0.4.30"),
        ("jaxlib", "0.4.30"),
        ("jax-cuda12-plugin", "0.4.30"),
        ("jax-cuda12-pjrt", "0.4.30"),
        ("nvidia-cudnn-cu12", "9.1.0.70"),
    ):
        tree.update(dist(site, name, version))
    site = site_of(f"{root}/jaxold", "3.6")
    tree.update(venv(f"{root}/jaxold", "/usr/bin/python3.6", "3.6.9"))
    tree.update(dist(site, "jax", "0.4.7"))
    tree.update(dist(site, "jaxlib", "0.4.7+cuda11.cudnn86"))

    conda = "/opt/conda/envs/pt"
    site = site_of(conda, "3.9")
    tree.update(
        {
            "/opt/conda/conda-meta/conda-23.1.0-py39h06a4308_0.json": "{}",
            "/opt/conda/conda-meta/python-3.9.16-h7a1cb2a_2.json": "{}",
            "/opt/conda/bin/python3": b"\x7fELF",
            f"{conda}/conda-meta/python-3.9.13-h12debd9_1.json": "{}",
            f"{conda}/conda-meta/pytorch-1.12.1-py3.9_cuda11.3_cudnn8.3.2_0.json": "{}",
            f"{conda}/conda-meta/cudatoolkit-11.3.1-h2bc3f7f_2.json": "{}",
            f"{conda}/conda-meta/cudnn-8.2.1-cuda11.3_0.json": "{}",
            f"{conda}/conda-meta/numpy-1.23.1-py39h6c91a56_0.json": "{}",
            f"{conda}/bin/python3": Link("python3.9"),
            f"{conda}/bin/python3.9": b"\x7fELF",
            **dist(site, "torch", "1.12.1", egg=True),
            f"{site}/torch/version.py": "__version__ = '1.12.1'\ndebug = False\ncuda = '11.3'\nhip = None\n",
            **cudnn_libs(f"{conda}/lib", "8.2.1"),
            f"{conda}/include/cudnn_version.h": cudnn_header("8.2.1"),
            **versioned_lib(f"{conda}/lib", "libcudart", "11.3.109", soname="11.0"),
        }
    )
    return Layout("frameworks", frameworks.__doc__ or "", tree, kernel="4.15.0-213-generic", python="3.6.9")


def loader_search() -> Layout:
    """What diagnosis needs to resolve each framework's CUDA libraries like the loader: torch 2.1 from
    PyPI whose libtorch_cuda.so has an RPATH to its nvidia-* wheel dirs (real ELF objects), a venv
    activate script and a conda activate.d script that change LD_LIBRARY_PATH (one entry naming
    `$(...)`, which the probe cannot know), a Jupyter kernel with its own LD_LIBRARY_PATH, a login
    chain (/etc/environment, profile.d with `${LD_LIBRARY_PATH:+...}`, ~/.profile), a toolkit with
    `lib64/stubs/libcuda.so`, a 32-bit library; the driver userspace does not match the module, so
    the GPUs come from /proc/driver/nvidia/gpus and the PCI bus (one GPU the module does not list)."""
    tk = "/usr/local/cuda-11.8"
    lib = f"{tk}/targets/x86_64-linux/lib"
    site = site_of("/opt/torch21", "3.10")
    conda = "/opt/conda/envs/tf"
    csite = site_of(conda, "3.10")
    rpath = (*(f"$ORIGIN/../../nvidia/{d}/lib" for d in ("cublas", "cuda_runtime", "cudnn")), "$ORIGIN", "/x/$LIB")
    cuda_libs = ("libcudart.so.12", "libcublas.so.12", "libcublasLt.so.12", "libcudnn.so.8")
    tree: Tree = {
        **USRMERGE,
        **LD_SO_CONF,
        **os_release("Ubuntu 22.04.4 LTS", "ubuntu", "22.04"),
        "/etc/ld.so.conf.d/cuda-11-8.conf": f"{tk}/lib64\n",
        "/etc/ld.so.conf.d/old.conf": "/opt/old/lib\n",
        "/etc/environment": 'PATH="/usr/local/sbin:/usr/bin"\nLD_LIBRARY_PATH="/opt/env/lib"\n',
        "/etc/profile.d/cuda.sh": (
            f"export CUDA_HOME={tk}\n"
            "if [ -d $CUDA_HOME ]; then\n"
            "  export LD_LIBRARY_PATH=$CUDA_HOME/lib64${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}\n"
            "fi\n"
        ),
        "/root/.profile": "# ~/.profile\nexport LD_LIBRARY_PATH=\"/root/mylibs:$LD_LIBRARY_PATH\"\n",
        "/proc/driver/nvidia/version": "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 2024\n",
        "/proc/driver/nvidia/gpus/0000:17:00.0/information": (
            "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 40\nGPU UUID: \t ????????-????-????-????-????????????\n"
            "Bus Type: \t PCIe\nBus Location: \t 0000:17:00.0\nDevice Minor: \t 0\nGPU Excluded:\t No\n"
        ),
        "/sys/bus/pci/devices/0000:17:00.0/vendor": "0x10de\n",
        "/sys/bus/pci/devices/0000:17:00.0/device": "0x2330\n",
        "/sys/bus/pci/devices/0000:17:00.0/class": "0x030200\n",
        "/sys/bus/pci/devices/0000:17:00.1/vendor": "0x10de\n",  # the card's audio function: not a GPU
        "/sys/bus/pci/devices/0000:17:00.1/device": "0x22a3\n",
        "/sys/bus/pci/devices/0000:17:00.1/class": "0x040300\n",
        "/sys/bus/pci/devices/0000:65:00.0/vendor": "0x10de\n",
        "/sys/bus/pci/devices/0000:65:00.0/device": "0x2330\n",
        "/sys/bus/pci/devices/0000:65:00.0/class": "0x030200\n",
        "/sys/bus/pci/devices/0000:00:00.0/vendor": "0x8086\n",
        "/sys/bus/pci/devices/0000:00:00.0/device": "0x09a2\n",
        "/sys/bus/pci/devices/0000:00:00.0/class": "0x060000\n",
        "/usr/lib/x86_64-linux-gnu/libcuda.so.550.90.07": shared_object("libcuda.so.1"),
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1": Link("libcuda.so.550.90.07"),
        "/usr/bin/nvidia-smi": printing(
            "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 550.90\n", 18
        ),
        "/usr/bin/ldconfig": ldconfig(
            ("libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1"),
            ("libcudart.so.11.0", f"{tk}/targets/x86_64-linux/lib/libcudart.so.11.0"),
        ),
        f"{tk}/version.json": version_json("11.8.0"),
        **toolkit_dirs(tk),
        f"{lib}/libcudart.so.11.8.89": shared_object("libcudart.so.11.0"),
        f"{lib}/libcudart.so.11.0": Link("libcudart.so.11.8.89"),
        f"{lib}/stubs/libcuda.so": shared_object("libcuda.so.1"),
        "/opt/old/lib/libcudart.so.10.0": b"\x7fELF\x01\x01\x01" + bytes(57),  # a 32-bit object
        "/usr/bin/python3": Link("python3.10"),
        "/usr/bin/python3.10": b"\x7fELF",
        **venv("/opt/torch21", "/usr/bin/python3.10", "3.10.12"),
        "/opt/torch21/bin/activate": (
            '# This file must be used with "source bin/activate" *from bash*\nVIRTUAL_ENV="/opt/torch21"\n'
            'export VIRTUAL_ENV\nPATH="$VIRTUAL_ENV/bin:$PATH"\nexport PATH\n'
            "export LD_LIBRARY_PATH=$VIRTUAL_ENV/lib/extra:$LD_LIBRARY_PATH\n"
        ),
        **dist(site, "torch", "2.1.0"),
        f"{site}/torch/version.py": "__version__ = '2.1.0+cu121'\ndebug = False\ncuda = '12.1'\nhip = None\n",
        f"{site}/torch/lib/libtorch_cuda.so": shared_object(
            "libtorch_cuda.so", needed=("libc10_cuda.so", *cuda_libs), rpath=rpath
        ),
        f"{site}/torch/lib/libc10_cuda.so": shared_object("libc10_cuda.so", needed=("libcudart.so.12",), rpath=rpath),
        **dist(site, "nvidia-cudnn-cu12", "8.9.2.26"),
        **dist(site, "nvidia-cuda-runtime-cu12", "12.1.105"),
        **dist(site, "nvidia-cublas-cu12", "12.1.3.1"),
        f"{site}/nvidia/cudnn/lib/libcudnn.so.8": shared_object("libcudnn.so.8"),
        f"{site}/nvidia/cuda_runtime/lib/libcudart.so.12": shared_object("libcudart.so.12"),
        f"{site}/nvidia/cublas/lib/libcublas.so.12": shared_object("libcublas.so.12"),
        f"{site}/nvidia/cublas/lib/libcublasLt.so.12": shared_object("libcublasLt.so.12"),
        "/usr/local/share/jupyter/kernels/torch21/kernel.json": json.dumps(
            {
                "argv": ["/opt/torch21/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "torch 2.1",
                "language": "python",
                "env": {"LD_LIBRARY_PATH": f"{tk}/lib64:${{LD_LIBRARY_PATH}}"},
            }
        ),
        f"{conda}/conda-meta/python-3.10.13-h955ad1f_0.json": "{}",
        f"{conda}/bin/python3": Link("python3.10"),
        f"{conda}/bin/python3.10": b"\x7fELF",
        f"{conda}/etc/conda/activate.d/env_vars.sh": (
            'CUDNN_PATH=$(dirname $(python -c "import nvidia.cudnn;print(nvidia.cudnn.__file__)"))\n'
            "export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$CONDA_PREFIX/lib/:$CUDNN_PATH/lib\n"
        ),
        f"{conda}/share/jupyter/kernels/python3/kernel.json": json.dumps(
            {"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "language": "python"}
        ),
        **dist(csite, "tensorflow", "2.12.0"),
        f"{csite}/tensorflow/python/platform/build_info.py": (
            "import collections\n\nbuild_info = collections.OrderedDict([('cuda_version', '11.8'), "
            "('cudnn_version', '8'), ('is_cuda_build', True), ('is_rocm_build', False)])\n"
        ),
        f"{csite}/tensorflow/python/_pywrap_tensorflow_internal.so": shared_object(
            "_pywrap_tensorflow_internal.so", needed=("libtensorflow_framework.so.2",), runpath=("${ORIGIN}/..",)
        ),
        f"{csite}/tensorflow/libtensorflow_framework.so.2": shared_object("libtensorflow_framework.so.2"),
    }
    return Layout(
        "loader-search",
        loader_search.__doc__ or "",
        tree,
        kernel="5.15.0-105-generic",
        nvml={
            "ok": False,
            "loaded": True,
            "error": "Driver/library version mismatch",
            "error_code": 18,
            "errors": {},
            "gpus": [],
        },
        env={"LD_LIBRARY_PATH": "/opt/env/lib"},
    )


HOSTILE_VERSION_PY = "__version__ = __import__('os').system('touch /tmp/remediator-probe-pwned')\ncuda = '11.8'\n"


def hostile() -> Layout:
    """Values a hostile or odd host can show: directory names with newlines, `;`, `$(...)` and
    backticks, `..` in loader paths, a version.py whose `__version__` is code (never run), a
    toolkit whose version.json holds shell, a GPU name with `$(...)`, symlink loops under the venv
    roots. All of it must come through as inert strings."""
    evil_venv = "/home/eve/$(touch pwned);x"
    site = site_of(evil_venv, "3.10")
    tk = "/usr/local/cuda-12.1`reboot`"
    return Layout(
        "hostile-paths",
        hostile.__doc__ or "",
        {
            **USRMERGE,
            **LD_SO_CONF,
            "/etc/os-release": 'PRETTY_NAME="Ubuntu $(reboot)"\nID=ubuntu\nVERSION_ID="22.04; rm -rf /"\n',
            "/etc/ld.so.conf.d/evil.conf": "/usr/local/cuda/../../../etc\n/opt/$(id)/lib\n",
            "/etc/profile.d/evil.sh": 'export LD_LIBRARY_PATH="/opt/a b/lib:/opt/`id`/lib"\n',
            "/proc/driver/nvidia/version": "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  $(id)\n",
            **versioned_lib("/usr/lib/x86_64-linux-gnu", "libnvidia-ml", "535.104.05", soname="1"),
            "/usr/bin/nvidia-smi": printing(
                "NVIDIA A100 $(reboot); `id`, 535.104.05, 40960, GPU-00000000-0000-0000-0000-000000000003,"
                " 00000000:00:04.0, 8.0\n"
            ),
            f"{tk}/version.json": json.dumps({"cuda": {"name": "CUDA SDK", "version": "12.1.1'; rm -rf / #"}}),
            f"{tk}/bin/nvcc": DIR,
            "/usr/bin/python3": Link("python3.10"),
            "/usr/bin/python3.10": b"\x7fELF",
            **venv(evil_venv, "/usr/bin/python3.10", "3.10.12"),
            **dist(site, "torch", "2.0.0"),
            f"{site}/torch/version.py": HOSTILE_VERSION_PY,
            **venv("/opt/new\nline", "/usr/bin/python3.10", "3.10.12"),
            "/opt/loop": Link("loop"),
            "/home/eve/cycle": Link("/home/eve"),
            "/home/eve/deep/a/b/c/d/e/f/pyvenv.cfg": "version = 3.10.12\n",
        },
        kernel="5.15.0-91-generic",
        nvml={
            "ok": False,
            "loaded": True,
            "error": "Unknown Error",
            "error_code": 999,
            "errors": {},
            "gpus": [],
        },
    )


def wedged() -> Layout:
    """A wedged driver: NVML does not answer and nvidia-smi hangs; both are cut off by their timeouts."""
    return Layout(
        "wedged-driver",
        wedged.__doc__ or "",
        {
            **USRMERGE,
            **LD_SO_CONF,
            **os_release("Ubuntu 22.04.4 LTS", "ubuntu", "22.04"),
            "/proc/driver/nvidia/version": (
                "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n"
            ),
            **versioned_lib("/usr/lib/x86_64-linux-gnu", "libnvidia-ml", "550.54.15", soname="1"),
            "/usr/bin/nvidia-smi": Exec("exec sleep 30\n"),
            "/usr/bin/python3": Link("python3.10"),
            "/usr/bin/python3.10": b"\x7fELF",
        },
        kernel="5.15.0-100-generic",
        nvml={"ok": False, "loaded": True, "timed_out": True, "error": "NVML did not answer in time"},
        command_timeout=1.0,
    )


LAYOUTS = {
    layout.name: layout
    for layout in (
        h200(),
        mismatch(),
        not_loaded(),
        no_driver(),
        old_driver(),
        toolkits(),
        cudnn_copies(),
        frameworks(),
        hostile(),
        wedged(),
        loader_search(),
    )
}


# --- running the script -----------------------------------------------------------------------


def run_script(
    root: Path,
    *,
    python: str = "python3",
    command_timeout: float = 20.0,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> dict[str, Any]:
    payload = build_payload(root=str(root), nvml=False, command_timeout=command_timeout)
    environment = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    environment.update(env or {})
    proc = subprocess.run([python, "-"], input=payload, capture_output=True, env=environment, timeout=timeout)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b"", proc.stderr.decode()
    return json.loads(proc.stdout)


def normalize(doc: dict[str, Any], layout: Layout) -> dict[str, Any]:
    """What differs between this machine and the host the layout stands for: the probe's own run
    facts, the kernel, and NVML (asked only on a real host)."""
    doc = json.loads(json.dumps(doc))
    doc["probe"].pop("cpu_s")  # this run's own CPU time
    doc["probe"].update(
        {
            "root": "/",
            "executable": "/usr/bin/python3",
            "python": layout.python,
            "collected_at": "2026-11-26T04:04:48Z",
            "duration_s": 1.0,
            "uid": 0,
        }
    )
    minor = ".".join(layout.python.split(".")[:2])
    doc["running_python"] = {
        "executable": "/usr/bin/python3",
        "real": f"/usr/bin/python{minor}",
        "version": layout.python,
    }
    doc["os"]["kernel"] = layout.kernel
    doc["os"]["arch"] = "x86_64"
    if layout.nvml is not None:
        doc["driver"]["nvml"] = layout.nvml
        if layout.nvml.get("ok"):
            doc["driver"]["nvidia_smi"] = []  # the script asks nvidia-smi only when NVML fails
    return doc


def recorded(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.probe.json").read_text())


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_recorded_documents_match_the_script(name: str, tmp_path: Path) -> None:
    layout = LAYOUTS[name]
    build_tree(tmp_path, layout.tree)
    doc = normalize(run_script(tmp_path, command_timeout=layout.command_timeout, env=layout.env), layout)
    path = FIXTURES / f"{name}.probe.json"
    if RECORD:
        FIXTURES.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    assert doc == recorded(name), f"the script's output for {name} changed; re-record (see module docstring)"


# --- what the script finds on real layouts, end to end through probe_host -----------------------


def probe_tree(tmp_path: Path, layout: Layout, monkeypatch: pytest.MonkeyPatch) -> Any:
    build_tree(tmp_path, layout.tree)
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    for key, value in layout.env.items():
        monkeypatch.setenv(key, value)
    return probe_host(LocalTransport(), layout.name, root=str(tmp_path), nvml=False)


def test_h200_layout_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    facts = probe_tree(tmp_path, LAYOUTS["h200-ubuntu24.04"], monkeypatch)
    tk = facts.default_toolkit()
    assert tk is not None and (tk.version, tk.path, tk.via_alternatives) == (
        "13.0.88",
        "/usr/local/cuda-13.0",
        True,
    )
    assert [c.version for c in facts.compat_libcuda] == ["580.95.05"]
    assert sorted((c.version, c.install_method) for c in facts.cudnn) == [
        ("9.14.0", "deb"),
        ("9.19.0", "pip"),
    ]
    assert facts.driver.kernel_module_version == "580.159.04"
    assert facts.driver.userspace_version == "580.159.04"
    torch = next(f for e in facts.envs for f in e.frameworks if f.name == "torch")
    assert (torch.version, torch.cuda_build, torch.cudnn_build) == ("2.11.0+cu130", "13.0", "9.19.0")


def test_mismatch_layout_reports_both_versions_and_the_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    facts = probe_tree(tmp_path, LAYOUTS["driver-library-mismatch"], monkeypatch)
    assert facts.driver.kernel_module_version == "535.183.01"
    assert facts.driver.userspace_version == "550.90.07"
    assert (
        facts.driver.error == "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 550.90"
    )


def test_old_nvidia_smi_is_asked_again_without_compute_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    facts = probe_tree(tmp_path, LAYOUTS["old-driver-no-compute-cap"], monkeypatch)
    assert facts.driver.source == "nvidia-smi" and facts.driver.version == "470.223.02"
    assert [(g.name, g.memory_mib, g.compute_capability) for g in facts.gpus] == [
        ("Tesla K80", 11441, None),
        ("Tesla K80", 11441, None),
    ]


def test_nvidia_smi_is_asked_once_when_the_module_is_known_old_twice_when_unknown(tmp_path: Path) -> None:
    layout = LAYOUTS["old-driver-no-compute-cap"]
    build_tree(tmp_path / "known", layout.tree)
    runs = run_script(tmp_path / "known")["driver"]["nvidia_smi"]
    assert [(r["rc"], "compute_cap" in r["argv"][1]) for r in runs] == [(0, False)]
    unknown = {k: v for k, v in layout.tree.items() if k != "/proc/driver/nvidia/version"}
    build_tree(tmp_path / "unknown", unknown)
    runs = run_script(tmp_path / "unknown")["driver"]["nvidia_smi"]
    assert [(r["rc"], "compute_cap" in r["argv"][1]) for r in runs] == [(2, True), (0, False)]


def test_wedged_nvidia_smi_is_cut_off(tmp_path: Path) -> None:
    layout = LAYOUTS["wedged-driver"]
    build_tree(tmp_path, layout.tree)
    doc = run_script(tmp_path, command_timeout=1.0)
    (run,) = doc["driver"]["nvidia_smi"]
    assert run["timed_out"] is True
    assert doc["probe"]["duration_s"] < 10


def remote_namespace() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "not_main"}
    exec(compile(remote_script_source(), "<remote>", "exec"), namespace)
    return namespace


def test_unreadable_directory_is_a_note_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root reads every directory, so the refusal is simulated where the script meets it: os.scandir.
    build_tree(tmp_path, {"/opt/private/venv/pyvenv.cfg": "version = 3.8.10\n", **USRMERGE})
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        if str(path).endswith("/opt/private"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    remote = remote_namespace()
    doc = remote["Probe"](dict(remote["DEFAULT_OPTIONS"], root=str(tmp_path), nvml=False)).collect()
    assert {"where": "/opt/private", "message": "cannot list: Permission denied"} in doc["notes"]
    assert parse_probe_output(json.dumps(doc), host="h").notes


def test_env_walk_is_bounded_by_depth(tmp_path: Path) -> None:
    build_tree(tmp_path, LAYOUTS["hostile-paths"].tree)
    doc = run_script(tmp_path)
    paths = [e["path"] for e in doc["envs"]]
    assert "/home/eve/deep/a/b/c/d/e/f" not in paths  # deeper than max_depth below /home/eve
    assert "/home/eve/$(touch pwned);x" in paths and "/opt/new\nline" in paths


# --- what the script refuses to execute, and files that are not files ------------------------------

NVCC_124 = "Cuda compilation tools, release 12.4, V12.4.131"


def planted_toolkit(canary: Path) -> Tree:
    """A tarball copy of CUDA 12.4 without version files: only `nvcc --version` would tell. Its nvcc
    creates `canary` when it runs; its text holds the line it prints, as the real binary does."""
    return {
        **USRMERGE,
        **toolkit_dirs("/usr/local/cuda-12.4"),
        "/usr/local/cuda-12.4/bin/nvcc": Exec(f"touch {canary}\necho '{NVCC_124}'\n"),
        "/usr/bin/python3": b"\x7fELF",
    }


def chmod(root: Path, path: str, mode: int) -> None:
    (root / path.lstrip("/")).chmod(mode)


def toolkit_124(doc: dict[str, Any]) -> dict[str, Any]:
    return next(t for t in doc["toolkits"] if t["path"] == "/usr/local/cuda-12.4")


@pytest.mark.parametrize(
    ("make_unsafe", "reason"),
    [
        (
            lambda root: chmod(root, "/usr/local/cuda-12.4/bin/nvcc", 0o757),
            "/usr/local/cuda-12.4/bin/nvcc is writable by others (mode 0757)",
        ),
        (
            lambda root: chmod(root, "/usr/local/cuda-12.4/bin", 0o777),
            "/usr/local/cuda-12.4/bin is writable by others (mode 0777)",
        ),
        (
            lambda root: chmod(root, "/usr/local/cuda-12.4", 0o775),
            "/usr/local/cuda-12.4 is writable by its group (mode 0775)",
        ),
        (
            lambda root: os.chown(root / "usr/local/cuda-12.4/bin/nvcc", 1000, 1000),
            "/usr/local/cuda-12.4/bin/nvcc is owned by uid 1000, not root",
        ),
    ],
    ids=["nvcc-writable", "bin-writable", "toolkit-group-writable", "nvcc-of-another-user"],
)
def test_an_nvcc_another_user_could_have_planted_is_not_executed(tmp_path: Path, make_unsafe: Any, reason: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("the refusal rules for root are tested as root")
    root, canary = tmp_path / "root", tmp_path / "canary"
    build_tree(root, planted_toolkit(canary))
    make_unsafe(root)
    doc = run_script(root)
    assert not canary.exists(), "the planted nvcc ran"
    tk = toolkit_124(doc)
    assert tk["nvcc"]["rc"] is None and tk["nvcc"]["error"] == f"not executed: {reason}"
    assert {"where": "/usr/local/cuda-12.4/bin/nvcc", "message": f"not executed: {reason}"} in doc["notes"]
    # Its version line is read from its bytes as data, never by running it.
    assert tk["nvcc_version_line"] == NVCC_124
    facts = parse_probe_output(json.dumps(doc), host="h")
    (toolkit,) = facts.toolkits
    assert (toolkit.version, toolkit.version_source) == ("12.4.131", "nvcc")
    assert any(n.message == f"not executed: {reason}" for n in facts.notes)


def test_an_nvcc_reached_through_a_link_to_a_users_file_is_not_executed(tmp_path: Path) -> None:
    root, canary = tmp_path / "root", tmp_path / "canary"
    tree = planted_toolkit(canary)
    tree["/home/eve/nvcc"] = tree.pop("/usr/local/cuda-12.4/bin/nvcc")
    tree["/usr/local/cuda-12.4/bin/nvcc"] = Link("/home/eve/nvcc")
    build_tree(root, tree)
    chmod(root, "/home/eve", 0o777)
    doc = run_script(root)
    assert not canary.exists(), "the planted nvcc ran"
    assert toolkit_124(doc)["nvcc"]["error"] == "not executed: /home/eve is writable by others (mode 0777)"


def test_a_safe_nvcc_is_still_executed(tmp_path: Path) -> None:
    root, canary = tmp_path / "root", tmp_path / "canary"
    build_tree(root, planted_toolkit(canary))
    doc = run_script(root)
    assert canary.exists()
    tk = toolkit_124(doc)
    assert tk["nvcc"]["rc"] == 0 and tk["nvcc"]["stdout"] == NVCC_124 + "\n" and "nvcc_version_line" not in tk
    assert not [n for n in doc["notes"] if "not executed" in n["message"]]


def test_an_unsafe_nvidia_smi_first_on_the_path_is_skipped_for_a_safe_one(tmp_path: Path) -> None:
    root, canary = tmp_path / "root", tmp_path / "canary"
    row = "NVIDIA H200, 580.159.04, 143771, GPU-0, 00000000:00:06.0, 9.0\n"
    build_tree(
        root,
        {
            **USRMERGE,
            "/usr/local/bin/nvidia-smi": Exec(f"touch {canary}\n"),
            "/usr/bin/nvidia-smi": printing(row),
            "/usr/bin/python3": b"\x7fELF",
        },
    )
    chmod(root, "/usr/local/bin", 0o777)
    doc = run_script(root)
    assert not canary.exists(), "the planted nvidia-smi ran"
    (run,) = doc["driver"]["nvidia_smi"]
    assert run["argv"][0] == "/usr/bin/nvidia-smi" and run["stdout"] == row
    assert {
        "where": "/usr/local/bin/nvidia-smi",
        "message": "not executed: /usr/local/bin is writable by others (mode 0777)",
    } in doc["notes"]


def test_a_fifo_where_a_file_is_expected_does_not_hang_the_probe(tmp_path: Path) -> None:
    root, canary = tmp_path / "root", tmp_path / "canary"
    build_tree(root, planted_toolkit(canary))
    os.mkfifo(root / "usr/local/cuda-12.4/version.json")
    (root / "etc").mkdir()
    os.mkfifo(root / "etc/os-release")
    doc = run_script(root, timeout=30)  # a regression fails here rather than hanging
    tk = toolkit_124(doc)
    assert tk["version_json"] is None and tk["nvcc"]["rc"] == 0
    assert {"where": "/etc/os-release", "message": "not read: not a regular file (a FIFO)"} in doc["notes"]
    assert {
        "where": "/usr/local/cuda-12.4/version.json",
        "message": "not read: not a regular file (a FIFO)",
    } in doc["notes"]


def test_the_loaders_variables_are_not_passed_to_commands_unless_safe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    safe, open_dir = tmp_path / "safe", tmp_path / "open"
    safe.mkdir()
    open_dir.mkdir()
    open_dir.chmod(0o777)
    monkeypatch.setenv("LD_PRELOAD", str(open_dir / "evil.so"))
    monkeypatch.setenv("LD_LIBRARY_PATH", f"{open_dir}::{safe}:relative:{tmp_path}/missing")
    remote = remote_namespace()
    probe = remote["Probe"](dict(remote["DEFAULT_OPTIONS"], root=str(tmp_path), nvml=False))
    assert "LD_PRELOAD" not in probe.env and probe.env["LD_LIBRARY_PATH"] == str(safe)
    assert {
        "where": str(open_dir),
        "message": f"left out of LD_LIBRARY_PATH for the commands the probe runs: {open_dir} is writable"
        " by others (mode 0777)",
    } in probe.notes


def test_an_nvml_library_another_user_could_have_planted_is_not_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = tmp_path / "lib" / "libnvidia-ml.so.1"
    library.parent.mkdir()
    library.write_bytes(b"\x7fELF")
    library.chmod(0o666)
    remote = remote_namespace()
    probe = remote["Probe"](dict(remote["DEFAULT_OPTIONS"], nvml=True))
    monkeypatch.setattr(probe, "nvml_libraries", lambda: [str(library)])

    def cdll(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"dlopen {args}")

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    nvml = probe.nvml()
    assert nvml["ok"] is False and nvml["loaded"] is False
    assert nvml["error"] == f"NVML not loaded: {library} is writable by others (mode 0666)"
    assert {"where": str(library), "message": nvml["error"][len("NVML ") :]} in probe.notes


# --- the script on this machine and on Python 3.6 -------------------------------------------------


def test_script_parses_as_python36() -> None:
    ast.parse(remote_script_source(), feature_version=(3, 6))


def test_payload_carries_options_as_data_and_no_pynvml() -> None:
    raw = build_payload(venv_roots=["/srv/'; import os #"], nvml=True)
    payload = raw.decode()
    ast.parse(payload, feature_version=(3, 6))
    source = payload_source(raw)
    ast.parse(source, feature_version=(3, 6))
    assert "PAYLOAD_OPTIONS = None" not in source and "PAYLOAD_OPTIONS = json.loads(" in source
    # NVML is asked through ctypes: nothing of nvidia-ml-py travels, nothing is compiled on the host.
    assert "PYNVML" not in source and "nvml_query" in source and len(raw) < 150_000
    namespace: dict[str, Any] = {"__name__": "not_main"}
    exec(compile(payload, "<payload>", "exec"), namespace)  # defines only; main() is not run
    assert namespace["PAYLOAD_OPTIONS"]["venv_roots"] == ["/srv/'; import os #"]


def test_payload_runs_its_bytecode_on_this_python_and_its_source_on_another(tmp_path: Path) -> None:
    import re

    payload = build_payload(root=str(tmp_path), nvml=False)

    def run(data: bytes) -> dict[str, Any]:
        proc = subprocess.run([sys.executable, "-I", "-S", "-"], input=data, capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    # Same magic number: the bytecode runs (the source, emptied here, is never read).
    no_source = re.sub(rb"^_SOURCE = '[^']*'$", b"_SOURCE = ''", payload, count=1, flags=re.M)
    assert no_source != payload and run(no_source)["schema_version"] == 1
    # Another magic number (another python3 minor version): the source is compiled, the bytecode unused.
    other = re.sub(rb"^_MAGIC = .*$", lambda _m: b"_MAGIC = b'none'", payload, count=1, flags=re.M)
    other = re.sub(rb"^_CODE = '[^']*'$", b"_CODE = ''", other, count=1, flags=re.M)
    assert other.count(b"_CODE = ''") == 1 and run(other)["schema_version"] == 1


@pytest.mark.skipif(not PYTHON36.exists(), reason="python3.6 is not installed here")
def test_script_runs_on_python36(tmp_path: Path) -> None:
    build_tree(tmp_path, LAYOUTS["frameworks"].tree)
    doc = run_script(tmp_path, python=str(PYTHON36))
    assert doc["probe"]["python"].startswith("3.6.")
    facts = parse_probe_output(json.dumps(doc), host="py36")
    assert {e.path for e in facts.envs} >= {"/opt/envs/tf115", "/opt/conda/envs/pt"}


@pytest.mark.skipif(not PYTHON36.exists(), reason="python3.6 is not installed here")
def test_nvml_reader_runs_on_python36() -> None:
    # No NVIDIA library here: the reader must run, then say so cleanly.
    proc = subprocess.run([str(PYTHON36), "-"], input=build_payload(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    nvml = json.loads(proc.stdout)["driver"]["nvml"]
    assert nvml["loaded"] is True and nvml["error"] == "NVML Shared Library Not Found"


def test_probe_of_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real root of this machine (no NVIDIA driver): a valid document, driver facts say none."""
    facts = probe_host(LocalTransport(), "this-machine", venv_roots=["/opt"])
    assert facts.host == "this-machine" and facts.os.kernel == os.uname().release
    if not Path("/proc/driver/nvidia/version").exists():
        assert facts.driver.source == "none" and facts.driver.version is None
        assert facts.driver.error is None and facts.gpus == ()
        assert any("no NVIDIA driver found" in n.message for n in facts.notes)


# --- orchestration errors ---------------------------------------------------------------------


class Scripted:
    name = "scripted"

    def __init__(self, result: CommandResult) -> None:
        self.result = result
        self.calls: list[tuple[tuple[str, ...], bytes | None]] = []

    def run(self, argv: Any, *, stdin: bytes | None = None, timeout: float | None = None) -> CommandResult:
        self.calls.append((tuple(argv), stdin))
        return self.result

    def put_file(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None:
        raise AssertionError("the probe writes nothing")

    def close(self) -> None:
        pass


def test_one_round_trip_with_a_constant_argv() -> None:
    transport = Scripted(CommandResult(0, json.dumps(recorded("no-driver")).encode(), b""))
    facts = probe_host(transport, "cpu01")
    assert facts.host == "cpu01"
    ((argv, stdin),) = transport.calls
    assert argv == PROBE_ARGV and stdin is not None and "def main(" in payload_source(stdin)


def test_python3_missing_on_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sh").symlink_to(shutil.which("sh") or "/bin/sh")
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(ProbeError) as info:
        probe_host(LocalTransport(), "bare")
    assert info.value.message == "python3 not found on host" and info.value.host == "bare"


def test_script_crash_is_reported_with_its_last_line() -> None:
    transport = Scripted(CommandResult(1, b"", b"Traceback (most recent call last):\nMemoryError\n"))
    with pytest.raises(ProbeError, match=r"failed \(exit status 1\): MemoryError"):
        probe_host(transport, "h")


def test_too_old_python() -> None:
    stderr = b"remediator: python3 too old: python3 on this host is 3.5; the probe needs 3.6 or newer\n"
    with pytest.raises(ProbeError, match=r"python3 on this host is 3\.5"):
        probe_host(Scripted(CommandResult(3, b"", stderr)), "h")


def test_main_refuses_python35(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    namespace = remote_namespace()
    monkeypatch.setattr(sys, "version_info", (3, 5, 2))
    assert namespace["main"]([]) == 3
    assert "python3 too old" in capsys.readouterr().err


# --- the ELF reader and the loader's search paths --------------------------------------------


def test_elf_reader_on_real_system_libraries() -> None:
    ns = remote_namespace()
    with open("/usr/lib/x86_64-linux-gnu/libz.so.1", "rb") as handle:
        libz = ns["elf_dynamic"](handle)
    assert libz["soname"] == "libz.so.1" and "libc.so.6" in libz["needed"]
    extension = next(Path(sys.prefix).glob("lib/python3*/site-packages/yaml/_yaml.cpython-*.so"))
    with extension.open("rb") as handle:
        ext = ns["elf_dynamic"](handle)
    assert ext["soname"] is None and "libc.so.6" in ext["needed"]


def test_elf_reader_refuses_what_it_does_not_read(tmp_path: Path) -> None:
    ns = remote_namespace()
    elf_error, elf_dynamic = ns["ElfError"], ns["elf_dynamic"]
    stub = shared_object("libx.so.1", needed=("liby.so.2",), runpath=("${ORIGIN}/../lib", "$LIB/x"))
    cases = {
        b"not an ELF file at all, but long enough to hold a header of sixty-four bytes......": "not an ELF",
        b"\x7fELF\x01\x01\x01" + bytes(57): "32-bit",
        b"\x7fELF\x02\x02\x01" + bytes(57): "big-endian",
        stub[:200]: "past the end",  # truncated: the dynamic section is missing
    }
    for data, message in cases.items():
        with pytest.raises(elf_error, match=message):
            elf_dynamic(io.BytesIO(data))
    assert elf_dynamic(io.BytesIO(stub))["runpath"] == "${ORIGIN}/../lib:$LIB/x"
    # `..` of the real directory is taken lexically; `$LIB` depends on the loader; "" is the current dir.
    assert ns["expand_origin"]("${ORIGIN}/../lib:$LIB/x::$ORIGIN", "/s/torch/lib") == (
        ["/s/torch/lib", "/s/torch/lib"],
        ["$LIB/x"],
    )


def test_shell_words_are_expanded_without_running_anything() -> None:
    ns = remote_namespace()
    word, unknown = ns["shell_word"], ns["UNKNOWN"]
    variables = {"LD_LIBRARY_PATH": "/a", "CONDA_PREFIX": "/c"}
    assert word("x=/cuda/lib64${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}", 2, variables) == "/cuda/lib64:/a"
    assert word("x=/cuda/lib64${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}", 2, {"LD_LIBRARY_PATH": ""}) == "/cuda/lib64"
    assert word('x="$CONDA_PREFIX/lib:$LD_LIBRARY_PATH" # comment', 2, variables) == "/c/lib:/a"
    assert word("x='$CONDA_PREFIX'/lib; echo", 2, variables) == "$CONDA_PREFIX/lib"
    assert word("x=$(touch /tmp/pwned)/lib:`id`:${NOPE}:${NOPE:-/d}", 2, variables) == (
        f"{unknown}/lib:{unknown}:{unknown}:/d"
    )


def test_systemd_units_named_in_the_options(tmp_path: Path) -> None:
    build_tree(
        tmp_path,
        {
            **USRMERGE,
            "/etc/systemd/system/jupyter.service": (
                "[Service]\nEnvironment=\"LD_LIBRARY_PATH=/opt/a:/opt/b\" OTHER=1\nExecStart=/opt/jl/bin/jupyter lab\n"
            ),
            "/etc/systemd/system/trainer.service": "[Service]\nEnvironmentFile=-/etc/default/trainer\n",
            "/etc/default/trainer": "LD_LIBRARY_PATH=/usr/local/cuda/lib64\n",
        },
    )
    payload = build_payload(root=str(tmp_path), nvml=False)
    argv = ["--systemd-unit", "jupyter.service", "--systemd-unit", "trainer.service", "--systemd-unit", "../x"]
    proc = subprocess.run(["python3", "-", *argv], input=payload, capture_output=True, timeout=60, check=True)
    doc = json.loads(proc.stdout)
    units = {e["name"]: e for e in doc["launch_envs"] if e["name"].startswith("systemd ")}
    assert units["systemd jupyter.service"]["ld_library_path"] == ["/opt/a", "/opt/b"]
    assert units["systemd trainer.service"]["ld_library_path"] == ["/usr/local/cuda/lib64"]
    assert units["systemd trainer.service"]["source"] == "/etc/default/trainer"
    assert {"where": "systemd_units", "message": "not a unit name: '../x'"} in doc["notes"]


def test_poetry_and_pipenv_venvs_inside_a_homes_caches_are_found(tmp_path: Path) -> None:
    """The walk skips ~/.cache and keeps its depth; poetry and pipenv keep their venvs there
    (pytorch/pytorch#104259: a poetry venv whose torch lacks its nvidia-* wheels)."""
    poetry = "/home/ana/.cache/pypoetry/virtualenvs/project-7Lp0Ow5D-py3.10"
    pipenv = "/root/.local/share/virtualenvs/app-x1Y2z3"
    build_tree(tmp_path, {**USRMERGE, "/usr/bin/python3.10": b"\x7fELF",
                          **venv(poetry, "/usr/bin/python3.10", "3.10.12"),
                          **venv(pipenv, "/usr/bin/python3.10", "3.10.12"),
                          "/home/ana/.cache/pip/http/x": "cache, not an env\n"})
    facts = probe_host(LocalTransport(), "caches", root=str(tmp_path), nvml=False)
    assert {e.path for e in facts.envs} >= {poetry, pipenv}


def test_systemd_units_reach_the_probe_from_probe_host(tmp_path: Path) -> None:
    """The inventory's remediate_systemd_units travel as options (never as a shell argument)."""
    build_tree(tmp_path, {**USRMERGE, "/etc/systemd/system/trainer.service":
                          "[Service]\nEnvironment=LD_LIBRARY_PATH=/opt/cudnn-8.9/lib\n"})
    facts = probe_host(LocalTransport(), "units", root=str(tmp_path), nvml=False, systemd_units=["trainer.service"])
    (unit,) = [e for e in facts.launch_envs if e.name == "systemd trainer.service"]
    assert unit.ld_library_path == ("/opt/cudnn-8.9/lib",)
