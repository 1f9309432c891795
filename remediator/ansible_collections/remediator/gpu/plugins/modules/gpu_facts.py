#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible's way in to the probe: the same gpu_probe code `remediate probe` sends over SSH, run as a module.

Fleets that already run Ansible at scale (AWX, execution nodes, job slicing) gather with this module into
Ansible's fact cache, and `remediate plan --facts CACHE_DIR` plans from there (docs/scale.md). The module
only reads and only returns data: the document is the host's word, and the control side validates it
(docs/facts-schema.json, remediator.probe.parse) before anything uses it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Read a host's NVIDIA driver, CUDA, cuDNN and framework stack as remediator facts
description:
  - Runs remediator's probe (the collection's gpu_probe module_utils, the same code C(remediate probe)
    sends over SSH) and returns its JSON document as the fact C(remediator_gpu).
  - Only reads. Files are read bounded, commands (nvidia-smi, nvcc --version, dpkg-query, ldconfig -p) run
    under a timeout, and programs or libraries another user could have planted are never run.
  - Save the facts with C(fact_caching=jsonfile) and plan from the cache with
    C(remediate plan --facts CACHE_DIR) (see remediator's docs/scale.md).
  - Run it with C(become) to see what root sees (other users' venvs, conda envs under /root).
options:
  venv_roots:
    description:
      - Where to look for Python environments (venvs, conda envs); shell-style globs such as C(/home/*).
      - Playbooks usually pass the host's C(remediate_venv_roots) inventory var here.
    type: list
    elements: str
    default: [/opt, /home/*, /root]
  systemd_units:
    description: Units that start the host's Python; their C(Environment=) and C(EnvironmentFile=)
      LD_LIBRARY_PATH are reported.
    type: list
    elements: str
    default: []
  nvml:
    description: Ask NVML for the driver and GPUs (falls back to nvidia-smi when NVML does not answer).
    type: bool
    default: true
  max_depth:
    description: How deep below each venv root to look for environments.
    type: int
    default: 4
  timeout:
    description:
      - Seconds the probe should take at most; the walk for environments stops after half of it (with a
        note in the document) and the rest is quick.
    type: float
    default: 180
  command_timeout:
    description: Seconds any one command (nvidia-smi, nvcc, ...) or the NVML query may take.
    type: float
    default: 20
notes:
  - Supports check mode (it changes nothing either way).
  - Needs python3 3.6 or newer on the host, standard library only.
author: remediator
"""

EXAMPLES = r"""
- name: Gather GPU facts into the fact cache
  remediator.gpu.gpu_facts:
    venv_roots: "{{ remediate_venv_roots | default(['/opt', '/home/*', '/root']) }}"
    systemd_units: "{{ remediate_systemd_units | default([]) }}"
  become: true

- name: Show the driver the host reported
  ansible.builtin.debug:
    var: remediator_gpu.driver
"""

RETURN = r"""
ansible_facts:
  description: The facts set on the host.
  type: dict
  returned: always
  contains:
    remediator_gpu:
      description:
        - The probe document, exactly as C(remediate probe) receives it over SSH (docs/facts-schema.json).
        - Host data, untrusted; read it with remediator, never template it.
      type: dict
schema_version:
  description: The document's schema version (C(remediate) refuses documents of another version).
  type: int
  returned: always
  sample: 1
duration_s:
  description: How long the probe took on the host, in seconds.
  type: float
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.remediator.gpu.plugins.module_utils import gpu_probe


def probe_options(params, environ):
    """The probe's options from the module's, as remediator.probe.build_payload makes them for SSH."""
    options = dict(gpu_probe.DEFAULT_OPTIONS)
    timeout = float(params["timeout"])
    command_timeout = float(params["command_timeout"])
    options.update({
        "root": "/",
        "venv_roots": list(params["venv_roots"]),
        "max_depth": int(params["max_depth"]),
        "nvml": bool(params["nvml"]),
        "deadline_s": max(10.0, timeout / 2),
        "command_timeout": command_timeout,
        "nvml_timeout": command_timeout,
        "systemd_units": [str(u) for u in params["systemd_units"]],
        # Under become the login shell to read is the one of the user who ran sudo, as the SSH probe does.
        "session_user_from_sudo": os.geteuid() == 0 and bool(environ.get("SUDO_UID")),
    })
    return options


def main():
    module = AnsibleModule(
        argument_spec=dict(
            venv_roots=dict(type="list", elements="str", default=["/opt", "/home/*", "/root"]),
            systemd_units=dict(type="list", elements="str", default=[]),
            nvml=dict(type="bool", default=True),
            max_depth=dict(type="int", default=4),
            timeout=dict(type="float", default=180.0),
            command_timeout=dict(type="float", default=20.0),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["timeout"] <= 0 or params["command_timeout"] <= 0:
        module.fail_json(msg="timeout and command_timeout must be positive")
    if params["max_depth"] < 0:
        module.fail_json(msg="max_depth must not be negative")
    if not params["venv_roots"]:
        module.fail_json(msg="venv_roots must name at least one directory")
    probe = gpu_probe.Probe(probe_options(params, os.environ))
    doc = probe.collect()
    result = dict(
        changed=False,
        ansible_facts=dict(remediator_gpu=doc),
        schema_version=doc.get("schema_version"),
        duration_s=(doc.get("probe") or {}).get("duration_s"),
    )
    if probe.nvml_hung:
        # A thread is stuck inside the driver (the probe's own exit does the same): print the result and
        # leave without waiting for interpreter shutdown, which could hang on it.
        import json
        import sys

        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        os._exit(0)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
