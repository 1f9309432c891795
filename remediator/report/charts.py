"""Small horizontal bar charts as inline SVG, drawn here so the page needs no script library and no asset.

Labels are host values (driver and framework versions): they are made printable and XML-escaped like
every other host value on the page, and cut to a length that fits the label column.
"""

from __future__ import annotations

import html

from remediator.cli.render import printable
from remediator.report.summary import Distribution

WIDTH = 300
LABEL_W = 132
BAR_H = 14
GAP = 4
LABEL_CHARS = 20


def _text(value: object) -> str:
    text = printable(value)
    if len(text) > LABEL_CHARS:
        text = text[:LABEL_CHARS - 1] + "\u2026"
    return html.escape(text, quote=True)


def bar_chart(dist: Distribution, colour: str) -> str:
    """One chart: a bar per label scaled to the largest, the host count at its end, and "other" last."""
    bars = list(dist.bars)
    if dist.other_labels:
        bars.append((f"other ({dist.other_labels})", dist.other_hosts))
    if not bars:
        return '<p class="empty">no facts</p>'
    peak = max(n for _, n in bars) or 1
    room = WIDTH - LABEL_W - 40
    height = len(bars) * (BAR_H + GAP)
    parts = [f'<svg class="chart" role="img" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
             f'aria-label="{html.escape(dist.title)}">']
    for i, (label, n) in enumerate(bars):
        y = i * (BAR_H + GAP)
        w = max(1, round(room * n / peak))
        fill = "#9e9e9e" if dist.other_labels and i == len(bars) - 1 else colour
        parts.append(
            f'<g><title>{html.escape(printable(label))}: {n} host(s)</title>'
            f'<text x="{LABEL_W - 4}" y="{y + BAR_H - 3}" text-anchor="end">{_text(label)}</text>'
            f'<rect x="{LABEL_W}" y="{y}" width="{w}" height="{BAR_H}" fill="{fill}"/>'
            f'<text x="{LABEL_W + w + 4}" y="{y + BAR_H - 3}">{n}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
