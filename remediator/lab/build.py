"""Materialise a scenario: write the files a real host with that stack would have into a template.

A template is a set of overlay layer directories (etc, usr, var, opt, home, root, procdriver) that every
lab host built from the scenario mounts read-only under its own writable layer. Files are laid out as
the real installers leave them (runfile and deb CUDA toolkits, cuDNN tarball copies and debs, pip wheels,
conda environments); libraries are small ELF stubs with the real SONAMEs (see `elf`).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from remediator.lab import catalog
from remediator.lab.elf import Export, Kind, shared_object
from remediator.lab.scenario import Cudnn, Env, Package, Scenario, Toolkit
from remediator.lab.tree import Tree
from remediator.versions import try_version

LIBDIR = "/usr/lib/x86_64-linux-gnu"

# Files of the outer machine that would make a lab host look as if the outer machine's NVIDIA stack were
# its own: hidden (whited out) in every host.
_NVIDIA_FILE = re.compile(
    r"^(nvidia-.*|nvcc|libcuda[.\w]*\.so.*|libnvidia-.*|libcudnn.*|libcublas.*|libcudart.*|libnccl.*|"
    r"libnvrtc.*|libcufft.*|libcurand.*|libcusolver.*|libcusparse.*|libnvjitlink.*|cudnn.*\.h|"
    r"cuda.*|libcudnn.*|nvml\.h)$"
)
_NVIDIA_PACKAGE = re.compile(
    r"^(nvidia-.*|libnvidia-.*|cuda-.*|cuda|libcudnn.*|libcuda.*|libnccl.*|libcublas.*|libcufft.*|"
    r"libcurand.*|libcusolver.*|libcusparse.*|libnpp.*|libnvjpeg.*|nsight-.*|libnvinfer.*|tensorrt.*|"
    r"xserver-xorg-video-nvidia.*)$"
)


@dataclass(frozen=True)
class Outer:
    """What the outer machine contributes to every host: its users, dpkg database and dotfiles, minus its
    own NVIDIA stack. Read once per `lab up`."""

    passwd: str
    group: str
    shadow: str
    gshadow: str
    dpkg_status: str
    hidden: tuple[str, ...]  # host paths to white out
    ld_conf_baseline: dict[str, str]
    profile_baseline: dict[str, str]
    skel: dict[str, bytes]
    root_dotfiles: dict[str, bytes]
    python: str  # the outer python3's version, e.g. 3.11.2

    @property
    def python_xy(self) -> str:
        return self.python.rsplit(".", 1)[0]


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return ""


def _owned_by_dpkg(paths: Iterable[str], info_dir: Path = Path("/var/lib/dpkg/info")) -> set[str]:
    wanted = set(paths)
    found: set[str] = set()
    if not wanted or not info_dir.is_dir():
        return found
    for lst in info_dir.glob("*.list"):
        try:
            text = lst.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if line in wanted:
                found.add(line)
    return found


def scan_outer(python_version: str) -> Outer:
    """Read the outer machine's base files; its NVIDIA files and packages are left out."""
    hidden: list[str] = []
    for d in (
        "/usr/bin",
        LIBDIR,
        "/usr/include",
        "/usr/include/x86_64-linux-gnu",
        "/etc/alternatives",
        "/usr/lib",
    ):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        hidden.extend(f"{d}/{n}" for n in names if _NVIDIA_FILE.match(n))

    def baseline(d: str) -> dict[str, str]:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            return {}
        owned = _owned_by_dpkg(f"{d}/{n}" for n in names)
        return {n: _read(f"{d}/{n}") for n in names if f"{d}/{n}" in owned and not _NVIDIA_FILE.match(n)}

    def files(d: str) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        try:
            for n in os.listdir(d):
                p = Path(d) / n
                if p.is_file():
                    out[n] = p.read_bytes()
        except OSError:
            pass
        return out

    root_dot = {}
    for name, src in (
        (".bashrc", "/usr/share/base-files/dot.bashrc"),
        (".profile", "/usr/share/base-files/dot.profile"),
    ):
        if Path(src).is_file():
            root_dot[name] = Path(src).read_bytes()
    status = _read("/var/lib/dpkg/status")
    kept = [s for s in status.split("\n\n") if s.strip() and not _NVIDIA_PACKAGE.match(_field(s, "Package"))]
    return Outer(
        passwd=_read("/etc/passwd"),
        group=_read("/etc/group"),
        shadow=_read("/etc/shadow"),
        gshadow=_read("/etc/gshadow"),
        dpkg_status="\n\n".join(s.strip("\n") for s in kept) + "\n\n",
        hidden=tuple(sorted(hidden)),
        ld_conf_baseline=baseline("/etc/ld.so.conf.d"),
        profile_baseline=baseline("/etc/profile.d"),
        skel=files("/etc/skel"),
        root_dotfiles=root_dot or files("/etc/skel"),
        python=python_version,
    )


def _field(stanza: str, name: str) -> str:
    for line in stanza.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return ""


@dataclass
class _Deb:
    name: str
    version: str
    section: str
    description: str
    maintainer: str = "cudatools <cudatools@nvidia.com>"
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Login:
    """The login user of a scenario, as written into its template."""

    user: str
    uid: int
    gid: int
    home: str


def pick_uid(passwd: str, group: str) -> int:
    """The first uid >= 1000 that is free both as a uid and as a gid on the outer machine."""
    used = {
        int(line.split(":")[2])
        for line in passwd.splitlines()
        if line.count(":") >= 3 and line.split(":")[2].isdigit()
    }
    used |= {
        int(line.split(":")[2])
        for line in group.splitlines()
        if line.count(":") >= 3 and line.split(":")[2].isdigit()
    }
    uid = 1000
    while uid in used:
        uid += 1
    return uid


