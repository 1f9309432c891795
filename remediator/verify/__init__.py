"""The verify step: climb the GPU ladder on a host and judge each rung, naming the first that fails.

The last step of the flow (after apply, or on its own). One round trip per host sends
`remote.py` to the interpreter that should run the target (the managed venv by default) and reads
back one JSON document of evidence; `judge` is a pure function of that document, the target and
the matrix, so every oddity a real GPU showed is a recorded document under tests/fixtures/verify.

The rungs, each pass / fail / skip-with-reason:

1. driver: kernel module loaded, NVML answers, device nodes present, NVML's GPU count equals PCI's;
2. cuda: the CUDA driver API (libcuda, through ctypes) initialises and sees the GPUs;
3. runtime: the framework imports, runs a small GPU op, and the CUDA runtime / cuDNN / cuBLAS it
   actually loaded (read from /proc/self/maps) fit its build and the matrix's requirements;
4. matmul: the framework sees every GPU and multiplies float32 matrices on each one, compared with a
   float64 NumPy reference (relative error at most `REL_TOLERANCE`), with the time and TFLOP/s.

GPUs that other processes compute on are reported and skipped at rung 4 unless `force`. On a host with
no NVIDIA GPU every rung is a "no device" skip; with a TensorFlow target, rungs 3 and 4 still say what
TensorFlow saw (no GPU, the CUDA libraries it would load) and that it computes on the CPU, as skips that
never count as a GPU pass.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.resources
import json
import posixpath
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from remediator.errors import RemediatorError, UnknownVersionError
from remediator.matrix import Matrix, Requirements, Target
from remediator.plan import DEFAULT_VENV_ROOT
from remediator.probe import fill_placeholder, pynvml_blob
from remediator.targets import infer_targets
from remediator.transport.base import Transport
from remediator.transport.become import Become, check_become_failure
from remediator.versions import try_version

if TYPE_CHECKING:
    from remediator.facts import HostFacts
    from remediator.fleet import FleetResult, HostResult
    from remediator.inventory import InventoryHost

#: The version of the document remote.py prints.
REMOTE_SCHEMA_VERSION = 1
#: The version of `remediate verify --format json`.
SCHEMA_VERSION = 1

#: Normwise relative error ||C - C_ref||_F / ||C_ref||_F allowed at rung 4. float32 with TF32 off
#: gives about 1e-6 for n = 4096; TF32 (NVIDIA_TF32_OVERRIDE=1) about 5e-4; a wrong kernel,
#: corrupt memory or a bad library give 1e-2 and more.
REL_TOLERANCE = 1e-3

DEFAULT_TIMEOUT = 300.0
DEFAULT_SIZE = 4096
NVML_TIMEOUT = 20.0
CUDA_TIMEOUT = 30.0

#: Runs the script from stdin with the first candidate interpreter that exists (a path that is
#: executable, or a name on PATH); the candidates are positional arguments, never part of the script.
VERIFY_ARGV: tuple[str, ...] = (
    "sh",
    "-c",
    'for p in "$@"; do case "$p" in */*) [ -x "$p" ] && exec "$p" - ;; '
    '*) command -v "$p" >/dev/null 2>&1 && exec "$p" - ;; esac; done; '
    'echo "remediator: no python: $*" >&2; exit 127',
    "remediator-verify",
)
NO_PYTHON_MARKER = "remediator: no python"
TOO_OLD_MARKER = "remediator: python3 too old"

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
_FW_LABEL = {"pytorch": "torch", "tensorflow": "tensorflow"}

_CUDA_ERRORS = {
    2: "CUDA_ERROR_OUT_OF_MEMORY",
    3: "CUDA_ERROR_NOT_INITIALIZED",
    35: "CUDA_ERROR_INSUFFICIENT_DRIVER",
    46: "CUDA_ERROR_DEVICES_UNAVAILABLE",
    100: "CUDA_ERROR_NO_DEVICE",
    101: "CUDA_ERROR_INVALID_DEVICE",
    304: "CUDA_ERROR_OPERATING_SYSTEM",
    803: "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
    804: "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
    999: "CUDA_ERROR_UNKNOWN",
}
_SIGNALS = {4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM"}


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


# --- the remote side ----------------------------------------------------------------------------


def remote_script_source() -> str:
    """The text of the remote script as shipped in the package."""
    return (importlib.resources.files("remediator").joinpath("ansible_collections/remediator/gpu/roles/gpu_check/files")
            .joinpath("gpu_check.py").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class CheckOptions:
    """What the remote script is asked to do; timeouts in seconds."""

    framework: str | None = None
    framework_version: str | None = None
    force: bool = False
    size: int = DEFAULT_SIZE
    reference_rows: int = 256
    repeats: int = 10
    timeout: float = DEFAULT_TIMEOUT

    def payload_options(self) -> dict[str, Any]:
        framework_timeout = max(30.0, self.timeout - NVML_TIMEOUT - CUDA_TIMEOUT - 10.0)
        return {
            "mode": "ladder",
            "framework": self.framework,
            "framework_version": self.framework_version,
            "force": bool(self.force),
            "size": int(self.size),
            "reference_rows": int(self.reference_rows),
            "repeats": int(self.repeats),
            "nvml_timeout": NVML_TIMEOUT,
            "cuda_timeout": CUDA_TIMEOUT,
            "framework_timeout": framework_timeout,
        }

    @property
    def transport_timeout(self) -> float:
        """The whole round trip: every bounded step of the script, plus the time to start it."""
        return max(self.timeout, 30.0 + NVML_TIMEOUT + CUDA_TIMEOUT + 10.0) + 30.0


def build_payload(options: CheckOptions, *, nvml: bool = True) -> bytes:
    """The bytes sent to `python -`: the script with its options, pynvml and its own source filled in.

    The script needs its own source to start the child that runs rungs 3 and 4 (stdin is spent).
    """
    source = remote_script_source()
    own = base64.b64encode(zlib.compress(source.encode("utf-8"), 9)).decode("ascii")
    blob = pynvml_blob() if nvml else None
    # repr() of a str is a Python string literal: the options travel as data, never as code.
    text = fill_placeholder(source, "PYNVML_SOURCE_Z = None\n", f"PYNVML_SOURCE_Z = {blob!r}\n")
    text = fill_placeholder(text, "SCRIPT_SOURCE_Z = None\n", f"SCRIPT_SOURCE_Z = {own!r}\n")
    text = fill_placeholder(
        text, "PAYLOAD_OPTIONS = None\n", f"PAYLOAD_OPTIONS = json.loads({json.dumps(options.payload_options())!r})\n"
    )
    return text.encode("utf-8")


def venv_python(target: Target, venv_root: str = DEFAULT_VENV_ROOT, matrix: Matrix | None = None) -> str:
    """The interpreter of the target's managed venv, as apply creates it (<root>/<framework>-<version>)."""
    version = target.version
    if matrix is not None:
        with contextlib.suppress(UnknownVersionError):  # an unknown version keeps the text given
            version = matrix.requirements_for(target).version
    return posixpath.join(venv_root.rstrip("/") or "/", f"{target.framework}-{version}", "bin", "python")


def python_candidates(target: Target | None, python: str | None, venv_root: str = DEFAULT_VENV_ROOT,
                      matrix: Matrix | None = None) -> tuple[str, ...]:
    """`python` alone when given; else the managed venv's interpreter if it exists, then python3."""
    if python:
        return (python,)
    if target is None:
        return ("python3",)
    return (venv_python(target, venv_root, matrix), "python3")


def verify_host(
    transport: Transport,
    host_name: str,
    target: Target | None,
    matrix: Matrix,
    *,
    python: str | None = None,
    venv_root: str = DEFAULT_VENV_ROOT,
    force: bool = False,
    size: int = DEFAULT_SIZE,
    timeout: float = DEFAULT_TIMEOUT,
    become: Become | None = None,
    run_as: str | None = None,
) -> HostVerification:
    """Run the ladder on one host in one round trip and judge it; VerifyError when it gives no document.

    With `become`, the check runs through `sudo -n -u USER` as `run_as` (the owner of the interpreter's
    env), else as the become user; BecomeError when sudo wants a password or refuses."""
    options = CheckOptions(
        framework=target.framework if target else None,
        framework_version=target.version if target else None,
        force=force,
        size=size,
        timeout=timeout,
    )
    candidates = python_candidates(target, python, venv_root, matrix)
    argv = VERIFY_ARGV + candidates
    if become is not None:
        argv = become.wrap(argv, run_as)
    result = transport.run(argv, stdin=build_payload(options), timeout=options.transport_timeout)
    stderr = result.stderr.decode("utf-8", "replace")
    check_become_failure(result.returncode, stderr, become, host=host_name, user=run_as)
    if result.returncode == 127 and NO_PYTHON_MARKER in stderr:
        raise VerifyError(
            f"no interpreter to run the check: {' nor '.join(candidates)} found on the host",
            host=host_name,
            hint="pass the target venv's interpreter with --python PATH" if python
            else "install python3, or pass the interpreter of the target's venv with --python PATH",
        )
    if TOO_OLD_MARKER in stderr:
        raise VerifyError(_last_line(stderr).replace(TOO_OLD_MARKER + ": ", ""), host=host_name,
                          hint="the check needs Python 3.6 or newer: pass another interpreter with --python")
    if result.returncode != 0:
        raise VerifyError(
            f"the check script failed (exit status {result.returncode}): {_last_line(stderr) or 'no message'}",
            host=host_name,
            hint="run `remediate verify --local --format json` on the host to see the whole error",
        )
    return parse_verify_output(result.stdout, host=host_name, target=target, matrix=matrix)


