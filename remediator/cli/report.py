"""`remediate report --html FILE`: the fleet at a glance, from the state store's latest records."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import click

from remediator.cli.drift import state_db_option
from remediator.errors import ExitStatus, InputError, UsageError
from remediator.state import Store


@click.command("report")
@click.option("--html", "html_path", required=True, metavar="FILE", help="write the page here.")
@click.option("--host", "hosts", multiple=True, metavar="HOST", help="only these hosts (repeatable).")
@state_db_option
def report(html_path: str, hosts: tuple[str, ...], state_db: str | None) -> int:
    """Write one self-contained HTML page: hosts by row, stack layers by column, coloured by status,
    each finding's evidence one click away.

    \b
    Examples:
      remediate report --html fleet.html
      remediate report --html /var/www/gpu/index.html --host gpu01 --host gpu02
    """
    from remediator.report import build_report

    with Store.open(state_db) as store:
        known = store.hosts()
        if not known:
            raise UsageError(f"the state db {store.path} has no records yet",
                             hint="run `remediate drift -i INVENTORY` first")
        missing = [h for h in hosts if h not in known]
        if missing:
            raise UsageError(f"no records of host(s) {', '.join(repr(h) for h in missing)} in {store.path}")
        page = build_report(store, generated_at=time.time(), hosts=list(hosts) or None)
    target = Path(html_path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        raise InputError(html_path, f"cannot write the report: {exc.strerror or exc}") from None
    click.echo(f"wrote {html_path} ({len(hosts) or len(known)} hosts)")
    return int(ExitStatus.OK)
