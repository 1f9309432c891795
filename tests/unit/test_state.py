"""The state store: schema and migrations, records read back, known-good rules, history, and two
processes writing at once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from remediator.cli.history import record_plan_safely, record_probe_safely
from remediator.drift import HostDrift
from remediator.facts import HostFacts
from remediator.fleet import HostResult
from remediator.plan import HostPlan, Plan
from remediator.state import MIGRATIONS, SCHEMA_VERSION, StateError, Store, default_path
from tests.unit.factories import driver, toolkit

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def facts(name: str = "gpu01", cuda: str = "11.0.3", collected: str = "2026-05-01T00:00:00+00:00") -> HostFacts:
    return HostFacts(host=name, collected_at=collected, driver=driver(), toolkits=(toolkit(cuda, default=True),))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "state" / "state.db", clock=Clock())
    yield s  # type: ignore[misc]
    s.close()


def test_default_path_follows_env_and_xdg() -> None:
    assert default_path({"REMEDIATE_STATE_DB": "/x/s.db", "XDG_STATE_HOME": "/s"}) == Path("/x/s.db")
    assert default_path({"XDG_STATE_HOME": "/s", "HOME": "/h"}) == Path("/s/remediator/state.db")
    assert default_path({"XDG_STATE_HOME": "rel", "HOME": "/h"}) == Path("/h/.local/state/remediator/state.db")
    assert default_path({"HOME": "/h"}) == Path("/h/.local/state/remediator/state.db")


def test_open_creates_a_wal_db_at_the_latest_schema(tmp_path: Path, store: Store) -> None:
    assert store.path.is_file() and oct(store.path.parent.stat().st_mode & 0o777) == "0o700"
    assert store.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert store.integrity_check() == "ok"


def test_migrations_run_in_order_and_keep_data(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with Store.open(path, migrations=MIGRATIONS[:1]) as old:
        assert old.schema_version() == 1
        old.record_probe("run1", "gpu01", facts(), 1.0)
        with pytest.raises(sqlite3.OperationalError):
            old._db.execute("SELECT * FROM runs")
    with Store.open(path) as new:
        assert new.schema_version() == 2
        assert new.last_probe("gpu01").facts == facts()  # type: ignore[union-attr]
        assert new.start_run("drift", run_id="r2") == "r2" and new.last_run("drift")[0] == "r2"  # type: ignore[index]
    calls: list[int] = []
    extra = (*MIGRATIONS, lambda db: calls.append(3))
    with Store.open(path, migrations=extra) as newer:
        assert newer.schema_version() == 3 and calls == [3]
    with Store.open(path, migrations=extra) as again:
        assert again.schema_version() == 3 and calls == [3]  # applied once


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store.open(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StateError, match="schema version 99, newer than this remediate knows"):
        Store.open(path)


def test_not_a_database_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"hello, this is not sqlite" * 100)
    with pytest.raises(StateError, match="not a database") as info:
        Store.open(path)
    assert info.value.hint and "move it aside" in info.value.hint


def test_probe_facts_round_trip_and_are_stored_once(store: Store) -> None:
    for i in range(5):
        store.record_probe(f"run{i}", "gpu01", facts(collected=f"2026-05-0{i + 1}T00:00:00+00:00"), 1.5)
    store.record_probe("run9", "gpu01", "cannot connect", 0.2, status="unreachable")
    assert store.count("probes") == 6 and store.count("facts_blobs") == 1
    last = store.last_probe("gpu01")
    assert last is not None and last.facts == facts(collected="2026-05-05T00:00:00+00:00")
    failed = store.last_probe("gpu01", ok_only=False)
    assert failed is not None and (failed.status, failed.error, failed.facts) == ("unreachable", "cannot connect", None)


def test_known_good_is_the_last_verified_apply(store: Store) -> None:
    assert store.last_known_good("gpu01") is None
    store.record_apply("a1", "gpu01", "applied", {"moved": []})
    store.record_verify("gpu01", {"passed": False}, facts=facts(cuda="11.1"))
    assert store.last_known_good("gpu01") is None  # the verify failed
    store.record_apply("a2", "gpu01", "failed", None)
    store.record_verify("gpu01", {"status": "passed"}, facts=facts(cuda="11.2"))
    assert store.last_known_good("gpu01") == facts(cuda="11.2")  # a1 applied; this verify is after it
    other = Store.open(store.path)
    other.record_verify("gpu02", '{"passed": true}', facts=facts("gpu02"))
    assert other.last_known_good("gpu02") is None  # no apply before it
    other.close()


def test_known_good_without_verify_facts_uses_the_probe_in_between(store: Store) -> None:
    store.record_probe("p0", "gpu01", facts(cuda="10.2"), 1.0)
    store.record_apply("a1", "gpu01", "applied", {"moved": ["/usr/local/cuda-10.2"]})
    store.record_probe("p1", "gpu01", facts(cuda="11.2"), 1.0)
    store.record_verify("gpu01", {"passed": True})
    known = store.known_good("gpu01")
    assert known is not None and known.source == "verified-apply" and known.facts.toolkits[0].version == "11.2"


def test_manual_baseline_and_verified_apply_newest_wins(store: Store) -> None:
    store.mark_known_good("gpu01", facts(cuda="11.0"))
    assert store.known_good("gpu01").source == "baseline"  # type: ignore[union-attr]
    store.record_apply("a1", "gpu01", "applied", {}, facts=facts(cuda="11.2"))
    store.record_verify("gpu01", {"passed": True})
    assert store.known_good("gpu01").facts.toolkits[0].version == "11.2"  # type: ignore[union-attr]
    store.mark_known_good("gpu01", facts(cuda="12.0"), note="accepted by hand")
    assert store.last_known_good("gpu01").toolkits[0].version == "12.0"  # type: ignore[union-attr]


def test_history_lists_everything_in_order(store: Store) -> None:
    store.record_probe("r1", "gpu01", facts(), 2.0)
    plan = Plan(hosts=(HostPlan("gpu01", "changes", error=None), HostPlan("gpu02", "compliant")), matrix_version="1")
    store.record_plan(plan, run_id="r2")
    store.record_apply("r3", "gpu01", "applied", {"quarantine": ["/usr/local/cuda-10.2"]})
    store.record_verify("gpu01", {"passed": True, "checks": ["import"]}, run_id="r4")
    store.record_drift("r5", HostDrift("gpu01", "ok"))
    store.mark_known_good("gpu01", facts())
    store.record_probe("r1", "gpu02", "refused", 0.1, status="unreachable")
    events = store.history("gpu01")
    assert [e.kind for e in events] == ["probe", "plan", "apply", "verify", "drift", "known-good"]
    assert [e.status for e in events] == ["ok", "changes", "applied", "passed", "ok", "baseline"]
    assert events[2].data == {"manifest": {"quarantine": ["/usr/local/cuda-10.2"]}}
    assert [e.kind for e in store.history("gpu01", limit=2)] == ["drift", "known-good"]
    assert events[0].to_dict()["at"] == "2023-11-14T22:13:21+00:00"
    assert store.hosts() == ["gpu01", "gpu02"]
    assert store.last_plan("gpu02")[1]["status"] == "compliant"  # type: ignore[index]


def test_a_failed_batch_keeps_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.batch():
        store.record_probe("r1", "gpu01", facts(), 1.0)
        raise RuntimeError("crash mid-run")
    assert store.count("probes") == 0
    with store.batch():
        store.record_probe("r1", "gpu01", facts(), 1.0)
        store.record_probe("r1", "gpu02", facts("gpu02"), 1.0)
    assert store.count("probes") == 2


WRITER = textwrap.dedent("""
    import sys
    from remediator.facts import HostFacts
    from remediator.state import Store
    path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = Store.open(path)
    for i in range(n):
        f = HostFacts(host=f"{who}-{i % 7}", collected_at=str(i), notes=())
        store.record_probe(f"{who}-run", f"{who}-{i % 7}", f if i % 3 else f"error {i}", 0.01)
        if i % 50 == 0:
            store.mark_known_good(f"{who}-{i % 7}", f)
    store.close()
