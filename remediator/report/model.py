"""The report's rows: one per host, read from the state store's latest drift check, probe, plan and verify.

Each row keeps what the page and the summary need: the status, a cell per stack layer coloured by the
worst thing found there (an error finding, a change since known-good, a warning) with its evidence,
the versions the fleet charts count, the problem codes hosts are grouped by and the fix that applies.
Values stay as the host wrote them; escaping is the page's job (remediator.report.page).
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from remediator.facts import HostFacts
from remediator.plan import Action, fingerprint
from remediator.state import Store, iso

# What a host's row says of it, worst first: its drift check's outcome (a drift split into a change since
# known-good and findings against the target, as the legend promises), or unchecked without one.
STATUSES: tuple[str, ...] = ("not compliant", "changed", "failed", "unreachable", "unchecked", "ok")
FixSource = Literal["plan", "diagnosis", ""]  # where a host's fix lines came from; "" nothing known
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
    # What the fleet charts count, per chart key (remediator.report.summary.CHARTS): labels as written.
    versions: dict[str, list[str]] = field(default_factory=dict)
    # The problem the host is grouped by: its error and warning codes, `changed:<layer>` per changed layer,
    # or its drift check's outcome when it could not be checked.
    codes: tuple[str, ...] = ()
    fix: tuple[str, ...] = ()  # one line per planned action, or the diagnosis' fix hints
    fix_source: FixSource = ""
    said: dict[str, str] = field(default_factory=dict)  # each code of `codes`: the first message saying it


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
        plan = store.last_plan(host)
        report: Mapping[str, Any] = check.report if check is not None else {}
        findings: list[Mapping[str, Any]] = list(report.get("findings", []))
        if check is None and plan is not None:
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
        row.versions = versions_of(facts)
        row.codes = problem_codes(row.status, findings, report.get("changes", []))
        row.said = _said(row, findings, report.get("changes", []))
        current = (probe.fingerprint or fingerprint(facts)) if probe is not None and facts is not None else None
        row.fix, row.fix_source = _fix(plan, current, findings, report.get("hint"))
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


def problem_codes(status: str, findings: Sequence[Mapping[str, Any]],
                  changes: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """What groups hosts with the same problem: sorted, so the order findings came in does not split groups."""
    if status in ("unreachable", "failed"):
        return (status.upper(),)
    codes = {str(f.get("code")) for f in findings if f.get("severity") in ("error", "warning")}
    codes |= {f"changed:{_LAYER_COLUMN.get(str(c.get('layer')), 'framework')}" for c in changes}
    return tuple(sorted(codes))


def _said(row: HostRow, findings: Sequence[Mapping[str, Any]], changes: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    said: dict[str, str] = {}
    if row.status in ("unreachable", "failed") and row.codes:
        said[row.codes[0]] = row.error or row.status
    for f in findings:
        said.setdefault(str(f.get("code")), f"{f.get('code')}: {f.get('message')}")
    for c in changes:
        said.setdefault(f"changed:{_LAYER_COLUMN.get(str(c.get('layer')), 'framework')}",
                        f"changed since known-good: {c.get('summary')}")
    return said


def _fix(plan: tuple[float, Mapping[str, Any]] | None, current: str | None,
         findings: Sequence[Mapping[str, Any]], hint: object) -> tuple[tuple[str, ...], FixSource]:
    """The plan's actions when the plan was made from the facts the host has now (`current`: their
    fingerprint); else the findings' fix hints.

    A plan made from other facts (the host changed since) would name the wrong paths, so it is not shown.
    """
    if plan is not None and current is not None and plan[1].get("fingerprint") == current:
        lines = tuple(action_line(a) for a in plan[1].get("actions", []) if isinstance(a, Mapping))
        if lines or plan[1].get("status") == "compliant":
            return lines, "plan"
    hints = [str(f["fix"]) for f in findings if f.get("fix")] or ([str(hint)] if hint else [])
    return tuple(dict.fromkeys(hints)), "diagnosis" if hints else ""


def action_line(action: Mapping[str, Any]) -> str:
    """`+ install package cuda-toolkit-11-0`: the plan command's wording of one recorded action."""
    from remediator.cli.plan import describe  # the wording `remediate plan` prints

    try:
        a = Action(kind=action["kind"], params=dict(action.get("params") or {}), finding=action.get("finding"),
                   reason=str(action.get("reason", "")), requires_approval=bool(action.get("requires_approval")))
        text = f"{a.symbol} {describe(a)}"
    except (KeyError, TypeError, ValueError, AttributeError):
        return f"? {action.get('kind')}: {action.get('params')}"  # a plan from another version of remediate
    return text + (" [needs approval]" if a.requires_approval else "")


def versions_of(facts: HostFacts | None) -> dict[str, list[str]]:
    """The labels each fleet chart counts this host under (distinct per host; empty when not probed)."""
    if facts is None:
        return {}
    d = facts.driver
    default = facts.default_toolkit()
    return {
        "driver": [d.version or "none"],
        "cuda": [_major_minor(default.version) if default else ("no default" if facts.toolkits else "none")],
        "cuda_driver": [d.cuda_driver_version or "unknown"],
        "cudnn": list(dict.fromkeys(_major_minor(x.version) for x in facts.cudnn)) or ["none"],
        "framework": list(dict.fromkeys(f"{f.name} {f.version}" for e in facts.envs for f in e.frameworks))
        or ["none"],
    }


def _major_minor(version: str) -> str:
    # 11.0.221 and 11.0.3 are one CUDA 11.0 to a reader of the chart; a value that is not dotted stays whole.
    parts = version.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 and all(p.isdigit() for p in parts[:2]) else version


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
