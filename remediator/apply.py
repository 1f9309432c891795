"""The apply step: carry a saved plan out on the hosts, a canary first, then in batches; and undo a run.

apply re-probes every host it is about to change and refuses those whose facts no longer match the
plan's fingerprint (stale), locks each host on the control node, then hands the plan's actions to
the playbooks through `runner.run_playbook` (docs/apply.md is the contract). Outcomes come per host
from the runner's stats; a rollout stops when a batch fails beyond `max_fail_percent`, as ansible's
max_fail_percentage does. Every run has its own private data dir under the state dir, whose
`result.json` is written as the run goes, so an apply killed midway is resumed by the next apply of
the same plan (same run id, so one quarantine and one rollback cover both).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import importlib.resources
import json
import os
import re
import secrets
import shlex
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from remediator import locks
from remediator.action_outcomes import action_outcomes
from remediator.action_rules import check_actions, check_target
from remediator.errors import ExitStatus, InputError, RemediatorError, UsageError
from remediator.facts import HostFacts
from remediator.files import write_private
from remediator.fleet import FleetResult
from remediator.inventory import InventoryHost
from remediator.plan import DEFAULT_VENV_ROOT, PLAN_SCHEMA_VERSION, Action, HostPlan, fingerprint
from remediator.runner import HostOutcome, RunnerEvent, RunOutcome, run_playbook
from remediator.safety import check_venv_root

RESULT_SCHEMA_VERSION = 1
# "running" appears only in the result.json of a run that is still going or was killed.
HostApplyStatus = Literal["applied", "failed", "unreachable", "stale", "skipped", "check", "rolled_back", "running"]
RunKind = Literal["apply", "rollback"]
RunState = Literal["running", "finished", "interrupted"]

DEFAULT_QUARANTINE_ROOT = "/var/lib/remediator/quarantine"
DEFAULT_TASK_TIMEOUT_S = 3600  # a TensorFlow [and-cuda] install from PyPI takes minutes, not an hour
DEFAULT_BATCH_TIMEOUT_S = 4 * 3600
RUN_ID_RE = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
_GOOD: frozenset[str] = frozenset({"applied", "check", "rolled_back"})
_STATUSES: frozenset[str] = frozenset(
    {"applied", "failed", "unreachable", "stale", "skipped", "check", "rolled_back", "running"})


class ApplyError(RemediatorError):
    """apply or rollback could not start (a run dir, a lock on the run, a bad option)."""


# --- options ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Serial:
    """Batch size after the canary: a host count (`5`) or a share of the run's hosts (`25%`)."""

    raw: str
    count: int | None = None
    percent: int | None = None

    @classmethod
    def parse(cls, text: str) -> Serial:
        value = text.strip()
        m = re.fullmatch(r"(\d{1,3})%", value)
        if m and 1 <= int(m.group(1)) <= 100:
            return cls(value, percent=int(m.group(1)))
        if value.isdigit() and int(value) >= 1:
            return cls(value, count=int(value))
        raise UsageError(f"--serial {text!r}: give a host count (5) or a percentage from 1% to 100% (25%)")

    def batch_size(self, total: int) -> int:
        """As ansible computes `serial`: a percentage of all the run's hosts, rounded down, at least one."""
        if self.count is not None:
            return max(1, self.count)
        return max(1, total * (self.percent or 100) // 100)


def batches(hosts: Sequence[str], serial: Serial, *, canary: bool = True) -> list[list[str]]:
    """The canary (the first host) alone, then the rest `serial` at a time, in order."""
    if not hosts:
        return []
    rest = list(hosts)
    out: list[list[str]] = []
    if canary and len(rest) > 1:
        out.append([rest.pop(0)])
    size = serial.batch_size(len(hosts))
    out.extend(rest[i:i + size] for i in range(0, len(rest), size))
    return out


def failed_beyond(failed: int, tried: int, max_fail_percent: int) -> bool:
    """ansible's max_fail_percentage: stop when the batch's failed share *exceeds* the percentage."""
    return tried > 0 and failed * 100 > max_fail_percent * tried


@dataclass(frozen=True)
class ApplyOptions:
    playbooks_dir: Path
    state_dir: Path
    check: bool = False
    serial: Serial = field(default_factory=lambda: Serial.parse("100%"))
    max_fail_percent: int = 0
    canary: bool = True
    forks: int = 10
    allow_approval: bool = False
    quarantine_root: str = DEFAULT_QUARANTINE_ROOT
    pip_index_url: str = ""
    pip_find_links: str = ""
    pip_extra_args: tuple[str, ...] = ()
    apt_mirror: str = ""
    # More extravars for the playbooks' own knobs (remediator_pip_installer=uv, ...); never apply's own.
    playbook_vars: Mapping[str, Any] = field(default_factory=dict)
    accept_new_host_keys: bool = False
    lock_wait_s: float = 0.0
    state_db: str | None = None  # the state store (remediator.state); None: its default path
    record_state: bool = True
    verify: bool = True
    # Where remediate keeps its venvs on the hosts: from apply's own options, never from the plan file.
    venv_root: str = DEFAULT_VENV_ROOT
    # A task that runs longer fails on its host alone (ansible's task timeout); a whole ansible-playbook
    # run (one batch) that runs longer is stopped, its hosts failed, and the rollout goes on by its rules.
    task_timeout_s: int = DEFAULT_TASK_TIMEOUT_S
    batch_timeout_s: int = DEFAULT_BATCH_TIMEOUT_S
    probe_timeout_s: float | None = None  # the probe before apply, per host; None: the probe's default
    # `--runner-worker`: each batch goes through ansible-runner's streaming interface to this command (argv).
    runner_worker: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        why = check_venv_root(self.venv_root)
        if why is not None:
            raise UsageError(f"--venv-root {self.venv_root!r}: {why}",
                             hint="remediate keeps its venvs there; use a dir of its own, e.g. " + DEFAULT_VENV_ROOT)
        if self.task_timeout_s < 1 or self.batch_timeout_s < 1:
            raise UsageError("--task-timeout and --batch-timeout must be at least 1 second")
        if not 0 <= self.max_fail_percent <= 100:
            raise UsageError(f"--max-fail-percent must be 0 to 100, not {self.max_fail_percent}")
        if self.forks < 1:
            raise UsageError(f"--forks must be at least 1, not {self.forks}")
        root = self.quarantine_root
        if not root.startswith("/") or root.rstrip("/").count("/") < 2 or ".." in root.split("/"):
            raise UsageError(f"--quarantine-root must be an absolute path at least two levels deep, not {root!r}")
        values = [("--pip-index-url", self.pip_index_url), ("--pip-find-links", self.pip_find_links),
                  ("--apt-mirror", self.apt_mirror), *(("--pip-arg", a) for a in self.pip_extra_args),
                  *((f"--var {k}", v) for k, v in self.playbook_vars.items() if isinstance(v, str))]
        for name, url in values:
            if re.search(r"[a-z][a-z0-9+.-]*://[^/@\s]*@", url, re.IGNORECASE):
                raise UsageError(f"{name} must not carry credentials (user:password@): they would be written "
                                 "into the run's artifacts",
                                 hint="put them in the hosts' pip.conf / netrc, or serve a wheelhouse")

        for name in self.playbook_vars:
            if not re.fullmatch(r"remediator_[a-z0-9_]+", name) or name in _OWN_EXTRAVARS:
                raise UsageError(f"--var {name}: only the playbooks' own remediator_* variables may be set "
                                 f"(not {', '.join(sorted(_OWN_EXTRAVARS))})")

    def summary(self) -> dict[str, Any]:
        return {"check": self.check, "serial": self.serial.raw, "max_fail_percent": self.max_fail_percent,
                "canary": self.canary, "forks": self.forks, "allow_approval": self.allow_approval,
                "quarantine_root": self.quarantine_root, "playbook_vars": dict(self.playbook_vars),
                "venv_root": self.venv_root, "task_timeout_s": self.task_timeout_s,
                "batch_timeout_s": self.batch_timeout_s,
                # The worker's program only: its arguments may name hosts, nodes or tokens of the user's.
                "runner_worker": os.path.basename(self.runner_worker[0]) if self.runner_worker else None}


_OWN_EXTRAVARS = frozenset({
    "remediator_run_id", "remediator_rollback_id", "remediator_quarantine_root", "remediator_allow_approval",
    "remediator_pip_index_url", "remediator_pip_find_links", "remediator_pip_extra_args", "remediator_apt_mirror",
    "remediator_control_pid", "remediator_actions", "remediator_target", "remediator_fingerprint",
    "remediator_venv_root", "remediator_managed_roots",
})


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$REMEDIATE_STATE_DIR, else $XDG_STATE_HOME/remediator, else ~/.local/state/remediator."""
    env = os.environ if environ is None else environ
    if env.get("REMEDIATE_STATE_DIR"):
        return Path(env["REMEDIATE_STATE_DIR"]).expanduser()
    base = env.get("XDG_STATE_HOME") or ""
    root = Path(base) if base.startswith("/") else Path(env.get("HOME") or Path.home()) / ".local" / "state"
    return root / "remediator"


def default_playbooks_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$REMEDIATE_PLAYBOOKS, else the playbooks of the remediator.gpu collection this package ships."""
    env = os.environ if environ is None else environ
    if env.get("REMEDIATE_PLAYBOOKS"):
        return Path(env["REMEDIATE_PLAYBOOKS"]).expanduser()
    return collection_dir() / "playbooks"


def collection_dir() -> Path:
    """The remediator.gpu collection inside this package (package data: the wheel holds it too)."""
    return Path(str(importlib.resources.files("remediator"))) / "ansible_collections" / "remediator" / "gpu"


def new_run_id(now: dt.datetime | None = None) -> str:
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# --- the plan file ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanFile:
    path: str
    sha256: str
    hosts: tuple[HostPlan, ...]
    venv_root: str

    def host(self, name: str) -> HostPlan:
        for h in self.hosts:
            if h.host == name:
                return h
        raise KeyError(name)


def read_plan(path: str) -> PlanFile:
    """Read what `remediate plan --out` wrote: the hosts, their actions and fingerprints (InputError if bad)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read the plan: {exc.strerror or exc}",
                         hint="save one with `remediate plan -i INVENTORY --out plan.json`") from None
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise InputError(path, f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or "hosts" not in doc:
        raise InputError(path, "not a plan file (no hosts)", hint="save one with `remediate plan --out`")
    if doc.get("schema_version") != PLAN_SCHEMA_VERSION:
        raise InputError(path, f"plan schema_version {doc.get('schema_version')!r} is not "
                               f"{PLAN_SCHEMA_VERSION}", hint="make the plan again with this version of remediate")
    policy = doc.get("policy")
    root = policy.get("venv_root") if isinstance(policy, dict) else None
    venv_root = root if isinstance(root, str) else DEFAULT_VENV_ROOT
    why = check_venv_root(venv_root)
    if why is not None:
        raise InputError(path, f"venv root {venv_root!r}: {why}", field="policy.venv_root",
                         hint="a plan file is only JSON: make the plan again with `remediate plan --out`")
    hosts_doc = doc["hosts"]
    if not isinstance(hosts_doc, list):
        raise InputError(path, "hosts: not a list")
    hosts: list[HostPlan] = []
    seen: set[str] = set()
    for i, h in enumerate(hosts_doc):
        hp = _host_plan(path, i, h)
        if hp.host in seen:
            raise InputError(path, f"host {hp.host!r} appears twice", field=f"hosts[{i}]")
        seen.add(hp.host)
        hosts.append(hp)
    return PlanFile(path, hashlib.sha256(raw).hexdigest(), tuple(hosts), venv_root)


def _host_plan(path: str, i: int, h: Any) -> HostPlan:
    where = f"hosts[{i}]"
    if not isinstance(h, dict) or not isinstance(h.get("host"), str) or not h["host"]:
        raise InputError(path, "not a host entry with a name", field=where)
    status = h.get("status")
    if status not in ("compliant", "changes", "blocked", "unreachable"):
        raise InputError(path, f"status {status!r} is not compliant/changes/blocked/unreachable", field=where)
    actions: list[Action] = []
    raw_actions = h.get("actions") or []
    if not isinstance(raw_actions, list):
        raise InputError(path, "actions: not a list", field=where)
    for j, a in enumerate(raw_actions):
        if not (isinstance(a, dict) and isinstance(a.get("kind"), str) and isinstance(a.get("params"), dict)):
            raise InputError(path, "not an action with a kind and params", field=f"{where}.actions[{j}]")
        actions.append(Action(a["kind"], dict(a["params"]), a.get("finding"), str(a.get("reason") or ""),
                              bool(a.get("requires_approval"))))
    target = h.get("target")
    bad_target = check_target(target)
    if bad_target is not None:
        raise InputError(path, bad_target, field=where)
    fp = h.get("fingerprint")
    if fp is not None and not (isinstance(fp, str) and re.fullmatch(r"sha256:[0-9a-f]{64}", fp)):
        raise InputError(path, f"fingerprint {fp!r} is not sha256:<64 hex>", field=where)
    return HostPlan(host=h["host"], status=status, target=dict(target) if isinstance(target, dict) else None,
                    actions=tuple(actions), fingerprint=fp, error=h.get("error") if isinstance(h.get("error"), str)
                    else None)


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
        return self.status not in _GOOD and not (self.status == "skipped" and self.planned == "compliant")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HostApply:
        """A host of an earlier result.json, as far as apply needs it again."""
        def text(key: str) -> str | None:
            value = d.get(key)
            return value if isinstance(value, str) else None

        status = d.get("status")
        counts = d.get("counts")
        return cls(str(d.get("host")), status if status in _STATUSES else "skipped",
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
        good = [h for h in self.hosts if h.status in _GOOD]
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


# --- the host vars the playbooks get ------------------------------------------------------------------


def ssh_common_args(host: InventoryHost) -> str:
    """The probe's strictness for ansible's ssh: the same known_hosts files, changed or unknown keys refused.

    The inventory's own ssh arguments follow; ssh takes the first value of an option, so ours win.
    """
    from remediator.transport.ssh import USER_KNOWN_HOSTS

    files = host.known_hosts_files or tuple(os.path.expanduser(p) for p in USER_KNOWN_HOSTS)
    ours = ["-o", "UserKnownHostsFile=" + " ".join(files), "-o", "StrictHostKeyChecking=yes"]
    text = " ".join(shlex.quote(part) for part in ours)
    return f"{text} {host.ssh_args}".strip()


def connection_vars(host: InventoryHost) -> dict[str, Any]:
    """The connection vars of an inventory host, copied for ansible (paths to keys, never key material)."""
    out: dict[str, Any] = {}
    if host.connection == "local":
        # As ansible's implicit localhost: this machine runs modules with the Python running ansible.
        out["ansible_connection"] = "local"
        out["ansible_python_interpreter"] = "{{ ansible_playbook_python }}"
    else:
        out["ansible_host"] = host.address
        if not host.port_defaulted:
            out["ansible_port"] = host.port
        if host.user:
            out["ansible_user"] = host.user
        if host.private_key_file:
            out["ansible_ssh_private_key_file"] = host.private_key_file
        out["ansible_ssh_common_args"] = ssh_common_args(host)
    if host.become:
        out["ansible_become"] = True
    out.update(host.ansible_vars)
    return out


def plan_host_vars(hp: HostPlan) -> dict[str, Any]:
    return {
        "remediator_actions": [a.to_dict() for a in hp.actions],
        "remediator_target": dict(hp.target) if hp.target else {},
        "remediator_fingerprint": hp.fingerprint,
    }


def extravars(run_id: str, options: ApplyOptions) -> dict[str, Any]:
    out: dict[str, Any] = {
        **options.playbook_vars,
        "remediator_run_id": run_id,
        "remediator_quarantine_root": options.quarantine_root.rstrip("/"),
        "remediator_allow_approval": options.allow_approval,
        "remediator_pip_index_url": options.pip_index_url,
        "remediator_pip_find_links": options.pip_find_links,
        "remediator_pip_extra_args": list(options.pip_extra_args),
        # The host lock role asks this machine whether the holder of a host's lock still runs.
        "remediator_control_pid": os.getpid(),
        "remediator_venv_root": options.venv_root,
        # The only dir whose children the quarantine may treat as venvs remediate made: apply's own option.
        "remediator_managed_roots": [options.venv_root],
    }
    if options.apt_mirror:
        out["remediator_apt_mirror"] = options.apt_mirror
    return out


def manifest_path(options: ApplyOptions, run_id: str) -> str:
    return f"{options.quarantine_root.rstrip('/')}/{run_id}/manifest.json"


# --- the run directory and its journal ----------------------------------------------------------------


def runs_dir(state_dir: Path) -> Path:
    return state_dir / "runs"


def run_dir(state_dir: Path, run_id: str) -> Path:
    if not RUN_ID_RE.fullmatch(run_id):
        raise UsageError(f"{run_id!r} is not a run id (like 20260510T120000Z-3f9a1c)")
    return runs_dir(state_dir) / run_id


def load_result(state_dir: Path, run_id: str) -> dict[str, Any] | None:
    """The result.json of a run in the state dir, or None when there is none (or it is unreadable)."""
    try:
        doc = json.loads((run_dir(state_dir, run_id) / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def find_interrupted(state_dir: Path, plan_sha256: str) -> dict[str, Any] | None:
    """The newest apply of this plan (not in check mode) that never finished and whose process is gone."""
    base = runs_dir(state_dir)
    if not base.is_dir():
        return None
    for entry in sorted(base.iterdir(), reverse=True):
        if not RUN_ID_RE.fullmatch(entry.name):
            continue
        doc = load_result(state_dir, entry.name)
        if doc is None or doc.get("kind") != "apply" or doc.get("check") or doc.get("state") == "finished":
            continue
        if (doc.get("plan") or {}).get("sha256") != plan_sha256:
            continue
        if locks.is_locked(entry / ".lock"):
            continue  # still running
        return doc
    return None


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """The run's result: 0600, through an unpredictable temp name, never through a planted symlink."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps(data, indent=2) + "\n")


# --- the rollout (shared by apply and rollback) -------------------------------------------------------


class _Rollout:
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
            finished_at=_now() if state != "running" else None,
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
        return _apply_locked(plan, selected, by_name, options, playbook, run_id, pdd, previous, inventory_path,
                             on_event, stop, probe, run, verify)


def _apply_locked(plan: PlanFile, selected: Sequence[HostPlan], by_name: Mapping[str, InventoryHost],
                  options: ApplyOptions, playbook: Path, run_id: str, pdd: Path, previous: Mapping[str, Any] | None,
                  inventory_path: str | None, on_event: Callable[[ApplyEvent], None] | None,
                  stop: StopSignal | None, probe: ProbeFn | None, run: RunFn, verify: VerifyFn | None) -> ApplyResult:
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
    started = _now()
    result = ApplyResult(
        kind="apply", run_id=run_id, private_data_dir=str(pdd), state="running", hosts=tuple(hosts),
        check=options.check, plan_path=os.path.abspath(plan.path), plan_sha256=plan.sha256, inventory=inventory_path,
        started_at=str(previous.get("started_at")) if previous else started, resumed=previous is not None,
        options=options.summary(), notes=tuple(notes), pid=os.getpid(),
    )
    if previous:
        result = dataclasses.replace(result, batches=tuple(
            BatchResult(str(b.get("ident")), tuple(b.get("hosts") or ()), str(b.get("runner_status")), b.get("rc"),
                        int(b.get("failed") or 0), str(b.get("artifact_dir")))
            for b in previous.get("batches", []) if isinstance(b, dict)))
    ro = _Rollout(kind="apply", run_id=run_id, options=options, playbook=playbook, result=result,
                  on_event=on_event, stop=stop, run=run)
    ro.save()
    store = _StoreHook(options, run_id, "apply --check" if options.check else "apply", ro.emit)

    def work() -> str | None:
        stopped = _apply_candidates(ro, plan, candidates, by_name, options, before, probe)
        if options.verify and not options.check:
            _verify_applied(ro, plan, by_name, options, verify or verify_hosts)
        return stopped

    final = ro.run_to_end(work)
    store.record(final)
    return final


def _apply_candidates(ro: _Rollout, plan: PlanFile, candidates: Sequence[HostPlan],
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


def _verify_applied(ro: _Rollout, plan: PlanFile, by_name: Mapping[str, InventoryHost], options: ApplyOptions,
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


class _StoreHook:
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
                         inventory=inventory_path, undoes=undo_run_id, started_at=_now(), options=options.summary(),
                         notes=tuple(notes), pid=os.getpid())
    # Undoing goes to every host at once and never stops early: each host restores from its own manifest.
    # The venvs to move aside are those under the venv root the run used (its own record says which).
    recorded = ((record or {}).get("options") or {}).get("venv_root")
    root = recorded if isinstance(recorded, str) and check_venv_root(recorded) is None else options.venv_root
    opts = dataclasses.replace(options, check=False, serial=Serial.parse("100%"), max_fail_percent=100,
                               venv_root=root)
    with locks.run_lock(pdd / ".lock"):
        ro = _Rollout(kind="rollback", run_id=run_id, options=opts, playbook=playbook, result=result,
                      on_event=on_event, stop=stop, run=run)
        ro.save()
        store = _StoreHook(options, run_id, f"rollback {undo_run_id}", ro.emit)

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


__all__ = [
    "ApplyError", "ApplyEvent", "ApplyOptions", "ApplyResult", "BatchResult", "HostApply", "PlanFile", "Serial",
    "StopSignal", "apply_plan", "batches", "collection_dir", "connection_vars", "default_playbooks_dir",
    "default_state_dir",
    "extravars", "failed_beyond", "find_interrupted", "load_result", "read_plan", "rollback_run", "ssh_common_args",
]
