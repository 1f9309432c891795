"""`remediate apply`: carry out a saved plan (canary, batches, stale hosts refused) and show it host by host.

Also home of the progress display `rollback` shares: apply's and the runner's events go on a queue
that one consumer thread renders (rich on a terminal, plain lines otherwise), so the runner never
waits for the terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import click

from remediator.apply import (
    DEFAULT_BATCH_TIMEOUT_S,
    DEFAULT_QUARANTINE_ROOT,
    DEFAULT_TASK_TIMEOUT_S,
    ApplyEvent,
    ApplyOptions,
    ApplyResult,
    PlanFile,
    Serial,
    StopSignal,
    apply_plan,
    default_playbooks_dir,
    default_state_dir,
    read_plan,
    write_json_atomic,
)
from remediator.cli.render import console, host_text, printable
from remediator.errors import InputError, UsageError
from remediator.plan import DEFAULT_VENV_ROOT
from remediator.runner_stream import worker_argv


def common_options(f: Any) -> Any:
    """Options apply and rollback share."""
    for option in reversed([
        click.option("-i", "--inventory", "inventory", metavar="INVENTORY", required=True,
                     help="Ansible inventory with the hosts' connection vars (the plan names hosts only)."),
        click.option("--limit", metavar="PATTERN", help="only hosts matching this Ansible pattern."),
        click.option("--forks", default=10, show_default=True, type=click.IntRange(min=1),
                     help="hosts worked on at once within a batch."),
        click.option("-y", "--yes", is_flag=True, help="go ahead without asking (needed without a terminal); "
                     "also approves actions that need approval (driver, reboot)."),
        click.option("--result", "result_path", metavar="FILE",
                     help="also write the result JSON here (it is always in the run's directory)."),
        click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
                     help="text for people, json for scripts (the result document on stdout)."),
        click.option("--quarantine-root", default=DEFAULT_QUARANTINE_ROOT, show_default=True,
                     help="where moved paths go on the hosts (<root>/<run-id>/)."),
        click.option("--lock-wait", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     help="seconds to wait for a host another apply holds."),
        click.option("--playbooks", "playbooks_dir", type=click.Path(file_okay=False, path_type=Path),
                     envvar="REMEDIATE_PLAYBOOKS", help="directory with remediate.yml and rollback.yml "
                     "(env REMEDIATE_PLAYBOOKS; default: the playbooks of the remediator.gpu collection "
                     "this package ships)."),
        click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), envvar="REMEDIATE_STATE_DIR",
                     help="runs and locks (env REMEDIATE_STATE_DIR; default ~/.local/state/remediator)."),
        click.option("--state-db", metavar="FILE", envvar="REMEDIATE_STATE_DB",
                     help="the state store that records the run (env REMEDIATE_STATE_DB; default "
                     "~/.local/state/remediator/state.db)."),
        click.option("--venv-root", default=DEFAULT_VENV_ROOT, show_default=True, metavar="DIR",
                     help="where remediate keeps its venvs on the hosts: the plan must have been made for the "
                     "same root (`remediate plan --venv-root`); never taken from the plan file."),
        click.option("--task-timeout", type=click.IntRange(min=1), default=DEFAULT_TASK_TIMEOUT_S,
                     show_default=True, metavar="SECONDS",
                     help="a playbook task running longer fails on its host alone (ansible's task timeout)."),
        click.option("--batch-timeout", type=click.IntRange(min=1), default=DEFAULT_BATCH_TIMEOUT_S,
                     show_default=True, metavar="SECONDS",
                     help="a batch's ansible-playbook running longer is stopped and its unfinished hosts fail."),
        click.option("--runner-worker", "runner_worker", metavar="CMD",
                     help="run each batch through ansible-runner's streaming interface, handing the job to CMD "
                     "(split like a shell would, run without one), e.g. 'ansible-runner worker' or "
                     "'ssh exec01 ansible-runner worker' (docs/apply.md, docs/scale.md)."),
    ]):
        f = option(f)
    return f


@click.command("apply")
@click.argument("plan_path", metavar="PLAN")
@common_options
@click.option("--check", is_flag=True, help="ansible's check mode: report what would change, change nothing.")
@click.option("--serial", default="100%", show_default=True, metavar="N|P%",
              help="batch size after the canary: a host count or a share of the hosts.")
@click.option("--max-fail-percent", type=click.IntRange(0, 100), default=0, show_default=True,
              help="stop when more than this share of a batch fails (0: after any failed batch).")
@click.option("--no-canary", is_flag=True, help="start with a full batch instead of one host alone.")
@click.option("--accept-new-host-keys", is_flag=True, help="like OpenSSH StrictHostKeyChecking=accept-new.")
@click.option("--pip-index-url", default="", metavar="URL", help="package index for the framework (no credentials).")
@click.option("--pip-find-links", default="", metavar="DIR|URL", help="a wheelhouse on the hosts, or a URL.")
@click.option("--pip-arg", "pip_args", multiple=True, metavar="ARG", help="one more pip argument (repeatable).")
@click.option("--apt-mirror", default="", metavar="URL", help="Debian/Ubuntu mirror for system packages.")
@click.option("--var", "playbook_vars", multiple=True, metavar="NAME=VALUE",
              help="set one of the playbooks' own remediator_* variables (repeatable; VALUE is read as YAML), "
              "e.g. remediator_pip_installer=uv.")
@click.option("--no-verify", is_flag=True, help="skip the GPU check (`remediate verify`) of the applied hosts.")
@click.option("--timeout", "probe_timeout", type=click.FloatRange(min=1), default=None, metavar="SECONDS",
              help="seconds the probe before apply may run on one host (default: the probe's, 180).")
@click.option("--no-resume", is_flag=True, help="start a new run even if an earlier apply of this plan was "
              "interrupted.")
def apply(plan_path: str, inventory: str, limit: str | None, forks: int, yes: bool, result_path: str | None,
          fmt: str, quarantine_root: str, lock_wait: float, playbooks_dir: Path | None, state_dir: Path | None,
          state_db: str | None, check: bool, serial: str, max_fail_percent: int, no_canary: bool,
          accept_new_host_keys: bool, pip_index_url: str, pip_find_links: str, pip_args: tuple[str, ...],
          apt_mirror: str, playbook_vars: tuple[str, ...], no_verify: bool, no_resume: bool, venv_root: str,
          task_timeout: int, batch_timeout: int, runner_worker: str | None, probe_timeout: float | None) -> int:
    """Carry out a saved plan on its hosts through ansible-runner and the playbooks.

    \b
    Examples:
      remediate apply plan.json -i hosts.yml --check        # what would change
      remediate apply plan.json -i hosts.yml                # asks first
      remediate apply plan.json -i hosts.yml --yes --serial 25% --max-fail-percent 10
      remediate apply plan.json -i hosts.yml --yes --runner-worker 'ssh exec01 ansible-runner worker'

    \b
    Each host of the plan is probed again first: one whose facts no longer match the plan is refused
    (stale); the others are locked, then changed: one canary host alone, then batches of --serial.
    After a batch in which more than --max-fail-percent of the hosts failed or were unreachable, the
    rest are skipped (0: any failure stops the rollout; 100: never stop).

    \b
    Every host ends up as one of:
      applied      the playbook ran through          stale        changed since the plan; not touched
      failed       a task failed (see the task)      skipped      nothing to do, blocked, locked, or stopped
      unreachable  no SSH session                    check        --check ran through

    The applied hosts are then verified (`remediate verify`'s GPU ladder, in the venv the plan made).
    An apply that was killed is picked up by the next apply of the same plan (same run id). Undo a run
    with `remediate rollback RUN_ID -i INVENTORY`.

    Exit 0 when every host was applied (or checked) and verified, 2 when some were, 1 when none could
    be, or on bad input.
    """
    plan = read_plan(plan_path)
    options = ApplyOptions(
        playbooks_dir=(playbooks_dir or default_playbooks_dir()).absolute(),
        state_dir=(state_dir or default_state_dir()).absolute(),
        check=check, serial=Serial.parse(serial), max_fail_percent=max_fail_percent, canary=not no_canary,
        forks=forks, allow_approval=False, quarantine_root=quarantine_root, pip_index_url=pip_index_url,
        pip_find_links=pip_find_links, pip_extra_args=tuple(pip_args), apt_mirror=apt_mirror,
        playbook_vars=parse_vars(playbook_vars),
        accept_new_host_keys=accept_new_host_keys, lock_wait_s=lock_wait, state_db=state_db, verify=not no_verify,
        venv_root=venv_root.rstrip("/") or "/", task_timeout_s=task_timeout, batch_timeout_s=batch_timeout,
        probe_timeout_s=probe_timeout, runner_worker=tuple(worker_argv(runner_worker)) if runner_worker else (),
    )
    inv, known = load_hosts(inventory, limit)
    todo = [h for h in plan.hosts if h.status == "changes" and h.host in {i.name for i in inv}]
    if not check:
        confirm(plan, todo, yes)
        options = _with_approval(options)
    with Progress(fmt == "text") as progress, interruptible() as stop:
        result = apply_plan(plan, inv, options, inventory_path=os.path.abspath(inventory), in_inventory=known,
                            on_event=progress, stop=stop, resume=not no_resume)
    return report(result, result_path, fmt)


def parse_vars(items: tuple[str, ...]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--var {item!r}: give NAME=VALUE")
        try:
            out[name.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            out[name.strip()] = value
    return out


def _with_approval(options: ApplyOptions) -> ApplyOptions:
    import dataclasses

    return dataclasses.replace(options, allow_approval=True)


def load_hosts(inventory: str, limit: str | None) -> tuple[list[Any], set[str]]:
    """The inventory's hosts within the limit, and the names of all its hosts."""
    from remediator.inventory import load_inventory

    inv = load_inventory(inventory, limit)
    known = {h.name for h in (load_inventory(inventory) if limit else inv).hosts}
    return list(inv.hosts), known


def confirm(plan: PlanFile, todo: list[Any], yes: bool) -> None:
    if not todo or yes:
        return
    actions = sum(len(h.actions) for h in todo)
    approval = sum(1 for h in todo for a in h.actions if a.requires_approval)
    text = f"apply {actions} action(s) to {len(todo)} host(s) from {plan.path}"
    if approval:
        text += f", {approval} of them needing approval (driver, reboot)"
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError(f"refusing to {text} without confirmation",
                         hint="pass --yes to go ahead, or --check to see what would change")
    if not click.confirm(text + "?", default=False, err=True):
        raise click.exceptions.Abort()


def report(result: ApplyResult, result_path: str | None, fmt: str) -> int:
    document = result.to_dict()
    if result_path:
        try:
            write_json_atomic(Path(result_path), document)
        except OSError as exc:
            raise InputError(result_path, f"cannot write the result: {exc.strerror or exc}") from None
    if fmt == "json":
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(render_summary(result, result_path))
    return int(result.exit_status)


def render_summary(result: ApplyResult, result_path: str | None = None) -> str:
    width = max((len(printable(h.host)) for h in result.hosts), default=4)
    lines = []
    for h in result.hosts:
        line = f"{printable(h.host):<{width}}  {h.status:<11}"
        if h.error:
            line += "  " + printable(h.error) + (f" [task: {printable(h.task)}]" if h.task else "")
        elif h.resumed:
            line += "  (resumed)"
        if h.verify is not None:
            v = h.verify
            said = "pass" if v.get("passed") else (v.get("verdict") or v.get("error") or "?")
            line += f"\n{'':<{width}}  {'':<11}  verify: {printable(str(said))}"
        if h.status == "failed":
            for a in h.actions:
                if a.get("outcome") != "done":
                    line += (f"\n{'':<{width}}  {'':<11}  {printable(str(a.get('outcome')))}: "
                             f"{printable(str(a.get('what')))}: {printable(str(a.get('why')))}")
        if h.quarantine_manifest and h.status in ("applied", "failed", "unreachable"):
            line += f"\n{'':<{width}}  {'':<11}  manifest: {printable(h.quarantine_manifest)}"
        if h.hint and h.status not in ("applied", "check", "rolled_back"):
            line += f"\n{'':<{width}}  {'':<11}  hint: {printable(h.hint)}"
        lines.append(line)
    counts = result.counts()
    what = "rollback of " + (result.undoes or "?") if result.kind == "rollback" else "apply"
    head = f"{printable(what)} run {printable(result.run_id)}" + (" (check mode)" if result.check else "") + ": "
    lines.append("")
    lines.append(head + ", ".join(f"{n} {s}" for s, n in counts.items()) if counts else head + "no hosts")
    if result.stopped:
        lines.append(f"stopped: {printable(result.stopped)}")
    for note in result.notes:
        lines.append(f"note: {printable(note)}")
    lines.append(f"result: {printable(result_path or os.path.join(result.private_data_dir, 'result.json'))}")
    if result.kind == "apply" and not result.check and any(h.status in ("applied", "failed", "unreachable")
                                                          for h in result.hosts):
        lines.append(f"undo with: remediate rollback {printable(result.run_id)} -i "
                     f"{printable(result.inventory or 'INVENTORY')}")
    return "\n".join(lines)



@contextlib.contextmanager
def interruptible() -> Iterator[StopSignal]:
    """Ctrl-C once: stop after the running batch; twice: cancel it now; three times: give up at once."""
    stop = StopSignal()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    presses = [0]

    def on_int(signum: int, frame: FrameType | None) -> None:
        presses[0] += 1
        if presses[0] >= 3:
            raise KeyboardInterrupt
        if stop.request() == 1:
            click.echo("\nstopping after the running batch (Ctrl-C again to cancel it now)", err=True)
        else:
            click.echo("\ncancelling the running batch", err=True)

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.request()
        stop.request()

    old_int = signal.signal(signal.SIGINT, on_int)
    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


class Progress:
    """Per-host progress on stderr: a live table on a terminal, plain lines otherwise.

    Calls only put the event on a queue; one consumer thread renders, so the runner's thread never
    waits for the terminal.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.queue: queue.SimpleQueue[ApplyEvent | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.rows: dict[str, dict[str, str]] = {}
        self.told: set[str] = set()  # hosts whose failure in the running batch has been printed
        self.live: Any = None

    def __call__(self, event: ApplyEvent) -> None:
        if self.enabled:
            self.queue.put(event)

    def __enter__(self) -> Progress:
        if self.enabled:
            if sys.stderr.isatty():
                from rich.live import Live

                self.live = Live(self.table(), console=console(stderr=True), refresh_per_second=4,
                                 transient=False)
                self.live.start()
            self.thread = threading.Thread(target=self.consume, name="apply-progress", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join(timeout=10)
        if self.live is not None:
            self.live.update(self.table())
            self.live.stop()

    def consume(self) -> None:
        while True:
            event = self.queue.get()
            if event is None:
                return
            try:
                self.handle(event)
            except Exception as exc:  # a display bug must not stop the apply
                click.echo(f"progress display: {type(exc).__name__}: {printable(exc)}", err=True)

    def handle(self, event: ApplyEvent) -> None:
        line = self.update(event)
        if self.live is not None:
            if event.kind in ("phase", "warning") and line:
                from rich.text import Text

                self.live.console.print(Text(line))  # already printable; a Text is never parsed as markup
            self.live.update(self.table())
        elif line:
            click.echo(line, err=True)

    def update(self, event: ApplyEvent) -> str | None:
        """Update the rows; return the plain line for this event, if it is worth one (already printable)."""
        if event.kind == "phase":
            return printable(event.message) if event.message else None
        if event.kind == "warning":
            return f"warning: {printable(event.host) + ': ' if event.host else ''}{printable(event.message or '')}"
        if event.kind == "batch":
            self.told.difference_update(event.hosts)
            for host in event.hosts:
                self.row(host).update(batch=event.batch or "", state="running", task="")
            return f"batch {printable(event.batch)}: {', '.join(printable(h) for h in event.hosts)}"
        if event.kind == "batch_done":
            return None
        if event.kind == "host" and event.host:
            row = self.row(event.host)
            row.update(state=event.status or "", task="" if event.status != "failed" else row.get("task", ""))
            if event.status == "running" or (event.message or "").startswith("not run:"):
                return None  # the "stopped" line said it once for all of them
            said = f"{printable(event.host)}: {printable(event.status)}"
            if event.host in self.told:  # its failure was printed as it happened
                return said
            return said + (f": {printable(event.message)}" if event.message else "")
        if event.kind == "runner" and event.runner is not None:
            return self.runner_event(event)
        return None

    def runner_event(self, event: ApplyEvent) -> str | None:
        r = event.runner
        assert r is not None
        if r.host is None:
            return None
        row = self.row(r.host)
        if r.kind == "start":
            row["task"] = r.task or ""
            return None
        if r.kind in ("ok", "changed", "skipped"):
            row[r.kind] = str(int(row.get(r.kind, "0")) + 1)
        if r.kind == "changed":
            return f"{printable(r.host)}: changed: {printable(r.task or '')}"
        if r.kind in ("failed", "unreachable"):
            row["task"] = r.task or ""
            self.told.add(r.host)
            return f"{printable(r.host)}: {r.kind}: {printable(r.task or '')}: {printable(r.message or '')}"
        return None

    def row(self, host: str) -> dict[str, str]:
        return self.rows.setdefault(host, {"batch": "", "state": "waiting", "task": "", "ok": "0", "changed": "0",
                                           "skipped": "0"})

    def table(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False)
        longest = max((len(printable(h)) for h in self.rows), default=4)
        table.add_column("host", overflow="ellipsis", no_wrap=True, min_width=min(longest, 40))
        table.add_column("batch", overflow="ellipsis", no_wrap=True, min_width=9)
        table.add_column("state", overflow="ellipsis", no_wrap=True, min_width=11)
        for column in ("ok", "changed"):
            table.add_column(column, no_wrap=True, justify="right")
        table.add_column("task", overflow="ellipsis", no_wrap=True)
        styles = {"applied": "green", "check": "green", "rolled_back": "green", "failed": "red",
                  "unreachable": "yellow", "stale": "yellow", "running": "cyan"}
        for host, row in self.rows.items():
            table.add_row(host_text(host, style="bold"), host_text(row["batch"]),
                          host_text(row["state"], style=styles.get(row["state"], "")), Text(row["ok"]),
                          Text(row["changed"]), host_text(row["task"], style="dim"))
        return table
