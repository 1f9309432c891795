"""The typed model of one host's GPU stack: what the probe found, and what diagnosis reads.

Facts are plain data (frozen dataclasses) with a schema version and a JSON round trip. Versions stay
the strings the host reported (`450.51.06`, `2.11.0+cu130`); comparison happens in diagnosis through
`remediator.versions`. Everything here came from a host and is untrusted: loading validates types and
names the offending field, and nothing in it is ever used to build a shell command.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from remediator.errors import InputError

SCHEMA_VERSION = 1

InstallMethod = Literal["runfile", "deb", "rpm", "conda", "pip", "tarball", "unknown"]
DriverSource = Literal["nvml", "nvidia-smi", "proc", "none"]
EnvKind = Literal["system", "venv", "conda", "user"]


@dataclass(frozen=True)
class OsRelease:
    id: str = ""  # /etc/os-release ID, e.g. "ubuntu"
    version_id: str = ""  # e.g. "24.04" (not a PEP 440 version; kept as a string)
    pretty_name: str = ""
    kernel: str = ""  # `uname -r`, never parsed as a version
    arch: str = ""


@dataclass(frozen=True)
class Driver:
    """The NVIDIA driver as seen from userspace, and the kernel module when it can be read.

    `version` is what answered (NVML or nvidia-smi); `kernel_module_version` comes from
    /proc/driver/nvidia/version. When both are known and differ, a reboot is pending.
    """

    version: str | None = None
    source: DriverSource = "none"
    kernel_module_version: str | None = None
    userspace_version: str | None = None  # libnvidia-ml.so.<version> / libcuda.so.<version>
    cuda_driver_version: str | None = None  # highest CUDA the driver supports, e.g. "13.0"
    error: str | None = None  # e.g. "Failed to initialize NVML: Driver/library version mismatch"


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    uuid: str = ""
    memory_mib: int | None = None
    compute_capability: str | None = None  # "9.0"
    pci_bus_id: str = ""
    # Where the GPU was seen: "nvml", "nvidia-smi", or, when both fail (a driver/library mismatch, no
    # userspace driver), "proc" (/proc/driver/nvidia/gpus/*/information) or "pci" (an NVIDIA display or
    # 3D controller in /sys/bus/pci/devices, named by its PCI device id).
    source: str = ""
    pci_device_id: str = ""  # "0x2330"


@dataclass(frozen=True)
class CudaToolkit:
    version: str  # "11.2.152" from version.json, "10.1.243" from version.txt, "12.4" from nvcc
    path: str  # the real directory, e.g. /usr/local/cuda-11.2
    install_method: InstallMethod = "unknown"
    version_source: str = ""  # "version.json", "version.txt", "nvcc", "dpkg", "wheel", ...
    is_default: bool = False  # /usr/local/cuda resolves to it
    via_alternatives: bool = False  # the default link goes through /etc/alternatives
    packages: tuple[str, ...] = ()  # deb/rpm packages that own it, "name=version"
    env: str | None = None  # for conda/pip toolkits: the env path that holds it


@dataclass(frozen=True)
class CompatLibcuda:
    """A forward-compatibility libcuda (cuda-compat package) under <toolkit>/compat."""

    path: str
    version: str


@dataclass(frozen=True)
class CudnnInstall:
    version: str  # "8.1.0", from the header's CUDNN_MAJOR/MINOR/PATCHLEVEL or the soname file
    path: str  # the library directory (or the header directory when no library was found)
    install_method: InstallMethod = "unknown"
    header: str | None = None  # cudnn.h (<= 7) or cudnn_version.h (>= 8): where the version was read
    headers: tuple[str, ...] = ()  # every cudnn*.h of a copy in a toolkit dir (what quarantine moves)
    libraries: tuple[str, ...] = ()  # libcudnn*.so* files found in `path`
    package: str | None = None  # "libcudnn8=8.1.0.77-1+cuda11.2", "nvidia-cudnn-cu12=8.9.4.25"
    in_toolkit: str | None = None  # the toolkit directory it was copied into, if any
    env: str | None = None  # for conda/pip copies


@dataclass(frozen=True)
class LdPathEntry:
    path: str
    source: str  # "/etc/ld.so.conf.d/cuda.conf", "/etc/profile.d/cuda.sh", "/etc/environment", "login"
    exists: bool = True


@dataclass(frozen=True)
class LoaderConfig:
    ld_so_conf: tuple[LdPathEntry, ...] = ()
    ld_library_path: tuple[LdPathEntry, ...] = ()  # in the order the loader searches them
    cache: tuple[tuple[str, str], ...] = ()  # (soname, path) from `ldconfig -p`, CUDA libs only


@dataclass(frozen=True)
class LibFile:
    """One CUDA-family shared library in a directory the loader may search (libcuda, libcudart,
    libcublas*, libcudnn*, libcufft, libcurand, libcusolver*, libcusparse, libnvJitLink, libnvrtc, libnccl)."""

    name: str  # the file name in its directory: "libcudart.so.11.0" (often a link)
    soname: str = ""  # the ELF DT_SONAME of the file it reaches ("" when it has none or is unreadable)
    real: str = ""  # the file it reaches, symlinks followed: ".../libcudart.so.11.2.152"
    version: str | None = None  # from the real file's name ("11.2.152", "8.1.1"), or None
    stub: bool = False  # a link-time stub (a `stubs` dir of a toolkit): it cannot run anything


@dataclass(frozen=True)
class LibDir:
    """A directory the loader may search for some way of starting Python, and the libraries in it."""

    path: str  # as it was named (an LD_LIBRARY_PATH entry, an ld.so.conf line, an RPATH, ...)
    real: str = ""  # the real directory
    exists: bool = True
    libs: tuple[LibFile, ...] = ()


@dataclass(frozen=True)
class ElfDeps:
    """The dynamic section of one of a framework's own shared objects."""

    path: str  # e.g. .../site-packages/torch/lib/libtorch_cuda.so
    needed: tuple[str, ...] = ()  # DT_NEEDED sonames
    rpath: tuple[str, ...] = ()  # DT_RPATH entries with $ORIGIN expanded to the object's real directory
    runpath: tuple[str, ...] = ()  # DT_RUNPATH entries, likewise


