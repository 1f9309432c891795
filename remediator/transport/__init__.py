"""How we reach a host: one narrow interface (run a command, put a file, close) and its implementations."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from remediator.transport.base import (
    AuthenticationError,
    CommandResult,
    CommandTimeout,
    HostKeyError,
    HostUnreachable,
    OutputTooLarge,
    Transport,
    TransportError,
)

if TYPE_CHECKING:
    from remediator.inventory import InventoryHost


def open_transport(
    host: InventoryHost,
    *,
    accept_new_host_keys: bool = False,
    connect_timeout: float = 10.0,
    connect: Callable[..., Transport] | None = None,
) -> Transport:
    """The transport for an inventory host: local for `ansible_connection=local`, else SSH (`connect`)."""
    if host.connection == "local":
        from remediator.transport.local import LocalTransport

        return LocalTransport(host.name)
    if connect is None:
        from remediator.transport.ssh import connect as ssh_connect

        return ssh_connect(host, accept_new_host_keys=accept_new_host_keys, connect_timeout=connect_timeout)
    return connect(host, accept_new_host_keys=accept_new_host_keys, connect_timeout=connect_timeout)


__all__ = [
    "AuthenticationError",
    "CommandResult",
    "CommandTimeout",
    "HostKeyError",
    "HostUnreachable",
    "OutputTooLarge",
    "Transport",
    "TransportError",
    "open_transport",
]
