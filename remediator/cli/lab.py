"""`remediate lab up|down|status`: a local fleet of real SSH hosts with broken GPU stacks to try the tool on."""

from __future__ import annotations

import json
from pathlib import Path

import click

from remediator.cli.render import printable
from remediator.errors import ExitStatus, UsageError


def _state_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--state",
        "state",
        required=True,
        type=click.Path(file_okay=False, path_type=Path),
        envvar="REMEDIATE_LAB_STATE",
        help="Directory for the lab's keys, inventory, known_hosts and host files (env REMEDIATE_LAB_STATE).",
    )(f)


@click.group("lab")
def lab() -> None:
    """A fleet of real OpenSSH hosts on 127.0.0.1, one per scenario, each with its own GPU stack on disk.

    \b
    Needs root (it mounts overlays inside private mount namespaces). The outer machine is not changed:
    every host's files live in its own namespace and in the state dir.
    """


@lab.command("up")
@click.argument("scenarios", nargs=-1, type=click.Path(exists=True, path_type=Path))
@_state_option
@click.option("--count", type=click.IntRange(min=1), help="Start this many hosts, cycling through the scenarios.")
@click.option("--timeout", type=float, help="Seconds to wait for all hosts to listen (default 30 + 0.25/host).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def up_cmd(scenarios: tuple[Path, ...], state: Path, count: int | None, timeout: float | None, fmt: str) -> int:
    """Start one host per scenario file (default: the scenarios this package ships, remediator/lab/scenarios/)."""
    from remediator.lab import fleet

    sources = list(scenarios)
    if not sources:
        default = fleet.default_scenario_dir()
        if not default.is_dir():
            raise UsageError(
                "no scenario directory given and the package's lab scenarios (remediator/lab/scenarios/) are not there",
                hint="pass scenario files or directories: `remediate lab up DIR --state STATE`",
            )
        sources = [default]
    result = fleet.up(sources, state, count=count, timeout=timeout,
                      progress=lambda m: click.echo(printable(m), err=True))
    if fmt == "json":
        click.echo(json.dumps({"state": str(result.state), "inventory": str(result.inventory),
                               "known_hosts": str(result.known_hosts),
                               "hosts": [h.to_json() for h in result.hosts]}, indent=2))  # fmt: skip
    else:
        width = max((len(printable(h.name)) for h in result.hosts), default=4)
        click.echo(f"{'HOST':<{width}}  PORT   USER    TARGET")
        for h in result.hosts:  # names and targets come from the scenario files
            click.echo(f"{printable(h.name):<{width}}  {h.port:<5}  {printable(h.user):<6}  {printable(h.target)}")
        click.echo(f"inventory: {printable(result.inventory)}")
        click.echo(f"known_hosts: {printable(result.known_hosts)}")
    return int(ExitStatus.OK)


@lab.command("down")
@_state_option
def down_cmd(state: Path) -> int:
    """Stop every process `up` started and remove its files; safe to run twice or after a crash."""
    from remediator.lab import fleet

    result = fleet.down(state)
    if result.stopped or result.removed:
        click.echo(f"stopped {len(result.stopped)} processes; lab in {state.absolute()} is down")
    else:
        click.echo(f"no lab in {state.absolute()}; nothing to do")
    return int(ExitStatus.OK)


@lab.command("reset")
@click.argument("hosts", nargs=-1)
@_state_option
def reset_cmd(hosts: tuple[str, ...], state: Path) -> int:
    """Put hosts (default: all) back as `up` made them: same port and key, their own writes dropped."""
    from remediator.lab import fleet

    lab_ = fleet.reset(state, list(hosts) or None)
    click.echo(f"reset {len(hosts) or len(lab_.hosts)} hosts")
    return int(ExitStatus.OK)


@lab.command("status")
@_state_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status_cmd(state: Path, fmt: str) -> int:
    """List the lab's hosts and whether each answers on its SSH port (exit 1 if any does not)."""
    from remediator.lab import fleet

    rows = fleet.status(state)
    if fmt == "json":
        click.echo(json.dumps([r.__dict__ for r in rows], indent=2))
    else:
        width = max((len(printable(r.name)) for r in rows), default=4)
        click.echo(f"{'HOST':<{width}}  PORT   PID      STATE")
        for r in rows:
            word = "up" if r.answers else ("running, not answering" if r.running else "down")
            click.echo(f"{printable(r.name):<{width}}  {r.port:<5}  {r.pid:<7}  {word}")
    return int(ExitStatus.OK if all(r.answers for r in rows) else ExitStatus.ERROR)
