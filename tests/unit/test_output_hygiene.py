"""No host can take over the terminal: every host-derived string reaches it through `printable()`, and rich
never reads markup in it. One hostile value (an OSC title, a screen clear, rich markup, a bidi override, a
one-byte CSI) goes through each command's text output; it must show up as inert text."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from remediator.cli import main
from remediator.errors import RemediatorError

EVIL = "\x1b]0;pwn\x07\x1b[2J[bold red]FAKE[/] \u202egpj.exe \x9b31m"
# What each of them must look like instead: escaped, and the markup as written.
SHOWN = ("\\x1b]0;pwn\\x07\\x1b[2J[bold red]FAKE[/]", "\\u202egpj.exe", "\\x9b31m")
RAW = ("\x1b", "\x07", "\x9b", "\u202e")
PROBE = ["sh", "-c", "*exec python3 -"]
EXAMPLES = Path(__file__).resolve().parents[2] / "inventories" / "examples"


def assert_inert(text: str) -> None:
    for char in RAW:
        assert char not in text, f"raw {char!r} reached the output: {text!r}"
    assert "[bold red]FAKE[/]" in text, f"the markup was interpreted, not shown: {text!r}"
    for shown in SHOWN:
        assert shown in text


@pytest.fixture(autouse=True)
def terminal_like(monkeypatch: pytest.MonkeyPatch) -> None:
    # click drops CSI sequences when stdout is not a terminal; a real terminal would get them, so keep them.
    monkeypatch.setattr(click.utils, "should_strip_ansi", lambda *_: False)
    monkeypatch.setenv("COLUMNS", "500")  # rich tables do not wrap: the tests read whole values


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def capture_console() -> Any:
    """A console that writes no escapes of its own (no colour, not a terminal) and, as rich's default
    does, reads markup in plain strings: any escape or lost bracket in its output is the host's doing."""
    from rich.console import Console

    return Console(file=io.StringIO(), width=500, color_system=None, force_terminal=False, highlight=False)


# --- printable() and the rich helpers ------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\x1b", "\x07", "\x9b", "\x85", "\x00", "\r", "\n", "\t", "\x7f", "\u202e",
                                  "\u202d", "\u2066", "\u2069", "\u200b", "\u2028", "\ufeff", "\ud800"])
def test_printable_escapes_controls_and_bidi(char: str) -> None:
    from remediator.cli.render import printable

    shown = printable(f"a{char}b")
    assert char not in shown and shown.isprintable()
    assert shown == "a" + repr(char)[1:-1] + "b"


def test_printable_keeps_markup_and_ordinary_text() -> None:
    from remediator.cli.render import printable

    assert printable("gpu01 [bold]x[/] ünïcode 535.161.08") == "gpu01 [bold]x[/] ünïcode 535.161.08"


def test_host_text_and_console_never_read_markup() -> None:
    from rich.table import Table

    from remediator.cli.render import console, host_text

    out = io.StringIO()
    plain = console(file=out, width=500, color_system=None)
    plain.print("[bold red]FAKE[/] :skull:")  # even a plain string a later edit forgets to wrap
    table = Table()
    table.add_column("host")
    table.add_row("[bold red]FAKE[/]")
    plain.print(table)
    loud = capture_console()
    loud.print(host_text(EVIL, style="bold"))
    assert out.getvalue().count("[bold red]FAKE[/]") == 2 and ":skull:" in out.getvalue()
    assert_inert(loud.file.getvalue())


# --- errors, warnings ----------------------------------------------------------------------------------


