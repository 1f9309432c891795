"""The lab fleet over real SSH: every host answers with its own key, sees its own files and only them,
and the outer machine is left as it was."""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any

import pytest

from remediator.lab import catalog

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_the_fleet_has_every_scenario(lab: Any) -> None:
    assert len(lab.hosts) >= 14
    assert {h.scenario.id for h in lab.hosts.values()} == set(lab.hosts)
    text = lab.inventory.read_text()
    for name, h in lab.hosts.items():
        assert f"{name}:" in text
        # A no_target host has none: it is judged against what it has.
        assert (f"remediate_target: {h.scenario.target}" in text) != h.scenario.no_target, name
    assert len(lab.known_hosts.read_text().splitlines()) == len(lab.hosts)


def test_every_host_answers_with_its_own_key_and_name(lab: Any) -> None:
    seen_keys = set()
    for name in lab.hosts:
        client = lab.connect(name)  # RejectPolicy: a key not in known_hosts fails here
        try:
            key = client.get_transport().get_remote_server_key()  # type: ignore[union-attr]
            seen_keys.add(key.get_base64())
            code, out, _ = lab.run(client, "hostname; id -un")
            assert code == 0
            assert out.split() == [name, lab.hosts[name].user]
        finally:
            client.close()
    assert len(seen_keys) == len(lab.hosts), "each host has its own host key"


def _expect_layout(h: Any) -> str:
    """A shell script printing one JSON document of what this host has where the scenario says."""
    del h
    return r"""python3 - <<'EOF'
import json, os, subprocess
def sh(cmd):
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr
doc = {}
doc["usr_local"] = sorted(n for n in os.listdir("/usr/local") if n.startswith("cuda"))
doc["cuda_link"] = os.path.realpath("/usr/local/cuda") if os.path.lexists("/usr/local/cuda") else None
doc["smi"] = sh("nvidia-smi --query-gpu=driver_version,name --format=csv,noheader")
doc["proc"] = open("/proc/driver/nvidia/version").read() if os.path.exists("/proc/driver/nvidia/version") else None
doc["dpkg"] = sh("dpkg-query -W -f='${Package} ${Version}\n'")[1].splitlines()
doc["ldconf"] = sorted(os.listdir("/etc/ld.so.conf.d"))
doc["profile"] = sorted(os.listdir("/etc/profile.d"))
doc["nvcc"] = {}
for d in doc["usr_local"]:
    if os.path.isfile("/usr/local/%s/bin/nvcc" % d) and not os.path.islink("/usr/local/" + d):
        doc["nvcc"][d] = sh("/usr/local/%s/bin/nvcc --version" % d)[1]
doc["exists"] = {}
print(json.dumps(doc))
EOF"""


def test_each_host_sees_its_own_layout(lab: Any) -> None:
    lab.reset()  # whatever tests ran before may have changed hosts; reset gives the scenario's layout back
    for name, h in lab.hosts.items():
        s = h.scenario
        client = lab.connect(name)
        try:
            code, out, err = lab.run(client, _expect_layout(h))
            assert code == 0, err
            doc = json.loads(out)
            # Toolkits: exactly the scenario's under /usr/local, each nvcc telling its own release.
            dirs = {f"cuda-{t.short}" for t in s.cuda}
            assert {d for d in doc["usr_local"] if d.count(".") == 1} == dirs, name
            for t in s.cuda:
                assert f"release {t.short}, V{catalog.toolkit_info(t.version).nvcc}" in doc["nvcc"][f"cuda-{t.short}"]
            if s.default_cuda:
                assert doc["cuda_link"] == f"/usr/local/cuda-{s.default_cuda}", name
            else:
                assert doc["cuda_link"] is None, name
            # Driver: nvidia-smi answers with the scenario's version, or fails as the real one does.
            rc, smi_out, _ = doc["smi"]
            packages = dict(line.split(" ", 1) for line in doc["dpkg"] if " " in line)
            if s.driver is None:
                assert rc == 127 and doc["proc"] is None, name
                assert not any(p.startswith("nvidia-driver") for p in packages), name
            elif s.driver.kernel_module is None:
                assert rc == 9, name
            elif s.driver.mismatch:
                assert rc == 18 and "Driver/library version mismatch" in smi_out, name
                assert s.driver.kernel_module in doc["proc"] and s.driver.version not in doc["proc"]
            else:
                assert rc == 0, name
                model = s.driver.gpus[0].model
                assert smi_out.splitlines()[0] == f"{s.driver.version}, {model}", name
                assert s.driver.version in doc["proc"]
            if s.driver is not None and s.driver.install == "deb":
                branch = s.driver.version.split(".")[0]
                assert packages[f"nvidia-driver-{branch}"].startswith(s.driver.version), name
            # cuDNN debs show in dpkg; the outer machine's packages are there too.
            for c in s.cudnn:
                if c.install == "deb":
                    assert any(v.startswith(c.version) for p, v in packages.items() if "cudnn" in p), name
            assert "openssh-server" in packages
            for conf, _ in s.ld_so_conf:
                assert conf in doc["ldconf"], name
            for prof, _ in s.profile:
                assert prof in doc["profile"], name
            # Every environment's framework files are where the scenario put them.
            for env in s.envs:
                for p in env.packages:
                    site = (
                        env.path
                        if env.kind == "system"
                        else posixpath.join(env.path, "lib", "python" + env.python.rsplit(".", 1)[0], "site-packages")
                    )
                    dist = p.version.split("+")[0] if p.channel == "pypi" else p.version
                    info = f"{site}/{p.name.replace('-', '_')}-{dist}.dist-info/METADATA"
                    # Another user's 0750 home and /root are closed to the login user, as on a real host.
                    closed = env.path.startswith(("/root/", "/home/")) and not env.path.startswith(h.home + "/")
                    rc, meta, _ = lab.run(client, f"{'sudo -n cat' if closed else 'cat'} {info}")
                    assert rc == 0 and f"Version: {dist}" in meta, (name, info)
        finally:
            client.close()