def verify_inferred(
    transport: Transport,
    host_name: str,
    matrix: Matrix,
    *,
    python: str | None = None,
    venv_root: str = DEFAULT_VENV_ROOT,
    venv_roots: Sequence[str] | None = None,
    force: bool = False,
    size: int = DEFAULT_SIZE,
    timeout: float = DEFAULT_TIMEOUT,
    become: Become | None = None,
) -> HostVerification:
    """A host without a target: probe it, then run the ladder for each framework version installed in its
    envs (remediator.targets) with the interpreter of the first env that has it; no framework: rungs 1-2.

    With `python`, only the framework of the env that interpreter belongs to. Several targets make several
    ladders; the host's result is the first that failed (else the first), the others are its notes.
    """
    from remediator.probe import DEFAULT_TIMEOUT as PROBE_TIMEOUT
    from remediator.probe import DEFAULT_VENV_ROOTS, probe_host
    from remediator.targets import known

    facts = probe_host(transport, host_name, venv_roots=venv_roots or DEFAULT_VENV_ROOTS, timeout=PROBE_TIMEOUT,
                       become=become)
    inferred = infer_targets(facts, matrix)
    envs = {e.path: e for e in facts.envs}
    judged = known(inferred)
    if python:
        judged = [(t, tg) for t, tg in judged if any(
            envs[p].python == python or posixpath.normpath(python).startswith(posixpath.normpath(p) + "/")
            for p in t.envs)]
    notes = [f"{', '.join(t.installed)} in {', '.join(t.envs)} is unknown to the matrix ({t.unknown}): "
             "not checked" for t in inferred if t.unknown]
    runs: list[tuple[str, HostVerification]] = []
    for t, tg in judged:
        interpreter = python or envs[t.envs[0]].python
        label = f"{t.label} inferred from {t.envs[0]}" + (f" (also in {', '.join(t.envs[1:])})" if t.envs[1:]
                                                           else "")
        runs.append((label, verify_host(transport, host_name, tg, matrix, python=interpreter,
                                        venv_root=venv_root, force=force, size=size, timeout=timeout,
                                        become=become, run_as=env_owner(facts, interpreter))))
    if not runs:
        notes.insert(0, "no target and no framework installed that the matrix knows"
                     + (f" for {python}" if python else "") + ": the driver and CUDA rungs alone")
        v = verify_host(transport, host_name, None, matrix, python=python, venv_root=venv_root, force=force,
                        size=size, timeout=timeout, become=become,
                        run_as=env_owner(facts, python) if python else None)
        return replace(v, notes=(*notes, *v.notes))
    main = next((i for i, (_, v) in enumerate(runs) if not v.passed), 0)
    label, v = runs[main]
    others = [f"also checked {other_label} with {w.python or '?'}: {w.verdict}"
              for i, (other_label, w) in enumerate(runs) if i != main]
    return replace(v, notes=(f"no target given: {label}", *others, *notes, *v.notes))


def env_owner(facts: HostFacts, python: str | None) -> str | None:
    """The owner of the env an interpreter belongs to (its `python`, or a path inside it), from the probe's
    facts; None when no env has it or its owner is unknown (the become user runs the check then)."""
    if not python:
        return None
    wanted = posixpath.normpath(python)
    for env in sorted(facts.envs, key=lambda e: -len(e.path)):  # the innermost env first
        inside = env.kind != "system" and wanted.startswith(posixpath.normpath(env.path) + "/")
        if env.python == python or inside:
            return env.owner
    return None


def verify_fleet(
    hosts: Sequence[InventoryHost],
    matrix: Matrix,
    *,
    target: Target | None = None,
    python: str | None = None,
    venv_root: str = DEFAULT_VENV_ROOT,
    force: bool = False,
    size: int = DEFAULT_SIZE,
    timeout: float = DEFAULT_TIMEOUT,
    forks: int = 10,
    accept_new_host_keys: bool = False,
    connect_timeout: float = 10.0,
    connect: Callable[..., Transport] | None = None,
    on_result: Callable[[HostResult[HostVerification]], None] | None = None,
    become: bool | None = None,
) -> FleetResult[HostVerification]:
    """Verify every host, `forks` at a time; one result per host (ok, failed or unreachable).

    "ok" means the ladder ran (its rungs may still have failed: see `HostVerification.passed`).
    Without `target`, each host's `remediate_target` is used, else what is installed (`verify_inferred`);
    `remediate_python` picks its interpreter.

    With the host's `ansible_become` (or `become` True), the check runs through `sudo -n` as the owner of
    the interpreter's env: from the probe for inferred targets and for a named interpreter (one more round
    trip), as the become user (root) for the managed venv and python3, which root owns.
    """
    from remediator.fleet import run_fleet
    from remediator.matrix import parse_target
    from remediator.transport import open_transport
    from remediator.transport.become import become_of

    def verify_one(host: InventoryHost) -> HostVerification:
        how = become_of(host, enabled=become)
        chosen = target
        if chosen is None and host.target:
            chosen = parse_target(host.target)
            matrix.requirements_for(chosen)  # an unknown version is this host's error
        host_python = python
        if host_python is None and isinstance(host.vars.get("remediate_python"), str):
            host_python = host.vars["remediate_python"]
        transport = open_transport(host, accept_new_host_keys=accept_new_host_keys,
                                   connect_timeout=connect_timeout, connect=connect)
        try:
            if chosen is None:
                roots = host.vars.get("remediate_venv_roots")
                return verify_inferred(transport, host.name, matrix, python=host_python, venv_root=venv_root,
                                       venv_roots=roots if isinstance(roots, list | tuple) and roots and all(
                                           isinstance(r, str) for r in roots) else None,
                                       force=force, size=size, timeout=timeout, become=how)
            run_as = None
            if how is not None and host_python:
                from remediator.probe import DEFAULT_TIMEOUT as PROBE_TIMEOUT
                from remediator.probe import probe_host

                facts = probe_host(transport, host.name, timeout=PROBE_TIMEOUT, become=how)
                run_as = env_owner(facts, host_python)
            return verify_host(transport, host.name, chosen, matrix, python=host_python, venv_root=venv_root,
                               force=force, size=size, timeout=timeout, become=how, run_as=run_as)
        finally:
            transport.close()

    return run_fleet(hosts, verify_one, forks=forks, on_result=on_result)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


# --- parsing -------------------------------------------------------------------------------------

MAX_OUTPUT_BYTES = 16 * 1024 * 1024


def parse_verify_output(output: bytes | str, *, host: str, target: Target | None, matrix: Matrix) -> HostVerification:
    """Parse what the remote script printed on stdout and judge it; VerifyError on anything but a document."""
    if isinstance(output, bytes):
        if len(output) > MAX_OUTPUT_BYTES:
            raise VerifyError(f"check output is {len(output)} bytes, more than {MAX_OUTPUT_BYTES}", host=host)
        text = output.decode("utf-8", "replace")
    else:
        text = output
    stripped = text.strip()
    if not stripped:
        raise VerifyError("the check printed nothing", host=host, hint="run with --format json and check stderr")
    data: Any = None
    for candidate in (stripped, stripped.splitlines()[-1]):
        try:
            data = json.loads(candidate)
            break
        except (json.JSONDecodeError, RecursionError):
            continue
    if data is None:
        raise VerifyError(
            f"check output is not JSON; it begins {stripped.splitlines()[0][:120]!r}",
            host=host,
            hint="something on the host printed to stdout before the check (a banner in a shell rc file?)",
        )
    return judge(data, host=host, target=target, matrix=matrix)


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
class _Context:
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


def judge(doc: Any, *, host: str, target: Target | None, matrix: Matrix) -> HostVerification:
    """Judge every rung from the remote script's document; pure: the same document gives the same ladder."""
    if not isinstance(doc, dict):
        raise VerifyError(f"check output is a JSON {type(doc).__name__}, not an object", host=host)
    if doc.get("script") != "remediator-verify":
        raise VerifyError("check output is not a remediator verify document", host=host)
    if doc.get("schema_version") != REMOTE_SCHEMA_VERSION:
        raise VerifyError(
            f"check document has schema version {doc.get('schema_version')!r}; this remediate reads "
            f"{REMOTE_SCHEMA_VERSION}",
            host=host,
            hint="the remote script and remediate come from the same package; reinstall remediate",
        )
    req = None
    if target is not None:
        try:
            req = matrix.requirements_for(target)
        except UnknownVersionError:
            req = None
    ctx = _Context(doc, target, req, matrix)
    driver = _driver_rung(ctx)
    if driver.status == "skip" and _d(doc.get("framework")).get("cpu_only") is True:
        # no device, but the framework ran on the CPU: what it saw and that it computes, never a GPU pass
        rungs = (driver, _skip(2, "cuda", NO_DEVICE), _runtime_rung(ctx))
        matmul_rung, gpus = _cpu_matmul_rung(ctx, rungs[2]), tuple[GpuReport, ...]()
    elif driver.status == "skip":  # no device: every rung that needs a GPU says so
        rungs = (driver, _skip(2, "cuda", NO_DEVICE), _skip(3, "runtime", NO_DEVICE))
        matmul_rung, gpus = _skip(4, "matmul", NO_DEVICE), tuple[GpuReport, ...]()
    else:
        rungs = (driver, _cuda_rung(ctx), _runtime_rung(ctx))
        matmul_rung, gpus = _matmul_rung(ctx, rungs[2])
    libraries = _libraries(ctx)
    python = _d(doc.get("python"))
    return HostVerification(
        host=host,
        target=str(target) if target else None,
        python=_s(python.get("executable")),
        python_version=_s(python.get("version")),
        rungs=(*rungs, matmul_rung),
        gpus=gpus,
        libraries=libraries,
        notes=tuple(ctx.notes),
        duration_s=_f(doc.get("duration_s")),
        report=doc,
        user=_s(python.get("user")),
    )


