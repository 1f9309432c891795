"""The fleet runner (a result per host, never the first exception) and the scripted fake transport."""

from __future__ import annotations

import threading
import time

import pytest

from remediator.errors import InputError, UsageError
from remediator.fleet import FleetResult, HostResult, run_fleet
from remediator.inventory import InventoryHost
from remediator.transport.base import (
    AuthenticationError,
    CommandResult,
    CommandTimeout,
    HostKeyError,
    HostUnreachable,
    Transport,
)
from remediator.transport.fake import Call, FakeConnector, FakeTransport, UnscriptedCommand


def hosts(*names: str) -> list[InventoryHost]:
    return [InventoryHost(n, f"10.0.0.{i}") for i, n in enumerate(names, 1)]


def driver_version(connect: FakeConnector, host: InventoryHost) -> str:
    """What a probe-like caller does: connect, run a command, close."""
    t = connect(host)
    try:
        result = t.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], timeout=30)
        if result.returncode != 0:
            raise InputError(host.name, result.stderr.decode().strip())
        return result.stdout.decode().strip()
    finally:
        t.close()


def test_a_result_per_host_with_each_outcome() -> None:
    good = FakeTransport("gpu0").on(["nvidia-smi", "*", "*"], stdout="535.161.08\n")
    bad = FakeTransport("gpu1").on(
        ["nvidia-smi", "*", "*"], returncode=9, stderr="NVIDIA-SMI has failed because it couldn't communicate"
    )
    hung = FakeTransport("gpu2").on(
        "nvidia-smi *", raises=CommandTimeout("nvidia-smi ran past its 30s timeout")
    )
    connector = FakeConnector(
        {
            "gpu0": good,
            "gpu1": bad,
            "gpu2": hung,
            "gpu3": HostUnreachable("connection refused (10.0.0.4:22)", hint="is sshd running?"),
            "gpu4": HostKeyError("Host key for 10.0.0.5 has changed", hint="ssh-keygen -R 10.0.0.5"),
            "gpu5": AuthenticationError("permission denied (publickey)"),
            "gpu6": RuntimeError("boom"),
        }
    )
    fleet = hosts("gpu0", "gpu1", "gpu2", "gpu3", "gpu4", "gpu5", "gpu6")

    result = run_fleet(fleet, lambda h: driver_version(connector, h), forks=3)

    assert [r.host for r in result] == [h.name for h in fleet]  # inventory order, not finishing order
    assert [r.status for r in result] == ["ok", "failed", "failed", *["unreachable"] * 3, "failed"]
    assert result["gpu0"].value == "535.161.08" and result["gpu0"].error is None
    assert result["gpu1"].error == "gpu1: NVIDIA-SMI has failed because it couldn't communicate"
    assert result["gpu2"].error == "nvidia-smi ran past its 30s timeout"
    assert (result["gpu3"].error, result["gpu3"].hint) == (
        "connection refused (10.0.0.4:22)",
        "is sshd running?",
    )
    assert result["gpu4"].hint == "ssh-keygen -R 10.0.0.5"
    assert result["gpu6"].error == "internal error: RuntimeError: boom"
    assert result["gpu6"].value is None
    assert result.by_status() == {"ok": 1, "failed": 3, "unreachable": 3}
    assert list(result.by_status()) == ["ok", "failed", "unreachable"]
    assert [r.host for r in result.with_status("unreachable")] == ["gpu3", "gpu4", "gpu5"]
    assert not result.all_ok
    assert good.closed and bad.closed and hung.closed
    assert all(r.duration_s >= 0 for r in result)


def test_runs_in_parallel_up_to_forks() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    def work(host: InventoryHost) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return host.name

    fleet = hosts(*(f"h{i}" for i in range(12)))
    started = time.monotonic()
    result = run_fleet(fleet, work, forks=4)
    assert peak == 4
    assert time.monotonic() - started < 12 * 0.05  # not one after the other
    assert [r.value for r in result] == [h.name for h in fleet]

    peak = 0
    run_fleet(fleet[:3], work, forks=1)
    assert peak == 1


def test_on_result_called_once_per_host_as_each_finishes() -> None:
    seen: list[HostResult[int]] = []
    lock = threading.Lock()

    def record(r: HostResult[int]) -> None:
        with lock:
            seen.append(r)

    def work(h: InventoryHost) -> int:
        time.sleep(0.1 if h.name == "slow" else 0)
        if h.name == "bad":
            raise HostUnreachable("timed out")
        return 1

    result = run_fleet(hosts("slow", "fast", "bad"), work, forks=3, on_result=record)
    assert sorted(r.host for r in seen) == ["bad", "fast", "slow"]
    assert seen[-1].host == "slow"  # reported when it finished, not in inventory order
    assert {r.host: r for r in seen} == {r.host: r for r in result}