class Builder:
    """Writes one scenario's template."""

    def __init__(self, scenario: Scenario, tree: Tree, outer: Outer, authorized_key: str) -> None:
        self.s = scenario
        self.t = tree
        self.outer = outer
        self.key = authorized_key
        self.debs: list[_Deb] = []
        self.alternatives: dict[str, tuple[str, str]] = {}  # name -> (link, current target)
        self.login = self._login()
        self.others = self._others()

    # -- the pieces ---------------------------------------------------------------------------------------

    def _login(self) -> Login:
        s, outer = self.s, self.outer
        if s.user == "root":
            return Login("root", 0, 0, "/root")
        for line in outer.passwd.splitlines():
            parts = line.split(":")
            if len(parts) >= 7 and parts[0] == s.user:
                return Login(s.user, int(parts[2]), int(parts[3]), f"/home/{s.user}")
        uid = pick_uid(outer.passwd, outer.group)
        return Login(s.user, uid, uid, f"/home/{s.user}")

    def _others(self) -> dict[str, Login]:
        """The scenario's other users, with uids after the login user's (free on the outer machine too)."""
        out: dict[str, Login] = {}
        passwd, group = self.outer.passwd, self.outer.group
        for name in self.s.users:
            uid = pick_uid(passwd, group)
            while uid == self.login.uid:
                uid += 1
            passwd += f"{name}:x:{uid}:{uid}::/:\n"  # marks the uid taken for the next pick
            group += f"{name}:x:{uid}:\n"
            out[name] = Login(name, uid, uid, f"/home/{name}")
        return out

    def _owner(self, path: str) -> tuple[int, int]:
        """uid, gid of whoever's home holds `path` (root elsewhere)."""
        for lg in (self.login, *self.others.values()):
            if lg.user != "root" and path.startswith(lg.home + "/"):
                return lg.uid, lg.gid
        return 0, 0

    def build(self) -> None:
        self.base()
        if self.s.driver is not None:
            self.driver()
        for tk in self.s.cuda:
            self.toolkit(tk)
        self.default_cuda()
        for c in self.s.cudnn:
            self.cudnn(c)
        for env in self.s.envs:
            self.env(env)
        self.shell()
        self.extra_files()
        self.dpkg()

    def base(self) -> None:
        t, s, o, lg = self.t, self.s, self.outer, self.login
        for d in ("/etc", "/usr", "/var", "/opt", "/home", "/root", "/proc/driver"):
            t.layer_path(d).mkdir(parents=True, exist_ok=True)
        passwd, group, shadow, gshadow = o.passwd, o.group, o.shadow, o.gshadow
        if lg.user != "root" and not any(line.split(":")[0] == lg.user for line in passwd.splitlines()):
            passwd += f"{lg.user}:x:{lg.uid}:{lg.gid}:{lg.user}:{lg.home}:/bin/bash\n"
            group += f"{lg.user}:x:{lg.gid}:\n"
            # "*" (not "!"): no password, yet not locked, so key login works without PAM.
            shadow += f"{lg.user}:*:19700:0:99999:7:::\n"
            gshadow += f"{lg.user}:!::\n"
        for other in self.others.values():
            passwd += f"{other.user}:x:{other.uid}:{other.gid}:{other.user}:{other.home}:/bin/bash\n"
            group += f"{other.user}:x:{other.gid}:\n"
            shadow += f"{other.user}:*:19700:0:99999:7:::\n"
            gshadow += f"{other.user}:!::\n"
        t.write("/etc/passwd", passwd)
        t.write("/etc/group", group)
        t.write("/etc/shadow", shadow, mode=0o640, gid=_gid(o.group, "shadow"))
        t.write("/etc/gshadow", gshadow, mode=0o640, gid=_gid(o.group, "shadow"))
        if lg.user != "root" and s.sudo:
            # Without NOPASSWD sudo asks for the user's password; `sudo -n` then fails, as it must.
            rule = "ALL=(ALL) ALL" if s.sudo_password else "ALL=(ALL) NOPASSWD:ALL"
            t.write(
                "/etc/sudoers.d/90-cloud-init-users",
                f"# Created by cloud-init\n{lg.user} {rule}\n",
                mode=0o440,
            )
        t.opaque("/etc/ld.so.conf.d")
        for name, text in o.ld_conf_baseline.items():
            t.write(f"/etc/ld.so.conf.d/{name}", text)
        t.opaque("/etc/profile.d")
        for name, text in o.profile_baseline.items():
            t.write(f"/etc/profile.d/{name}", text)
        # /usr/local holds the toolkits: the outer machine's must not show through.
        t.opaque("/usr/local")
        for d in (
            "bin",
            "etc",
            "games",
            "include",
            "lib",
            "sbin",
            "share/man",
            "src",
            f"lib/python{o.python_xy}/dist-packages",
        ):
            t.mkdir(f"/usr/local/{d}")
        t.symlink("/usr/local/man", "share/man")
        t.opaque("/var/log")
        for p in o.hidden:
            t.whiteout(p)
        # Homes: the login user's, and root's.
        if lg.user != "root":
            t.mkdir(lg.home, 0o750, lg.uid, lg.gid)
            for name, data in o.skel.items():
                t.write(f"{lg.home}/{name}", data, 0o644, lg.uid, lg.gid)
            if ".bashrc" not in o.skel:
                t.write(f"{lg.home}/.bashrc", "", 0o644, lg.uid, lg.gid)
        for other in self.others.values():  # 0750, as adduser makes homes on Ubuntu 21.04 on and Debian 12
            t.mkdir(other.home, 0o750, other.uid, other.gid)
            t.write(f"{other.home}/.bashrc", "", 0o644, other.uid, other.gid)
        t.mkdir("/root", 0o700)
        for name, data in o.root_dotfiles.items():
            t.write(f"/root/{name}", data)
        t.mkdir(f"{lg.home}/.ssh", 0o700, lg.uid, lg.gid)
        t.write(f"{lg.home}/.ssh/authorized_keys", self.key.strip() + "\n", 0o600, lg.uid, lg.gid)

    def driver(self) -> None:
        t, d = self.t, self.s.driver
        assert d is not None
        v = d.version
        branch = v.split(".")[0]
        cuda = catalog.driver_cuda(v)
        if d.kernel_module is None:
            init, nvml_init = 100, 9  # CUDA_ERROR_NO_DEVICE, NVML_ERROR_DRIVER_NOT_LOADED
            state = "not_loaded"
        elif d.mismatch:
            init, nvml_init = 803, 18  # CUDA_ERROR_SYSTEM_DRIVER_MISMATCH, NVML_ERROR_LIB_RM_VERSION_MISMATCH
            state = "mismatch"
        else:
            init, nvml_init = 0, 0
            state = "ok"
        compute: list[str] = []
        cuda_exports = (
            Export("cuDriverGetVersion", Kind.STORE, catalog.cuda_int(cuda)),
            Export("cuInit", Kind.RETURN, init),
        )
        if "libcuda" not in d.omit:
            self._lib(LIBDIR, "libcuda.so", v, "libcuda.so.1", cuda_exports, dev_link=True, record=compute)
        # NVML: a working NVML is not modelled, so a healthy host's NVML exports nothing and a probe falls
        # back to nvidia-smi; a broken one fails nvmlInit the way the real library does.
        nvml_exports = (
            ()
            if state == "ok"
            else tuple(
                Export(n, Kind.RETURN, nvml_init) for n in ("nvmlInit", "nvmlInit_v2", "nvmlInitWithFlags")
            )
        )
        self._lib(
            LIBDIR, "libnvidia-ml.so", v, "libnvidia-ml.so.1", nvml_exports, dev_link=True, record=compute
        )
        self._lib(
            LIBDIR, "libnvidia-ptxjitcompiler.so", v, "libnvidia-ptxjitcompiler.so.1", (), record=compute
        )
        gpus = []
        for g in d.gpus:
            m = catalog.GPUS[g.model]
            for _ in range(g.count):
                gpus.append(
                    {
                        "name": m.name,
                        "memory_mib": m.memory_mib,
                        "compute_cap": m.compute_cap,
                        "architecture": m.architecture,
                        "brand": m.brand,
                        "power_cap_w": m.power_cap_w,
                        "device_id": m.device_id,
                        "vbios": _VBIOS.get(m.architecture, "90.00.00.00.01"),
                    }
                )
        data = {"driver": v, "cuda": cuda, "state": state, "gpus": gpus}
        t.write("/usr/bin/nvidia-smi", render_nvidia_smi(data), mode=0o755)
        utils = ["/usr/bin/nvidia-smi"]
        if d.kernel_module is not None:
            km = d.kernel_module
            if int(km.split(".")[0]) >= 560:  # the open kernel modules are the default from R560
                head = f"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {km}  Release Build  (dvs@)"
            else:
                head = f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {km}  Wed Jun 14 22:07:21 UTC 2023"
            t.write(
                "/proc/driver/nvidia/version",
                f"{head}\nGCC version:  gcc version 11.4.0 (Ubuntu 11.4.0-1ubuntu1~22.04) \n",
                0o444,
            )
            for i, gpu in enumerate(gpus):
                bus = f"0000:{0x17 + i * 0x10:02x}:00.0"
                t.write(
                    f"/proc/driver/nvidia/gpus/{bus}/information",
                    f"Model: \t\t {gpu['name']}\nIRQ:   \t\t {40 + i}\n"
                    "GPU UUID: \t ????????-????-????-????-????????????\n"
                    f"Video BIOS: \t ??.??.??.??.??\nBus Type: \t PCIe\nDMA Size: \t 47 bits\n"
                    f"DMA Mask: \t 0x7fffffffffff\nBus Location: \t {bus}\nDevice Minor: \t {i}\n"
                    f"GPU Excluded:\t No\n",
                    0o444,
                )
        if d.install == "deb":
            deb_v = f"{v}-0ubuntu1"
            self.debs += [
                _Deb(
                    f"nvidia-driver-{branch}",
                    deb_v,
                    "restricted/libs",
                    "NVIDIA driver metapackage",
                    "Ubuntu Core Developers <ubuntu-devel-discuss@lists.ubuntu.com>",
                ),
                _Deb(
                    f"libnvidia-compute-{branch}",
                    deb_v,
                    "restricted/libs",
                    "NVIDIA libcompute package",
                    "Ubuntu Core Developers <ubuntu-devel-discuss@lists.ubuntu.com>",
                    compute,
                ),
                _Deb(
                    f"nvidia-utils-{branch}",
                    deb_v,
                    "restricted/utils",
                    "NVIDIA driver support binaries",
                    "Ubuntu Core Developers <ubuntu-devel-discuss@lists.ubuntu.com>",
                    utils,
                ),
                _Deb(
                    f"nvidia-kernel-common-{branch}",
                    deb_v,
                    "restricted/libs",
                    "Shared files used with the kernel module",
                    "Ubuntu Core Developers <ubuntu-devel-discuss@lists.ubuntu.com>",
                ),
            ]
        else:
            t.write(
                "/usr/bin/nvidia-installer",
                "#!/bin/sh\necho 'nvidia-installer: this lab host cannot install drivers' >&2\nexit 1\n",
                0o755,
            )
            t.symlink("/usr/bin/nvidia-uninstall", "nvidia-installer")
            t.write(
                "/var/log/nvidia-installer.log",
                "nvidia-installer log file '/var/log/nvidia-installer.log'\n"
                "creation time: Mon Jan  8 10:12:31 2024\n"
                f"installer version: {v}\n\n"
                "Installation of the NVIDIA Accelerated Graphics Driver for Linux-x86_64 "
                f"(version: {v}) is now complete.\n",
            )

    def toolkit(self, tk: Toolkit) -> None:
        t = self.t
        info = catalog.toolkit_info(tk.version)
        root, short = tk.root, tk.short
        major = int(short.split(".")[0])
        files: list[str] = []
        t.mkdir(f"{root}/targets/x86_64-linux/lib")
        t.mkdir(f"{root}/targets/x86_64-linux/include")
        t.symlink(f"{root}/lib64", "targets/x86_64-linux/lib")
        t.symlink(f"{root}/include", "targets/x86_64-linux/include")
        lib = f"{root}/targets/x86_64-linux/lib"
        self._lib(
            lib,
            "libcudart.so",
            info.cudart,
            catalog.cudart_soname(tk.version),
            (Export("cudaRuntimeGetVersion", Kind.STORE, catalog.cuda_int(short)),),
            dev_link=True,
            record=files,
        )
        self._lib(
            lib,
            "libcublas.so",
            info.cublas,
            catalog.cublas_soname(tk.version),
            (),
            dev_link=True,
            record=files,
        )
        if (major, int(short.split(".")[1])) >= (10, 1):
            self._lib(
                lib,
                "libcublasLt.so",
                info.cublas,
                catalog.cublas_soname(tk.version).replace("cublas", "cublasLt"),
                (),
                dev_link=True,
                record=files,
            )
        t.write(f"{lib}/stubs/libcuda.so", shared_object("libcuda.so.1"), 0o755)
        files.append(f"{lib}/stubs/libcuda.so")
        inc = f"{root}/targets/x86_64-linux/include"
        n = catalog.cuda_int(short)
        t.write(
            f"{inc}/cuda_runtime_api.h",
            f"/* CUDA Runtime API ({tk.version}) */\n#define CUDART_VERSION {n}\n",
        )
        t.write(f"{inc}/cuda.h", f"/* CUDA Driver API ({tk.version}) */\n#define CUDA_VERSION {n}\n")
        year = info.year
        build = f"\nBuild {info.build}" if info.build else ""
        nvcc = (
            "#!/bin/sh\n"
            'case "$1" in\n'
            "  --version|-V)\n"
            "    cat <<'EOF'\n"
            f"nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-{year} NVIDIA Corporation\n"
            f"Built on {info.built_on}\nCuda compilation tools, release {short}, V{info.nvcc}{build}\n"
            "EOF\n"
            "    exit 0;;\n"
            "esac\n"
            "echo 'nvcc fatal   : No input files specified; use option --help for more information' >&2\n"
            "exit 1\n"
        )
        t.write(f"{root}/bin/nvcc", nvcc, 0o755)
        files += [f"{root}/bin/nvcc", f"{inc}/cuda_runtime_api.h", f"{inc}/cuda.h"]
        if (major, int(short.split(".")[1])) <= (11, 0):
            t.write(f"{root}/version.txt", f"CUDA Version {info.cudart}\n")
            files.append(f"{root}/version.txt")
        else:
            doc = {
                "cuda": {"name": "CUDA SDK", "version": tk.version},
                "cuda_cudart": {"name": "CUDA Runtime (cudart)", "version": info.cudart},
                "cuda_nvcc": {"name": "CUDA NVCC", "version": info.nvcc},
                "libcublas": {"name": "CUDA cuBLAS", "version": info.cublas},
            }
            t.write(f"{root}/version.json", json.dumps(doc, indent=3) + "\n")
            files.append(f"{root}/version.json")
        if tk.install == "deb":
            dash = short.replace(".", "-")
            self.debs += [
                _Deb(
                    f"cuda-toolkit-{dash}", f"{tk.version}-1", "devel", f"CUDA Toolkit {short} meta-package"
                ),
                _Deb(
                    f"cuda-cudart-{dash}",
                    f"{info.cudart}-1",
                    "devel",
                    "CUDA Runtime native Libraries",
                    files=[f for f in files if "libcudart" in f],
                ),
                _Deb(f"cuda-nvcc-{dash}", f"{info.nvcc}-1", "devel", "CUDA nvcc", files=[f"{root}/bin/nvcc"]),
                _Deb(
                    f"libcublas-{dash}",
                    f"{info.cublas}-1",
                    "devel",
                    "CUBLAS native runtime libraries",
                    files=[f for f in files if "libcublas" in f],
                ),
            ]
            self._alternative(f"cuda-{major}", f"/usr/local/cuda-{major}", root, set_current=True)

    def default_cuda(self) -> None:
        s = self.s
        if s.default_cuda is None:
            return
        target = f"/usr/local/cuda-{s.default_cuda}"
        if s.default_cuda_via == "alternatives":
            for tk in s.cuda:  # every toolkit registers; the scenario's default is the current one
                self._alternative("cuda", "/usr/local/cuda", tk.root, set_current=tk.short == s.default_cuda)
        else:
            self.t.symlink("/usr/local/cuda", target)

    def cudnn(self, c: Cudnn) -> None:
        t = self.t
        parts = c.version.split(".")
        mmp = ".".join(parts[:3])
        exports = (
            Export("cudnnGetVersion", Kind.RETURN, catalog.cudnn_version_int(c.version)),
            Export("cudnnGetCudartVersion", Kind.RETURN, catalog.cuda_int(c.cuda)),
        )
        files: list[str] = []
        header = _cudnn_header(c.version)
        if c.install == "tarball":
            assert c.into is not None
            lib, inc = f"{c.into}/lib64", f"{c.into}/include"
            if not t.exists(lib):
                t.mkdir(lib)
            for i, base in enumerate(catalog.cudnn_libs(c.major)):
                self._lib(
                    lib, f"{base}.so", mmp, f"{base}.so.{c.major}", exports if i == 0 else (), dev_link=True
                )
            for h in catalog.cudnn_headers(c.major):
                t.write(f"{inc}/{h}", header(h))
            return
        # Debian packages: libraries in the multiarch libdir, headers with a _vN suffix behind alternatives.
        for i, base in enumerate(catalog.cudnn_libs(c.major)):
            self._lib(
                LIBDIR, f"{base}.so", mmp, f"{base}.so.{c.major}", exports if i == 0 else (), record=files
            )
        dev: list[str] = []
        inc = "/usr/include/x86_64-linux-gnu"
        for h in catalog.cudnn_headers(c.major):
            stem = h[:-2]
            t.write(f"{inc}/{stem}_v{c.major}.h", header(h))
            dev.append(f"{inc}/{stem}_v{c.major}.h")
            if c.major >= 9 and int(parts[1]) >= 10:  # cuDNN >= 9.10 debs add unversioned links
                t.symlink(f"{inc}/{h}", f"{stem}_v{c.major}.h")
                dev.append(f"{inc}/{h}")
        self._alternative("libcudnn", "/usr/include/cudnn.h", f"{inc}/cudnn_v{c.major}.h", set_current=True)
        if c.major >= 8:
            self._alternative(
                "cudnn_version_h",
                "/usr/include/cudnn_version.h",
                f"{inc}/cudnn_version_v{c.major}.h",
                set_current=True,
            )
        self._alternative(
            "libcudnn_so", f"{LIBDIR}/libcudnn.so", f"{LIBDIR}/libcudnn.so.{mmp}", set_current=True
        )
        if c.major >= 9:
            cu = c.cuda.split(".")[0]
            names = (f"libcudnn9-cuda-{cu}", f"libcudnn9-dev-cuda-{cu}")
            deb_v = f"{c.version}-1"
        else:
            names = (f"libcudnn{c.major}", f"libcudnn{c.major}-dev")
            deb_v = f"{c.version}-1+cuda{c.cuda}"
        self.debs += [
            _Deb(names[0], deb_v, "multiverse/libs", "cuDNN runtime libraries", files=files),
            _Deb(
                names[1], deb_v, "multiverse/libdevel", "cuDNN development libraries and headers", files=dev
            ),
        ]

    def env(self, env: Env) -> None:
        t = self.t
        xy = env.python.rsplit(".", 1)[0]
        uid, gid = self._owner(env.path)
        if env.kind == "system":
            site = env.path
        else:
            site = f"{env.path}/lib/python{xy}/site-packages"
            t.mkdir(env.path, 0o755, uid, gid)
            t.mkdir(f"{env.path}/bin", 0o755, uid, gid)
            t.mkdir(site, 0o755, uid, gid)
            self._interpreter(env, xy, uid, gid)
        t.mkdir(site, 0o755, uid, gid)
        if env.kind == "venv":
            cfg = f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {env.python}\n"
            if xy == self.outer.python_xy:
                cfg += f"executable = /usr/bin/python{xy}\ncommand = /usr/bin/python3 -m venv {env.path}\n"
            t.write(f"{env.path}/pyvenv.cfg", cfg, 0o644, uid, gid)
            t.write(
                f"{env.path}/bin/activate",
                f'# This file must be used with "source bin/activate" *from bash*\nVIRTUAL_ENV="{env.path}"\n'
                'export VIRTUAL_ENV\n_OLD_VIRTUAL_PATH="$PATH"\nPATH="$VIRTUAL_ENV/bin:$PATH"\nexport PATH\n'
                "hash -r 2> /dev/null\n",
                0o644,
                uid,
                gid,
            )
        if env.kind == "conda":
            self._conda(env, xy, uid, gid)
        wheels = [p for p in env.packages if p.name.startswith("nvidia-")]
        for p in env.packages:
            self._pip(site, p, wheels, uid, gid)

    def _interpreter(self, env: Env, xy: str, uid: int, gid: int) -> None:
        t = self.t
        b = f"{env.path}/bin"
        if xy == self.outer.python_xy:
            t.symlink(f"{b}/python{xy}", "python3", uid, gid)
            t.symlink(
                f"{b}/python3",
                f"/usr/bin/python{xy}",
                uid,
                gid,
            )
        else:
            # Only the outer machine's Python can run here; this stand-in answers --version for the version
            # the environment was made with, and runs the outer python3 for anything else.
            t.write(
                f"{b}/python{xy}",
                f"#!/bin/sh\n# remediate lab: stands in for CPython {env.python}; only /usr/bin/python3 "
                f"({self.outer.python}) exists on lab hosts\n"
                f"case \"$1\" in -V|--version) echo 'Python {env.python}'; "
                'exit 0;; esac\nexec /usr/bin/python3 "$@"\n',
                0o755,
                uid,
                gid,
            )
            t.symlink(f"{b}/python3", f"python{xy}", uid, gid)
        t.symlink(f"{b}/python", "python3", uid, gid)

    def _conda(self, env: Env, xy: str, uid: int, gid: int) -> None:
        t, lg = self.t, self.login
        meta = f"{env.path}/conda-meta"
        t.mkdir(meta, 0o755, uid, gid)
        t.write(
            f"{meta}/history",
            f"==> 2023-03-02 10:41:17 <==\n# cmd: conda create -p {env.path} python={xy}\n",
            0o644,
            uid,
            gid,
        )
        pkgs: list[tuple[str, str]] = [("python", env.python), *env.conda]
        for name, version in pkgs:
            files: list[str] = []
            if name == "cudatoolkit":
                info = catalog.toolkit_info(version)
                short = ".".join(version.split(".")[:2])
                self._lib(
                    f"{env.path}/lib",
                    "libcudart.so",
                    info.cudart,
                    catalog.cudart_soname(version),
                    (Export("cudaRuntimeGetVersion", Kind.STORE, catalog.cuda_int(short)),),
                    dev_link=True,
                    record=files,
                    uid=uid,
                    gid=gid,
                )
                self._lib(
                    f"{env.path}/lib",
                    "libcublas.so",
                    info.cublas,
                    catalog.cublas_soname(version),
                    (),
                    dev_link=True,
                    record=files,
                    uid=uid,
                    gid=gid,
                )
            elif name == "cudnn":
                major = int(version.split(".")[0])
                mmp = ".".join(version.split(".")[:3])
                for i, base in enumerate(catalog.cudnn_libs(major)):
                    ex = (
                        (Export("cudnnGetVersion", Kind.RETURN, catalog.cudnn_version_int(version)),)
                        if i == 0
                        else ()
                    )
                    self._lib(
                        f"{env.path}/lib",
                        f"{base}.so",
                        mmp,
                        f"{base}.so.{major}",
                        ex,
                        dev_link=True,
                        record=files,
                        uid=uid,
                        gid=gid,
                    )
                header = _cudnn_header(version)
                for h in catalog.cudnn_headers(major):
                    t.write(f"{env.path}/include/{h}", header(h), 0o644, uid, gid)
                    files.append(f"{env.path}/include/{h}")
            build = "h" + hashlib.sha256(f"{name}{version}".encode()).hexdigest()[:7] + "_0"
            doc = {
                "name": name,
                "version": version,
                "build": build,
                "build_number": 0,
                "channel": "https://conda.anaconda.org/conda-forge/linux-64",
                "files": [f[len(env.path) + 1 :] for f in files],
                "subdir": "linux-64",
            }
            t.write(
                f"{meta}/{name}-{version}-{build}.json", json.dumps(doc, indent=2) + "\n", 0o644, uid, gid
            )
        if env.activate:
            t.write(f"{env.path}/etc/conda/activate.d/env_vars.sh", env.activate, 0o644, uid, gid)
        envs_txt = f"{lg.home}/.conda/environments.txt"
        if t.exists(envs_txt):
            t.append(envs_txt, env.path + "\n")
        else:
            t.mkdir(f"{lg.home}/.conda", 0o755, lg.uid, lg.gid)
            t.write(envs_txt, env.path + "\n", 0o644, lg.uid, lg.gid)

    def _pip(self, site: str, p: Package, wheels: list[Package], uid: int, gid: int) -> None:
        t = self.t
        files: list[str] = []
        dist_version = p.version
        requires: list[str] = []
        top = p.name.replace("-", "_")
        if p.name in ("tensorflow", "tensorflow-gpu", "tensorflow-cpu", "tf-nightly"):
            top = "tensorflow"
            files += self._tensorflow(site, p, uid, gid)
            requires = [f'{w.name}=={w.version} ; extra == "and-cuda"' for w in wheels]
        elif p.name == "torch":
            files += self._torch(site, p, wheels, uid, gid)
            if p.channel == "pypi" or "+" not in p.version:
                dist_version = p.version.split("+")[0]
            requires = [
                f'{w.name}=={w.version} ; platform_system == "Linux" and platform_machine == "x86_64"'
                for w in wheels
            ]
        elif p.name.startswith("nvidia-"):
            top = "nvidia"
            files += self._nvidia_wheel(site, p, uid, gid)
        info = f"{site}/{p.name.replace('-', '_')}-{dist_version}.dist-info"
        metadata = f"Metadata-Version: 2.1\nName: {p.name}\nVersion: {dist_version}\n"
        metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
        t.write(f"{info}/METADATA", metadata, 0o644, uid, gid)
        t.write(f"{info}/INSTALLER", "pip\n", 0o644, uid, gid)
        t.write(f"{info}/top_level.txt", top + "\n", 0o644, uid, gid)
        t.write(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: bdist_wheel (0.41.2)\nRoot-Is-Purelib: false\n"
            "Tag: cp3-none-manylinux2014_x86_64\n",
            0o644,
            uid,
            gid,
        )
        record = [f"{f[len(site) + 1 :]},," for f in files]
        record += [
            f"{info[len(site) + 1 :]}/{n},,"
            for n in ("METADATA", "INSTALLER", "top_level.txt", "WHEEL", "RECORD")
        ]
        t.write(f"{info}/RECORD", "\n".join(record) + "\n", 0o644, uid, gid)

    def _tensorflow(self, site: str, p: Package, uid: int, gid: int) -> list[str]:
        t = self.t
        pkg = f"{site}/tensorflow"
        gpu = p.cuda is not None and p.name != "tensorflow-cpu"
        major, minor = (int(x) for x in re.findall(r"\d+", p.version)[:2])
        t.write(
            f"{pkg}/__init__.py",
            _stand_in("tensorflow", p.version) + f"__version__ = {p.version!r}\n",
            0o644,
            uid,
            gid,
        )
        text = _tf_build_info((major, minor), p.cuda if gpu else None, p.cudnn if gpu else None)
        t.write(f"{pkg}/python/platform/build_info.py", text, 0o644, uid, gid)
        t.write(f"{pkg}/python/platform/__init__.py", "", 0o644, uid, gid)
        t.write(f"{pkg}/python/__init__.py", "", 0o644, uid, gid)
        # The shared objects: TensorFlow opens its CUDA libraries with dlopen at run time (its dso_loader),
        # so neither names one in DT_NEEDED; the extension module finds the framework library through a
        # RUNPATH to `$ORIGIN/..` (the release's RUNPATH holds Bazel's _solib dirs too; left out here).
        framework = f"libtensorflow_framework.so.{major}"
        t.write(f"{pkg}/{framework}", shared_object(framework), 0o755, uid, gid)
        pywrap = shared_object("_pywrap_tensorflow_internal.so", needed=(framework,), runpath=("$ORIGIN/..",))
        t.write(f"{pkg}/python/_pywrap_tensorflow_internal.so", pywrap, 0o755, uid, gid)
        return [
            f"{pkg}/__init__.py",
            f"{pkg}/{framework}",
            f"{pkg}/python/__init__.py",
            f"{pkg}/python/_pywrap_tensorflow_internal.so",
            f"{pkg}/python/platform/__init__.py",
            f"{pkg}/python/platform/build_info.py",
        ]

    def _torch(self, site: str, p: Package, wheels: list[Package], uid: int, gid: int) -> list[str]:
        t = self.t
        pkg = f"{site}/torch"
        m = re.search(r"\+cu(\d+)(\d)$", p.version)
        cuda = f"{m.group(1)}.{m.group(2)}" if m else None
        git = hashlib.sha256(p.version.encode()).hexdigest()[:40]
        t.write(f"{pkg}/__init__.py", _stand_in("torch", p.version), 0o644, uid, gid)
        t.write(
            f"{pkg}/version.py",
            "from typing import Optional\n\n"
            "__all__ = ['__version__', 'debug', 'cuda', 'git_version', 'hip']\n"
            f"__version__ = {p.version!r}\ndebug = False\ncuda: Optional[str] = {cuda!r}\n"
            f"git_version = {git!r}\nhip: Optional[str] = None\n",
            0o644,
            uid,
            gid,
        )
        files = [f"{pkg}/__init__.py", f"{pkg}/version.py"]
        cpu_libs = ("libc10.so", "libtorch.so", "libtorch_cpu.so", "libtorch_python.so")
        objects = {name: shared_object(name) for name in cpu_libs}
        if cuda is not None:
            objects.update(self._torch_cuda_objects(pkg, p, cuda, wheels, uid, gid, files))
        for name, data in objects.items():
            t.write(f"{pkg}/lib/{name}", data, 0o755, uid, gid)
            files.append(f"{pkg}/lib/{name}")
        if p.cudnn is not None:  # older wheels of the PyTorch index bundle cuDNN inside torch/lib
            major = int(p.cudnn.split(".")[0])
            version = p.cudnn if p.cudnn.count(".") >= 2 else p.cudnn + ".0"
            for i, base in enumerate(catalog.cudnn_libs(major)):
                ex = (
                    (Export("cudnnGetVersion", Kind.RETURN, catalog.cudnn_version_int(version)),)
                    if i == 0
                    else ()
                )
                t.write(
                    f"{pkg}/lib/{base}.so.{major}", shared_object(f"{base}.so.{major}", ex), 0o755, uid, gid
                )
                files.append(f"{pkg}/lib/{base}.so.{major}")
        return files

    def _torch_cuda_objects(
        self, pkg: str, p: Package, cuda: str, wheels: list[Package], uid: int, gid: int, files: list[str]
    ) -> dict[str, bytes]:
        """libtorch_cuda.so, libc10_cuda.so and libtorch_global_deps.so with the DT_NEEDED and DT_RPATH a
        release of that kind has. Wheels that depend on nvidia-* wheels (PyPI, torch >= 1.13) carry an
        RPATH (not RUNPATH, so LD_LIBRARY_PATH cannot override it) to `$ORIGIN/../../nvidia/<x>/lib` of
        those wheels, then `$ORIGIN` (pytorch/builder#1150, #1183: `readelf -d` and `patchelf
        --print-rpath` of libtorch_cuda.so). Self-contained wheels bundle a hash-named libcudart in
        torch/lib with RPATH `$ORIGIN` (pytorch/builder#1061: `libcudart-80664282.so.10.2` in `ldd
        libtorch_cuda.so`). The exact NEEDED list of each release is longer; the CUDA ones are what
        the probe follows. Which of torch/lib's objects name which library is modelled on libtorch_cuda.so
        for all three."""
        t = self.t
        major = cuda.split(".")[0]
        cudart = catalog.cudart_soname(f"{cuda}.0")
        cudnn_major = p.cudnn.split(".")[0] if p.cudnn is not None else None
        dirs: list[str] = []
        for w in wheels:
            d = _wheel_dir(w)
            if d is not None and d not in dirs:
                dirs.append(d)
            if w.name.startswith("nvidia-cudnn"):
                cudnn_major = w.version.split(".")[0]
        parsed = try_version(p.version.split("+", 1)[0])
        release = parsed.release if parsed is not None else ()
        if not dirs and p.channel == "pypi" and release >= (1, 13):
            # A PyPI wheel that depends on nvidia-* wheels keeps its RPATH to their dirs whether or not an
            # installer put them there (pytorch/pytorch#104259: poetry left them out; "libcudnn.so.8: cannot
            # open shared object file").
            dirs = ["cublas", "cuda_runtime", "cudnn", "cuda_nvrtc"]
            cudnn_major = cudnn_major or ("8" if release < (2, 4) else "9")
        if dirs:
            rpath = (*(f"$ORIGIN/../../nvidia/{d}/lib" for d in dirs), "$ORIGIN")
            cuda_needed = [cudart, catalog.cublas_soname(f"{cuda}.0"), f"libcublasLt.so.{major}"]
        else:
            rpath = ("$ORIGIN",)
            tag = hashlib.sha256(f"cudart{p.version}".encode()).hexdigest()[:8]
            bundled = cudart.replace("libcudart.so", f"libcudart-{tag}.so")
            rt = Export("cudaRuntimeGetVersion", Kind.STORE, catalog.cuda_int(cuda))
            t.write(f"{pkg}/lib/{bundled}", shared_object(bundled, (rt,)), 0o755, uid, gid)
            files.append(f"{pkg}/lib/{bundled}")
            cuda_needed = [bundled]
        if cudnn_major is not None:
            cuda_needed.append(f"libcudnn.so.{cudnn_major}")
        own = ("libc10_cuda.so", "libc10.so", "libtorch_cpu.so")
        return {
            "libc10_cuda.so": shared_object("libc10_cuda.so", needed=(cuda_needed[0], "libc10.so"), rpath=rpath),
            "libtorch_cuda.so": shared_object("libtorch_cuda.so", needed=(*own, *cuda_needed), rpath=rpath),
            "libtorch_global_deps.so": shared_object("libtorch_global_deps.so", needed=tuple(cuda_needed), rpath=rpath),
        }

    def _nvidia_wheel(self, site: str, p: Package, uid: int, gid: int) -> list[str]:
        t = self.t
        m = re.search(r"-cu(\d+)$", p.name)
        cu = m.group(1) if m else p.version.split(".")[0]
        base = re.sub(r"-cu\d+$", "", p.name)[len("nvidia-") :]
        files = [f"{site}/nvidia/__init__.py"]
        t.write(f"{site}/nvidia/__init__.py", "", 0o644, uid, gid)
        if base == "cudnn":
            d = f"{site}/nvidia/cudnn"
            major = int(p.version.split(".")[0])
            version_export = Export("cudnnGetVersion", Kind.RETURN, catalog.cudnn_version_int(p.version))
            for i, lib in enumerate(catalog.cudnn_libs(major)):
                ex = (version_export,) if i == 0 else ()
                t.write(f"{d}/lib/{lib}.so.{major}", shared_object(f"{lib}.so.{major}", ex), 0o755, uid, gid)
                files.append(f"{d}/lib/{lib}.so.{major}")
            header = _cudnn_header(p.version)
            for h in catalog.cudnn_headers(major):
                t.write(f"{d}/include/{h}", header(h), 0o644, uid, gid)
                files.append(f"{d}/include/{h}")
        elif base in ("cuda-runtime", "cublas", "nccl"):
            d = f"{site}/nvidia/{_wheel_dir(p)}"
            if base == "cuda-runtime":
                sonames = [catalog.cudart_soname(f"{cu}.{p.version.split('.')[1]}.0")]
            elif base == "cublas":
                sonames = [f"libcublas.so.{cu}", f"libcublasLt.so.{cu}"]
            else:
                sonames = ["libnccl.so.2"]
            for so in sonames:
                rt = Export("cudaRuntimeGetVersion", Kind.STORE, catalog.cuda_int(p.version))
                t.write(
                    f"{d}/lib/{so}",
                    shared_object(so, (rt,) if so.startswith("libcudart") else ()),
                    0o755,
                    uid,
                    gid,
                )
                files.append(f"{d}/lib/{so}")
        else:
            d = f"{site}/nvidia/{base.replace('-', '_')}"
            t.write(f"{d}/__init__.py", "", 0o644, uid, gid)
            files.append(f"{d}/__init__.py")
        return files

    def shell(self) -> None:
        t, s, lg = self.t, self.s, self.login
        for name, dirs in s.ld_so_conf:
            t.write(f"/etc/ld.so.conf.d/{name}", "".join(d + "\n" for d in dirs))
        for name, text in s.profile:
            t.write(f"/etc/profile.d/{name}", text if text.endswith("\n") else text + "\n")
        if s.bashrc:
            t.append(f"{lg.home}/.bashrc", "\n" + s.bashrc.rstrip("\n") + "\n")

    def extra_files(self) -> None:
        t, lg = self.t, self.login
        for f in self.s.files:
            in_home = f.path.startswith(lg.home + "/")
            uid, gid = (lg.uid, lg.gid) if in_home else (0, 0)
            if f.absent:
                t.whiteout(t.resolve(posixpath.dirname(f.path)) + "/" + posixpath.basename(f.path))
            elif f.link is not None:
                t.symlink(f.path, f.link, uid, gid)
            elif f.library is not None:
                exports = tuple(Export(n, Kind(k), v) for n, k, v in f.exports)
                mode = f.mode if f.mode != 0o644 else 0o755
                t.write(f.path, shared_object(f.library, exports), mode, uid, gid)
            else:
                t.write(f.path, f.content or "", f.mode, uid, gid)

    def dpkg(self) -> None:
        t = self.t
        stanzas = []
        for deb in self.debs:
            stanzas.append(
                f"Package: {deb.name}\nStatus: install ok installed\nPriority: optional\n"
                f"Section: {deb.section}\nInstalled-Size: {64 + 8 * len(deb.files)}\n"
                f"Maintainer: {deb.maintainer}\nArchitecture: amd64\n"
                f"Version: {deb.version}\nDescription: {deb.description}\n"
            )
            dirs: set[str] = set()
            for f in deb.files:
                parts = f.split("/")[1:-1]
                for i in range(1, len(parts) + 1):
                    dirs.add("/" + "/".join(parts[:i]))
            listing = ["/.", *sorted(dirs), *deb.files]
            t.write(f"/var/lib/dpkg/info/{deb.name}.list", "\n".join(listing) + "\n")
        t.write("/var/lib/dpkg/status", self.outer.dpkg_status + "".join(s + "\n" for s in stanzas))
        for name, (link, current) in self.alternatives.items():
            t.write(f"/var/lib/dpkg/alternatives/{name}", f"manual\n{link}\n\n{current}\n100\n\n")

    # -- helpers --------------------------------------------------------------------------------------------

    def _lib(
        self,
        directory: str,
        base: str,
        full: str,
        soname: str,
        exports: tuple[Export, ...],
        *,
        dev_link: bool = False,
        record: list[str] | None = None,
        uid: int = 0,
        gid: int = 0,
    ) -> None:
        """Write `<base>.<full>` with soname links, as ldconfig and -dev packages leave them."""
        t = self.t
        real = f"{directory}/{base}.{full}"
        t.write(real, _stub(soname, exports), 0o755, uid, gid)
        names = [real]
        if soname != f"{base}.{full}":
            t.symlink(f"{directory}/{soname}", f"{base}.{full}", uid, gid)
            names.append(f"{directory}/{soname}")
        if dev_link:
            t.symlink(f"{directory}/{base}", soname, uid, gid)
            names.append(f"{directory}/{base}")
        if record is not None:
            record.extend(names)

    def _alternative(self, name: str, link: str, target: str, *, set_current: bool) -> None:
        t = self.t
        if set_current or name not in self.alternatives:
            t.symlink(f"/etc/alternatives/{name}", target)
            self.alternatives[name] = (link, target)
            if not t.exists(link) or link in t.links:
                t.symlink(link, f"/etc/alternatives/{name}")


