"""The report with a hostile value in every field it shows: host name, target, error, versions, GPU name,
framework, finding code/message/evidence/fix, change, verify result, plan action. Nothing may become
markup or script, end the data block, add an attribute, or reach the page raw (terminal escapes, bidi
overrides); the page's one script still runs and draws the host's detail as text."""

from __future__ import annotations

import html
import json
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlencode

import pytest

from remediator.cli import main
from remediator.cli.render import printable
from remediator.diagnosis import Finding
from remediator.drift import Change, HostDrift
from remediator.plan import Action, HostPlan, Plan, fingerprint
from remediator.report.page import script_hash
from remediator.report.script import SCRIPT
from remediator.state import Store
from tests.unit.factories import cudnn_copy_in_toolkit, driver, gpus, tf, toolkit, venv
from tests.unit.test_drift import host
from tests.unit.test_report import _Dom, chromium

EVIL = ('<script>alert(1)</script>"onmouseover="alert(2)" \'><img src=x onerror=alert(3)></script><!--'
        " \u202egpj.exe \x1b]0;pwn\x07\x1b[2J \u2028&amp;")
RAW = ("\u202e", "\x1b", "\x07", "\u2028")  # must never reach the page as themselves


def hostile_store(db: Path) -> str:
    name = "gpu" + EVIL
    facts = host(name, driver=driver("535.161.08" + EVIL, cuda_driver_version="12.2" + EVIL),
                 gpus=gpus(1, name="A100" + EVIL), toolkits=(toolkit("11.0" + EVIL, default=True),),
                 cudnn=(cudnn_copy_in_toolkit("8.0" + EVIL, "/usr/local/cuda-11.0"),),
                 envs=(venv("/opt/tf", "3.8.10", tf("2.4.1" + EVIL, "11.0", "8", name="tensorflow" + EVIL)),))
    finding = Finding("CUDNN_MISMATCH" + EVIL, "error", "message" + EVIL, (("key" + EVIL, "value" + EVIL),),
                      fix="fix" + EVIL)
    change = Change(kind="changed", layer="driver", path="driver" + EVIL, field="version", before="1" + EVIL,
                    after="2" + EVIL, summary="summary" + EVIL)
    with Store.open(db) as store:
        run = store.start_run("drift")
        store.record_probe(run, name, facts, 1.0)
        store.record_drift(run, HostDrift(host=name, status="drift", target="tensorflow==2.4.1" + EVIL,
                                          findings=(finding,), changes=(change,)))
        action = Action("quarantine_path", {"path": "/usr/local/cuda-11.0/lib64/" + EVIL, "what": EVIL},
                        finding.code, "reason" + EVIL)
        store.record_plan(Plan(hosts=(HostPlan(host=name, status="changes", findings=(finding,), actions=(action,),
                                               fingerprint=fingerprint(facts)),), matrix_version="m"))
        store.record_verify(name, {"passed": False, "error" + EVIL: "cudnn" + EVIL})
        # and one unreachable host whose error is hostile
        other = "gpu2" + EVIL
        store.record_probe(run, other, "refused" + EVIL, 1.0, status="unreachable")
        store.record_drift(run, replace(HostDrift(host=other, status="unreachable"), error="refused" + EVIL,
                                        hint="hint" + EVIL))
    return name


def test_hostile_values_in_the_text_and_json_summaries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "state.db"
    name = hostile_store(db)
    assert main(["report", "--state-db", str(db)]) == 0
    text = capsys.readouterr().out
    assert not any(raw in text for raw in RAW) and printable("CUDNN_MISMATCH" + EVIL) in text
    assert main(["report", "--format", "json", "--state-db", str(db)]) == 0
    out = capsys.readouterr().out
    assert not any(raw in out for raw in RAW)
    doc = json.loads(out)  # scripts get the values as the hosts wrote them
    assert name in [h for g in doc["groups"] for h in g["hosts"]]
    assert "535.161.08" + EVIL in [b["label"] for c in doc["charts"] for b in c["bars"]]


def test_hostile_values_stay_text(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    name = hostile_store(db)
    page = tmp_path / "r.html"
    assert main(["report", "--html", str(page), "--state-db", str(db)]) == 0
    text = page.read_text()

    for raw in RAW:
        assert raw not in text, f"raw {raw!r} reached the page"
    dom = _Dom()
    dom.feed(text)
    assert dom.script_types == ["application/json", None] and dom.script_text[1] == SCRIPT
    assert not dom.handlers and "<img" not in text and "<script>alert" not in text
    assert dom.csp == [f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src {script_hash()}"]
    data = json.loads(dom.script_text[0])
    assert "<" not in dom.script_text[0] and "</script" not in dom.script_text[0].lower()
    shown = printable(EVIL)
    (evil_host,) = (h for h in data if h["host"] == printable(name))
    strings = json.dumps(evil_host)
    # every field of the detail kept the value, printable: the message, evidence, fix, change, verify, target
    for field in ("message", "key", "value", "fix", "summary", "cudnn", "tensorflow==2.4.1"):
        assert json.dumps(field + shown)[1:-1] in strings, field
    # in the page's own markup: the host, the versions, GPU, framework, the codes and the plan's action (a
    # table cell shows the first 60 characters: the markup-like part of EVIL, escaped, is within them)
    for value in ("gpu", "535.161.08", "A100", "tensorflow", "CUDNN_MISMATCH", "refused"):
        assert html.escape(printable(value + EVIL)[:45]) in text, value
    assert html.escape(f"quarantine /usr/local/cuda-11.0/lib64/{shown} ({shown})") in text  # the group's fix

    # In Chromium: the script runs, opens the hostile host from the URL, and draws its detail as text only.
    dom = _Dom()
    dom.feed(chromium("--dump-dom", page.as_uri() + "#" + urlencode({"open": printable(name)})).stdout.decode())
    assert dom.table.get("data-ready") == "yes"
    assert dom.scripts == 2 and not dom.handlers
    (detail,) = dom.filled
    assert "message" + shown in detail and "value" + shown in detail and "summary" + shown in detail
    # and the text filter matches a hostile value without harm
    dom = _Dom()
    dom.feed(chromium("--dump-dom", page.as_uri() + "#" + urlencode({"filter": "refused" + shown})).stdout.decode())
    assert dom.shown() == [printable("gpu2" + EVIL)] and dom.scripts == 2
