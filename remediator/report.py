"""The fleet at a glance: one self-contained HTML page built from the state store's latest records.

Hosts are rows, stack layers are columns, each cell coloured by the worst thing found in that layer
(an error finding, a change since known-good, a warning); every finding and change sits in a
`<details>` element with its evidence, one click away. No scripts, no external assets: the page is
one file that can be mailed or archived. Everything that came from a host is HTML-escaped, and its
control and bidi characters are shown escaped as in the terminal (`printable`), so no value can reorder
or hide the text around it.
"""

from __future__ import annotations

import colorsys
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from remediator.cli.render import printable
from remediator.facts import HostFacts
from remediator.state import Store, iso

CellStatus = Literal["error", "drift", "warning", "ok", "unknown"]
_RANK: dict[CellStatus, int] = {"error": 0, "drift": 1, "warning": 2, "ok": 3, "unknown": 4}
COLUMNS: tuple[tuple[str, str], ...] = (
    ("driver", "Driver"), ("cuda", "CUDA"), ("cudnn", "cuDNN"), ("loader", "Loader"),
    ("framework", "Framework"), ("gpu", "GPU check"),
)
# Drift layers to report columns: the OS kernel matters through the driver module, envs through frameworks.
_LAYER_COLUMN = {"os": "driver", "driver": "driver", "gpu": "gpu", "cuda": "cuda", "cudnn": "cudnn",
                 "loader": "loader", "env": "framework", "framework": "framework"}
_CODE_COLUMN = (("DRIVER_", "driver"), ("CUDA_", "cuda"), ("CUDNN_", "cudnn"), ("LIB_SHADOWED", "loader"),
                ("LDPATH_", "loader"), ("FRAMEWORK_", "framework"), ("PYTHON_", "framework"))


@dataclass
class Item:
    """One finding or change shown in a cell: a title, and the evidence behind the click."""

    status: CellStatus
    title: str
    evidence: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Cell:
    text: str = ""
    items: list[Item] = field(default_factory=list)
    base: CellStatus = "ok"

    @property
    def status(self) -> CellStatus:
        statuses = [i.status for i in self.items] + [self.base]
        return min(statuses, key=lambda s: _RANK[s])


@dataclass
class HostRow:
    host: str
    status: str  # ok / changed / not compliant / unreachable / failed / unchecked
    target: str | None
    checked_at: float | None
    swatch: str
    error: str | None = None
    cells: dict[str, Cell] = field(default_factory=lambda: {key: Cell() for key, _ in COLUMNS})


def swatch_colour(index: int) -> str:
    """A distinct solid colour per row (golden-angle hues), so a screenshot shows which rows rendered."""
    hue = (index * 0.381966) % 1.0
    r, g, b = colorsys.hls_to_rgb(hue, 0.5, 0.75)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def _column_of_finding(code: str, message: str) -> str:
    for prefix, column in _CODE_COLUMN:
        if code.startswith(prefix):
            return column
    low = message.lower()
    return "driver" if low.startswith("driver") else "cudnn" if "cudnn" in low else "cuda" if "cuda" in low \
        else "framework"


def collect(store: Store, hosts: Sequence[str] | None = None) -> list[HostRow]:
    """One row per host from the store's latest drift check, probe, plan and verify of each."""
    rows = []
    for index, host in enumerate(hosts if hosts is not None else store.hosts()):
        check = store.last_check(host)
        probe = store.last_probe(host)
        verify = store.last_verify(host)
        report: Mapping[str, Any] = check.report if check is not None else {}
        findings: list[Mapping[str, Any]] = list(report.get("findings", []))
        if check is None:
            plan = store.last_plan(host)
            if plan is not None:
                findings = list(plan[1].get("findings", []))
        host_status = check.status if check else "unchecked"
        if host_status == "drift":
            # A drift check fails a host for either reason; the page says which, as its legend promises.
            host_status = "changed" if report.get("changes") else "not compliant"
        row = HostRow(host=host, status=host_status, target=report.get("target"),
                      checked_at=check.at if check else None, swatch=swatch_colour(index),
                      error=report.get("error"))
        facts = probe.facts if probe is not None else None
        _fill_texts(row, facts)
        if row.status in ("unreachable", "failed"):
            for cell in row.cells.values():
                cell.base = "unknown"
        for f in findings:
            sev = f.get("severity")
            status: CellStatus = "error" if sev == "error" else "warning" if sev == "warning" else "ok"
            evidence = [(str(k), str(v)) for k, v in dict(f.get("evidence") or {}).items()]
            if f.get("fix"):
                evidence.append(("fix", str(f["fix"])))
            item = Item(status, f"{f.get('code')}: {f.get('message')}", evidence)
            row.cells[_column_of_finding(str(f.get("code")), str(f.get("message")))].items.append(item)
        for c in report.get("changes", []):
            evidence = [("change", str(c.get("kind"))), ("what", str(c.get("path")))]
            if c.get("field"):
                evidence.append(("field", str(c["field"])))
            evidence += [("before", str(c.get("before"))), ("after", str(c.get("after")))]
            row.cells[_LAYER_COLUMN.get(str(c.get("layer")), "framework")].items.append(
                Item("drift", f"changed since known-good: {c.get('summary')}", evidence))
        gpu = row.cells["gpu"]
        if verify is not None:
            gpu.items.append(Item("ok" if verify.passed else "error",
                                  f"verify {'passed' if verify.passed else 'failed'} at {iso(verify.at)}",
                                  [(str(k), _short(v)) for k, v in verify.result.items()]))
        elif gpu.base == "ok":
            gpu.base = "unknown"
        rows.append(row)
    return rows


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 2000 else text[:2000] + " ..."


