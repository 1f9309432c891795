"""The report as one self-contained HTML page: the summary band, the problem groups, the host table.

One file, no external assets, no network: it can be mailed, archived or served as is. At 1,000 hosts
the DOM stays small: each host is one table row, and its findings, changes and verify result are drawn
only when its `<details>` is opened, from a JSON data block. Everything from a host is made printable
(control and bidi characters shown escaped, as in the terminal) and then HTML-escaped in text and
attributes, or JSON-encoded with `<`, `>` and `&` escaped inside the data block, so no value can close
the block or become markup. The only script is remediator.report.script, allowed by its sha256 in the
page's Content-Security-Policy; nothing else can run, load or be fetched.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Sequence
from typing import Any

from remediator.cli.render import printable
from remediator.report.charts import bar_chart
from remediator.report.model import _RANK, COLUMNS, STATUSES, HostRow, Item, collect
from remediator.report.script import SCRIPT
from remediator.report.summary import FleetSummary, Group, summarize
from remediator.state import Store, iso

# Tiles of the summary band: strong colours, distinct from the cells' pastels, so they read at a glance.
STATUS_COLOURS = {"ok": "#2e7d32", "changed": "#7b1fa2", "not compliant": "#c62828", "unreachable": "#e65100",
                  "failed": "#4e342e", "unchecked": "#546e7a"}
CHART_COLOURS = {"driver": "#1565c0", "cuda": "#00838f", "cuda_driver": "#00695c", "cudnn": "#6a1b9a",
                 "framework": "#ad1457"}
_BG = {"error": "#f8c9c4", "drift": "#e3cdf5", "warning": "#fbe8b0", "ok": "#cdebd0", "unknown": "#e6e6e6"}
_LEGEND = (("error", "error finding"), ("drift", "changed since known-good"), ("warning", "warning"),
           ("ok", "ok"), ("unknown", "unknown / not checked"))
_STATUS_CELL = {"ok": "ok", "changed": "drift", "not compliant": "error", "unreachable": "error",
                "failed": "error"}
OPEN_GROUPS = 10  # problem groups shown before the rest are folded
_MAX_VALUE = 2000  # characters of one evidence value in the data block; the rest is cut
_MAX_CELL = 60  # characters of a layer cell's text; the host's detail has the whole values

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #1a1a1a; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 20px 0 6px; }
p.meta { margin: 0 0 12px; color: #555; }
.band { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.tiles { display: flex; flex-wrap: wrap; gap: 8px; width: 100%; }
a.tile { display: block; min-width: 120px; padding: 8px 12px; color: #fff; text-decoration: none; border-radius: 4px; }
a.tile b { display: block; font-size: 28px; line-height: 1.1; }
a.tile.zero { background: #f2f2f2 !important; color: #777; }
figure { margin: 0; } figcaption { font-weight: 600; font-size: 13px; margin-bottom: 2px; }
svg.chart text { font: 11px system-ui, sans-serif; fill: #1a1a1a; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; text-align: left; }
th { background: #eee; position: sticky; top: 0; }
th button { font: inherit; font-weight: 600; border: 0; background: none; padding: 0; cursor: pointer; }
th[aria-sort=ascending] button::after { content: " \\25B2"; }
th[aria-sort=descending] button::after { content: " \\25BC"; }
td.host { font-weight: 600; } tr.detail > td { background: #fafafa; padding: 4px 12px 8px; }
span.swatch { display: inline-block; width: 12px; height: 12px; vertical-align: middle; margin-right: 6px; }
td.error { background: #f8c9c4; } td.drift { background: #e3cdf5; } td.warning { background: #fbe8b0; }
td.ok { background: #cdebd0; } td.unknown { background: #e6e6e6; }
td.n { text-align: right; font-weight: 600; } code { font-size: 12px; } .what { font-size: 12px; color: #444; }
ul.fix { margin: 2px 0; padding-left: 16px; font: 12px ui-monospace, monospace; overflow-wrap: anywhere; }
ul.fix li.varies { color: #8a4b00; }
details { margin: 2px 0; } summary { cursor: pointer; font-size: 12px; }
dl { margin: 2px 0 4px 12px; font-size: 12px; } dt { font-weight: 600; } dd { margin: 0 0 2px 12px; }
dd, .val, p.hostlist { font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
p.hostlist { font-size: 12px; max-height: 12em; overflow: auto; margin: 2px 0; }
details.item.error > summary { color: #a11; } details.item.drift > summary { color: #62a; }
#controls { margin: 6px 0; } #controls input { width: 20em; } #controls select { max-width: 24em; }
td .val { overflow-wrap: break-word; } td.prob { font-size: 11px; }
.legend span { display: inline-block; padding: 1px 6px; margin-right: 4px; border: 1px solid #ccc; }
"""


def _e(value: object) -> str:
    return html.escape(printable(value), quote=True)


