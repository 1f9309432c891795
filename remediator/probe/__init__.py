"""The probe step: one round trip per host sends the remote script and parses what it prints into facts.

`probe_host` works on any transport (SSH, local, the scripted fake); `probe_fleet` connects to every
inventory host and returns one result per host, never the first exception. Probing only reads.
"""

from __future__ import annotations

import base64
import functools
import importlib.resources
import importlib.util
import json
import marshal
import re
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from remediator.facts import HostFacts
from remediator.hostscript import collection_script, fill_placeholder, last_line, too_old_message
from remediator.probe.parse import (
    PROBE_SCHEMA_VERSION,
    ProbeError,
    parse_probe_document,
    parse_probe_output,
    parse_tf_build_info,
    parse_torch_version,
)
from remediator.transport.base import Transport
from remediator.transport.become import Become, check_become_failure

if TYPE_CHECKING:
    from remediator.fleet import FleetResult, HostResult
    from remediator.inventory import InventoryHost

#: Runs the script from stdin with the host's python3, or says clearly that there is none.
#: A constant string: nothing of ours or of the host is ever interpolated into it.
PROBE_ARGV: tuple[str, ...] = (
    "sh",
    "-c",
    "command -v python3 >/dev/null || { echo 'remediator: python3 not found' >&2; exit 127; }; exec python3 -I -S -",
)
#: The same with become: the login user's shell finds python3, then execs the become words (positional
#: arguments: sudo -n ... -u root --) in front of it, passing on the session's LD_LIBRARY_PATH, which
#: sudo clears, as an argument of the script. Still one round trip, still a constant script.
PROBE_BECOME_SCRIPT = (
    "command -v python3 >/dev/null || { echo 'remediator: python3 not found' >&2; exit 127; }; "
    'exec "$@" python3 -I -S - --session-ld-library-path "${LD_LIBRARY_PATH-}"'
)
# -I: the host's PYTHON* variables (PYTHONPATH, PYTHONHOME) and user site are ignored, so nothing of them
# runs inside the probe; -S: no site import (.pth files, sitecustomize), which the stdlib-only script does
# not need and which costs a host 2-20 ms per probe.
PYTHON3_MISSING_MARKER = "remediator: python3 not found"

DEFAULT_VENV_ROOTS: tuple[str, ...] = ("/opt", "/home/*", "/root")
DEFAULT_TIMEOUT = 180.0
DEFAULT_MAX_DEPTH = 4

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_VENV_ROOTS",
    "PROBE_ARGV",
    "PROBE_BECOME_SCRIPT",
    "PROBE_SCHEMA_VERSION",
    "ProbeError",
    "build_payload",
    "parse_probe_document",
    "parse_probe_output",
    "parse_tf_build_info",
    "parse_torch_version",
    "probe_argv",
    "probe_fleet",
    "probe_host",
    "remote_script_source",
]


def remote_script_source() -> str:
    """The text of the remote script: the remediator.gpu collection's gpu_probe module_utils (its one home;
    the collection's gpu_facts module runs the same code), as shipped in this package."""
    return collection_script("plugins/module_utils/gpu_probe.py")


def build_payload(
    *,
    venv_roots: Sequence[str] = DEFAULT_VENV_ROOTS,
    root: str | None = None,
    nvml: bool = True,
    max_depth: int = DEFAULT_MAX_DEPTH,
    deadline_s: float = DEFAULT_TIMEOUT / 2,
    command_timeout: float = 20.0,
    systemd_units: Sequence[str] = (),
    session_user_from_sudo: bool = False,
) -> bytes:
    """The bytes sent to `python3 -`: the remote script with its options filled in.

    `session_user_from_sudo`: the script runs under sudo; the login shell it reads is that of the user
    sudo was run by (SUDO_UID), not root's. A fleet's hosts mostly share their options, so each
    distinct set is built once (and the script read once) per process, not once per host."""
    return _payload(tuple(str(r) for r in venv_roots), root or "/", bool(nvml), int(max_depth), float(deadline_s),
                    float(command_timeout), tuple(str(u) for u in systemd_units), bool(session_user_from_sudo))


