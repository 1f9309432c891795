"""Plan 10,000 hosts from saved facts and print hosts/s (goal: under 2 s on one core).

Usage: .venv/bin/python benchmarks/plan_fleet.py [--hosts N] [--seed S]

The facts are the same seeded fleet as benchmarks/diagnose_fleet.py (generated from
inventories/examples/); planning includes diagnosis, the remedy, the allowlist checks and the facts
fingerprint. Serialising the plan to JSON is timed separately.
"""

from __future__ import annotations

import argparse
import json
import time

from diagnose_fleet import generate

from remediator.matrix import load_matrix, parse_target
from remediator.plan import Plan, plan_host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    matrix = load_matrix()
    hosts = generate(args.hosts, args.seed)
    targets = {t: parse_target(t) for _, t in hosts}
    start, cpu = time.perf_counter(), time.process_time()
    plans = [plan_host(facts, targets[target], matrix) for facts, target in hosts]
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    text = json.dumps(Plan(hosts=tuple(plans), matrix_version=matrix.version).to_dict())
    dumped = time.perf_counter() - start
    statuses: dict[str, int] = {}
    for p in plans:
        statuses[p.status] = statuses.get(p.status, 0) + 1
    print(f"planned {len(plans)} hosts in {elapsed:.3f} s wall, {cpu:.3f} s CPU: {len(plans) / elapsed:,.0f} "
          f"hosts/s {statuses}; "
          f"plan JSON {len(text) / 1e6:.1f} MB in {dumped:.3f} s")


if __name__ == "__main__":
    main()
