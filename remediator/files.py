"""Files the control node writes (plans, facts, results, reports): private, whole, and never through a link.

Every such file holds host data, and its directory may be shared with other users; so it is written to
an unpredictable temporary name beside it (created exclusively, mode 0600) and renamed over the target.
The rename replaces whatever the target path is, a planted symlink included, instead of writing through it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["write_private"]


def write_private(path: str | os.PathLike[str], data: str | bytes, *, mode: int = 0o600) -> None:
    """Write `data` (str as UTF-8) to `path` atomically with exactly `mode`; raise OSError on failure.

    Readers see the old file or the whole new one. The temporary file is removed again on any error.
    """
    target = os.fspath(path)
    directory, name = os.path.split(target)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    # mkstemp: a random name, O_CREAT | O_EXCL (never an existing file or link), mode 0600 before any write.
    # The prefix is cut so that a long target name still leaves room for the random part.
    fd, tmp = tempfile.mkstemp(prefix=f".{name[:64]}.", suffix=".tmp", dir=directory or ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # exactly `mode`, whatever the umask
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)  # rename(2) replaces a symlink at `target` itself, never its destination
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_directory(directory or ".")


def _sync_directory(directory: str) -> None:
    """Make the rename itself durable; some file systems cannot open or sync a directory, which is fine."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
