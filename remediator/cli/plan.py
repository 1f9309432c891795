"""`remediate plan`: probe, diagnose and decide per host; print it like `terraform plan`, save it as JSON."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import click

from remediator.action_rules import mirror_problem
from remediator.ansible_facts import DEFAULT_MAX_AGE
from remediator.cli.render import echo_json, printable, write_atomic
from remediator.errors import ExitStatus, UsageError
from remediator.matrix import Matrix, Target, load_matrix, parse_target
from remediator.plan import Action, HostPlan, Plan, Policy
from remediator.planning import plan_fleet
from remediator.probe import DEFAULT_TIMEOUT as DEFAULT_PROBE_TIMEOUT
from remediator.safety import check_venv_root
from remediator.targets import UNKNOWN_CODE

if TYPE_CHECKING:
    from remediator.inventory import InventoryHost


@click.command("plan")
@click.option("-i", "--inventory", metavar="INVENTORY", help="Ansible inventory (INI, YAML or a plugin).")
@click.option("--limit", metavar="PATTERN", help="only hosts matching this Ansible pattern.")
@click.option("--facts", "facts_path", metavar="FILE|DIR",
              help="plan from saved facts instead of probing: a `remediate probe --out` file, one host's Ansible "
              "facts, or Ansible's jsonfile fact cache dir gathered with remediator.gpu.gpu_facts (docs/scale.md). "
              "With -i too: the inventory's hosts, their remediate_target vars, facts from FILE|DIR.")
@click.option("--facts-max-age", default=DEFAULT_MAX_AGE, show_default=True, type=click.IntRange(min=0),
              metavar="SECONDS", help="a fact cache entry older than this fails its host (as Ansible's "
              "fact_caching_timeout expires it); 0: any age.")
@click.option("--target", metavar="FRAMEWORK==VERSION",
              help="what every host should run; default: each host's remediate_target inventory var, else "
              "the framework each env already has (inferred).")
@click.option("--out", "out_path", metavar="FILE", help="save the plan as JSON for `remediate apply`.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--venv-root", default=Policy.venv_root, show_default=True,
              help="where the isolated venvs go (<root>/<framework>-<version>).")
@click.option("--allow-driver-changes", is_flag=True,
              help="plan driver upgrades instead of marking the host blocked (still needs approval).")
@click.option("--python-mirror", metavar="URL",
              help="where a Python the host's distro lacks comes from: an https:// or file:// python-build-"
              "standalone mirror uv installs from; default: each host's remediator_python_mirror inventory var "
              "(docs/plan.md).")
@click.option("--forks", default=20, show_default=True, help="hosts probed at once.")
@click.option("--accept-new-host-keys", is_flag=True, help="like OpenSSH StrictHostKeyChecking=accept-new.")
@click.option("--become/--no-become", "become", default=None,
              help="run through `sudo -n` as root (or ansible_become_user), or not, on every host; default: "
              "each host's ansible_become. Never prompts: a host whose sudo wants a password fails alone.")
@click.option("--timeout", default=DEFAULT_PROBE_TIMEOUT, show_default=True, type=click.FloatRange(min=1),
              help="seconds the probe may run on one host; a host that takes longer fails alone.")
def plan(inventory: str | None, limit: str | None, facts_path: str | None, facts_max_age: int,
         target: str | None, out_path: str | None, fmt: str, venv_root: str, allow_driver_changes: bool, forks: int,
         accept_new_host_keys: bool, become: bool | None, timeout: float, python_mirror: str | None = None) -> int:
    """Decide what each host needs to run its target, without changing anything.

    \b
    Examples:
      remediate plan -i hosts.yml --out plan.json          # targets from remediate_target, else inferred
      remediate plan -i hosts.yml --limit 'gpu[0:9]' --target tensorflow==2.4.1
      remediate plan --facts facts.json --target pytorch==2.11.0 --format json
      remediate plan --facts /var/cache/ansible/facts -i hosts.yml --out plan.json   # Ansible's fact cache

    \b
    Each host ends up in one of four states:
      compliant    nothing to do
      changes      the actions listed will fix it (+ add, - quarantine/remove, ~ change)
      blocked      it cannot be fixed without a decision (old driver, reboot, several frameworks)

    \b
    A host without a target is judged against the framework each of its envs already has
    ("inferred from ENV"); a host with no framework on its driver and GPUs alone.
      unreachable  it could not be probed

    Exit 0 when there is nothing to do, 2 when changes are planned or hosts are blocked, 1 on error
    (bad input, or a host that could not be probed).
    """
    if inventory is None and facts_path is None:
        raise UsageError("give -i/--inventory (probe the hosts), --facts (saved facts), or both")
    if limit is not None and inventory is None:
        raise UsageError("--limit needs -i/--inventory", hint="with --facts alone every host of FILE|DIR is planned")
    why = check_venv_root(venv_root.rstrip("/") or "/")
    if why is not None:
        raise UsageError(f"--venv-root {venv_root!r}: {why}",
                         hint="remediate keeps its venvs (and may quarantine them again) there: use a dir of its "
                              "own, e.g. /opt/remediator/venvs")
    if python_mirror is not None and (bad := mirror_problem(python_mirror)) is not None:
        raise UsageError(f"--python-mirror {python_mirror!r}: {bad}")
    policy = Policy(venv_root=venv_root.rstrip("/"), allow_driver_changes=allow_driver_changes,
                    python_mirror=python_mirror)
    matrix = load_matrix()
    fixed_target = parse_target(target) if target else None
    if fixed_target is not None:
        matrix.requirements_for(fixed_target)  # an unknown version fails before any host is probed

    hosts: list[HostPlan] = []
    if facts_path is not None:
        hosts = _plan_gathered(facts_path, inventory, limit, facts_max_age, fixed_target, matrix, policy, become)
    else:
        hosts = _plan_inventory(inventory or "", limit, fixed_target, matrix, policy, forks, accept_new_host_keys,
                                timeout, become)

    result = Plan(hosts=tuple(hosts), matrix_version=matrix.version, policy=policy,
                  created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    from remediator.cli.history import record_plan_safely  # the state store; never fails the command

    record_plan_safely(result)
    if out_path:
        write_atomic(out_path, json.dumps(result.to_dict(), indent=2) + "\n", "plan")
    if fmt == "json":
        echo_json(result.to_dict())
    else:
        click.echo(render_text(result))
        if out_path:
            click.echo(f"\nplan saved to {out_path}; apply it with: remediate apply {out_path}")
    counts = result.counts()
    if counts["unreachable"]:
        return int(ExitStatus.ERROR)
    return int(ExitStatus.CHANGES if counts["changes"] or counts["blocked"] else ExitStatus.OK)


def _plan_inventory(inventory: str, limit: str | None, target: Target | None, matrix: Matrix, policy: Policy,
                    forks: int, accept_new: bool, timeout: float, become: bool | None = None) -> list[HostPlan]:
    from remediator.inventory import load_inventory
    from remediator.probe import probe_fleet

    inv = load_inventory(inventory, limit, become=become)
    results = probe_fleet(inv.hosts, forks=forks, accept_new_host_keys=accept_new, timeout=timeout).results
    return plan_fleet(results, {h.name: h for h in inv.hosts}, target, matrix, policy)


def _plan_gathered(path: str, inventory: str | None, limit: str | None, max_age: int, target: Target | None,
                   matrix: Matrix, policy: Policy, become: bool | None) -> list[HostPlan]:
    """Plan from saved or Ansible-gathered facts; with an inventory, its hosts and their remediate_target."""
    from remediator.ansible_facts import load_gathered

    by_name: dict[str, InventoryHost] = {}
    if inventory is not None:
        from remediator.inventory import load_inventory

        by_name = {h.name: h for h in load_inventory(inventory, limit, become=become).hosts}
    gathered = load_gathered(path, hosts=list(by_name) if inventory is not None else None, max_age=max_age)
    for skipped in gathered.skipped:
        click.echo(f"remediate: skipped {printable(skipped.path)}: {printable(skipped.reason)}", err=True)
    return plan_fleet(gathered.fleet.results, by_name, target, matrix, policy)


def describe(action: Action) -> str:
    p = action.params
    if action.kind == "quarantine_path":
        return f"quarantine {p['path']} ({p['what']})"
    if action.kind == "remove_package":
        return f"remove package {p['name']}" + (f"={p['version']}" if p.get("version") else "")
    if action.kind == "set_cuda_link":
        return f"{p['link']} -> {p['target']}" + (f" (was {p['previous']})" if p.get("previous") else "")
    if action.kind == "install_package":
        return f"install package {p['name']}" + (f"={p['version']}" if p.get("version") else "")
    if action.kind == "install_python":
        return f"install CPython {p['version']} with uv into {p['home']} from {p['mirror']}"
    if action.kind == "create_venv":
        return f"create venv {p['path']} with {p['python']}" + (" (uv venv)" if p.get("uv") else "")
    if action.kind == "pip_install":
        return f"pip install {' '.join(p['requirements'])} into {p['venv']}"
    if action.kind == "pin_loader_path":
        return f"pin LD_LIBRARY_PATH of {p['venv']} to {':'.join(p['ld_library_path'])}"
    if action.kind == "upgrade_driver":
        return f"upgrade the NVIDIA driver to >= {p['min_version']} (reboot)"
    return "reboot the host"


def _target_text(h: HostPlan) -> str:
    """` (tensorflow==2.12.0)`, ` (tensorflow==2.12.0 inferred from /opt/tf)`, ` (no framework to judge: ...)`."""
    if h.target_source == "inferred":
        judged = [t for t in h.inferred_targets if t.unknown is None]
        if judged:
            return " (" + "; ".join(printable(t.describe()) for t in judged) + ")"
        return " (no framework to judge: driver and GPUs only)"
    return f" ({h.target['framework']}=={h.target['version']})" if h.target else ""


def render_text(result: Plan) -> str:
    lines: list[str] = []
    for h in result.hosts:
        target = _target_text(h)
        name = printable(h.host)
        if h.status == "compliant":
            lines.append(f"{name}{target}: compliant")
        elif h.status == "unreachable":
            lines.append(f"{name}: unreachable: {printable(h.error)}")
        else:
            head = f"{len(h.actions)} to change" if h.status == "changes" else f"blocked: {printable(h.error)}"
            lines.append(f"{name}{target}: {head}")
        for a in h.actions:
            flag = " [needs approval]" if a.requires_approval else ""
            why = f"{a.reason}" + (f" [{a.finding}]" if a.finding else "")
            lines.append(f"  {a.symbol} {printable(describe(a))}{flag}")
            lines.append(f"      because {printable(why)}")
        for f in h.findings:
            if f.code in ("PATH_REFUSED", "VALUE_REFUSED", UNKNOWN_CODE):
                lines.append(f"  ! {printable(f.message)}")
        for k in h.kept:
            lines.append(f"  = kept {printable(k)}")
        for m in h.manual:
            lines.append(f"  ? by hand: {printable(m)}")
    c = result.counts()
    lines.append("")
    lines.append(f"{len(result.hosts)} hosts: {c['compliant']} compliant, {c['changes']} to change, "
                 f"{c['blocked']} blocked, {c['unreachable']} unreachable")
    return "\n".join(lines)
