"""Facts gathered by Ansible: the `remediator.gpu.gpu_facts` module's documents, read back from Ansible's
jsonfile fact cache or from a file a play saved, for `remediate plan --facts` and `remediate drift --facts`.

The module returns the probe's own document as the fact `remediator_gpu`; this reads it and hands it to the
same parser the SSH probe's output goes through (remediator.probe.parse, the shape in docs/facts-schema.json),
so a plan from the cache is the plan `remediate plan -i` makes on the same hosts.

Everything here is untrusted: a cache directory is written by whoever runs the gathering play, and every
value in it came from a host. Files are opened without following symlinks (a link is read only when it
stays inside the directory), read only when they are regular files and at most MAX_FILE_BYTES, and the host
name a file stands for (its name) must be a plain inventory host name. A host whose entry is broken, too
old or lacks `remediator_gpu` gets its own error; a file that is no host's is reported and skipped.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from remediator.errors import InputError
from remediator.facts import HostFacts, load_facts_file
from remediator.fleet import FleetResult, HostResult
from remediator.probe.parse import MAX_OUTPUT_BYTES, ProbeError, parse_probe_document

#: The fact the gpu_facts module sets.
FACT_NAME = "remediator_gpu"
#: A cache entry holds the probe document (at most MAX_OUTPUT_BYTES, as over SSH) and whatever else was
#: gathered (setup's facts: some 100 KiB), JSON-escaped once more by ansible-core >= 2.19.
MAX_FILE_BYTES = MAX_OUTPUT_BYTES + MAX_OUTPUT_BYTES // 2
#: Files looked at in one directory: far above any fleet, far below what would exhaust memory.
MAX_ENTRIES = 200_000
#: ansible-core's default fact_caching_timeout: older entries are expired to Ansible too.
DEFAULT_MAX_AGE = 86400
# An inventory host name as a file name: no path separators, no control characters, no leading dot.
_HOST_RE = re.compile(r"[A-Za-z0-9_\[][A-Za-z0-9_.:@%\[\]+-]{0,252}")
# ansible-core >= 2.19 keys its cache with the serialization schema (`s1_<host>`) and wraps each entry as
# {"__payload__": "<json>"} (ansible/_internal/_plugins/_cache.py); older versions write `<host>` as plain JSON.
_SCHEMA_PREFIX_RE = re.compile(r"s[0-9]{1,4}_")
_PAYLOAD_KEY = "__payload__"


#: docs/facts-schema.json (a unit test keeps the two equal): the probe document's shape, checked on every
#: gathered document before the parser reads it; the parser then checks every field it uses.
DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema_version", "probe"],
    "properties": {
        "schema_version": {"const": 1},
        "probe": {
            "type": "object",
            "properties": {
                "script": {"type": "string"},
                "python": {"type": "string"},
                "executable": {"type": ["string", "null"]},
                "root": {"type": "string"},
                "uid": {"type": ["integer", "null"]},
                "collected_at": {"type": "string"},
                "duration_s": {"type": "number"},
            },
        },
        "os": {
            "$ref": "#/$defs/object_or_null",
            "properties": {
                "os_release": {"type": ["string", "null"]},
                "kernel": {"type": ["string", "null"]},
                "arch": {"type": ["string", "null"]},
            },
        },
        "ld_so_conf": {"$ref": "#/$defs/objects"},
        "ld_library_path": {"type": ["array", "null"]},
        "ldconfig": {"$ref": "#/$defs/object_or_null"},
        "alternatives": {"type": ["array", "null"]},
        "toolkits": {"$ref": "#/$defs/objects"},
        "default_toolkit": {"$ref": "#/$defs/object_or_null"},
        "installer_logs": {"type": ["array", "null"]},
        "pythons": {"$ref": "#/$defs/objects"},
        "running_python": {"$ref": "#/$defs/object_or_null"},
        "envs": {"$ref": "#/$defs/objects"},
        "driver": {
            "$ref": "#/$defs/object_or_null",
            "properties": {
                "nvml": {"$ref": "#/$defs/object_or_null"},
                "nvidia_smi": {"type": ["array", "object", "null"]},
                "proc_version": {"type": ["string", "object", "null"]},
                "proc_gpus": {"type": ["array", "null"]},
                "pci": {"type": ["array", "null"]},
            },
        },
        "packages": {
            "$ref": "#/$defs/object_or_null",
            "properties": {"dpkg": {"$ref": "#/$defs/object_or_null"}, "rpm": {"$ref": "#/$defs/object_or_null"}},
        },
        "lib_dirs": {"$ref": "#/$defs/objects"},
        "headers": {"type": ["array", "null"]},
        "launch_envs": {"$ref": "#/$defs/objects"},
        "libdirs": {"$ref": "#/$defs/objects"},
        "notes": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "required": ["where", "message"],
                "properties": {"where": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "unread": {"type": ["array", "null"], "items": {"type": "string"}},
    },
    "$defs": {
        "object_or_null": {"type": ["object", "null"]},
        "objects": {"type": ["array", "null"], "items": {"type": "object"}},
    },
}


@dataclass(frozen=True)
class Skipped:
    """A file of a facts directory that is no host's entry, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class GatheredFacts:
    """What a facts file or directory held: one result per host (ok, or failed with why), files skipped."""

    fleet: FleetResult[HostFacts]
    skipped: tuple[Skipped, ...] = ()

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(r.host for r in self.fleet.results)