_VBIOS = {
    "Hopper": "96.00.A5.00.1A",
    "Ampere": "92.00.45.00.06",
    "Ada Lovelace": "95.04.29.00.01",
    "Turing": "90.04.96.00.A0",
    "Volta": "88.00.4F.00.09",
    "Pascal": "86.00.4D.00.01",
    "Kepler": "80.21.1F.00.01",
}

_STUBS: dict[tuple[str, tuple[Export, ...]], bytes] = {}


def _stub(soname: str, exports: tuple[Export, ...]) -> bytes:
    key = (soname, exports)
    if key not in _STUBS:
        _STUBS[key] = shared_object(soname, exports)
    return _STUBS[key]


def _wheel_dir(p: Package) -> str | None:
    """The directory under site-packages/nvidia/ whose lib/ an nvidia-* wheel fills (None: no lib/)."""
    m = re.search(r"-cu(\d+)$", p.name)
    cu = m.group(1) if m else p.version.split(".")[0]
    base = re.sub(r"-cu\d+$", "", p.name)[len("nvidia-") :]
    if base == "cudnn":
        return "cudnn"
    if base in ("cuda-runtime", "cublas", "nccl"):
        comp = {"cuda-runtime": "cuda_runtime", "cublas": "cublas", "nccl": "nccl"}[base]
        # CUDA 13 wheels: unsuffixed names, libraries under nvidia/cu13/lib
        return f"cu{cu}" if not m and base != "nccl" else comp
    return None


