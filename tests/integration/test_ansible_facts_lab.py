"""Facts gathered by Ansible give the plan the SSH probe gives (issue 13, item 1), on the whole lab.

A real `ansible-playbook` runs the collection's gather.yml (remediator.gpu.gpu_facts) on every lab host over
real OpenSSH, become as the inventory says, with Ansible's jsonfile fact cache in a tmp dir; then
`remediate plan --facts CACHE -i INV` and `remediate plan -i INV` (remediate's own SSH probe) must agree host
by host on the status, the target, the findings and the actions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from remediator.apply import collection_dir
from remediator.cli import main

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PLAN_SCHEMA = json.loads((REPO / "docs" / "plan-schema.json").read_text())
FACTS_SCHEMA = json.loads((REPO / "docs" / "facts-schema.json").read_text())
VENV_BIN = Path(sys.executable).parent


def gather(inventory: Path, cache: Path, cwd: Path, *, forks: int = 20, limit: str | None = None) -> None:
    """ansible-playbook gather.yml into the jsonfile cache `cache`, as an operator or AWX would run it."""
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collection_dir().parents[2]),
           "ANSIBLE_CACHE_PLUGIN": "jsonfile", "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(cache),
           "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "False"}
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "-f", str(forks),
            str(collection_dir() / "playbooks" / "gather.yml")]
    if limit:
        argv += ["--limit", limit]
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def comparable(host: dict[str, Any]) -> dict[str, Any]:
    """What both plans must agree on: everything of the host. Nothing needs normalising: the plan holds no
    timestamp per host, and its `fingerprint` already leaves out when the facts were collected (and notes,
    which carry timings), so the same facts give the same fingerprint: a plan made from the cache is applied
    by `remediate apply`, which re-probes over SSH and compares fingerprints. Only the plan's own
    `created_at` (its clock) differs, and it is not per host."""
    return host


@pytest.fixture(scope="module")
def both_plans(lab, tmp_path_factory) -> tuple[dict[str, Any], dict[str, Any], Path]:  # type: ignore[no-untyped-def]
    work = tmp_path_factory.mktemp("facts-lab")
    cache = work / "cache"
    gather(lab.inventory, cache, work)
    out = work / "plan.json"
    assert main(["plan", "--facts", str(cache), "-i", str(lab.inventory), "--out", str(out), "--format",
                 "json"]) == 2
    from_cache = json.loads(out.read_text())
    direct = work / "direct.json"
    assert main(["plan", "-i", str(lab.inventory), "--out", str(direct), "--format", "json"]) == 2
    return from_cache, json.loads(direct.read_text()), cache


def test_plan_from_the_fact_cache_is_the_plan_of_the_ssh_probe(lab, both_plans) -> None:  # type: ignore[no-untyped-def]
    from_cache, direct, _ = both_plans
    jsonschema.validate(from_cache, PLAN_SCHEMA)
    assert [h["host"] for h in from_cache["hosts"]] == [h["host"] for h in direct["hosts"]]
    assert set(lab.hosts) == {h["host"] for h in from_cache["hosts"]}
    assert from_cache["summary"] == direct["summary"]
    differ = {}
    for a, b in zip(from_cache["hosts"], direct["hosts"], strict=True):
        if comparable(a) != comparable(b):
            differ[a["host"]] = (comparable(a), comparable(b))
    assert not differ, json.dumps(differ, indent=1)[:6000]


def test_the_cache_holds_schema_valid_documents_one_per_host(lab, both_plans) -> None:  # type: ignore[no-untyped-def]
    _, _, cache = both_plans
    entries = sorted(p.name for p in cache.iterdir())
    assert entries == sorted(f"s1_{h}" for h in lab.hosts)  # ansible-core >= 2.19 keys entries s1_<host>
    for name in entries[:5]:
        doc = json.loads(json.loads((cache / name).read_text())["__payload__"])["remediator_gpu"]
        jsonschema.validate(doc, FACTS_SCHEMA)


def test_drift_from_the_cache(lab, both_plans, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    _, _, cache = both_plans
    db = tmp_path / "state.db"
    limit = "healthy-pytorch:no-driver"
    rc = main(["drift", "--facts", str(cache), "-i", str(lab.inventory), "--limit", limit, "--baseline",
               "--state-db", str(db), "--format", "json"])
    run = json.loads(capsys.readouterr().out)
    assert rc == 2  # no-driver has error findings against its target
    hosts = {h["host"]: h for h in run["hosts"]}
    assert hosts["healthy-pytorch"]["status"] == "ok" and hosts["healthy-pytorch"]["baseline"]["recorded_now"]
    assert hosts["no-driver"]["status"] == "drift"
    # The same cache again: nothing changed since the baseline just recorded.
    main(["drift", "--facts", str(cache), "-i", str(lab.inventory), "--limit", "healthy-pytorch", "--state-db",
          str(db), "--format", "json"])
    again = json.loads(capsys.readouterr().out)["hosts"][0]
    assert again["status"] == "ok" and again["changes"] == []
