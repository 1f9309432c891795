"""Inventory loading through ansible-core: formats, variables, --limit patterns, ssh arguments, errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from remediator.errors import InputError, UsageError
from remediator.inventory import InventoryHost, load_inventory, parse_ssh_args

INI = """\
[gpu]
gpu0 ansible_host=10.0.0.10 ansible_port=2201
gpu1 ansible_host=10.0.0.11 ansible_user=ops
gpu2 ansible_host="{{ subnet }}.12"
gpu3

[cpu]
cpu[01:03] ansible_become=yes

[broken]
gpu3

[gpu:vars]
remediate_target=tensorflow==2.4.1
remediate_policy=pin
subnet=10.0.0
ansible_ssh_private_key_file=~/.ssh/fleet_key
ansible_ssh_common_args='-o UserKnownHostsFile=/etc/fleet/known_hosts -oStrictHostKeyChecking=yes'
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture
def ini(tmp_path: Path) -> str:
    return write(tmp_path, "hosts.ini", INI)


def names(path: str, limit: str | None = None) -> list[str]:
    return [h.name for h in load_inventory(path, limit).hosts]


def test_ini_hosts_and_connection_vars(ini: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ansible fixes its local tmp dir (~/.ansible/tmp) from HOME when its constants are first imported: import
    # them under the real HOME, and point HOME at a temp dir, so no test creates /home/<someone> on this machine
    # (the lab's teardown checks that /home is as it was).
    import ansible.constants  # noqa: F401

    monkeypatch.setenv("HOME", str(tmp_path / "home" / "tester"))
    inv = load_inventory(ini)
    assert inv.path == ini and inv.limit is None
    assert [h.name for h in inv] == ["gpu0", "gpu1", "gpu2", "gpu3", "cpu01", "cpu02", "cpu03"]
    gpu0 = inv.host("gpu0")
    assert (gpu0.address, gpu0.port, gpu0.user, gpu0.port_defaulted) == ("10.0.0.10", 2201, None, False)
    assert gpu0.private_key_file == f"{tmp_path}/home/tester/.ssh/fleet_key"
    assert gpu0.target == "tensorflow==2.4.1"
    assert dict(gpu0.vars) == {"remediate_target": "tensorflow==2.4.1", "remediate_policy": "pin"}
    assert gpu0.known_hosts_files == ("/etc/fleet/known_hosts",)
    assert gpu0.strict_host_key_checking == "yes"
    assert gpu0.ssh_args == "-o UserKnownHostsFile=/etc/fleet/known_hosts -oStrictHostKeyChecking=yes"
    assert gpu0.become is False and gpu0.groups == ("gpu",)
    assert inv.host("gpu1").user == "ops"
    assert inv.host("gpu3").groups == ("broken", "gpu")


def test_defaults_for_a_bare_host(ini: str) -> None:
    host = load_inventory(ini).host("cpu02")
    assert host == InventoryHost(
        name="cpu02", address="cpu02", port=22, become=True, port_defaulted=True, groups=("cpu",)
    )
    assert host.target is None and dict(host.vars) == {}
    assert host.connection == "ssh"


def test_values_are_templated_and_plain(ini: str) -> None:
    host = load_inventory(ini).host("gpu2")
    assert host.address == "10.0.0.12"
    assert type(host.address) is str  # not ansible's tagged str subclass
    assert type(load_inventory(ini).host("gpu0").port) is int


def test_yaml_inventory_with_group_and_host_vars_dirs(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inv/hosts.yml",
        """\
        all:
          children:
            gpu:
              hosts:
                a100-[1:2]:
                  ansible_port: 22022
            cpu:
              hosts:
                head:
                  ansible_host: 192.0.2.5
                  ansible_connection: local
        """,
    )
    write(tmp_path, "inv/group_vars/gpu.yml", "remediate_target: torch==2.1.0\nansible_user: gpuops\n")
    write(tmp_path, "inv/host_vars/a100-2.yml", "remediate_target: torch==2.2.0\nansible_become: true\n")
    inv = load_inventory(path)
    assert [h.name for h in inv] == ["a100-1", "a100-2", "head"]
    a1, a2, head = inv.hosts
    assert (a1.port, a1.user, a1.target, a1.become) == (22022, "gpuops", "torch==2.1.0", False)
    assert (a2.target, a2.become) == ("torch==2.2.0", True)
    assert head.address == "192.0.2.5" and head.connection == "local" and head.target is None


def test_inventory_directory(tmp_path: Path) -> None:
    write(tmp_path, "inv/10-gpu.ini", "[gpu]\ngpu0\n")
    write(tmp_path, "inv/20-cpu.yml", "all:\n  hosts:\n    cpu0: {}\n")
    assert sorted(names(str(tmp_path / "inv"))) == ["cpu0", "gpu0"]


def test_comma_separated_host_list() -> None:
    assert names("alpha,beta,") == ["alpha", "beta"]


def test_ssh_alias_vars_last_one_wins(tmp_path: Path) -> None:
    # as ansible's ssh connection options: of ansible_host / ansible_ssh_host the last defined wins
    path = write(tmp_path, "h.ini", "h ansible_host=1.1.1.1 ansible_ssh_host=2.2.2.2 ansible_ssh_port=2222\n")
    host = load_inventory(path).host("h")
    assert (host.address, host.port) == ("2.2.2.2", 2222)


def test_host_key_checking_false_means_strict_no(tmp_path: Path) -> None:
    path = write(tmp_path, "h.ini", "h ansible_host_key_checking=false\n")
    assert load_inventory(path).host("h").strict_host_key_checking == "no"


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        ("gpu", ["gpu0", "gpu1", "gpu2", "gpu3"]),
        ("gpu[0:2]", ["gpu0", "gpu1", "gpu2"]),
        ("gpu[-1]", ["gpu3"]),
        ("gpu:!broken", ["gpu0", "gpu1", "gpu2"]),
        ("gpu:&broken", ["gpu3"]),
        ("gpu*", ["gpu0", "gpu1", "gpu2", "gpu3"]),
        ("cpu0?", ["cpu01", "cpu02", "cpu03"]),
        ("gpu1,cpu03", ["gpu1", "cpu03"]),
        ("~gpu[13]", ["gpu1", "gpu3"]),
        ("all:!gpu", ["cpu01", "cpu02", "cpu03"]),
        ("  ", ["gpu0", "gpu1", "gpu2", "gpu3", "cpu01", "cpu02", "cpu03"]),
    ],
)
def test_limit_patterns(ini: str, limit: str, expected: list[str]) -> None:
    assert names(ini, limit) == expected


