"""`remediate report`: the fleet at a glance, from the state store's latest records (HTML page, text or JSON)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from remediator.cli.drift import state_db_option
from remediator.cli.render import echo_json, printable, write_atomic
from remediator.errors import ExitStatus, UsageError
from remediator.state import Store, iso

if TYPE_CHECKING:
    from remediator.report import FleetSummary

TEXT_GROUPS = 15  # problem groups the text summary lists; the page and the JSON have all of them


@click.command("report")
@click.option("--html", "html_path", metavar="FILE", help="write the page here (one self-contained file).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: a short summary (or one line when --html is given); json: the summary, charts and "
                   "problem groups on stdout, for scripts.")
@click.option("--host", "hosts", multiple=True, metavar="HOST", help="only these hosts (repeatable).")
@state_db_option
def report(html_path: str | None, fmt: str, hosts: tuple[str, ...], state_db: str | None) -> int:
    """The fleet from the state store: status counts, version charts, hosts grouped by the same problem with
    the fix that applies to each group, and every host in a sortable, filterable table whose details
    fold open one click away.

    The page is one file with no external assets (it can be mailed or served as is); its filters live in
    the URL fragment, e.g. fleet.html#status=changed or #group=g2 or #filter=535.

    \b
    Examples:
      remediate report --html fleet.html
      remediate report --html /var/www/gpu/index.html --host gpu01 --host gpu02
      remediate report                       # the summary and the largest problem groups, as text
      remediate report --format json | jq '.groups[0]'
    """
    from remediator.report import collect, render_html, summarize

    with Store.open(state_db) as store:
        known = store.hosts()
        if not known:
            raise UsageError(f"the state db {store.path} has no records yet",
                             hint="run `remediate drift -i INVENTORY` first")
        missing = [h for h in hosts if h not in set(known)]
        if missing:
            raise UsageError(f"no records of host(s) {', '.join(repr(h) for h in missing)} in {store.path}")
        now = time.time()
        rows = collect(store, list(hosts) or None)
        last = store.last_run("drift")
    summary = summarize(rows)
    if html_path:
        page = render_html(rows, generated_at=now, last_run=last[1] if last else None, summary=summary)
        # 0644, unlike the other files: the page is made to be published (a web server's directory).
        write_atomic(html_path, page, "report", mode=0o644)
        click.echo(f"wrote {printable(html_path)} ({len(rows)} hosts, {len(page)} bytes)", err=fmt == "json")
    if fmt == "json":
        echo_json({"generated_at": iso(now), **summary.to_dict()})
    elif not html_path:
        click.echo(render_text(summary))
    return int(ExitStatus.OK)


def render_text(summary: FleetSummary) -> str:
    """The summary for a terminal: counts, the top of each chart, the largest groups and their common fix."""
    counts = ", ".join(f"{n} {s}" for s, n in summary.counts if n)
    lines = [f"{summary.hosts} host(s): {counts}"]
    for d in summary.charts:
        bars = ", ".join(f"{printable(label)} ({n})" for label, n in d.bars[:5])
        lines.append(f"  {d.title}: {bars}" + (f", {len(d.bars) - 5 + d.other_labels} more" if
                                               len(d.bars) > 5 or d.other_labels else ""))
    if summary.groups:
        lines.append(f"{len(summary.groups)} distinct problem(s), largest first:")
    for g in summary.groups[:TEXT_GROUPS]:
        lines.append(f"  {g.id:<4} {len(g.hosts):>5} host(s)  {printable(' '.join(g.codes))}")
        hint = "hint: " if g.fix_source == "diagnosis" else ""
        for line in g.fix_common[:4]:
            lines.append(f"        {hint}{printable(line)}")
        if g.varies:
            lines.append(f"        (the fix varies: {len(g.fix_varies) + g.fix_more} line(s) differ between hosts)")
        elif g.fix_source == "plan" and not g.fix_common:
            lines.append("        (no change planned)")
        if all(c.startswith("changed:") for c in g.codes):
            lines.append("        (if the change was intended: remediate drift --accept)")
    if len(summary.groups) > TEXT_GROUPS:
        lines.append(f"  ... {len(summary.groups) - TEXT_GROUPS} more: remediate report --format json, or --html")
    return "\n".join(lines)
