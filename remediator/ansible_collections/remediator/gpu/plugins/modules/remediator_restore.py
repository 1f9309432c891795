#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Put a run's quarantined paths back where they were, byte for byte, newest first.

The rollback side of quarantine: each item goes back only to its allowlisted original path, only when
nothing else is there now, and is verified against the manifest's record before it counts as restored.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: remediator_restore
short_description: Restore the paths a remediator run quarantined, verified against its manifest
description:
  - Moves every item of C(<root>/<run_id>/manifest.json) in state C(moved) back to its original
    path (newest first), by rename or by copy, verify and remove across filesystems, and marks it
    C(restored) once type, mode, owner, link targets and every file's sha256 match the record.
  - Refuses an item whose original path is taken by something else now, or whose original path
    fails the allowlist on this host, or lies under a directory not owned by the module's uid or
    writable by group or others; the other items are still restored, and the module fails.
  - Moves through directory fds opened from / without following symlinks (as remediator_quarantine).
  - Resumes after a kill; a second run changes nothing.
options:
  run_id:
    description: The run to undo.
    type: str
    required: true
  root:
    description: The quarantine root.
    type: path
    default: /var/lib/remediator/quarantine
  managed_roots:
    description: Directories remediate fills itself (the venv root).
    type: list
    elements: path
    default: []
  restore_items:
    description: Whether to restore the quarantined items (false to only remove empty directories).
    type: bool
    default: true
  remove_empty_dirs:
    description:
      - Directories the run created (the venv root) to remove again, deepest first, only when empty
        (C(rmdir)); one that is not empty is left as it is.
    type: list
    elements: path
    default: []
author: remediator
"""

EXAMPLES = r"""
- name: Restore what run 20260101T000000Z-abcdef moved
  remediator_restore:
    run_id: 20260101T000000Z-abcdef
"""

RETURN = r"""
restored:
  description: Original paths put back by this call.
  type: list
  returned: always
conflicts:
  description: Items left in quarantine, with why.
  type: list
  returned: always
packages:
  description: The manifest's package records (for the rollback playbook to reinstall or remove).
  type: list
  returned: always
changes:
  description: The manifest's change records (links, venvs, pins).
  type: list
  returned: always
removed_dirs:
  description: Empty directories removed.
  type: list
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.remediator.gpu.plugins.module_utils.remediator_common import (
    Unsafe,
    check_real_path,
    fsync_dir,
    lexists_at,
    load_manifest,
    locate,
    module_run_dir,
    move_at,
    now,
    open_dir,
    same_content_at,
    write_manifest,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            run_id=dict(type="str", required=True),
            root=dict(type="path", default="/var/lib/remediator/quarantine"),
            managed_roots=dict(type="list", elements="path", default=[]),
            restore_items=dict(type="bool", default=True),
            remove_empty_dirs=dict(type="list", elements="path", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    directory = module_run_dir(module)
    doc = load_manifest(directory)
    if doc is None:
        module.fail_json(msg="no quarantine manifest for run %s under %s" % (p["run_id"], p["root"]))
    managed = tuple(p["managed_roots"])
    items_fd = None
    if p["restore_items"] and doc["items"]:
        try:
            items_fd = open_dir(os.path.realpath(os.path.join(directory, "items")), allow_sticky=True,
                                missing_ok=True)
        except Unsafe as exc:
            module.fail_json(msg="refused: the quarantine: %s" % exc)

    # Each original's parent is resolved and opened once (without following symlinks, every directory on the way
    # owned by us and writable by no one else); the item is checked and put back through that fd only.
    todo, conflicts = [], []
    for item in reversed(doc["items"] if p["restore_items"] else []):
        original = item["original_path"]
        stored = os.path.basename(item["stored_as"])
        if item["state"] == "restored":
            continue
        kept = items_fd is not None and lexists_at(items_fd, stored)
        if item["state"] == "pending" and os.path.lexists(original) and not kept:
            continue  # never moved: nothing to restore
        ok, why = check_real_path(original, managed)
        parent_fd = None
        if ok:
            try:
                real_parent, leaf = locate(original, managed)
                parent_fd = open_dir(real_parent, missing_ok=True)
            except Unsafe as exc:
                ok, why = False, str(exc)
        if not ok:
            conflicts.append({"path": original, "why": "refused: " + why})
            continue
        here = parent_fd is not None and lexists_at(parent_fd, leaf)
        if item["state"] == "pending" and not here and kept:
            item["state"] = "moved"  # the apply run died after the move, before recording it
        if here:
            try:
                same = not kept and same_content_at(item, parent_fd, leaf, original)
            except (Unsafe, OSError) as exc:
                conflicts.append({"path": original, "why": "refused: %s" % exc})
                continue
            finally:
                os.close(parent_fd)
            if same:
                todo.append((item, "mark", real_parent, leaf))  # a killed rollback moved it back already
            else:
                conflicts.append({"path": original, "why": "something else is there now; left in quarantine"})
            continue
        if parent_fd is not None:
            os.close(parent_fd)
        if not kept:
            conflicts.append({"path": original, "why": "stored copy %s/%s is missing" % (directory, item["stored_as"])})
            continue
        todo.append((item, "move", real_parent, leaf))

    dirs = [d for d in sorted(set(p["remove_empty_dirs"]), key=lambda d: d.count("/"), reverse=True)
            if d.startswith("/") and d.count("/") >= 2 and os.path.normpath(d) == d]
    empty = [d for d in dirs if os.path.isdir(d) and not os.path.islink(d) and not os.listdir(d)]
    diff = {"before": "".join("%s/%s\n" % (directory, t[0]["stored_as"]) for t in todo)
            + "".join("%s/\n" % d for d in empty),
            "after": "".join("%s\n" % t[0]["original_path"] for t in todo)}
    if module.check_mode:
        module.exit_json(changed=bool(todo or empty), restored=[t[0]["original_path"] for t in todo],
                         conflicts=conflicts, removed_dirs=empty, packages=doc["packages"], changes=doc["changes"],
                         diff=diff)
    removed_dirs = []
    for d in dirs:  # deepest first: a parent is empty once its created child is gone
        try:
            os.rmdir(d)
        except OSError:
            continue
        fsync_dir(os.path.dirname(d))
        removed_dirs.append(d)

    restored = []
    for item, how, real_parent, leaf in todo:
        original = item["original_path"]
        if how == "move":
            try:
                # Made again where a run took the directories away (a toolkit whose lib64 was quarantined whole).
                parent_fd = open_dir(real_parent, create=0o755)
                move_at(items_fd, os.path.basename(item["stored_as"]), parent_fd, leaf, item,
                        "%s/%s" % (directory, item["stored_as"]))
                same = same_content_at(item, parent_fd, leaf, original)
                os.close(parent_fd)
            except (Unsafe, OSError) as exc:
                conflicts.append({"path": original, "why": "moving back failed: %s" % exc})
                continue
            if not same:
                conflicts.append({"path": original, "why": "restored, but it differs from the manifest record"})
                continue
        item["state"] = "restored"
        item["restored_at"] = now()
        write_manifest(directory, doc)
        restored.append(original)

    result = dict(changed=bool(restored or removed_dirs), restored=restored, conflicts=conflicts,
                  removed_dirs=removed_dirs, packages=doc["packages"], changes=doc["changes"], diff=diff)
    if conflicts:
        module.fail_json(msg="%d item(s) left in quarantine: %s" % (
            len(conflicts), "; ".join("%s (%s)" % (c["path"], c["why"]) for c in conflicts)), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
