"""Which hosts to work on: an Ansible inventory read with ansible-core's own machinery, narrowed by `--limit`.

The first step of the flow. Every host becomes a frozen `InventoryHost` holding what the SSH transport
needs (address, port, user, key, known_hosts files) and the `remediate_*` variables later commands read.
ansible is imported only here, and what it prints is captured and turned into our errors.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from remediator.errors import InputError, UsageError

_LIMIT_HINT = (
    "patterns work as for ansible-playbook --limit: gpu, gpu0*, gpu[0:2], 'gpu:!broken', @retry_file"
)


@dataclass(frozen=True)
class InventoryHost:
    """One host as the transport sees it; values are the inventory's, after Jinja templating.

    `port_defaulted` is True when the inventory gave no `ansible_port` (22 was assumed), so a `Port`
    in ~/.ssh/config may apply, as it would for ansible-playbook, which passes no port to ssh then.
    """

    name: str
    address: str
    port: int = 22
    user: str | None = None
    private_key_file: str | None = None
    become: bool = False
    target: str | None = None
    known_hosts_files: tuple[str, ...] = ()
    strict_host_key_checking: str | None = None  # "yes", "no", "accept-new", ... as ssh's option
    proxy_jump: str | None = None
    ssh_args: str = ""  # ansible_ssh_args, ansible_ssh_common_args, ansible_ssh_extra_args as written
    connection: str = "ssh"  # ansible_connection: "local" hosts need no SSH
    port_defaulted: bool = False
    groups: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False, compare=False)
    # Connection settings apply hands on to ansible-playbook as they are (PASS_THROUGH); never passwords.
    ansible_vars: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False,
                                            compare=False)

    @property
    def endpoint(self) -> str:
        """`address:port` as shown in messages ([v6]:port for IPv6 addresses)."""
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


# Inventory connection vars apply copies into its runs. Passwords are left out on purpose: the run's
# inventory is part of its audit trail (docs/apply.md); use keys and passwordless sudo, or ansible-vault
# with ansible-playbook directly.
PASS_THROUGH = (
    "ansible_python_interpreter", "ansible_become_user", "ansible_become_method", "ansible_become_flags",
    "ansible_become_exe", "ansible_timeout", "ansible_pipelining", "ansible_ssh_pipelining",
)


@dataclass(frozen=True)
class Inventory:
    path: str
    hosts: tuple[InventoryHost, ...]
    limit: str | None = None

    def __iter__(self) -> Iterator[InventoryHost]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def host(self, name: str) -> InventoryHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)


# Ansible's Display is a process-wide singleton; capturing it is not thread-safe by itself.
_DISPLAY_LOCK = threading.Lock()


@contextlib.contextmanager
def _captured_ansible_output() -> Iterator[list[str]]:
    """Collect what ansible would print (warnings, deprecations) instead of letting it reach the terminal."""
    messages: list[str] = []
    stray = io.StringIO()
    # ansible prints config warnings (a world-writable ansible.cfg directory, ...) while its modules are
    # imported, before Display can be intercepted; sys.stdout/stderr are redirected for that (and any
    # other direct print) while the inventory loads.
    with _DISPLAY_LOCK, contextlib.redirect_stdout(stray), contextlib.redirect_stderr(stray):
        from ansible.utils.display import Display

        display = Display()
        saved = display.__dict__.get("display")

        def capture(msg: str, *args: Any, **kwargs: Any) -> None:
            messages.append(str(msg))

        # Every ansible message (warning, deprecation, error) ends in Display.display; shadowing it on
        # the singleton instance works across ansible-core versions, unlike its private capture contexts.
        display.display = capture
        try:
            yield messages
        finally:
            if saved is None:
                del display.display
            else:
                display.display = saved


_FAILED_RE = re.compile(
    r"Failed to parse (?:inventory with '?(?P<p1>[\w.]+)'? plugin|.*? with (?P<p2>[\w.]+) plugin)"
)


def _parse_failure_reason(path: str, messages: Sequence[str]) -> str:
    """The most relevant line of ansible's 'Failed to parse ...' warnings for this file."""
    reasons: dict[str, str] = {}
    for msg in messages:
        text = msg.replace("[WARNING]:", "").strip().lstrip("* ").strip()
        m = _FAILED_RE.search(text)
        if not m:
            continue
        plugin = m.group("p1") or m.group("p2") or "?"
        first = text.splitlines()[0]
        reason = first[m.end() :].lstrip(": ").strip()
        reason = reason.removeprefix("Failed to parse inventory: ").strip()
        reasons.setdefault(plugin, reason or first)
    preferred = ["yaml", "auto"] if path.endswith((".yml", ".yaml")) else ["ini", "yaml", "toml", "auto"]
    for plugin in [*preferred, *reasons]:
        if plugin in reasons:
            return f"{reasons[plugin]} ({plugin} plugin)"
    return "no inventory plugin (INI, YAML, ...) could parse it"


