"""The fleet in numbers, from the report's rows (pure): status counts, version distributions, problem groups.

This is what a person reads first at 1,000 hosts, and what `remediate report --format json` prints for
scripts. Hosts with the same problem (the same set of error/warning codes and changed layers) form one
group, with the fix that applies to it: the actions every host of the group shares, and what varies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from remediator.report.model import STATUSES, HostRow

# Chart key, title: the keys of HostRow.versions.
CHARTS: tuple[tuple[str, str], ...] = (
    ("driver", "NVIDIA driver"), ("cuda", "CUDA toolkit (default)"), ("cuda_driver", "CUDA the driver supports"),
    ("cudnn", "cuDNN"), ("framework", "Frameworks"),
)
TOP = 8  # bars per chart before "other": more stops being readable at a glance
FIX_LINES = 12  # fix lines shown per group, common and varying together


@dataclass(frozen=True)
class Distribution:
    """How many hosts have each label of one chart: the top labels, then the rest as one "other" bar."""

    key: str
    title: str
    bars: tuple[tuple[str, int], ...]
    other_hosts: int  # hosts with at least one label past the top
    other_labels: int
    hosts: int  # hosts with facts, the chart's denominator

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "hosts": self.hosts,
                "bars": [{"label": label, "hosts": n} for label, n in self.bars],
                "other": {"labels": self.other_labels, "hosts": self.other_hosts}}


@dataclass(frozen=True)
class Group:
    """Hosts with the same problem, and the fix that applies to them."""

    id: str  # g1, g2, ...: largest first; the page's filter and links use it
    codes: tuple[str, ...]
    hosts: tuple[str, ...]
    statuses: tuple[tuple[str, int], ...]
    what: str  # the first host's message for the group's first code, to say the problem in words
    # "plan": the lines are the current plans' actions (of the hosts that have one: `unplanned` have none);
    # "diagnosis": no host has a current plan, the lines are the findings' fix hints; "": nothing known.
    fix_source: str
    fix_common: tuple[str, ...]  # lines every host the lines come from shares
    fix_varies: tuple[tuple[str, int], ...]  # lines only some of those hosts have, with how many
    fix_more: int  # varying lines left out past FIX_LINES
    unplanned: int = 0  # hosts of a "plan" group without a current plan (their hints are not mixed in)

    @property
    def varies(self) -> bool:
        return bool(self.fix_varies or self.fix_more)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "codes": list(self.codes), "count": len(self.hosts), "hosts": list(self.hosts),
                "statuses": dict(self.statuses), "what": self.what,
                "fix": {"source": self.fix_source, "same_for_all": not self.varies, "common": list(self.fix_common),
                        "varies": [{"line": line, "hosts": n} for line, n in self.fix_varies],
                        "more_varying_lines": self.fix_more, "hosts_without_current_plan": self.unplanned}}


@dataclass(frozen=True)
class FleetSummary:
    hosts: int
    counts: tuple[tuple[str, int], ...]  # every status of STATUSES, in that order, zero included
    charts: tuple[Distribution, ...]
    groups: tuple[Group, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"hosts": self.hosts, "counts": dict(self.counts), "charts": [c.to_dict() for c in self.charts],
                "groups": [g.to_dict() for g in self.groups]}


def summarize(rows: Sequence[HostRow], *, top: int = TOP) -> FleetSummary:
    counts = Counter(r.status for r in rows)
    ordered = [(s, counts.pop(s, 0)) for s in STATUSES] + sorted(counts.items())  # unknown statuses last
    return FleetSummary(len(rows), tuple(ordered), tuple(distribution(rows, k, t, top) for k, t in CHARTS),
                        groups(rows))


def distribution(rows: Sequence[HostRow], key: str, title: str, top: int = TOP) -> Distribution:
    counts: Counter[str] = Counter()
    labelled = [set(r.versions[key]) for r in rows if r.versions.get(key)]
    for labels in labelled:
        counts.update(labels)
    # Most hosts first; ties in the label's order, so the same fleet always draws the same chart.
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    rest = {label for label, _ in ranked[top:]}
    other = sum(1 for labels in labelled if labels & rest)
    return Distribution(key, title, tuple(ranked[:top]), other, len(rest), len(labelled))


def groups(rows: Sequence[HostRow]) -> tuple[Group, ...]:
    """One group per distinct problem, largest first (then by codes); hosts without a problem are in none."""
    by_codes: dict[tuple[str, ...], list[HostRow]] = {}
    for r in rows:
        if r.codes:
            by_codes.setdefault(r.codes, []).append(r)
    ranked = sorted(by_codes.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return tuple(_group(f"g{i}", codes, members) for i, (codes, members) in enumerate(ranked, 1))


def _group(gid: str, codes: tuple[str, ...], members: list[HostRow]) -> Group:
    # A plan says exactly what would change; hints only say what to look at. Where some hosts have a
    # current plan, the group's fix is their plans', and the others are counted, not mixed in.
    planned = [m for m in members if m.fix_source == "plan"]
    source = "plan" if planned else "diagnosis" if any(m.fix for m in members) else ""
    basis = planned or members
    common = [line for line in dict.fromkeys(basis[0].fix) if all(line in m.fix for m in basis[1:])]
    varying: Counter[str] = Counter()
    for m in basis:
        varying.update(line for line in dict.fromkeys(m.fix) if line not in common)
    ranked = sorted(varying.items(), key=lambda kv: (-kv[1], kv[0]))
    room = max(FIX_LINES - len(common), 3)
    statuses = Counter(m.status for m in members)
    return Group(gid, codes, tuple(m.host for m in members), tuple(sorted(statuses.items())),
                 _what(codes, members[0]), source, tuple(common), tuple(ranked[:room]), max(len(ranked) - room, 0),
                 len(members) - len(planned) if planned else 0)


def _what(codes: tuple[str, ...], row: HostRow) -> str:
    """The group's problem in words: what its first host says of the group's first code."""
    return row.said.get(codes[0], codes[0]) if codes else ""
