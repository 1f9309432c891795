"""Diagnose 10,000 generated hosts' facts on one core and print hosts/s.

Usage: .venv/bin/python benchmarks/diagnose_fleet.py [--hosts N] [--seed S]

The hosts are generated from the example facts in inventories/examples/ with seeded variation of
driver, toolkits, cuDNN copies and loader path, so every rule of diagnosis is exercised.
Loading the matrix and building the facts are outside the timed part; diagnosis alone is timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from pathlib import Path

from remediator.diagnosis import diagnose
from remediator.facts import CudaToolkit, CudnnInstall, HostFacts, LdPathEntry
from remediator.matrix import load_matrix, parse_target

EXAMPLES = Path(__file__).resolve().parent.parent / "inventories" / "examples"
DRIVERS = ["418.87.01", "450.80.02", "470.57.02", "525.85.12", "535.161.08", "550.54.15", "580.65.06"]
TOOLKITS = ["10.1.243", "11.0.221", "11.2.152", "11.8.89", "12.2.140", "12.4.131"]
CUDNN = ["7.6.5", "8.0.5", "8.1.1", "8.6.0", "8.9.7", "9.1.0"]


def generate(n: int, seed: int) -> list[tuple[HostFacts, str]]:
    rng = random.Random(seed)
    bases = []
    for path in sorted(EXAMPLES.glob("*.json")):
        data = json.loads(path.read_text())
        bases.append((HostFacts.from_dict(data, source=str(path)), data["example_target"]))
    hosts = []
    for i in range(n):
        base, target = rng.choice(bases)
        tks = tuple(
            CudaToolkit(version=v, path=f"/usr/local/cuda-{'.'.join(v.split('.')[:2])}", install_method="runfile",
                        is_default=(j == 0))
            for j, v in enumerate(rng.sample(TOOLKITS, rng.randint(0, 3)))
        )
        dnn = tuple(
            CudnnInstall(version=v, path=f"{tks[0].path}/lib64" if tks else "/usr/lib/x86_64-linux-gnu",
                         install_method="tarball" if tks else "deb", in_toolkit=tks[0].path if tks else None)
            for v in rng.sample(CUDNN, rng.randint(0, 2))
        )
        ld = tuple(LdPathEntry(f"{t.path}/lib64", "/etc/profile.d/cuda.sh", rng.random() > 0.1) for t in tks)
        facts = dataclasses.replace(
            base,
            host=f"gpu{i:05d}",
            driver=(dataclasses.replace(base.driver, version=rng.choice(DRIVERS))
                    if base.driver.version else base.driver),
            toolkits=tks or base.toolkits,
            cudnn=dnn or base.cudnn,
            loader=dataclasses.replace(base.loader, ld_library_path=ld) if ld else base.loader,
        )
        hosts.append((facts, target))
    return hosts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    matrix = load_matrix()
    hosts = generate(args.hosts, args.seed)
    targets = {t: parse_target(t) for _, t in hosts}
    start, cpu = time.perf_counter(), time.process_time()
    findings = 0
    for facts, target in hosts:
        findings += len(diagnose(facts, targets[target], matrix))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"diagnosed {len(hosts)} hosts in {elapsed:.3f} s wall, {cpu:.3f} s CPU: {len(hosts) / elapsed:,.0f} hosts/s "
          f"({findings} findings)")


if __name__ == "__main__":
    main()
