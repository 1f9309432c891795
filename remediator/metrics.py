"""Prometheus metrics of a drift run, written as a node_exporter textfile-collector file.

The collector reads every `*.prom` file in its directory on each scrape, so the file is written to a
temporary name in the same directory and renamed over the old one: a scrape sees the old file or the
new one, never half of one. Samples carry no timestamps (the collector rejects them); times are values
in unix seconds, as node_exporter's own `*_timestamp_seconds` metrics are.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from remediator.drift import DriftRun, HostDrift
from remediator.errors import InputError
from remediator.files import write_private

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class _Family:
    name: str
    kind: str  # gauge / counter
    help: str
    samples: list[tuple[dict[str, str], float]]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[_Family]) -> str:
    lines: list[str] = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {_escape_help(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.kind}")
        for labels, value in fam.samples:
            if labels:
                inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
                lines.append(f"{fam.name}{{{inner}}} {_number(value)}")
            else:
                lines.append(f"{fam.name} {_number(value)}")
    return "\n".join(lines) + "\n"


def drift_metrics(run: DriftRun, last_success: Mapping[str, float] | None = None) -> str:
    """The text of the metrics file for one drift run.

    `last_success` maps a host to the unix time of its last drift check that could probe it (from the
    store), so a host that is unreachable now still shows when it was last checked.
    """
    last = dict(last_success or {})
    for h in run.hosts:
        if h.status in ("ok", "drift"):
            last[h.host] = run.started_at

    def per_host(fn: Callable[[HostDrift], float | None]) -> list[tuple[dict[str, str], float]]:
        out = []
        for h in run.hosts:
            value = fn(h)
            if value is not None:
                out.append(({"host": h.host}, float(value)))
        return out

    findings = [({"host": h.host, "severity": sev}, float(sum(1 for f in h.findings if f.severity == sev)))
                for h in run.hosts if h.status in ("ok", "drift") for sev in SEVERITIES]
    counts = run.counts()
    families = [
        _Family("remediator_host_up", "gauge", "1 if the host could be probed in the last drift check, else 0.",
                per_host(lambda h: 1 if h.status in ("ok", "drift") else 0)),
        _Family("remediator_host_compliant", "gauge",
                "1 if the host has no error findings against its target, else 0 (absent when not probed).",
                per_host(lambda h: None if h.compliant is None else int(h.compliant))),
        _Family("remediator_host_drifted", "gauge",
                "1 if the host changed since its last known-good state, else 0 (absent when not probed).",
                per_host(lambda h: None if h.compliant is None else int(h.drifted))),
        _Family("remediator_host_has_baseline", "gauge", "1 if the host has a known-good state to compare with.",
                per_host(lambda h: None if h.compliant is None else int(h.baseline_source is not None))),
        _Family("remediator_host_findings", "gauge", "Diagnosis findings of the host by severity.", findings),
        _Family("remediator_host_drift_changes", "gauge", "Changes since the host's last known-good state.",
                per_host(lambda h: None if h.compliant is None else len(h.changes))),
        _Family("remediator_host_probe_duration_seconds", "gauge", "Seconds the probe of the host took.",
                per_host(lambda h: round(h.probe_duration_s, 6))),
        _Family("remediator_host_last_successful_check_timestamp_seconds", "gauge",
                "Unix time of the last drift check that could probe the host.",
                [({"host": h.host}, last[h.host]) for h in run.hosts if h.host in last]),
        _Family("remediator_drift_hosts", "gauge", "Hosts of the last drift check by status.",
                [({"status": s}, float(n)) for s, n in counts.items()]),
        _Family("remediator_drift_last_run_timestamp_seconds", "gauge", "Unix time the last drift check started.",
                [({}, run.started_at)]),
        _Family("remediator_drift_last_run_duration_seconds", "gauge", "Seconds the last drift check took.",
                [({}, round(run.duration_s, 6))]),
    ]
    return render(families)


def write_textfile(path: str | os.PathLike[str], text: str) -> None:
    """Write atomically (`remediator.files.write_private`: temp file, fsync, rename over `path`), mode 0644."""
    target = Path(path)
    directory = target.parent
    if target.suffix != ".prom":
        raise InputError(str(target), "the textfile collector reads only files named *.prom")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # The temp name (.NAME.XXXX.tmp) does not end in .prom, so the collector never reads it half written;
        # 0644: node_exporter runs as its own user.
        write_private(target, text, mode=0o644)
    except OSError as exc:
        raise InputError(str(target), f"cannot write the metrics file: {exc.strerror or exc}") from None
