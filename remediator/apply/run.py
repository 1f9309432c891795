"""apply_plan: re-probe, refuse stale hosts, roll the plan out, verify what was applied, record the run."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remediator import locks
from remediator.action_rules import check_actions
from remediator.apply.hostvars import connection_vars, extravars, manifest_path, plan_host_vars
from remediator.apply.options import ApplyError, ApplyOptions, new_run_id, now_iso
from remediator.apply.planfile import PlanFile
from remediator.apply.result import (
    ApplyEvent,
    ApplyResult,
    BatchResult,
    HostApply,
    ProbeFn,
    RunFn,
    StopSignal,
    VerifyFn,
)
from remediator.apply.rollout import Rollout
from remediator.apply.rundir import find_interrupted, run_dir
from remediator.errors import InputError
from remediator.facts import HostFacts
from remediator.fleet import FleetResult
from remediator.inventory import InventoryHost
from remediator.plan import HostPlan, fingerprint
from remediator.runner import run_playbook

# --- apply --------------------------------------------------------------------------------------------


def apply_plan(
    plan: PlanFile,
    inventory: Sequence[InventoryHost],
    options: ApplyOptions,
    *,
    inventory_path: str | None = None,
    in_inventory: Iterable[str] | None = None,
    on_event: Callable[[ApplyEvent], None] | None = None,
    stop: StopSignal | None = None,
    probe: ProbeFn | None = None,
    run: RunFn = run_playbook,
    verify: VerifyFn | None = None,
    resume: bool = True,
) -> ApplyResult:
    """Apply `plan` to the hosts of `inventory` it names (those of the limit); one result per plan host.

    `in_inventory` names every host of the whole inventory (before a limit): plan hosts outside the limit
    are left out of the result, plan hosts missing from the inventory are skipped. `probe`, `run` and
    `verify` stand in for the probe, ansible-runner and remediator.verify in tests.
    """
    playbook = options.playbooks_dir / "remediate.yml"
    if not playbook.is_file():
        raise ApplyError(f"playbook {playbook} not found",
                         hint="pass --playbooks DIR (or set REMEDIATE_PLAYBOOKS) to the directory with remediate.yml")
    if plan.venv_root != options.venv_root:
        raise InputError(plan.path, f"the plan was made for the venv root {plan.venv_root}, this apply uses "
                                    f"{options.venv_root}", field="policy.venv_root",
                         hint=f"pass --venv-root {plan.venv_root} if that is where remediate keeps its venvs, "
                              "or make the plan again")
    by_name = {h.name: h for h in inventory}
    known = set(in_inventory) if in_inventory is not None else set(by_name)
    selected = [h for h in plan.hosts if h.host in by_name or h.host not in known]

    previous = find_interrupted(options.state_dir, plan.sha256) if resume and not options.check else None
    run_id = str(previous["run_id"]) if previous else new_run_id()
    pdd = run_dir(options.state_dir, run_id)
    pdd.mkdir(parents=True, exist_ok=True, mode=0o700)
    with locks.run_lock(pdd / ".lock") as mine:
        if not mine:
            raise ApplyError(f"run {run_id} is in use by another remediate process")
        return _apply_locked(_Context(plan, selected, by_name, options, playbook, run_id, pdd, previous,
                                      inventory_path, on_event, stop, probe, run, verify))


@dataclass(frozen=True)
class _Context:
    """One apply, once its run is chosen and locked: what it carries out, where, and its stand-ins."""

    plan: PlanFile
    selected: Sequence[HostPlan]  # the plan's hosts this apply is about (the limit's)
    by_name: Mapping[str, InventoryHost]
    options: ApplyOptions
    playbook: Path
    run_id: str
    pdd: Path  # the run's private data dir
    previous: Mapping[str, Any] | None  # the interrupted attempt's result.json, when resuming
    inventory_path: str | None
    on_event: Callable[[ApplyEvent], None] | None
    stop: StopSignal | None
    probe: ProbeFn | None
    run: RunFn
    verify: VerifyFn | None


def _apply_locked(ctx: _Context) -> ApplyResult:
    plan, selected, by_name, options, run_id, previous = (ctx.plan, ctx.selected, ctx.by_name, ctx.options,
                                                          ctx.run_id, ctx.previous)
    before = {str(h.get("host")): h for h in (previous or {}).get("hosts", []) if isinstance(h, dict)}
    notes: list[str] = []
    if previous:
        notes.append(f"resumed run {run_id}, interrupted at {previous.get('started_at') or '?'}")
    hosts: list[HostApply] = []
    candidates: list[HostPlan] = []
    for hp in selected:
        earlier = before.get(hp.host)
        if earlier and earlier.get("status") == "applied":
            hosts.append(HostApply(hp.host, "applied", batch=earlier.get("batch"), plan_fingerprint=hp.fingerprint,
                                   quarantine_manifest=manifest_path(options, run_id),
                                   error=None, resumed=True, counts=earlier.get("counts") or {}))
        elif hp.host not in by_name:
            hosts.append(HostApply(hp.host, "skipped", error="not in the inventory", planned=hp.status,
                                   plan_fingerprint=hp.fingerprint))
        elif hp.status != "changes":
            why = {"compliant": "compliant when planned: nothing to do",
                   "blocked": f"blocked when planned: {hp.error or '?'}",
                   "unreachable": f"unreachable when planned: {hp.error or '?'}; plan again"}.get(hp.status, "")
            hosts.append(HostApply(hp.host, "skipped", error=why, planned=hp.status, plan_fingerprint=hp.fingerprint))
        else:
            hosts.append(HostApply(hp.host, "skipped", error="waiting", plan_fingerprint=hp.fingerprint,
                                   batch=earlier.get("batch") if earlier else None))
            candidates.append(hp)
    # Hosts of the interrupted attempt outside this apply's --limit keep their record: a rollback of the
    # run reads it to know where the run went.
    chosen = {hp.host for hp in selected}
    for name, h in before.items():
        if name not in chosen:
            kept = HostApply.from_dict(h)
            if kept.status == "running":
                kept = dataclasses.replace(kept, status="failed", error="left midway by the interrupted attempt "
                                           "and outside this apply's --limit: apply again, or roll back")
            hosts.append(kept)
    started = now_iso()
    result = ApplyResult(
        kind="apply", run_id=run_id, private_data_dir=str(ctx.pdd), state="running", hosts=tuple(hosts),
        check=options.check, plan_path=os.path.abspath(plan.path), plan_sha256=plan.sha256,
        inventory=ctx.inventory_path,
        started_at=str(previous.get("started_at")) if previous else started, resumed=previous is not None,
        options=options.summary(), notes=tuple(notes), pid=os.getpid(),
    )
    if previous:
        result = dataclasses.replace(result, batches=tuple(
            BatchResult(str(b.get("ident")), tuple(b.get("hosts") or ()), str(b.get("runner_status")), b.get("rc"),
                        int(b.get("failed") or 0), str(b.get("artifact_dir")))
            for b in previous.get("batches", []) if isinstance(b, dict)))
    ro = Rollout(kind="apply", run_id=run_id, options=options, playbook=ctx.playbook, result=result,
                 on_event=ctx.on_event, stop=ctx.stop, run=ctx.run)
    ro.save()
    store = StoreHook(options, run_id, "apply --check" if options.check else "apply", ro.emit)

    def work() -> str | None:
        stopped = _apply_candidates(ro, plan, candidates, by_name, options, before, ctx.probe)
        if options.verify and not options.check:
            _verify_applied(ro, plan, by_name, options, ctx.verify or verify_hosts)
        return stopped

    final = ro.run_to_end(work)
    store.record(final)
    return final


def _apply_candidates(ro: Rollout, plan: PlanFile, candidates: Sequence[HostPlan],
                      by_name: Mapping[str, InventoryHost], options: ApplyOptions,
                      before: Mapping[str, Mapping[str, Any]], probe: ProbeFn | None) -> str | None:
    if not candidates:
        return None
    ro.emit(ApplyEvent("phase", message=f"locking {len(candidates)} host(s)"))
    ro.host_locks = locks.acquire(
        options.state_dir, [hp.host for hp in candidates], ro.run_id, started_at=ro.result.started_at,
        wait_s=options.lock_wait_s,
        on_wait=lambda host, holder: ro.emit(ApplyEvent("warning", host=host,
                                                        message=f"waiting for {holder.describe()}")),
    )
    for refused in ro.host_locks.refused:
        ro.set(dataclasses.replace(ro.hosts[refused.host], status="skipped", error=refused.reason,
                                   hint="wait for the other apply to finish, or pass --lock-wait SECONDS"))
    locked = [hp for hp in candidates if hp.host in ro.host_locks.held]
    # Every action checked again here, field by field, before anything runs: a plan file is only JSON and
    # can be edited by hand, and its values came from the hosts.
    ready: list[HostPlan] = []
    for hp in locked:
        bad = check_actions(hp.actions, options.venv_root)
        if bad:
            ro.set(dataclasses.replace(ro.hosts[hp.host], status="failed", error=f"refused: the plan's {bad[0]}",
                                       hint="make the plan again; remediate only carries out actions whose every "
                                            "field fits its rule (docs/security.md)"))
        else:
            ready.append(hp)
    if not ready:
        return None
    ro.emit(ApplyEvent("phase", message=f"probing {len(ready)} host(s) again"))
    probed = _probe(probe, [by_name[hp.host] for hp in ready], options)
    eligible: list[HostPlan] = []
    for hp in ready:
        r = probed[hp.host]
        earlier = before.get(hp.host) or {}
        # A host an interrupted attempt of this run worked on has changed because of it: its fingerprint
        # cannot match, and the playbooks carry on from the run's own manifest.
        attempted = earlier.get("status") in ("running", "failed", "unreachable")
        if r.status != "ok" or r.value is None:
            ro.set(dataclasses.replace(ro.hosts[hp.host], status="unreachable" if r.status == "unreachable"
                                       else "failed", error=f"probe before apply: {r.error}", hint=r.hint))
            continue
        now = fingerprint(r.value)
        h = dataclasses.replace(ro.hosts[hp.host], probed_fingerprint=now)
        if hp.fingerprint is None:
            ro.set(dataclasses.replace(h, status="stale", error="the plan has no fingerprint for this host"))
        elif now != hp.fingerprint and not attempted:
            ro.set(dataclasses.replace(h, status="stale", error="the host changed since the plan was made "
                                       "(its facts no longer match the plan's fingerprint)",
                                       hint="make the plan again: remediate plan -i INVENTORY --out plan.json"))
        else:
            ro.hosts[hp.host] = dataclasses.replace(h, resumed=now != hp.fingerprint, error=None)
            eligible.append(hp)
    if ro.host_locks is not None:
        ro.host_locks.release([hp.host for hp in ready if hp not in eligible])
    if not eligible:
        return None
    host_vars = {hp.host: {**connection_vars(by_name[hp.host]), **plan_host_vars(hp)} for hp in eligible}
    ro.save()
    return ro.roll_out([hp.host for hp in eligible], host_vars, extravars(ro.run_id, options),
                       "applied", canary=options.canary)


def _probe(probe: ProbeFn | None, hosts: Sequence[InventoryHost], options: ApplyOptions) -> FleetResult[HostFacts]:
    if probe is not None:
        return probe(hosts)
    from remediator.probe import DEFAULT_TIMEOUT, probe_fleet

    return probe_fleet(hosts, forks=options.forks, accept_new_host_keys=options.accept_new_host_keys,
                       timeout=options.probe_timeout_s or DEFAULT_TIMEOUT)


def verify_hosts(hosts: Sequence[tuple[InventoryHost, Mapping[str, Any]]], venv_root: str,
                 options: ApplyOptions) -> dict[str, dict[str, Any]]:
    """The GPU ladder of remediator.verify on each host, in the venv the plan made for its target.

    One verify_fleet call per target; each host gets {"passed", "verdict", "first_failure"} or, when the
    ladder could not run, {"passed": None, "error"}.
    """
    from remediator.matrix import Target, load_matrix
    from remediator.verify import verify_fleet

    matrix = load_matrix()
    groups: dict[tuple[str, str], list[InventoryHost]] = {}
    for host, target in hosts:
        groups.setdefault((str(target.get("framework")), str(target.get("version"))), []).append(host)
    out: dict[str, dict[str, Any]] = {}
    for (framework, version), members in groups.items():
        fleet = verify_fleet(members, matrix, target=Target(framework, version), venv_root=venv_root,
                             forks=options.forks, accept_new_host_keys=options.accept_new_host_keys)
        for r in fleet:
            if r.value is None:
                out[r.host] = {"passed": None, "status": r.status, "error": r.error, "hint": r.hint}
                continue
            doc = r.value.to_dict(with_report=False)
            out[r.host] = {"passed": doc["passed"], "verdict": doc["verdict"], "first_failure": doc["first_failure"],
                           "rungs": [{"rung": g["rung"], "name": g["name"], "status": g["status"],
                                      "summary": g["summary"]} for g in doc["rungs"]]}
    return out


def _verify_applied(ro: Rollout, plan: PlanFile, by_name: Mapping[str, InventoryHost], options: ApplyOptions,
                    verify: VerifyFn) -> None:
    """Verify the hosts this run applied (`remediate verify`'s ladder); a verify error is a warning."""
    applied = [h for h in ro.hosts.values() if h.status == "applied" and h.host in by_name]
    todo = [(by_name[h.host], plan.host(h.host).target or {}) for h in applied if plan.host(h.host).target]
    if not todo:
        return
    ro.emit(ApplyEvent("phase", message=f"verifying {len(todo)} host(s)"))
    try:
        results = verify(todo, options.venv_root, options)
    except Exception as exc:  # the hosts are applied whatever verify says
        ro.emit(ApplyEvent("warning", message=f"verify did not run: {exc}"))
        return
    for host, _ in todo:
        result = results.get(host.name)
        if result is None:
            continue
        ro.set(dataclasses.replace(ro.hosts[host.name], verify=dict(result)))
        if result.get("passed") is False:
            ro.emit(ApplyEvent("warning", host=host.name, message=f"verify: {result.get('verdict')}"))
        elif result.get("passed") is None:
            ro.emit(ApplyEvent("warning", host=host.name, message=f"verify could not run: {result.get('error')}"))


class StoreHook:
    """Records the run in the state store (remediator.state); a store error is a warning, never a failure."""

    def __init__(self, options: ApplyOptions, run_id: str, command: str,
                 emit: Callable[[ApplyEvent], None]) -> None:
        self.options = options
        self.run_id = run_id
        self.command = command
        self.emit = emit

    def record(self, result: ApplyResult) -> None:
        from remediator.state import open_store, switched_off

        if not self.options.record_state or switched_off(self.options.state_db):
            return
        try:

            with open_store(self.options.state_db) as store:
                store.start_run(self.command, run_id=self.run_id)
                for h in result.hosts:
                    if h.status == "skipped" and h.planned is not None:
                        continue
                    manifest = dict(h.manifest) if h.manifest is not None else (
                        {"path": h.quarantine_manifest} if h.quarantine_manifest else None)
                    store.record_apply(self.run_id, h.host, h.status, manifest)
                    if h.verify is not None and h.verify.get("passed") is not None:
                        store.record_verify(h.host, dict(h.verify), passed=bool(h.verify["passed"]),
                                            run_id=self.run_id)
                store.finish_run(self.run_id, int(result.exit_status))
        except Exception as exc:  # the hosts are done whatever the store says
            self.emit(ApplyEvent("warning", message=f"could not record the run in the state store: {exc}"))


