"""The CLI of the pure core: matrix and diagnose, their output for people and scripts, exit codes, and
errors as one line with no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remediator.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "inventories" / "examples"


def test_matrix_show_json_has_the_documented_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "show", "tensorflow==2.4.1", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"framework", "version", "cuda", "cudnn", "python", "min_driver", "sources"} <= set(data)
    assert (data["framework"], data["version"], data["cuda"], data["cudnn"]) == ("tensorflow", "2.4.1", "11.0", "8.0")
    assert all(s.startswith("https://") for s in data["sources"])


def test_matrix_show_text_for_pytorch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "show", "pytorch==2.11.0"]) == 0
    out = capsys.readouterr().out
    assert "pytorch 2.11.0" in out and "pip wheels in the venv" in out and "variant" in out


def test_unknown_version_lists_the_nearest_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "show", "tensorflow==2.4.9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown tensorflow version '2.4.9'; nearest known: 2.4.4")
    assert "Traceback" not in err


def test_bad_target_syntax_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "show", "tensorflow-2.4.1"]) == 1
    assert "expected FRAMEWORK==VERSION" in capsys.readouterr().err


@pytest.mark.parametrize(("example", "target", "status", "code"), [
    ("healthy-tf24.json", "tensorflow==2.4.1", 0, None),
    ("tf24-two-toolkits.json", "tensorflow==2.4.1", 2, "CUDA_WRONG_DEFAULT"),
    ("torch-cudnn-shadowed.json", "pytorch==1.12.0", 2, "LIB_SHADOWED"),
    ("reboot-pending.json", "tensorflow==2.4.1", 2, "DRIVER_LIBRARY_MISMATCH"),
])
def test_diagnose_examples(capsys: pytest.CaptureFixture[str], example: str, target: str, status: int,
                           code: str | None) -> None:
    assert main(["diagnose", "--facts", str(EXAMPLES / example), "--target", target, "--format", "json"]) == status
    (host,) = json.loads(capsys.readouterr().out)["hosts"]
    assert host["healthy"] is (status == 0)
    assert (code is None) == (not host["findings"])
    if code:
        assert code in {f["code"] for f in host["findings"]}


def test_diagnose_malformed_facts_names_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads((EXAMPLES / "healthy-tf24.json").read_text())
    data["toolkits"][0]["is_default"] = "yes"
    bad = tmp_path / "facts.json"
    bad.write_text(json.dumps(data))
    assert main(["diagnose", "--facts", str(bad), "--target", "tensorflow==2.4.1"]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: toolkits[0].is_default: expected true or false" in err
    assert "Traceback" not in err


def test_unexpected_errors_print_one_line_and_where_the_traceback_went(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import remediator.cli.diagnose as cmd

    def boom(*_: object) -> None:
        raise ZeroDivisionError("a bug of ours")

    monkeypatch.setattr(cmd, "run_diagnosis", boom)
    assert main(["diagnose", "--facts", str(EXAMPLES / "healthy-tf24.json"), "--target", "tensorflow==2.4.1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("internal error: ZeroDivisionError: a bug of ours (traceback written to ")
    path = err.rsplit("written to ", 1)[1].rstrip(")")
    assert "ZeroDivisionError" in Path(path).read_text()
    Path(path).unlink()


def test_top_level_help_teaches_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """`remediate --help` walks the whole flow: each command appears with an example line, not only in
    click's one-line list."""
    from remediator.cli import cli

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    flow = out.split("Exit codes")[0]
    commands = set(cli.commands)
    assert {"probe", "plan", "apply", "verify", "rollback", "drift", "diagnose", "matrix", "history", "report",
            "schedule", "lab"} <= commands
    for name in commands:
        assert f"remediate {name} " in flow or f"/ {name} " in flow, name
