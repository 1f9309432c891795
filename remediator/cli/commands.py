"""Registers every subcommand on the top-level group; each lives in its own module of this package."""

from __future__ import annotations

import importlib

import click

# module name in remediator.cli -> attribute holding the click command or group.
# Add one line per command module.
_COMMANDS: list[tuple[str, str]] = [
    ("probe", "probe"),
    ("matrix", "matrix"),
    ("diagnose", "diagnose"),
    ("plan", "plan"),
    ("apply", "apply"),
    ("rollback", "rollback"),
    ("lab", "lab"),
    ("verify", "verify"),
    ("drift", "drift"),
    ("history", "history"),
    ("schedule", "schedule"),
    ("report", "report"),
]


def register(group: click.Group) -> None:
    if group.commands:
        return
    for module_name, attr in _COMMANDS:
        module = importlib.import_module(f"remediator.cli.{module_name}")
        group.add_command(getattr(module, attr))
