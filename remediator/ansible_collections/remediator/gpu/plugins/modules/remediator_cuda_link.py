#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Point /usr/local/cuda (a plain symlink or an update-alternatives group) at a toolkit, recording the old one.

The change is written to the run's manifest (before/after) before the link moves, so rollback.yml can
point it back; the link is replaced atomically (a new symlink renamed over the old one).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: remediator_cuda_link
short_description: Point the CUDA link at a toolkit and record what it pointed at
description:
  - With I(via_alternatives=false) the link is a symlink replaced atomically; with true the
    update-alternatives group (default C(cuda)) is set, registering the target first if needed.
  - The link must be C(/usr/local/cuda) or C(/usr/local/cuda-N) and the target an existing
    toolkit directory on the allowlist, checked on the host.
  - I(state=absent) removes the link only when it is a symlink to I(target) (one remediate made).
options:
  link:
    description: The link.
    type: path
    default: /usr/local/cuda
  target:
    description: The toolkit directory the link should reach.
    type: path
    required: true
  via_alternatives:
    description: Whether the link is managed through update-alternatives.
    type: bool
    default: false
  alternatives_name:
    description: The alternatives group.
    type: str
    default: cuda
  state:
    description: C(present) points the link at I(target); C(absent) removes a link to I(target).
    type: str
    choices: [present, absent]
    default: present
  run_id:
    description: The run whose manifest records the change (none recorded when omitted).
    type: str
  root:
    description: The quarantine root.
    type: path
    default: /var/lib/remediator/quarantine
  host:
    description: The host's name, for a new manifest.
    type: str
    default: ''
author: remediator
"""

EXAMPLES = r"""
- name: Point /usr/local/cuda at 11.2
  remediator_cuda_link:
    target: /usr/local/cuda-11.2
    run_id: 20260101T000000Z-abcdef
"""

RETURN = r"""
before:
  description: Where the link pointed before (null when there was none).
  type: str
  returned: always
after:
  description: Where it points now.
  type: str
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.remediator.gpu.plugins.module_utils.remediator_common import (
    check_path,
    empty_manifest,
    fsync_dir,
    load_manifest,
    module_run_dir,
    now,
    write_manifest,
)


def _current(link, via_alternatives, name):
    if via_alternatives:
        alt = os.path.join("/etc/alternatives", name)
        return os.readlink(alt) if os.path.islink(alt) else None
    return os.readlink(link) if os.path.islink(link) else None


def _record(module, p, before, after):
    if not p["run_id"]:
        return
    directory = module_run_dir(module)
    doc = load_manifest(directory) or empty_manifest(p["run_id"], p["host"])
    for rec in doc["changes"]:
        if rec.get("kind") == "cuda_link" and rec.get("path") == p["link"]:
            if rec.get("after") == after:
                return
            rec["after"] = after  # keep the first `before`: that is what rollback restores
            rec["updated_at"] = now()
            break
    else:
        doc["changes"].append({"kind": "cuda_link", "path": p["link"], "before": before, "after": after,
                               "via_alternatives": p["via_alternatives"],
                               "alternatives_name": p["alternatives_name"], "state": "done",
                               "recorded_at": now()})
    write_manifest(directory, doc)


def _symlink_atomic(target, link):
    tmp = link + ".remediator-new"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.rename(tmp, link)
    fsync_dir(os.path.dirname(link))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            link=dict(type="path", default="/usr/local/cuda"),
            target=dict(type="path", required=True),
            via_alternatives=dict(type="bool", default=False),
            alternatives_name=dict(type="str", default="cuda"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            run_id=dict(type="str"),
            root=dict(type="path", default="/var/lib/remediator/quarantine"),
            host=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    p = module.params
    link, target = p["link"], p["target"]
    ok, why = check_path(link)
    if not ok or why != "CUDA link":
        module.fail_json(msg="refused: %s is not a CUDA link (%s)" % (link, why))
    ok, why = check_path(target)
    real = os.path.realpath(target)
    if not ok or why != "toolkit dir" or check_path(real)[1] != "toolkit dir":
        module.fail_json(msg="refused: %s (really %s) is not a toolkit directory on the allowlist" % (target, real))
    if os.path.lexists(link) and not os.path.islink(link):
        module.fail_json(msg="refused: %s is a real %s, not a link; quarantine it first"
                             % (link, "directory" if os.path.isdir(link) else "file"))
    before = _current(link, p["via_alternatives"], p["alternatives_name"])

    if p["state"] == "absent":
        gone = before is None or before != target
        if gone:
            module.exit_json(changed=False, before=before, after=before)
        if not module.check_mode:
            os.unlink(link)
            fsync_dir(os.path.dirname(link))
        module.exit_json(changed=True, before=before, after=None,
                         diff={"before": "%s -> %s\n" % (link, before), "after": "%s absent\n" % link})

    if not os.path.isdir(target):
        module.fail_json(msg="%s does not exist on this host" % target)
    if before == target:
        module.exit_json(changed=False, before=before, after=target)
    diff = {"before": "%s -> %s\n" % (link, before), "after": "%s -> %s\n" % (link, target)}
    if module.check_mode:
        module.exit_json(changed=True, before=before, after=target, diff=diff)
    _record(module, p, before, target)
    if p["via_alternatives"]:
        name = p["alternatives_name"]
        rc, _out, err = module.run_command(["update-alternatives", "--set", name, target])
        if rc != 0:
            rc, _out, err = module.run_command(["update-alternatives", "--install", link, name, target, "0"])
            if rc == 0:
                rc, _out, err = module.run_command(["update-alternatives", "--set", name, target])
        if rc != 0:
            module.fail_json(msg="update-alternatives failed: %s" % err.strip())
    else:
        _symlink_atomic(target, link)
    module.exit_json(changed=True, before=before, after=target, diff=diff)


if __name__ == "__main__":
    main()
