"""`remediate report --html FILE`: the fleet at a glance, from the state store's latest records."""

from __future__ import annotations

import time

import click

from remediator.cli.drift import state_db_option
from remediator.cli.render import printable, write_atomic
from remediator.errors import ExitStatus, UsageError
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
    # 0644, unlike the other files: the page is made to be published (a web server's directory).
    write_atomic(html_path, page, "report", mode=0o644)
    click.echo(f"wrote {printable(html_path)} ({len(hosts) or len(known)} hosts)")
    return int(ExitStatus.OK)
