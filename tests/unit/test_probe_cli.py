"""`remediate probe`: this machine with --local, and an inventory fleet over scripted transports."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from remediator.cli import main
from remediator.facts import HostFacts, load_facts_file
from remediator.probe import payload_source
from remediator.transport.base import HostKeyError, HostUnreachable
from remediator.transport.fake import FakeConnector, FakeTransport

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "probe"
PROBE = ["sh", "-c", "*exec python3 -I -S -"]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "500")  # table cells do not wrap: the tests read whole values


def recorded(name: str) -> bytes:
    return (FIXTURES / f"{name}.probe.json").read_bytes()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, FakeConnector]:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[gpu]\n"
        "gpu01 ansible_host=10.0.0.1\n"
        "gpu02 ansible_host=10.0.0.2\n"
        "gpu03 ansible_host=10.0.0.3\n"
        "gpu04 ansible_host=10.0.0.4\n"
    )
    connector = FakeConnector(
        {
            "gpu01": FakeTransport("gpu01").on(PROBE, stdout=recorded("h200-ubuntu24.04")),
            "gpu02": FakeTransport("gpu02").on(PROBE, returncode=127, stderr="remediator: python3 not found\n"),
            "gpu03": HostUnreachable("cannot connect to 10.0.0.3:22: Connection refused"),
            "gpu04": HostKeyError(
                "host key for gpu04 changed", hint="if expected, remove it with `ssh-keygen -R 10.0.0.4`"
            ),
        }
    )
    monkeypatch.setattr("remediator.transport.ssh.connect", connector)
    return str(inventory), connector


def test_local_json_needs_no_inventory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_path = tmp_path / "facts.json"
    status, out, _err = run(capsys, "probe", "--local", "--format", "json", "--out", str(out_path))
    assert status == 0
    document = json.loads(out)
    assert document == json.loads(out_path.read_text())
    (host,) = document["hosts"]
    assert (host["host"], host["status"], host["error"]) == ("localhost", "ok", None)
    (facts,) = load_facts_file(str(out_path))
    assert facts == HostFacts.from_dict(host["facts"])


def test_local_table(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _err = run(capsys, "probe", "--local")
    assert status == 0
    assert "localhost" in out and "1 host(s)" in out and "1 probed" in out


def test_fleet_json_keeps_every_host_outcome(
    capsys: pytest.CaptureFixture[str], fleet: tuple[str, FakeConnector], tmp_path: Path
) -> None:
    inventory, connector = fleet
    status, out, _err = run(capsys, "probe", "-i", inventory, "--format", "json", "--forks", "2")
    assert status == 1  # some hosts could not be probed; the others still were
    hosts = {h["host"]: h for h in json.loads(out)["hosts"]}
    assert [h["host"] for h in json.loads(out)["hosts"]] == ["gpu01", "gpu02", "gpu03", "gpu04"]
    assert hosts["gpu01"]["status"] == "ok"
    assert hosts["gpu01"]["facts"]["driver"]["version"] == "580.159.04"
    assert (hosts["gpu02"]["status"], hosts["gpu02"]["error"]) == ("failed", "python3 not found on host")
    assert hosts["gpu02"]["facts"] is None
    assert hosts["gpu03"]["status"] == "unreachable" and "Connection refused" in hosts["gpu03"]["error"]
    assert hosts["gpu04"]["status"] == "unreachable" and "ssh-keygen -R" in hosts["gpu04"]["hint"]
    transport = connector.hosts["gpu01"]
    assert isinstance(transport, FakeTransport)
    assert len(transport.calls) == 1 and transport.closed  # one round trip, then closed


def test_fleet_table_lists_the_reasons(capsys: pytest.CaptureFixture[str], fleet: tuple[str, FakeConnector]) -> None:
    inventory, _ = fleet
    status, out, _err = run(capsys, "probe", "-i", inventory, "--limit", "gpu01:gpu02:gpu03")
    assert status == 1
    assert "580.159.04" in out and "13.0.88" in out and "9.19.0" in out and "torch 2.11.0+cu130" in out
    assert "python3 not found on host" in out and "Connection refused" in out
    assert "gpu04" not in out
    assert "3 host(s)" in out and "1 probed, 1 failed, 1 unreachable" in out


def test_all_ok_exits_zero(capsys: pytest.CaptureFixture[str], fleet: tuple[str, FakeConnector]) -> None:
    inventory, _ = fleet
    status, _out, _err = run(capsys, "probe", "-i", inventory, "--limit", "gpu01", "--format", "json")
    assert status == 0


def test_table_shows_hostile_values_escaped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc: dict[str, Any] = json.loads(recorded("hostile-paths"))
    doc["envs"][2]["path"] = "/home/eve/[bold red]x[/bold red]\x1b[2J"
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("eve ansible_host=10.0.0.9\n")
    transport = FakeTransport("eve").on(PROBE, stdout=json.dumps(doc))
    monkeypatch.setattr("remediator.transport.ssh.connect", FakeConnector({"eve": transport}))
    status, out, _err = run(capsys, "probe", "-i", str(inventory))
    assert status == 0
    assert "\x1b" not in out  # no terminal escape from the host reaches the terminal
    flat = "".join(out.split())
    assert "[boldred]x[/boldred]\\x1b[2J" in flat  # rich markup in a value is shown, not applied
    assert "NVIDIAA100$(reboot);`id`" in flat


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "give -i/--inventory, or --local"),
        (("--local", "-i", "hosts.ini"), "--local probes this machine"),
        (("--local", "--venv-root", "opt"), "--venv-root must be an absolute path"),
    ],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str) -> None:
    status, _out, err = run(capsys, "probe", *argv)
    assert status == 1 and message in err and "Traceback" not in err


def test_venv_roots_and_timeout_reach_the_script(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("gpu01 ansible_host=10.0.0.1\n")
    transport = FakeTransport("gpu01").on(PROBE, stdout=recorded("no-driver"))
    monkeypatch.setattr("remediator.transport.ssh.connect", FakeConnector({"gpu01": transport}))
    status, _out, _err = run(
        capsys, "probe", "-i", str(inventory), "--venv-root", "/srv/envs", "--timeout", "33", "--format", "json"
    )
    assert status == 0
    (call,) = transport.calls
    assert call.timeout == 33
    assert call.stdin is not None
    match = re.search(r"^PAYLOAD_OPTIONS = json\.loads\((.*)\)$", payload_source(call.stdin), re.M)
    assert match is not None
    assert json.loads(ast.literal_eval(match.group(1)))["venv_roots"] == ["/srv/envs"]