# --- rung 1: the driver --------------------------------------------------------------------------


def _driver_rung(ctx: _Context) -> Rung:
    driver = _d(ctx.doc.get("driver"))
    nvml = ctx.nvml
    proc_version = _s(driver.get("proc_version"))
    kernel = kernel_module_version(proc_version)
    pci = driver.get("pci")
    pci_list = [p for p in _l(pci) if isinstance(p, dict)]
    container = driver.get("container") is True
    evidence: list[tuple[str, str]] = [
        ("/proc/driver/nvidia/version", f"kernel module {kernel}" if kernel else ("present" if proc_version else
                                                                                   "missing")),
        ("PCI", "unreadable" if pci is None else f"{_plural(len(pci_list), 'NVIDIA GPU')}" + (
            " (" + ", ".join(f"{_s(p.get('address'))} driver={_s(p.get('driver')) or 'none'}" for p in pci_list)
            + ")" if pci_list else "")),
    ]
    if nvml.get("error"):
        evidence.append(("NVML", str(nvml.get("error"))))

    def fail(summary: str, cause: str, fix: str) -> Rung:
        return Rung(1, "driver", "fail", summary, cause, fix, tuple(evidence))

    floor = f" {ctx.req.min_driver}" if ctx.req else ""
    target_text = f" for {ctx.target}" if ctx.target else ""
    if pci is not None and not pci_list and not nvml.get("ok"):
        # No NVIDIA GPU on the bus at all (a CPU host, a lab host, CI): nothing to check, nothing broken
        # that a GPU would reveal. A GPU on the bus with a broken driver still fails below.
        return Rung(1, "driver", "skip", NO_DEVICE, evidence=tuple(evidence))
    if proc_version is None and not nvml.get("ok"):
        summary = "no NVIDIA kernel module loaded (/proc/driver/nvidia/version missing)"
        if pci is None:
            return fail(summary, "the kernel module is not loaded, and /sys/bus/pci cannot be read to tell whether "
                        "the host has an NVIDIA GPU at all",
                        f"check for a GPU with `lspci | grep -i nvidia`; then install the NVIDIA driver{floor}"
                        f"{target_text} and `sudo modprobe nvidia`")
        if not pci_list:
            return fail(summary, "this host has no NVIDIA GPU on its PCI bus and no NVIDIA driver: there is nothing "
                        "for CUDA to run on",
                        "run the check on a GPU host (nothing to fix here if this host is not meant to have a GPU)")
        bound = sorted({_s(p.get("driver")) or "no driver" for p in pci_list})
        if "nouveau" in bound:
            return fail(summary, f"the host's {_plural(len(pci_list), 'NVIDIA GPU')} are driven by nouveau, the "
                        "open-source display driver, which has no CUDA",
                        f"install the NVIDIA driver{floor}{target_text} (it blacklists nouveau), then reboot; "
                        + ctx.plan_hint())
        if "vfio-pci" in bound:
            return fail(summary, "the NVIDIA GPUs are bound to vfio-pci (reserved for passing through to a VM), "
                        "not to the nvidia driver", "unbind them from vfio-pci (check the kernel command line and "
                        "/etc/modprobe.d for vfio-pci ids), then `sudo modprobe nvidia`")
        return fail(summary, f"the host has {_plural(len(pci_list), 'NVIDIA GPU')} on its PCI bus "
                    f"({', '.join(bound)}), but the nvidia kernel module is not loaded",
                    f"`sudo modprobe nvidia`; if that fails (`dmesg | grep -i nvrm`), install the NVIDIA driver"
                    f"{floor}{target_text} for the running kernel and reboot; " + ctx.plan_hint())
    if not nvml.get("ok"):
        return _nvml_failure(ctx, nvml, kernel, fail)
    count = _i(nvml.get("device_count"))
    gpus = ctx.nvml_gpus
    n = count if count is not None else len(gpus)
    version = _s(nvml.get("driver_version")) or "?"
    evidence.insert(0, ("driver", version))
    if n == 0:
        return fail(f"driver {version} loaded, but NVML sees no GPU",
                    "the driver is loaded but found no usable GPU" + (" (in a container: none was given to it)"
                                                                      if container else ""),
                    "check `nvidia-smi -L` and `dmesg | grep -i -e nvrm -e xid`" + (
                        "; run the container with --gpus all (NVIDIA container toolkit)" if container else ""))
    nodes = {k: v for k, v in _d(driver.get("device_nodes")).items() if isinstance(v, bool)}
    missing = sorted(k for k, v in nodes.items() if not v and k != "/dev/nvidia-uvm")
    if missing:
        return fail(f"device node(s) missing: {', '.join(missing)}",
                    "NVML answers, but programs cannot open the GPUs without their /dev/nvidia* nodes",
                    "`sudo nvidia-modprobe -c 0 -u` creates them (udev rules of the driver package do it at boot)"
                    + ("; in a container, pass the devices (--gpus all)" if container else ""))
    notes = []
    if nodes.get("/dev/nvidia-uvm") is False:
        notes.append("/dev/nvidia-uvm is not there yet; the first CUDA program creates it (rung 2 shows whether "
                     "it can)")
    if pci is not None and len(pci_list) != n:
        extra = [p for p in pci_list if _s(p.get("driver")) != "nvidia"]
        detail = ", ".join(f"{_s(p.get('address'))} is bound to {_s(p.get('driver')) or 'no driver'}" for p in extra)
        if container or len(pci_list) < n:
            notes.append(f"{_plural(len(pci_list), 'NVIDIA GPU')} on the PCI bus, NVML sees {n}"
                         + (" (in a container: only the GPUs given to it are visible)" if container else ""))
        else:
            return fail(
                f"{_plural(len(pci_list), 'NVIDIA GPU')} on the PCI bus, but NVML sees only {n}",
                (f"{detail}, so the nvidia driver does not drive it" if extra else
                 "a GPU bound to the nvidia driver failed to initialise (it may have fallen off the bus)"),
                "look for the failing GPU in `dmesg | grep -i -e nvrm -e xid`; a GPU that fell off the bus needs a "
                "reset or reboot, one bound to another driver needs rebinding to nvidia",
            )
    floor_version = ctx.req.driver_floor if ctx.req else None
    parsed = try_version(version)
    if floor_version is not None and parsed is not None and parsed < floor_version and ctx.req is not None:
        return fail(f"driver {version} is older than any supported setup of {ctx.target} allows "
                    f"(at least {floor_version.raw})",
                    f"{ctx.target} needs driver {ctx.req.min_driver.raw} (tested), or at least {floor_version.raw} "
                    "with an older CUDA build or minor-version compatibility",
                    f"upgrade the NVIDIA driver to {ctx.req.min_driver.raw} or newer (needs a reboot); "
                    + ctx.plan_hint())
    for gpu in gpus:
        procs = [p for p in _l(gpu.get("processes")) if isinstance(p, dict)]
        if procs:
            who = ", ".join(f"{_i(p.get('pid'))} ({_s(p.get('name')) or '?'})" for p in procs[:5])
            notes.append(f"GPU {_i(gpu.get('index'))} is busy: {_plural(len(procs), 'compute process')}: {who}")
    names = sorted({_s(g.get("name")) or "?" for g in gpus})
    summary = (f"driver {version} loaded; NVML sees {_plural(n, 'GPU')} ({', '.join(names)})"
               + (", as many as on the PCI bus" if len(pci_list) == n else "")
               + "; device nodes present")
    if kernel and version != "?" and kernel != version:
        notes.append(f"kernel module {kernel} differs from NVML's driver {version}")
    ctx.notes.extend(notes)
    return Rung(1, "driver", "pass", summary, evidence=tuple(evidence), notes=tuple(notes))


