"""`remediate drift` on the lab: record a baseline, change one host behind remediator's back over SSH
(a new toolkit dir, a swapped cuDNN header, an edited profile.d export), and drift reports exactly
that, with exit 2; the untouched host reports no drift. Then history, metrics and the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from remediator.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CHANGED = "healthy-tf-system-cuda"
UNTOUCHED = "healthy-pytorch"
CUDNN_H = "/usr/local/cuda-11.8/include/cudnn_version.h"
PROFILE = "/etc/profile.d/cuda.sh"
# Run as the lab user with sudo; the originals are kept aside and put back whatever happens.
CHANGE = f"""set -e
sudo -n cp -a {CUDNN_H} /tmp/cudnn_version.h.orig
sudo -n cp -a {PROFILE} /tmp/cuda.sh.orig
sudo -n mkdir -p /usr/local/cuda-12.1/bin
printf '{{"cuda": {{"name": "CUDA SDK", "version": "12.1.1"}}}}\\n' \\
  | sudo -n tee /usr/local/cuda-12.1/version.json >/dev/null
sudo -n sed -i 's/CUDNN_MINOR 6/CUDNN_MINOR 9/; s/CUDNN_PATCHLEVEL 0/CUDNN_PATCHLEVEL 7/' {CUDNN_H}
sudo -n sed -i 's#LD_LIBRARY_PATH=/usr/local/cuda-11.8/lib64#LD_LIBRARY_PATH=/usr/local/cuda/lib64#' {PROFILE}
"""
UNDO = f"""sudo -n rm -rf /usr/local/cuda-12.1
[ -e /tmp/cudnn_version.h.orig ] && sudo -n cp -a /tmp/cudnn_version.h.orig {CUDNN_H}
[ -e /tmp/cuda.sh.orig ] && sudo -n cp -a /tmp/cuda.sh.orig {PROFILE}
sudo -n rm -f /tmp/cudnn_version.h.orig /tmp/cuda.sh.orig
"""


def drift(capsys: pytest.CaptureFixture[str], lab: Any, db: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    status = main(["drift", "-i", str(lab.inventory), "--limit", f"{CHANGED}:{UNTOUCHED}", "--state-db", str(db),
                   "--format", "json", *extra])
    return status, json.loads(capsys.readouterr().out)


def test_drift_reports_exactly_the_change_made_behind_its_back(lab: Any, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "state.db"
    prom = tmp_path / "textfile" / "remediator.prom"
    status, doc = drift(capsys, lab, db, "--baseline")
    assert status == 0, doc
    assert all(h["baseline"]["recorded_now"] and h["changes"] == [] for h in doc["hosts"])

    client = lab.connect(CHANGED)
    try:
        rc, _out, err = lab.run(client, CHANGE)
        assert rc == 0, err
        status, doc = drift(capsys, lab, db, "--prometheus-textfile", str(prom))
    finally:
        lab.run(client, UNDO)
        client.close()

    assert status == 2
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert hosts[UNTOUCHED]["status"] == "ok" and hosts[UNTOUCHED]["changes"] == []
    changes = [(c["kind"], c["layer"], c["path"], c["field"], c["before"], c["after"])
               for c in hosts[CHANGED]["changes"]]
    assert changes == [
        ("appeared", "cuda", "/usr/local/cuda-12.1", "", None, "12.1.1"),
        ("changed", "cudnn", "/usr/local/cuda-11.8/targets/x86_64-linux/lib", "version", "8.6.0", "8.9.7"),
        ("changed", "loader", f"LD_LIBRARY_PATH from {PROFILE}", "path", "/usr/local/cuda-11.8/lib64",
         "/usr/local/cuda/lib64"),
    ]
    assert hosts[CHANGED]["status"] == "drift" and hosts[CHANGED]["baseline"]["source"] == "baseline"

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(prom.read_text()) for s in f.samples}
    assert samples[("remediator_host_drifted", (("host", CHANGED),))] == 1
    assert samples[("remediator_host_drifted", (("host", UNTOUCHED),))] == 0
    assert samples[("remediator_host_drift_changes", (("host", CHANGED),))] == 3

    # Put back, the host matches its known-good state again.
    status, doc = drift(capsys, lab, db)
    assert status == 0 and all(h["changes"] == [] for h in doc["hosts"])

    assert main(["history", CHANGED, "--state-db", str(db), "--format", "json"]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert [e["kind"] for e in events].count("drift") == 3
    assert [e["status"] for e in events if e["kind"] == "drift"] == ["ok", "drift", "ok"]

    page = tmp_path / "report.html"
    assert main(["report", "--html", str(page), "--state-db", str(db)]) == 0
    text = page.read_text()
    assert f'data-host="{CHANGED}"' in text and f'data-host="{UNTOUCHED}"' in text
