"""`remediate apply --runner-worker`: the job through ansible-runner's streaming interface (transmit -> a local
`ansible-runner worker` subprocess -> process), as AWX and Receptor run jobs on execution nodes (issue 13,
item 2), against real lab hosts.

Two hosts of the same scenario (a lab of their own, tests/fixtures/apply-lab/torch-venv-shadowed.yaml: the
plan is one quarantine) get the same plan, one applied directly and one through the worker: the per-host
result and the quarantine manifest must be the same, and the rollback through the worker must leave its host
byte for byte as it was.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_apply_lab import FIXTURES, ApplyLab, apply_cli, own_lab, plan, rollback_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

WORKER = f"{Path(sys.executable).parent / 'ansible-runner'} worker"
A, B = "torch-venv-shadowed-001", "torch-venv-shadowed-002"
# What differs between two hosts' runs by nature, not by how the job ran: the run id (in paths too), the
# host's name, and the clock.
VOLATILE = {"run_id", "host", "started_at", "finished_at", "created_at", "updated_at", "at", "moved_at",
            "restored_at", "recorded_at", "duration_s", "elapsed_s", "pid"}


@pytest.fixture(scope="module")
def pair(labkit: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApplyLab]:
    with own_lab(labkit, tmp_path_factory, FIXTURES / "torch-venv-shadowed.yaml", 2, "worker") as lab:
        yield lab


def normalised(value: Any, run_id: str) -> Any:
    if isinstance(value, dict):
        return {k: normalised(v, run_id) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [normalised(v, run_id) for v in value]
    if isinstance(value, str):
        return value.replace(run_id, "RUN")
    return value


def host_result(doc: dict[str, Any]) -> dict[str, Any]:
    [h] = doc["hosts"]
    return normalised({k: h.get(k) for k in ("status", "error", "task", "counts", "manifest", "quarantine_manifest")},
                      doc["run_id"]) | {"verify_passed": (h.get("verify") or {}).get("passed")}


def test_apply_and_rollback_through_a_runner_worker_match_a_direct_run(pair: ApplyLab) -> None:
    before = {h: pair.tree(h) for h in (A, B)}
    plan_path = plan(pair, [A, B], "worker")

    rc_direct, direct = apply_cli(pair, plan_path, "--limit", A)
    rc_worker, streamed = apply_cli(pair, plan_path, "--limit", B, "--runner-worker", WORKER)
    assert rc_direct == rc_worker == 0, (direct, streamed)
    assert host_result(streamed) == host_result(direct)
    assert host_result(streamed)["status"] == "applied" and host_result(streamed)["verify_passed"] is True
    assert streamed["options"]["runner_worker"] == "ansible-runner" and direct["options"]["runner_worker"] is None

    # The quarantine manifests on the hosts: the same items, moved the same way.
    manifests = {h: normalised(pair.manifest(h, doc["run_id"]), doc["run_id"])
                 for h, doc in ((A, direct), (B, streamed))}
    assert manifests[A]["items"] and manifests[A] == manifests[B], json.dumps(manifests)
    assert "/etc/profile.d/cuda.sh" not in pair.tree(B)

    # The streamed run's artifacts are where a direct run's are, with its events.
    run_dir = Path(streamed["private_data_dir"])
    [art] = [p for p in (run_dir / "artifacts").iterdir() if p.is_dir()]
    assert (art / "rc").read_text().strip() == "0" and any((art / "job_events").iterdir())
    assert (run_dir / "stream" / art.name / "project" / "remediate.yml").is_file()

    rc_undo_direct, undo_direct = rollback_cli(pair, direct["run_id"])
    rc_undo_worker, undo_worker = rollback_cli(pair, streamed["run_id"], "--runner-worker", WORKER)
    assert rc_undo_direct == rc_undo_worker == 0, (undo_direct, undo_worker)
    assert [h["status"] for h in undo_worker["hosts"]] == ["rolled_back"]
    assert host_result(undo_worker) == host_result(undo_direct)
    assert pair.tree(A) == before[A]
    assert pair.tree(B) == before[B]  # byte for byte, through the worker


def test_a_worker_that_is_not_one_fails_the_batch_clearly(pair: ApplyLab, tmp_path: Path) -> None:
    plan_path = plan(pair, [A], "not-a-worker")
    rc, doc = apply_cli(pair, plan_path, "--limit", A, "--runner-worker", "/bin/echo hello", "--no-verify")
    assert rc == 1
    [h] = doc["hosts"]
    assert h["status"] == "failed"
    assert "something other than ansible-runner's stream" in (h["error"] or ""), json.dumps(h)
