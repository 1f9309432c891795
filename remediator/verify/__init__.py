"""The verify step: climb the GPU ladder on a host and judge each rung, naming the first that fails.

The last step of the flow (after apply, or on its own). One round trip per host sends the check
script (the remediator.gpu collection's roles/gpu_check/files/gpu_check.py) to the interpreter that
should run the target (the managed venv by default) and reads back one JSON document of evidence;
`judge` (remediator.verify.judge) is a pure function of that document, the target and the matrix, so
every oddity a real GPU showed is a recorded document under tests/fixtures/verify.

This module runs it across hosts (`verify_host`, `verify_inferred`, `verify_fleet`); `model` holds what
it reports, `context` what the judges share, and `rungs/` one judge per rung.

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
import json
import posixpath
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from remediator.hostscript import collection_script, fill_placeholder, last_line, pynvml_blob, too_old_message
from remediator.matrix import Matrix, Target
from remediator.plan import DEFAULT_VENV_ROOT
from remediator.targets import infer_targets
from remediator.transport.base import Transport
from remediator.transport.become import Become, check_become_failure
from remediator.verify.context import (
    NO_DEVICE,
    bus_key,
    cuda_version_text,
    cudnn_version_text,
    file_version,
    kernel_module_version,
    venv_python,
)
from remediator.verify.judge import MAX_OUTPUT_BYTES, judge, parse_verify_output
from remediator.verify.model import (
    REL_TOLERANCE,
    REMOTE_SCHEMA_VERSION,
    RUNGS,
    SCHEMA_VERSION,
    GpuProcess,
    GpuReport,
    HostVerification,
    Library,
    Matmul,
    Rung,
    RungName,
    RungStatus,
    VerifyError,
)

if TYPE_CHECKING:
    from remediator.facts import HostFacts
    from remediator.fleet import FleetResult, HostResult
    from remediator.inventory import InventoryHost


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


# --- the remote side ----------------------------------------------------------------------------


def remote_script_source() -> str:
    """The check script: the remediator.gpu collection's roles/gpu_check/files/gpu_check.py."""
    return collection_script("roles/gpu_check/files/gpu_check.py")


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
    too_old = too_old_message(stderr)
    if too_old is not None:
        raise VerifyError(too_old, host=host_name,
                          hint="the check needs Python 3.6 or newer: pass another interpreter with --python")
    if result.returncode != 0:
        raise VerifyError(
            f"the check script failed (exit status {result.returncode}): {last_line(stderr) or 'no message'}",
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





__all__ = [
    "DEFAULT_SIZE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_VENV_ROOT",
    "MAX_OUTPUT_BYTES",
    "NO_DEVICE",
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
    "RungName",
    "RungStatus",
    "VerifyError",
    "build_payload",
    "bus_key",
    "cuda_version_text",
    "cudnn_version_text",
    "env_owner",
    "file_version",
    "judge",
    "kernel_module_version",
    "parse_verify_output",
    "python_candidates",
    "remote_script_source",
    "venv_python",
    "verify_fleet",
    "verify_host",
    "verify_inferred",
]