def test_limit_from_a_retry_file(ini: str, tmp_path: Path) -> None:
    retry = write(tmp_path, "site.retry", "gpu2\ncpu01\n")
    assert names(ini, f"@{retry}") == ["gpu2", "cpu01"]


def test_limit_matching_nothing_is_a_usage_error(ini: str, capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError, match=r"--limit 'tpu\*' matches no host in .*hosts.ini") as exc:
        load_inventory(ini, "tpu*")
    assert "gpu0" in str(exc.value)  # names the hosts there are
    assert exc.value.hint is not None and "gpu[0:2]" in exc.value.hint
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # ansible's "Could not match supplied host pattern" stays quiet


def test_missing_inventory(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.ini")
    with pytest.raises(InputError, match="no such file") as exc:
        load_inventory(missing)
    assert missing in str(exc.value)


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("bad.ini", "[gpu]\ngpu0 ansible_port\n", "Expected key=value host variable assignment"),
        ("bad.yml", "all:\n  hosts:\n    a: {ansible_port: 22\n", "YAML"),
        ("bad.yaml", "all:\n  hosts: [a, b]\n", 'Invalid "hosts" entry'),
    ],
)
def test_malformed_inventory_names_the_file(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], name: str, text: str, reason: str
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(InputError, match="not a valid inventory") as exc:
        load_inventory(path)
    assert str(exc.value).startswith(f"{path}: ")
    assert reason in str(exc.value)
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # no ansible warnings on the terminal


def test_empty_inventory(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.ini", "# nothing yet\n")
    with pytest.raises(InputError, match="defines no hosts"):
        load_inventory(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("h ansible_port=ssh", "ansible_port 'ssh' is not a port number"),
        ("h ansible_port=70000", "ansible_port 70000 is not a port number"),
        ("h ansible_become=maybe", "ansible_become 'maybe' is not a boolean"),
        ("h ansible_host='{{ undefined_var }}'", "cannot template ansible_host"),
        ("h ansible_ssh_common_args='-o \"UserKnownHostsFile=x'", "cannot split ssh arguments"),
    ],
)
def test_bad_host_variables(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, "h.ini", line + "\n")
    with pytest.raises(InputError, match=message) as exc:
        load_inventory(path)
    assert exc.value.source == path and exc.value.field == "h"


