"""The per-field rules every action passes when planned and again in apply, fed the values a hostile host or
a hand-edited plan file would hold."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from factories import toolkit
from test_apply import FakeProbe, FakeRun, host_entry, inv, options, statuses, write_plan

from remediator.action_rules import check_actions, check_target
from remediator.apply import ApplyOptions, apply_plan, read_plan
from remediator.errors import InputError, UsageError
from remediator.facts import HostFacts
from remediator.plan import Policy
from remediator.safety import check_path, check_venv_root

ROOT = "/opt/remediator/venvs"
TEMPLATE = "cuda-{{ lookup('ansible.builtin.pipe','touch PWNED') }}-12-4"


def act(kind: str, **params: Any) -> dict[str, Any]:
    return {"kind": kind, "params": params, "finding": None, "reason": "r", "requires_approval": False}


GOOD = [
    act("quarantine_path", path="/usr/local/cuda-11.2", what="CUDA toolkit"),
    act("quarantine_path", path=f"{ROOT}/tensorflow-2.4.1", what="managed venv"),
    act("remove_package", manager="deb", name="cuda-toolkit-12-4", version="12.4.1-1"),
    act("remove_package", manager="rpm", name="cuda-toolkit-12-4", version="1:12.4.131-1"),
    act("remove_package", manager="deb", name="libcudnn8", version="8.6.0.163-1+cuda11.8"),
    act("set_cuda_link", link="/usr/local/cuda", target="/usr/local/cuda-11.2", previous="/usr/local/cuda-12.4",
        via_alternatives=True),
    act("install_package", manager="system", name="python3.8", extra=["python3.8-venv"], version=None),
    act("install_package", manager="system", name="libcudnn8", extra=[], version="8.1.*+cuda11.2"),
    act("create_venv", path=f"{ROOT}/tensorflow-2.4.1", python="/usr/bin/python3.8"),
    act("pip_install", venv=f"{ROOT}/tensorflow-2.15.0", requirements=["tensorflow[and-cuda]==2.15.0"],
        expected_wheels=["nvidia-cudnn-cu12==8.9.4.25", "nvidia-cublas-cu12>=12.5.3.2,<13.0"]),
    act("pin_loader_path", venv=f"{ROOT}/tensorflow-2.4.1",
        ld_library_path=["/usr/local/cuda-11.2/lib64", "/usr/lib/x86_64-linux-gnu", "/opt/cudnn-8.1/lib64"]),
    act("upgrade_driver", current="450.51.06", min_version="460.27.04", reboot=True),
    act("reboot"),
]


def test_what_the_planner_writes_passes() -> None:
    assert check_actions(GOOD, ROOT) == []


@pytest.mark.parametrize(("action", "field"), [
    (act("remove_package", manager="deb", name=TEMPLATE, version="1.0"), "params.name"),
    (act("remove_package", manager="deb", name="cuda-12-4", version="1.0{{ 7*7 }}"), "params.version"),
    (act("remove_package", manager="deb", name="-oAPT::Update::Pre-Invoke::=touch", version=None), "params.name"),
    (act("remove_package", manager="deb", name="cuda toolkit", version=None), "params.name"),
    (act("remove_package", manager="pacman", name="cuda", version=None), "params.manager"),
    (act("install_package", manager="system", name="python3.8", extra=["$(id)"], version=None), "params.extra[0]"),
    (act("install_package", manager="system", name="libcudnn8", extra=[], version="8.1;id"), "params.version"),
    (act("quarantine_path", path="/usr/bin/sudo", what="x"), "params.path"),
    (act("quarantine_path", path="/usr/local/cuda-11.2/../../../etc", what="x"), "params.path"),
    (act("quarantine_path", path="/usr/local/cuda-11.2", what="{{ 7*7 }}"), "params.what"),
    (act("set_cuda_link", link="/etc/passwd", target="/usr/local/cuda-11.2", via_alternatives=False),
     "params.link"),
    (act("set_cuda_link", link="/usr/local/cuda", target="/tmp/evil", via_alternatives=False), "params.target"),
    (act("set_cuda_link", link="/usr/local/cuda", target="/usr/local/cuda-11.2", via_alternatives="yes"),
     "params.via_alternatives"),
    (act("create_venv", path="/usr/bin", python="/usr/bin/python3"), "params.path"),
    (act("create_venv", path=f"{ROOT}/tf-{{{{x}}}}", python="/usr/bin/python3"), "params.path"),
    (act("create_venv", path=f"{ROOT}/a/b", python="/usr/bin/python3"), "params.path"),
    (act("create_venv", path=f"{ROOT}/tf", python="/tmp/python3; id"), "params.python"),
    (act("create_venv", path=f"{ROOT}/tf", python="/home/u/bin/sh"), "params.python"),
    (act("create_venv", path=f"{ROOT}/tf", python="/usr/bin/../bin/python3"), "params.python"),
    (act("pip_install", venv=f"{ROOT}/tf", requirements=["--index-url=http://evil/ tensorflow==2.4.1"],
         expected_wheels=[]), "params.requirements[0]"),
    (act("pip_install", venv=f"{ROOT}/tf", requirements=["tensorflow>=2.4"], expected_wheels=[]),
     "params.requirements[0]"),
    (act("pip_install", venv=f"{ROOT}/tf", requirements=["tf @ https://evil/x.whl"], expected_wheels=[]),
     "params.requirements[0]"),
    (act("pin_loader_path", venv=f"{ROOT}/tf", ld_library_path=["/usr/local/cuda-11.2/lib64:/tmp"]),
     "params.ld_library_path[0]"),
    (act("pin_loader_path", venv=f"{ROOT}/tf", ld_library_path=["/home/user/libs"]), "params.ld_library_path[0]"),
    (act("pin_loader_path", venv=f"{ROOT}/tf", ld_library_path=["/opt/x/$(id)/lib"]),
     "params.ld_library_path[0]"),
    (act("upgrade_driver", current="450.51.06", min_version="460.27.04`id`", reboot=True), "params.min_version"),
    (act("reboot", now=True), "params.now"),
    ({"kind": "run_shell", "params": {"cmd": "id"}}, "kind"),
    ({**act("reboot"), "finding": "{{ x }}"}, "finding"),
    ({**act("reboot"), "reason": "a\x1b[2Jb"}, "reason"),
    ({**act("reboot"), "requires_approval": "no"}, "requires_approval"),
])
def test_hostile_values_are_refused_with_the_field_named(action: dict[str, Any], field: str) -> None:
    (violation,) = check_actions([action], ROOT)
    assert violation.field == field, violation
    assert violation.why and field in str(violation)


def test_a_bad_venv_root_refuses_every_venv_action() -> None:
    venv = act("create_venv", path="/usr/bin/sudo", python="/usr/bin/python3")
    assert [v.field for v in check_actions([venv], "/usr/bin")] == ["venv root"]


@pytest.mark.parametrize(("root", "ok"), [
    ("/opt/remediator/venvs", True), ("/srv/envs", True), ("/usr/local/remediator", True), ("/data/venvs", True),
    ("/var/lib/remediator/venvs", True),
    ("/usr/bin", False), ("/etc/", False), ("/etc", False), ("/", False), ("/opt", False), ("/usr/local/bin", False),
    ("/usr/local/cuda-11.2", False), ("/opt/cuda/envs", False), ("/usr/lib/python3", False), ("/tmp/venvs", False),
    ("/opt/../usr/bin", False), ("/opt/./x", False), ("opt/venvs", False), ("/opt/ven vs", False),
    ("/opt/{{x}}", False), ("//opt/venvs", False), ("/home/alice", False), (None, False),
])
def test_venv_roots(root: object, ok: bool) -> None:
    assert (check_venv_root(root) is None) == ok, check_venv_root(root)


def test_children_of_a_system_dir_are_never_managed_venvs() -> None:
    assert not check_path("/usr/bin/sudo", ("/usr/bin",)).allowed
    assert not check_path("/etc/passwd", ("/etc/",)).allowed
    assert check_path(f"{ROOT}/tensorflow-2.4.1", (ROOT,)).allowed


@pytest.mark.parametrize("target", [
    {"framework": "tensorflow", "version": "{{ 6*7 }}"}, {"framework": "caffe", "version": "1.0"},
    {"framework": "pytorch", "version": "2.4.0", "cuda": "12.1\x1b]0;x\x07"}, ["tensorflow"],
])
def test_bad_targets(target: object) -> None:
    assert check_target(target) is not None


def test_good_target() -> None:
    assert check_target({"framework": "tensorflow", "version": "2.4.1", "cuda": "11.0", "cudnn": "8.0",
                         "python": ">=3.6,<3.9", "min_driver": "450.36.06", "bundles_cuda": False}) is None


# --- in plan and in apply ----------------------------------------------------------------------------


@pytest.mark.parametrize(("package", "field"), [
    (f"{TEMPLATE}=10.1.243-1", "params.name"),
    ("cuda-toolkit-10-1=10.1{{ 7*7 }}", "params.version"),
])
def test_plan_blocks_a_host_whose_package_record_is_hostile(package: str, field: str) -> None:
    """A dpkg record as a hostile host reports it: the plan refuses it, names the field, plans nothing with it."""
    from test_plan import SYSTEM_PY38, plan_for, two_toolkits

    def facts(pkg: str) -> HostFacts:
        deb = dataclasses.replace(toolkit("10.1.243", default=True, method="deb"), packages=(pkg,))
        return two_toolkits(toolkits=(deb, toolkit("11.0.221")), envs=(SYSTEM_PY38,))

    good = plan_for(facts("cuda-toolkit-10-1=10.1.243-1"), "tensorflow==2.4.1")
    bad = plan_for(facts(package), "tensorflow==2.4.1")
    assert good.status == "changes" and any(a.kind == "remove_package" for a in good.actions)
    assert bad.status == "blocked" and "does not fit its rule" in (bad.error or "")
    refused = [f for f in bad.findings if f.code == "VALUE_REFUSED"]
    assert [dict(f.evidence)["field"] for f in refused] == [field]
    assert not any(a.kind == "remove_package" for a in bad.actions)
    assert "{{" not in json.dumps([a.to_dict() for a in bad.actions])


def test_apply_refuses_a_plan_whose_venv_root_is_a_system_dir(tmp_path: Path) -> None:
    path = write_plan(tmp_path / "p.json", [host_entry("h")])
    doc = json.loads(path.read_text())
    doc["policy"]["venv_root"] = "/usr/bin"
    doc["hosts"][0]["actions"] = [act("quarantine_path", path="/usr/bin/sudo", what="managed venv")]
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"policy.venv_root: venv root '/usr/bin': inside a system directory"):
        read_plan(str(path))


def test_apply_uses_its_own_venv_root_not_the_plans(tmp_path: Path) -> None:
    path = write_plan(tmp_path / "p.json", [host_entry("h")])
    doc = json.loads(path.read_text())
    doc["policy"]["venv_root"] = "/srv/envs"
    path.write_text(json.dumps(doc))
    plan = read_plan(str(path))
    with pytest.raises(InputError, match="made for the venv root /srv/envs"):
        apply_plan(plan, inv("h"), options(tmp_path), probe=FakeProbe(), run=FakeRun())
    with pytest.raises(UsageError, match="inside a system directory"):
        ApplyOptions(playbooks_dir=tmp_path, state_dir=tmp_path, venv_root="/usr/bin")


def test_apply_checks_every_field_again_before_anything_runs(tmp_path: Path) -> None:
    evil = [act("remove_package", manager="deb", name=TEMPLATE, version="1")]
    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry("h", actions=evil), host_entry("g")])))
    run = FakeRun()
    result = apply_plan(plan, inv("h", "g"), options(tmp_path), probe=FakeProbe(), run=run)
    assert statuses(result) == {"h": "failed", "g": "applied"}
    assert "params.name" in (result.hosts[0].error or "") and run.batches() == [["g"]]
    # The playbooks learn the venv root from apply's option, and each batch has its timeouts.
    call = run.calls[0]
    assert call["extra"]["remediator_managed_roots"] == [ROOT]
    assert call["timeout"] and int(call["envvars"]["ANSIBLE_TASK_TIMEOUT"]) > 0


def test_a_hand_edited_target_is_refused_when_read(tmp_path: Path) -> None:
    path = write_plan(tmp_path / "p.json", [host_entry("h")])
    doc = json.loads(path.read_text())
    doc["hosts"][0]["target"]["version"] = "{{ lookup('pipe', 'id') }}"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"hosts\[0\]: target.version"):
        read_plan(str(path))


def test_policy_default_root_is_valid() -> None:
    assert check_venv_root(Policy().venv_root) is None


@pytest.mark.parametrize(("index", "ok"), [
    ("https://download.pytorch.org/whl/cu111/torch_stable.html", True),
    ("https://download.pytorch.org/whl/cu121", True),
    ("http://download.pytorch.org/whl/cu121", False), ("https://evil.example/whl/cu121", False),
    ("https://download.pytorch.org/whl/cu121 --trusted-host evil", False), (None, True),
])
def test_a_plan_may_name_only_a_pytorch_index(index: str | None, ok: bool) -> None:
    params: dict[str, Any] = {"venv": f"{ROOT}/pytorch-1.10.0", "requirements": ["torch==1.10.0+cu111"],
                              "expected_wheels": []}
    if index is not None:
        params["package_index"] = index
    assert (check_actions([act("pip_install", **params)], ROOT) == []) == ok