@dataclass(frozen=True)
class LaunchEnv:
    """LD_LIBRARY_PATH as one way of starting Python on the host sees it."""

    # "ssh command" (a non-interactive session: /etc/environment only), "login shell" (profile.d, ~/.profile),
    # "venv activate", "conda activate" (activate.d), "jupyter kernel NAME", "systemd UNIT"
    name: str
    ld_library_path: tuple[str, ...] = ()  # in search order, as set (unexpanded variables dropped)
    source: str = ""  # the file(s) that set it, ", "-separated
    env: str | None = None  # the env it starts (activate scripts, kernels); None: any env


@dataclass(frozen=True)
class Framework:
    name: str  # pip distribution name: tensorflow, tensorflow-gpu, tensorflow-cpu, tf-nightly, torch, jax
    version: str  # as installed, e.g. "2.11.0+cu130"
    cuda_build: str | None = None  # CUDA it was built for ("11.2"); None when unknown
    cudnn_build: str | None = None  # cuDNN it was built for ("8", "8.1", "91900" normalised to 9.19.0)
    is_cuda_build: bool | None = None  # False for CPU-only wheels
    build_info_source: str = ""  # the file the build facts came from
    elf: tuple[ElfDeps, ...] = ()  # its main CUDA shared objects (libtorch_cuda.so, _pywrap_tensorflow_internal.so)


@dataclass(frozen=True)
class PythonEnv:
    path: str  # the env's prefix; "/usr" for the system interpreter
    kind: EnvKind
    python: str  # the interpreter path
    python_version: str  # "3.8.10"
    frameworks: tuple[Framework, ...] = ()
    nvidia_wheels: tuple[tuple[str, str], ...] = ()  # (dist name, version) of nvidia-* wheels
    conda_packages: tuple[tuple[str, str], ...] = ()  # (name, version): cudatoolkit, cudnn, ...
    owner: str | None = None  # the user who owns the env's directory (verify runs its check as that user)


@dataclass(frozen=True)
class ProbeNote:
    """Something the probe could not read or found odd; kept so no failure is silent."""

    where: str
    message: str


