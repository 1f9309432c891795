"""The pure parts of the lab's fleet: sshd configuration, the start script, the inventory, state dirs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from remediator.errors import UsageError
from remediator.lab import fleet, scenario, sshd

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "remediator" / "lab" / "scenarios"


def test_sshd_listens_on_loopback_with_keys_only() -> None:
    text = sshd.sshd_config("gpu07", 40123, root_login=False)
    lines = set(text.splitlines())
    assert {"ListenAddress 127.0.0.1", "Port 40123", "PasswordAuthentication no", "PubkeyAuthentication yes",
            "KbdInteractiveAuthentication no", "PermitRootLogin no"} <= lines  # fmt: skip
    assert not any(line.startswith("ListenAddress") and "127.0.0.1" not in line for line in lines)
    assert "PermitRootLogin prohibit-password" in sshd.sshd_config("gpu07", 1, root_login=True)


def test_the_start_script_mounts_every_private_copy_then_execs_sshd() -> None:
    text = sshd.start_script("gpu07", "no-driver", Path("/srv/lab/templates/no-driver"), Path("/srv/lab/hosts/gpu07"),
                             Path("/srv/lab"))  # fmt: skip
    lines = text.splitlines()
    assert lines[-1].startswith("exec /usr/sbin/sshd -D -f /etc/ssh/sshd_config")
    targets = [line.rsplit(" ", 1)[1] for line in lines if line.startswith("mount ")]
    assert targets == ["/etc", "/usr", "/var", "/opt", "/home", "/root", "/proc/driver", "/run", "/tmp"]
    assert "lowerdir=/srv/lab/templates/no-driver/etc:/etc," in text
    assert "lowerdir=/srv/lab/templates/no-driver/opt,upperdir=/srv/lab/hosts/gpu07/upper/opt" in text
    assert "hostname gpu07" in lines


@pytest.mark.parametrize(("state", "last"), [("/tmp/lab", "/tmp"), ("/home/me/lab", "/home"), ("/root/lab", "/root")])
def test_a_mount_over_the_state_dir_comes_last(state: str, last: str) -> None:
    text = sshd.start_script("h", "s", Path(state) / "templates/s", Path(state) / "hosts/h", Path(state))
    targets = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith("mount ")]
    assert targets[-1] == last


@pytest.mark.parametrize("state", ["/var/tmp/lab", "/etc/lab", "/usr/local/lab", "/tmp/a b", "/tmp/a,b"])
def test_state_dirs_the_hosts_overlay_are_refused(state: str) -> None:
    with pytest.raises(UsageError):
        fleet._check_state(Path(state))


def test_the_inventory_is_a_standard_ansible_yaml_inventory(tmp_path: Path) -> None:
    scenarios = {s.id: s for s in scenario.load_all([SCENARIO_DIR])}
    hosts = tuple(
        fleet.Host(sid, sid, s.target, s.expect, 40000 + i, s.user, 1000 + i, 1, "mnt:[1]", "ssh-ed25519 AAAA", s.home)
        for i, (sid, s) in enumerate(sorted(scenarios.items()))
    )
    lab = fleet.Lab(tmp_path, hosts)
    doc = yaml.safe_load(fleet._inventory(lab, scenarios))
    inv = doc["all"]["children"]["lab"]["hosts"]
    assert set(inv) == set(scenarios)
    nd = inv["no-driver"]
    assert nd["ansible_host"] == "127.0.0.1" and nd["ansible_user"] == "ubuntu" and nd["ansible_become"] is True
    assert nd["ansible_ssh_private_key_file"] == str(tmp_path / "id_ed25519")
    assert nd["remediate_scenario"] == "no-driver" and nd["remediate_target"] == "tensorflow==2.12.0"
    assert nd["remediate_expect"] == ["DRIVER_MISSING"]
    assert "ansible_become" not in inv["cuda-missing"] and inv["cuda-missing"]["ansible_user"] == "root"
    assert f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in nd["ansible_ssh_common_args"]
    # The hostile hosts are also in the group hostile, so `--limit '!hostile'` leaves them out.
    hostile = {sid for sid, s in scenarios.items() if sid.startswith("hostile-")}
    assert len(hostile) >= 4
    assert set(doc["all"]["children"]["lab"]["children"]["hostile"]["hosts"]) == hostile
    path = tmp_path / "inventory.yml"
    path.write_text(fleet._inventory(lab, scenarios))
    from remediator.inventory import load_inventory

    assert {h.name for h in load_inventory(str(path), "!hostile").hosts} == set(scenarios) - hostile
    assert {h.name for h in load_inventory(str(path), "hostile").hosts} == hostile


def test_keys_are_fresh_ed25519_pairs() -> None:
    a, b = sshd.keypair("x"), sshd.keypair("y")
    assert a.public_line.startswith("ssh-ed25519 ") and a.public_line != b.public_line
    assert a.private_openssh.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert sshd.fingerprint(a.public_line).startswith("SHA256:")


def test_down_on_a_missing_state_dir_is_a_no_op(tmp_path: Path) -> None:
    result = fleet.down(tmp_path / "never-created")
    assert result.stopped == [] and not result.removed


def test_down_leaves_a_directory_that_is_not_a_lab_alone(tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text("github.com ssh-ed25519 AAAA\n")
    (tmp_path / "hosts").mkdir()
    assert fleet.down(tmp_path).removed is False
    assert (tmp_path / "known_hosts").exists() and (tmp_path / "hosts").is_dir()


def test_up_refuses_a_state_dir_with_other_files(tmp_path: Path) -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("lab up needs root")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds other files"):
        fleet.up([SCENARIO_DIR / "no-driver.yaml"], tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
