"""Local transport: runs commands on this machine through subprocess (for `--local`)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from remediator.transport.base import CommandResult, CommandTimeout, TransportError


class LocalTransport:
    def __init__(self, name: str = "localhost") -> None:
        self.name = name

    def run(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        try:
            proc = subprocess.run(  # argv list, no shell
                list(argv), input=stdin if stdin is not None else b"", capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise CommandTimeout(f"{self.name}: {argv[0]} ran past its {timeout:g}s timeout") from None
        except FileNotFoundError:
            return CommandResult(127, b"", f"{argv[0]}: command not found\n".encode())
        except OSError as exc:
            raise TransportError(f"{self.name}: cannot run {argv[0]}: {exc.strerror or exc}") from None
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)

    def put_file(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None:
        tmp = f"{remote_path}.remediator-tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, remote_path)

    def close(self) -> None:
        return None