def _nvml_failure(ctx: _Context, nvml: dict[str, Any], kernel: str | None,
                  fail: Callable[[str, str, str], Rung]) -> Rung:
    error = _s(nvml.get("error")) or "unknown error"
    code = _i(nvml.get("error_code"))
    if nvml.get("timed_out"):
        return fail("NVML did not answer in time", "the driver is hung: NVML calls block (often after a GPU error, "
                    "an Xid in the kernel log)",
                    "check `dmesg | grep -i xid`; reset the GPU (`nvidia-smi -r`, with no jobs on it) or reboot")
    if nvml.get("loaded") is False:
        return fail(f"NVML could not be asked: {error}",
                    f"the check's interpreter ({ctx.python}) cannot load the NVML bindings (pynvml)",
                    "run the check with a newer Python (--python PATH, 3.6 or newer)")
    if code == 18 or "mismatch" in error.lower():
        return fail(f"NVML: {error}",
                    f"the loaded kernel module{' ' + kernel if kernel else ''} differs from the driver's userspace "
                    "libraries: the driver was upgraded (or downgraded) without a reboot",
                    "reboot (or unload and reload the nvidia modules with no GPU job running)")
    if code == 12:
        return fail("NVML library not found (libnvidia-ml.so.1)",
                    f"the kernel module{' ' + kernel if kernel else ''} is loaded, but the driver's userspace "
                    "libraries are missing" + (" (or not mounted into this container)"
                                               if _d(ctx.doc.get("driver")).get("container") else ""),
                    f"install the driver's userspace packages matching kernel module {kernel or '(its version)'} "
                    "(Ubuntu: libnvidia-compute-<branch>, nvidia-utils-<branch>); in a container use the NVIDIA "
                    "container toolkit (--gpus all)")
    if code == 9:
        return fail(f"NVML: {error}", "the nvidia kernel module is not loaded",
                    "`sudo modprobe nvidia` (see `dmesg | grep -i nvrm` if it fails)")
    if code == 4:
        return fail(f"NVML: {error}", "this user may not open the GPU device nodes",
                    "check the permissions of /dev/nvidia* (the driver's NVreg_DeviceFileMode/-GID settings), or "
                    "run as a user in the group that owns them")
    if code == 15:
        return fail(f"NVML: {error}", "a GPU fell off the bus (it no longer answers on PCIe)",
                    "see `dmesg | grep -i -e xid -e nvrm`; reboot, and reseat or replace the GPU if it repeats")
    pci = _d(ctx.doc.get("driver")).get("pci")
    no_gpu = isinstance(pci, list) and not pci
    if code == 13:
        return fail(f"NVML: {error}",
                    "libnvidia-ml.so.1 lacks functions every driver's NVML has: it is not the driver's own library "
                    "(a stub or a copy from elsewhere)" + ("; and the PCI bus shows no NVIDIA GPU" if no_gpu else ""),
                    "find which libnvidia-ml.so.1 is loaded (`ldconfig -p | grep nvidia-ml`) and reinstall the "
                    "driver's userspace packages")
    return fail(f"NVML: {error}", "the driver does not answer NVML queries"
                + (" (and the PCI bus shows no NVIDIA GPU)" if no_gpu else ""),
                "check `nvidia-smi` and `dmesg | grep -i nvrm`; reinstall the driver if it is damaged")


# --- rung 2: the CUDA driver API ------------------------------------------------------------------


NO_DEVICE = "no device: no NVIDIA GPU on this host's PCI bus, nothing to check"


def _skip(number: int, name: RungName, reason: str) -> Rung:
    return Rung(number, name, "skip", reason)


_SKIP_REASONS = {
    "driver": "driver rung failed",
    "cuda": "CUDA driver API rung failed",
    "no_target": "no target framework (give --target FRAMEWORK==VERSION, or set remediate_target)",
}


def _cuda_rung(ctx: _Context) -> Rung:
    cuda = ctx.doc.get("cuda")
    if not isinstance(cuda, dict):
        return _skip(2, "cuda", _SKIP_REASONS.get(_s(_d(ctx.doc.get("skipped")).get("cuda")) or "driver",
                                                  "driver rung failed"))
    cvd = _s(ctx.env.get("CUDA_VISIBLE_DEVICES"))
    nvml_n = len(ctx.nvml_gpus)
    path = _s(cuda.get("path"))
    lib_version = file_version(path) if path else None
    evidence: list[tuple[str, str]] = [("libcuda", f"{path or 'libcuda.so.1'}")]
    if cvd is not None:
        evidence.append(("CUDA_VISIBLE_DEVICES", repr(cvd)))

    def fail(summary: str, cause: str, fix: str) -> Rung:
        return Rung(2, "cuda", "fail", summary, cause, fix, tuple(evidence))

    driver = ctx.driver_version
    if cuda.get("timed_out"):
        return fail(_s(cuda.get("error")) or "cuInit did not return in time",
                    "the GPU or the driver is wedged: cuInit blocks",
                    "check `dmesg | grep -i xid`; reset the GPU (`nvidia-smi -r`, with no jobs on it) or reboot")
    error = _s(cuda.get("error"))
    if error and error.startswith("cannot load libcuda"):
        return fail("libcuda.so.1 not found",
                    "NVML works, but the driver's CUDA library (libcuda.so.1) is not on the loader path",
                    f"install the driver's CUDA userspace package matching driver {driver or '(its version)'} "
                    "(Ubuntu: libnvidia-compute-<branch>; RHEL: nvidia-driver-cuda-libs); in a container set "
                    "NVIDIA_DRIVER_CAPABILITIES=compute,utility")
    rc = _i(cuda.get("init_rc"))
    count = _i(cuda.get("device_count"))
    if rc not in (0, None) or (rc == 0 and count == 0):
        name = _s(cuda.get("init_error")) or _CUDA_ERRORS.get(rc or 0, f"error {rc}")
        if rc == 0:
            name = "no devices"
        evidence.append(("cuInit", f"{rc} ({name})"))
        if rc in (100, 0, 101):
            if cvd is not None:
                return fail(f"CUDA sees no device: cuInit returned {name}",
                            f"CUDA_VISIBLE_DEVICES={cvd!r} hides every GPU from CUDA (NVML, which ignores it, "
                            f"sees {nvml_n})",
                            f"unset CUDA_VISIBLE_DEVICES, or set it to GPUs that exist (0..{max(nvml_n - 1, 0)} or "
                            "their UUIDs from `nvidia-smi -L`)")
            return fail(f"CUDA sees no device: cuInit returned {name}",
                        f"NVML sees {_plural(nvml_n, 'GPU')}, but CUDA finds none usable (device permissions, a "
                        "GPU in an error state, or MIG enabled without instances)",
                        "check `nvidia-smi`, the permissions of /dev/nvidia*, and `dmesg | grep -i xid`")
        if rc in (803, 804):
            why = ("the libcuda on the loader path is a CUDA forward-compatibility library "
                   f"({path or 'libcuda.so.1'}{', ' + lib_version if lib_version else ''}) that "
                   + ("this driver does not accept" if rc == 803 else "this GPU does not support "
                      "(forward compatibility works on data-center GPUs only)"))
            directory = posixpath.dirname(path) if path else "the cuda-compat directory"
            return fail(f"cuInit failed: {name}", why,
                        f"take {directory} off LD_LIBRARY_PATH / ld.so.conf (or remove the cuda-compat package), "
                        "or upgrade the driver")
        if rc == 35:
            return fail(f"cuInit failed: {name}", f"libcuda ({path or 'libcuda.so.1'}) is older than the kernel "
                        "driver expects", "reinstall the driver's userspace libraries matching its kernel module")
        if rc == 46:
            return fail(f"cuInit failed: {name}", "every GPU is in exclusive-process compute mode and already in "
                        "use by another process", "run the check when the GPUs are free, or "
                        "`nvidia-smi -c DEFAULT` to allow shared use")
        uvm_missing = _d(_d(ctx.doc.get("driver")).get("device_nodes")).get("/dev/nvidia-uvm") is False
        modules = [m for m in _l(_d(ctx.doc.get("driver")).get("modules")) if isinstance(m, str)]
        if uvm_missing and "nvidia_uvm" not in modules:
            return fail(f"cuInit failed: {name}",
                        "the nvidia_uvm kernel module is not loaded (/dev/nvidia-uvm is missing); CUDA needs it",
                        "`sudo modprobe nvidia-uvm` (or `sudo nvidia-modprobe -u -c 0`); see `dmesg` if it fails")
        return fail(f"cuInit failed: {name}", f"the CUDA driver API does not initialise ({name})",
                    "check `dmesg | grep -i -e nvrm -e xid` and the permissions of /dev/nvidia*, /dev/nvidia-uvm")
    if error:
        return fail(error, "the CUDA driver API initialised but cannot enumerate the GPUs",
                    "check `dmesg | grep -i -e nvrm -e xid`")
    devices = [d for d in _l(cuda.get("devices")) if isinstance(d, dict)]
    n = count or 0
    cuda_api = cuda_version_text(_i(cuda.get("driver_version")))
    summary = (f"libcuda {lib_version or '?'}" + (f" (CUDA {cuda_api})" if cuda_api else "")
               + f" initialised; CUDA sees {_plural(n, 'device')}")
    notes = []
    if lib_version and driver and lib_version != driver:
        notes.append(f"libcuda {lib_version} ({path}) is not the driver's own {driver}: a CUDA forward-compatibility "
                     "library")
    if n < nvml_n:
        seen = {_s(d.get("uuid")) for d in devices} | {bus_key(_s(d.get("pci_bus_id"))) for d in devices}
        hidden = [g for g in ctx.nvml_gpus if _s(g.get("uuid")) not in seen
                  and bus_key(_s(g.get("pci_bus_id"))) not in seen]
        listing = ", ".join(f"GPU {_i(g.get('index'))} ({_s(g.get('name')) or '?'})" for g in hidden)
        if cvd is not None:
            notes.append(f"CUDA_VISIBLE_DEVICES={cvd!r} shows CUDA {n} of the {nvml_n} GPUs; "
                         f"not checked: {listing or 'the others'}")
        else:
            return fail(f"CUDA sees {n} of the {nvml_n} GPUs NVML sees",
                        f"CUDA cannot use {listing or 'some GPUs'} (MIG mode, an error state, or permissions)",
                        "check `nvidia-smi -q` for those GPUs (MIG mode, retired pages, Xid errors in `dmesg`)")
    ctx.notes.extend(notes)
    return Rung(2, "cuda", "pass", summary, evidence=tuple(evidence), notes=tuple(notes))


