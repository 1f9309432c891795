"""`remediate schedule`: unit and cron text, install/remove into temp dirs, and `systemd-analyze verify`."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from remediator.cli import main
from remediator.errors import UsageError
from remediator.schedule import (
    BEGIN,
    crontab_with,
    crontab_without,
    parse_interval,
    systemd_quote,
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(("text", "seconds", "span", "cron"), [
    ("6h", 21600, "6h", "0 */6 * * *"),
    ("30m", 1800, "30min", "*/30 * * * *"),
    ("15min", 900, "15min", "*/15 * * * *"),
    ("1d", 86400, "1d", "0 0 * * *"),
    ("90m", 5400, "90min", None),
    ("3600s", 3600, "1h", "0 */1 * * *"),
])
def test_intervals(text: str, seconds: int, span: str, cron: str | None) -> None:
    every = parse_interval(text)
    assert (every.seconds, every.systemd) == (seconds, span)
    if cron is None:
        with pytest.raises(UsageError, match="cron cannot run something every 90m"):
            _ = every.cron
    else:
        assert every.cron == cron


@pytest.mark.parametrize("bad", ["", "6", "h", "-1h", "10s", "6 weeks", "1.5h"])
def test_bad_intervals(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_interval(bad)


@pytest.mark.parametrize(("arg", "quoted"), [
    ("/usr/bin/python3", "/usr/bin/python3"),
    ("/srv/my inventory.yml", '"/srv/my inventory.yml"'),
    ("gpu%d", "gpu%%d"),
    ("$HOME/x", "$$HOME/x"),
    ('a"b\\c', '"a\\"b\\\\c"'),
    (";", '";"'),
    ("", '""'),
])
def test_systemd_quote(arg: str, quoted: str) -> None:
    assert systemd_quote(arg) == quoted


def test_crontab_block_is_replaced_and_removed_leaving_other_lines() -> None:
    mine = "MAILTO=ops\n0 1 * * * backup\n"
    once = crontab_with(mine, "0 */6 * * * remediate one")
    twice = crontab_with(once, "0 */1 * * * remediate two")
    assert twice.count(BEGIN) == 1 and "remediate two" in twice and "remediate one" not in twice
    assert twice.startswith(mine)
    assert crontab_without(twice) == mine
    assert crontab_without("") == ""


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "my fleet %h" / "hosts.yml"  # a space and a %: both need escaping in a unit
    inv.parent.mkdir()
    inv.write_text("all:\n  hosts:\n    gpu01:\n")
    return inv


def test_install_systemd_units_and_remove(tmp_path: Path, inventory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    units = tmp_path / "units"
    status, out, _ = run(capsys, "schedule", "install", "--every", "6h", "-i", str(inventory), "--backend",
                         "systemd", "--unit-dir", str(units), "--state-db", str(tmp_path / "s.db"),
                         "--limit", "gpu0*")
    assert status == 0 and "not enabled here; to enable: systemctl daemon-reload" in out
    service = (units / "remediate-drift.service").read_text()
    timer = (units / "remediate-drift.timer").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    assert exec_start == (
        f"ExecStart={sys.executable} -m remediator drift -i \"{tmp_path}/my fleet %%h/hosts.yml\" "
        f"--state-db {tmp_path}/s.db --prometheus-textfile /var/lib/prometheus/node-exporter/remediator.prom "
        "--limit gpu0*"
    )
    assert "SuccessExitStatus=2" in service and "Type=oneshot" in service
    assert "OnUnitActiveSec=6h" in timer and "WantedBy=timers.target" in timer

    status, out, _ = run(capsys, "schedule", "remove", "--backend", "systemd", "--unit-dir", str(units))
    assert status == 0 and out.count("removed") == 2 and list(units.iterdir()) == []
    status, out, _ = run(capsys, "schedule", "remove", "--backend", "systemd", "--unit-dir", str(units))
    assert status == 0 and "nothing to do" in out


def _systemd_analyze_reason() -> str | None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return "systemd-analyze is not installed (Debian package systemd; scripts/system-deps.sh installs it)"
    probe = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"systemd-analyze cannot run here: {probe.stderr.strip()[:200]}"
    return None


def test_units_pass_systemd_analyze_verify(tmp_path: Path, inventory: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    reason = _systemd_analyze_reason()
    if reason:
        pytest.skip(reason)
    units = tmp_path / "units"
    for extra in ((), ("--user",)):
        assert run(capsys, "schedule", "install", "--every", "90m", "-i", str(inventory), "--backend", "systemd",
                   "--unit-dir", str(units), "--prometheus-textfile", str(tmp_path / "$x" / "r.prom"), *extra)[0] == 0
        done = subprocess.run(["systemd-analyze", "verify", str(units / "remediate-drift.service"),
                               str(units / "remediate-drift.timer")], capture_output=True, text=True, cwd=tmp_path,
                              check=False)
        assert done.returncode == 0 and "remediate-drift" not in done.stderr, done.stderr
    # The verifier does catch a broken unit (so the check above means something).
    broken = (units / "remediate-drift.service").read_text().replace(f"ExecStart={sys.executable}",
                                                                     "ExecStart=/nonexistent/python")
    (units / "remediate-drift.service").write_text(broken)
    done = subprocess.run(["systemd-analyze", "verify", str(units / "remediate-drift.service")],
                          capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode != 0 and "/nonexistent/python" in done.stderr


def test_install_cron_file_and_remove(tmp_path: Path, inventory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cron = tmp_path / "cron.d" / "remediate-drift"
    status, out, _ = run(capsys, "schedule", "install", "--every", "1h", "-i", str(inventory), "--backend", "cron",
                         "--cron-file", str(cron), "--state-db", str(tmp_path / "s.db"))
    assert status == 0 and "0 */1 * * *" in out
    line = cron.read_text().splitlines()[-1]
    schedule, user, command = line[:11], line[12:16], line[17:]
    assert (schedule, user) == ("0 */1 * * *", "root")
    argv = shlex.split(command.replace("\\%", "%"))
    assert argv[:4] == [sys.executable, "-m", "remediator", "drift"] and argv[-1] == ">/dev/null"
    assert argv[argv.index("-i") + 1] == str(inventory)
    assert run(capsys, "schedule", "remove", "--backend", "cron", "--cron-file", str(cron))[0] == 0
    assert not cron.exists()


def test_user_crontab(tmp_path: Path, inventory: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "crontab.txt"
    table.write_text("0 3 * * * my-backup\n")
    fake = tmp_path / "bin" / "crontab"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nif [ \"$1\" = -l ]; then cat {table}; else cat > {table}; fi\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert run(capsys, "schedule", "install", "--every", "30m", "-i", str(inventory), "--backend", "cron",
               "--user")[0] == 0
    text = table.read_text()
    assert text.startswith("0 3 * * * my-backup\n") and "*/30 * * * * " in text and BEGIN in text
    assert run(capsys, "schedule", "remove", "--backend", "cron", "--user")[0] == 0
    assert table.read_text() == "0 3 * * * my-backup\n"


def test_foreign_file_is_not_removed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    units = tmp_path / "units"
    units.mkdir()
    (units / "remediate-drift.timer").write_text("[Timer]\nOnCalendar=daily\n")
    status, _, err = run(capsys, "schedule", "remove", "--backend", "systemd", "--unit-dir", str(units))
    assert status == 1 and "was not written by `remediate schedule install`" in err
    assert (units / "remediate-drift.timer").exists()


def test_dry_run_writes_nothing(tmp_path: Path, inventory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    units = tmp_path / "units"
    status, out, _ = run(capsys, "schedule", "install", "--every", "6h", "-i", str(inventory), "--backend",
                         "systemd", "--unit-dir", str(units), "--dry-run")
    assert status == 0 and "[Timer]" in out and not units.exists()


@pytest.mark.parametrize(("argv", "message"), [
    (("--every", "5x"), "bad interval '5x'"),
    (("--every", "5h", "--backend", "cron", "--cron-file", "/tmp/x"), "cron cannot run something every 5h"),
    (("--every", "6h", "--prometheus-textfile", "/tmp/x.txt"), "must name a *.prom file"),
])
def test_bad_input_is_one_line(argv: tuple[str, ...], message: str, inventory: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "schedule", "install", "-i", str(inventory), "--backend", "systemd",
                         "--unit-dir", "/nonexistent-unit-dir", *argv)
    assert status == 1 and message in err and "Traceback" not in err


def test_missing_inventory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "schedule", "install", "--every", "6h", "-i", str(tmp_path / "nope.yml"))
    assert status == 1 and "does not exist" in err
