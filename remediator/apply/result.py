"""What an apply or rollback reports: per host, per batch, per run (result.json); progress events."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from remediator.apply.options import (
    ALL_STATUSES,
    GOOD_STATUSES,
    RESULT_SCHEMA_VERSION,
    ApplyOptions,
    HostApplyStatus,
    RunKind,
    RunState,
)
from remediator.errors import ExitStatus
from remediator.facts import HostFacts
from remediator.fleet import FleetResult
from remediator.inventory import InventoryHost
from remediator.runner import RunnerEvent, RunOutcome

# --- results ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostApply:
    host: str
    status: HostApplyStatus
    error: str | None = None
    hint: str | None = None
    batch: str | None = None
    task: str | None = None  # the task that failed
    quarantine_manifest: str | None = None  # where the run's manifest is on the host
    manifest: Mapping[str, Any] | None = None  # its content, when the playbook reported it
    plan_fingerprint: str | None = None
    probed_fingerprint: str | None = None
    resumed: bool = False  # run again after the run was interrupted on this host
    counts: Mapping[str, int] = field(default_factory=dict)
    verify: Mapping[str, Any] | None = None
    planned: str | None = None  # the host's status in the plan, for hosts skipped because of it
    # What became of each planned action (remediator.action_outcomes): done, failed and why, not reached.
    actions: tuple[Mapping[str, Any], ...] = ()

    @property
    def counts_against(self) -> bool:
        """Whether this host keeps the run from being a full success (compliant hosts do not)."""
        return self.status not in GOOD_STATUSES and not (self.status == "skipped" and self.planned == "compliant")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HostApply:
        """A host of an earlier result.json, as far as apply needs it again."""
        def text(key: str) -> str | None:
            value = d.get(key)
            return value if isinstance(value, str) else None

        status = d.get("status")
        counts = d.get("counts")
        return cls(str(d.get("host")), status if status in ALL_STATUSES else "skipped",
                   error=text("error"), hint=text("hint"), batch=text("batch"), task=text("task"),
                   quarantine_manifest=text("quarantine_manifest"), plan_fingerprint=text("plan_fingerprint"),
                   probed_fingerprint=text("probed_fingerprint"), resumed=bool(d.get("resumed")),
                   counts=dict(counts) if isinstance(counts, dict) else {}, planned=text("planned"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host, "status": self.status, "error": self.error, "hint": self.hint, "batch": self.batch,
            "task": self.task, "quarantine_manifest": self.quarantine_manifest,
            "plan_fingerprint": self.plan_fingerprint, "probed_fingerprint": self.probed_fingerprint,
            "resumed": self.resumed, "counts": dict(self.counts), "verify": self.verify, "planned": self.planned,
            "actions": [dict(a) for a in self.actions],
        }


@dataclass(frozen=True)
class BatchResult:
    ident: str
    hosts: tuple[str, ...]
    runner_status: str
    rc: int | None
    failed: int
    artifact_dir: str

    def to_dict(self) -> dict[str, Any]:
        return {"ident": self.ident, "hosts": list(self.hosts), "runner_status": self.runner_status, "rc": self.rc,
                "failed": self.failed, "artifact_dir": self.artifact_dir}


@dataclass(frozen=True)
class ApplyResult:
    kind: RunKind
    run_id: str
    private_data_dir: str
    state: RunState
    hosts: tuple[HostApply, ...]
    batches: tuple[BatchResult, ...] = ()
    check: bool = False
    plan_path: str | None = None
    plan_sha256: str | None = None
    inventory: str | None = None
    undoes: str | None = None  # rollback: the run it undid
    started_at: str = ""
    finished_at: str | None = None
    stopped: str | None = None  # why the rollout stopped before every host had its turn
    resumed: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    pid: int | None = None

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for h in self.hosts:
            out[h.status] = out.get(h.status, 0) + 1
        return out

    @property
    def exit_status(self) -> ExitStatus:
        """0 every host done (applied and verified, checked, rolled back); 2 some; 1 none that were tried."""
        against = [h for h in self.hosts if h.counts_against or _verify_failed(h)]
        if self.state == "finished" and not against:
            return ExitStatus.OK
        good = [h for h in self.hosts if h.status in GOOD_STATUSES]
        tried = [h for h in self.hosts if h.status != "skipped" or h.planned is None]
        if good or not tried:
            return ExitStatus.CHANGES
        return ExitStatus.ERROR

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": RESULT_SCHEMA_VERSION, "kind": self.kind, "run_id": self.run_id,
            "state": self.state, "check": self.check, "undoes": self.undoes,
            "plan": {"path": self.plan_path, "sha256": self.plan_sha256} if self.plan_path else None,
            "inventory": self.inventory, "private_data_dir": self.private_data_dir, "pid": self.pid,
            "started_at": self.started_at, "finished_at": self.finished_at, "resumed": self.resumed,
            "stopped": self.stopped, "options": dict(self.options), "notes": list(self.notes),
            "summary": self.counts(), "exit_status": int(self.exit_status),
            "batches": [b.to_dict() for b in self.batches], "hosts": [h.to_dict() for h in self.hosts],
        }


def _verify_failed(h: HostApply) -> bool:
    return h.verify is not None and h.verify.get("passed") is False


# --- progress -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyEvent:
    """What a progress display is told: a phase, a batch starting or ending, a host's outcome, or a runner
    event. Sent from apply's thread and the runner's; the receiver must only queue it."""

    kind: Literal["phase", "batch", "batch_done", "host", "runner", "warning"]
    message: str | None = None
    host: str | None = None
    status: str | None = None
    batch: str | None = None
    hosts: tuple[str, ...] = ()
    runner: RunnerEvent | None = None


class StopSignal:
    """Ctrl-C as apply understands it: stop after the running batch, or cancel the running batch now."""

    def __init__(self) -> None:
        self.after_batch = threading.Event()
        self.now = threading.Event()

    def request(self) -> int:
        """One more request to stop; returns how many there have been (1: after the batch, 2: now)."""
        if self.after_batch.is_set():
            self.now.set()
            return 2
        self.after_batch.set()
        return 1


ProbeFn = Callable[[Sequence[InventoryHost]], FleetResult[HostFacts]]
RunFn = Callable[..., RunOutcome]
# (host, the plan's target for it) pairs, the venv root, the options -> each host's verify result.
VerifyFn = Callable[[Sequence[tuple[InventoryHost, Mapping[str, Any]]], str, "ApplyOptions"],
                    Mapping[str, Mapping[str, Any]]]


