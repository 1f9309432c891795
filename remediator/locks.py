"""Control-node locks: one flock per host under the state dir, so two applies never work on a host at once.

The kernel releases a flock when the process holding it dies, so a killed apply leaves no stale lock.
Its ansible-playbook may outlive it for the rest of the task it was running, though: each lock file
records the ansible-playbook working on the host, and a new holder waits for that process to end
first. The playbooks take a lock on the host as well (docs/apply.md), which also covers applies
started from other control nodes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a host's lock, as recorded in its lock file."""

    run_id: str | None = None
    pid: int | None = None
    started_at: str | None = None
    runner_pid: int | None = None  # the ansible-playbook working on the host
    runner_start: int | None = None  # its start time (/proc/PID/stat field 22), to tell a reused PID

    def describe(self) -> str:
        who = f"run {self.run_id}" if self.run_id else "another apply"
        return who + (f" (pid {self.pid})" if self.pid else "")

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "pid": self.pid, "started_at": self.started_at,
                "runner_pid": self.runner_pid, "runner_start": self.runner_start}

    @classmethod
    def from_text(cls, text: str) -> Holder:
        try:
            data = json.loads(text)
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()

        def num(key: str) -> int | None:
            value = data.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        run_id = data.get("run_id")
        started = data.get("started_at")
        return cls(run_id if isinstance(run_id, str) else None, num("pid"),
                   started if isinstance(started, str) else None, num("runner_pid"), num("runner_start"))


@dataclass(frozen=True)
class Refused:
    host: str
    reason: str
    holder: Holder


@dataclass
class HostLocks:
    """The locks one run holds; release them (or let the process end) when done."""

    run_id: str
    held: dict[str, TextIO] = field(default_factory=dict)
    refused: list[Refused] = field(default_factory=list)
    started_at: str = ""

    def __enter__(self) -> HostLocks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def hosts(self) -> list[str]:
        return list(self.held)

    def record_runner(self, hosts: Iterable[str], pid: int | None) -> None:
        """Note the ansible-playbook now working on these hosts (None once it has ended)."""
        start = process_start_time(pid) if pid else None
        holder = Holder(self.run_id, os.getpid(), self.started_at, pid if start is not None else None, start)
        for host in hosts:
            handle = self.held.get(host)
            if handle is not None:
                _write_holder(handle, holder)

    def release(self, hosts: Iterable[str] | None = None) -> None:
        for host in list(self.held if hosts is None else hosts):
            handle = self.held.pop(host, None)
            if handle is None:
                continue
            with contextlib.suppress(OSError):
                _write_holder(handle, Holder(self.run_id, None, self.started_at))
            handle.close()  # closing the only descriptor drops the flock


def lock_dir(state_dir: Path) -> Path:
    return state_dir / "locks"


def lock_path(state_dir: Path, host: str) -> Path:
    """A file name for any host name: its safe characters, then a digest so that no two names collide."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", host)[:64]
    digest = hashlib.sha256(host.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return lock_dir(state_dir) / f"{safe}-{digest}.lock"


def acquire(
    state_dir: Path,
    hosts: Iterable[str],
    run_id: str,
    *,
    started_at: str = "",
    wait_s: float = 0.0,
    on_wait: Callable[[str, Holder], None] | None = None,
) -> HostLocks:
    """Lock every host it can; the others come back in `.refused` with who holds them.

    A host whose lock is free but whose last ansible-playbook is still running (its apply was killed)
    is waited for up to `wait_s` seconds, as is a lock another process holds.
    """
    locks = HostLocks(run_id, started_at=started_at)
    directory = lock_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    deadline = time.monotonic() + wait_s
    try:
        for host in hosts:
            outcome = _acquire_one(lock_path(state_dir, host), host, deadline, on_wait)
            if isinstance(outcome, Refused):
                locks.refused.append(outcome)
            else:
                locks.held[host] = outcome
                _write_holder(outcome, Holder(run_id, os.getpid(), started_at))
    except BaseException:
        locks.release()
        raise
    return locks


def _acquire_one(path: Path, host: str, deadline: float,
                 on_wait: Callable[[str, Holder], None] | None) -> TextIO | Refused:
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while the lock is held
    try:
        os.chmod(path, 0o600)
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(handle)
                reason = f"locked by {holder.describe()}"
            else:
                holder = _read_holder(handle)
                if not runner_alive(holder):
                    return handle
                fcntl.flock(handle, fcntl.LOCK_UN)
                reason = (f"ansible-playbook (pid {holder.runner_pid}) of interrupted run "
                          f"{holder.run_id or '?'} is still working on it")
            if time.monotonic() >= deadline:
                handle.close()
                return Refused(host, reason, holder)
            if on_wait is not None and not told:
                on_wait(host, holder)
                told = True
            time.sleep(0.5)
    except BaseException:
        handle.close()
        raise


def _read_holder(handle: TextIO) -> Holder:
    try:
        handle.seek(0)
        return Holder.from_text(handle.read())
    except OSError:
        return Holder()


def _write_holder(handle: TextIO, holder: Holder) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(holder.to_dict()) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def process_start_time(pid: int | None) -> int | None:
    """Field 22 of /proc/PID/stat (None when the process is gone or a zombie)."""
    if not pid:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat[stat.rindex(")") + 2:].split()
    if not rest or rest[0] == "Z":
        return None
    return int(rest[19])


def runner_alive(holder: Holder) -> bool:
    """Whether the ansible-playbook a lock file names is still that process, still running."""
    if holder.runner_pid is None or holder.runner_start is None:
        return False
    return process_start_time(holder.runner_pid) == holder.runner_start


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[bool]:
    """Hold `path` locked for a block; yields False when another process holds it (nothing is held then)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def is_locked(path: Path) -> bool:
    """Whether some process holds a flock on `path` now."""
    try:
        with open(path, "a", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
    except OSError:
        return False


__all__ = ["Holder", "HostLocks", "Refused", "acquire", "is_locked", "lock_path", "run_lock", "runner_alive"]
