"""A state store holding a fleet of N hosts of realistic variety, for the report's scale test and benchmark.

Each host is one of the recorded probe outputs of tests/fixtures/probe (real-world oddities: cuDNN
copies, a driver/library mismatch, no driver, many frameworks, a real H200) or of inventories/examples,
with a seeded driver version, drift since its known-good state on some hosts, unreachable and failed
probes on a few, verify results on some. Its drift check and plan are the real ones (check_host,
plan_host / plan_inferred against the shipped matrix), recorded through the store's own API, so the
report reads what `remediate drift` and `remediate plan` would have left. Checks and plans are computed
once per distinct variant and given each host's name, which keeps 10,000 hosts quick to build.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

from remediator.drift import Baseline, HostDrift, check_host
from remediator.facts import HostFacts
from remediator.lab.catalog import driver_cuda
from remediator.matrix import Matrix, load_matrix, parse_target
from remediator.plan import HostPlan, Plan, plan_host, plan_inferred
from remediator.state import Store

REPO = Path(__file__).resolve().parents[2]
DRIVERS = ("470.223.02", "525.147.05", "535.161.08", "535.183.01", "550.54.15", "570.133.20", "580.65.06",
           "580.159.04")
UNREACHABLE = ("cannot connect to {host}:22: Connection refused", "timed out connecting to {host}:22 after 10s",
               "no route to host {host}")


def bases() -> list[tuple[HostFacts, str | None]]:
    """(facts, remediate_target) of every recorded host: the fixtures' targets are inferred, as most fleets'."""
    out: list[tuple[HostFacts, str | None]] = []
    for path in sorted((REPO / "tests" / "fixtures" / "probe").glob("*.facts.json")):
        out.append((HostFacts.from_dict(json.loads(path.read_text()), source=str(path)), None))
    for path in sorted((REPO / "inventories" / "examples").glob("*.json")):
        data = json.loads(path.read_text())
        out.append((HostFacts.from_dict(data, source=str(path)), data["example_target"]))
    return out


def build_fleet(db: Path, count: int, *, seed: int = 13, now: float = 1_780_000_000.0) -> list[str]:
    """Record `count` hosts (gpu00000, ...) into the store at `db`; returns their names."""
    rng = random.Random(seed)
    matrix = load_matrix()
    pool = bases()
    # Most of a real fleet is healthy or nearly: the healthy example and the real H200 are drawn most often.
    weights = [12 if f.host == "gpu-ok" or "h200" in f.host else 1 for f, _ in pool]
    cache: dict[tuple[int, str | None, str], tuple[HostFacts, HostDrift, HostPlan]] = {}
    names = [f"gpu{i:05d}" for i in range(count)]
    with Store.open(db) as store, store.batch():
        run = store.start_run("drift", at=now)
        for name in names:
            roll = rng.random()
            if roll < 0.03:
                error = rng.choice(UNREACHABLE).format(host=name)
                store.record_probe(run, name, error, 10.0, status="unreachable", at=now)
                store.record_drift(run, HostDrift(host=name, status="unreachable", error=error,
                                                  hint="check that sshd runs and the host is up"), at=now)
                continue
            index = rng.choices(range(len(pool)), weights)[0]
            facts, target_text = pool[index]
            # Most hosts keep the driver they were recorded with; the rest run one of the fleet's others.
            driver = rng.choice(DRIVERS) if facts.driver.version and rng.random() < 0.4 else None
            variant = rng.choices(("none", "driver", "cudnn"), (0.8, 0.1, 0.1))[0]
            key = (index, driver, variant)
            if key not in cache:
                cache[key] = _variant(facts, target_text, driver, variant, matrix, now)
            base_facts, check, plan = cache[key]
            facts = replace(base_facts, host=name)
            store.record_probe(run, name, facts, 1.5, at=now)
            store.record_drift(run, replace(check, host=name), at=now)
            if roll < 0.9:  # the rest have no current plan: the report falls back to diagnosis' hints
                store.record_plan(Plan(hosts=(replace(plan, host=name),), matrix_version=matrix.version), at=now)
            if roll > 0.7:
                passed = check.compliant is True and rng.random() > 0.1
                store.record_verify(name, {"passed": passed, "device": facts.gpus[0].name if facts.gpus else "none",
                                           **({} if passed else {"error": "cudnn load failed: libcudnn.so.8"})},
                                    at=now)
        store.finish_run(run, 1, at=now)
    return names


def _variant(facts: HostFacts, target_text: str | None, driver: str | None, variant: str, matrix: Matrix,
             now: float) -> tuple[HostFacts, HostDrift, HostPlan]:
    if driver is not None:
        facts = replace(facts, driver=replace(facts.driver, version=driver, userspace_version=driver,
                                              cuda_driver_version=driver_cuda(driver),
                                              kernel_module_version=driver if facts.driver.kernel_module_version
                                              else None))
    known = facts
    if variant == "driver":  # upgraded since its known-good state
        known = replace(facts, driver=replace(facts.driver, version="535.104.05"))
    elif variant == "cudnn" and facts.cudnn:  # a cuDNN copy appeared since
        known = replace(facts, cudnn=facts.cudnn[:-1])
    target = parse_target(target_text) if target_text else None
    check = check_host(facts, target, matrix, Baseline(known, "baseline", now - 86400), target_text=target_text,
                       target_source="inventory" if target else None)
    plan = plan_host(facts, target, matrix) if target is not None else plan_inferred(facts, matrix)
    return facts, check, plan