@dataclass(frozen=True)
class HostFacts:
    host: str
    schema_version: int = SCHEMA_VERSION
    collected_at: str = ""  # ISO 8601, set by the probe
    os: OsRelease = field(default_factory=OsRelease)
    driver: Driver = field(default_factory=Driver)
    gpus: tuple[Gpu, ...] = ()
    toolkits: tuple[CudaToolkit, ...] = ()
    compat_libcuda: tuple[CompatLibcuda, ...] = ()
    cudnn: tuple[CudnnInstall, ...] = ()
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    envs: tuple[PythonEnv, ...] = ()
    notes: tuple[ProbeNote, ...] = ()
    # What the loader can reach, for diagnosis to resolve each library like the loader does: every
    # directory on any search path (LD_LIBRARY_PATH of each launch env, ld.so.conf, the default dirs,
    # each env's own lib dirs and its nvidia-* wheel dirs, the frameworks' RPATH/RUNPATH), with the
    # CUDA-family libraries in each; and LD_LIBRARY_PATH per way of starting Python.
    libdirs: tuple[LibDir, ...] = ()
    launch_envs: tuple[LaunchEnv, ...] = ()
    # Directories the probe was not allowed to list (no become, a 0750 home, /root): what is in them is
    # unknown, never absent.
    unread: tuple[str, ...] = ()

    def default_toolkit(self) -> CudaToolkit | None:
        return next((t for t in self.toolkits if t.is_default), None)

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(self)  # type: ignore[no-any-return]

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<facts>") -> HostFacts:
        if not isinstance(data, dict):
            raise InputError(source, f"expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise InputError(
                source,
                f"facts schema version {version!r} is not supported (this remediate reads {SCHEMA_VERSION})",
                field="schema_version",
                hint="probe the host again with this version of remediate",
            )
        return typing.cast(HostFacts, _from_jsonable(cls, data, source, ""))

    @classmethod
    def from_json(cls, text: str, *, source: str = "<facts>") -> HostFacts:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(source, f"not valid JSON: {exc}") from None
        return cls.from_dict(data, source=source)


def load_facts_file(path: str) -> list[HostFacts]:
    """Read a facts file: one host's facts, a list of them, or `{"hosts": [...]}` as `probe --out` writes."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("hosts"), list):
        items = data["hosts"]
        prefix = "hosts"
    elif isinstance(data, list):
        items = data
        prefix = ""
    else:
        items = [data]
        prefix = None
    facts = []
    for i, item in enumerate(items):
        where = path if prefix is None else f"{path}: {prefix}[{i}]" if prefix else f"{path}: [{i}]"
        # `probe --out` wraps each host: {"host", "status", "error", "facts"}. A host that could not be
        # probed has no facts; it is left out rather than read as a host with nothing installed.
        if isinstance(item, dict) and "facts" in item and "status" in item:
            if item["facts"] is None:
                continue
            item = item["facts"]
        facts.append(HostFacts.from_dict(item, source=where))
    return facts


# --- JSON conversion -------------------------------------------------------------------------------


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _to_jsonable(value: Any) -> Any:
    # Called for every fingerprint of every host a plan covers: dispatch on the exact type, and look
    # field names up once per class.
    cls = type(value)
    if cls in _SCALARS:
        return value
    if cls is tuple or cls is list:
        return [v if type(v) in _SCALARS else _to_jsonable(v) for v in value]
    names = _FIELD_NAMES.get(cls)
    if names is None:
        if not dataclasses.is_dataclass(value):
            return value
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(value))
    out = {}
    for name in names:
        v = getattr(value, name)
        out[name] = v if type(v) in _SCALARS else _to_jsonable(v)
    return out


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _from_jsonable(tp: Any, value: Any, source: str, path: str) -> Any:
    """Convert JSON data into `tp`, raising InputError that names the field on any mismatch."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise InputError(source, f"expected an object, got {_kind(value)}", field=path or "<root>")
        hints = _hints(tp)
        kwargs: dict[str, Any] = {}
        names = {f.name: f for f in dataclasses.fields(tp)}
        for key in value:
            if key not in names:
                continue  # newer probes may add fields; unknown keys are ignored, not fatal
        for name, f in names.items():
            sub = f"{path}.{name}" if path else name
            if name in value:
                kwargs[name] = _from_jsonable(hints[name], value[name], source, sub)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise InputError(source, "missing required field", field=sub)
        return tp(**kwargs)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _from_jsonable(non_none[0], value, source, path)
    if origin is Literal:
        if value not in get_args(tp):
            allowed = ", ".join(repr(a) for a in get_args(tp))
            raise InputError(source, f"{value!r} is not one of {allowed}", field=path)
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list):
            raise InputError(source, f"expected a list, got {_kind(value)}", field=path)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_jsonable(args[0], v, source, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise InputError(source, f"expected {len(args)} items, got {len(value)}", field=path)
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(_from_jsonable(a, v, source, f"{path}[{i}]") for i, (a, v) in pairs)
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(source, f"expected true or false, got {_kind(value)}", field=path)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(source, f"expected an integer, got {_kind(value)}", field=path)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise InputError(source, f"expected a string, got {_kind(value)}", field=path)
        return value
    raise TypeError(f"unsupported type in facts model: {tp!r}")  # a bug of ours, not bad input


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
