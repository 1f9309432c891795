"""A scripted Transport for unit tests of the layers above it: canned results per command, calls recorded.

Rules match an argv (each element an fnmatch pattern, or one pattern for the shell-joined command line)
and optionally the stdin; the first rule that matches and is not used up answers. A command no rule
matches fails the test loudly instead of returning something plausible.
"""

from __future__ import annotations

import fnmatch
import shlex
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from remediator.transport.base import (
    DEFAULT_MAX_STDERR,
    DEFAULT_MAX_STDOUT,
    READ_CHUNK,
    CommandResult,
    OutputTooLarge,
)

Outcome = CommandResult | BaseException | Callable[["Call"], CommandResult]


class UnscriptedCommand(AssertionError):
    """The code under test ran a command the test did not script."""


@dataclass(frozen=True)
class Call:
    argv: tuple[str, ...]
    stdin: bytes | None
    timeout: float | None

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


@dataclass
class _Rule:
    argv: tuple[str, ...] | str
    stdin: bytes | None
    outcome: Outcome
    times: int | None  # None: any number of times

    def matches(self, argv: tuple[str, ...], stdin: bytes | None) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.stdin is not None and self.stdin != stdin:
            return False
        if isinstance(self.argv, str):
            return fnmatch.fnmatchcase(shlex.join(argv), self.argv)
        return len(self.argv) == len(argv) and all(
            fnmatch.fnmatchcase(arg, pattern) for arg, pattern in zip(argv, self.argv, strict=True)
        )


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else data


@dataclass
class FakeTransport:
    """A Transport whose commands answer from rules; see `on`.

    `default` answers commands no rule matches (by default they raise UnscriptedCommand).
    """

    name: str = "fake"
    default: CommandResult | None = None
    calls: list[Call] = field(default_factory=list)
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    closed: bool = False
    _rules: list[_Rule] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on(
        self,
        argv: Sequence[str] | str,
        *,
        stdout: bytes | str = b"",
        stderr: bytes | str = b"",
        returncode: int = 0,
        stdin: bytes | str | None = None,
        raises: BaseException | None = None,
        respond: Callable[[Call], CommandResult] | None = None,
        times: int | None = None,
    ) -> FakeTransport:
        """Script a command; returns self so rules chain.

        `argv`: a list of fnmatch patterns, one per argument (["nvidia-smi", "--query-gpu=*"]), or one
        pattern for the whole `shlex.join`ed command line ("python3 *"). `stdin`: match only this input.
        `raises`: raise this instead of answering (CommandTimeout, HostUnreachable, ...). `respond`:
        compute the result from the call. `times`: answer that many calls, then let later rules answer.
        """
        outcome: Outcome
        if raises is not None:
            outcome = raises
        elif respond is not None:
            outcome = respond
        else:
            outcome = CommandResult(returncode, _as_bytes(stdout), _as_bytes(stderr))
        pattern = argv if isinstance(argv, str) else tuple(argv)
        wanted_stdin = None if stdin is None else _as_bytes(stdin)
        with self._lock:
            self._rules.append(_Rule(pattern, wanted_stdin, outcome, times))
        return self

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        max_stdout: int = DEFAULT_MAX_STDOUT,
        max_stderr: int = DEFAULT_MAX_STDERR,
    ) -> CommandResult:
        call = Call(tuple(argv), stdin, timeout)
        with self._lock:
            if self.closed:
                raise AssertionError(f"{self.name}: run() after close(): {call.command}")
            self.calls.append(call)
            rule = next((r for r in self._rules if r.matches(call.argv, stdin)), None)
            if rule is not None and rule.times is not None:
                rule.times -= 1
        if rule is None:
            if self.default is not None:
                return self.default
            scripted = "\n  ".join(repr(r.argv) for r in self._rules) or "(none)"
            raise UnscriptedCommand(f"{self.name}: no rule for {call.command!r}; rules:\n  {scripted}")
        if isinstance(rule.outcome, BaseException):
            raise rule.outcome
        result = rule.outcome if isinstance(rule.outcome, CommandResult) else rule.outcome(call)
        # Scripted output past a cap fails as a real transport would, so the layers above see the same error.
        for stream, data, cap in (("stdout", result.stdout, max_stdout), ("stderr", result.stderr, max_stderr)):
            if len(data) > cap:
                received = min(len(data), cap + READ_CHUNK)  # what a real transport reads before it stops
                raise OutputTooLarge(self.name, call.argv[0], stream, cap, received, where=self.name)
        return result

    def put_file(self, data: bytes, remote_path: str, *, mode: int = 0o644, timeout: float | None = None) -> None:
        with self._lock:
            self.files[remote_path] = (bytes(data), mode)

    def close(self) -> None:
        self.closed = True

    def commands(self) -> list[str]:
        """The command lines run so far, shell-joined, in order."""
        return [c.command for c in self.calls]


class FakeConnector:
    """Stands in for `ssh.connect`: gives each host its FakeTransport, or raises its connection error."""

    def __init__(self, hosts: Mapping[str, FakeTransport | BaseException]) -> None:
        self.hosts = dict(hosts)
        self.connected: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, host: object, **_options: object) -> FakeTransport:
        name = str(getattr(host, "name", host))
        with self._lock:
            self.connected.append(name)
        if name not in self.hosts:
            raise UnscriptedCommand(f"FakeConnector: no transport scripted for host {name!r}")
        outcome = self.hosts[name]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


__all__ = ["Call", "FakeConnector", "FakeTransport", "UnscriptedCommand"]