@pytest.mark.parametrize(
    ("args", "files", "strict", "jump"),
    [
        ("-o UserKnownHostsFile=/a/kh", ("/a/kh",), None, None),
        ("-oUserKnownHostsFile=/a/kh", ("/a/kh",), None, None),
        ("-o 'UserKnownHostsFile /a/kh'", ("/a/kh",), None, None),
        ("-o userknownhostsfile=/a/kh", ("/a/kh",), None, None),
        ("-o 'UserKnownHostsFile=/a/one /a/two'", ("/a/one", "/a/two"), None, None),
        ('-o UserKnownHostsFile="/a/with space"', ("/a/with", "space"), None, None),
        ("-o UserKnownHostsFile=/a/first -o UserKnownHostsFile=/a/second", ("/a/first",), None, None),
        ("-C -o ControlMaster=auto -o StrictHostKeyChecking=Accept-New", (), "accept-new", None),
        ("-oStrictHostKeyChecking=no -oUserKnownHostsFile=/dev/null", ("/dev/null",), "no", None),
        ("-J ops@bastion:2222", (), None, "ops@bastion:2222"),
        ("-Jbastion -o ProxyJump=other", (), None, "bastion"),
        ("-o ProxyJump=none", (), None, None),
        ("", (), None, None),
    ],
)
def test_parse_ssh_args(args: str, files: tuple[str, ...], strict: str | None, jump: str | None) -> None:
    options = parse_ssh_args(args)
    assert options.known_hosts_files == files
    assert options.strict_host_key_checking == strict
    assert options.proxy_jump == jump


def test_ssh_args_from_common_and_extra_args(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "h.yml",
        """\
        all:
          hosts:
            h:
              ansible_ssh_common_args: -o ProxyJump=jump.example
              ansible_ssh_extra_args: -o UserKnownHostsFile=~/fleet_known_hosts
        """,
    )
    host = load_inventory(path).host("h")
    assert host.proxy_jump == "jump.example"
    assert host.known_hosts_files[0].endswith("/fleet_known_hosts") and "~" not in host.known_hosts_files[0]
    assert host.ssh_args == "-o ProxyJump=jump.example -o UserKnownHostsFile=~/fleet_known_hosts"


def test_inventory_host_is_hashable_and_frozen() -> None:
    host = InventoryHost("gpu0", "10.0.0.1")
    assert {host: 1}[InventoryHost("gpu0", "10.0.0.1")] == 1
    assert host.endpoint == "10.0.0.1:22"
    assert InventoryHost("v6", "fe80::1", 2201).endpoint == "[fe80::1]:2201"
    with pytest.raises(AttributeError):
        host.port = 2  # type: ignore[misc]


def test_ansible_import_time_warnings_stay_quiet(tmp_path: Path) -> None:
    # ansible warns while it is imported when the working directory is world-writable and holds an
    # ansible.cfg; a fresh interpreter shows whether that reaches the terminal.
    cwd = tmp_path / "shared"
    cwd.mkdir()
    cwd.chmod(0o777)
    (cwd / "ansible.cfg").write_text("[defaults]\n")
    path = write(cwd, "hosts.ini", "[gpu]\ngpu0\n")
    script = f"from remediator.inventory import load_inventory\nprint(len(load_inventory({path!r})))\n"
    proc = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "1\n", "")


def test_connection_settings_pass_through_but_never_passwords(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(
        "all:\n  hosts:\n    h:\n      ansible_host: 10.0.0.9\n"
        "      ansible_python_interpreter: /usr/bin/python3.12\n      ansible_become_method: su\n"
        "      ansible_become_user: gpuadmin\n      ansible_become_password: hunter2\n"
        "      ansible_password: hunter3\n"
    )
    host = load_inventory(str(path)).host("h")
    assert dict(host.ansible_vars) == {"ansible_python_interpreter": "/usr/bin/python3.12",
                                       "ansible_become_user": "gpuadmin", "ansible_become_method": "su"}
    assert "hunter" not in repr(host)
