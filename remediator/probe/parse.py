"""The pure half of the probe: turns the JSON document the remote script printed into `HostFacts`.

No I/O, no clock: the same document always gives the same facts, so every real-world oddity is a
recorded document under tests/fixtures/probe with the facts it must give. The document is untrusted
(it came from a host): anything of the wrong shape is rejected with an error that names the field,
and every string (paths with newlines, `..`, `$(...)`) is kept as inert data, never interpreted.
"""

from __future__ import annotations

import ast
import json
import posixpath
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from remediator.errors import RemediatorError
from remediator.facts import (
    CompatLibcuda,
    CudaToolkit,
    CudnnInstall,
    Driver,
    ElfDeps,
    Framework,
    Gpu,
    HostFacts,
    InstallMethod,
    LaunchEnv,
    LdPathEntry,
    LibDir,
    LibFile,
    LoaderConfig,
    OsRelease,
    ProbeNote,
    PythonEnv,
)
from remediator.hostscript import OutputError, decode_document

#: The version of the document the remote script prints (not the facts' SCHEMA_VERSION).
PROBE_SCHEMA_VERSION = 1
MAX_OUTPUT_BYTES = 64 * 1024 * 1024
#: The longest string a document may hold: the script cuts command output at 1 MiB, files sooner.
MAX_STRING_CHARS = 1024 * 1024
#: Integers outside 64 bits are no count, size or status the script reports.
MAX_INT = 2**63 - 1
_SOURCE_CAP = 256 * 1024  # framework files parsed with `ast`; real ones are a few KiB
#: More than the script ever reports (it stops at 400 directories, 200 libraries each, 256 entries of a
#: search path); a document with more was not made by it and is refused, naming the field.
_MAX_LIBDIRS = 1000
_MAX_LIBS = 1000
_MAX_ENTRIES = 1000
_MAX_LAUNCH_ENVS = 1000
_MAX_GPUS = 256


class ProbeError(RemediatorError):
    """The probe of one host did not give facts: python3 missing, the script failed, bad output."""

    def __init__(self, message: str, *, host: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.host = host


# --- the entry points --------------------------------------------------------------------------


def parse_probe_output(output: bytes | str, *, host: str) -> HostFacts:
    """Parse what the remote script printed on stdout; raise ProbeError on anything but a document."""
    try:
        data = decode_document(output, what="probe", max_bytes=MAX_OUTPUT_BYTES)
    except OutputError as exc:
        raise ProbeError(str(exc), host=host, hint=exc.hint) from None
    return parse_probe_document(data, host=host)


def parse_probe_document(data: Any, *, host: str) -> HostFacts:
    """Turn the decoded JSON document into facts for `host`."""
    doc = _Node(data, "", host)
    doc.expect_dict()
    version = doc.get("schema_version").raw
    if version != PROBE_SCHEMA_VERSION:
        raise ProbeError(
            f"probe document schema_version is {version!r}; this remediate reads {PROBE_SCHEMA_VERSION}",
            host=host,
            hint="the host ran a probe script of another remediate version",
        )
    return _Builder(doc, host).build()


# --- reading untrusted JSON with field paths in every error ------------------------------------


INTERN_MAX = 256  # characters: paths and names, not file texts


class _Node:
    """A value of the document and where it sits, with typed accessors that name the field on error."""

    __slots__ = ("host", "path", "raw")

    def __init__(self, raw: Any, path: str, host: str) -> None:
        self.raw = raw
        self.path = path
        self.host = host

    def fail(self, message: str) -> ProbeError:
        where = self.path or "<document>"
        return ProbeError(f"probe document: {where}: {message}", host=self.host)

    def expect_dict(self) -> dict[str, Any]:
        if not isinstance(self.raw, dict):
            raise self.fail(f"expected an object, got {_kind(self.raw)}")
        return self.raw

    def get(self, key: str) -> _Node:
        """The member `key` (a null node when absent); this node must be an object or null."""
        if self.raw is None:
            return _Node(None, self._sub(key), self.host)
        return _Node(self.expect_dict().get(key), self._sub(key), self.host)

    def _sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def items(self) -> Iterator[_Node]:
        """The elements of a list (none when null)."""
        if self.raw is None:
            return iter(())
        if not isinstance(self.raw, list):
            raise self.fail(f"expected a list, got {_kind(self.raw)}")
        return (_Node(v, f"{self.path}[{i}]", self.host) for i, v in enumerate(self.raw))

    def opt_str(self) -> str | None:
        if self.raw is None:
            return None
        if not isinstance(self.raw, str):
            raise self.fail(f"expected a string, got {_kind(self.raw)}")
        if len(self.raw) > MAX_STRING_CHARS:
            raise self.fail(f"a string of {len(self.raw)} characters, more than the {MAX_STRING_CHARS} allowed")
        return _clean(self.raw)

    def text(self, default: str = "") -> str:
        value = self.opt_str()
        return default if value is None else value

    def opt_int(self) -> int | None:
        if self.raw is None:
            return None
        if isinstance(self.raw, bool) or not isinstance(self.raw, int):
            raise self.fail(f"expected an integer, got {_kind(self.raw)}")
        if not -MAX_INT <= self.raw <= MAX_INT:
            raise self.fail("integer out of range")
        return self.raw

    def opt_number(self) -> float | None:
        if self.raw is None:
            return None
        if isinstance(self.raw, bool) or not isinstance(self.raw, int | float):
            raise self.fail(f"expected a number, got {_kind(self.raw)}")
        if isinstance(self.raw, int) and not -MAX_INT <= self.raw <= MAX_INT:
            raise self.fail("number out of range")
        return float(self.raw)

    def flag(self, default: bool = False) -> bool:
        if self.raw is None:
            return default
        if not isinstance(self.raw, bool):
            raise self.fail(f"expected true or false, got {_kind(self.raw)}")
        return self.raw

    def strs(self) -> list[str]:
        return [item.text() for item in self.items()]

    def capped(self, cap: int) -> Iterator[_Node]:
        """The elements of a list (none when null), refused when there are more than `cap`."""
        if isinstance(self.raw, list) and len(self.raw) > cap:
            raise self.fail(f"{len(self.raw)} entries, more than the {cap} allowed")
        return self.items()


def _user_name(node: _Node) -> str | None:
    """A user name as the host reported it; None when absent or not a user name (it is only ever an
    argument of sudo -u, but a name that could be read as an option is no name)."""
    from remediator.transport.become import USER_RE

    name = node.opt_str()
    return name if name is not None and USER_RE.match(name) else None


def _clean(text: str) -> str:
    # JSON may carry lone surrogates (undecodable file names); keep the rest, replace those.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    # A fleet's facts repeat the same short strings host after host (library dirs, sonames, versions):
    # one copy each, not one per host, is what lets 1,000 hosts' facts stay small in memory.
    return sys.intern(text) if len(text) <= INTERN_MAX else text


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer"}.get(
        type(value), type(value).__name__
    )


