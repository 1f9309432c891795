"""What verify reports: one Rung per step of the ladder, the GPUs, the libraries loaded, per host.

Pure data with `to_dict` for `remediate verify --format json`; the judges (remediator.verify.judge and
remediator.verify.rungs) build them from the check script's evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from remediator.errors import RemediatorError

#: The version of the document remote.py prints.
REMOTE_SCHEMA_VERSION = 1
#: The version of `remediate verify --format json`.
SCHEMA_VERSION = 1

#: Normwise relative error ||C - C_ref||_F / ||C_ref||_F allowed at rung 4. float32 with TF32 off
#: gives about 1e-6 for n = 4096; TF32 (NVIDIA_TF32_OVERRIDE=1) about 5e-4; a wrong kernel,
#: corrupt memory or a bad library give 1e-2 and more.
REL_TOLERANCE = 1e-3


RungName = Literal["driver", "cuda", "runtime", "matmul"]
RungStatus = Literal["pass", "fail", "skip"]

RUNGS: tuple[tuple[int, RungName, str], ...] = (
    (1, "driver", "driver: kernel module, NVML, device nodes, GPU count"),
    (2, "cuda", "CUDA driver API: libcuda initialises and sees the GPUs"),
    (3, "runtime", "framework runtime: CUDA runtime, cuDNN and cuBLAS load and fit the build"),
    (4, "matmul", "framework compute: every GPU runs a float32 matmul checked against float64 NumPy"),
)
_TITLES = {name: title for _, name, title in RUNGS}
_NUMBERS = {name: number for number, name, _ in RUNGS}


class VerifyError(RemediatorError):
    """The check could not run on a host (no interpreter, the script failed, unreadable output)."""

    def __init__(self, message: str, *, host: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.host = host


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rung:
    """One rung's outcome: what was seen (summary), and for a failure why (cause) and what to do (fix)."""

    number: int
    name: RungName
    status: RungStatus
    summary: str
    cause: str | None = None
    fix: str | None = None
    evidence: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return _TITLES[self.name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rung": self.number,
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "summary": self.summary,
            "cause": self.cause,
            "fix": self.fix,
            "evidence": dict(self.evidence),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Library:
    """A CUDA library the framework had mapped after its GPU op, with the versions it reports."""

    kind: str  # cudart, cudnn, cublas, cuda (and cudnn_ops, cublasLt, ... for sub-libraries)
    path: str
    version: str | None  # what the library reports through its API, else its file name's version
    file_version: str | None
    origin: str  # "env" (this interpreter's site-packages) or "system"
    built_for_cuda: str | None = None  # cuDNN: the CUDA runtime it was built for

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "version": self.version,
            "file_version": self.file_version,
            "origin": self.origin,
            "built_for_cuda": self.built_for_cuda,
        }


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    name: str | None
    used_mib: int | None


@dataclass(frozen=True)
class Matmul:
    """Rung 4 on one GPU: status, time per matmul (CUDA-synchronised), throughput and error."""

    status: RungStatus
    seconds: float | None = None
    tflops: float | None = None
    rel_error: float | None = None
    max_abs_error: float | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "seconds": self.seconds,
            "tflops": None if self.tflops is None else round(self.tflops, 3),
            "rel_error": self.rel_error,
            "max_abs_error": self.max_abs_error,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class GpuReport:
    """One GPU as NVML and the CUDA driver API see it, with its matmul result."""

    index: int  # NVML's index (nvidia-smi's)
    name: str | None
    uuid: str | None
    pci_bus_id: str | None
    memory_mib: int | None
    cuda_ordinal: int | None  # None: hidden from CUDA (CUDA_VISIBLE_DEVICES) or not seen by it
    processes: tuple[GpuProcess, ...] = ()
    matmul: Matmul | None = None

    @property
    def busy(self) -> bool:
        return bool(self.processes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "pci_bus_id": self.pci_bus_id,
            "memory_mib": self.memory_mib,
            "cuda_ordinal": self.cuda_ordinal,
            "busy": self.busy,
            "processes": [{"pid": p.pid, "name": p.name, "used_mib": p.used_mib} for p in self.processes],
            "matmul": self.matmul.to_dict() if self.matmul else None,
        }


@dataclass(frozen=True)
class HostVerification:
    """The ladder of one host; `report` is the document the remote script printed, kept as evidence."""

    host: str
    target: str | None
    python: str | None
    python_version: str | None
    rungs: tuple[Rung, ...]
    gpus: tuple[GpuReport, ...] = ()
    libraries: tuple[Library, ...] = ()
    notes: tuple[str, ...] = ()
    duration_s: float | None = None
    report: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    user: str | None = None  # who ran the check on the host (with become: the env's owner)

    @property
    def passed(self) -> bool:
        return not any(r.status == "fail" for r in self.rungs)

    @property
    def first_failure(self) -> Rung | None:
        return next((r for r in self.rungs if r.status == "fail"), None)

    def rung(self, name: RungName) -> Rung:
        return next(r for r in self.rungs if r.name == name)

    @property
    def verdict(self) -> str:
        failed = self.first_failure
        if failed is None:
            skipped = [r for r in self.rungs if r.status == "skip"]
            if skipped:
                return f"pass ({len(skipped)} rung(s) skipped: " + "; ".join(
                    f"{r.name}: {r.summary}" for r in skipped) + ")"
            return "pass: every rung passed"
        return f"fail at rung {failed.number} ({failed.name}): {failed.cause or failed.summary}"

    def to_dict(self, *, with_report: bool = True) -> dict[str, Any]:
        failed = self.first_failure
        out: dict[str, Any] = {
            "host": self.host,
            "target": self.target,
            "python": self.python,
            "python_version": self.python_version,
            "user": self.user,
            "passed": self.passed,
            "verdict": self.verdict,
            "first_failure": None if failed is None else {
                "rung": failed.number, "name": failed.name, "summary": failed.summary,
                "cause": failed.cause, "fix": failed.fix,
            },
            "rungs": [r.to_dict() for r in self.rungs],
            "gpus": [g.to_dict() for g in self.gpus],
            "libraries": [lib.to_dict() for lib in self.libraries],
            "notes": list(self.notes),
            "duration_s": self.duration_s,
        }
        if with_report:
            out["report"] = dict(self.report)
        return out


