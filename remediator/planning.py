"""The plan step across a fleet: each host's facts (probed, or gathered by Ansible) -> its HostPlan.

`plan_fleet` is to plan what `probe_fleet` is to the probe: one result per host, never the first error.
A host's target is `--target`, else its inventory's `remediate_target`, else inferred from what it has
installed; its policy takes its `remediator_python_mirror` unless one was given for the whole run. Pure:
the facts come in already read (remediator.probe, remediator.ansible_facts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from remediator.errors import RemediatorError
from remediator.matrix import Matrix, Target, parse_target
from remediator.plan import HostPlan, Policy, TargetSource, plan_host, plan_inferred, unreachable

if TYPE_CHECKING:
    from remediator.facts import HostFacts
    from remediator.fleet import HostResult
    from remediator.inventory import InventoryHost


def host_policy(policy: Policy, host: InventoryHost | None) -> Policy:
    """The policy for one host: its remediator_python_mirror inventory var unless the run names a mirror."""
    mirror = policy.python_mirror or (host.vars.get("remediator_python_mirror") if host is not None else None)
    return replace(policy, python_mirror=str(mirror) if mirror else None)


def plan_one(facts: HostFacts, target: Target | None, matrix: Matrix, policy: Policy,
             host_target: str | None = None) -> HostPlan:
    """One host's plan: against `target`, else `host_target` (its remediate_target), else inferred targets."""
    chosen = target
    source: TargetSource = "--target"
    if chosen is None and host_target:
        source = "inventory"
        try:
            chosen = parse_target(host_target)
        except RemediatorError as exc:
            return HostPlan(host=facts.host, status="blocked", error=f"remediate_target: {exc.message}")
    if chosen is None:
        return plan_inferred(facts, matrix, policy)
    try:
        return replace(plan_host(facts, chosen, matrix, policy), target_source=source)
    except RemediatorError as exc:  # e.g. a remediate_target the matrix does not know
        return HostPlan(host=facts.host, status="blocked", error=exc.message, target_source=source)


def plan_fleet(results: Sequence[HostResult[HostFacts]], hosts: Mapping[str, InventoryHost], target: Target | None,
               matrix: Matrix, policy: Policy) -> list[HostPlan]:
    """A plan per fact-gathering result, in order: unreachable where no facts came, else `plan_one` with the
    host's inventory entry (when `hosts` has it) for its target and mirror."""
    out = []
    for r in results:
        if r.status != "ok" or r.value is None:
            out.append(unreachable(r.host, r.error or r.status) if r.status == "unreachable"
                       else HostPlan(host=r.host, status="unreachable", error=r.error))
            continue
        host = hosts.get(r.host)
        out.append(plan_one(r.value, target, matrix, host_policy(policy, host), host.target if host else None))
    return out


__all__ = ["host_policy", "plan_fleet", "plan_one"]
