"""`remediate probe`: read each host's GPU stack (one round trip per host) and show or save the facts."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from remediator import probe as probe_lib
from remediator.cli.render import console, host_text, printable, write_atomic
from remediator.errors import ExitStatus, RemediatorError, UsageError
from remediator.facts import SCHEMA_VERSION, HostFacts
from remediator.probe import DEFAULT_TIMEOUT, DEFAULT_VENV_ROOTS, probe_host

if TYPE_CHECKING:
    from rich.text import Text

    from remediator.fleet import HostResult


@click.command("probe")
@click.option("-i", "--inventory", metavar="INVENTORY", help="Ansible inventory (INI, YAML or a plugin).")
@click.option("--limit", metavar="PATTERN", help="only hosts matching this Ansible pattern.")
@click.option("--local", is_flag=True, help="probe this machine instead (no inventory, no SSH, no network).")
@click.option("--forks", default=10, show_default=True, type=click.IntRange(min=1), help="hosts probed at once.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts (one JSON document on stdout).",
)
@click.option("--out", "out_path", metavar="FILE", help="also save the JSON document (for diagnose and plan).")
@click.option("--accept-new-host-keys", is_flag=True, help="like OpenSSH StrictHostKeyChecking=accept-new.")
@click.option("--become/--no-become", "become", default=None,
              help="run through `sudo -n` as root (or ansible_become_user), or not, on every host; default: "
              "each host's ansible_become. Never prompts: a host whose sudo wants a password fails alone.")
@click.option(
    "--timeout",
    default=DEFAULT_TIMEOUT,
    show_default=True,
    type=click.FloatRange(min=1),
    help="seconds the probe may run on one host.",
)
@click.option(
    "--connect-timeout", default=10.0, show_default=True, type=click.FloatRange(min=1), help="seconds to connect."
)
@click.option(
    "--venv-root",
    "venv_roots",
    multiple=True,
    metavar="DIR",
    help=f"where to look for venvs and conda envs (repeatable; DIR/* for each subdirectory). "
    f"Default: {', '.join(DEFAULT_VENV_ROOTS)}.",
)
def probe(
    inventory: str | None,
    limit: str | None,
    local: bool,
    forks: int,
    fmt: str,
    out_path: str | None,
    accept_new_host_keys: bool,
    become: bool | None,
    timeout: float,
    connect_timeout: float,
    venv_roots: tuple[str, ...],
) -> int:
    """Read the NVIDIA driver, CUDA toolkits, cuDNN copies, loader path and Python frameworks of hosts.

    Probing only reads. One stdlib-only Python script goes to each host over SSH and runs on its
    python3 (3.6 or newer); nothing needs to be installed there.

    \b
    Examples:
      remediate probe -i hosts.yml
      remediate probe -i hosts.yml --limit 'gpu[0:9]' --forks 50 --out facts.json
      remediate probe --local --format json

    Exit 0 when every host was probed, 1 when any could not be (failed or unreachable: the others
    are still probed and shown).
    """
    if local and (inventory or limit):
        raise UsageError("--local probes this machine; it takes no -i/--inventory or --limit")
    if not local and not inventory:
        raise UsageError("give -i/--inventory, or --local to probe this machine")
    roots = tuple(venv_roots) or DEFAULT_VENV_ROOTS
    for root in roots:
        if not root.startswith("/"):
            raise UsageError(f"--venv-root must be an absolute path, not {root!r}")

    started = time.monotonic()
    if local:
        results = [_probe_local(roots, timeout)]
    else:
        results = _probe_inventory(inventory or "", limit, forks, accept_new_host_keys, connect_timeout, timeout, roots,
                                   become)
    document = probe_document(results)
    from remediator.cli.history import record_probe_safely  # the state store; never fails the command

    record_probe_safely(results)
    # One serialisation for both the file and stdout: at 1,000 hosts each copy is tens of MB.
    text = json.dumps(document, indent=2) if out_path or fmt == "json" else ""
    del document
    if out_path:
        write_atomic(out_path, text + "\n", "facts")
    if fmt == "json":
        click.echo(text)
    else:
        _print_table(results, time.monotonic() - started, out_path)
    return int(ExitStatus.OK if all(r.status == "ok" for r in results) else ExitStatus.ERROR)


def _probe_local(roots: Sequence[str], timeout: float) -> HostResult[HostFacts]:
    from remediator.fleet import HostResult, outcome_of
    from remediator.transport.local import LocalTransport

    started = time.monotonic()
    try:
        facts = probe_host(LocalTransport("localhost"), "localhost", venv_roots=roots, timeout=timeout)
    except RemediatorError as exc:
        status, message, hint = outcome_of(exc)
        return HostResult("localhost", status, None, message, hint, time.monotonic() - started)
    return HostResult("localhost", "ok", facts, None, None, time.monotonic() - started)


def _probe_inventory(
    inventory: str,
    limit: str | None,
    forks: int,
    accept_new: bool,
    connect_timeout: float,
    timeout: float,
    roots: Sequence[str],
    become: bool | None = None,
) -> list[HostResult[HostFacts]]:
    from remediator.inventory import load_inventory

    inv = load_inventory(inventory, limit, become=become)  # never empty (it raises)
    with _progress(len(inv.hosts)) as advance:
        fleet = probe_lib.probe_fleet(  # looked up at call time, as the other commands do
            inv.hosts,
            forks=forks,
            accept_new_host_keys=accept_new,
            connect_timeout=connect_timeout,
            timeout=timeout,
            venv_roots=roots,
            on_result=advance,
        )
    return list(fleet.results)


class _progress:
    """A rich progress bar on stderr while hosts are probed, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar: Any = None

    def __enter__(self) -> Callable[[HostResult[HostFacts]], None] | None:
        if not sys.stderr.isatty():
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("probing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[last]}", markup=False),  # the last host's name: shown, never parsed
            console=console(stderr=True),
            transient=True,
        )
        self.bar.start()
        task = self.bar.add_task("probe", total=self.total, last="")

        def advance(result: HostResult[HostFacts]) -> None:
            self.bar.update(task, advance=1, last=f"{printable(result.host)}: {result.status}")

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def probe_document(results: Sequence[HostResult[HostFacts]]) -> dict[str, Any]:
    """The JSON document of `--format json` and `--out`, which `load_facts_file` reads back."""
    hosts = []
    for r in results:
        hosts.append(
            {
                "host": r.host,
                "status": r.status,
                "error": r.error,
                "hint": r.hint,
                "duration_s": round(r.duration_s, 3),
                "facts": r.value.to_dict() if r.value is not None else None,
            }
        )
    return {"schema_version": SCHEMA_VERSION, "hosts": hosts}