# --- rung 3: the framework's runtime --------------------------------------------------------------


def _child_failure(ctx: _Context, fw: dict[str, Any], during: str) -> tuple[str, str, str] | None:
    """Summary, cause and fix when the framework child timed out, crashed or could not start."""
    step = _s(fw.get("last_step")) or "start"
    label = ctx.fw_label
    steps = {
        "import": f"importing {label}",
        "build_info": f"reading {label}'s build information",
        "devices": f"listing {label}'s GPUs",
        "op": "the first GPU operation",
        "maps": "reading the loaded libraries",
        "numpy": "importing numpy",
        "reference": "computing the NumPy reference",
    }
    where = steps.get(step, f"the matmul on GPU {step.split(':', 1)[1]}" if step.startswith("matmul:") else step)
    tail = _last_line(_s(fw.get("stderr_tail")) or "")
    timeout = _f(_d(ctx.doc.get("options")).get("framework_timeout"))
    if fw.get("error"):
        return str(fw["error"]), f"the {during} check could not be started", "see the error; check the interpreter"
    if fw.get("timed_out"):
        return (f"the {during} check did not finish in {timeout:g}s (stuck in {where})" if timeout else
                f"the {during} check did not finish (stuck in {where})",
                f"{where} hung: a wedged GPU, or a slow first start (PTX JIT-compiling for a GPU the build has no "
                "kernels for)" + (" and it could not be killed (stuck in the driver)" if fw.get("stuck") else ""),
                "check `dmesg | grep -i xid`; give it longer with --timeout; reset the GPU or reboot if it is wedged")
    sig = _i(fw.get("signal"))
    if sig:
        name = _SIGNALS.get(sig, f"signal {sig}")
        return (f"the {during} check crashed with {name} during {where}",
                f"{label} crashed in native code during {where}" + (f": {tail}" if tail else "")
                + " (often CUDA libraries from two different installs mixed in one process)",
                "see the stderr in --format json (report.framework.stderr_tail); check LD_LIBRARY_PATH and "
                "LD_PRELOAD for other CUDA/cuDNN copies")
    rc = _i(fw.get("rc"))
    if rc not in (0, None):
        return (f"the {during} check exited with status {rc} during {where}", tail or "it printed no error",
                "see the stderr in --format json (report.framework.stderr_tail)")
    return None


def _classify_gpu_error(ctx: _Context, error: str, gpu_name: str | None = None) -> tuple[str, str]:
    """Plain-language cause and fix for an error a framework raised running on the GPU."""
    low = error.lower()
    label = ctx.fw_label
    if "cudnn version incompatibility" in low or "cudnn_status_version_mismatch" in low:
        return (f"{label} was built for another cuDNN than the one it loaded: {error}",
                _cudnn_fix(ctx, None))
    if "no kernel image is available" in low or "not compatible with the current" in low:
        cc = ""
        for g in _l(_d(ctx.doc.get("cuda")).get("devices")):
            if isinstance(g, dict) and isinstance(g.get("compute_capability"), list):
                cc = ".".join(str(x) for x in g["compute_capability"])
                break
        return (f"this {label} build has no GPU code for {gpu_name or 'this GPU'}"
                + (f" (compute capability {cc})" if cc else ""),
                "install a build of the target compiled for this GPU's architecture; " + ctx.plan_hint())
    if "driver version is insufficient" in low or "driver on your system is too old" in low \
            or "insufficient_driver" in low:
        runtime = _runtime_cuda(ctx)
        need = ""
        if runtime:
            try:
                need = ctx.matrix.min_driver_for_cuda(runtime).raw
            except RemediatorError:
                need = ""
        return (f"driver {ctx.driver_version or '?'} is too old for the CUDA runtime {runtime or ''} that {label} "
                "uses".replace("  ", " "),
                (f"upgrade the driver to {need} or newer, " if need else "upgrade the driver, ")
                + f"or install a build of {label} for an older CUDA; " + ctx.plan_hint())
    if "out of memory" in low:
        return ("the GPU has no free memory for a CUDA context and our small buffers: other processes hold it",
                "run the check when the GPU is free (NVML's process list is in the rung 1 notes)")
    if "busy or unavailable" in low or "exclusive" in low:
        return ("the GPU is in exclusive-process mode and another process holds it",
                "run the check when the GPU is free, or `nvidia-smi -c DEFAULT`")
    return (f"{label} failed on the GPU: {error}",
            "see the error; `dmesg | grep -i xid` shows GPU faults")


def _runtime_cuda(ctx: _Context) -> str | None:
    for lib in _l(_d(ctx.doc.get("runtime")).get("libraries")):
        if isinstance(lib, dict) and posixpath.basename(_s(lib.get("path")) or "").startswith("libcudart.so"):
            return cuda_version_text(_i(lib.get("api_version"))) or file_version(_s(lib.get("path")) or "")
    return _s(_d(_d(ctx.doc.get("runtime")).get("build")).get("cuda"))


def _cudnn_fix(ctx: _Context, loaded: str | None) -> str:
    """The fix for a CUDA library the framework should not have loaded (`loaded`), or one it lacks."""
    ld = _s(ctx.env.get("LD_LIBRARY_PATH"))
    directory = posixpath.dirname(loaded) if loaded else None
    prefix = _s(_d(ctx.doc.get("python")).get("prefix"))
    if directory and ld and directory in ld.split(":"):
        return f"take {directory} off LD_LIBRARY_PATH (it is {ld!r}); the env's own wheels then load"
    if directory and not (prefix and _within(directory, prefix)):
        return (f"stop the loader from finding {directory} first (LD_PRELOAD, /etc/ld.so.conf.d, or a "
                "copy in the toolkit); the env's own wheels then load")
    if ctx.req is not None:
        pins = [f"{n}=={v}" for n, v in ctx.req.wheels if "cudnn" in n]
        if ctx.req.bundles_cuda and pins:
            return f"reinstall {ctx.req.install_spec} with its pinned {', '.join(pins)}"
        if ctx.req.cudnn_range is not None:
            return (f"install cuDNN {ctx.req.cudnn_range.raw} for CUDA {ctx.req.cuda} and pin the venv's "
                    f"LD_LIBRARY_PATH to it; {ctx.plan_hint()}")
    return ctx.plan_hint()


def _outside_env(rt: dict[str, Any], libs: tuple[Library, ...], family: str) -> list[Library]:
    """Libraries of a family (cudnn, cudart, cublas) loaded from outside the env while the env has its own:
    the classic shadowing, including a cuDNN split between the wheel's libcudnn.so.9 and another
    install's sub-libraries (cuDNN 9 loads libcudnn_graph, _ops, _engines_* by name)."""
    shadowed = [lib for lib, _ in _shadowed(rt, libs) if lib.kind.startswith(family)]
    if shadowed:
        return shadowed
    members = [lib for lib in libs if lib.kind.startswith(family) and lib.kind != "cuda"]
    if any(lib.origin == "env" for lib in members):
        return [lib for lib in members if lib.origin != "env"]
    return []


def _describe_outside(libs: list[Library]) -> str:
    directory = posixpath.dirname(libs[0].path)
    names = [posixpath.basename(lib.path) for lib in libs if posixpath.dirname(lib.path) == directory]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"{shown} came from {directory}, not from the env"


def _local_free(version: str) -> str:
    return version.split("+", 1)[0]