def _gid(group: str, name: str) -> int:
    for line in group.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[0] == name and parts[2].isdigit():
            return int(parts[2])
    return 0


def _stand_in(name: str, version: str) -> str:
    return (
        f"# remediate lab: {name} {version} is laid out here for probing (dist-info, version and build\n"
        f"# files), not installed; importing it on a lab host fails on purpose.\n"
        f"raise ImportError('remediate lab host: {name} {version} is a file layout, not a package')\n"
    )


def _cudnn_header(version: str) -> Callable[[str], str]:
    major, minor, patch = version.split(".")[:3]
    formula = (
        "CUDNN_MAJOR * 10000 + CUDNN_MINOR * 100 + CUDNN_PATCHLEVEL"
        if int(major) >= 9
        else ("CUDNN_MAJOR * 1000 + CUDNN_MINOR * 100 + CUDNN_PATCHLEVEL")
    )
    defines = (
        f"#define CUDNN_MAJOR {major}\n#define CUDNN_MINOR {minor}\n#define CUDNN_PATCHLEVEL {patch}\n\n"
        f"#define CUDNN_VERSION ({formula})\n"
    )

    def text(header: str) -> str:
        guard = header.upper().replace(".", "_")
        head = f"/*\n * cuDNN {version}: {header}\n */\n\n#if !defined({guard})\n#define {guard}\n\n"
        if header == "cudnn_version.h" or (header == "cudnn.h" and int(major) <= 7):
            body = defines
        elif header == "cudnn.h":
            body = '#include "cudnn_version.h"\n'
        else:
            body = '#include "cudnn_version.h"\n'
        return head + body + f"\n#endif /* {guard} */\n"

    return text