@functools.lru_cache(maxsize=64)
def _payload(venv_roots: tuple[str, ...], root: str, nvml: bool, max_depth: int, deadline_s: float,
             command_timeout: float, systemd_units: tuple[str, ...], session_user_from_sudo: bool) -> bytes:
    options: dict[str, Any] = {
        "root": root,
        "venv_roots": list(venv_roots),
        "max_depth": max_depth,
        "nvml": nvml,
        "deadline_s": deadline_s,
        "command_timeout": command_timeout,
        "nvml_timeout": command_timeout,
        "systemd_units": list(systemd_units),
        "session_user_from_sudo": session_user_from_sudo,
    }
    # repr() of a str is a Python string literal: the options travel as data, never as code.
    source = fill_placeholder(
        remote_script_source(), "PAYLOAD_OPTIONS = None\n", f"PAYLOAD_OPTIONS = json.loads({json.dumps(options)!r})\n"
    )
    return _bootstrap(source)


def _bootstrap(source: str) -> bytes:
    """The script wrapped for the trip: compressed, and with its bytecode for this Python's version.

    Compiling the ~90 KB script is about a quarter of what one probe costs a host (13 ms of CPU), paid
    again on every host of every run. A host whose python3 has this Python's bytecode magic number
    runs the code compiled here (marshal's format is fixed per magic number); any other compiles the
    source as before. Both come from this process, from our own file: the bytecode is the same code
    as the source, never anything of a host's. The bootstrap itself is a few lines of python3.6."""
    code = compile(source, "<remediator-probe>", "exec", dont_inherit=True)
    blob = base64.b64encode(zlib.compress(marshal.dumps(code), 6)).decode("ascii")
    text = base64.b64encode(zlib.compress(source.encode("utf-8"), 6)).decode("ascii")
    magic = importlib.util.MAGIC_NUMBER
    return (
        "# remediator probe: the script of remediator.gpu's gpu_probe module_utils, compressed; run as\n"
        "# bytecode where this python has the control node's magic number, else compiled from source.\n"
        "import binascii, sys, zlib\n"
        f"_MAGIC = {magic!r}\n"
        f"_CODE = {blob!r}\n"
        f"_SOURCE = {text!r}\n"
        "_importer = sys.modules.get('_frozen_importlib_external')\n"
        "if getattr(_importer, 'MAGIC_NUMBER', None) == _MAGIC:\n"
        "    import marshal\n"
        "    _code = marshal.loads(zlib.decompress(binascii.a2b_base64(_CODE)))\n"
        "else:\n"
        "    _text = zlib.decompress(binascii.a2b_base64(_SOURCE)).decode('utf-8')\n"
        "    _code = compile(_text, '<remediator-probe>', 'exec')\n"
        "del _importer, _CODE, _SOURCE\n"
        "exec(_code)\n"
    ).encode("ascii")


def payload_source(payload: bytes) -> str:
    """The script's source inside a payload (for tests and for reading what travels)."""
    match = re.search(rb"^_SOURCE = '([A-Za-z0-9+/=]*)'$", payload, re.M)
    if match is None:
        raise ValueError("not a probe payload")
    return zlib.decompress(base64.b64decode(match.group(1))).decode("utf-8")