def _runtime_rung(ctx: _Context) -> Rung:
    fw = _d(ctx.doc.get("framework"))
    label = ctx.fw_label
    if not fw.get("ran"):
        reason = _s(_d(ctx.doc.get("skipped")).get("framework")) or "driver"
        return _skip(3, "runtime", _SKIP_REASONS.get(reason, reason))
    rt = ctx.doc.get("runtime")
    if not isinstance(rt, dict):
        failure = _child_failure(ctx, fw, "framework") or (
            "the framework check reported nothing", "it exited without a result", "see report.framework.stderr_tail")
        return Rung(3, "runtime", "fail", *failure)
    evidence: list[tuple[str, str]] = [("python", ctx.python)]

    def fail(summary: str, cause: str, fix: str) -> Rung:
        return Rung(3, "runtime", "fail", summary, cause, fix, tuple(evidence))

    if not rt.get("import_ok"):
        error = _s(rt.get("import_error")) or "unknown error"
        if "No module named" in error and label in error:
            venv = venv_python(ctx.target, matrix=ctx.matrix) if ctx.target else None
            return fail(f"cannot import {label}: {error}",
                        f"{label} is not installed for {ctx.python}",
                        "pass the interpreter of the venv that has it with --python PATH"
                        + (f"; or create the target's venv ({posixpath.dirname(posixpath.dirname(venv))}): "
                           f"{ctx.plan_hint()}, then `remediate apply`" if venv else ""))
        lib = _MISSING_LIB.search(error)
        if lib:
            return fail(f"cannot import {label}: {error}",
                        f"{label} could not load {lib.group(1)}: " + (
                            "a CUDA library it needs is missing or shadowed by an incompatible copy"),
                        (f"check LD_LIBRARY_PATH ({ctx.env.get('LD_LIBRARY_PATH')!r}) for other CUDA/cuDNN copies; "
                         if ctx.env.get("LD_LIBRARY_PATH") else "")
                        + (f"reinstall {ctx.req.install_spec} in the venv (it brings its CUDA wheels)"
                           if ctx.req else "reinstall the framework with its CUDA libraries"))
        return fail(f"cannot import {label}: {error}", f"{label} fails to import in {ctx.python}",
                    f"run `{ctx.python} -c 'import {label}'` on the host to see the whole error; reinstall it")
    build = _d(rt.get("build"))
    version = _s(build.get("version")) or "?"
    evidence.append((label, version + (f" ({_s(build.get('file'))})" if build.get("file") else "")))
    if build.get("cuda"):
        evidence.append(("built for CUDA", str(build.get("cuda"))))
    if build.get("cudnn"):
        evidence.append(("built for cuDNN", str(build.get("cudnn"))))
    if ctx.target is not None and ctx.req is not None:
        have = try_version(_local_free(version))
        want = try_version(ctx.req.version)
        if have is not None and want is not None and have != want:
            return fail(f"{label} {version} is installed in {ctx.python}, the target is {ctx.target}",
                        f"the interpreter that ran the check has another {label} than the target",
                        f"pass the target venv's interpreter with --python PATH, or install {ctx.req.install_spec}; "
                        + ctx.plan_hint())
    if build.get("is_cuda_build") is False:
        return fail(f"{label} {version} is a CPU-only build", f"this {label} has no CUDA support compiled in",
                    (f"install the CUDA build: pip install {ctx.req.install_spec}" if ctx.req else
                     f"install a CUDA build of {label}") + "; " + ctx.plan_hint())
    if fw.get("cpu_only") is True:
        return _cpu_runtime_rung(ctx, rt, build, evidence)
    devices = [d for d in _l(rt.get("devices")) if isinstance(d, dict)]
    cuda_n = _i(_d(ctx.doc.get("cuda")).get("device_count")) or 0
    stderr = _s(fw.get("stderr_tail")) or ""
    if not devices:
        missing = sorted(set(_TF_DLOPEN.findall(stderr)))
        if missing:
            return fail(f"{label} sees no GPU: it could not load {', '.join(missing)}",
                        f"{label} did not find the CUDA libraries it was built for (CUDA {build.get('cuda')}, cuDNN "
                        f"{build.get('cudnn')}), so it runs on the CPU only",
                        _cudnn_fix(ctx, None))
        error = _s(rt.get("devices_error")) or _last_line(stderr)
        cause, fix = _classify_gpu_error(ctx, error or "no CUDA device")
        return fail(f"{label} sees no GPU, though CUDA sees {cuda_n}", cause, fix)
    op = _d(rt.get("op"))
    if not op.get("ok"):
        error = _s(op.get("error")) or "unknown error"
        cause, fix = _classify_gpu_error(ctx, error)
        return fail(f"the first GPU op failed on GPU {_i(op.get('index'))}: {error}", cause, fix)
    expected = [_f(x) for x in _l(op.get("expected"))] or [64.0, 9.0]
    got = [_f(op.get("matmul_value")), _f(op.get("conv_value"))]
    if got != expected:
        return fail(f"the first GPU op gave a wrong result: {got}, expected {expected}",
                    "a matmul and a convolution of ones gave wrong numbers: a broken library or faulty GPU",
                    "check `nvidia-smi -q -d ECC` and `dmesg | grep -i xid`; reinstall the framework")
    if op.get("cudnn_runtime_error"):
        error = str(op["cudnn_runtime_error"])
        loaded = _main_cudnn(ctx)
        outside = _outside_env(rt, _libraries(ctx), "cudnn")
        evidence.append(("error", error))
        return fail(f"{label} rejects the loaded cuDNN {loaded[1] if loaded else ''}: it was built with "
                    f"{build.get('cudnn') or '?'}".replace("  ", " "),
                    f"{label} {version} was built with cuDNN {build.get('cudnn') or '?'} but cuDNN "
                    f"{loaded[1] if loaded else '?'} was loaded: "
                    + (_describe_outside(outside) if outside else f"from {loaded[0] if loaded else '?'}"),
                    _cudnn_fix(ctx, outside[0].path if outside else (loaded[0] if loaded else None)))
    return _judge_libraries(ctx, rt, build, evidence, fail)


#: What rungs 3 and 4 say on a host with no NVIDIA GPU where the framework ran on the CPU.
NO_DEVICE_CPU = "no device (no NVIDIA GPU on this host's PCI bus)"


def _cuda_library_text(lib: dict[str, Any]) -> str:
    """One soname the framework would dlopen, as the CPU check resolved it."""
    soname = _s(lib.get("soname")) or "?"
    if not lib.get("found"):
        return f"{soname} not found"
    path = _s(lib.get("path")) or "?"
    api = _i(lib.get("api_version"))
    if soname.startswith("libcudnn"):
        version = cudnn_version_text(api)
    elif soname.startswith("libcudart"):
        version = cuda_version_text(api)
    else:
        version = _s(lib.get("api_version_text"))
    version = version or file_version(path)
    return f"{soname} {version or '?'} from {path} (via {_s(lib.get('via')) or '?'})"


def _cpu_runtime_rung(ctx: _Context, rt: dict[str, Any], build: dict[str, Any],
                      evidence: list[tuple[str, str]]) -> Rung:
    """Rung 3 on a host without a GPU: what the framework saw, as a skip (nothing GPU-side can fail here)."""
    label = ctx.fw_label
    version = _s(build.get("version")) or "?"
    libs = [x for x in _l(rt.get("cuda_libraries")) if isinstance(x, dict)]
    devices = [d for d in _l(rt.get("devices")) if isinstance(d, dict)]
    built = ", ".join(x for x in (f"CUDA {build.get('cuda')}" if build.get("cuda") else "",
                                  f"cuDNN {_cudnn_build_text(build.get('cudnn'))}" if build.get("cudnn") else "") if x)
    for lib in libs:
        evidence.append((_s(lib.get("soname")) or "?", _cuda_library_text(lib) + (
            "; searched " + ", ".join(str(p) for p in _l(lib.get("searched"))) if not lib.get("found") else "")))
    missing = [_s(lib.get("soname")) or "?" for lib in libs if not lib.get("found")]
    found = [_cuda_library_text(lib) for lib in libs if lib.get("found")]
    seen = "sees no GPU" if not devices else f"lists {_plural(len(devices), 'GPU')}"
    parts = []
    if missing:
        parts.append(f"{', '.join(missing)} not found in the env or on the loader path")
    if found:
        parts.append("would load " + "; ".join(found))
    if rt.get("cuda_libraries_error"):
        parts.append(f"its CUDA libraries could not be resolved: {rt['cuda_libraries_error']}")
    summary = (f"{NO_DEVICE_CPU}: {label} {version}" + (f" (built for {built})" if built else "") + f" {seen}"
               + ("; " + "; ".join(parts) if parts else ""))
    return Rung(3, "runtime", "skip", summary, evidence=tuple(evidence))


def _cpu_matmul_rung(ctx: _Context, runtime: Rung) -> Rung:
    """Rung 4 on a host without a GPU: the matmul on the framework's CPU device, never a GPU pass."""
    fw = _d(ctx.doc.get("framework"))
    mm = ctx.doc.get("matmul")
    label = ctx.fw_label
    if runtime.status == "fail":
        return _skip(4, "matmul", "runtime rung failed: no matmul ran")
    if not isinstance(mm, dict):
        failure = _child_failure(ctx, fw, "matmul")
        if failure is not None:
            return Rung(4, "matmul", "fail", *failure)
        return _skip(4, "matmul", NO_DEVICE)
    n = _i(mm.get("size")) or 0
    evidence: list[tuple[str, str]] = [
        ("matmul", f"{n}x{n} float32 on {_s(mm.get('device')) or 'CPU:0'} (not a GPU), {_i(mm.get('repeats'))} "
                   "timed runs after a warm-up"),
        ("reference", f"first {_i(mm.get('reference_rows'))} rows in float64 NumPy"),
        ("tolerance", f"relative error (Frobenius) <= {REL_TOLERANCE:g}"),
    ]

    def fail(summary: str, cause: str, fix: str) -> Rung:
        return Rung(4, "matmul", "fail", summary, cause, fix, tuple(evidence))

    if mm.get("error"):
        return fail(str(mm["error"]), "the float64 reference needs NumPy in the check's interpreter",
                    f"install numpy into {ctx.python} (`{ctx.python} -m pip install numpy`)")
    cpu = mm.get("cpu")
    if not isinstance(cpu, dict):
        failure = _child_failure(ctx, fw, "matmul") or (
            "no matmul result from the CPU", "the check ended early", "see report.framework.stderr_tail")
        return fail(*failure)
    if cpu.get("error"):
        return fail(f"{label} failed to multiply on the CPU: {cpu['error']}",
                    f"{label} imports but cannot compute: a broken install",
                    f"reinstall {ctx.req.install_spec if ctx.req else label} in {ctx.python}")
    rel, tflops = _f(cpu.get("rel_error")), _f(cpu.get("tflops"))
    if cpu.get("finite") is False or rel is None:
        return fail(f"{label} returned NaN/Inf from a CPU matmul of finite numbers",
                    f"{label}'s CPU kernels are broken", f"reinstall {label}")
    if rel > REL_TOLERANCE:
        return fail(f"{label} computed a wrong matmul on the CPU: relative error {rel:.2e} (tolerance "
                    f"{REL_TOLERANCE:g})", f"{label}'s CPU kernels give wrong results: a broken install",
                    f"reinstall {label}")
    speed = f", {tflops * 1000:.0f} GFLOP/s" if tflops is not None else ""
    return Rung(4, "matmul", "skip",
                f"{NO_DEVICE_CPU}: {label} computes on CPU (not a GPU result): a {n}x{n} float32 matmul on "
                f"{_s(cpu.get('device')) or 'CPU:0'} is correct (relative error {rel:.1e}){speed}",
                evidence=tuple(evidence))


