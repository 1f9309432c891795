"""The rollout shared by apply and rollback: locks, batches, the canary, max-fail, the runner, the journal."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from remediator import locks
from remediator.action_outcomes import action_outcomes
from remediator.apply.hostvars import manifest_path
from remediator.apply.options import ApplyOptions, HostApplyStatus, RunKind, RunState, batches, failed_beyond, now_iso
from remediator.apply.result import ApplyEvent, ApplyResult, BatchResult, HostApply, RunFn, StopSignal
from remediator.apply.rundir import write_json_atomic
from remediator.runner import HostOutcome, RunnerEvent, RunOutcome

# --- the rollout (shared by apply and rollback) -------------------------------------------------------


class Rollout:
    """Runs one playbook over locked hosts in batches and keeps the run's result.json current."""

    def __init__(self, *, kind: RunKind, run_id: str, options: ApplyOptions, playbook: Path,
                 result: ApplyResult, on_event: Callable[[ApplyEvent], None] | None, stop: StopSignal | None,
                 run: RunFn) -> None:
        self.kind = kind
        self.run_id = run_id
        self.options = options
        self.playbook = playbook
        self.result = result
        self.hosts: dict[str, HostApply] = {h.host: h for h in result.hosts}
        self.batches: list[BatchResult] = list(result.batches)
        self.on_event = on_event
        self.stop = stop or StopSignal()
        self.run = run
        self.pdd = Path(result.private_data_dir)
        self.host_locks: locks.HostLocks | None = None

    def emit(self, event: ApplyEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def set(self, host: HostApply) -> None:
        self.hosts[host.host] = host
        self.emit(ApplyEvent("host", host=host.host, status=host.status, message=host.error, batch=host.batch))

    def snapshot(self, state: RunState, stopped: str | None = None) -> ApplyResult:
        order = [h.host for h in self.result.hosts] + [n for n in self.hosts if n not in
                                                         {h.host for h in self.result.hosts}]
        return dataclasses.replace(
            self.result, state=state, hosts=tuple(self.hosts[n] for n in order), batches=tuple(self.batches),
            stopped=stopped if stopped is not None else self.result.stopped,
            finished_at=now_iso() if state != "running" else None,
        )

    def run_to_end(self, work: Callable[[], str | None]) -> ApplyResult:
        """Run `work` (it returns why the rollout stopped, if it did); whatever happens, release the host
        locks and save the result with the state the run ended in."""
        try:
            stopped = work()
        except BaseException:
            self.save("interrupted", "interrupted: remediate stopped")
            raise
        finally:
            if self.host_locks is not None:
                self.host_locks.release()
        state: RunState = "interrupted" if stopped and stopped.startswith("interrupted") else "finished"
        return self.save(state, stopped)

    def save(self, state: RunState = "running", stopped: str | None = None) -> ApplyResult:
        self.result = self.snapshot(state, stopped)
        write_json_atomic(self.pdd / "result.json", self.result.to_dict())
        return self.result

    def roll_out(self, order: Sequence[str], host_vars: Mapping[str, Mapping[str, Any]],
                 extra: Mapping[str, Any], ok_status: HostApplyStatus, canary: bool) -> str | None:
        """Run the batches; returns why it stopped early, or None when every host had its turn."""
        plan = batches(order, self.options.serial, canary=canary)
        with_canary = canary and len(order) > 1
        first_index = self.next_ident_number()
        for n, batch in enumerate(plan):
            label = "canary" if with_canary and n == 0 else f"batch{n if with_canary else n + 1}"
            ident = f"{first_index + n:02d}-{label}"
            self.emit(ApplyEvent("batch", batch=ident, hosts=tuple(batch)))
            for name in batch:
                self.hosts[name] = dataclasses.replace(self.hosts[name], status="running", batch=ident, error=None)
            self.save()
            outcome = self.run_batch(ident, batch, host_vars, extra)
            failed = 0
            for name in batch:
                h = self.host_from(self.hosts[name], outcome.hosts[name], ident, ok_status)
                if self.kind == "apply" and not self.options.check and h.status in ("applied", "failed"):
                    planned = host_vars[name].get("remediator_actions") or []
                    h = dataclasses.replace(h, actions=tuple(action_outcomes(planned, h.status, h.task, h.error)))
                failed += h.status in ("failed", "unreachable")
                self.set(h)
            self.batches.append(BatchResult(ident, tuple(batch), outcome.status, outcome.rc, failed,
                                            outcome.artifact_dir))
            self.emit(ApplyEvent("batch_done", batch=ident, hosts=tuple(batch), status=outcome.status))
            self.save()
            remaining = [h for b in plan[n + 1:] for h in b]
            why = None
            if outcome.status == "canceled" or self.stop.now.is_set():
                why = "interrupted: the running batch was cancelled"
            elif self.stop.after_batch.is_set() and remaining:
                why = f"interrupted: stopped after batch {ident}"
            elif failed_beyond(failed, len(batch), self.options.max_fail_percent) and remaining:
                share = failed * 100 // len(batch)
                why = (f"{'the canary' if label == 'canary' else f'batch {ident}'} failed ({failed} of "
                       f"{len(batch)} hosts, {share}% > --max-fail-percent {self.options.max_fail_percent})")
            if why is not None:
                self.emit(ApplyEvent("phase", message=f"stopped: {why}; {len(remaining)} host(s) not run"))
                for name in remaining:
                    self.set(dataclasses.replace(self.hosts[name], status="skipped",
                                                 error=f"not run: the rollout stopped: {why}"))
                return why
        return None

    def next_ident_number(self) -> int:
        """After every batch this run dir has seen, a killed one included (its artifacts stay apart)."""
        numbers = [0, len(self.batches)]
        numbers += [int(h.batch[:2]) for h in self.hosts.values() if h.batch and h.batch[:2].isdigit()]
        artifacts = self.pdd / "artifacts"
        if artifacts.is_dir():
            numbers += [int(p.name[:2]) for p in artifacts.iterdir() if p.name[:2].isdigit()]
        return max(numbers) + 1

    def run_batch(self, ident: str, batch: Sequence[str], host_vars: Mapping[str, Mapping[str, Any]],
                  extra: Mapping[str, Any]) -> RunOutcome:
        recorded: list[int] = []

        def on_runner(event: RunnerEvent) -> None:
            if event.pid and not recorded:
                recorded.append(event.pid)
                if self.host_locks is not None:
                    self.host_locks.record_runner(batch, event.pid)
            self.emit(ApplyEvent("runner", host=event.host, batch=ident, runner=event))

        try:
            return self.run(self.playbook, {h: host_vars[h] for h in batch}, extra, private_data_dir=self.pdd,
                            check=self.options.check, on_event=on_runner, ident=ident, forks=self.options.forks,
                            cancel=self.stop.now.is_set, timeout=self.options.batch_timeout_s,
                            envvars={"ANSIBLE_TASK_TIMEOUT": str(self.options.task_timeout_s)},
                            **({"worker": self.options.runner_worker} if self.options.runner_worker else {}))
        finally:
            if self.host_locks is not None and recorded:
                self.host_locks.record_runner(batch, None)

    def host_from(self, before: HostApply, outcome: HostOutcome, ident: str,
                  ok_status: HostApplyStatus) -> HostApply:
        manifest = None if self.options.check or self.kind == "rollback" else manifest_path(self.options,
                                                                                         self.run_id)
        status: HostApplyStatus
        if outcome.status == "ok":
            status = "check" if self.options.check and self.kind == "apply" else ok_status
            error = None
        elif outcome.status == "unreachable":
            status, error = "unreachable", outcome.message or "unreachable"
        else:
            status, error = "failed", outcome.message or "failed"
        return dataclasses.replace(before, status=status, error=error, hint=None, batch=ident, task=outcome.task,
                                   quarantine_manifest=manifest, manifest=outcome.facts.get("remediator_manifest")
                                   if isinstance(outcome.facts.get("remediator_manifest"), Mapping) else None,
                                   counts=outcome.counts())