def _cut(text: str, limit: int = _MAX_CELL) -> str:
    # A table cell holds versions; a longer value (a hostile one) would widen its column for every row.
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _p(value: object) -> str:
    text = printable(value)
    return text if len(text) <= _MAX_VALUE else text[:_MAX_VALUE] + " ..."


def script_hash(script: str = SCRIPT) -> str:
    """The CSP source that allows exactly this script: 'sha256-<base64 of its digest>'."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def csp(script: str = SCRIPT) -> str:
    return f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src {script_hash(script)}"


def data_block(value: Any) -> str:
    """JSON that is inert inside <script type="application/json">: no `<`, `>` or `&` can end or open a tag."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(rows: Sequence[HostRow], *, generated_at: float, last_run: float | None = None,
                title: str = "remediate: fleet report", summary: FleetSummary | None = None) -> str:
    summary = summary if summary is not None else summarize(rows)
    group_of = {h: g.id for g in summary.groups for h in g.hosts}
    meta = f"{len(rows)} host(s), {len(summary.groups)} distinct problem(s). Generated {iso(generated_at)}"
    if last_run is not None:
        meta += f"; last drift check started {iso(last_run)}"
    out = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(csp())}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>", f'<p class="meta">{_e(meta)}.</p>',
        _summary_band(summary),
        _problems(summary.groups),
        _host_table(rows, summary.groups, group_of),
        f'<script type="application/json" id="host-data">{data_block([_detail(r) for r in rows])}</script>',
        f'<script id="report-script">{SCRIPT}</script>',
        "</body></html>\n",
    ]
    return "\n".join(out)


def _summary_band(s: FleetSummary) -> str:
    tiles = []
    for status, n in s.counts:
        colour = STATUS_COLOURS.get(status, "#455a64")
        link = html.escape("#" + _fragment("status", status), quote=True)
        tiles.append(f'<a class="tile{" zero" if n == 0 else ""}" data-status="{_e(status)}" href="{link}" '
                     f'style="background:{colour}"><b>{n}</b>{_e(status)}</a>')
    charts = [f'<figure><figcaption>{_e(d.title)} <small>({d.hosts} hosts)</small></figcaption>'
              f'{bar_chart(d, CHART_COLOURS.get(d.key, "#37474f"))}</figure>' for d in s.charts]
    return (f'<section id="summary" class="band" aria-label="summary"><div class="tiles">{"".join(tiles)}</div>'
            + "".join(charts) + "</section>")


def _fragment(name: str, value: str) -> str:
    from urllib.parse import urlencode

    return urlencode({name: printable(value)})


def _problems(groups: Sequence[Group]) -> str:
    if not groups:
        return '<h2 id="problems">Problems</h2><p>No host has a finding, a change or a failed check.</p>'
    hosts = sum(len(g.hosts) for g in groups)
    head = ('<table class="groups"><thead><tr><th>Hosts</th><th>Problem</th><th>Fix</th><th>Which</th></tr>'
            "</thead><tbody>")
    out = [f'<h2 id="problems">Problems: {len(groups)} distinct, {hosts} host(s)</h2>', head]
    out += [_group_row(g) for g in groups[:OPEN_GROUPS]]
    out.append("</tbody></table>")
    rest = groups[OPEN_GROUPS:]
    if rest:
        # The largest groups are most of the work; the long tail stays one click away.
        out.append(f"<details><summary>{len(rest)} smaller problem(s), {sum(len(g.hosts) for g in rest)} host(s)"
                   f"</summary>{head}" + "".join(_group_row(g) for g in rest) + "</tbody></table></details>")
    return "".join(out)


def _group_row(g: Group) -> str:
    codes = " ".join(f"<code>{_e(c)}</code>" for c in g.codes)
    statuses = ", ".join(f"{n} {_e(s)}" for s, n in g.statuses)
    return (f'<tr id="{g.id}" data-group="{g.id}"><td class="n">{len(g.hosts)}</td>'
            f'<td>{codes}<div class="what">{_e(g.what)}</div></td><td>{_fix(g)}</td>'
            f'<td><a href="#group={g.id}">show in table</a> <small>({statuses})</small>'
            f'<details><summary>{len(g.hosts)} host(s)</summary><p class="hostlist">'
            f'{_e(", ".join(g.hosts))}</p></details></td></tr>')


def _fix(g: Group) -> str:
    accept = ('<div class="what">if the change was intended: <code>remediate drift --accept</code></div>'
              if all(c.startswith("changed:") for c in g.codes) else "")
    if g.fix_source == "plan" and not g.fix_common and not g.varies:
        return f'<span class="what">nothing: the current plans change nothing on these hosts</span>{accept}'
    if not g.fix_common and not g.varies:
        return f'<span class="what">nothing known: run <code>remediate plan</code></span>{accept}'
    basis = len(g.hosts) - g.unplanned
    if g.fix_source == "plan":
        head = ("the same in every host's current plan" if not g.varies else "the current plans differ") + (
            f"; {g.unplanned} host(s) have no current plan (run <code>remediate plan</code>)" if g.unplanned else "")
    else:
        head = "diagnosis hints, no current plan" + ("" if not g.varies else "; they differ")
    lines = [f"<li>{_e(line)}</li>" for line in g.fix_common]
    lines += [f'<li class="varies">{_e(line)} <small>({n} of {basis})</small></li>' for line, n in g.fix_varies]
    if g.fix_more:
        lines.append(f'<li class="varies">... {g.fix_more} more varying line(s)</li>')
    return f'<div class="what">{head}</div><ul class="fix">{"".join(lines)}</ul>{accept}'


