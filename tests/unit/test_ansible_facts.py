"""Facts gathered by Ansible (remediator.gpu.gpu_facts) read back from a fact cache or a saved file.

Documents are made by the real probe code (the collection's gpu_probe, run on an empty --root tree) and, in
one test, by a real `ansible` run of the module writing Ansible's own jsonfile cache. The cache directories
of the hostile tests are laid out as a careless or hostile gatherer could leave them.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hostscripts import gpu_probe

from remediator.ansible_facts import DOCUMENT_SCHEMA, FACT_NAME, MAX_FILE_BYTES, load_gathered
from remediator.apply import collection_dir
from remediator.cli import main
from remediator.errors import InputError
from remediator.probe.parse import parse_probe_document

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs" / "facts-schema.json").read_text())
VENV_BIN = Path(sys.executable).parent


GPU_PROBE = gpu_probe()


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("root")
    (root / "etc").mkdir()
    (root / "etc" / "os-release").write_text('ID=ubuntu\nVERSION_ID="22.04"\nPRETTY_NAME="Ubuntu 22.04"\n')
    options = dict(GPU_PROBE.DEFAULT_OPTIONS, root=str(root), nvml=False, venv_roots=["/opt"])
    doc: dict[str, Any] = GPU_PROBE.Probe(options).collect()
    return doc


def _entry_219(doc: dict[str, Any], **more: Any) -> str:
    """A cache entry as ansible-core >= 2.19 writes it: the facts JSON-encoded under __payload__."""
    return json.dumps({"__payload__": json.dumps({FACT_NAME: doc, **more})})


def test_schema_file_is_the_one_the_loader_checks_and_real_documents_pass(document) -> None:  # type: ignore[no-untyped-def]
    assert {k: v for k, v in SCHEMA.items() if k not in ("$schema", "$id", "title", "description")} == DOCUMENT_SCHEMA
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(document, SCHEMA)


@pytest.mark.parametrize(("field", "value"), [
    ("schema_version", 2), ("probe", None), ("pythons", "x"), ("launch_envs", [None]), ("toolkits", {}),
    ("notes", [{"where": 1, "message": "m"}]), ("driver", [])])
def test_documents_the_schema_rejects_fail_their_host(tmp_path, document, field, value) -> None:  # type: ignore[no-untyped-def]
    bad = copy.deepcopy(document)
    bad[field] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)
    (tmp_path / "s1_gpu01").write_text(_entry_219(bad))
    result = load_gathered(str(tmp_path)).fleet["gpu01"]
    assert result.status == "failed"
    assert field in (result.error or "")


def test_cache_of_both_ansible_layouts(tmp_path, document) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "s1_gpu01").write_text(_entry_219(document, ansible_distribution="Ubuntu"))
    (tmp_path / "gpu02").write_text(json.dumps({FACT_NAME: document}))  # ansible-core < 2.19
    (tmp_path / "gpu03").write_text(json.dumps({"ansible_facts": {FACT_NAME: document}, "changed": False}))
    got = load_gathered(str(tmp_path))
    assert got.hosts == ("gpu01", "gpu02", "gpu03")
    for r in got.fleet:
        assert r.status == "ok", r
        assert r.value == parse_probe_document(document, host=r.host)
    assert got.skipped == ()


def test_inventory_hosts_without_an_entry_fail_alone(tmp_path, document) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "s1_gpu01").write_text(_entry_219(document))
    (tmp_path / "s1_gpu02").write_text(_entry_219(document).replace(FACT_NAME, "other_fact"))
    got = load_gathered(str(tmp_path), hosts=["gpu01", "gpu02", "gpu09"])
    assert [(r.host, r.status) for r in got.fleet] == [("gpu01", "ok"), ("gpu02", "failed"), ("gpu09", "failed")]
    assert "no remediator_gpu fact" in (got.fleet["gpu02"].error or "")
    assert "remediator.gpu.gpu_facts" in (got.fleet["gpu02"].hint or "")
    assert f"no facts for this host in {tmp_path}" == got.fleet["gpu09"].error


def test_expired_entries_fail_as_ansible_would_expire_them(tmp_path, document) -> None:  # type: ignore[no-untyped-def]
    entry = tmp_path / "s1_gpu01"
    entry.write_text(_entry_219(document))
    old = time.time() - 90_000
    os.utime(entry, (old, old))
    r = load_gathered(str(tmp_path)).fleet["gpu01"]
    assert r.status == "failed" and "more than --facts-max-age 86400s" in (r.error or "")
    assert load_gathered(str(tmp_path), max_age=0).fleet["gpu01"].status == "ok"


def test_hostile_cache(tmp_path, document) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache"
    cache.mkdir()
    marker = tmp_path / "templated"
    payload = "{{ lookup('pipe', 'touch " + str(marker) + "') }}{% if 1 %}x{% endif %}"
    hostile = copy.deepcopy(document)
    hostile["os"]["os_release"] = f'ID=ubuntu\nVERSION_ID="22.04"\nPRETTY_NAME="{payload}"\n'
    hostile["os"]["kernel"] = payload
    (cache / "s1_templated").write_text(_entry_219(hostile))
    # a file as big as a cache entry may not be: never read (sparse, so the test writes nothing)
    with open(cache / "s1_huge", "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    outside = tmp_path / "outside"
    outside.write_text(_entry_219(document))
    (cache / "s1_linked").symlink_to(outside)
    (cache / "s1_inside").symlink_to(cache / "s1_templated")  # a link inside the directory is an entry
    (cache / "s1_badjson").write_text('{"__payload__": "{not json')
    (cache / "not a host; rm -rf").write_text(_entry_219(document))
    (cache / "-rf").write_text(_entry_219(document))
    (cache / "README").write_text("this directory holds Ansible's fact cache\n")
    os.mkfifo(cache / "s1_fifo")  # never opened for reading in a way that blocks
    (cache / "subdir").mkdir()
    got = load_gathered(str(cache))
    by_host = {r.host: r for r in got.fleet}
    assert sorted(by_host) == ["badjson", "huge", "inside", "templated"]  # README: skipped, see below
    facts = by_host["templated"].value
    assert facts is not None
    assert facts.os.pretty_name == payload and facts.os.kernel == payload  # data, kept literally
    assert by_host["inside"].status == "ok"
    assert by_host["huge"].status == "failed" and "more than the" in (by_host["huge"].error or "")
    assert by_host["badjson"].status == "failed" and "not valid JSON" in (by_host["badjson"].error or "")
    skipped = {Path(s.path).name: s.reason for s in got.skipped}
    assert skipped == {
        "s1_linked": "a symlink out of the directory: not read",
        "not a host; rm -rf": "the file name is not a host name",
        "-rf": "the file name is not a host name",
        "README": "not valid JSON (Expecting value)",
        "s1_fifo": "not a regular file",
        "subdir": "not a regular file",
    }
    assert not marker.exists()
    # A host the inventory names whose file was skipped is told why.
    wanted = load_gathered(str(cache), hosts=["README", "-rf"]).fleet
    assert wanted["README"].error == f"{cache / 'README'}: not valid JSON (Expecting value)"
    assert wanted["-rf"].error == f"{cache / '-rf'}: the file name is not a host name"


def test_plan_from_a_hostile_cache_says_what_is_wrong_per_host(tmp_path, document, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "s1_gpu01").write_text(_entry_219(document))
    (tmp_path / "s1_gpu02").write_text("[1, 2")
    rc = main(["plan", "--facts", str(tmp_path), "--format", "json"])
    out, err = capsys.readouterr()
    plan = json.loads(out)
    assert rc == 1
    hosts = {h["host"]: h for h in plan["hosts"]}
    assert hosts["gpu01"]["status"] == "blocked"  # no driver on an empty tree
    assert hosts["gpu02"]["status"] == "unreachable" and "not valid JSON" in hosts["gpu02"]["error"]
    assert "Traceback" not in err


def test_plan_facts_needs_a_source_and_limit_needs_an_inventory(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["plan"]) == 1
    assert "give -i/--inventory" in capsys.readouterr().err
    assert main(["plan", "--facts", str(tmp_path), "--limit", "gpu01"]) == 1
    assert "--limit needs -i/--inventory" in capsys.readouterr().err
    assert main(["plan", "--facts", str(tmp_path / "absent")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_saved_hostvars_file_and_one_host_file(tmp_path, document) -> None:  # type: ignore[no-untyped-def]
    saved = tmp_path / "hostvars.json"
    saved.write_text(json.dumps({"gpu01": {"ansible_facts": {FACT_NAME: document}},
                                 "gpu02": {"inventory_hostname": "gpu02"}}))
    got = load_gathered(str(saved))
    assert [(r.host, r.status) for r in got.fleet] == [("gpu01", "ok"), ("gpu02", "failed")]
    one = tmp_path / "gpu07.json"
    one.write_text(json.dumps({FACT_NAME: document}))
    assert [(r.host, r.status) for r in load_gathered(str(one)).fleet] == [("gpu07", "ok")]
    bad_name = tmp_path / "gpu 07"
    bad_name.write_text(json.dumps({FACT_NAME: document}))
    with pytest.raises(InputError, match="is not a host name"):
        load_gathered(str(bad_name))


def test_real_ansible_run_of_the_module_fills_the_cache_with_the_probes_document(tmp_path, document) -> None:  # type: ignore[no-untyped-def]
    """`ansible -m remediator.gpu.gpu_facts` (real ansible-core, this machine as the host) writes Ansible's own
    jsonfile cache; read back, it is the document the probe makes with the same options, field for field
    but for the timings and the clock."""
    cache = tmp_path / "cache"
    root = document["probe"]["root"]
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collection_dir().parents[2]),
           "ANSIBLE_CACHE_PLUGIN": "jsonfile", "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(cache),
           "ANSIBLE_GATHERING": "explicit", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_PYTHON_INTERPRETER": sys.executable}
    proc = subprocess.run(
        [str(VENV_BIN / "ansible"), "localhost", "-m", "remediator.gpu.gpu_facts", "--check",
         "-a", json.dumps({"venv_roots": ["/opt"], "nvml": False})],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = load_gathered(str(cache))
    assert got.hosts == ("localhost",) and got.fleet["localhost"].status == "ok"
    entry = json.loads(json.loads((cache / "s1_localhost").read_text())["__payload__"])[FACT_NAME]
    jsonschema.validate(entry, SCHEMA)
    assert root == entry["probe"]["root"] or entry["probe"]["root"] == "/"
    # The module probed "/" (it has no --root); the same probe code with its options gives the same keys.
    direct = GPU_PROBE.Probe(dict(GPU_PROBE.DEFAULT_OPTIONS, nvml=False, venv_roots=["/opt"])).collect()
    for doc in (entry, direct):
        for volatile in ("collected_at", "duration_s", "executable", "python"):
            doc["probe"].pop(volatile)  # the clock, and the interpreter each ran under
    assert sorted(entry) == sorted(direct)
    assert entry["os"] == direct["os"] and entry["toolkits"] == direct["toolkits"]


def test_drift_from_a_cache_without_an_inventory(tmp_path, document, capsys) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "s1_gpu01").write_text(_entry_219(document))
    (cache / "s1_gpu02").write_text(_entry_219(document).replace(FACT_NAME, "other_fact"))
    db = str(tmp_path / "state.db")
    rc = main(["drift", "--facts", str(cache), "--baseline", "--state-db", db, "--format", "json"])
    hosts = {h["host"]: h for h in json.loads(capsys.readouterr().out)["hosts"]}
    assert rc == 1  # gpu02 has no facts: an error, as an unreachable host is
    assert hosts["gpu01"]["baseline"]["recorded_now"] is True
    assert hosts["gpu02"]["status"] == "failed" and "no remediator_gpu fact" in hosts["gpu02"]["error"]
    assert main(["drift", "--facts", str(cache), "--limit", "gpu01", "--state-db", db]) == 1
    assert "--limit needs -i/--inventory" in capsys.readouterr().err
