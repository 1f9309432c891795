#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Record a package change or another reversible change in a run's manifest, durably, before it happens.

Roles call it with state pending before they remove or install a package and again once it is done, so
rollback.yml knows the exact versions to put back even when a run died in between.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: remediator_manifest
short_description: Record packages and changes in a remediator run's manifest
description:
  - Adds or updates one record in C(<root>/<run_id>/manifest.json) (written atomically and fsynced).
  - A C(package) record is keyed by manager, name and action; a C(change) record by kind and path.
  - Reports a change only when the manifest's content changes.
options:
  run_id:
    description: The run.
    type: str
    required: true
  root:
    description: The quarantine root.
    type: path
    default: /var/lib/remediator/quarantine
  host:
    description: The host's name, for a new manifest.
    type: str
    default: ''
  package:
    description: C(manager), C(name), C(version), C(action) (remove or install) and C(state).
    type: dict
  change:
    description: C(kind) (cuda_link, venv or loader_pin), C(path), C(before), C(after), optional C(state).
    type: dict
author: remediator
"""

EXAMPLES = r"""
- name: Record a removal before it happens
  remediator_manifest:
    run_id: 20260101T000000Z-abcdef
    package: {manager: apt, name: cuda-toolkit-10-1, version: 10.1.243-1, action: remove, state: pending}
"""

RETURN = r"""
record:
  description: The record as stored.
  type: dict
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.remediator.gpu.plugins.module_utils.remediator_common import (
    empty_manifest,
    load_manifest,
    module_run_dir,
    now,
    write_manifest,
)

_PACKAGE_STATES = {"remove": ("pending", "removed", "reinstalled"), "install": ("pending", "installed", "uninstalled")}
_CHANGE_KINDS = ("cuda_link", "venv", "loader_pin")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            run_id=dict(type="str", required=True),
            root=dict(type="path", default="/var/lib/remediator/quarantine"),
            host=dict(type="str", default=""),
            package=dict(type="dict"),
            change=dict(type="dict"),
        ),
        mutually_exclusive=[("package", "change")],
        required_one_of=[("package", "change")],
        supports_check_mode=True,
    )
    p = module.params
    directory = module_run_dir(module)
    doc = load_manifest(directory) or empty_manifest(p["run_id"], p["host"])

    if p["package"] is not None:
        rec = dict(p["package"])
        action = rec.setdefault("action", "remove")
        if action not in _PACKAGE_STATES or rec.get("state") not in _PACKAGE_STATES[action]:
            module.fail_json(msg="package record: action must be remove|install and state one of %s"
                                 % (_PACKAGE_STATES.get(action),))
        if not rec.get("manager") or not rec.get("name"):
            module.fail_json(msg="package record needs manager and name")
        records = doc["packages"]
        key = ("manager", "name", "action")
    else:
        rec = dict(p["change"])
        if rec.get("kind") not in _CHANGE_KINDS or not rec.get("path"):
            module.fail_json(msg="change record needs kind (one of %s) and path" % (_CHANGE_KINDS,))
        rec.setdefault("state", "done")
        records = doc["changes"]
        key = ("kind", "path")

    existing = next((r for r in records if all(r.get(k) == rec.get(k) for k in key)), None)
    if existing is not None:
        merged = dict(existing)
        # A later record never forgets what an earlier one knew (the exact version, the state before).
        merged.update({k: v for k, v in rec.items() if v is not None or k not in existing})
        if p["change"] is not None and "before" in existing:
            merged["before"] = existing["before"]
        if existing.get("created_dirs") is not None:  # a resumed run finds them made by its first attempt
            merged["created_dirs"] = list(existing["created_dirs"]) + [
                d for d in (rec.get("created_dirs") or []) if d not in existing["created_dirs"]]
        if merged == existing:
            module.exit_json(changed=False, record=existing)
        if module.check_mode:
            module.exit_json(changed=True, record=merged)
        merged["updated_at"] = now()
        existing.clear()
        existing.update(merged)
        out = existing
    else:
        if module.check_mode:
            module.exit_json(changed=True, record=rec)
        rec["recorded_at"] = now()
        records.append(rec)
        out = rec
    write_manifest(directory, doc)
    module.exit_json(changed=True, record=out)


if __name__ == "__main__":
    main()