def _main_cudnn(ctx: _Context) -> tuple[str, str] | None:
    for lib in _l(_d(ctx.doc.get("runtime")).get("libraries")):
        if isinstance(lib, dict):
            path = _s(lib.get("path")) or ""
            if posixpath.basename(path).startswith("libcudnn.so"):
                version = cudnn_version_text(_i(lib.get("api_version"))) or file_version(path) or "?"
                return path, version
    return None


def _judge_libraries(ctx: _Context, rt: dict[str, Any], build: dict[str, Any],
                     evidence: list[tuple[str, str]], fail: Callable[[str, str, str], Rung]) -> Rung:
    label = ctx.fw_label
    version = _s(build.get("version")) or "?"
    libs = _libraries(ctx)
    main = {lib.kind: lib for lib in libs if lib.kind in ("cudart", "cudnn", "cublas", "cuda")}
    for lib in libs:
        if lib.kind in ("cudart", "cudnn", "cublas"):
            evidence.append((lib.kind, f"{lib.version or '?'} {lib.path} ({lib.origin})"))
    built_cuda = try_version(_s(build.get("cuda")))
    built_cudnn = try_version(_cudnn_build_text(build.get("cudnn")))
    cudart = main.get("cudart")
    if cudart is None and build.get("cuda"):
        return fail("no CUDA runtime (libcudart) was loaded by the GPU op",
                    f"{label} ran on the GPU without a visible libcudart (statically linked?)",
                    "nothing to fix if the matmul rung passes; report it if it does not")
    if cudart is not None and cudart.version:
        loaded = try_version(cudart.version)
        if built_cuda is not None and loaded is not None and loaded.major != built_cuda.major:
            return fail(f"CUDA runtime {cudart.version} loaded from {cudart.path}, {label} {version} was built "
                        f"for CUDA {built_cuda.raw}",
                        f"a CUDA {loaded.major} runtime was loaded into a {label} built for CUDA {built_cuda.major}"
                        + (" (from outside the env)" if cudart.origin != "env" else ""),
                        _cudnn_fix(ctx, cudart.path))
        if ctx.req is not None and loaded is not None and ctx.req.cuda_range is not None \
                and not ctx.req.cuda_ok(loaded):
            return fail(f"CUDA runtime {cudart.version} ({cudart.path}) is outside what {ctx.target} supports "
                        f"({ctx.req.cuda_range.raw})",
                        f"{ctx.target} was built and tested with CUDA {ctx.req.cuda}",
                        _cudnn_fix(ctx, cudart.path))
    cudnn = main.get("cudnn")
    if cudnn is None:
        return fail("no cuDNN was loaded by the GPU op (a convolution)",
                    f"{label} ran a convolution without cuDNN: cuDNN is missing or disabled",
                    _cudnn_fix(ctx, None))
    loaded_dnn = try_version(cudnn.version)
    outside = _outside_env(rt, libs, "cudnn")
    culprit = outside[0].path if outside else cudnn.path
    where = _describe_outside(outside) if outside else f"loaded from {cudnn.path}"
    if loaded_dnn is not None and built_cudnn is not None and (
            loaded_dnn.major != built_cudnn.major or (len(built_cudnn.release) > 1 and loaded_dnn < built_cudnn)):
        return fail(f"cuDNN {cudnn.version} was loaded, {label} {version} was built with cuDNN {built_cudnn.raw}",
                    "the cuDNN that was loaded is "
                    + ("another major version" if loaded_dnn.major != built_cudnn.major else "older")
                    + f" than the one {label} was built with: {where}",
                    _cudnn_fix(ctx, culprit))
    if ctx.req is not None and loaded_dnn is not None and ctx.req.cudnn_range is not None \
            and not ctx.req.cudnn_ok(loaded_dnn):
        return fail(f"cuDNN {cudnn.version} is outside what {ctx.target} needs ({ctx.req.cudnn_range.raw})",
                    f"{ctx.target} was built with cuDNN {ctx.req.cudnn}; {where}",
                    _cudnn_fix(ctx, culprit))
    dnn_cuda = try_version(cudnn.built_for_cuda)
    if dnn_cuda is not None and built_cuda is not None and dnn_cuda.major != built_cuda.major:
        return fail(f"the cuDNN at {cudnn.path} was built for CUDA {cudnn.built_for_cuda}; {label} uses CUDA "
                    f"{built_cuda.raw}",
                    f"a cuDNN for CUDA {dnn_cuda.major} was loaded into a {label} built for CUDA {built_cuda.major}",
                    _cudnn_fix(ctx, cudnn.path))
    if ctx.req is not None and ctx.req.bundles_cuda:
        shadowed = _shadowed(rt, libs)
        if shadowed:
            lib, wheel_dir = shadowed[0]
            return fail(f"{lib.kind} {lib.version or ''} was loaded from {lib.path}, not from the env's wheel "
                        f"({wheel_dir})".replace("  ", " "),
                        f"{ctx.target} brings its own CUDA libraries as pip wheels, but "
                        f"{_describe_outside([x for x, _ in shadowed])}: the loader found them first, so the "
                        "build and the library can drift apart",
                        _cudnn_fix(ctx, lib.path))
    parts = []
    if cudart is not None:
        parts.append(f"CUDA runtime {cudart.version or '?'}")
    parts.append(f"cuDNN {cudnn.version or '?'}")
    if "cublas" in main:
        parts.append(f"cuBLAS {main['cublas'].version or '?'}")
    origins = sorted({lib.origin for lib in libs if lib.kind in ("cudart", "cudnn", "cublas")})
    where = "from the env's wheels" if origins == ["env"] else "from " + " and ".join(
        "the env" if o == "env" else "the system" for o in origins)
    built = ", ".join(x for x in (f"CUDA {build.get('cuda')}" if build.get("cuda") else "",
                                  f"cuDNN {_cudnn_build_text(build.get('cudnn'))}" if build.get("cudnn") else "") if x)
    return Rung(3, "runtime", "pass",
                f"{label} {version}" + (f" (built for {built})" if built else "") + f" loaded {', '.join(parts)} "
                + where, evidence=tuple(evidence))


def _cudnn_build_text(value: Any) -> str | None:
    """TF writes cudnn_version as "8" or "9"; torch's compile version comes as "9.19.0"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return cudnn_version_text(value) if value >= 1000 else str(value)
    return value if isinstance(value, str) else None


def _shadowed(rt: dict[str, Any], libs: tuple[Library, ...]) -> list[tuple[Library, str]]:
    """CUDA libraries loaded from outside the env although the env's wheels ship one of that name."""
    wheel_files: dict[str, str] = {}
    for entry in _l(rt.get("wheel_lib_dirs")):
        if isinstance(entry, dict) and isinstance(entry.get("dir"), str):
            for name in _l(entry.get("files")):
                if isinstance(name, str):
                    wheel_files.setdefault(_soname_stem(name), entry["dir"])
    out = []
    for lib in libs:
        if lib.kind == "cuda" or lib.origin == "env":
            continue
        wheel_dir = wheel_files.get(_soname_stem(posixpath.basename(lib.path)))
        if wheel_dir is not None:
            out.append((lib, wheel_dir))
    return out


def _soname_stem(name: str) -> str:
    """libcudnn.so.9.19.0 -> libcudnn.so.9: what the loader looks for."""
    stem, _, rest = name.partition(".so")
    major = rest.lstrip(".").split(".", 1)[0]
    return f"{stem}.so.{major}" if major else f"{stem}.so"


def _libraries(ctx: _Context) -> tuple[Library, ...]:
    rt = _d(ctx.doc.get("runtime"))
    sites = [s for s in _l(rt.get("site_dirs")) if isinstance(s, str)]
    prefix = _s(_d(rt.get("python")).get("prefix")) or _s(_d(ctx.doc.get("python")).get("prefix"))
    roots = sites + ([prefix] if prefix and prefix not in ("/usr", "/usr/local", "/") else [])
    out = []
    for lib in _l(rt.get("libraries")):
        if not isinstance(lib, dict) or not isinstance(lib.get("path"), str):
            continue
        path = lib["path"]
        base = posixpath.basename(path)
        match = _LIB_KIND.match(base)
        if not match:
            continue
        kind = match.group(1)
        fver = file_version(path)
        api = _i(lib.get("api_version"))
        if kind == "cudnn":
            version = cudnn_version_text(api) or fver
        elif kind in ("cudart", "cuda"):
            version = (cuda_version_text(api) if kind == "cudart" else fver) or fver
            if kind == "cudart" and fver and fver.count(".") >= 2:
                version = fver  # 13.0.96 says more than 13.0
        else:
            version = _s(lib.get("api_version_text")) or fver
        origin = "env" if any(_within(path, r) for r in roots) else "system"
        out.append(Library(kind, path, version, fver, origin,
                           cuda_version_text(_i(lib.get("cudart_version"))) if kind == "cudnn" else None))
    return tuple(out)


