"""`remediate probe` against the lab: real OpenSSH hosts on loopback, each with the broken GPU stack its
scenario describes. The facts the probe finds must be the scenario's, host by host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from remediator.cli import main
from remediator.facts import HostFacts, load_facts_file

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def series(version: str, depth: int = 2) -> str:
    return ".".join(version.split(".")[:depth])


@pytest.fixture(scope="module")
def probed(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("probe") / "facts.json"
    status = main(["probe", "-i", str(lab.inventory), "--format", "json", "--out", str(out), "--forks", "8"])
    document = json.loads(out.read_text())
    return {"status": status, "document": document, "out": out}


def facts(probed: dict[str, Any], name: str) -> HostFacts:
    entry = next(h for h in probed["document"]["hosts"] if h["host"] == name)
    assert entry["status"] == "ok", entry
    return HostFacts.from_dict(entry["facts"])


def test_every_lab_host_is_probed(probed: dict[str, Any], lab: Any) -> None:
    hosts = probed["document"]["hosts"]
    failures = [(h["host"], h["status"], h["error"]) for h in hosts if h["status"] != "ok"]
    assert failures == []
    assert probed["status"] == 0
    assert {h["host"] for h in hosts} == set(lab.hosts)
    assert len(load_facts_file(str(probed["out"]))) == len(lab.hosts)


def test_driver_facts_are_the_scenarios(probed: dict[str, Any], lab: Any) -> None:
    for name, host in lab.hosts.items():
        s, d = host.scenario, facts(probed, name).driver
        if s.driver is None:
            assert (d.source, d.version, d.kernel_module_version, d.userspace_version) == ("none", None, None, None), (
                name
            )
            continue
        assert d.userspace_version == s.driver.version, name
        assert d.kernel_module_version == s.driver.kernel_module, name
        if s.driver.kernel_module is None:
            assert d.error and "couldn't communicate with the NVIDIA driver" in d.error, name
        elif s.driver.kernel_module != s.driver.version:
            assert d.error and "Driver/library version mismatch" in d.error, name
        else:
            assert (d.version, d.error) == (s.driver.version, None), name
            gpus = facts(probed, name).gpus
            assert len(gpus) == sum(g.count for g in s.driver.gpus), name
            assert gpus[0].name == s.driver.gpus[0].model, name


def test_toolkits_and_the_default_are_the_scenarios(probed: dict[str, Any], lab: Any) -> None:
    for name, host in lab.hosts.items():
        s, f = host.scenario, facts(probed, name)
        system = [t for t in f.toolkits if t.env is None]
        assert sorted(series(t.version) for t in system) == sorted(series(t.version) for t in s.cuda), name
        default = f.default_toolkit()
        if s.default_cuda is None:
            assert default is None, name
        else:
            assert default is not None and default.path == f"/usr/local/cuda-{s.default_cuda}", name
            assert default.via_alternatives == (s.default_cuda_via == "alternatives"), name
        for t in s.cuda:
            found = next(x for x in system if series(x.version) == series(t.version))
            # A real runfile install leaves bin/cuda-uninstaller, which the probe takes as the sign of
            # one; the lab's runfile toolkits have none, so the probe cannot tell and says "unknown".
            allowed = {"runfile", "unknown"} if t.install == "runfile" else {t.install}
            assert found.install_method in allowed, (name, found)


def test_every_cudnn_copy_is_found(probed: dict[str, Any], lab: Any) -> None:
    for name, host in lab.hosts.items():
        s, f = host.scenario, facts(probed, name)
        found = {(series(c.version, 3), c.install_method) for c in f.cudnn}
        for c in s.cudnn:
            assert (series(c.version, 3), c.install) in found, (name, c, found)
            if c.into:
                copy = next(x for x in f.cudnn if series(x.version, 3) == series(c.version, 3))
                assert copy.in_toolkit == c.into, (name, copy)


def test_frameworks_are_read_without_importing_them(probed: dict[str, Any], lab: Any) -> None:
    for name, host in lab.hosts.items():
        s, f = host.scenario, facts(probed, name)
        for env in s.envs:
            frameworks = [fw for e in f.envs for fw in e.frameworks if e.path == env.path or env.kind == "system"]
            tf_packages = [p for p in env.packages if p.name.startswith("tensorflow")]
            for p in env.packages:
                if p.name not in ("tensorflow", "tensorflow-gpu", "tensorflow-cpu", "torch"):
                    continue
                fw = next((x for x in frameworks if x.name == p.name), None)
                assert fw is not None, (name, env.path, p.name, frameworks)
                assert fw.version.split("+")[0] == p.version.split("+")[0], (name, fw)
                if len(tf_packages) > 1:
                    # Two TensorFlow dists share one tensorflow/ directory; the lab's RECORDs carry no
                    # hashes, so the probe reads the copy on disk for both and says so in a note.
                    assert any("share this file" in n.message for n in f.notes), name
                elif p.name.startswith("tensorflow"):
                    assert (fw.cuda_build, fw.cudnn_build) == (p.cuda, p.cudnn), (name, fw)


def test_probe_output_feeds_diagnose(probed: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    status = main(["diagnose", "--facts", str(Path(probed["out"])), "--format", "json"])
    out = capsys.readouterr().out
    assert status in (0, 2), out
    assert len(json.loads(out)["hosts"]) == len(probed["document"]["hosts"])
