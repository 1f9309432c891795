"""The Prometheus textfile: parsed back with prometheus_client's own parser, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from remediator.diagnosis import Finding
from remediator.drift import Change, DriftRun, HostDrift
from remediator.errors import InputError
from remediator.metrics import drift_metrics, write_textfile

RUN = DriftRun("r1", 1_700_000_100.0, (
    HostDrift("gpu01", "ok", baseline_source="baseline", probe_duration_s=1.25),
    HostDrift("gpu02", "drift", findings=(Finding("CUDNN_MISMATCH", "error", "m"), Finding("LDPATH_MISSING_DIR",
                                                                                            "warning", "w")),
              changes=(Change("changed", "cudnn", "/x", "version", "8.0", "8.1"),), baseline_source="baseline",
              probe_duration_s=2.5),
    HostDrift("gpu03", "unreachable", error="refused", probe_duration_s=10.0),
    HostDrift('we"ird\\host\nname', "ok", probe_duration_s=0.5),
), duration_s=12.0)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_parse_back_with_prometheus_client() -> None:
    text = drift_metrics(RUN, {"gpu03": 1_699_990_000.0})
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert all(f.type == "gauge" and f.documentation for f in families.values())
    assert all(name.startswith("remediator_") for name in families)
    got = samples(text)
    assert got[("remediator_host_compliant", (("host", "gpu01"),))] == 1
    assert got[("remediator_host_compliant", (("host", "gpu02"),))] == 0
    assert ("remediator_host_compliant", (("host", "gpu03"),)) not in got  # not probed: no value, not a 0
    assert got[("remediator_host_up", (("host", "gpu03"),))] == 0
    assert got[("remediator_host_drifted", (("host", "gpu02"),))] == 1
    assert got[("remediator_host_drifted", (("host", "gpu01"),))] == 0
    assert got[("remediator_host_findings", (("host", "gpu02"), ("severity", "error")))] == 1
    assert got[("remediator_host_findings", (("host", "gpu02"), ("severity", "warning")))] == 1
    assert got[("remediator_host_findings", (("host", "gpu01"), ("severity", "error")))] == 0
    assert got[("remediator_host_drift_changes", (("host", "gpu02"),))] == 1
    assert got[("remediator_host_probe_duration_seconds", (("host", "gpu02"),))] == 2.5
    last = "remediator_host_last_successful_check_timestamp_seconds"
    assert got[(last, (("host", "gpu01"),))] == 1_700_000_100.0
    assert got[(last, (("host", "gpu03"),))] == 1_699_990_000.0  # from the store: unreachable now
    assert got[("remediator_drift_hosts", (("status", "drift"),))] == 1
    assert got[("remediator_drift_last_run_timestamp_seconds", ())] == 1_700_000_100.0
    assert got[("remediator_host_up", (("host", 'we"ird\\host\nname'),))] == 1  # escaped and read back


def test_textfile_is_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "collector" / "remediator.prom"
    write_textfile(target, "old 1\n")
    write_textfile(target, drift_metrics(RUN))
    assert os.listdir(target.parent) == ["remediator.prom"]  # no temp file left behind
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert samples(target.read_text())


def test_textfile_must_be_a_prom_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\*\.prom"):
        write_textfile(tmp_path / "metrics.txt", "x 1\n")


def test_unwritable_dir_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(InputError, match="cannot write the metrics file"):
        write_textfile(tmp_path / "f" / "r.prom", "x 1\n")


def test_drift_command_writes_the_textfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from remediator.cli import main
    from tests.unit.test_drift import FakeFleet, host

    fake = FakeFleet()
    fake.answers = {"gpu01": host(), "gpu02": "refused"}
    monkeypatch.setattr("remediator.probe.probe_fleet", fake)
    (tmp_path / "hosts.ini").write_text("[gpu]\ngpu01 remediate_target=tensorflow==2.4.1\ngpu02\n")
    prom = tmp_path / "tf" / "remediator.prom"
    argv = ["drift", "-i", str(tmp_path / "hosts.ini"), "--state-db", str(tmp_path / "s.db"),
            "--prometheus-textfile", str(prom)]
    assert main(argv) == 1
    got = samples(prom.read_text())
    assert got[("remediator_host_compliant", (("host", "gpu01"),))] == 1
    assert got[("remediator_host_up", (("host", "gpu02"),))] == 0
    assert ("remediator_host_last_successful_check_timestamp_seconds", (("host", "gpu02"),)) not in got
    capsys.readouterr()
