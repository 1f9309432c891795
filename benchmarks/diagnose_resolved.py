"""Diagnose 10,000 hosts whose facts carry what the loader can reach (libdirs, ELF deps, launch envs), on
one core, and print hosts/s: the cost of resolving every library like the loader (remediator.linkage).

Usage: .venv/bin/python benchmarks/diagnose_resolved.py [--hosts N]

The hosts cycle through the recorded probe facts that have library dirs (tests/fixtures/probe/*.facts.json,
re-recorded with the loader-resolution probe, and the real H100's in tests/fixtures/device/); each is
diagnosed without a target, so every env's framework is resolved. Loading is outside the timed part.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from remediator.diagnosis import diagnose
from remediator.facts import HostFacts, load_facts_file
from remediator.matrix import load_matrix

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def recorded() -> list[HostFacts]:
    files = [*sorted((FIXTURES / "probe").glob("*.facts.json")), FIXTURES / "device" / "h100-probe-local.json",
             FIXTURES / "device" / "h100-shadowed-probe.json"]
    return [f for path in files for f in load_facts_file(str(path)) if f.libdirs]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=10_000)
    args = parser.parse_args()
    matrix = load_matrix()
    bases = recorded()
    hosts = [dataclasses.replace(bases[i % len(bases)], host=f"gpu{i:05d}") for i in range(args.hosts)]
    libs = sum(len(d.libs) for f in bases for d in f.libdirs) / len(bases)
    t0, c0 = time.perf_counter(), time.process_time()
    findings = sum(len(diagnose(h, None, matrix)) for h in hosts)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{args.hosts} hosts ({len(bases)} recorded layouts, {libs:.0f} libraries each on average): "
          f"{wall:.3f} s ({cpu:.3f} s CPU), {args.hosts / wall:,.0f} hosts/s, {findings} findings")


if __name__ == "__main__":
    main()
