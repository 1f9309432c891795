"""`remediate history HOST`: the timeline of a host from the state store; and the helpers other commands
use to record into the store without ever failing because of it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from remediator.cli.drift import state_db_option
from remediator.cli.render import echo_json, printable
from remediator.errors import ExitStatus, RemediatorError, UsageError
from remediator.state import ENV_VAR, Store, iso, new_run_id, switched_off

if TYPE_CHECKING:
    from remediator.facts import HostFacts
    from remediator.fleet import HostResult
    from remediator.plan import Plan


@click.command("history")
@click.argument("host")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--limit", "last", type=click.IntRange(min=1), metavar="N", help="only the newest N events.")
@state_db_option
def history(host: str, fmt: str, last: int | None, state_db: str | None) -> int:
    """The timeline of HOST: its probes, plans, applies, verifies, drift checks and known-good marks.

    \b
    Examples:
      remediate history gpu07
      remediate history gpu07 --limit 20 --format json

    Exit 0 when the store has records of HOST, 1 when it has none.
    """
    with Store.open(state_db) as store:
        events = store.history(host, limit=last)
        known = store.known_good(host)
        if not events:
            hosts = store.hosts()
            near = ", ".join(printable(h) for h in hosts[:10]) + (" ..." if len(hosts) > 10 else "")
            raise UsageError(f"the state db {store.path} has no records of host {host!r}",
                             hint=f"hosts it knows: {near}" if hosts else "run `remediate drift` or `probe` first")
    if fmt == "json":
        echo_json({"host": host, "known_good": None if known is None else {
            "source": known.source, "at": iso(known.at), "fingerprint": _fp(known.facts)},
            "events": [e.to_dict() for e in events]})
        return int(ExitStatus.OK)
    for e in events:
        click.echo(f"{iso(e.at)}  {printable(e.kind):<10} {printable(e.summary)}")
        if e.kind == "drift":
            for c in e.data.get("changes", []):
                click.echo(f"{'':<37}{printable(c.get('summary', ''))}")
    if known is not None:
        click.echo(f"\nknown-good: {printable(known.source)} of {iso(known.at)}")
    return int(ExitStatus.OK)


def _fp(facts: HostFacts) -> str:
    from remediator.plan import fingerprint

    return fingerprint(facts)


# --- recording from other commands --------------------------------------------------------------------


def _store_path() -> str | None:
    """None when recording is switched off with REMEDIATE_STATE_DB=off."""
    return None if switched_off() else os.environ.get(ENV_VAR, "")


def _warn(what: str, exc: Exception) -> None:
    message = exc.message if isinstance(exc, RemediatorError) else f"{type(exc).__name__}: {exc}"
    click.echo(f"warning: not recorded in the state db ({what}): {printable(message)}", err=True)


def record_probe_safely(results: Sequence[HostResult[HostFacts]], command: str = "probe") -> None:
    """Record a fleet's probe results in the default store; warn on stderr and go on if that fails."""
    path = _store_path()
    if path is None:
        return
    try:
        with Store.open(path or None) as store:
            run_id = store.start_run(command)
            with store.batch():
                for r in results:
                    result = r.value if r.value is not None else (r.error or r.status)
                    store.record_probe(run_id, r.host, result, r.duration_s, status=r.status)
    except Exception as exc:  # recording is a side effect: it must never fail the command
        _warn("probe", exc)


def record_plan_safely(plan: Plan) -> None:
    """Record a plan in the default store; warn on stderr and go on if that fails."""
    path = _store_path()
    if path is None:
        return
    try:
        with Store.open(path or None) as store:
            run_id = store.start_run("plan", run_id=new_run_id())
            store.record_plan(plan, run_id=run_id)
    except Exception as exc:  # recording is a side effect: it must never fail the command
        _warn("plan", exc)



def record_verify_safely(hosts: Sequence[Mapping[str, Any]], command: str = "verify") -> None:
    """Record a standalone verify's per-host entries (as `verify --format json` lists them) in the default
    store, for `remediate history`; warn on stderr and go on if that fails. It never sets a known-good state:
    that needs the facts of an apply (docs/drift.md)."""
    path = _store_path()
    if path is None:
        return
    try:
        with Store.open(path or None) as store:
            run_id = store.start_run(command, run_id=new_run_id())
            with store.batch():
                for entry in hosts:
                    store.record_verify(str(entry["host"]), dict(entry), passed=entry.get("status") == "passed",
                                        run_id=run_id)
    except Exception as exc:  # recording is a side effect: it must never fail the command
        _warn("verify", exc)