def _plain(value: Any) -> Any:
    """Drop ansible's data tags (str/int subclasses since ansible-core 2.19) so values compare plainly."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class _SshOptions:
    known_hosts_files: tuple[str, ...] = ()
    strict_host_key_checking: str | None = None
    proxy_jump: str | None = None


def parse_ssh_args(args: str) -> _SshOptions:
    """Read the options we honour from ssh command-line arguments, as ssh would: first value wins.

    Understands `-o Key=Value`, `-oKey=Value`, `-o "Key Value"` and `-J jump`. Raises ValueError on
    unbalanced quotes.
    """
    tokens = shlex.split(args)
    options: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("-o", "-J") and i + 1 < len(tokens):
            value = tokens[i + 1]
            i += 2
        elif tok.startswith(("-o", "-J")) and len(tok) > 2:
            value = tok[2:]
            i += 1
        else:
            i += 1
            continue
        if tok.startswith("-J"):
            options.setdefault("proxyjump", value)
            continue
        m = re.match(r"\s*([A-Za-z]+)\s*(?:=|\s)\s*(.*)$", value)
        if m:
            options.setdefault(m.group(1).lower(), m.group(2).strip())
    known = tuple(os.path.expanduser(p) for p in options.get("userknownhostsfile", "").split())
    strict = options.get("stricthostkeychecking")
    jump = options.get("proxyjump")
    return _SshOptions(
        known_hosts_files=known,
        strict_host_key_checking=strict.lower() if strict else None,
        proxy_jump=None if jump is None or jump.lower() == "none" else jump,
    )


def load_inventory(path: str, limit: str | None = None, *, become: bool | None = None) -> Inventory:
    """Read an inventory (file, directory or `host1,host2,` list) and apply an ansible `--limit` pattern.

    `become` True/False replaces every host's `ansible_become` (the `--become/--no-become` options).

    Raises InputError for a missing or malformed inventory or bad host variables, UsageError for a
    limit that is invalid or matches no host.
    """
    is_host_list = "," in path and not os.path.exists(path)
    if not is_host_list:
        if not os.path.exists(path):
            raise InputError(
                path, "no such file or directory", hint="pass an Ansible inventory (INI or YAML)"
            )
        if not os.access(path, os.R_OK):
            raise InputError(path, "not readable (permission denied)")
    with _captured_ansible_output() as messages:
        inv = _load(path, limit, is_host_list, messages)
    if become is None:
        return inv
    return replace(inv, hosts=tuple(replace(h, become=become) for h in inv.hosts))


def _load(path: str, limit: str | None, is_host_list: bool, messages: list[str]) -> Inventory:
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    source = path if is_host_list else os.path.abspath(path)
    unparsed: list[str] = []

    class _Manager(InventoryManager):  # type: ignore[misc]
        # parse_source reports success only as its return value; remember the top-level verdict.
        def parse_source(self, src: str, cache: bool = False) -> bool:
            parsed = bool(super().parse_source(src, cache=cache))
            if not parsed and src == source:
                unparsed.append(src)
            return parsed

    loader = DataLoader()
    try:
        manager = _Manager(loader=loader, sources=[source])
    except AnsibleError as exc:
        raise InputError(path, _first_line(exc)) from None
    except Exception as exc:  # a broken ansible setup (missing plugin, collection), not the user's file
        raise InputError(
            path,
            f"ansible could not load the inventory: {type(exc).__name__}: {exc}",
            hint="check the ansible configuration (ansible.cfg, ANSIBLE_INVENTORY_ENABLED)",
        ) from None
    if unparsed:
        raise InputError(
            path,
            f"not a valid inventory: {_parse_failure_reason(source, messages)}",
            hint="an inventory is an INI or YAML file as ansible-playbook -i takes it",
        )
    variables = VariableManager(loader=loader, inventory=manager)
    if not manager.get_hosts("all"):
        raise InputError(path, "the inventory defines no hosts")

    if limit is not None and limit.strip():
        try:
            manager.subset(limit)
            selected = manager.get_hosts("all")
        except AnsibleError as exc:
            raise UsageError(f"invalid --limit {limit!r}: {_first_line(exc)}", hint=_LIMIT_HINT) from None
        if not selected:
            names = [h.name for h in manager.get_hosts("all", ignore_limits=True)]
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise UsageError(
                f"--limit {limit!r} matches no host in {path} (hosts: {shown})", hint=_LIMIT_HINT
            )
    else:
        selected = manager.get_hosts("all")

    hosts = tuple(_host(path, h, variables, loader) for h in selected)
    return Inventory(path=path, hosts=hosts, limit=limit)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _host(path: str, host: Any, variables: Any, loader: Any) -> InventoryHost:
    from ansible.errors import AnsibleError
    from ansible.module_utils.parsing.convert_bool import boolean
    from ansible.template import Templar

    name = str(host.name)
    hostvars = variables.get_vars(host=host, include_hostvars=False)
    templar = Templar(loader=loader, variables=hostvars)

    def get(*names: str) -> Any:
        # As ansible's connection options: of several aliases, the last one defined wins.
        value, which = None, names[0]
        for n in names:
            if hostvars.get(n) is not None:
                value, which = hostvars[n], n
        if value is None:
            return None
        try:
            return _plain(templar.template(value))
        except AnsibleError as exc:
            raise InputError(path, f"cannot template {which}: {_first_line(exc)}", field=name) from None

    address = get("ansible_host", "ansible_ssh_host")
    port_value = get("ansible_port", "ansible_ssh_port")
    port = 22
    if port_value is not None:
        try:
            port = int(port_value)
        except (TypeError, ValueError):
            port = 0
        if not 0 < port < 65536:
            raise InputError(path, f"ansible_port {port_value!r} is not a port number", field=name)
    user = get("ansible_user", "ansible_ssh_user")
    key_file = get("ansible_private_key_file", "ansible_ssh_private_key_file")
    become_value = get("ansible_become")
    try:
        become = bool(boolean(become_value, strict=True)) if become_value is not None else False
    except TypeError:
        raise InputError(path, f"ansible_become {become_value!r} is not a boolean", field=name) from None

    raw_args = [get(n) for n in ("ansible_ssh_args", "ansible_ssh_common_args", "ansible_ssh_extra_args")]
    ssh_args = " ".join(str(a) for a in raw_args if a)
    try:
        options = parse_ssh_args(ssh_args)
    except ValueError as exc:
        raise InputError(path, f"cannot split ssh arguments {ssh_args!r}: {exc}", field=name) from None
    strict = options.strict_host_key_checking
    checking = get("ansible_host_key_checking", "ansible_ssh_host_key_checking")
    if strict is None and checking is not None and not boolean(checking, strict=False):
        strict = "no"  # what ansible's ssh plugin passes for host_key_checking=False

    # remediate_* vars, and the one playbook var the plan itself reads (where a Python the distro lacks comes from).
    remediate = {str(k): get(str(k)) for k in hostvars
                 if isinstance(k, str) and (k.startswith("remediate_") or k == "remediator_python_mirror")}
    target = remediate.get("remediate_target")
    groups = tuple(sorted(str(g.name) for g in host.get_groups() if g.name != "all"))
    return InventoryHost(
        name=name,
        address=str(address) if address else name,
        port=port,
        user=str(user) if user else None,
        private_key_file=os.path.expanduser(str(key_file)) if key_file else None,
        become=become,
        target=str(target) if target is not None else None,
        known_hosts_files=options.known_hosts_files,
        strict_host_key_checking=strict,
        proxy_jump=options.proxy_jump,
        ssh_args=ssh_args,
        connection=str(get("ansible_connection") or "ssh"),
        port_defaulted=port_value is None,
        groups=groups,
        vars=MappingProxyType(remediate),
        ansible_vars=MappingProxyType({n: v for n in PASS_THROUGH if (v := get(n)) is not None}),
    )