@dataclass(frozen=True)
class _Command:
    """A command the script ran: argv, exit status, output."""

    argv: tuple[str, ...]
    rc: int | None
    stdout: str
    stderr: str
    timed_out: bool
    error: str | None

    @classmethod
    def read(cls, node: _Node) -> _Command | None:
        if node.raw is None:
            return None
        node.expect_dict()
        return cls(
            tuple(node.get("argv").strs()),
            node.get("rc").opt_int(),
            node.get("stdout").text(),
            node.get("stderr").text(),
            node.get("timed_out").flag(),
            node.get("error").opt_str(),
        )

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out and self.error is None

    def failure_text(self) -> str:
        name = posixpath.basename(self.argv[0]) if self.argv else "command"
        if self.timed_out:
            return f"{name} timed out (a wedged driver?)"
        if self.error:
            return f"{name}: {self.error}"
        text = "\n".join(line.rstrip() for line in (self.stdout + self.stderr).strip().splitlines())
        return text or f"{name} exited with status {self.rc}"


@dataclass(frozen=True)
class _LibDir:
    path: str
    real: str
    found_as: tuple[str, ...]
    kinds: tuple[str, ...]
    files: tuple[tuple[str, str | None], ...]  # (name, symlink target)


@dataclass(frozen=True)
class _Header:
    path: str
    real: str
    defines: tuple[str, ...]


@dataclass(frozen=True)
class _Dist:
    site: str
    dir: str
    name: str  # as in METADATA (or from the directory name)
    version: str
    record: tuple[tuple[str, str | None], ...] = ()  # RECORD hashes of the framework files

    @property
    def key(self) -> str:
        return _normalize_dist(self.name)


@dataclass(frozen=True)
class _File:
    """A framework file the script read (build_info.py, version.py), with its RECORD-style hash."""

    text: str
    sha256: str | None


def _normalize_dist(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- from the document to facts ------------------------------------------------------------------

_PROC_RE = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+\.\d+(?:\.\d+)*)")
_LIB_VERSION_RE = re.compile(r"^(libnvidia-ml|libcuda)\.so\.(\d+\.\d+(?:\.\d+)*)$")
_CUDNN_LIB_RE = re.compile(r"^libcudnn(?:_\w+)?\.so\.([0-9]{1,9})((?:\.[0-9]+)*)$")
_CUDNN_MAIN_RE = re.compile(r"^libcudnn\.so\.(\d+(?:\.\d+)*)$")
_NVCC_RE = re.compile(r"release (\d+\.\d+), V(\d+(?:\.\d+)*)")
_VERSION_TXT_RE = re.compile(r"CUDA Version\s+(\d+(?:\.\d+)*)")
_TOOLKIT_DIR_RE = re.compile(r"cuda-(\d+\.\d+)$")
_SMI_MISSING = ("[N/A]", "[Not Supported]", "N/A", "")

_TF_DISTS = (
    "tensorflow",
    "tensorflow-gpu",
    "tensorflow-cpu",
    "tf-nightly",
    "tf-nightly-gpu",
    "tf-nightly-cpu",
)


