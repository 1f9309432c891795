"""What every rung judge shares: the evidence document's accessors, version and path helpers, and the
Context of one host's judgement (the document, the target, its requirements, the notes gathered)."""

from __future__ import annotations

import contextlib
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from remediator.errors import UnknownVersionError
from remediator.matrix import Matrix, Requirements, Target
from remediator.plan import DEFAULT_VENV_ROOT
from remediator.verify.model import Rung, RungName

_FW_LABEL = {"pytorch": "torch", "tensorflow": "tensorflow"}



def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _i(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _f(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def cuda_version_text(value: int | None) -> str | None:
    """13000 -> 13.0, 12080 -> 12.8 (cudaRuntimeGetVersion, cuDriverGetVersion, NVML)."""
    if value is None or value <= 0:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def cudnn_version_text(value: int | None) -> str | None:
    """91900 -> 9.19.0 (cuDNN 9: major*10000), 8907 -> 8.9.7 (cuDNN 8 and older: major*1000)."""
    if value is None or value <= 0:
        return None
    if value >= 90000:
        return f"{value // 10000}.{(value % 10000) // 100}.{value % 100}"
    return f"{value // 1000}.{(value % 1000) // 100}.{value % 100}"


_SO_VERSION = re.compile(r"\.so\.([0-9][0-9.]*)$")
_LIB_KIND = re.compile(r"^lib(cudart|cudnn\w*|cublas\w*|cuda)\.so")
_KERNEL_MODULE = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+\.\d+(?:\.\d+)?)")
_MISSING_LIB = re.compile(r"(lib[\w.+-]+\.so[\w.]*)")
_TF_DLOPEN = re.compile(r"Could not load dynamic library '([^']+)'")


def file_version(path: str) -> str | None:
    match = _SO_VERSION.search(posixpath.basename(path))
    return match.group(1).rstrip(".") if match else None


def kernel_module_version(proc_version: str | None) -> str | None:
    match = _KERNEL_MODULE.search(proc_version or "")
    return match.group(1) if match else None


def bus_key(text: str | None) -> str | None:
    """NVML writes 00000000:3B:00.0, CUDA and sysfs 0000:3b:00.0."""
    if not text:
        return None
    parts = text.strip().lower().split(":")
    if len(parts) == 3:
        parts[0] = parts[0][-4:].rjust(4, "0")
    return ":".join(parts)


def _within(path: str, directory: str) -> bool:
    d = posixpath.normpath(directory)
    return path == d or path.startswith(d.rstrip("/") + "/")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


@dataclass
class Context:
    """Everything the rung judges share: the document, the target, its requirements."""

    doc: dict[str, Any]
    target: Target | None
    req: Requirements | None
    matrix: Matrix
    notes: list[str] = field(default_factory=list)

    @property
    def fw_label(self) -> str:
        return _FW_LABEL.get(self.target.framework, self.target.framework) if self.target else "the framework"

    @property
    def python(self) -> str:
        return _s(_d(self.doc.get("python")).get("executable")) or "the check's python"

    @property
    def env(self) -> dict[str, Any]:
        return _d(self.doc.get("env"))

    @property
    def nvml(self) -> dict[str, Any]:
        return _d(_d(self.doc.get("driver")).get("nvml"))

    @property
    def nvml_gpus(self) -> list[dict[str, Any]]:
        return [g for g in _l(self.nvml.get("gpus")) if isinstance(g, dict)]

    @property
    def driver_version(self) -> str | None:
        return _s(self.nvml.get("driver_version")) or kernel_module_version(
            _s(_d(self.doc.get("driver")).get("proc_version")))

    def plan_hint(self) -> str:
        return f"`remediate plan --target {self.target}` shows the steps" if self.target else \
            "`remediate plan --target FRAMEWORK==VERSION` shows the steps"



# --- rung 2: the CUDA driver API ------------------------------------------------------------------


NO_DEVICE = "no device: no NVIDIA GPU on this host's PCI bus, nothing to check"


def _skip(number: int, name: RungName, reason: str) -> Rung:
    return Rung(number, name, "skip", reason)


_SKIP_REASONS = {
    "driver": "driver rung failed",
    "cuda": "CUDA driver API rung failed",
    "no_target": "no target framework (give --target FRAMEWORK==VERSION, or set remediate_target)",
}

def venv_python(target: Target, venv_root: str = DEFAULT_VENV_ROOT, matrix: Matrix | None = None) -> str:
    """The interpreter of the target's managed venv, as apply creates it (<root>/<framework>-<version>)."""
    version = target.version
    if matrix is not None:
        with contextlib.suppress(UnknownVersionError):  # an unknown version keeps the text given
            version = matrix.requirements_for(target).version
    return posixpath.join(venv_root.rstrip("/") or "/", f"{target.framework}-{version}", "bin", "python")
