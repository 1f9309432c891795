"""Scheduled drift checks on the control node: a systemd service and timer, or a cron entry without systemd.

The unit runs `python -m remediator drift` with absolute paths fixed at install time (inventory, state
db, Prometheus textfile), so the timer checks the same fleet into the same store that people read with
`remediate history` and `report`. Everything here renders text or writes files; whether to call
systemctl is the command's decision.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from remediator.errors import RemediatorError, UsageError
from remediator.files import write_private

Backend = Literal["systemd", "cron"]
NAME = "remediate-drift"
SERVICE = f"{NAME}.service"
TIMER = f"{NAME}.timer"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSTEM_CRON_FILE = Path("/etc/cron.d") / NAME  # cron.d ignores names with dots: no extension
SYSTEM_TEXTFILE = Path("/var/lib/prometheus/node-exporter/remediator.prom")  # Debian's node_exporter textfile dir
BEGIN = f"# BEGIN {NAME} (managed by `remediate schedule`; remove with `remediate schedule remove`)"
END = f"# END {NAME}"
HEADER = "# Written by `remediate schedule install`; remove it with `remediate schedule remove`."

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "day": 86400}
_INTERVAL = re.compile(r"^\s*(\d+)\s*(s|sec|m|min|h|hr|d|day)\s*$", re.IGNORECASE)


class ScheduleError(RemediatorError):
    """The schedule could not be installed or removed."""


@dataclass(frozen=True)
class Interval:
    seconds: int
    text: str  # as the user wrote it, for messages

    @property
    def systemd(self) -> str:
        """A systemd time span: the largest unit that divides it (`6h`, `90min`, `1d`)."""
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if self.seconds % size == 0:
                return f"{self.seconds // size}{unit}"
        return f"{self.seconds}s"

    @property
    def cron(self) -> str:
        """The cron schedule; only intervals that divide an hour or a day can be written in cron."""
        s = self.seconds
        if s % 60 == 0 and s < 3600 and 3600 % s == 0:
            return f"*/{s // 60} * * * *"
        if s % 3600 == 0 and s < 86400 and 86400 % s == 0:
            return f"0 */{s // 3600} * * *"
        if s == 86400:
            return "0 0 * * *"
        raise UsageError(f"cron cannot run something every {self.text}",
                         hint="without systemd, use an interval that divides an hour or a day (15m, 1h, 6h, 1d)")


def parse_interval(text: str) -> Interval:
    match = _INTERVAL.match(text)
    if not match:
        raise UsageError(f"bad interval {text!r}: expected a number and a unit, e.g. 30m, 6h or 1d")
    seconds = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds < 60:
        raise UsageError(f"bad interval {text!r}: the drift check runs at most once a minute")
    return Interval(seconds, text.strip())


def drift_argv(inventory: str, *, state_db: str, textfile: str, limit: str | None = None,
               python: str | None = None) -> tuple[str, ...]:
    """The command the schedule runs: this Python, this remediator, absolute paths only."""
    argv = [python or sys.executable, "-m", "remediator", "drift", "-i", inventory, "--state-db", state_db,
            "--prometheus-textfile", textfile]
    if limit:
        argv += ["--limit", limit]
    for arg in argv:
        if any(ord(c) < 32 or ord(c) == 127 for c in arg):
            raise UsageError(f"{arg!r}: a scheduled command cannot hold control characters")
    return tuple(argv)


def systemd_quote(arg: str) -> str:
    """One argument of an ExecStart= line. systemd splits on whitespace, reads quotes and backslashes,
    expands %-specifiers and $VARIABLES: quote what needs it and double `%` and `$`."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if text == "" or text == ";" or re.search(r"[\s\"'\\]", text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def systemd_units(argv: Sequence[str], every: Interval) -> dict[str, str]:
    """{file name: text} of the service and the timer."""
    service = f"""{HEADER}
[Unit]
Description=remediate drift check of the GPU fleet (probe, compare with target and known-good state)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={" ".join(systemd_quote(a) for a in argv)}
# Exit status 2 means drift was found: the check itself worked, the metrics and the store say what drifted.
SuccessExitStatus=2
Nice=10
TimeoutStartSec={max(every.seconds, 3600)}s
"""
    timer = f"""{HEADER}
[Unit]
Description=Run the remediate drift check every {every.systemd}

[Timer]
OnBootSec=5min
OnUnitActiveSec={every.systemd}
AccuracySec=1min

[Install]
WantedBy=timers.target
"""
    return {SERVICE: service, TIMER: timer}


def cron_line(argv: Sequence[str], every: Interval, *, user_field: str | None) -> str:
    """One crontab line (with a user field for /etc/cron.d). cron reads `%` as a newline: escape it."""
    command = shlex.join(argv).replace("%", "\\%") + " >/dev/null"
    who = f" {user_field}" if user_field else ""
    return f"{every.cron}{who} {command}"


def cron_file_text(argv: Sequence[str], every: Interval) -> str:
    return f"{HEADER}\nSHELL=/bin/sh\n{cron_line(argv, every, user_field='root')}\n"


def crontab_with(existing: str, line: str) -> str:
    """`existing` crontab text with our block replaced (or added): other lines untouched."""
    kept = crontab_without(existing).rstrip("\n")
    block = f"{BEGIN}\n{line}\n{END}\n"
    return (kept + "\n" + block) if kept else block


def crontab_without(existing: str) -> str:
    out, inside = [], False
    for line in existing.splitlines():
        if line == BEGIN:
            inside = True
        elif line == END and inside:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out) + ("\n" if out else "")


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, text, mode=mode)
    except OSError as exc:
        raise ScheduleError(f"cannot write {path}: {exc.strerror or exc}") from None


def remove_files(paths: Sequence[Path]) -> list[Path]:
    """Remove those of `paths` that exist and are ours (they start with our header); return them."""
    removed = []
    for p in paths:
        if not p.exists():
            continue
        try:
            head = p.read_text(encoding="utf-8", errors="replace")[: len(HEADER)]
        except OSError as exc:
            raise ScheduleError(f"cannot read {p}: {exc.strerror or exc}") from None
        if head != HEADER:
            raise ScheduleError(f"{p} was not written by `remediate schedule install`; not removing it",
                                hint="remove it by hand if it is no longer wanted")
        try:
            p.unlink()
        except OSError as exc:
            raise ScheduleError(f"cannot remove {p}: {exc.strerror or exc}") from None
        removed.append(p)
    return removed


def systemd_booted() -> bool:
    """sd_booted(): systemd is the running init."""
    return os.path.isdir("/run/systemd/system")


def default_unit_dir(user: bool) -> Path:
    if not user:
        return SYSTEM_UNIT_DIR
    base = os.environ.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if base.startswith("/") else Path.home() / ".config"
    return root / "systemd" / "user"


def default_textfile(user: bool) -> Path:
    if not user:
        return SYSTEM_TEXTFILE
    base = os.environ.get("XDG_STATE_HOME") or ""
    root = Path(base) if base.startswith("/") else Path.home() / ".local" / "state"
    return root / "remediator" / "remediator.prom"