class _Builder:
    def __init__(self, doc: _Node, host: str) -> None:
        self.doc = doc
        self.host = host
        self.notes: list[ProbeNote] = []
        self.shared_noted: set[str] = set()

    def note(self, where: str, message: str) -> None:
        self.notes.append(ProbeNote(where, message))

    def build(self) -> HostFacts:
        doc = self.doc
        for item in doc.get("notes").items():
            self.note(item.get("where").text(), item.get("message").text())
        self.dpkg = self._packages(doc.get("packages").get("dpkg"), "dpkg")
        self.rpm = self._packages(doc.get("packages").get("rpm"), "rpm")
        self.lib_dirs = self._lib_dirs()
        self.headers = self._headers()
        self.ldcache = self._ldcache()
        self.envs_raw = list(doc.get("envs").items())
        toolkits, compat = self._toolkits()
        self.toolkits = toolkits
        compat_dirs = {posixpath.dirname(c.path) for c in compat}
        driver, gpus = self._driver(compat_dirs)
        envs = self._envs()
        cudnn = self._cudnn()
        facts = HostFacts(
            host=self.host,
            collected_at=doc.get("probe").get("collected_at").text(),
            os=self._os(),
            driver=driver,
            gpus=gpus,
            toolkits=tuple(toolkits) + tuple(self._env_toolkits()),
            compat_libcuda=tuple(compat),
            cudnn=tuple(cudnn),
            loader=self._loader(),
            envs=tuple(envs),
            notes=tuple(self.notes),
            libdirs=self._loader_dirs(),
            launch_envs=self._launch_envs(),
            unread=tuple(self._unread()),
        )
        return facts

    # --- os ------------------------------------------------------------------------------------

    def _os(self) -> OsRelease:
        node = self.doc.get("os")
        fields = _parse_os_release(node.get("os_release").text())
        return OsRelease(
            id=fields.get("ID", ""),
            version_id=fields.get("VERSION_ID", ""),
            pretty_name=fields.get("PRETTY_NAME", ""),
            kernel=node.get("kernel").text(),
            arch=node.get("arch").text(),
        )

    # --- packages ------------------------------------------------------------------------------

    def _packages(self, node: _Node, kind: str) -> dict[str, str]:
        """Installed packages (name -> version) from dpkg-query / rpm output lines."""
        command = _Command.read(node)
        if command is None:
            return {}
        if not command.ok:
            self.note(kind, f"package query failed: {command.failure_text()}")
        packages: dict[str, str] = {}
        for line in command.stdout.splitlines():
            parts = line.split("\t")
            if len(parts) < 2 or not parts[0]:
                continue
            status = parts[2] if len(parts) > 2 else "install ok installed"
            if kind == "dpkg" and not status.endswith(" installed"):
                continue  # removed with config files left ("deinstall ok config-files")
            packages[parts[0]] = parts[1]
        return packages

    # --- files the script listed ---------------------------------------------------------------

    def _lib_dirs(self) -> list[_LibDir]:
        result = []
        for node in self.doc.get("lib_dirs").items():
            files: list[tuple[str, str | None]] = []
            for item in node.get("files").items():
                pair = list(item.items())
                if len(pair) != 2:
                    raise item.fail("expected [name, link target]")
                files.append((pair[0].text(), pair[1].opt_str()))
            path = node.get("path").text()
            result.append(
                _LibDir(
                    path=path,
                    real=node.get("real").text(path),
                    found_as=tuple(node.get("found_as").strs()) or (path,),
                    kinds=tuple(node.get("kinds").strs()),
                    files=tuple(files),
                )
            )
        return result

    def _headers(self) -> list[_Header]:
        headers: list[_Header] = []
        seen: set[str] = set()
        for node in self.doc.get("headers").items():
            path = node.get("path").text()
            real = node.get("real").opt_str() or path
            if real in seen:
                continue
            seen.add(real)
            headers.append(_Header(path, real, tuple(node.get("defines").strs())))
        return headers

    def _ldcache(self) -> list[tuple[str, str]]:
        command = _Command.read(self.doc.get("ldconfig"))
        if command is None:
            return []
        if not command.ok:
            self.note("ldconfig", f"ldconfig -p failed: {command.failure_text()}")
        cache = []
        for line in command.stdout.splitlines():
            soname, sep, path = line.partition("=>")
            if not sep:
                continue
            cache.append((soname.strip().split(" ", 1)[0], path.strip()))
        return cache

    # --- the driver ----------------------------------------------------------------------------

    def _driver(self, compat_dirs: set[str]) -> tuple[Driver, tuple[Gpu, ...]]:
        node = self.doc.get("driver")
        kernel = _proc_version(node.get("proc_version").opt_str())
        userspace = self._userspace_version(compat_dirs)
        nvml = node.get("nvml")
        smi_nodes: list[tuple[_Node, _Command]] = []
        for smi_node in node.get("nvidia_smi").items():
            smi_command = _Command.read(smi_node)
            if smi_command is not None:
                smi_nodes.append((smi_node, smi_command))
        smi_runs = [c for _, c in smi_nodes]
        smi_ok = next(((n, c) for n, c in reversed(smi_nodes) if c.ok and c.stdout.strip()), None)

        version: str | None = None
        source = "none"
        cuda: str | None = None
        gpus: tuple[Gpu, ...] = ()
        error: str | None = None
        nvml_ok = nvml.raw is not None and nvml.get("ok").flag()
        nvml_error = nvml.get("error").opt_str() if nvml.raw is not None else None
        pci = self._pci_devices(node.get("pci"))

        if nvml_ok:
            version = nvml.get("driver_version").opt_str()
            source = "nvml"
            cuda = _cuda_from_int(nvml.get("cuda_driver_version").opt_int())
            gpus = tuple(self._nvml_gpus(nvml, pci))
            for key in nvml.get("errors").expect_dict() if nvml.get("errors").raw is not None else {}:
                self.note("nvml", f"{key}: {nvml.get('errors').get(key).text()}")
            if userspace is None:
                userspace = version  # NVML answered: its library and the kernel module agree
        elif smi_ok is not None:
            rows = self._smi_table(*smi_ok)
            gpus = tuple(_smi_gpu(index, row, pci) for index, row in enumerate(rows))
            version = next((row["driver_version"] for row in rows if row.get("driver_version")), None)
            source = "nvidia-smi"
        elif kernel is not None:
            version = kernel
            source = "proc"

        if not nvml_ok and smi_ok is None:
            gpus = self._gpus_without_driver(node.get("proc_gpus"), pci)
            failed = [c for c in smi_runs if not c.ok]
            if failed:
                error = failed[-1].failure_text()
            elif nvml_error and not _nothing_installed(nvml_error, kernel, userspace):
                error = nvml_error
        if nvml_error and error != nvml_error and not nvml_ok:
            self.note("nvml", nvml_error)
        if source == "none" and error is None:
            self.note("driver", "no NVIDIA driver found (no NVML library, no nvidia-smi, no /proc/driver/nvidia)")

        driver = Driver(
            version=version,
            source=source,  # type: ignore[arg-type]  # one of DriverSource by construction
            kernel_module_version=kernel,
            userspace_version=userspace,
            cuda_driver_version=cuda,
            error=error,
        )
        return driver, gpus

    def _pci_devices(self, node: _Node) -> dict[str, str]:
        """NVIDIA display and 3D controllers on the PCI bus: bus address (lower case) -> device id."""
        devices: dict[str, str] = {}
        for item in node.capped(_MAX_GPUS):
            address = item.get("address").text().lower()
            device = item.get("device").text().lower()
            klass = item.get("class").text().lower()
            vendor = item.get("vendor").text().lower()
            if vendor != "0x10de" or not re.fullmatch(r"0x030[02][0-9a-f]{2}", klass):
                continue  # an audio function or a bridge of the card, not the GPU
            if not re.fullmatch(r"0x[0-9a-f]{4}", device):
                self.note(f"/sys/bus/pci/devices/{address}", f"unreadable PCI device id {device[:20]!r}")
                continue
            devices[address] = device
        return devices

    def _gpus_without_driver(self, proc: _Node, pci: dict[str, str]) -> tuple[Gpu, ...]:
        """GPUs when neither NVML nor nvidia-smi answered: the kernel module's list, then the PCI bus."""
        gpus: list[Gpu] = []
        named: set[str] = set()
        for item in proc.capped(_MAX_GPUS):
            fields: dict[str, str] = {}
            for line in item.get("text").text().splitlines():
                key, sep, value = line.partition(":")
                if sep:
                    fields[key.strip()] = value.strip()
            bus = fields.get("Bus Location") or item.get("bus").text()
            minor = fields.get("Device Minor", "")
            named.add(bus.lower()[-12:])
            gpus.append(
                Gpu(
                    index=int(minor) if re.fullmatch(r"[0-9]{1,4}", minor) else len(gpus),
                    name=fields.get("Model", ""),
                    pci_bus_id=bus,
                    source="proc",
                    pci_device_id=pci.get(bus.lower()[-12:], ""),
                )
            )
        index = max((g.index for g in gpus), default=-1) + 1
        for address, device in sorted(pci.items()):
            if address[-12:] in named:
                continue
            gpus.append(
                Gpu(
                    index=index,
                    name=f"NVIDIA PCI device {device}",
                    pci_bus_id=address,
                    source="pci",
                    pci_device_id=device,
                )
            )
            index += 1
        return tuple(gpus)

    def _nvml_gpus(self, nvml: _Node, pci: dict[str, str]) -> Iterator[Gpu]:
        for i, node in enumerate(nvml.get("gpus").items()):
            memory = node.get("memory_total").opt_int()
            cc = [part.opt_int() for part in node.get("compute_capability").items()]
            yield Gpu(
                index=node.get("index").opt_int() if node.get("index").raw is not None else i,  # type: ignore[arg-type]
                name=node.get("name").text(),
                uuid=node.get("uuid").text(),
                memory_mib=memory // (1024 * 1024) if memory is not None else None,
                compute_capability=".".join(str(p) for p in cc) if len(cc) == 2 and None not in cc else None,
                pci_bus_id=node.get("pci_bus_id").text(),
                source="nvml",
                pci_device_id=pci.get(node.get("pci_bus_id").text().lower()[-12:], ""),
            )

    def _smi_table(self, node: _Node, command: _Command) -> list[dict[str, str | None]]:
        """`nvidia-smi --query-gpu=... --format=csv,noheader,nounits` rows as {field: value}.

        That format is plain comma-separated, without quoting. A row with another number of fields
        than were asked for is an error naming the row; a line without any comma is a message of
        nvidia-smi's own (an infoROM warning), kept as a note."""
        query = next((a.split("=", 1)[1] for a in command.argv if a.startswith("--query-gpu=")), "")
        fields = [f.strip() for f in query.split(",") if f.strip()]
        stdout = node.get("stdout")
        if len(fields) < 2:
            raise node.get("argv").fail("no --query-gpu=FIELD,... argument to read nvidia-smi's rows by")
        rows: list[dict[str, str | None]] = []
        for line in command.stdout.splitlines():
            if not line.strip():
                continue
            if "," not in line:
                self.note("nvidia-smi", line.strip())
                continue
            cells = [cell.strip() for cell in line.split(",")]
            row = len(rows) + 1
            if len(cells) != len(fields):
                raise stdout.fail(f"nvidia-smi --query-gpu row {row}: expected {len(fields)} fields, got {len(cells)}")
            value = {f: (None if c in _SMI_MISSING else c) for f, c in zip(fields, cells, strict=True)}
            memory = value.get("memory.total")
            if memory is not None and not re.fullmatch(r"[0-9]{1,15}", memory):
                raise stdout.fail(f"nvidia-smi --query-gpu row {row}: memory.total: expected MiB, got {memory[:40]!r}")
            rows.append(value)
        return rows

    def _userspace_version(self, compat_dirs: set[str]) -> str | None:
        """The driver version of the userspace libraries the loader would pick (libnvidia-ml, libcuda)."""
        driver_dirs = [
            d
            for d in self.lib_dirs
            if d.real not in compat_dirs
            and not d.real.endswith("/compat")
            and set(d.kinds) & {"system", "ld.so.conf", "LD_LIBRARY_PATH"}
        ]
        for lib in ("libnvidia-ml", "libcuda"):
            # The copy the loader cache resolves first.
            for soname, path in self.ldcache:
                if soname != f"{lib}.so.1":
                    continue
                directory = posixpath.dirname(path)
                for d in driver_dirs:
                    if directory in d.found_as or directory == d.real:
                        version = _version_of_link(d, f"{lib}.so.1", lib)
                        if version:
                            return version
            versions: list[str] = []
            for d in driver_dirs:
                for name, _link in d.files:
                    match = _LIB_VERSION_RE.match(name)
                    if match and match.group(1) == lib and match.group(2) not in versions:
                        versions.append(match.group(2))
            if len(versions) > 1:
                self.note("driver", f"several userspace {lib} versions on the host: {', '.join(versions)}")
            if versions:
                return versions[0]
        return None

    # --- toolkits ------------------------------------------------------------------------------

    def _toolkits(self) -> tuple[list[CudaToolkit], list[CompatLibcuda]]:
        default = self.doc.get("default_toolkit")
        default_real = default.get("resolved").opt_str() if default.get("exists").flag() else None
        chain = default.get("chain").strs()
        via_alternatives = any(p.startswith("/etc/alternatives/") for p in chain)
        runfile_paths = self._installer_log_paths()
        toolkits: list[CudaToolkit] = []
        compat: list[CompatLibcuda] = []
        for node in self.doc.get("toolkits").items():
            path = node.get("path").text()
            version, source = _toolkit_version(node, path, self.dpkg)
            if not version:
                self.note(path, "a CUDA toolkit directory without version.json, version.txt or nvcc")
            packages = _toolkit_packages(version, self.dpkg) if version else ()
            rpm_packages = _toolkit_packages(version, self.rpm) if version else ()
            method: InstallMethod = "unknown"
            if node.get("uninstallers").strs() or path.rstrip("/") in runfile_paths:
                method = "runfile"
            elif packages:
                method = "deb"
            elif rpm_packages:
                method = "rpm"
            if method == "unknown" and path.startswith("/usr/lib/nvidia-cuda-toolkit") and self.dpkg:
                # Debian's and Ubuntu's own toolkit package (not NVIDIA's repository).
                name = "nvidia-cuda-toolkit"
                if name in self.dpkg:
                    method, packages = "deb", (f"{name}={self.dpkg[name]}",)
            if source == "dpkg" and method == "unknown":
                method = "deb"
            is_default = default_real is not None and default_real == path
            toolkits.append(
                CudaToolkit(
                    version=version,
                    path=path,
                    install_method=method,
                    version_source=source,
                    is_default=is_default,
                    via_alternatives=is_default and via_alternatives,
                    packages=packages or rpm_packages,
                )
            )
            for item in node.get("compat").items():
                pair = list(item.items())
                if len(pair) != 2:
                    raise item.fail("expected [name, link target]")
                name, link = pair[0].text(), pair[1].opt_str()
                match = _LIB_VERSION_RE.match(name)
                if match and match.group(1) == "libcuda" and link is None:
                    compat.append(CompatLibcuda(path=f"{path}/compat/{name}", version=match.group(2)))
        return toolkits, compat

    def _installer_log_paths(self) -> set[str]:
        paths: set[str] = set()
        for log in self.doc.get("installer_logs").items():
            if not log.get("path").text().endswith("cuda-installer.log"):
                continue
            for line in log.get("lines").strs():
                paths.update(m.rstrip("/") for m in re.findall(r"(/[\w./-]*cuda-\d+\.\d+)\b/?", line))
        return paths

    def _env_toolkits(self) -> Iterator[CudaToolkit]:
        """CUDA runtimes that live inside Python envs: conda cudatoolkit, pip nvidia-cuda-runtime."""
        for env in self.envs_raw:
            path = env.get("path").text()
            conda = dict(_conda_packages(env.get("conda_meta").strs()))
            for name in ("cudatoolkit", "cuda-toolkit", "cuda-cudart"):
                if name in conda:
                    yield CudaToolkit(
                        version=conda[name],
                        path=path,
                        install_method="conda",
                        version_source="conda-meta",
                        packages=(f"{name}={conda[name]}",),
                        env=path,
                    )
                    break
            for dist in self._dists(env):
                if re.fullmatch(r"nvidia-cuda-runtime(-cu\d+)?", dist.key):
                    yield CudaToolkit(
                        version=dist.version,
                        path=self._wheel_dir(dist.site, "libcudart"),
                        install_method="pip",
                        version_source="wheel",
                        packages=(f"{dist.name}={dist.version}",),
                        env=path,
                    )

    def _wheel_dir(self, site: str, lib: str) -> str:
        for d in self.lib_dirs:
            if d.real.startswith(site + "/nvidia/") and any(name.startswith(lib) for name, _ in d.files):
                return posixpath.dirname(d.real)
        return site + "/nvidia"

    # --- cuDNN ---------------------------------------------------------------------------------

    def _cudnn(self) -> list[CudnnInstall]:
        headers_by_prefix: dict[str, list[tuple[_Header, tuple[int, ...]]]] = {}
        for header in self.headers:
            version = _header_version(header.defines)
            if version is None:
                continue  # cuDNN >= 8's cudnn.h only includes cudnn_version.h
            prefix = _prefix(posixpath.dirname(header.real))
            headers_by_prefix.setdefault(prefix, []).append((header, version))
        noted: set[str] = set()
        for prefix, found in headers_by_prefix.items():
            # Prefer cudnn_version.h, then cudnn_version_v9.h: a cudnn.h that still defines a version
            # beside them is a leftover. One copy may ship the same header under two names (the
            # nvidia-cudnn wheels hold cudnn_version.h and cudnn_version_v9.h): keep one per version.
            found.sort(key=lambda hv: (_header_rank(hv[0].real), hv[0].real))
            unique: list[tuple[_Header, tuple[int, ...]]] = []
            for header, version in found:
                if all(version != v for _, v in unique):
                    unique.append((header, version))
            headers_by_prefix[prefix] = unique
            first, first_version = unique[0]
            for header, version in unique[1:]:
                if version[0] == first_version[0]:
                    noted.add(header.real)
                    self.note(
                        header.real,
                        f"says cuDNN {_dotted(version)} but {posixpath.basename(first.real)} beside it says"
                        f" {_dotted(first_version)} (a leftover header of an older copy)",
                    )

        used_headers: set[str] = set()
        installs: list[CudnnInstall] = []
        for d in self.lib_dirs:
            prefix = _prefix(d.real)
            for major, libraries, lib_version in _cudnn_groups(d):
                header_entry = next((hv for hv in headers_by_prefix.get(prefix, []) if hv[1][0] == major), None)
                copy_version = lib_version
                header_path = None
                if header_entry is not None:
                    header_path = header_entry[0].real
                    used_headers.add(header_path)
                    copy_version = _dotted(header_entry[1])
                installs.append(self._cudnn_install(copy_version, d.real, header_path, libraries, prefix, major))
        for prefix, found in headers_by_prefix.items():
            for header, version in found:
                if header.real in used_headers:
                    continue
                if header.real not in noted:
                    self.note(
                        header.real,
                        f"a cuDNN {_dotted(version)} header without cuDNN {version[0]} libraries beside it"
                        " (left over from an older copy?)",
                    )
                installs.append(
                    self._cudnn_install(
                        _dotted(version), posixpath.dirname(header.real), header.real, (), prefix, version[0]
                    )
                )
        return installs

    def _cudnn_install(
        self, version: str, path: str, header: str | None, libraries: tuple[str, ...], prefix: str, major: int
    ) -> CudnnInstall:
        method: InstallMethod = "unknown"
        package = None
        in_toolkit = None
        env = None
        headers: tuple[str, ...] = ()
        owner = self._env_owning(path)
        toolkit = next((t for t in self.toolkits if prefix == t.path or path.startswith(t.path + "/")), None)
        if "/site-packages/nvidia/" in path + "/" or "/dist-packages/nvidia/" in path + "/":
            method = "pip"
            env = owner[0] if owner else None
            dist = next((d for d in owner[1] if re.fullmatch(r"nvidia-cudnn(-cu\d+)?", d.key)), None) if owner else None
            if dist is not None:
                package = f"{dist.name}={dist.version}"
                if not header and not version.count("."):
                    version = ".".join(dist.version.split(".")[:3])
        elif owner is not None and owner[2] == "conda":
            method = "conda"
            env = owner[0]
            conda = dict(_conda_packages(owner[3]))
            if "cudnn" in conda:
                package = f"cudnn={conda['cudnn']}"
        elif toolkit is not None:
            method = "tarball"
            in_toolkit = toolkit.path
            include = posixpath.dirname(header) if header else None
            headers = tuple(sorted(h.real for h in self.headers
                                   if include and posixpath.dirname(h.real) == include))
        else:
            deb = _cudnn_package(self.dpkg, major)
            rpm = _cudnn_package(self.rpm, major)
            if deb is not None:
                method, package = "deb", deb
            elif rpm is not None:
                method, package = "rpm", rpm
            else:
                method = "tarball"
        return CudnnInstall(
            version=version,
            path=path,
            install_method=method,
            header=header,
            headers=headers,
            libraries=libraries,
            package=package,
            in_toolkit=in_toolkit,
            env=env,
        )

    def _env_owning(self, path: str) -> tuple[str, list[_Dist], str, list[str]] | None:
        """The env a directory belongs to: the innermost one (a conda env inside the base's envs/)."""
        best: tuple[int, _Node] | None = None
        for env in self.envs_raw:
            env_path = env.get("path").text()
            sites = env.get("site_packages").strs()
            kind = env.get("kind").text()
            inside_site = any(_within(path, s) for s in sites)
            inside_conda = kind == "conda" and _within(path, env_path)
            if (inside_site or inside_conda) and (best is None or len(env_path) > best[0]):
                best = (len(env_path), env)
        if best is None:
            return None
        env = best[1]
        return env.get("path").text(), self._dists(env), env.get("kind").text(), env.get("conda_meta").strs()

    # --- the loader ----------------------------------------------------------------------------

    def _loader(self) -> LoaderConfig:
        def entries(node: _Node) -> tuple[LdPathEntry, ...]:
            return tuple(
                LdPathEntry(
                    path=e.get("path").text(),
                    source=e.get("source").text(),
                    exists=e.get("exists").flag(True),
                )
                for e in node.items()
            )

        return LoaderConfig(
            ld_so_conf=entries(self.doc.get("ld_so_conf")),
            ld_library_path=entries(self.doc.get("ld_library_path")),
            cache=tuple(self.ldcache),
        )

    # --- what the loader can reach, per way of starting Python ---------------------------------

    def _loader_dirs(self) -> tuple[LibDir, ...]:
        result = []
        for node in self.doc.get("libdirs").capped(_MAX_LIBDIRS):
            libs = []
            for lib in node.get("libs").capped(_MAX_LIBS):
                name = lib.get("name").text()
                real = lib.get("real").text()
                libs.append(
                    LibFile(
                        name=name,
                        soname=lib.get("soname").text(),
                        real=real,
                        version=_lib_file_version(posixpath.basename(real) or name),
                        stub=lib.get("stub").flag(),
                    )
                )
            result.append(
                LibDir(
                    path=node.get("path").text(),
                    real=node.get("real").text(),
                    exists=node.get("exists").flag(True),
                    libs=tuple(libs),
                )
            )
        return tuple(result)

    def _launch_envs(self) -> tuple[LaunchEnv, ...]:
        return tuple(
            LaunchEnv(
                name=node.get("name").text(),
                ld_library_path=tuple(e.text() for e in node.get("ld_library_path").capped(_MAX_ENTRIES)),
                source=node.get("source").text(),
                env=node.get("env").opt_str(),
            )
            for node in self.doc.get("launch_envs").capped(_MAX_LAUNCH_ENVS)
        )

    def _elf_deps(self, env: _Node) -> dict[tuple[str, str], list[ElfDeps]]:
        """(site, framework) -> the dynamic sections of that framework's objects in that site."""
        deps: dict[tuple[str, str], list[ElfDeps]] = {}
        for node in env.get("elf").capped(64):
            path = node.get("path").text()
            error = node.get("error").opt_str()
            key = (node.get("site").text(), node.get("framework").text())
            if error is not None:
                self.note(path, f"shared object not read: {error}")
                continue
            deps.setdefault(key, []).append(
                ElfDeps(
                    path=path,
                    needed=tuple(e.text() for e in node.get("needed").capped(_MAX_ENTRIES)),
                    rpath=tuple(e.text() for e in node.get("rpath").capped(_MAX_ENTRIES)),
                    runpath=tuple(e.text() for e in node.get("runpath").capped(_MAX_ENTRIES)),
                )
            )
        return deps

    # --- Python envs and frameworks ------------------------------------------------------------

    def _dists(self, env: _Node) -> list[_Dist]:
        dists = []
        for node in env.get("dists").items():
            directory = node.get("dir").text()
            stem = re.sub(r"\.(dist|egg)-info$", "", directory)
            dir_name, _, dir_version = stem.partition("-")
            name = node.get("name").opt_str() or dir_name
            version = node.get("version").opt_str() or dir_version.split("-")[0]
            record = node.get("record")
            hashes = tuple((key, record.get(key).opt_str()) for key in (record.expect_dict() if record.raw else {}))
            dists.append(_Dist(node.get("site").text(), directory, name, version, hashes))
        return dists

    def _envs(self) -> list[PythonEnv]:
        running_node = self.doc.get("running_python")
        running = (running_node.get("real").opt_str(), running_node.get("version").opt_str())
        result = []
        for env in self.envs_raw:
            kind = env.get("kind").text()
            if kind not in ("system", "venv", "conda", "user"):
                raise env.get("kind").fail(f"{kind!r} is not one of system, venv, conda, user")
            path = env.get("path").text()
            python = env.get("python").opt_str() or ""
            dists = self._dists(env)
            conda = _conda_packages(env.get("conda_meta").strs())
            files = {}
            for f in env.get("files").items():
                files[(f.get("site").text(), f.get("path").text())] = _File(
                    f.get("text").text(), f.get("sha256").opt_str()
                )
            result.append(
                PythonEnv(
                    path=path,
                    kind=kind,  # type: ignore[arg-type]  # checked above
                    python=python,
                    python_version=_python_version(env, python, conda, running),
                    frameworks=tuple(self._frameworks(path, dists, files, conda, self._elf_deps(env))),
                    nvidia_wheels=tuple(sorted((d.name, d.version) for d in dists if d.key.startswith("nvidia-"))),
                    conda_packages=tuple(sorted(conda)),
                    owner=_user_name(env.get("owner")),
                )
            )
        return result

    def _unread(self) -> Iterator[str]:
        """Absolute directories the probe could not list (at most 1000, each once)."""
        seen: set[str] = set()
        for item in self.doc.get("unread").capped(1000):
            path = item.text()
            if not path.startswith("/"):
                raise item.fail(f"{path!r} is not an absolute path")
            if path not in seen:
                seen.add(path)
                yield path

    def _frameworks(
        self,
        env_path: str,
        dists: list[_Dist],
        files: dict[tuple[str, str], _File],
        conda: list[tuple[str, str]],
        elf: dict[tuple[str, str], list[ElfDeps]] | None = None,
    ) -> Iterator[Framework]:
        elf = elf or {}
        by_key = {d.key: d for d in dists}
        wheel_cudnn = next((d for d in dists if re.fullmatch(r"nvidia-cudnn(-cu\d+)?", d.key)), None)
        env_cudnn = ".".join(wheel_cudnn.version.split(".")[:3]) if wheel_cudnn else dict(conda).get("cudnn")
        tf_dists = [by_key[name] for name in _TF_DISTS if name in by_key]
        for dist in tf_dists:
            name = dist.key
            text, rel = self._own_file(
                dist,
                files,
                ("tensorflow/python/platform/build_info.py", "tensorflow_core/python/platform/build_info.py"),
                others=[d for d in tf_dists if d.site == dist.site and d is not dist],
            )
            info = parse_tf_build_info(text) if text is not None else None
            if text is not None and info is None:
                self.note(f"{dist.site}/{rel}", "cannot read TensorFlow's build facts from this file")
            info = info or TfBuildInfo()
            yield Framework(
                name=name,
                version=dist.version,
                cuda_build=info.cuda_version,
                cudnn_build=info.cudnn_version,
                is_cuda_build=info.is_cuda_build,
                build_info_source=f"{dist.site}/{rel}" if info != TfBuildInfo() else "",
                elf=tuple(elf.get((dist.site, "tensorflow"), ())),
            )
        torch = by_key.get("torch")
        if torch is not None:
            text, rel = self._own_file(torch, files, ("torch/version.py",), others=[])
            built = parse_torch_version(text) if text is not None else None
            is_cuda = None if built is None else built.cuda is not None
            # version.py says 2.11.0+cu130 where the PyPI wheel's metadata says 2.11.0: keep the longer.
            same = built is not None and built.version.split("+")[0] == torch.version.split("+")[0]
            yield Framework(
                name="torch",
                version=built.version if built is not None and same else torch.version,
                cuda_build=built.cuda if built is not None else None,
                cudnn_build=env_cudnn if is_cuda else None,
                is_cuda_build=is_cuda,
                build_info_source=f"{torch.site}/{rel}" if built is not None else "",
                elf=tuple(elf.get((torch.site, "torch"), ())),
            )
        jax = by_key.get("jax") or by_key.get("jaxlib")
        if jax is not None:
            yield self._jax(jax, dists, env_cudnn)

    def _own_file(
        self, dist: _Dist, files: dict[tuple[str, str], _File], candidates: tuple[str, ...], others: list[_Dist]
    ) -> tuple[str | None, str]:
        """The text of the dist's build file, unless its RECORD proves the file on disk is another's.

        tensorflow and tensorflow-gpu installed side by side write the same tensorflow/ directory: the
        files on disk are whichever came last. RECORD hashes tell whose; without them, say so.
        """
        found, rel = _first_file(files, dist.site, candidates)
        if found is None:
            return None, rel
        recorded = dict(dist.record).get(rel)
        where = f"{dist.site}/{rel}"
        if recorded and found.sha256 and recorded != found.sha256:
            self.note(
                where,
                f"not the file {dist.name} {dist.version} installed (its RECORD has another hash):"
                f" another distribution overwrote it; {dist.name}'s own build facts are unknown",
            )
            return None, rel
        if others and not (recorded and found.sha256) and where not in self.shared_noted:
            self.shared_noted.add(where)
            names = " and ".join(f"{d.name} {d.version}" for d in [dist, *others])
            self.note(where, f"{names} share this file: the build facts are those of the copy on disk")
        return found.text, rel

    def _jax(self, jax: _Dist, dists: list[_Dist], env_cudnn: str | None) -> Framework:
        plugins = [d for d in dists if re.fullmatch(r"jax-cuda\d+-(plugin|pjrt)", d.key)]
        plugin = next((d for d in plugins if d.key.endswith("-plugin")), plugins[0] if plugins else None)
        jaxlib = next((d for d in dists if d.key == "jaxlib"), None)
        if plugin is not None:
            cuda_major = re.sub(r"\D", "", plugin.key.split("-")[1])
            return Framework(
                name="jax",
                version=jax.version,
                cuda_build=cuda_major,
                cudnn_build=env_cudnn,
                is_cuda_build=True,
                build_info_source=f"{plugin.site}/{plugin.dir}",
            )
        if jaxlib is not None:
            # Before the plugins, CUDA jaxlib wheels said it in the local version: 0.4.7+cuda11.cudnn86.
            match = re.search(r"\+cuda(\d+)(?:\.cudnn(\d)(\d+))?", jaxlib.version)
            if match:
                cudnn = f"{match.group(2)}.{match.group(3)}" if match.group(2) else None
                return Framework(
                    name="jax",
                    version=jax.version,
                    cuda_build=match.group(1),
                    cudnn_build=cudnn,
                    is_cuda_build=True,
                    build_info_source=f"{jaxlib.site}/{jaxlib.dir}",
                )
            return Framework(
                name="jax",
                version=jax.version,
                is_cuda_build=False,
                build_info_source=f"{jaxlib.site}/{jaxlib.dir}",
            )
        return Framework(name="jax", version=jax.version)