def load_gathered(path: str, *, hosts: Sequence[str] | None = None, max_age: float = DEFAULT_MAX_AGE,
                  now: float | None = None) -> GatheredFacts:
    """Read `path`: a fact cache directory (or `ansible -t` tree), or one file.

    A file is a `remediate probe --out` file, one host's Ansible facts (`{"remediator_gpu": ...}` or a
    module result `{"ansible_facts": {...}}`, the host named by the file), one cache entry, or a mapping of
    host name to such facts (a play that saved `hostvars`). `hosts`: the hosts wanted (from an inventory);
    one without an entry fails alone. `max_age`: seconds after which a directory's entry is expired, by
    its modification time as Ansible judges it (0: never).
    """
    now = time.time() if now is None else now
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        entries, skipped = _read_dir(path, max_age, now)
    elif stat.S_ISREG(st.st_mode) and st.st_size > MAX_FILE_BYTES:
        # Too big for one host's entry: a `remediate probe --out` file of a large fleet, read as ever.
        entries, skipped = {f.host: f for f in load_facts_file(path)}, []
    elif stat.S_ISREG(st.st_mode):
        entries, skipped = _read_file(path), []
    else:
        raise InputError(path, "neither a regular file nor a directory")
    results = _select(entries, hosts, path, skipped)
    return GatheredFacts(FleetResult(tuple(results)), tuple(skipped))


# --- one entry ------------------------------------------------------------------------------------


def facts_from_entry(entry: Any, host: str, where: str) -> HostFacts:
    """HostFacts from one host's Ansible facts (a cache entry, a module result or a hostvars dict)."""
    doc = _document(entry, where)
    problem = schema_problem(doc, DOCUMENT_SCHEMA)
    if problem is not None:
        raise InputError(where, f"{FACT_NAME}: {problem}", hint="not a document of remediator.gpu.gpu_facts "
                         "(docs/facts-schema.json); gather again with this remediate's collection")
    try:
        return parse_probe_document(doc, host=host)
    except ProbeError as exc:
        raise InputError(where, exc.message, hint=exc.hint) from None


