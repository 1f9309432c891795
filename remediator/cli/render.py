"""Rendering helpers shared by the commands: JSON for scripts, plain aligned text for people.

Everything a host (or a file a user handed us) said is untrusted: it reaches the terminal only through
`printable()`, and where rich renders it, as a `Text` (`host_text`) on a console that interprets no
markup, emoji codes or highlighting (`console`), so `[bold]` or `:skull:` in a value is shown as written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import click

from remediator.diagnosis import Finding
from remediator.errors import InputError
from remediator.files import write_private

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

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
    """Host values may hold newlines or terminal escapes: show them escaped, never interpret them.

    Everything `str.isprintable` refuses is written as its Python escape: C0 and C1 controls (ESC, BEL,
    the one-byte CSI 0x9b), bidi overrides and isolates (U+202E, U+2066), zero-width and other format
    characters, line and paragraph separators, unassigned and private-use code points.
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))


def host_text(value: object, style: str = "") -> Text:
    """A host value as a rich renderable: printable, and a `Text`, which rich never parses as markup."""
    from rich.text import Text

    return Text(printable(value), style=style)


def console(*, stderr: bool = False, **options: Any) -> Console:
    """A rich console for our output: it interprets no markup, emoji codes or highlighting in plain strings.

    Host values still go in as `host_text`; this is the second lock, for strings a later edit forgets.
    """
    from rich.console import Console

    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, **options)


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
        lines.append(f"  [{_MARK[f.severity]}] {printable(f.code)}: {printable(f.message)}")
        for key, value in f.evidence:
            lines.append(f"        {printable(key)}: {printable(value)}")
        if f.fix:
            lines.append(f"      fix: {printable(f.fix)}")
    return "\n".join(lines)


def write_atomic(path: str, text: str, what: str, *, mode: int = 0o600) -> None:
    """Write `text` to `path` privately and atomically (`remediator.files.write_private`)."""
    try:
        write_private(path, text, mode=mode)
    except OSError as exc:
        raise InputError(path, f"cannot write the {what}: {exc.strerror or exc}") from None
