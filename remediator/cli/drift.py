"""`remediate drift`: probe the fleet, diagnose each host against its target and compare it with its last
known-good state; record everything in the state store and optionally write Prometheus metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from remediator.cli.render import echo_json, printable
from remediator.drift import DriftRun, HostDrift, ProbeFn, run_drift
from remediator.errors import ExitStatus, UsageError
from remediator.probe import DEFAULT_TIMEOUT as DEFAULT_PROBE_TIMEOUT
from remediator.state import ENV_VAR, Store, iso

if TYPE_CHECKING:
    from remediator.inventory import InventoryHost

_SYMBOL = {"appeared": "+", "disappeared": "-", "changed": "~"}
_MARK = {"error": "x", "warning": "!", "info": "i"}


def state_db_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option("--state-db", "state_db", metavar="FILE", envvar=ENV_VAR,
                        help=f"the state store (env {ENV_VAR}; default $XDG_STATE_HOME/remediator/state.db).")(f)


@click.command("drift")
@click.option("-i", "--inventory", metavar="INVENTORY", help="Ansible inventory (required unless --facts).")
@click.option("--limit", metavar="PATTERN", help="only hosts matching this Ansible pattern.")
@click.option("--facts", "facts_path", metavar="FILE|DIR",
              help="check facts gathered by Ansible (remediator.gpu.gpu_facts into its jsonfile fact cache, "
              "docs/scale.md) instead of probing; with -i, the inventory's hosts and their remediate_target.")
@click.option("--facts-max-age", default=86400, show_default=True, type=click.IntRange(min=0), metavar="SECONDS",
              help="with --facts: an entry older than this fails its host; 0: any age.")
@click.option("--target", metavar="FRAMEWORK==VERSION",
              help="what every host should run; default: each host's remediate_target inventory var, else "
              "the framework each env already has (inferred).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--prometheus-textfile", "textfile", metavar="PATH",
              help="also write metrics for node_exporter's textfile collector (a *.prom file, written atomically).")
@click.option("--baseline", is_flag=True,
              help="record the current facts as known-good for hosts that have no known-good state yet.")
@click.option("--accept", is_flag=True,
              help="record the current facts as the new known-good of every host checked, replacing the old one "
              "(after a change made on purpose; choose the hosts with --limit).")
@state_db_option
@click.option("--forks", default=20, show_default=True, type=click.IntRange(min=1), help="hosts probed at once.")
@click.option("--accept-new-host-keys", is_flag=True, help="like OpenSSH StrictHostKeyChecking=accept-new.")
@click.option("--become/--no-become", "become", default=None,
              help="run through `sudo -n` as root (or ansible_become_user), or not, on every host; default: "
              "each host's ansible_become. Never prompts: a host whose sudo wants a password fails alone.")
@click.option("--timeout", default=DEFAULT_PROBE_TIMEOUT, show_default=True, type=click.FloatRange(min=1),
              help="seconds the probe may run on one host; a host that takes longer fails alone.")
def drift(inventory: str | None, limit: str | None, facts_path: str | None, facts_max_age: int,
          target: str | None, fmt: str, textfile: str | None, baseline: bool,
          accept: bool, state_db: str | None, forks: int, accept_new_host_keys: bool, become: bool | None,
          timeout: float) -> int:
    """Check the fleet for drift: from its target (diagnosis) and from its last known-good state.

    The known-good state of a host is the facts of its last verified apply, or what
    `--baseline` recorded. Every probe and check is recorded in the state store; see
    `remediate history HOST` and `remediate report`. A host without a target is judged
    against the framework each of its envs already has, or on its driver and GPUs alone.

    \b
    Examples:
      remediate drift -i hosts.yml --baseline          # first run: remember today's state
      remediate drift -i hosts.yml                     # later: what changed since?
      remediate drift -i hosts.yml --limit gpu07 --accept   # gpu07 changed on purpose: new known-good
      remediate drift -i hosts.yml --prometheus-textfile /var/lib/prometheus/node-exporter/remediator.prom
      remediate drift --facts /var/cache/ansible/facts -i hosts.yml   # facts from Ansible's cache

    Exit 0 when no host drifted, 2 when any did (changed since known-good, or error findings
    against its target), 1 on error (bad input, or a host that could not be probed).
    """
    from remediator.inventory import load_inventory
    from remediator.matrix import load_matrix, parse_target

    if textfile is not None and not textfile.endswith(".prom"):
        raise UsageError(f"--prometheus-textfile must name a *.prom file (the collector reads only those), "
                         f"not {textfile!r}")
    fixed = parse_target(target) if target else None
    matrix = load_matrix()
    if fixed is not None:
        matrix.requirements_for(fixed)
    if inventory is None and facts_path is None:
        raise UsageError("give -i/--inventory (probe the hosts), --facts (gathered facts), or both")
    if limit is not None and inventory is None:
        raise UsageError("--limit needs -i/--inventory", hint="with --facts alone every host of FILE|DIR is checked")
    probe: ProbeFn | None = None
    if facts_path is not None:
        hosts, probe = _gathered(facts_path, inventory, limit, facts_max_age, become)
    else:
        hosts = load_inventory(inventory or "", limit, become=become).hosts
    if not hosts:
        raise UsageError(f"no hosts in {inventory or facts_path}" + (f" match --limit {limit!r}" if limit else ""))
    with Store.open(state_db) as store:
        run = run_drift(hosts, store, matrix, fixed_target=fixed, baseline=baseline, accept=accept,
                        forks=forks, accept_new_host_keys=accept_new_host_keys, timeout=timeout, probe=probe)
        status = exit_status(run)
        if textfile is not None:
            from remediator.metrics import drift_metrics, write_textfile

            last = {}
            for h in run.hosts:
                record = store.last_check(h.host, successful=True)
                if record is not None:
                    last[h.host] = record.at
            write_textfile(textfile, drift_metrics(run, last))
        store.finish_run(run.run_id, int(status))
        db_path = str(store.path)
    if fmt == "json":
        echo_json({**run.to_dict(), "state_db": db_path})
    else:
        click.echo(render_text(run))
    return int(status)


def _gathered(path: str, inventory: str | None, limit: str | None, max_age: int,
              become: bool | None) -> tuple[Sequence[InventoryHost], ProbeFn]:
    """The hosts to check and a `probe` that reads their facts from Ansible's cache instead of the hosts."""
    from remediator.ansible_facts import load_gathered
    from remediator.inventory import InventoryHost, load_inventory

    if inventory is not None:
        hosts: Sequence[InventoryHost] = load_inventory(inventory, limit, become=become).hosts
        gathered = load_gathered(path, hosts=[h.name for h in hosts], max_age=max_age)
    else:
        gathered = load_gathered(path, max_age=max_age)
        hosts = [InventoryHost(name=name, address=name) for name in gathered.hosts]
    for skipped in gathered.skipped:
        click.echo(f"remediate: skipped {printable(skipped.path)}: {printable(skipped.reason)}", err=True)
    return hosts, lambda *_args, **_kwargs: gathered.fleet


