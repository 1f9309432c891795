"""Registers every subcommand on the top-level group; each lives in its own module."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    if group.commands:
        return
