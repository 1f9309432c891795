"""What an apply or rollback is asked to do: options, batches, defaults, run ids."""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from remediator.errors import RemediatorError, UsageError
from remediator.hostscript import collection_dir
from remediator.plan import DEFAULT_VENV_ROOT
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
GOOD_STATUSES: frozenset[str] = frozenset({"applied", "check", "rolled_back"})
ALL_STATUSES: frozenset[str] = frozenset(
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


def new_run_id(now: dt.datetime | None = None) -> str:
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


