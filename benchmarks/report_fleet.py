"""Benchmark `remediate report` at fleet scale: seconds and bytes for 1,000 and 10,000 hosts.

Usage (from the repository root):

    .venv/bin/python benchmarks/report_fleet.py                    # 1,000 and 10,000 hosts, 3 runs each
    .venv/bin/python benchmarks/report_fleet.py 500 2000 --runs 5 --chromium

The fleet is tests/unit/report_fleet.py's: recorded probe outputs and example facts with seeded variety,
their real drift checks and plans, recorded in a fresh state db (not timed). Timed: reading the store
(`collect`: each host's latest check, probe, plan and verify), the summary and problem groups
(`summarize`), and writing the page (`render_html`); the median of the runs is printed. With
--chromium, headless Chromium opens the page once and the page's script reports how long after
navigation started it was ready (parsed, sorted, filtered: `data-ready-ms`).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.unit.report_fleet builds the fleet

from remediator.report import collect, render_html, summarize  # noqa: E402
from remediator.state import Store  # noqa: E402
from tests.unit.report_fleet import build_fleet  # noqa: E402


def ready_ms(page: Path) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        return "no chromium"
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                             capture_output=True, timeout=300, check=True).stdout.decode()
    found = re.search(r'<table id="hosts"[^>]*data-ready-ms="(\d+)"', out)
    return f"{found.group(1)} ms" if found else "script did not run"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("counts", nargs="*", type=int, default=[1000, 10000], help="fleet sizes (default 1000 10000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chromium", action="store_true", help="also open each page in headless Chromium")
    args = parser.parse_args(argv)
    print(f"# {platform.machine()}, {len(os.sched_getaffinity(0))} CPU(s), Python "
          f"{platform.python_version()}")
    print("hosts | build db (s) | collect (s) | summarize (s) | render (s) | total (s) | bytes | bytes/host | groups"
          + (" | Chromium ready" if args.chromium else ""))
    with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp:
        for count in args.counts:
            db = Path(tmp) / f"state-{count}.db"
            t0 = time.perf_counter()
            build_fleet(db, count)
            build = time.perf_counter() - t0
            times: dict[str, list[float]] = {"collect": [], "summarize": [], "render": []}
            page = ""
            groups = 0
            for _ in range(args.runs):
                t0 = time.perf_counter()
                with Store.open(db) as store:
                    rows = collect(store)
                t1 = time.perf_counter()
                summary = summarize(rows)
                t2 = time.perf_counter()
                page = render_html(rows, generated_at=time.time(), summary=summary)
                t3 = time.perf_counter()
                times["collect"].append(t1 - t0)
                times["summarize"].append(t2 - t1)
                times["render"].append(t3 - t2)
                groups = len(summary.groups)
            med = {k: statistics.median(v) for k, v in times.items()}
            size = len(page.encode())
            line = (f"{count} | {build:.2f} | {med['collect']:.2f} | {med['summarize']:.3f} | {med['render']:.2f} | "
                    f"{sum(med.values()):.2f} | {size} | {size // count} | {groups}")
            if args.chromium:
                path = Path(tmp) / f"report-{count}.html"
                path.write_text(page)
                line += f" | {ready_ms(path)}"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
