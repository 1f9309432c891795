"""The protocol every host script shares (the probe's gpu_probe.py, verify's gpu_check.py).

Each step that asks a host something sends one stdlib-only script of the remediator.gpu collection over
stdin, with its options written in as data (`fill_placeholder`), and reads back one JSON document on stdout,
size-capped (`decode_document`). A script that cannot run says so on stderr with a marker (`TOO_OLD_MARKER`
for a python3 older than 3.6), and the step reports the stderr's last line (`last_line`). The steps differ
only in their script, their options and the error class they raise.
"""

from __future__ import annotations

import base64
import functools
import importlib.resources
import importlib.util
import json
import zlib
from pathlib import Path
from typing import Any

#: stderr of a script run by a python3 older than what it supports (both scripts print it).
TOO_OLD_MARKER = "remediator: python3 too old"


def collection_dir() -> Path:
    """The remediator.gpu collection inside this package (package data: the wheel holds it too); the one
    place that knows where it is, for the host scripts, apply's playbooks and the runner worker's job."""
    return Path(str(importlib.resources.files("remediator"))) / "ansible_collections" / "remediator" / "gpu"


@functools.cache
def collection_script(path: str) -> str:
    """A host script of the remediator.gpu collection shipped in this package, by its path in the collection
    (`plugins/module_utils/gpu_probe.py`, `roles/gpu_check/files/gpu_check.py`)."""
    return (collection_dir() / path).read_text(encoding="utf-8")


def fill_placeholder(text: str, old: str, new: str) -> str:
    """`text` with its one line `old` replaced by `new` (the options, written as a Python literal)."""
    if text.count(old) != 1:  # pragma: no cover - a bug of ours, caught by the tests
        raise AssertionError(f"remote script must contain {old!r} exactly once")
    return text.replace(old, new)


def last_line(text: str) -> str:
    """The last non-empty line of a script's stderr, cut to 300 characters: what went wrong, in one line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def too_old_message(stderr: str) -> str | None:
    """The script's own words when the host's python3 is too old for it, else None."""
    if TOO_OLD_MARKER not in stderr:
        return None
    return last_line(stderr).replace(TOO_OLD_MARKER + ": ", "")


class OutputError(ValueError):
    """What a script printed is not one JSON document; `hint` says what to look at."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def decode_document(output: bytes | str, *, what: str, max_bytes: int, last_line_fallback: bool = False) -> Any:
    """The JSON document a script printed, at most `max_bytes`; OutputError naming `what` otherwise.

    `last_line_fallback`: also try the last line alone (a script whose child printed before it)."""
    if isinstance(output, bytes):
        if len(output) > max_bytes:
            raise OutputError(f"{what} output is {len(output)} bytes, more than the {max_bytes} allowed")
        text = output.decode("utf-8", "replace")
    else:
        text = output
    stripped = text.strip()
    if not stripped:
        raise OutputError(f"the {what} printed nothing", hint="run with --format json and check stderr")
    candidates = (stripped, stripped.splitlines()[-1]) if last_line_fallback else (stripped,)
    reason = ""
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (ValueError, RecursionError) as exc:  # ValueError: also an integer of thousands of digits
            if not reason:
                reason = (exc.msg if isinstance(exc, json.JSONDecodeError) else
                          "nested too deep" if isinstance(exc, RecursionError) else str(exc))
    first = stripped.splitlines()[0][:120]
    raise OutputError(f"{what} output is not JSON ({reason}); it begins {first!r}",
                      hint=f"something on the host printed to stdout before the {what} (a banner in a shell rc "
                      "file?)")


@functools.cache
def pynvml_blob() -> str | None:
    """nvidia-ml-py's pynvml source, compressed, for verify's check script (the probe asks NVML through
    ctypes and sends none). Read from the installed module's file rather than imported: importing it has no
    use here."""
    spec = importlib.util.find_spec("pynvml")
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    with open(spec.origin, "rb") as handle:
        source = handle.read()
    return base64.b64encode(zlib.compress(source, 9)).decode("ascii")


__all__ = ["TOO_OLD_MARKER", "OutputError", "collection_dir", "collection_script", "decode_document",
           "fill_placeholder", "last_line", "pynvml_blob", "too_old_message"]
