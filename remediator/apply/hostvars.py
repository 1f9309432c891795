"""What the playbooks get: each host's connection and planned actions as inventory vars, the run's extravars."""

from __future__ import annotations

import os
import shlex
from typing import Any

from remediator.apply.options import ApplyOptions
from remediator.inventory import InventoryHost
from remediator.plan import HostPlan

# --- the host vars the playbooks get ------------------------------------------------------------------


def ssh_common_args(host: InventoryHost) -> str:
    """The probe's strictness for ansible's ssh: the same known_hosts files, changed or unknown keys refused.

    The inventory's own ssh arguments follow; ssh takes the first value of an option, so ours win.
    """
    from remediator.transport.ssh import USER_KNOWN_HOSTS

    files = host.known_hosts_files or tuple(os.path.expanduser(p) for p in USER_KNOWN_HOSTS)
    ours = ["-o", "UserKnownHostsFile=" + " ".join(files), "-o", "StrictHostKeyChecking=yes"]
    text = " ".join(shlex.quote(part) for part in ours)
    return f"{text} {host.ssh_args}".strip()


def connection_vars(host: InventoryHost) -> dict[str, Any]:
    """The connection vars of an inventory host, copied for ansible (paths to keys, never key material)."""
    out: dict[str, Any] = {}
    if host.connection == "local":
        # As ansible's implicit localhost: this machine runs modules with the Python running ansible.
        out["ansible_connection"] = "local"
        out["ansible_python_interpreter"] = "{{ ansible_playbook_python }}"
    else:
        out["ansible_host"] = host.address
        if not host.port_defaulted:
            out["ansible_port"] = host.port
        if host.user:
            out["ansible_user"] = host.user
        if host.private_key_file:
            out["ansible_ssh_private_key_file"] = host.private_key_file
        out["ansible_ssh_common_args"] = ssh_common_args(host)
    if host.become:
        out["ansible_become"] = True
    out.update(host.ansible_vars)
    return out


def plan_host_vars(hp: HostPlan) -> dict[str, Any]:
    return {
        "remediator_actions": [a.to_dict() for a in hp.actions],
        "remediator_target": dict(hp.target) if hp.target else {},
        "remediator_fingerprint": hp.fingerprint,
    }


def extravars(run_id: str, options: ApplyOptions) -> dict[str, Any]:
    out: dict[str, Any] = {
        **options.playbook_vars,
        "remediator_run_id": run_id,
        "remediator_quarantine_root": options.quarantine_root.rstrip("/"),
        "remediator_allow_approval": options.allow_approval,
        "remediator_pip_index_url": options.pip_index_url,
        "remediator_pip_find_links": options.pip_find_links,
        "remediator_pip_extra_args": list(options.pip_extra_args),
        # The host lock role asks this machine whether the holder of a host's lock still runs.
        "remediator_control_pid": os.getpid(),
        "remediator_venv_root": options.venv_root,
        # The only dir whose children the quarantine may treat as venvs remediate made: apply's own option.
        "remediator_managed_roots": [options.venv_root],
    }
    if options.apt_mirror:
        out["remediator_apt_mirror"] = options.apt_mirror
    return out


def manifest_path(options: ApplyOptions, run_id: str) -> str:
    return f"{options.quarantine_root.rstrip('/')}/{run_id}/manifest.json"