# --- small pure readers (public for tests and for other layers that read the same files) --------


@dataclass(frozen=True)
class TfBuildInfo:
    """What TensorFlow's build_info.py says about the CUDA and cuDNN it was built for."""

    cuda_version: str | None = None
    cudnn_version: str | None = None
    is_cuda_build: bool | None = None


def parse_tf_build_info(text: str) -> TfBuildInfo | None:
    """TensorFlow's build_info.py as data, read with `ast` (never executed).

    2.3+ write `build_info = {...}` or `collections.OrderedDict([...])` with `cuda_version` ('11.2',
    or '64_112' on Windows) and `cudnn_version` ('8', '64_8'); 1.13-2.2 write module constants
    `is_cuda_build`, `cuda_version_number`, `cudnn_version_number`; before that only `is_cuda_build`.
    Returns None when the file holds none of these.
    """
    values = _module_literals(text)
    build_info = values.get("build_info")
    if isinstance(build_info, dict):
        is_cuda, cuda, cudnn = (build_info.get(k) for k in ("is_cuda_build", "cuda_version", "cudnn_version"))
    else:
        is_cuda, cuda, cudnn = (values.get(k) for k in ("is_cuda_build", "cuda_version_number", "cudnn_version_number"))
    info = TfBuildInfo(
        cuda_version=_tf_windows_version(cuda, cuda_style=True) if isinstance(cuda, str) and cuda else None,
        cudnn_version=_tf_windows_version(cudnn, cuda_style=False) if isinstance(cudnn, str) and cudnn else None,
        is_cuda_build=is_cuda if isinstance(is_cuda, bool) else None,
    )
    if info.is_cuda_build is None and info.cuda_version is not None:
        info = TfBuildInfo(info.cuda_version, info.cudnn_version, True)
    if info == TfBuildInfo():
        return None
    return info