def test_a_failing_callback_does_not_lose_other_hosts() -> None:
    done: list[str] = []

    def work(h: InventoryHost) -> str:
        done.append(h.name)
        return h.name

    def callback(r: HostResult[str]) -> None:
        raise ValueError("display broke")

    with pytest.raises(ValueError, match="display broke"):
        run_fleet(hosts("a", "b", "c"), work, forks=1, on_result=callback)
    assert sorted(done) == ["a", "b", "c"]


def test_empty_fleet_and_bad_forks() -> None:
    empty: FleetResult[int] = run_fleet([], lambda h: 1)
    assert len(empty) == 0 and empty.by_status() == {"ok": 0, "failed": 0, "unreachable": 0}
    assert empty.all_ok
    with pytest.raises(UsageError, match="forks"):
        run_fleet(hosts("a"), lambda h: 1, forks=0)
    with pytest.raises(ValueError, match="unique"):
        run_fleet(hosts("a") + hosts("a"), lambda h: 1)


def test_keyboard_interrupt_is_not_swallowed() -> None:
    def work(h: InventoryHost) -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_fleet(hosts("a", "b"), work, forks=1)


# --------------------------------------------------------------------------- the fake transport


def test_fake_is_a_transport_and_records_calls() -> None:
    fake = FakeTransport("gpu0").on(["python3", "-"], stdout=b'{"schema": 1}')
    assert isinstance(fake, Transport)
    result = fake.run(["python3", "-"], stdin=b"print(1)", timeout=20)
    assert result == CommandResult(0, b'{"schema": 1}', b"")
    assert fake.calls == [Call(("python3", "-"), b"print(1)", 20)]
    assert fake.commands() == ["python3 -"]
    fake.put_file(b"#!/bin/sh\n", "/tmp/probe.sh", mode=0o755)
    assert fake.files == {"/tmp/probe.sh": (b"#!/bin/sh\n", 0o755)}


def test_fake_rule_matching() -> None:
    fake = (
        FakeTransport()
        .on(["cat", "/proc/driver/nvidia/version"], stdout="NVRM version: 535.161.08")
        .on(["sh", "-c", "*ldconfig*"], stdout="libcudnn.so.8")
        .on("nvcc *", returncode=127, stderr="nvcc: command not found")
        .on(["python3", "-"], stdin=b"v2", stdout="two")
        .on(["python3", "-"], stdout="any")
    )
    assert fake.run(["cat", "/proc/driver/nvidia/version"]).stdout == b"NVRM version: 535.161.08"
    assert fake.run(["sh", "-c", "ldconfig -p | grep cudnn"]).stdout == b"libcudnn.so.8"
    assert fake.run(["nvcc", "--version"]).returncode == 127
    assert fake.run(["python3", "-"], stdin=b"v2").stdout == b"two"
    assert fake.run(["python3", "-"], stdin=b"v1").stdout == b"any"
    with pytest.raises(UnscriptedCommand, match="no rule for 'cat /etc/os-release'"):
        fake.run(["cat", "/etc/os-release"])
    with pytest.raises(UnscriptedCommand):
        fake.run(["cat", "/proc/driver/nvidia/version", "extra"])  # lengths must agree


def test_fake_sequences_errors_and_computed_results() -> None:
    fake = (
        FakeTransport(default=CommandResult(1, b"", b"unscripted"))
        .on(["nvidia-smi"], raises=CommandTimeout("nvidia-smi ran past its 5s timeout"), times=1)
        .on(["nvidia-smi"], stdout="ok")
        .on(["echo", "*"], respond=lambda call: CommandResult(0, " ".join(call.argv[1:]).encode(), b""))
    )
    with pytest.raises(CommandTimeout):
        fake.run(["nvidia-smi"])
    assert fake.run(["nvidia-smi"]).stdout == b"ok"  # the first rule is used up
    assert fake.run(["echo", "hi there"]).stdout == b"hi there"
    assert fake.run(["anything"]).stderr == b"unscripted"
    fake.close()
    with pytest.raises(AssertionError, match="after close"):
        fake.run(["nvidia-smi"])


def test_fake_connector() -> None:
    connector = FakeConnector({"a": FakeTransport("a"), "b": HostUnreachable("connection refused")})
    a, b, c = hosts("a", "b", "c")
    assert connector(a, accept_new_host_keys=True).name == "a"
    with pytest.raises(HostUnreachable):
        connector(b)
    with pytest.raises(UnscriptedCommand, match="'c'"):
        connector(c)
    assert connector.connected == ["a", "b", "c"]
