"""`remediate rollback RUN_ID`: undo an apply run byte for byte from the quarantine manifests on its hosts."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import click

from remediator.apply import ApplyOptions, default_playbooks_dir, default_state_dir, load_result, rollback_run
from remediator.cli.apply import Progress, common_options, interruptible, load_hosts, report
from remediator.errors import UsageError
from remediator.runner_stream import worker_argv


@click.command("rollback")
@click.argument("run_id", metavar="RUN_ID")
@common_options
def rollback(run_id: str, inventory: str, limit: str | None, forks: int, yes: bool, result_path: str | None,
             fmt: str, quarantine_root: str, lock_wait: float, playbooks_dir: Path | None, state_dir: Path | None,
             state_db: str | None, venv_root: str, task_timeout: int, batch_timeout: int,
             runner_worker: str | None) -> int:
    """Undo an apply run: put back what it moved into quarantine and the packages it removed.

    \b
    Examples:
      remediate rollback 20260510T120000Z-3f9a1c -i hosts.yml
      remediate rollback 20260510T120000Z-3f9a1c -i hosts.yml --limit gpu07 --yes

    Runs the collection's playbooks/rollback.yml with the run id on every host the run touched, as this machine's record
    of the run says (`--limit` to choose hosts yourself, or when there is no record here). Each host
    restores from its own manifest (<quarantine root>/RUN_ID/manifest.json); a host without one has
    nothing to undo.

    Exit 0 when every host was rolled back, 2 when some were, 1 when none could be, or on bad input.
    """
    state = (state_dir or default_state_dir()).absolute()
    options = ApplyOptions(
        playbooks_dir=(playbooks_dir or default_playbooks_dir()).absolute(), state_dir=state, forks=forks,
        quarantine_root=quarantine_root, lock_wait_s=lock_wait, state_db=state_db, allow_approval=True,
        venv_root=venv_root.rstrip("/") or "/", task_timeout_s=task_timeout, batch_timeout_s=batch_timeout,
        runner_worker=tuple(worker_argv(runner_worker)) if runner_worker else (),
    )
    record = load_result(state, run_id) if _looks_like_run_id(run_id) else None
    if record is not None and record.get("kind") != "apply":
        raise UsageError(f"{run_id} is a {record.get('kind')} run, not an apply", hint="roll back the apply run")
    root = ((record or {}).get("options") or {}).get("quarantine_root")
    source = click.get_current_context().get_parameter_source("quarantine_root")
    if isinstance(root, str) and source == click.core.ParameterSource.DEFAULT:
        options = dataclasses.replace(options, quarantine_root=root)  # where that apply put things
    inv, _ = load_hosts(inventory, limit)
    if not yes:
        _confirm(run_id, len(inv) if limit or record is None else None)
    with Progress(fmt == "text") as progress, interruptible() as stop:
        result = rollback_run(run_id, inv, options, inventory_path=os.path.abspath(inventory),
                              limited=limit is not None, on_event=progress, stop=stop)
    return report(result, result_path, fmt)


def _looks_like_run_id(run_id: str) -> bool:
    from remediator.apply import RUN_ID_RE

    return RUN_ID_RE.fullmatch(run_id) is not None


def _confirm(run_id: str, hosts: int | None) -> None:
    import sys

    text = f"roll back run {run_id} on " + (f"{hosts} host(s)" if hosts is not None else "the hosts it touched")
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError(f"refusing to {text} without confirmation", hint="pass --yes to go ahead")
    if not click.confirm(text + "?", default=False, err=True):
        raise click.exceptions.Abort()