def probe_host(
    transport: Transport,
    host_name: str,
    *,
    venv_roots: Sequence[str] = DEFAULT_VENV_ROOTS,
    timeout: float = DEFAULT_TIMEOUT,
    root: str | None = None,
    nvml: bool = True,
    systemd_units: Sequence[str] = (),
    become: Become | None = None,
) -> HostFacts:
    """Probe one host in one round trip; raise ProbeError (or a TransportError) when it gives no facts.

    `systemd_units`: units that start the host's Python (training services): their `Environment=` and
    `EnvironmentFile=` LD_LIBRARY_PATH is one more way of starting Python that diagnosis judges.
    `become`: run the script through sudo (BecomeError when sudo wants a password or refuses)."""
    argv = probe_argv(become)
    payload = build_payload(venv_roots=venv_roots, root=root, nvml=nvml, deadline_s=max(10.0, timeout / 2),
                            systemd_units=systemd_units, session_user_from_sudo=argv != PROBE_ARGV)
    result = transport.run(argv, stdin=payload, timeout=timeout)
    stderr = result.stderr.decode("utf-8", "replace")
    check_become_failure(result.returncode, stderr, become, host=host_name)
    if result.returncode == 127 and PYTHON3_MISSING_MARKER in stderr:
        raise ProbeError(
            "python3 not found on host",
            host=host_name,
            hint="the probe needs python3 (3.6 or newer) on the host: install it (`apt-get install python3`)",
        )
    too_old = too_old_message(stderr)
    if too_old is not None:
        raise ProbeError(
            too_old,
            host=host_name,
            hint="the probe needs python3 3.6 or newer on the host",
        )
    if result.returncode != 0:
        message = last_line(stderr) or "no message"
        raise ProbeError(
            f"the probe script failed (exit status {result.returncode}): {message}",
            host=host_name,
            hint="run `remediate probe --local --format json` on the host to see the whole error",
        )
    return parse_probe_output(result.stdout, host=host_name)


def probe_argv(become: Become | None = None) -> tuple[str, ...]:
    """PROBE_ARGV, or with become the script that execs python3 through the become words."""
    prefix = become.prefix() if become is not None else ()
    if not prefix:
        return PROBE_ARGV
    return ("sh", "-c", PROBE_BECOME_SCRIPT, "remediator-probe", *prefix)


def probe_fleet(
    hosts: Sequence[InventoryHost],
    *,
    forks: int = 10,
    accept_new_host_keys: bool = False,
    connect_timeout: float = 10.0,
    timeout: float = DEFAULT_TIMEOUT,
    venv_roots: Sequence[str] = DEFAULT_VENV_ROOTS,
    connect: Callable[..., Transport] | None = None,
    on_result: Callable[[HostResult[HostFacts]], None] | None = None,
    become: bool | None = None,
) -> FleetResult[HostFacts]:
    """Probe every host, `forks` at a time; one result per host (ok, failed or unreachable).

    Each host's become settings (`ansible_become`, `ansible_become_user`, ...) are honoured as Ansible
    does, through `sudo -n`; `become` True/False overrides `ansible_become` for every host.

    Hosts with `ansible_connection=local` are probed on this machine; the others over SSH. A host's
    inventory var `remediate_venv_roots` (a list of paths) replaces `venv_roots` for that host, and
    `remediate_systemd_units` (a list of unit names) names the services that start its Python.
    """
    from remediator.fleet import run_fleet
    from remediator.transport import open_transport
    from remediator.transport.become import become_of

    def probe_one(host: InventoryHost) -> HostFacts:
        how = become_of(host, enabled=become)
        roots = host.vars.get("remediate_venv_roots")
        if not (isinstance(roots, list | tuple) and roots and all(isinstance(r, str) for r in roots)):
            roots = list(venv_roots)
        units = host.vars.get("remediate_systemd_units")
        if not (isinstance(units, list | tuple) and all(isinstance(u, str) for u in units)):
            units = []
        transport = open_transport(host, accept_new_host_keys=accept_new_host_keys,
                                   connect_timeout=connect_timeout, connect=connect)
        try:
            return probe_host(transport, host.name, venv_roots=roots, timeout=timeout, systemd_units=units,
                              become=how)
        finally:
            transport.close()

    return run_fleet(hosts, probe_one, forks=forks, on_result=on_result)