def _tf_windows_version(value: str, *, cuda_style: bool) -> str:
    # Windows builds name the DLL suffix: '64_112' is cudart64_112.dll, CUDA 11.2; '64_8' is cuDNN 8.
    match = re.fullmatch(r"64_([0-9]{1,6})", value)
    if not match:
        return value
    digits = match.group(1)
    if cuda_style and len(digits) >= 2:
        return f"{int(digits[:-1])}.{digits[-1]}"
    return digits


@dataclass(frozen=True)
class TorchVersion:
    """torch/version.py: `__version__`, and `cuda` (None for CPU and ROCm builds)."""

    version: str
    cuda: str | None = None
    hip: str | None = None
    git_version: str | None = None


def parse_torch_version(text: str) -> TorchVersion | None:
    """torch/version.py as data, read with `ast` (never executed); None without a `__version__`."""
    values = _module_literals(text)
    version = values.get("__version__")
    if not isinstance(version, str):
        return None

    def text_value(key: str) -> str | None:
        value = values.get(key)
        return value if isinstance(value, str) else None

    return TorchVersion(version, text_value("cuda"), text_value("hip"), text_value("git_version"))


# CPython 3.11's ast is not safe to use from several threads at once (probe_fleet parses hosts in a
# thread pool): "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905) was seen
# in the lab. One parse at a time: the files are a few KiB.
_AST_LOCK = threading.Lock()