def test_hosts_do_not_see_each_other_or_write_to_the_outer_machine(lab: Any) -> None:
    a, b = sorted(lab.hosts)[:2]
    ca, cb = lab.connect(a), lab.connect(b)
    try:
        marker = f"lab-test-{a}"
        code, _, err = lab.run(ca, f"echo {marker} > /tmp/{marker} && echo {marker} > ~/{marker} && "
                               f"sudo -n sh -c 'echo {marker} > /usr/local/{marker} && echo x > /etc/{marker}'"
                           if lab.hosts[a].user != "root" else
                           f"echo {marker} > /tmp/{marker} && echo {marker} > /usr/local/{marker}")  # fmt: skip
        assert code == 0, err
        code, out, _ = lab.run(ca, f"cat /tmp/{marker} /usr/local/{marker}")
        assert out.split() == [marker, marker]
        code, out, _ = lab.run(cb, f"ls /tmp/{marker} /usr/local/{marker} ~/{marker} 2>&1; echo rc=$?")
        assert "No such file" in out and "rc=2" in out
        for path in (f"/tmp/{marker}", f"/usr/local/{marker}", f"/etc/{marker}"):
            assert not posixpath.exists(path), f"{path} leaked to the outer machine"
    finally:
        ca.close()
        cb.close()
    lab.reset(a)
    ca = lab.connect(a)
    try:
        code, out, _ = lab.run(ca, f"ls /tmp/{marker} /usr/local/{marker} 2>&1; echo rc=$?")
        assert "rc=2" in out, "reset dropped what the session wrote"
    finally:
        ca.close()


def test_the_login_user_has_passwordless_sudo(lab: Any) -> None:
    name = next(n for n, h in lab.hosts.items() if h.user != "root")
    client = lab.connect(name)
    try:
        code, out, err = lab.run(client, "sudo -n id -u; grep -c '' /etc/passwd >/dev/null; echo $HOME")
        assert code == 0, err
        assert out.split() == ["0", lab.hosts[name].home]
    finally:
        client.close()


def test_the_outer_machine_is_unchanged_while_the_lab_runs(lab: Any, labkit: Any) -> None:
    now = labkit.snapshot()
    changed = sorted(k for k in now if now[k] != lab.outer_before.get(k))
    assert not changed, f"the outer machine changed under {changed}"
    assert labkit.mounts() == lab.mounts_before, "no mount of the lab is visible outside its namespaces"


def test_no_listener_outside_loopback(lab: Any) -> None:
    ports = {h.port for h in lab.hosts.values()}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            parts = line.split()
            addr, port_hex = parts[1].split(":")
            if parts[3] == "0A" and int(port_hex, 16) in ports:
                assert table.endswith("tcp") and addr == "0100007F", line
