"""Local transport: runs commands on this machine through subprocess (for `--local`).

Bounded as the SSH transport is: a deadline on every command (DEFAULT_RUN_TIMEOUT when none is given)
and a cap on each output stream, past which the command is killed and its output abandoned.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import IO

from remediator.transport.base import (
    DEFAULT_MAX_STDERR,
    DEFAULT_MAX_STDOUT,
    DEFAULT_RUN_TIMEOUT,
    READ_CHUNK,
    CommandResult,
    CommandTimeout,
    OutputTooLarge,
    TransportError,
)

#: How long a killed command's pipes may stay open (a grandchild holding them) before we stop waiting.
_REAP_GRACE = 5.0


class LocalTransport:
    def __init__(self, name: str = "localhost") -> None:
        self.name = name

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        max_stdout: int = DEFAULT_MAX_STDOUT,
        max_stderr: int = DEFAULT_MAX_STDERR,
    ) -> CommandResult:
        if not argv:
            raise ValueError("run() needs a command")
        limit = DEFAULT_RUN_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + limit
        try:
            proc = subprocess.Popen(  # argv list, no shell
                list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except FileNotFoundError:
            return CommandResult(127, b"", f"{argv[0]}: command not found\n".encode())
        except OSError as exc:
            raise TransportError(f"{self.name}: cannot run {argv[0]}: {exc.strerror or exc}") from None
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        out, err = bytearray(), bytearray()
        flooded: list[tuple[str, int, int]] = []  # stream, cap, bytes read
        settled = threading.Event()

        def pump(pipe: IO[bytes], sink: bytearray, stream: str, cap: int) -> None:
            fd = pipe.fileno()
            with contextlib.suppress(OSError):
                while chunk := os.read(fd, READ_CHUNK):
                    sink += chunk
                    if len(sink) > cap:
                        flooded.append((stream, cap, len(sink)))
                        settled.set()
                        return

        def feed(pipe: IO[bytes]) -> None:
            with contextlib.suppress(OSError):  # BrokenPipeError: it exited without reading all its input
                if stdin:
                    pipe.write(stdin)
                pipe.close()

        # Both pipes are drained at once (as communicate() does) so neither fills while we wait on the other.
        threads = [
            threading.Thread(target=pump, args=(proc.stdout, out, "stdout", max_stdout), daemon=True),
            threading.Thread(target=pump, args=(proc.stderr, err, "stderr", max_stderr), daemon=True),
            threading.Thread(target=feed, args=(proc.stdin,), daemon=True),
        ]
        for t in threads:
            t.start()

        def waiter() -> None:
            for t in threads:
                t.join()
            proc.wait()
            settled.set()

        threading.Thread(target=waiter, daemon=True).start()
        settled.wait(max(0.0, deadline - time.monotonic()))
        if flooded or proc.returncode is None:
            self._kill(proc, threads)
            if flooded:
                stream, cap, received = flooded[0]
                raise OutputTooLarge(self.name, argv[0], stream, cap, received, where=self.name)
            raise CommandTimeout(f"{self.name}: {argv[0]} ran past its {limit:g}s timeout")
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
        return CommandResult(proc.returncode, bytes(out), bytes(err))

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes], threads: list[threading.Thread]) -> None:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(_REAP_GRACE)
        # A grandchild may still hold the pipes; the readers are daemons and stop at their cap, so
        # they are left to end on their own rather than waited for (their pipes close with them).
        for t in threads:
            t.join(0.1)
        if not any(t.is_alive() for t in threads):
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()

    def put_file(self, data: bytes, remote_path: str, *, mode: int = 0o644, timeout: float | None = None) -> None:
        # A local write needs no deadline of its own; `timeout` is part of the Transport interface.
        tmp = f"{remote_path}.remediator-tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, remote_path)

    def close(self) -> None:
        return None