# --- the table ----------------------------------------------------------------------------------



def _print_table(results: Sequence[HostResult[HostFacts]], elapsed: float, out_path: str | None) -> None:
    from rich.table import Table
    from rich.text import Text

    out = console(soft_wrap=False)
    table = Table(show_lines=True)
    for column in ("host", "driver", "CUDA toolkits", "cuDNN", "frameworks"):
        table.add_column(column, overflow="fold")
    for r in results:
        host = host_text(r.host, style="bold")
        if r.value is None:
            status = Text(f"{r.status}: ", style="red" if r.status == "failed" else "yellow")
            status.append(printable(r.error or ""))
            if r.hint:
                status.append(f"\nhint: {printable(r.hint)}", style="dim")
            table.add_row(host, status, "", "", "")
            continue
        facts = r.value
        table.add_row(host, _driver_cell(facts), _toolkits_cell(facts), _cudnn_cell(facts), _frameworks_cell(facts))
    out.print(table)
    counts = {s: sum(1 for r in results if r.status == s) for s in ("ok", "failed", "unreachable")}
    summary = f"{len(results)} host(s) in {elapsed:.1f}s: {counts['ok']} probed"
    if counts["failed"]:
        summary += f", {counts['failed']} failed"
    if counts["unreachable"]:
        summary += f", {counts['unreachable']} unreachable"
    out.print(Text(summary))
    notes = sum(len(r.value.notes) for r in results if r.value is not None)
    if notes:
        out.print(Text(f"{notes} probe note(s): see --format json (facts.notes)", style="dim"))
    if out_path:
        out.print(Text(f"facts saved to {printable(out_path)}; next: remediate diagnose --facts {printable(out_path)}"))


