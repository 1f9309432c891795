"""The fleet report: the state store's latest records as one self-contained HTML page, and as JSON.

`model` reads a row per host from the store, `summary` counts the fleet and groups hosts by problem
(pure), `charts` draws the version charts as inline SVG, `page` writes the HTML and `script` is the
page's one script (sorting, filtering, folded host details).
"""

from __future__ import annotations

from remediator.report.model import COLUMNS, STATUSES, Cell, HostRow, Item, collect, swatch_colour
from remediator.report.page import build_report, csp, render_html
from remediator.report.summary import FleetSummary, Group, summarize

__all__ = ["COLUMNS", "STATUSES", "Cell", "FleetSummary", "Group", "HostRow", "Item", "build_report", "collect",
           "csp", "render_html", "summarize", "swatch_colour"]