def _tf_build_info(version: tuple[int, int], cuda: str | None, cudnn: str | None) -> str:
    """tensorflow/python/platform/build_info.py as each release writes it (checked against public copies)."""
    header = (
        "# Copyright 2020 The TensorFlow Authors. All Rights Reserved.\n#\n"
        '# Licensed under the Apache License, Version 2.0 (the "License");\n'
        "# ==============================================================================\n"
        '"""Auto-generated module providing information about the build."""\n'
    )
    is_cuda = cuda is not None
    if version <= (2, 2):
        text = header.replace("2020", "2017") + f"\nis_rocm_build = False\nis_cuda_build = {is_cuda}\n"
        if is_cuda:
            text += f"cuda_version_number = {cuda!r}\ncudnn_version_number = {cudnn!r}\n"
        return text
    caps = (
        ["sm_35", "sm_50", "sm_60", "sm_70", "sm_75", "compute_80"]
        if version < (2, 15)
        else ["sm_50", "sm_60", "sm_70", "sm_75", "compute_80"]
    )
    compiler = (
        "/dt7/usr/bin/gcc"
        if version < (2, 9)
        else "/dt9/usr/bin/gcc"
        if version < (2, 15)
        else ("/usr/lib/llvm-17/bin/clang")
    )
    items: list[tuple[str, object]] = [("cpu_compiler", compiler)]
    if is_cuda:
        items += [("cuda_compute_capabilities", caps), ("cuda_version", cuda), ("cudnn_version", cudnn)]
    items += [("is_cuda_build", is_cuda), ("is_rocm_build", False), ("is_tensorrt_build", is_cuda)]
    if version == (2, 3):
        return header + (
            "from __future__ import absolute_import\nfrom __future__ import division\n"
            "from __future__ import print_function\n\nbuild_info = {"
            + ", ".join(f"{k!r}: {v!r}" for k, v in items)
            + "}\n"
        )
    if version < (2, 10):
        return (
            header
            + "import collections\n\nbuild_info = collections.OrderedDict(["
            + ", ".join(f"({k!r}, {v!r})" for k, v in items)
            + "])\n"
        )
    return header + "\nbuild_info = {" + ", ".join(f"{k!r}: {v!r}" for k, v in items) + "}\n"


def render_nvidia_smi(data: Mapping[str, object]) -> str:
    """The host's /usr/bin/nvidia-smi: the shipped script with this host's data and the -q templates."""
    files = resources.files("remediator.lab") / "files"
    script = (files / "nvidia_smi.py").read_text(encoding="utf-8")
    q_text = (files / "nvidia-smi-q.txt").read_text(encoding="utf-8")
    q_xml = (files / "nvidia-smi-q-x.xml").read_text(encoding="utf-8")
    script = script.replace('"@DATA@"', json.dumps(json.dumps(data)), 1)
    script = script.replace('"@Q_TEXT@"', json.dumps(q_text), 1)
    script = script.replace('"@Q_XML@"', json.dumps(q_xml), 1)
    return script


def build_template(scenario: Scenario, root: Path, outer: Outer, authorized_key: str) -> Login:
    """Write `scenario`'s layers under `root` (replacing what is there); return its login user."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    tree = Tree(root)
    builder = Builder(scenario, tree, outer, authorized_key)
    builder.build()
    return builder.login


__all__ = ["Login", "Outer", "build_template", "render_nvidia_smi", "scan_outer"]