def _lines(parts: Sequence[Text]) -> Text:
    from rich.text import Text

    return Text("\n").join(parts) if parts else Text("none", style="dim")


def _driver_cell(facts: HostFacts) -> Text:
    from rich.text import Text

    d = facts.driver
    text = Text()
    if d.version:
        text.append(printable(d.version), style="bold")
        text.append(f" ({printable(d.source)})")
        if d.cuda_driver_version:
            text.append(f"\nCUDA {printable(d.cuda_driver_version)}")
    else:
        text.append("no driver answered" if d.userspace_version or d.kernel_module_version else "none", style="dim")
    kernel, user = d.kernel_module_version, d.userspace_version
    if kernel and user and kernel != user:
        text.append(f"\nkernel {printable(kernel)} != userspace {printable(user)} (reboot pending?)", style="red")
    elif user and not kernel and not d.version:
        text.append(f"\nuserspace {printable(user)}, module not loaded", style="red")
    if d.error:
        text.append("\n" + printable(d.error.strip().splitlines()[0]), style="red")
    kinds: dict[str, int] = {}
    for gpu in facts.gpus:  # eight identical GPUs are one line
        cc = f" sm {printable(gpu.compute_capability)}" if gpu.compute_capability else ""
        memory = f" {gpu.memory_mib / 1024:.0f} GiB" if gpu.memory_mib else ""
        line = f"{printable(gpu.name)}{memory}{cc}"
        kinds[line] = kinds.get(line, 0) + 1
    for line, count in kinds.items():
        text.append(f"\n{count}x {line}", style="dim")
    return text


def _toolkits_cell(facts: HostFacts) -> Text:
    from rich.text import Text

    parts = []
    for t in facts.toolkits:
        line = Text(printable(t.version or "?"), style="bold" if t.is_default else "")
        line.append(f" {printable(t.install_method)} {printable(t.path)}")
        if t.is_default:
            line.append(" (default" + (", via alternatives)" if t.via_alternatives else ")"), style="green")
        parts.append(line)
    for c in facts.compat_libcuda:
        parts.append(Text(f"compat libcuda {printable(c.version)}", style="dim"))
    return _lines(parts)


def _cudnn_cell(facts: HostFacts) -> Text:
    from rich.text import Text

    parts = []
    for c in facts.cudnn:
        line = Text(printable(c.version), style="bold")
        line.append(f" {printable(c.install_method)} {printable(c.path)}")
        if not c.libraries:
            line.append(" (header only)", style="yellow")
        parts.append(line)
    return _lines(parts)


def _frameworks_cell(facts: HostFacts) -> Text:
    from rich.text import Text

    parts = []
    for env in facts.envs:
        for f in env.frameworks:
            line = Text(f"{printable(f.name)} {printable(f.version)}", style="bold")
            built = []
            if f.is_cuda_build is False:
                built.append("CPU only")
            if f.cuda_build:
                built.append(f"CUDA {printable(f.cuda_build)}")
            if f.cudnn_build:
                built.append(f"cuDNN {printable(f.cudnn_build)}")
            if built:
                line.append(f" ({', '.join(built)})")
            line.append(f" {printable(env.path)}", style="dim")
            parts.append(line)
    return _lines(parts)