def schema_problem(value: Any, schema: Mapping[str, Any], path: str = "") -> str | None:
    """What in `value` breaks `schema`, or None. The JSON Schema subset docs/facts-schema.json uses: type,
    const, required, properties, items and local $ref."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target: Any = DOCUMENT_SCHEMA
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        problem = schema_problem(value, target, path)
        if problem is not None:
            return problem
    where = path or "<document>"
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):
        return f"{where}: must be {schema['const']!r}, not {value!r}"[:300]
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, t) for t in allowed):
            return f"{where}: expected {' or '.join(allowed)}, got {_json_type(value)}"
    if isinstance(value, Mapping):
        for key in schema.get("required", ()):
            if key not in value:
                return f"{where}: {key} is missing"
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                problem = schema_problem(value[key], sub, f"{path}.{key}" if path else key)
                if problem is not None:
                    return problem
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            problem = schema_problem(item, schema["items"], f"{path}[{i}]")
            if problem is not None:
                return problem
    return None


def _is_type(value: Any, name: str) -> bool:
    return _json_type(value) == name or (name == "number" and _json_type(value) == "integer")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, Mapping) else type(value).__name__


def _document(entry: Any, where: str) -> Any:
    if isinstance(entry, Mapping) and set(entry) == {_PAYLOAD_KEY} and isinstance(entry[_PAYLOAD_KEY], str):
        entry = _loads(entry[_PAYLOAD_KEY], where)
    if not isinstance(entry, Mapping):
        raise InputError(where, f"expected an object of facts, got {type(entry).__name__}")
    # As the module set it, in Ansible's `ansible_facts` namespace, or injected with Ansible's `ansible_` prefix.
    for candidate in (entry.get(FACT_NAME), _get(entry.get("ansible_facts"), FACT_NAME),
                      entry.get("ansible_" + FACT_NAME)):
        if candidate is not None:
            return candidate
    raise InputError(where, f"no {FACT_NAME} fact",
                     hint="gather it with the remediator.gpu.gpu_facts module (docs/scale.md)")


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def _is_facts(value: Any) -> bool:
    if isinstance(value, Mapping) and set(value) == {_PAYLOAD_KEY}:
        return True
    return isinstance(value, Mapping) and (
        FACT_NAME in value or "ansible_" + FACT_NAME in value or isinstance(value.get("ansible_facts"), Mapping))


def _loads(text: str | bytes, where: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # ValueError: also a UnicodeDecodeError
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deep" \
            if isinstance(exc, RecursionError) else str(exc)
        raise InputError(where, f"not valid JSON ({reason})") from None


# --- a file -------------------------------------------------------------------------------------


# host -> (facts, or the error that host gets)
_Entries = dict[str, "HostFacts | InputError"]


def _read_file(path: str) -> _Entries:
    data = _loads(_read_bounded(path, path), path)
    name = os.path.basename(path)
    if _is_facts(data):
        host = _host_of(name.removesuffix(".json"), data)
        if host is None:
            raise InputError(path, f"the file name {name!r} is not a host name",
                             hint="name one host's facts file after its inventory host name")
        return {host: _entry(data, host, path)}
    if isinstance(data, Mapping) and data and "schema_version" not in data and "hosts" not in data \
            and all(isinstance(v, Mapping) for v in data.values()) and any(_is_facts(v) for v in data.values()):
        out: _Entries = {}
        for host, value in data.items():
            where = f"{path}: {host}"
            out[str(host)] = (_entry(value, str(host), where) if _HOST_RE.fullmatch(str(host))
                              else InputError(where, "not a host name"))
        return out
    # What `remediate probe --out` writes (or one HostFacts document): read as ever.
    return {f.host: f for f in load_facts_file(path)}


def _entry(data: Any, host: str, where: str) -> HostFacts | InputError:
    try:
        return facts_from_entry(data, host, where)
    except InputError as exc:
        return exc


def _host_of(name: str, data: Any) -> str | None:
    """The host a cache file stands for: its name, less ansible-core's schema key prefix on a wrapped entry."""
    if isinstance(data, Mapping) and set(data) == {_PAYLOAD_KEY}:
        m = _SCHEMA_PREFIX_RE.match(name)
        if m:
            name = name[m.end():]
    return name if _HOST_RE.fullmatch(name) else None


# --- a directory --------------------------------------------------------------------------------


