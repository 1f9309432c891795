"""`remediate plan` output for people: host values are shown escaped, never interpreted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import cudnn_deb, host, tf, toolkit, venv

from remediator.cli import main
from remediator.cli.plan import render_text
from remediator.facts import PythonEnv
from remediator.plan import Action, HostPlan, Plan


def test_host_values_with_newlines_and_escapes_stay_on_their_line() -> None:
    evil = "/opt/venvs/x\nrm -rf /\x1b[2J"
    host = HostPlan(
        host="gpu\n01", status="changes",
        target={"framework": "pytorch", "version": "2.11.0", "cuda": "13.0", "cudnn": "9.19.0.56",
                "python": "3.10-3.14", "min_driver": "580.65.06", "bundles_cuda": True},
        actions=(Action("create_venv", {"path": "/opt/remediator/venvs/pytorch-2.11.0", "python": evil}, None,
                        f"because of {evil}"),),
        kept=(f"{evil}: existing env left as it is",), manual=(f"remove {evil} by hand",),
    )
    text = render_text(Plan(hosts=(host,), matrix_version="x"))
    assert "\x1b" not in text
    assert "rm -rf /" in text  # shown, but on the line that names it
    assert not any(line.startswith("rm -rf") for line in text.splitlines())
    assert "gpu\\n01 (pytorch==2.11.0): 1 to change" in text
    assert "= kept /opt/venvs/x\\nrm -rf /\\x1b[2J: existing env left as it is" in text


def test_target_less_hosts_name_their_inferred_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Today's plan of saved facts without --target: each host judged on what it has, and the text says so.
    system = PythonEnv(path="/usr", kind="system", python="/usr/bin/python3", python_version="3.10.12")
    tf_host = host("gpu01", toolkits=(toolkit("11.8.89", default=True),),
                   cudnn=(cudnn_deb("8.6.0", "libcudnn8=8.6.0.163-1+cuda11.8"),),
                   envs=(system, venv("/opt/tf", "3.10.12", tf("2.12.0", "11.8", "8"))))
    bare = host("gpu02", envs=(system,))
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps([tf_host.to_dict(), bare.to_dict()]))
    assert main(["plan", "--facts", str(facts)]) == 0
    out = capsys.readouterr().out
    assert "gpu01 (tensorflow==2.12.0 inferred from /opt/tf): compliant" in out
    assert "gpu02 (no framework to judge: driver and GPUs only): compliant" in out
    assert main(["plan", "--facts", str(facts), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(h["target_source"], [t["envs"] for t in h["inferred_targets"]]) for h in doc["hosts"]] == [
        ("inferred", [["/opt/tf"]]), ("inferred", [])]
    assert main(["plan", "--facts", str(facts), "--target", "tensorflow==2.12.0", "--format", "json"]) == 2
    assert {h["target_source"] for h in json.loads(capsys.readouterr().out)["hosts"]} == {"--target"}
