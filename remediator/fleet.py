"""Run one function per host over a thread pool and keep every host's outcome (never the first exception).

Used by probe, apply and verify. As with ansible, a host we could not get a session on is
"unreachable" (HostUnreachable, HostKeyError and AuthenticationError all mean that: ansible reports
failed host key checks and refused logins as UNREACHABLE too), which is neither failed nor ok.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from remediator.errors import RemediatorError, UsageError
from remediator.transport.base import AuthenticationError, HostKeyError, HostUnreachable

Status = Literal["ok", "failed", "unreachable"]
STATUSES: tuple[Status, ...] = ("ok", "failed", "unreachable")

# Errors that mean "no session on the host", as ansible's UNREACHABLE.
UNREACHABLE_ERRORS: tuple[type[RemediatorError], ...] = (HostUnreachable, HostKeyError, AuthenticationError)


class Named(Protocol):
    @property
    def name(self) -> str: ...


H = TypeVar("H", bound=Named)
T = TypeVar("T")


@dataclass(frozen=True)
class HostResult(Generic[T]):
    host: str
    status: Status
    value: T | None = None
    error: str | None = None
    hint: str | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class FleetResult(Generic[T]):
    """Every host's result, in inventory order."""

    results: tuple[HostResult[T], ...]

    def __iter__(self) -> Iterator[HostResult[T]]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, host: str) -> HostResult[T]:
        for r in self.results:
            if r.host == host:
                return r
        raise KeyError(host)

    def by_status(self) -> dict[Status, int]:
        """Hosts per status: every status is a key, in the order ok, failed, unreachable."""
        counts: dict[Status, int] = dict.fromkeys(STATUSES, 0)
        for r in self.results:
            counts[r.status] += 1
        return counts

    def with_status(self, status: Status) -> tuple[HostResult[T], ...]:
        return tuple(r for r in self.results if r.status == status)

    @property
    def all_ok(self) -> bool:
        return all(r.ok for r in self.results)


def outcome_of(exc: BaseException) -> tuple[Status, str, str | None]:
    """Status, one-line message and hint for an exception raised by a host's work."""
    if isinstance(exc, UNREACHABLE_ERRORS):
        return "unreachable", exc.message, exc.hint
    if isinstance(exc, RemediatorError):
        return "failed", exc.message, exc.hint
    return "failed", f"internal error: {type(exc).__name__}: {exc}", None


def _run_one(host: H, fn: Callable[[H], T]) -> HostResult[T]:
    started = time.monotonic()
    try:
        value = fn(host)
    except Exception as exc:
        status, message, hint = outcome_of(exc)
        return HostResult(host.name, status, None, message, hint, time.monotonic() - started)
    return HostResult(host.name, "ok", value, None, None, time.monotonic() - started)


def run_fleet(
    hosts: Sequence[H],
    fn: Callable[[H], T],
    *,
    forks: int = 10,
    on_result: Callable[[HostResult[T]], None] | None = None,
) -> FleetResult[T]:
    """Run `fn(host)` for every host, at most `forks` at a time; each host gets a HostResult.

    `on_result` is called from the worker threads as each host finishes (for a progress display); it
    must be quick and thread-safe. An exception it raises is re-raised once every host is done.
    """
    if forks < 1:
        raise UsageError(f"forks must be at least 1, not {forks}")
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise ValueError("run_fleet: host names must be unique")
    callback_errors: list[BaseException] = []
    lock = threading.Lock()

    def work(host: H) -> HostResult[T]:
        result = _run_one(host, fn)
        if on_result is not None:
            try:
                on_result(result)
            except Exception as exc:
                with lock:
                    callback_errors.append(exc)
        return result

    if not hosts:
        return FleetResult(())
    pool = ThreadPoolExecutor(max_workers=min(forks, len(hosts)), thread_name_prefix="fleet")
    try:
        futures = [pool.submit(work, h) for h in hosts]
        results = tuple(f.result() for f in futures)
    except BaseException:
        # Ctrl-C: start no more hosts; those running finish their current step.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if callback_errors:
        raise callback_errors[0]
    return FleetResult(results)


__all__ = ["STATUSES", "FleetResult", "HostResult", "Status", "outcome_of", "run_fleet"]
