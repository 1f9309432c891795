"""Measure the SSH transport against a throwaway sshd on 127.0.0.1: connect, round trip, throughput, fleet.

    .venv/bin/python benchmarks/ssh_transport.py [--mib 64] [--hosts 50] [--forks 10]

The fleet figure connects to the same sshd N times through `run_fleet`, which is what a probe of N hosts
costs on the controller side (key exchange and authentication dominate).
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from remediator.fleet import run_fleet
from remediator.inventory import InventoryHost
from remediator.transport.ssh import connect

MIB = 1 << 20


def start_sshd(d: Path) -> tuple[subprocess.Popen[bytes], InventoryHost]:
    keygen = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
    for name in ("host_key", "client_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kind, blob = (d / "host_key.pub").read_text().split()[:2]
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {kind} {blob}\n")
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n"
        f"AuthorizedKeysFile {d}/authorized_keys\nUsePAM no\nStrictModes no\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nMaxStartups 200\n"
        "MaxSessions 100\nLogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    proc = subprocess.Popen([sshd, "-D", "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log")])
    host = InventoryHost(
        name="bench",
        address="127.0.0.1",
        port=port,
        user=getpass.getuser(),
        private_key_file=str(d / "client_key"),
        known_hosts_files=(str(d / "known_hosts"),),
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(8).startswith(b"SSH-"):
                    return proc, host
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    raise SystemExit("sshd did not start")


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=int, default=64, help="MiB per stream for the throughput runs")
    parser.add_argument("--hosts", type=int, default=50, help="connections in the fleet run")
    parser.add_argument("--forks", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="remediator-bench-") as tmp:
        proc, host = start_sshd(Path(tmp))
        try:
            connects = timed(lambda: connect(host).close(), 10)
            print(f"connect+auth      median {statistics.median(connects) * 1000:7.1f} ms")
            with connect(host) as t:
                rtt = timed(lambda: t.run(["true"]), 20)
                print(f"run(['true'])     median {statistics.median(rtt) * 1000:7.1f} ms")
                n = args.mib * MIB
                one = f"head -c {n} /dev/zero"
                both = f"head -c {n} /dev/zero >&2 & head -c {n} /dev/zero; wait"
                for label, script, total in (("stdout", one, n), ("stdout+stderr", both, 2 * n)):
                    t0 = time.perf_counter()
                    r = t.run(["sh", "-c", script], timeout=600)
                    secs = time.perf_counter() - t0
                    assert len(r.stdout) + len(r.stderr) == total
                    print(f"{label:17s} {total / MIB / secs:7.1f} MiB/s ({total // MIB} MiB in {secs:.2f}s)")

            def probe(h: InventoryHost) -> int:
                with connect(h) as t:
                    return t.run(["uname", "-r"]).returncode

            fleet = [
                InventoryHost(
                    f"h{i}",
                    host.address,
                    host.port,
                    host.user,
                    host.private_key_file,
                    known_hosts_files=host.known_hosts_files,
                )
                for i in range(args.hosts)
            ]
            t0 = time.perf_counter()
            result = run_fleet(fleet, probe, forks=args.forks)
            secs = time.perf_counter() - t0
            print(
                f"fleet             {args.hosts} hosts, forks={args.forks}: {secs:.2f}s {result.by_status()}"
            )
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