def exit_status(run: DriftRun) -> ExitStatus:
    counts = run.counts()
    if counts["unreachable"] or counts["failed"]:
        return ExitStatus.ERROR
    return ExitStatus.CHANGES if counts["drift"] else ExitStatus.OK


# --- text ---------------------------------------------------------------------------------------------



def _target_text(h: HostDrift) -> str:
    if h.target_source == "inferred":
        judged = [t.describe() for t in h.inferred_targets if t.unknown is None]
        return f" ({printable('; '.join(judged))})" if judged else " (no framework to judge: driver and GPUs only)"
    return f" ({printable(h.target)})" if h.target else ""


def render_text(run: DriftRun) -> str:
    lines: list[str] = []
    for h in run.hosts:
        name = printable(h.host) + _target_text(h)
        if h.status in ("unreachable", "failed"):
            lines.append(f"{name}: {h.status}: {printable(h.error or '')}")
            if h.hint:
                lines.append(f"  hint: {printable(h.hint)}")
            continue
        errors = sum(1 for f in h.findings if f.severity == "error")
        warnings = sum(1 for f in h.findings if f.severity == "warning")
        if h.baseline_recorded:
            since = "current facts recorded as known-good"
        elif h.baseline_source is None:
            since = "no known-good state yet (record one with --baseline)"
        else:
            since = f"known-good: {printable(h.baseline_source)} of {iso(h.baseline_at or 0)}"
        parts = []
        if h.changes:
            parts.append(f"{len(h.changes)} change(s) since known-good")
        if errors or warnings:
            parts.append(f"{errors} error(s), {warnings} warning(s) against the target")
        head = "drift: " + ", ".join(parts) if h.status == "drift" else "no drift" + (
            f" ({warnings} warning(s))" if warnings else "")
        lines.append(f"{name}: {head}; {since}")
        for c in h.changes:
            lines.append(f"  {_SYMBOL[c.kind]} [{printable(c.layer)}] {printable(c.summary)}")
        for f in h.findings:
            if f.severity == "info":
                continue
            lines.append(f"  [{_MARK[f.severity]}] {printable(f.code)}: {printable(f.message)}")
            for key, value in f.evidence:
                lines.append(f"        {printable(key)}: {printable(value)}")
    n = run.counts()
    lines.append("")
    lines.append(f"{len(run.hosts)} host(s) in {run.duration_s:.1f}s: {n['ok']} no drift, {n['drift']} drifted, "
                 f"{n['unreachable']} unreachable, {n['failed']} failed")
    return "\n".join(lines)
