"""Every lab scenario, probed over SSH and diagnosed: the verdict matches the scenario's `expect`, and no
host comes out compliant while a library one of its frameworks needs resolves to nothing, to a stub, or
to a version the build cannot use (issue 11's property, checked with the loader's own search order).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from remediator.cli import main
from remediator.facts import HostFacts
from remediator.linkage import _problem, _requirements, needs
from remediator.matrix import load_matrix
from remediator.resolve import Resolver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
MATRIX = load_matrix()


@pytest.fixture(scope="module")
def probed(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("resolution")
    facts_path, plan_path = work / "facts.json", work / "plan.json"
    main(["probe", "-i", str(lab.inventory), "--out", str(facts_path), "--format", "json"])
    main(["plan", "-i", str(lab.inventory), "--out", str(plan_path), "--format", "json"])
    facts = {h["host"]: HostFacts.from_dict(h["facts"]) for h in json.loads(facts_path.read_text())["hosts"]
             if h["facts"] is not None}
    plans = {h["host"]: h for h in json.loads(plan_path.read_text())["hosts"]}
    return {"facts": facts, "plans": plans}


def wrong_libraries(facts: HostFacts) -> list[str]:
    """Each needed library that resolves badly under some way of starting its env's Python."""
    resolver = Resolver(facts)
    out = []
    for env in facts.envs:
        for fw in env.frameworks:
            req = _requirements(MATRIX, fw, None)
            if req is None or fw.is_cuda_build is False or "+cpu" in fw.version:
                continue
            for need in needs(facts, env, fw, req):
                for launch in resolver.launch_envs_for(env.path):
                    r = resolver.resolve(need.soname, launch, need.obj)
                    why = _problem(r, need, req)
                    if why is not None:
                        out.append(f"{env.path}: {r.describe()} in the {r.launch}: {why}")
    return out


def test_every_host_was_probed_with_its_library_dirs(lab: Any, probed: dict[str, Any]) -> None:
    assert set(probed["facts"]) == set(lab.hosts)
    for name, facts in probed["facts"].items():
        assert facts.libdirs, f"{name}: the probe recorded no library dirs"


def test_the_diagnosis_reports_exactly_what_each_scenario_expects(lab: Any, probed: dict[str, Any]) -> None:
    wrong = {}
    for name, h in lab.hosts.items():
        plan = probed["plans"][name]
        got = sorted({f["code"] for f in plan["findings"] if f["severity"] == "error"})
        want = sorted(c for c in h.scenario.expect if c not in ("DRIVER_MINOR_COMPAT", "DRIVER_TOO_OLD_FOR_TOOLKIT",
                                                                 "LDPATH_MISSING_DIR", "UNPARSABLE_VERSION"))
        if got != want:
            wrong[name] = (got, want)
    assert not wrong, wrong


def test_no_host_is_compliant_while_a_needed_library_resolves_wrong(probed: dict[str, Any]) -> None:
    for name, facts in probed["facts"].items():
        bad = wrong_libraries(facts)
        status = probed["plans"][name]["status"]
        assert not (bad and status == "compliant"), (name, bad)
