"""`remediate schedule install|remove`: run the drift check on a timer on the control node."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import click

from remediator import schedule as sched
from remediator.errors import ExitStatus, UsageError
from remediator.state import ENV_VAR, default_path


@click.group("schedule")
def schedule() -> None:
    """Run `remediate drift` periodically: a systemd timer, or a cron entry where there is no systemd.

    \b
    Examples:
      remediate schedule install --every 6h -i /etc/ansible/gpu.yml
      remediate schedule install --every 1h -i ~/gpu.yml --user
      remediate schedule remove
    """


def _common(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option("--cron-file", type=click.Path(dir_okay=False, path_type=Path),
                     help=f"with --backend cron and no --user: the cron file (default {sched.SYSTEM_CRON_FILE}).")(f)
    f = click.option("--backend", type=click.Choice(["auto", "systemd", "cron"]), default="auto", show_default=True,
                     help="auto: systemd when it is the running init, else cron.")(f)
    f = click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path),
                     help=f"where the units go (default {sched.SYSTEM_UNIT_DIR}, with --user "
                          "~/.config/systemd/user).")(f)
    f = click.option("--user", is_flag=True,
                     help="a user timer (systemctl --user) or the user's crontab instead of the system's.")(f)
    return f


def _backend(choice: str) -> sched.Backend:
    if choice == "systemd":
        return "systemd"
    if choice == "cron":
        return "cron"
    return "systemd" if sched.systemd_booted() else "cron"


@schedule.command("install")
@click.option("--every", "every_text", required=True, metavar="INTERVAL", help="how often: 30m, 6h, 1d, ...")
@click.option("-i", "--inventory", metavar="INVENTORY",
              help="Ansible inventory (default $ANSIBLE_INVENTORY, else /etc/ansible/hosts).")
@click.option("--limit", metavar="PATTERN", help="only hosts matching this Ansible pattern.")
@click.option("--prometheus-textfile", "textfile", metavar="PATH",
              help=f"metrics file the check writes (default {sched.SYSTEM_TEXTFILE}; with --user "
                   "$XDG_STATE_HOME/remediator/remediator.prom).")
@click.option("--state-db", "state_db", metavar="FILE", envvar=ENV_VAR,
              help="the state store the check records into (default: as for every command).")
@_common
@click.option("--no-enable", is_flag=True, help="write the files but do not call systemctl.")
@click.option("--dry-run", is_flag=True, help="print what would be written; change nothing.")
def install(every_text: str, inventory: str | None, limit: str | None, textfile: str | None, state_db: str | None,
            user: bool, unit_dir: Path | None, backend: str, cron_file: Path | None, no_enable: bool,
            dry_run: bool) -> int:
    """Install (or replace) the scheduled drift check.

    The check runs `remediate drift` with the inventory, state db and Prometheus textfile fixed as
    absolute paths now. Exit status 2 of a check (drift found) counts as success for systemd.
    """
    every = sched.parse_interval(every_text)
    inv = Path(inventory or os.environ.get("ANSIBLE_INVENTORY") or "/etc/ansible/hosts").expanduser().absolute()
    if not inv.exists():
        raise UsageError(f"inventory {inv} does not exist", hint="give the fleet's inventory with -i")
    prom = Path(textfile).expanduser().absolute() if textfile else sched.default_textfile(user)
    if prom.suffix != ".prom":
        raise UsageError(f"--prometheus-textfile must name a *.prom file, not {str(prom)!r}")
    db = Path(state_db).expanduser().absolute() if state_db else default_path().absolute()
    argv = sched.drift_argv(str(inv), state_db=str(db), textfile=str(prom), limit=limit)
    kind = _backend(backend)

    if kind == "systemd":
        directory = (unit_dir.expanduser().absolute() if unit_dir else sched.default_unit_dir(user))
        units = sched.systemd_units(argv, every)
        if dry_run:
            for name, text in units.items():
                click.echo(f"# {directory / name}\n{text}")
            return int(ExitStatus.OK)
        for name, text in units.items():
            sched.write_atomic(directory / name, text)
            click.echo(f"wrote {directory / name}")
        _systemctl_after_install(directory, user, no_enable)
    elif user:
        line = sched.cron_line(argv, every, user_field=None)
        if dry_run:
            click.echo(sched.crontab_with("", line), nl=False)
            return int(ExitStatus.OK)
        _set_crontab(sched.crontab_with(_read_crontab(), line))
        click.echo(f"installed in your crontab: {every.cron} (every {every.text})")
    else:
        path = cron_file or sched.SYSTEM_CRON_FILE
        text = sched.cron_file_text(argv, every)
        if dry_run:
            click.echo(f"# {path}\n{text}", nl=False)
            return int(ExitStatus.OK)
        sched.write_atomic(path, text)
        click.echo(f"wrote {path}: {every.cron} (every {every.text})")
    click.echo(f"the check records into {db} and writes metrics to {prom}")
    return int(ExitStatus.OK)


@schedule.command("remove")
@_common
@click.option("--no-enable", is_flag=True, help="do not call systemctl.")
def remove(user: bool, unit_dir: Path | None, backend: str, cron_file: Path | None, no_enable: bool) -> int:
    """Remove the scheduled drift check that `install` wrote (safe to run twice)."""
    kind = _backend(backend)
    if kind == "systemd":
        directory = (unit_dir.expanduser().absolute() if unit_dir else sched.default_unit_dir(user))
        if _manages_systemd(directory, user, no_enable) and (directory / sched.TIMER).exists():
            _systemctl(user, "disable", "--now", sched.TIMER)
        removed = sched.remove_files([directory / sched.TIMER, directory / sched.SERVICE])
        if removed and _manages_systemd(directory, user, no_enable):
            _systemctl(user, "daemon-reload")
    elif user:
        before = _read_crontab()
        after = sched.crontab_without(before)
        removed = [Path("crontab")] if after != before else []
        if removed:
            _set_crontab(after)
    else:
        removed = sched.remove_files([cron_file or sched.SYSTEM_CRON_FILE])
    for p in removed:
        click.echo(f"removed {p}" if str(p) != "crontab" else "removed the entry from your crontab")
    if not removed:
        click.echo("no scheduled drift check was installed; nothing to do")
    return int(ExitStatus.OK)


def _manages_systemd(directory: Path, user: bool, no_enable: bool) -> bool:
    """Call systemctl only for the directory systemd reads, and only where systemd runs."""
    return not no_enable and directory == sched.default_unit_dir(user) and sched.systemd_booted()


def _systemctl_after_install(directory: Path, user: bool, no_enable: bool) -> None:
    flag = "--user " if user else ""
    if _manages_systemd(directory, user, no_enable):
        _systemctl(user, "daemon-reload")
        _systemctl(user, "enable", "--now", sched.TIMER)
        click.echo(f"enabled {sched.TIMER}; see it with: systemctl {flag}list-timers {sched.TIMER}")
    else:
        click.echo(f"not enabled here; to enable: systemctl {flag}daemon-reload && "
                   f"systemctl {flag}enable --now {sched.TIMER}")


def _systemctl(user: bool, *args: str) -> None:
    argv = ["systemctl", *(["--user"] if user else []), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise sched.ScheduleError(f"`{' '.join(argv)}` failed: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise sched.ScheduleError(f"`{' '.join(argv)}` failed: {last}")


def _read_crontab() -> str:
    try:
        done = subprocess.run(["crontab", "-l"], capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        raise sched.ScheduleError(f"cannot run crontab: {exc}", hint="install cron, or use systemd") from None
    # `crontab -l` fails with "no crontab for USER" when there is none: that is an empty crontab.
    return done.stdout if done.returncode == 0 else ""


def _set_crontab(text: str) -> None:
    try:
        done = subprocess.run(["crontab", "-"], input=text, capture_output=True, text=True, timeout=30,
                              check=False)
    except OSError as exc:
        raise sched.ScheduleError(f"cannot run crontab: {exc}", hint="install cron, or use systemd") from None
    if done.returncode != 0:
        raise sched.ScheduleError(f"crontab refused the new table: {done.stderr.strip()}")