def _host_table(rows: Sequence[HostRow], groups: Sequence[Group], group_of: dict[str, str]) -> str:
    statuses = list(dict.fromkeys([*STATUSES, *(r.status for r in rows)]))
    status_opts = "".join(f'<option value="{_e(s)}">{_e(s)}</option>' for s in statuses)
    group_opts = "".join(f'<option value="{g.id}">{g.id}: {_e(" ".join(g.codes))} ({len(g.hosts)})</option>'
                         for g in groups)
    heads = [("host", "Host"), ("status", "Status"), *COLUMNS, ("problem", "Problem")]
    out = [
        '<h2 id="fleet-hosts">Hosts</h2><p class="legend">'
        + "".join(f'<span style="background:{_BG[s]}">{_e(w)}</span>' for s, w in _LEGEND) + "</p>",
        '<noscript><p>Sorting, filtering and host details need JavaScript; the summary and table do not.</p>'
        "</noscript>",
        '<div id="controls" hidden><input id="filter-text" type="search" placeholder="filter: host, version, code"'
        ' aria-label="filter"> <select id="filter-status" aria-label="status"><option value="">every status</option>'
        f'{status_opts}</select> <select id="filter-group" aria-label="problem"><option value="">every problem'
        f'</option>{group_opts}</select> <span id="shown"></span></div>',
        '<table id="hosts"><thead><tr>'
        + "".join(f'<th data-key="{k}" aria-sort="none"><button type="button">{_e(n)}</button></th>' for k, n in heads)
        + "<th>Details</th></tr></thead><tbody>",
    ]
    rank = {s: i for i, s in enumerate(STATUSES)}
    for i, r in enumerate(rows):
        out.append(_row(i, r, group_of.get(r.host, ""), rank.get(r.status, len(rank))))
    out.append("</tbody></table>")
    return "\n".join(out)


def _row(i: int, r: HostRow, group: str, rank: int) -> str:
    target = f"<br><small>{_e(r.target)}</small>" if r.target else ""
    when = f"<br><small>{_e(iso(r.checked_at))}</small>" if r.checked_at else ""
    error = f"<br><small>{_e(r.error)}</small>" if r.error else ""
    parts = [
        f'<tr data-i="{i}" data-host="{_e(r.host)}" data-status="{_e(r.status)}" data-group="{group}">',
        f'<td class="host"><span class="swatch" style="background:{r.swatch}" data-swatch="{r.swatch}"></span>'
        f"{_e(r.host)}{target}</td>",
        f'<td class="{_STATUS_CELL.get(r.status, "unknown")}" data-sort="{rank}">{_e(r.status)}{when}{error}</td>',
    ]
    for key, _ in COLUMNS:
        cell = r.cells[key]
        parts.append(f'<td class="{cell.status}" data-layer="{key}"><span class="val">{_e(_cut(cell.text))}</span>'
                     "</td>")
    problem = (f'<a href="#group={group}">{group}</a> <small>{_e(" ".join(r.codes))}</small>' if group else "")
    parts.append(f'<td class="prob">{problem}</td>')
    n = sum(len(c.items) for c in r.cells.values())
    parts.append(f'<td><details class="host"><summary>{n} item(s)</summary></details></td></tr>')
    return "".join(parts)


def _detail(r: HostRow) -> dict[str, Any]:
    """What a host's folded detail shows, every string printable and cut: the data block's entry."""
    names = dict(COLUMNS)
    items: list[tuple[str, Item]] = [(names[k], i) for k, _ in COLUMNS for i in r.cells[k].items]
    items.sort(key=lambda ki: _RANK[ki[1].status])  # stable: layer order within a status
    return {
        "host": printable(r.host), "target": _p(r.target) if r.target else "",
        "error": _p(r.error) if r.error else "", "checked": iso(r.checked_at) if r.checked_at else "",
        "items": [[layer, i.status, _p(i.title), [[_p(k), _p(v)] for k, v in i.evidence]] for layer, i in items],
        "fix": [_p(line) for line in r.fix], "fixsrc": r.fix_source,
    }


def build_report(store: Store, *, generated_at: float, hosts: Sequence[str] | None = None) -> str:
    last = store.last_run("drift")
    return render_html(collect(store, hosts), generated_at=generated_at, last_run=last[1] if last else None)