def _read_dir(path: str, max_age: float, now: float) -> tuple[_Entries, list[Skipped]]:
    entries: _Entries = {}
    skipped: list[Skipped] = []
    mtimes: dict[str, float] = {}
    real_dir = os.path.realpath(path)
    names = _list(path)
    for name in names:
        full = os.path.join(path, name)
        if name.startswith("."):  # Ansible's cache skips these too (temporary files, editors' droppings)
            continue
        why = _refusal(full, real_dir)
        if why is not None:
            skipped.append(Skipped(full, why))
            continue
        try:
            data = _loads(_read_bounded(full, full), full)
        except InputError as exc:
            m = _SCHEMA_PREFIX_RE.match(name)
            host = name[m.end():] if m else None
            if host is not None and _HOST_RE.fullmatch(host):  # ansible-core's entry of that host, broken
                entries[host] = exc
            else:  # some other file (or a pre-2.19 entry, broken): a host of the inventory that wants it is told
                skipped.append(Skipped(full, exc.message.removeprefix(f"{full}: ")))
            continue
        host = _host_of(name, data)
        if host is None:
            skipped.append(Skipped(full, "the file name is not a host name"))
            continue
        if not _is_facts(data):
            skipped.append(Skipped(full, "not an Ansible facts entry"))
            continue
        mtime = _mtime(full)
        if mtimes.get(host, -1.0) > mtime:  # `s1_gpu01` beside a pre-2.19 `gpu01`: the newer entry counts
            continue
        mtimes[host] = mtime
        age = now - mtime
        if max_age and age > max_age:
            entries[host] = InputError(full, f"the cached facts are {int(age)}s old, more than --facts-max-age "
                                             f"{int(max_age)}s", hint="gather again, or raise --facts-max-age")
            continue
        entries[host] = _entry(data, host, full)
    return dict(sorted(entries.items())), skipped


def _list(path: str) -> list[str]:
    names: list[str] = []
    try:
        with os.scandir(path) as it:
            for item in it:
                names.append(item.name)
                if len(names) > MAX_ENTRIES:
                    raise InputError(path, f"more than {MAX_ENTRIES} entries: not a fact cache")
    except OSError as exc:
        raise InputError(path, f"cannot list: {exc.strerror or exc}") from None
    return sorted(names)


def _refusal(full: str, real_dir: str) -> str | None:
    try:
        st = os.lstat(full)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(full)
        if os.path.dirname(real) != real_dir:
            return "a symlink out of the directory: not read"
        try:
            st = os.stat(real)
        except OSError as exc:
            return f"cannot read: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _read_bounded(path: str, where: str) -> bytes:
    """At most MAX_FILE_BYTES of a regular file: not following a last-component symlink (resolved inside the
    directory beforehand), never blocking on a FIFO."""
    real = os.path.realpath(path) if os.path.islink(path) else path
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        reason = "a symlink" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
        raise InputError(where, f"cannot read: {reason}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(where, "not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise InputError(where, f"{st.st_size} bytes, more than the {MAX_FILE_BYTES} a facts entry may have")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, MAX_FILE_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_FILE_BYTES:
                raise InputError(where, f"more than the {MAX_FILE_BYTES} bytes a facts entry may have")
        return b"".join(chunks)
    except OSError as exc:
        raise InputError(where, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


# --- choosing hosts -----------------------------------------------------------------------------


def _select(entries: _Entries, hosts: Sequence[str] | None, path: str,
            skipped: Sequence[Skipped]) -> list[HostResult[HostFacts]]:
    unread = {os.path.basename(s.path): s for s in skipped}
    names: Iterable[str] = hosts if hosts is not None else list(entries)  # a directory's sorted by host
    out: list[HostResult[HostFacts]] = []
    for name in names:
        got = entries.get(name)
        if got is None and name in unread:
            out.append(HostResult(name, "failed", error=f"{unread[name].path}: {unread[name].reason}"))
        elif got is None:
            out.append(HostResult(name, "failed", error=f"no facts for this host in {path}",
                                  hint="gather them with the remediator.gpu.gpu_facts module (docs/scale.md)"))
        elif isinstance(got, InputError):
            out.append(HostResult(name, "failed", error=got.message, hint=got.hint))
        else:
            out.append(HostResult(name, "ok", value=got))
    return out


__all__ = ["DEFAULT_MAX_AGE", "FACT_NAME", "MAX_FILE_BYTES", "GatheredFacts", "Skipped", "facts_from_entry",
           "load_gathered"]