""")


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "state.db"  # both also race to create and migrate it
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), who, "500"], env=env,
                              stderr=subprocess.PIPE) for who in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    with Store.open(path) as s:
        assert s.integrity_check() == "ok"
        assert s.count("probes") == 1000 and s.count("known_good") == 20
        rows = s._db.execute("SELECT host, count(*) FROM probes GROUP BY substr(host, 1, 1)").fetchall()
        assert sorted(n for _, n in rows) == [500, 500]


def test_record_safely_warns_and_never_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("REMEDIATE_STATE_DB", str(tmp_path / "file" / "state.db"))
    results = [HostResult("gpu01", "ok", facts(), None, None, 1.0),
               HostResult("gpu02", "unreachable", None, "refused", None, 0.1)]
    record_probe_safely(results)
    record_plan_safely(Plan(hosts=(HostPlan("gpu01", "compliant"),), matrix_version="1"))
    err = capsys.readouterr().err
    assert err.count("warning: not recorded in the state db") == 2 and "Traceback" not in err

    monkeypatch.setenv("REMEDIATE_STATE_DB", str(tmp_path / "ok.db"))
    record_probe_safely(results)
    record_plan_safely(Plan(hosts=(HostPlan("gpu01", "compliant"),), matrix_version="1"))
    assert capsys.readouterr().err == ""
    with Store.open(tmp_path / "ok.db") as s:
        assert s.count("probes") == 2 and s.count("plans") == 1 and s.last_run("probe") is not None

    monkeypatch.setenv("REMEDIATE_STATE_DB", "off")
    record_probe_safely(results)
    assert capsys.readouterr().err == ""


def test_history_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from remediator.cli import main

    db = str(tmp_path / "s.db")
    with Store.open(db) as s:
        s.record_probe("r1", "gpu01", facts(), 2.0)
        s.mark_known_good("gpu01", facts())
        changed = replace(HostDrift("gpu01", "drift"), changes=())
        s.record_drift("r2", changed)
    assert main(["history", "gpu01", "--state-db", db]) == 0
    out = capsys.readouterr().out
    assert "probe" in out and "known-good: baseline of" in out
    assert main(["history", "gpu01", "--state-db", db, "--format", "json"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    assert [e["kind"] for e in doc["events"]] == ["probe", "known-good", "drift"]
    assert doc["known_good"]["source"] == "baseline"
    assert main(["history", "gpu99", "--state-db", db]) == 1
    err = capsys.readouterr().err
    assert "no records of host 'gpu99'" in err and "gpu01" in err


def test_a_store_switched_off_is_never_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """REMEDIATE_STATE_DB=off: the commands that read the store say it is off, and none creates a file `off`
    (history, report and drift used to open ./off as a SQLite file)."""
    from remediator.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REMEDIATE_STATE_DB", "off")
    with pytest.raises(StateError, match="switched off"):
        Store.open()
    with pytest.raises(StateError, match="switched off"):
        Store.open("OFF")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    gpu01:\n      ansible_host: 127.0.0.1\n")
    for argv in (["history", "gpu01"], ["report", "--html", str(tmp_path / "r.html")],
                 ["drift", "-i", str(inventory)]):
        status = main(argv)
        err = capsys.readouterr().err
        assert status == 1 and "state store is switched off" in err and "Traceback" not in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts.yml"]


def test_apply_records_nothing_when_the_store_is_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from remediator.apply import ApplyOptions, ApplyResult, StoreHook

    monkeypatch.chdir(tmp_path)
    events: list[object] = []
    result = ApplyResult(kind="apply", run_id="20261208T000000Z-abcdef", private_data_dir=str(tmp_path),
                         state="finished", hosts=())
    StoreHook(ApplyOptions(playbooks_dir=tmp_path, state_dir=tmp_path / "s", state_db="off"),
               result.run_id, "apply", events.append).record(result)
    assert events == [] and not (tmp_path / "off").exists()
    # The same hook with a real path records the run.
    StoreHook(ApplyOptions(playbooks_dir=tmp_path, state_dir=tmp_path / "s", state_db=str(tmp_path / "s.db")),
               result.run_id, "apply", events.append).record(result)
    with Store.open(tmp_path / "s.db") as s:
        assert s.last_run("apply") is not None
