"""The `remediate` command line: parses arguments, calls the library, renders results.

`main(argv) -> int` never exits; only `__main__` does. User errors print one line (and a hint),
unexpected errors print one line and where the traceback was written.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Sequence

import click

from remediator import __version__
from remediator.errors import ExitStatus, RemediatorError, UsageError


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="remediate")
def cli() -> None:
    """Find and fix NVIDIA driver / CUDA / cuDNN / framework mismatches across a GPU fleet.

    \b
    The flow, one command per step:
      remediate probe    -i INV --out facts.json     read each host's GPU stack over SSH (one round trip)
      remediate plan     -i INV --out plan.json      what each host needs for its target; changes nothing
      remediate apply    plan.json -i INV            do it through ansible-runner, canary first, then verify
      remediate verify   -i INV                      the GPU check, rung by rung, a matmul on every GPU
      remediate rollback RUN_ID -i INV               undo a run, byte for byte, from its quarantine
      remediate drift    -i INV                      what changed since the last known-good state

    \b
    And around it:
      remediate diagnose --facts F --target T        findings for saved facts
      remediate matrix show tensorflow==2.4.1        what a framework version needs, with sources
      remediate history HOST / report --html F       a host's timeline / one page of the fleet
      remediate schedule install --every 6h -i INV   drift checks on a timer
      remediate lab up                               a local fleet of broken hosts to try it on

    \b
    Exit codes (the same for every command):
      0  healthy / nothing to do
      2  findings of severity error, changes planned, or drift found
      1  bad input or an error of the tool
    """


def _register() -> None:
    # Imported here so that `--help` of one command does not import every other command's deps.
    from remediator.cli import commands

    commands.register(cli)


def _write_traceback() -> str:
    # mkstemp: a fresh file of mode 0600 that no one else can have planted; tracebacks show host values.
    fd, path = tempfile.mkstemp(prefix="remediate-crash-", suffix=".txt")
    with os.fdopen(fd, "w") as handle:
        traceback.print_exc(file=handle)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status."""
    _register()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=args, prog_name="remediate", standalone_mode=False)
    except click.exceptions.Exit as exc:  # --help, --version
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return int(ExitStatus.ERROR)
    except click.ClickException as exc:
        exc.show()
        return int(ExitStatus.ERROR)
    except RemediatorError as exc:  # messages and hints can carry a host's words (stderr, names)
        from remediator.cli.render import printable

        click.echo(f"error: {printable(exc.message)}", err=True)
        if exc.hint:
            click.echo(f"hint: {printable(exc.hint)}", err=True)
        return int(exc.exit_status)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # an error of ours: one line, the traceback to a file
        from remediator.cli.render import printable

        path = _write_traceback()
        click.echo(f"internal error: {type(exc).__name__}: {printable(exc)} (traceback written to {path})",
                   err=True)
        return int(ExitStatus.ERROR)
    return int(result) if isinstance(result, int) else int(ExitStatus.OK)


__all__ = ["UsageError", "cli", "main"]