def _fill_texts(row: HostRow, facts: HostFacts | None) -> None:
    c = row.cells
    if facts is None:
        for cell in c.values():
            cell.text = "not probed"
            cell.base = "unknown"
        return
    d = facts.driver
    c["driver"].text = d.version or "none"
    default = facts.default_toolkit()
    others = len(facts.toolkits) - (1 if default else 0)
    c["cuda"].text = (f"{default.version} (default)" if default else "no default") + (
        f" +{others} more" if others else "")
    c["cudnn"].text = ", ".join(dict.fromkeys(x.version for x in facts.cudnn)) or "none"
    c["loader"].text = f"{len(facts.loader.ld_library_path)} LD_LIBRARY_PATH, {len(facts.loader.ld_so_conf)} conf"
    fws = [f"{f.name} {f.version}" for e in facts.envs for f in e.frameworks]
    c["framework"].text = ", ".join(fws) or "none"
    names = [g.name for g in facts.gpus]
    c["gpu"].text = (f"{len(names)}x {names[0]}" if names and len(set(names)) == 1 else ", ".join(names)) or "no GPU"


# --- HTML -----------------------------------------------------------------------------------------


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #1a1a1a; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
p.meta { margin: 0 0 12px; color: #555; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; text-align: left; }
th { background: #eee; }
td.host { white-space: nowrap; font-weight: 600; }
span.swatch { display: inline-block; width: 28px; height: 28px; vertical-align: middle; margin-right: 6px; }
td.error { background: #f8c9c4; } td.drift { background: #e3cdf5; } td.warning { background: #fbe8b0; }
td.ok { background: #cdebd0; } td.unknown { background: #e6e6e6; }
details { margin: 2px 0; } summary { cursor: pointer; font-size: 12px; }
dl { margin: 2px 0 4px 12px; font-size: 12px; } dt { font-weight: 600; } dd { margin: 0 0 2px 12px; }
dd, .val { font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
.legend span { display: inline-block; padding: 1px 6px; margin-right: 4px; border: 1px solid #ccc; }
"""


def _e(value: object) -> str:
    return html.escape(printable(value), quote=True)


def render_html(rows: Sequence[HostRow], *, generated_at: float, last_run: float | None = None,
                title: str = "remediate: fleet report") -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no hosts recorded"
    meta = f"{len(rows)} host(s): {summary}. Generated {iso(generated_at)}"
    if last_run is not None:
        meta += f"; last drift check started {iso(last_run)}"
    out = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>", f'<p class="meta">{_e(meta)}.</p>',
        '<p class="legend">'
        + "".join(f'<span class="{s}" style="background:{_BG[s]}">{_e(w)}</span>' for s, w in _LEGEND)
        + "</p>",
        '<table id="fleet"><thead><tr><th>Host</th><th>Status</th>'
        + "".join(f"<th>{_e(name)}</th>" for _, name in COLUMNS) + "</tr></thead><tbody>",
    ]
    for r in rows:
        out.append(_row(r))
    out.append("</tbody></table></body></html>\n")
    return "\n".join(out)


_BG = {"error": "#f8c9c4", "drift": "#e3cdf5", "warning": "#fbe8b0", "ok": "#cdebd0", "unknown": "#e6e6e6"}
_LEGEND = (("error", "error finding"), ("drift", "changed since known-good"), ("warning", "warning"),
           ("ok", "ok"), ("unknown", "unknown / not checked"))


def _row(r: HostRow) -> str:
    target = f"<br><small>{_e(r.target)}</small>" if r.target else ""
    when = f"<br><small>{_e(iso(r.checked_at))}</small>" if r.checked_at else ""
    status_class = {"ok": "ok", "changed": "drift", "not compliant": "error", "unreachable": "error",
                    "failed": "error"}.get(r.status, "unknown")
    error = f"<br><small>{_e(r.error)}</small>" if r.error else ""
    parts = [
        f'<tr data-host="{_e(r.host)}" data-status="{_e(r.status)}">',
        f'<td class="host"><span class="swatch" style="background:{r.swatch}" data-swatch="{r.swatch}"></span>'
        f"{_e(r.host)}{target}</td>",
        f'<td class="{status_class}">{_e(r.status)}{when}{error}</td>',
    ]
    for key, _ in COLUMNS:
        cell = r.cells[key]
        items = "".join(_item(i) for i in sorted(cell.items, key=lambda i: _RANK[i.status]))
        parts.append(f'<td class="{cell.status}" data-layer="{key}"><span class="val">{_e(cell.text)}</span>'
                     f"{items}</td>")
    parts.append("</tr>")
    return "".join(parts)


def _item(item: Item) -> str:
    evidence = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in item.evidence)
    return (f'<details class="{item.status}"><summary>{_e(item.title)}</summary>'
            + (f"<dl>{evidence}</dl>" if evidence else "") + "</details>")


def build_report(store: Store, *, generated_at: float, hosts: Sequence[str] | None = None) -> str:
    last = store.last_run("drift")
    return render_html(collect(store, hosts), generated_at=generated_at, last_run=last[1] if last else None)
