"""`remediate verify`: climb the GPU ladder on hosts (or this machine) and say which rung fails, why, and the fix."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import click

from remediator.cli.render import FORMAT_OPTION, echo_json, printable
from remediator.errors import ExitStatus, InputError, RemediatorError, UsageError
from remediator.fleet import HostResult, outcome_of
from remediator.matrix import Matrix, Target, load_matrix, parse_target
from remediator.verify import (
    DEFAULT_SIZE,
    DEFAULT_TIMEOUT,
    DEFAULT_VENV_ROOT,
    REL_TOLERANCE,
    RUNGS,
    SCHEMA_VERSION,
    HostVerification,
    Rung,
    judge,
    verify_fleet,
    verify_host,
)


@click.command("verify")
@click.option("-i", "--inventory", metavar="INVENTORY", help="Ansible inventory (INI, YAML or a plugin).")
@click.option("--limit", metavar="PATTERN", help="only hosts matching this Ansible pattern.")
@click.option("--local", is_flag=True, help="check this machine (no inventory, no SSH).")
@click.option("--report", "report_path", metavar="FILE",
              help="judge a document the check script printed (python3 gpu_check.py > FILE; the script is "
              "roles/gpu_check/files/gpu_check.py of the remediator.gpu collection) instead of running it.")
@click.option("--target", metavar="FRAMEWORK==VERSION",
              help="the framework to check, e.g. pytorch==2.11.0; default: each host's remediate_target, else "
              "(-i) each framework version installed on the host, with its env's interpreter. Without any, rungs "
              "3 and 4 are skipped.")
@click.option("--python", "python", metavar="PATH",
              help="the interpreter that runs the check on the host (it must have the framework). Default: the "
              "target's managed venv <venv-root>/<framework>-<version>/bin/python if it exists, else python3; "
              "an inventory host's remediate_python.")
@click.option("--venv-root", default=DEFAULT_VENV_ROOT, show_default=True, metavar="DIR",
              help="where apply puts the managed venvs.")
@click.option("--force", is_flag=True,
              help="run the matmul also on GPUs other processes are computing on (default: skip them).")
@click.option("--size", default=DEFAULT_SIZE, show_default=True, type=click.IntRange(256, 8192),
              help="n of the n x n float32 matmul of rung 4 (3 n^2 floats on each GPU).")
@click.option("--timeout", default=DEFAULT_TIMEOUT, show_default=True, type=click.FloatRange(min=60),
              help="seconds the check may take on one host (the framework rungs get what NVML and CUDA leave).")
@click.option("--forks", default=10, show_default=True, type=click.IntRange(min=1), help="hosts checked at once.")
@click.option("--accept-new-host-keys", is_flag=True, help="like OpenSSH StrictHostKeyChecking=accept-new.")
@click.option("--become/--no-become", "become", default=None,
              help="run through `sudo -n` as root (or ansible_become_user), or not, on every host; default: "
              "each host's ansible_become. Never prompts: a host whose sudo wants a password fails alone.")
@click.option("--connect-timeout", default=10.0, show_default=True, type=click.FloatRange(min=1),
              help="seconds to connect.")
@FORMAT_OPTION
def verify(inventory: str | None, limit: str | None, local: bool, report_path: str | None, target: str | None,
           python: str | None, venv_root: str, force: bool, size: int, timeout: float, forks: int,
           accept_new_host_keys: bool, become: bool | None, connect_timeout: float, fmt: str) -> int:
    """Check, rung by rung, that hosts can really compute on their GPUs with the target framework.

    \b
    The ladder (each rung pass, fail, or skip with the reason):
      1 driver   kernel module loaded, NVML answers, /dev/nvidia* present, NVML GPUs = PCI GPUs
      2 cuda     the CUDA driver API (libcuda) initialises and sees the GPUs
      3 runtime  the framework loads its CUDA runtime, cuDNN and cuBLAS, and the versions actually
                 loaded (from /proc/self/maps) fit its build and the matrix
      4 matmul   the framework sees every GPU and multiplies float32 matrices on each, checked
                 against float64 NumPy (time, TFLOP/s); GPUs busy with other jobs are skipped
    The first failing rung is named with its cause and a fix. The check installs nothing and keeps
    GPU memory small (TF: memory growth on); rungs 3 and 4 run in a child process with a timeout.

    \b
    Examples:
      remediate verify --local --target pytorch==2.11.0
      remediate verify --local --target pytorch==2.11.0 --python /opt/torch/.venv/bin/python3
      remediate verify -i hosts.yml --limit 'gpu[0:9]' --format json
      remediate verify --report check.json --target pytorch==2.11.0

    Exit 0 when every rung passed (or was skipped with a reason) on every host, 2 when a rung failed
    on some host, 1 on bad input or a host that could not be checked (unreachable, no python).
    """
    modes = sum(1 for m in (inventory, local, report_path) if m)
    if modes != 1:
        raise UsageError("give one of -i/--inventory, --local (this machine) or --report FILE")
    if limit and not inventory:
        raise UsageError("--limit needs -i/--inventory")
    if not venv_root.startswith("/"):
        raise UsageError(f"--venv-root must be an absolute path, not {venv_root!r}")
    matrix = load_matrix()
    fixed = parse_target(target) if target else None
    if fixed is not None:
        matrix.requirements_for(fixed)  # an unknown version fails before any host is touched

    started = time.monotonic()
    if report_path:
        results = [_judge_report(report_path, fixed, matrix)]
    elif local:
        results = [_verify_local(fixed, matrix, python, venv_root, force, size, timeout)]
    else:
        from remediator.inventory import load_inventory

        inv = load_inventory(inventory or "", limit, become=become)  # never empty (it raises)
        fleet = verify_fleet(inv.hosts, matrix, target=fixed, python=python, venv_root=venv_root, force=force,
                             size=size, timeout=timeout, forks=forks, accept_new_host_keys=accept_new_host_keys,
                             connect_timeout=connect_timeout)
        results = list(fleet.results)
    status = exit_status(results)
    document = verify_document(results, target, matrix, status)
    if not report_path:  # a run on hosts (not a saved report judged again): `remediate history` shows it
        from remediator.cli.history import record_verify_safely  # the state store; never fails the command

        record_verify_safely(document["hosts"])
    if fmt == "json":
        echo_json(document)
    else:
        click.echo(render_text(results, time.monotonic() - started))
    return int(status)


def _verify_local(target: Target | None, matrix: Matrix, python: str | None, venv_root: str, force: bool,
                  size: int, timeout: float) -> HostResult[HostVerification]:
    from remediator.transport.local import LocalTransport

    started = time.monotonic()
    try:
        value = verify_host(LocalTransport("localhost"), "localhost", target, matrix, python=python,
                            venv_root=venv_root, force=force, size=size, timeout=timeout)
    except RemediatorError as exc:
        status, message, hint = outcome_of(exc)
        return HostResult("localhost", status, None, message, hint, time.monotonic() - started)
    return HostResult("localhost", "ok", value, None, None, time.monotonic() - started)


def _judge_report(path: str, target: Target | None, matrix: Matrix) -> HostResult[HostVerification]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not JSON: {exc.msg} (line {exc.lineno})") from None
    # Either what remote.py printed, or a whole `remediate verify --format json` document.
    if isinstance(data, dict) and isinstance(data.get("hosts"), list) and data["hosts"]:
        first = data["hosts"][0]
        verification = first.get("verification") if isinstance(first, dict) else None
        data = verification.get("report") if isinstance(verification, dict) else None
    if not isinstance(data, dict):
        raise InputError(path, "neither a check report nor a verify document with one")
    found = data.get("options")
    options: dict[str, Any] = found if isinstance(found, dict) else {}
    if target is None and isinstance(options.get("framework"), str) and isinstance(
            options.get("framework_version"), str):
        target = parse_target(f"{options['framework']}=={options['framework_version']}")
    hostname = data.get("hostname")
    host = hostname if isinstance(hostname, str) else path
    try:
        value = judge(data, host=host, target=target, matrix=matrix)
    except RemediatorError as exc:
        raise InputError(path, exc.message) from None
    return HostResult(host, "ok", value, None, None, 0.0)


def host_status(result: HostResult[HostVerification]) -> str:
    """passed / failed (a rung failed) / unreachable / error (the check could not run)."""
    if result.status == "unreachable":
        return "unreachable"
    if result.value is None:
        return "error"
    return "passed" if result.value.passed else "failed"


def exit_status(results: Sequence[HostResult[HostVerification]]) -> ExitStatus:
    statuses = [host_status(r) for r in results]
    if any(s in ("unreachable", "error") for s in statuses):
        return ExitStatus.ERROR
    return ExitStatus.CHANGES if "failed" in statuses else ExitStatus.OK


def verify_document(results: Sequence[HostResult[HostVerification]], target: str | None, matrix: Matrix,
                    status: ExitStatus) -> dict[str, Any]:
    """The JSON document of `--format json`; each host keeps the raw report the check printed."""
    hosts = []
    counts = {"passed": 0, "failed": 0, "unreachable": 0, "error": 0}
    for r in results:
        state = host_status(r)
        counts[state] += 1
        hosts.append({
            "host": r.host,
            "status": state,
            "error": r.error,
            "hint": r.hint,
            "duration_s": round(r.duration_s, 3),
            "verification": r.value.to_dict() if r.value is not None else None,
        })
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "remediator-verify",
        "target": target,
        "matrix_version": matrix.version,
        "rel_tolerance": REL_TOLERANCE,
        "rungs": [{"rung": n, "name": name, "title": title} for n, name, title in RUNGS],
        "summary": counts,
        "exit_status": int(status),
        "hosts": hosts,
    }


# --- text ---------------------------------------------------------------------------------------



_WORD = {"pass": "pass", "fail": "FAIL", "skip": "skip"}


def _rung_lines(rung: Rung) -> list[str]:
    lines = [f"  {rung.number} {printable(rung.title)}", f"    {_WORD[rung.status]}  {printable(rung.summary)}"]
    if rung.cause:
        lines.append(f"          cause: {printable(rung.cause)}")
    if rung.fix:
        lines.append(f"          fix:   {printable(rung.fix)}")
    if rung.status == "fail":
        for key, value in rung.evidence:
            lines.append(f"          {printable(key)}: {printable(value)}")
    for note in rung.notes:
        lines.append(f"          note: {printable(note)}")
    return lines


def _host_lines(r: HostResult[HostVerification]) -> list[str]:
    v = r.value
    if v is None:
        lines = [f"{printable(r.host)}: {host_status(r)}: {printable(r.error or '')}"]
        if r.hint:
            lines.append(f"  hint: {printable(r.hint)}")
        return lines
    head = f"{printable(v.host)}: {'PASS' if v.passed else 'FAIL'}"
    what = [printable(v.target or "no target")]
    if v.python:
        what.append(f"python {printable(v.python)}" + (f" ({printable(v.python_version)})" if v.python_version
                                                        else ""))
    lines = [f"{head}   [{', '.join(what)}]"]
    in_rungs = {note for rung in v.rungs for note in rung.notes}
    lines += [f"  note: {printable(note)}" for note in v.notes if note not in in_rungs]  # the target inferred
    for rung in v.rungs:
        lines += _rung_lines(rung)
        if rung.name == "runtime" and v.libraries:
            for lib in v.libraries:
                if lib.kind in ("cudart", "cudnn", "cublas", "cuda"):
                    lines.append(f"          {lib.kind:<7} {printable(lib.version or '?'):<10} "
                                 f"{printable(lib.path)} ({printable(lib.origin)})")
        if rung.name == "matmul" and any(g.matmul or g.busy for g in v.gpus):
            lines.append(f"          {'GPU':<4}{'name':<28}{'busy':<6}{'matmul':<8}{'time':>10}{'TFLOP/s':>9}"
                         f"{'rel.err':>10}")
            for g in v.gpus:
                m = g.matmul
                t = f"{m.seconds * 1e3:.2f} ms" if m and m.seconds else "-"
                tf = f"{m.tflops:.1f}" if m and m.tflops else "-"
                err = f"{m.rel_error:.1e}" if m and m.rel_error is not None else "-"
                busy = f"{len(g.processes)}p" if g.busy else "no"
                lines.append(f"          {g.index:<4}{printable(g.name or '?')[:27]:<28}{busy:<6}"
                             f"{printable(m.status if m else 'none'):<8}{t:>10}{tf:>9}{err:>10}")
    lines.append(f"  verdict: {printable(v.verdict)}")
    return lines


def render_text(results: Sequence[HostResult[HostVerification]], elapsed: float) -> str:
    blocks = ["\n".join(_host_lines(r)) for r in results]
    counts = {s: sum(1 for r in results if host_status(r) == s) for s in ("passed", "failed", "unreachable", "error")}
    summary = (f"{len(results)} host(s) in {elapsed:.1f}s: {counts['passed']} passed, {counts['failed']} failed "
               f"a rung, {counts['unreachable']} unreachable")
    if counts["error"]:
        summary += f", {counts['error']} could not be checked"
    return "\n\n".join(blocks) + "\n\n" + summary