def test_error_message_and_hint_from_a_host(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    import remediator.cli.diagnose as cmd

    def fail(*_: object) -> None:
        raise RemediatorError(f"gpu01: the check script failed: {EVIL}", hint=f"see {EVIL}")

    monkeypatch.setattr(cmd, "run_diagnosis", fail)
    facts = EXAMPLES / "healthy-tf24.json"
    assert main(["diagnose", "--facts", str(facts)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: gpu01: the check script failed: ") and "\nhint: see " in err
    assert_inert(err)


def test_internal_error_message(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import remediator.cli.diagnose as cmd

    def boom(*_: object) -> None:
        raise ValueError(f"unexpected field {EVIL}")

    monkeypatch.setattr(cmd, "run_diagnosis", boom)
    facts = EXAMPLES / "healthy-tf24.json"
    assert main(["diagnose", "--facts", str(facts)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("internal error: ValueError: unexpected field ")
    assert_inert(err)


def test_state_store_warning(capsys: pytest.CaptureFixture[str]) -> None:
    from remediator.cli.history import _warn

    _warn("probe", RemediatorError(EVIL))
    err = capsys.readouterr().err
    assert err.startswith("warning: not recorded in the state db (probe): ")
    assert_inert(err)


# --- probe ---------------------------------------------------------------------------------------------


@pytest.fixture
def hostile_fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from remediator.transport.base import HostUnreachable
    from remediator.transport.fake import FakeConnector, FakeTransport

    inventory = tmp_path / "hosts.ini"
    inventory.write_text("gpu01 ansible_host=10.0.0.1\ngpu02 ansible_host=10.0.0.2\n")
    connector = FakeConnector({
        "gpu01": FakeTransport("gpu01").on("*", returncode=1, stderr=f"Traceback\n{EVIL}\n"),
        "gpu02": HostUnreachable(f"cannot connect: {EVIL}", hint=EVIL),
    })
    monkeypatch.setattr("remediator.transport.ssh.connect", connector)
    return str(inventory)


def test_probe_table_with_a_host_error_and_hint(hostile_fleet: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "-i", hostile_fleet]) == 1
    out = capsys.readouterr().out
    assert_inert(out)
    assert out.count("[bold red]FAKE[/]") == 3  # gpu01's stderr, gpu02's error and its hint


def test_probe_json_is_inert(hostile_fleet: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "-i", hostile_fleet, "--format", "json"]) == 1
    out = capsys.readouterr().out
    for char in RAW:
        assert char not in out
    hosts = json.loads(out)["hosts"]
    assert EVIL in hosts[1]["error"]  # scripts get the value exactly, as JSON escapes


def test_probe_progress_line_shows_the_host_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    from remediator.cli.probe import _progress
    from remediator.fleet import HostResult

    monkeypatch.setattr(sys, "stderr", FakeTerminal())
    progress = _progress(1)
    with progress as advance:
        assert advance is not None
        advance(HostResult(EVIL, "failed", None, "x", None, 0.1))
        shown = capture_console()
        shown.print(progress.bar.make_tasks_table(progress.bar.tasks))
    assert_inert(shown.file.getvalue())


# --- apply and rollback progress -------------------------------------------------------------------------


def progress_events() -> list[Any]:
    from remediator.apply import ApplyEvent
    from remediator.runner import RunnerEvent

    return [
        ApplyEvent("phase", message=f"stopped: {EVIL}"),
        ApplyEvent("warning", host=EVIL, message=f"verify: {EVIL}"),
        ApplyEvent("warning", message=f"verify did not run: {EVIL}"),
        ApplyEvent("batch", batch="canary", hosts=(EVIL,)),
        ApplyEvent("runner", runner=RunnerEvent("1", "start", host=EVIL, task=EVIL)),
        ApplyEvent("runner", runner=RunnerEvent("2", "changed", host=EVIL, task=EVIL)),
        ApplyEvent("runner", runner=RunnerEvent("3", "failed", host=EVIL, task=EVIL, message=EVIL)),
        ApplyEvent("host", host=EVIL, status="failed", message=EVIL),
        ApplyEvent("host", host="gpu02", status="failed", message=EVIL),
    ]


def test_apply_progress_lines() -> None:
    from remediator.cli.apply import Progress

    progress = Progress()
    lines = [progress.update(event) for event in progress_events()]
    for line in lines:
        if line is not None:
            assert_inert(line)
    assert sum(1 for line in lines if line) == 8  # all but the task starting


def test_apply_live_table_and_its_printed_lines() -> None:
    from rich.live import Live

    from remediator.cli.apply import Progress

    progress = Progress()
    shown = capture_console()
    progress.live = Live(progress.table(), console=shown, auto_refresh=False)
    for event in progress_events()[:5]:  # up to a task running: the table shows it
        progress.handle(event)
    shown.print(progress.table())
    text = shown.file.getvalue()
    assert_inert(text)
    assert text.count("stopped: ") == 1 and text.count("warning: ") == 2


def test_apply_summary() -> None:
    from remediator.apply import ApplyResult, HostApply
    from remediator.cli.apply import render_summary

    host = HostApply(host=EVIL, status="failed", error=EVIL, hint=EVIL, task=EVIL, quarantine_manifest=EVIL,
                     verify={"passed": False, "verdict": EVIL})
    result = ApplyResult(kind="apply", run_id="20260510T120000Z-3f9a1c", private_data_dir="/tmp/run",
                         state="finished", hosts=(host,), stopped=EVIL, notes=(EVIL,))
    assert_inert(render_summary(result))


# --- verify --------------------------------------------------------------------------------------------


def test_verify_text_of_a_hostile_report() -> None:
    from remediator.cli.verify import render_text
    from remediator.fleet import HostResult
    from remediator.verify import GpuReport, HostVerification, Library, Matmul, Rung

    rungs = (
        Rung(1, "driver", "pass", EVIL, notes=(EVIL,)),
        Rung(2, "cuda", "pass", EVIL),
        Rung(3, "runtime", "fail", EVIL, cause=EVIL, fix=EVIL, evidence=((EVIL, EVIL),)),
        Rung(4, "matmul", "skip", EVIL),
    )
    value = HostVerification(
        host=EVIL, target="pytorch==2.11.0", python=EVIL, python_version=EVIL, rungs=rungs,
        gpus=(GpuReport(0, EVIL, None, None, None, 0, matmul=Matmul("pass", seconds=0.01, tflops=1.0)),),
        libraries=(Library(kind="cudnn", path=EVIL, version=EVIL, file_version=None, origin=EVIL),),
    )
    failed: HostResult[HostVerification] = HostResult(EVIL, "failed", None, f"the check script failed: {EVIL}",
                                                       EVIL, 0.1)
    text = render_text([HostResult(EVIL, "ok", value, None, None, 0.1), failed], 0.2)
    assert_inert(text)


def test_verify_command_shows_a_hosts_stderr_inert(hostile_fleet: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "-i", hostile_fleet, "--target", "pytorch==2.11.0"]) == 1
    out = capsys.readouterr().out
    assert "exit status 1" in out
    assert_inert(out)


# --- diagnose, drift, history, lab ---------------------------------------------------------------------


def test_diagnose_findings_text() -> None:
    from remediator.cli.render import findings_text
    from remediator.diagnosis import Finding

    text = findings_text(EVIL, [Finding("CUDA_WRONG_DEFAULT", "error", EVIL, ((EVIL, EVIL),), fix=EVIL)])
    assert_inert(text)


def test_drift_text() -> None:
    from remediator.cli.drift import render_text
    from remediator.diagnosis import Finding
    from remediator.drift import Change, DriftRun, HostDrift

    drifted = HostDrift(host=EVIL, status="drift", target=EVIL, baseline_source="baseline", baseline_at=1.0,
                        findings=(Finding("CUDA_WRONG_DEFAULT", "error", EVIL, ((EVIL, EVIL),)),),
                        changes=(Change("changed", "cuda", EVIL, "version", EVIL, EVIL, summary=EVIL),))
    failed = HostDrift(host=EVIL, status="unreachable", error=EVIL, hint=EVIL)
    assert_inert(render_text(DriftRun("run", 0.0, (drifted, failed))))


@pytest.fixture
def hostile_store(tmp_path: Path) -> Iterator[str]:
    from remediator.state import Store

    path = str(tmp_path / "state.db")
    with Store.open(path) as store:
        run_id = store.start_run("probe")
        store.record_probe(run_id, EVIL, f"failed: {EVIL}", 0.1, status="failed")
    yield path


def test_history_of_an_unknown_host_lists_hostile_names_inert(hostile_store: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "gpu99", "--state-db", hostile_store]) == 1
    err = capsys.readouterr().err
    assert "hint: hosts it knows: " in err
    assert_inert(err)


def test_history_timeline(hostile_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", EVIL, "--state-db", hostile_store]) == 0
    out = capsys.readouterr().out
    assert_inert(out)


def test_lab_status_of_hostile_scenario_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from remediator.lab import fleet

    monkeypatch.setattr(fleet, "status", lambda state: [fleet.LabHostStatus(EVIL, EVIL, 2222, 1, True, True)])
    assert main(["lab", "status", "--state", str(tmp_path)]) == 0
    assert_inert(capsys.readouterr().out)


# --- the HTML report ------------------------------------------------------------------------------------


def test_html_report_escapes_and_neutralises_host_values() -> None:
    from remediator.report import HostRow, Item, render_html

    row = HostRow(host=EVIL + "<script>", status="failed", target=EVIL, checked_at=None, swatch="#000000",
                  error=EVIL)
    row.cells["driver"].text = EVIL
    row.cells["driver"].items.append(Item("error", EVIL, [(EVIL, EVIL + "</dd><b>")]))
    page = render_html([row], generated_at=0.0)
    assert_inert(page)
    assert "<script>" not in page and "&lt;script&gt;" in page and "</dd><b>" not in page
