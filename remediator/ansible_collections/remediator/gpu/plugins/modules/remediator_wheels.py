#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Check that a venv holds the distributions the plan pinned (read from its dist-info, nothing imported).

The framework role runs it after the install: a resolver that quietly picked another CUDA wheel, or a
CPU-only build where CUDA wheels were expected, fails here rather than at the first GPU job.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: remediator_wheels
short_description: Assert that a venv holds pinned distributions
description:
  - Reads C(*.dist-info/METADATA) under the venv's site-packages.
  - C(name==version) must match exactly (a local label such as C(+cu130) is ignored, as PEP 440
    does); other specifiers only require the distribution to be there.
options:
  venv:
    description: The venv.
    type: path
    required: true
  expected:
    description: Requirement strings, C(name[extra]==version) or C(name<specifier>).
    type: list
    elements: str
    default: []
author: remediator
"""

EXAMPLES = r"""
- name: The venv has what the plan pinned
  remediator_wheels:
    venv: /opt/remediator/venvs/pytorch-2.14.1
    expected: [torch==2.14.1, nvidia-cudnn-cu13==9.24.0.43]
"""

RETURN = r"""
installed:
  description: Normalised name to version for every distribution in the venv.
  type: dict
  returned: always
missing:
  description: Expected entries that are absent or at another version.
  type: list
  returned: always
"""

import glob
import os
import re

from ansible.module_utils.basic import AnsibleModule

_REQ = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)(?:\[[^\]]*\])?\s*(.*)$")


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(venv):
    out = {}
    for meta in glob.glob(os.path.join(venv, "lib", "python*", "site-packages", "*.dist-info", "METADATA")):
        name = version = None
        with open(meta, "rb") as f:
            for raw in f:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    break
                if line.startswith("Name:"):
                    name = line[5:].strip()
                elif line.startswith("Version:"):
                    version = line[8:].strip()
        if name and version:
            out[_norm(name)] = version
    return out


def _release(text):
    parts = text.split(".")
    if not all(p.isdigit() for p in parts):
        return None
    nums = [int(p) for p in parts]
    while len(nums) > 1 and nums[-1] == 0:
        nums.pop()
    return nums


def same_version(installed_version, wanted):
    """PEP 440 `==` for plain releases: 13.0.3 matches 13.0.3.0, and a local label (+cu130) is ignored
    unless the wanted version names one."""
    have = installed_version if "+" in wanted else installed_version.split("+")[0]
    if have == wanted:
        return True
    a, b = _release(have), _release(wanted)
    return a is not None and a == b


def main():
    module = AnsibleModule(
        argument_spec=dict(venv=dict(type="path", required=True),
                           expected=dict(type="list", elements="str", default=[])),
        supports_check_mode=True,
    )
    have = installed(module.params["venv"])
    missing = []
    for req in module.params["expected"]:
        m = _REQ.match(req.strip())
        if not m:
            module.fail_json(msg="cannot read requirement %r" % req)
        name, spec = _norm(m.group(1)), m.group(2).strip()
        version = have.get(name)
        if version is None:
            missing.append("%s (not installed)" % req)
        elif spec.startswith("==") and "," not in spec:
            if not same_version(version, spec[2:].strip()):
                missing.append("%s (found %s)" % (req, version))
    if missing:
        module.fail_json(msg="the venv lacks: %s" % ", ".join(missing), missing=missing, installed=have)
    module.exit_json(changed=False, installed=have, missing=[])


if __name__ == "__main__":
    main()
