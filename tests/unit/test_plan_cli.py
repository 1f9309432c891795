"""`remediate plan` output for people: host values are shown escaped, never interpreted."""

from __future__ import annotations

from remediator.cli.plan import render_text
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