def _module_literals(text: str) -> dict[str, Any]:
    """Top-level `NAME = <literal>` (and annotated) assignments of a Python file, never executed."""
    if len(text) > _SOURCE_CAP:
        return {}
    with _AST_LOCK:
        return _module_literals_locked(text)


def _module_literals_locked(text: str) -> dict[str, Any]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError, SystemError):
        return {}
    values: dict[str, Any] = {}
    for stmt in tree.body:
        target: ast.expr | None
        value: ast.expr | None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign):
            target, value = stmt.target, stmt.value
        else:
            continue
        if not isinstance(target, ast.Name) or value is None:
            continue
        literal = _literal(value)
        if literal is not _NOT_LITERAL:
            values[target.id] = literal
    return values


_NOT_LITERAL = object()


def _literal(node: ast.expr) -> Any:
    # `collections.OrderedDict([(k, v), ...])` and `dict(...)` wrap a literal list of pairs.
    if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("OrderedDict", "dict"):
            pairs = _literal(node.args[0])
            if isinstance(pairs, list | tuple) and all(isinstance(p, list | tuple) and len(p) == 2 for p in pairs):
                return {k: v for k, v in pairs if isinstance(k, str)}
            if isinstance(pairs, dict):
                return pairs
        return _NOT_LITERAL
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return _NOT_LITERAL


