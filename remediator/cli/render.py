"""Rendering helpers shared by the commands: JSON for scripts, plain aligned text for people."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import click

from remediator.diagnosis import Finding
from remediator.errors import InputError

FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for scripts (one JSON document on stdout).",
)

_MARK = {"error": "x", "warning": "!", "info": "i"}


def printable(value: object) -> str:
    """Host values may hold newlines or terminal escapes: show them escaped, never interpret them."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def findings_text(host: str, findings: Iterable[Finding]) -> str:
    items = list(findings)
    errors = sum(1 for f in items if f.severity == "error")
    warnings = sum(1 for f in items if f.severity == "warning")
    host = printable(host)
    if not items:
        return f"{host}: healthy (no findings)"
    lines = [f"{host}: {errors} error(s), {warnings} warning(s)"]
    for f in items:
        lines.append(f"  [{_MARK[f.severity]}] {f.code}: {printable(f.message)}")
        for key, value in f.evidence:
            lines.append(f"        {key}: {printable(value)}")
        if f.fix:
            lines.append(f"      fix: {printable(f.fix)}")
    return "\n".join(lines)


def write_atomic(path: str, text: str, what: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: readers never see half a file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(path, f"cannot write the {what}: {exc.strerror or exc}") from None
