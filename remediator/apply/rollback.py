"""rollback_run: undo one run on the hosts it touched, from their quarantine manifests."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

from remediator import locks
from remediator.apply.hostvars import connection_vars, extravars
from remediator.apply.options import RUN_ID_RE, ApplyError, ApplyOptions, Serial, new_run_id, now_iso
from remediator.apply.result import ApplyEvent, ApplyResult, HostApply, RunFn, StopSignal
from remediator.apply.rollout import Rollout
from remediator.apply.run import StoreHook
from remediator.apply.rundir import load_result, run_dir
from remediator.errors import UsageError
from remediator.inventory import InventoryHost
from remediator.runner import run_playbook
from remediator.safety import check_venv_root

# --- rollback -----------------------------------------------------------------------------------------


def rollback_run(
    undo_run_id: str,
    inventory: Sequence[InventoryHost],
    options: ApplyOptions,
    *,
    inventory_path: str | None = None,
    limited: bool = False,
    on_event: Callable[[ApplyEvent], None] | None = None,
    stop: StopSignal | None = None,
    run: RunFn = run_playbook,
) -> ApplyResult:
    """Run playbooks/rollback.yml for `undo_run_id` on the inventory's hosts (all of them when `limited`,
    else those the run's local record says it touched, when there is a record)."""
    if not RUN_ID_RE.fullmatch(undo_run_id):
        raise UsageError(f"{undo_run_id!r} is not a run id (like 20260510T120000Z-3f9a1c)",
                         hint="the run id is in apply's summary and result.json")
    playbook = options.playbooks_dir / "rollback.yml"
    if not playbook.is_file():
        raise ApplyError(f"playbook {playbook} not found",
                         hint="pass --playbooks DIR (or set REMEDIATE_PLAYBOOKS) to the directory with rollback.yml")
    record = load_result(options.state_dir, undo_run_id)
    by_name = {h.name: h for h in inventory}
    names = [h.name for h in inventory]
    notes: list[str] = []
    skipped: list[HostApply] = []
    if record is not None and not limited:
        touched = [str(h.get("host")) for h in record.get("hosts", []) if isinstance(h, dict)
                   and h.get("status") in ("applied", "failed", "unreachable", "running")]
        names = [n for n in touched if n in by_name]
        skipped = [HostApply(n, "skipped", error="not in the inventory") for n in touched if n not in by_name]
        notes.append(f"hosts from the record of run {undo_run_id}: {len(touched)}")
    elif record is None:
        notes.append(f"no local record of run {undo_run_id}: rolling back every host given")
    run_id = new_run_id()
    pdd = run_dir(options.state_dir, run_id)
    pdd.mkdir(parents=True, exist_ok=True, mode=0o700)
    hosts = tuple([HostApply(n, "skipped", error="waiting") for n in names] + skipped)
    result = ApplyResult(kind="rollback", run_id=run_id, private_data_dir=str(pdd), state="running", hosts=hosts,
                         inventory=inventory_path, undoes=undo_run_id, started_at=now_iso(), options=options.summary(),
                         notes=tuple(notes), pid=os.getpid())
    # Undoing goes to every host at once and never stops early: each host restores from its own manifest.
    # The venvs to move aside are those under the venv root the run used (its own record says which).
    recorded = ((record or {}).get("options") or {}).get("venv_root")
    root = recorded if isinstance(recorded, str) and check_venv_root(recorded) is None else options.venv_root
    opts = dataclasses.replace(options, check=False, serial=Serial.parse("100%"), max_fail_percent=100,
                               venv_root=root)
    with locks.run_lock(pdd / ".lock"):
        ro = Rollout(kind="rollback", run_id=run_id, options=opts, playbook=playbook, result=result,
                      on_event=on_event, stop=stop, run=run)
        ro.save()
        store = StoreHook(options, run_id, f"rollback {undo_run_id}", ro.emit)

        def work() -> str | None:
            if not names:
                return None
            ro.host_locks = locks.acquire(options.state_dir, names, run_id, started_at=result.started_at,
                                          wait_s=options.lock_wait_s)
            for refused in ro.host_locks.refused:
                ro.set(dataclasses.replace(ro.hosts[refused.host], status="skipped", error=refused.reason))
            held = [n for n in names if n in ro.host_locks.held]
            host_vars = {n: connection_vars(by_name[n]) for n in held}
            extra = {**extravars(undo_run_id, opts), "remediator_rollback_id": run_id}
            return ro.roll_out(held, host_vars, extra, "rolled_back", canary=False) if held else None

        final = ro.run_to_end(work)
    store.record(final)
    return final