def _smi_gpu(index: int, row: dict[str, str | None], pci: dict[str, str]) -> Gpu:
    memory = row.get("memory.total")
    bus = row.get("pci.bus_id") or ""
    return Gpu(
        index=index,
        name=row.get("name") or "",
        uuid=row.get("uuid") or "",
        memory_mib=int(memory) if memory else None,
        compute_capability=row.get("compute_cap"),
        pci_bus_id=bus,
        source="nvidia-smi",
        pci_device_id=pci.get(bus.lower()[-12:], ""),
    )


_LIB_FILE_VERSION_RE = re.compile(r"\.so\.([0-9]{1,9}(?:\.[0-9]{1,9}){0,5})$")


def _lib_file_version(name: str) -> str | None:
    """The version in a library file's name: `libcudart.so.11.2.152` -> "11.2.152", `libcuda.so` -> None."""
    match = _LIB_FILE_VERSION_RE.search(name)
    return match.group(1) if match else None


def _parse_os_release(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or not re.fullmatch(r"[A-Z0-9_]+", key):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = re.sub(r'\\([\\$"`])', r"\1", value[1:-1])
        fields[key] = value
    return fields


def _proc_version(text: str | None) -> str | None:
    if not text:
        return None
    match = _PROC_RE.search(text)
    return match.group(1) if match else None


def _cuda_from_int(value: int | None) -> str | None:
    if value is None or value <= 0:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def _nothing_installed(nvml_error: str, kernel: str | None, userspace: str | None) -> bool:
    return "Library Not Found" in nvml_error and kernel is None and userspace is None


def _version_of_link(d: _LibDir, name: str, lib: str) -> str | None:
    files = dict(d.files)
    target = files.get(name)
    for _ in range(8):
        if target is None:
            return None
        match = _LIB_VERSION_RE.match(posixpath.basename(target))
        if match and match.group(1) == lib:
            return match.group(2)
        target = files.get(posixpath.basename(target))
    return None


def _toolkit_version(node: _Node, path: str, dpkg: dict[str, str]) -> tuple[str, str]:
    text = node.get("version_json").opt_str()
    if text:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # ValueError: also an integer of thousands of digits
            data = None
        cuda = data.get("cuda") if isinstance(data, dict) else None
        version = cuda.get("version") if isinstance(cuda, dict) else None
        if isinstance(version, str) and version:
            return version, "version.json"
    text = node.get("version_txt").opt_str()
    if text:
        match = _VERSION_TXT_RE.search(text)
        if match:
            return match.group(1), "version.txt"
    nvcc = _Command.read(node.get("nvcc"))
    if nvcc is not None and nvcc.ok:
        match = _NVCC_RE.search(nvcc.stdout)
        if match:
            return match.group(2), "nvcc"
    # An nvcc the script would not run (another user could have planted it): the line it prints,
    # read from its bytes as data.
    match = _NVCC_RE.search(node.get("nvcc_version_line").text())
    if match:
        return match.group(2), "nvcc"
    match = _TOOLKIT_DIR_RE.search(path)
    if match:
        series = match.group(1).replace(".", "-")
        for name in (f"cuda-cudart-{series}", f"cuda-toolkit-{series}", f"cuda-runtime-{series}"):
            if name in dpkg:
                return dpkg[name].split("-")[0], "dpkg"
        return match.group(1), "path"
    return "", ""


def _toolkit_packages(version: str, packages: dict[str, str]) -> tuple[str, ...]:
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match:
        return ()
    suffix = f"-{match.group(1)}-{match.group(2)}"
    return tuple(
        f"{name}={packages[name]}" for name in sorted(packages) if name.startswith("cuda-") and name.endswith(suffix)
    )


def _cudnn_package(packages: dict[str, str], major: int) -> str | None:
    for name in sorted(packages):
        if re.fullmatch(rf"(lib)?cudnn{major}(-cuda-\d+)?", name):
            return f"{name}={packages[name]}"
    return None


def _within(path: str, directory: str) -> bool:
    directory = directory.rstrip("/")
    return path == directory or path.startswith(directory + "/")


def _header_version(defines: Iterable[str]) -> tuple[int, ...] | None:
    found: dict[str, int] = {}
    for line in defines:
        match = re.match(r"\s*#\s*define\s+CUDNN_(MAJOR|MINOR|PATCHLEVEL)\s+([0-9]{1,9})\b", line)
        if match:
            found[match.group(1)] = int(match.group(2))
    if "MAJOR" not in found:
        return None
    return (found["MAJOR"], found.get("MINOR", 0), found.get("PATCHLEVEL", 0))


def _header_rank(path: str) -> int:
    name = posixpath.basename(path)
    if name == "cudnn_version.h":
        return 0
    return 1 if name.startswith("cudnn_version") else 2


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in version)