# --- rung 4: the matmul ---------------------------------------------------------------------------


def _gpu_reports(ctx: _Context, matmul: dict[int, Matmul]) -> tuple[GpuReport, ...]:
    cuda_devices = [d for d in _l(_d(ctx.doc.get("cuda")).get("devices")) if isinstance(d, dict)]
    by_uuid = {_s(d.get("uuid")): _i(d.get("ordinal")) for d in cuda_devices if d.get("uuid")}
    by_bus = {bus_key(_s(d.get("pci_bus_id"))): _i(d.get("ordinal")) for d in cuda_devices if d.get("pci_bus_id")}
    out = []
    for g in ctx.nvml_gpus:
        ordinal = by_uuid.get(_s(g.get("uuid")))
        if ordinal is None:
            ordinal = by_bus.get(bus_key(_s(g.get("pci_bus_id"))))
        procs = tuple(
            GpuProcess(_i(p.get("pid")) or 0, _s(p.get("name")),
                       (_i(p.get("used_memory")) or 0) // (1024 * 1024) if _i(p.get("used_memory")) else None)
            for p in _l(g.get("processes")) if isinstance(p, dict)
        )
        total = _i(g.get("memory_total"))
        out.append(GpuReport(
            index=_i(g.get("index")) or 0,
            name=_s(g.get("name")),
            uuid=_s(g.get("uuid")),
            pci_bus_id=_s(g.get("pci_bus_id")),
            memory_mib=total // (1024 * 1024) if total else None,
            cuda_ordinal=ordinal,
            processes=procs,
            matmul=matmul.get(ordinal) if ordinal is not None else None,
        ))
    return tuple(out)


def _matmul_rung(ctx: _Context, runtime: Rung) -> tuple[Rung, tuple[GpuReport, ...]]:
    fw = _d(ctx.doc.get("framework"))
    rt = ctx.doc.get("runtime")
    mm = ctx.doc.get("matmul")
    label = ctx.fw_label
    if not fw.get("ran"):
        return _skip(4, "matmul", runtime.summary), _gpu_reports(ctx, {})
    op_ok = isinstance(rt, dict) and _d(rt.get("op")).get("ok") is True
    if not op_ok or not isinstance(mm, dict):
        if op_ok:  # the runtime rung reported, then the child died before the matmul started
            failure = _child_failure(ctx, fw, "matmul")
            if failure is not None:
                return Rung(4, "matmul", "fail", *failure), _gpu_reports(ctx, {})
        return _skip(4, "matmul", "runtime rung failed: no GPU op ran"), _gpu_reports(ctx, {})
    devices = [d for d in _l(_d(rt).get("devices")) if isinstance(d, dict)]
    cuda_n = _i(_d(ctx.doc.get("cuda")).get("device_count")) or 0
    n = _i(mm.get("size")) or 0
    evidence: list[tuple[str, str]] = [
        ("matmul", f"{n}x{n} float32 (TF32 off), {_i(mm.get('repeats'))} timed runs after a warm-up"),
        ("reference", f"first {_i(mm.get('reference_rows'))} rows in float64 NumPy on the CPU"),
        ("tolerance", f"relative error (Frobenius) <= {REL_TOLERANCE:g}"),
    ]
    results: dict[int, Matmul] = {}
    nvml_index = {g.cuda_ordinal: g.index for g in _gpu_reports(ctx, {}) if g.cuda_ordinal is not None}

    def gpu_label(ordinal: int) -> str:
        """GPUs are named by nvidia-smi's index; CUDA's ordinal differs under CUDA_VISIBLE_DEVICES."""
        if ordinal in nvml_index:
            return f"GPU {nvml_index[ordinal]}"
        return f"CUDA device {ordinal}"

    failures: list[tuple[int, str, str, str]] = []
    gpus_data = [g for g in _l(mm.get("gpus")) if isinstance(g, dict)]
    for g in gpus_data:
        index = _i(g.get("index"))
        if index is None:
            continue
        name = _s(g.get("name"))
        if g.get("skipped"):
            results[index] = Matmul("skip", reason="busy: other processes compute on this GPU (--force runs it)")
            continue
        if g.get("error"):
            error = str(g["error"])
            cause, fix = _classify_gpu_error(ctx, error, name)
            results[index] = Matmul("fail", reason=error)
            failures.append((index, f"the matmul failed on {gpu_label(index)}: {error}", cause, fix))
            continue
        seconds, tflops = _f(g.get("seconds")), _f(g.get("tflops"))
        rel, max_abs = _f(g.get("rel_error")), _f(g.get("max_abs_error"))
        if g.get("finite") is False or rel is None:
            results[index] = Matmul("fail", seconds, tflops, None, max_abs, "the result has NaN or Inf")
            failures.append((index, f"{gpu_label(index)} returned NaN/Inf from a matmul of finite numbers",
                             "a GPU that computes NaN from finite inputs has faulty hardware or a broken library",
                             "check `nvidia-smi -q -d ECC,PAGE_RETIREMENT` and `dmesg | grep -i xid`; run "
                             "`dcgmi diag -r 3` if DCGM is installed"))
            continue
        if rel > REL_TOLERANCE:
            results[index] = Matmul("fail", seconds, tflops, rel, max_abs,
                                    f"relative error {rel:.2e} > {REL_TOLERANCE:g}")
            failures.append((index, f"{gpu_label(index)} computed a wrong matmul: relative error {rel:.2e} (tolerance "
                             f"{REL_TOLERANCE:g})",
                             "wrong results from a GPU point to faulty memory or hardware, or a broken math library "
                             "(NVIDIA_TF32_OVERRIDE=1 also lowers precision)",
                             "check `nvidia-smi -q -d ECC,PAGE_RETIREMENT` and `dmesg | grep -i xid`; run `dcgmi diag "
                             "-r 3` if DCGM is installed; reinstall the framework if every GPU is wrong"))
            continue
        results[index] = Matmul("pass", seconds, tflops, rel, max_abs)
    gpus = _gpu_reports(ctx, results)
    reported = {i for i in results}
    missing = [d for d in devices if _i(d.get("index")) not in reported]
    if missing and not mm.get("error"):
        failure = _child_failure(ctx, fw, "matmul")
        first = _i(missing[0].get("index"))
        if failure is not None:
            summary, cause, fix = failure
        else:
            summary, cause, fix = (f"no matmul result from {gpu_label(first or 0)}", "the check ended early",
                                   "see report.framework.stderr_tail")
        failures.insert(0, (first or 0, summary, cause, fix))
    if mm.get("error"):
        error = str(mm["error"])
        return Rung(4, "matmul", "fail", error, "the float64 reference needs NumPy in the check's interpreter",
                    f"install numpy into {ctx.python} (`{ctx.python} -m pip install numpy`)",
                    tuple(evidence)), gpus
    if len(devices) < cuda_n:
        return Rung(4, "matmul", "fail", f"{label} sees {len(devices)} of the {cuda_n} GPUs CUDA sees",
                    f"{label} skips some GPUs (too old a compute capability for this build, or a device it "
                    "could not initialise)",
                    f"see `{ctx.python} -c 'import {label}'` output on the host; {ctx.plan_hint()}",
                    tuple(evidence)), gpus
    if failures:
        failures.sort(key=lambda f: f[0])
        _, summary, cause, fix = failures[0]
        if len(failures) > 1:
            summary += f" (and {len(failures) - 1} more GPU(s))"
        return Rung(4, "matmul", "fail", summary, cause, fix, tuple(evidence)), gpus
    passed = sorted(i for i, m in results.items() if m.status == "pass")
    skipped = sorted(i for i, m in results.items() if m.status == "skip")
    notes = tuple(f"{gpu_label(i)} skipped: busy with other processes (run with --force to check it anyway)"
                  for i in skipped)
    ctx.notes.extend(notes)
    if not passed:
        return Rung(4, "matmul", "skip", "every GPU is busy with other processes: matmul not run (--force runs it)",
                    evidence=tuple(evidence), notes=notes), gpus
    speeds = ", ".join(f"{gpu_label(i)} {tflops:.1f} TFLOP/s" for i in passed
                       if (tflops := results[i].tflops) is not None)
    worst = max(results[i].rel_error or 0.0 for i in passed)
    summary = (f"{len(passed)} of {len(devices)} GPU(s) ran a {n}x{n} float32 matmul correctly (worst relative "
               f"error {worst:.1e}): {speeds}")
    return Rung(4, "matmul", "pass", summary, evidence=tuple(evidence), notes=notes), gpus


__all__ = [
    "DEFAULT_SIZE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_VENV_ROOT",
    "REL_TOLERANCE",
    "REMOTE_SCHEMA_VERSION",
    "RUNGS",
    "SCHEMA_VERSION",
    "VERIFY_ARGV",
    "CheckOptions",
    "GpuProcess",
    "GpuReport",
    "HostVerification",
    "Library",
    "Matmul",
    "Rung",
    "VerifyError",
    "build_payload",
    "judge",
    "parse_verify_output",
    "python_candidates",
    "remote_script_source",
    "venv_python",
    "verify_fleet",
    "verify_host",
    "verify_inferred",
]
