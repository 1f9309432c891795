"""The facts the probe finds on every lab scenario stay what they were: one golden per scenario.

A lab of one real OpenSSH host per scenario of remediator/lab/scenarios (each in its own mount namespace,
needs root) is probed over SSH exactly as `remediate probe` does it; each host's facts, with what differs
from run to run or machine to machine normalised away, must equal tests/fixtures/probe-lab/SCENARIO.json.
The goldens were recorded from the probe before its NVML reader and its scans were rewritten for speed
(issue 13, item 4), so a cheaper probe that changed what the facts say fails here. To re-record after a
change of the facts on purpose:

    REMEDIATOR_RECORD_PROBE_LAB=1 .venv/bin/pytest tests/unit/test_probe_lab_golden.py
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from remediator.inventory import load_inventory
from remediator.lab import fleet
from remediator.probe import build_payload, parse_probe_output, probe_argv
from remediator.transport.base import Transport
from remediator.transport.become import become_of
from remediator.transport.ssh import connect

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "fixtures" / "probe-lab"
RECORD = os.environ.get("REMEDIATOR_RECORD_PROBE_LAB") == "1"
# Where the raw documents go too (to diff by hand), when set.
DUMP = os.environ.get("REMEDIATOR_PROBE_LAB_DUMP")
# Hosts where the probe script never runs (their python3 hangs or floods; sudo wants a password): the
# transport's tests cover them, and they have no facts to compare.
NOT_PROBED = frozenset(["hostile-hang", "hostile-flood", "become-sudo-password"])


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the lab mounts overlays in private namespaces: run as root"
    missing = fleet.missing_tools()
    return missing[0] if missing else None


pytestmark = [pytest.mark.skipif(_why_not() is not None, reason=str(_why_not())), pytest.mark.timeout(600)]


def normalize(facts: dict[str, Any], scenario: str, port: int) -> dict[str, Any]:
    """What differs between runs and machines: the host's name and port, the time, this machine's kernel."""
    text = json.dumps(facts, sort_keys=True).replace(f":{port}", ":PORT")
    doc: dict[str, Any] = json.loads(text)
    doc["host"] = scenario
    doc["collected_at"] = "normalised"
    doc["os"]["kernel"] = "normalised"
    return doc


def _probe(transport: Transport, argv: tuple[str, ...], payload: bytes) -> tuple[int, str, str]:
    result = transport.run(argv, stdin=payload, timeout=120)
    return result.returncode, result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[dict[str, Any], str]]]:
    state = tmp_path_factory.mktemp("golden-lab")
    lab = fleet.up([REPO / "remediator" / "lab" / "scenarios"], state)
    try:
        inventory = load_inventory(str(lab.inventory))
        by_name = {h.name: h for h in lab.hosts}

        def one(host: Any) -> tuple[str, dict[str, Any], str]:
            lab_host = by_name[host.name]
            how = become_of(host)
            argv = probe_argv(how)
            payload = build_payload(session_user_from_sudo=argv != probe_argv(None))
            transport = connect(host)
            try:
                rc, stdout, stderr = _probe(transport, argv, payload)
            finally:
                transport.close()
            if rc != 0:  # a host whose python3 is not one the probe runs on (python-unsupported, hostile-*)
                return lab_host.scenario, {"returncode": rc, "stderr": stderr}, stdout
            facts = parse_probe_output(stdout, host=host.name).to_dict()
            return lab_host.scenario, normalize(facts, lab_host.scenario, lab_host.port), stdout

        hosts = [h for h in inventory.hosts if by_name[h.name].scenario not in NOT_PROBED]
        with ThreadPoolExecutor(4) as pool:
            yield {scenario: (facts, raw) for scenario, facts, raw in pool.map(one, hosts)}
    finally:
        fleet.down(state)


def test_every_scenarios_facts_match_the_golden(probed: dict[str, tuple[dict[str, Any], str]]) -> None:
    assert len(probed) >= 30
    if RECORD:
        GOLDEN.mkdir(parents=True, exist_ok=True)
    changed, compared = [], 0
    for scenario, (facts, raw) in sorted(probed.items()):
        path = GOLDEN / f"{scenario}.json"
        if DUMP:
            Path(DUMP).mkdir(parents=True, exist_ok=True)
            (Path(DUMP) / f"{scenario}.probe.json").write_text(raw)
        if RECORD:
            path.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
            continue
        if not path.exists():
            continue  # a scenario added since the goldens were recorded: record it (see above)
        compared += 1
        if json.loads(path.read_text()) != facts:
            changed.append(scenario)
    assert changed == [], f"the facts of these scenarios changed: {changed}"
    assert RECORD or compared >= 38