def _prefix(directory: str) -> str:
    """The install prefix a lib or include dir belongs to: /usr for /usr/lib/x86_64-linux-gnu and
    /usr/include, the toolkit for <toolkit>/targets/x86_64-linux/lib, the env for <env>/lib."""
    d = directory.rstrip("/")
    match = re.fullmatch(r"(.*)/targets/[^/]+/(lib|lib64|include)", d)
    if match:
        return match.group(1)
    match = re.fullmatch(r"(.*?)/(lib64|lib|include)(/[^/]+-linux-gnu[^/]*)?", d)
    if match:
        return match.group(1) or "/usr"  # /lib and /usr/lib: one prefix since usrmerge
    return d


def _cudnn_groups(d: _LibDir) -> Iterator[tuple[int, tuple[str, ...], str]]:
    """cuDNN libraries of one directory, one group per major version: (major, names, version)."""
    files = dict(d.files)
    by_major: dict[int, list[str]] = {}
    versions: dict[int, str] = {}
    unversioned = []
    for name, _link in d.files:
        if not name.startswith("libcudnn"):
            continue
        match = _CUDNN_LIB_RE.match(name)
        if not match:
            unversioned.append(name)
            continue
        major = int(match.group(1))
        by_major.setdefault(major, []).append(name)
        full = match.group(1) + match.group(2)
        main = _CUDNN_MAIN_RE.match(name)
        if full.count(".") >= 2:
            if main:
                versions[major] = full
            else:
                versions.setdefault(major, full)
    for name in unversioned:
        target = files.get(name) or ""
        match = _CUDNN_LIB_RE.match(posixpath.basename(target))
        if match and int(match.group(1)) in by_major:
            by_major[int(match.group(1))].append(name)
        elif by_major:
            by_major[max(by_major)].append(name)
    for major in sorted(by_major):
        yield major, tuple(sorted(by_major[major])), versions.get(major, str(major))


def _conda_packages(files: Iterable[str]) -> list[tuple[str, str]]:
    """(name, version) from conda-meta file names: `cudatoolkit-11.2.2-hbe64b41_10.json`."""
    packages = []
    for file in files:
        stem = file[:-5] if file.endswith(".json") else file
        parts = stem.rsplit("-", 2)
        if len(parts) == 3 and parts[0]:
            packages.append((parts[0], parts[1]))
    return packages


def _first_file(
    files: dict[tuple[str, str], _File], site: str, candidates: tuple[str, ...]
) -> tuple[_File | None, str]:
    for rel in candidates:
        if (site, rel) in files:
            return files[(site, rel)], rel
    return None, candidates[0]


def _python_version(
    env: _Node, python: str, conda: list[tuple[str, str]], running: tuple[str | None, str | None]
) -> str:
    cfg = env.get("pyvenv_cfg").opt_str()
    if cfg:
        for key in ("version", "version_info"):
            match = re.search(rf"^\s*{key}\s*=\s*(\d+\.\d+(?:\.\d+)?)", cfg, re.M)
            if match:
                return match.group(1)
    for name, version in conda:
        if name == "python":
            return version
    real = env.get("python_real").opt_str() or python
    running_real, running_version = running
    if real and real == running_real and running_version:
        return running_version  # the interpreter that ran the probe said it itself
    match = re.search(r"python(\d+\.\d+)$", real)
    if match:
        return match.group(1)
    for site in env.get("site_packages").strs():
        match = re.search(r"/python(\d+\.\d+)/", site)
        if match:
            return match.group(1)
    return ""
