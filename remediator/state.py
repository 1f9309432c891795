"""The state store: an SQLite file that remembers every probe, plan, apply, verify and drift check per host.

It sits at the end of the flow: commands record what they saw and did, and `drift`, `history` and
`report` read it back. The file lives under the XDG state dir (or `--state-db` / REMEDIATE_STATE_DB).
Each record is one short `BEGIN IMMEDIATE` transaction in WAL mode with a busy timeout, so two commands
writing at once wait for each other instead of failing or losing a record. The schema carries its
version in `PRAGMA user_version` and is moved forward by ordered migration functions.

Facts are stored once per distinct content (keyed by a digest of their JSON without `collected_at`),
so a fleet probed every few hours does not store the same facts thousands of times.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from remediator.errors import RemediatorError
from remediator.facts import HostFacts
from remediator.plan import fingerprint

if TYPE_CHECKING:
    from remediator.drift import HostDrift
    from remediator.plan import Plan

ENV_VAR = "REMEDIATE_STATE_DB"
BUSY_TIMEOUT_MS = 30_000
EventKind = Literal["probe", "plan", "apply", "verify", "drift", "known-good"]
KnownGoodSource = Literal["verified-apply", "baseline"]


class StateError(RemediatorError):
    """The state store cannot be opened, read or written."""


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    """$REMEDIATE_STATE_DB, else $XDG_STATE_HOME/remediator/state.db, else ~/.local/state/remediator/state.db."""
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR):
        return Path(env[ENV_VAR]).expanduser()
    base = env.get("XDG_STATE_HOME") or ""
    # The XDG spec: a relative $XDG_STATE_HOME is invalid and must be ignored.
    root = Path(base) if base.startswith("/") else Path(env.get("HOME") or Path.home()) / ".local" / "state"
    return root / "remediator" / "state.db"


def switched_off(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """`--state-db off` or REMEDIATE_STATE_DB=off: record nothing, and say so to commands that must read."""
    value = path if path is not None else (os.environ if environ is None else environ).get(ENV_VAR, "")
    return os.fspath(value).strip().lower() == "off"


def new_run_id(now: float | None = None) -> str:
    """A sortable id for one command run: UTC time plus random bits (`20260510T120000Z-3f9a1c`)."""
    stamp = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.timezone.utc)
    return stamp.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).isoformat(timespec="seconds")


# --- schema and migrations ---------------------------------------------------------------------------


def _script(db: sqlite3.Connection, sql: str) -> None:
    # Not executescript(): it commits first, and a migration must run inside the caller's transaction.
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _v1_core(db: sqlite3.Connection) -> None:
    _script(db, """
        CREATE TABLE facts_blobs (
            digest TEXT PRIMARY KEY,
            json TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE probes (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            host TEXT NOT NULL,
            at REAL NOT NULL,
            status TEXT NOT NULL,
            facts_digest TEXT REFERENCES facts_blobs(digest),
            collected_at TEXT,
            fingerprint TEXT,
            error TEXT,
            duration_s REAL
        );
        CREATE INDEX probes_host_at ON probes(host, at);
        CREATE TABLE plans (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            host TEXT NOT NULL,
            at REAL NOT NULL,
            status TEXT NOT NULL,
            fingerprint TEXT,
            plan_json TEXT NOT NULL
        );
        CREATE INDEX plans_host_at ON plans(host, at);
        CREATE TABLE applies (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            host TEXT NOT NULL,
            at REAL NOT NULL,
            outcome TEXT NOT NULL,
            manifest_json TEXT,
            facts_digest TEXT REFERENCES facts_blobs(digest),
            collected_at TEXT
        );
        CREATE INDEX applies_host_at ON applies(host, at);
        CREATE TABLE verifies (
            id INTEGER PRIMARY KEY,
            run_id TEXT,
            host TEXT NOT NULL,
            at REAL NOT NULL,
            passed INTEGER NOT NULL,
            result_json TEXT NOT NULL,
            facts_digest TEXT REFERENCES facts_blobs(digest),
            collected_at TEXT
        );
        CREATE INDEX verifies_host_at ON verifies(host, at);
        CREATE TABLE drift_checks (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            host TEXT NOT NULL,
            at REAL NOT NULL,
            status TEXT NOT NULL,
            compliant INTEGER,
            drifted INTEGER NOT NULL,
            report_json TEXT NOT NULL
        );
        CREATE INDEX drift_checks_host_at ON drift_checks(host, at);
        CREATE TABLE known_good (
            id INTEGER PRIMARY KEY,
            host TEXT NOT NULL,
            at REAL NOT NULL,
            source TEXT NOT NULL,
            facts_digest TEXT NOT NULL REFERENCES facts_blobs(digest),
            collected_at TEXT,
            note TEXT
        );
        CREATE INDEX known_good_host_at ON known_good(host, at);
    """)


def _v2_runs(db: sqlite3.Connection) -> None:
    # One row per command run, so a report can say when the fleet was last checked and by what.
    _script(db, """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            command TEXT NOT NULL,
            started_at REAL NOT NULL,
            finished_at REAL,
            exit_status INTEGER,
            tool_version TEXT
        );
        CREATE INDEX runs_command_started ON runs(command, started_at);
    """)


#: MIGRATIONS[i] moves a database from schema version i to i + 1. Append only; never edit a shipped one.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1_core, _v2_runs)
SCHEMA_VERSION = len(MIGRATIONS)


# --- records read back ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One thing that happened to a host, as `remediate history` lists it."""

    at: float  # unix seconds
    kind: EventKind
    host: str
    run_id: str | None
    status: str  # probe: ok/failed/unreachable; plan: its status; apply: outcome; verify: passed/failed; ...
    summary: str
    data: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"at": iso(self.at), "at_unix": self.at, "kind": self.kind, "host": self.host,
                "run_id": self.run_id, "status": self.status, "summary": self.summary, "data": dict(self.data)}


@dataclass(frozen=True)
class ProbeRecord:
    host: str
    at: float
    run_id: str
    status: str
    facts: HostFacts | None
    error: str | None
    duration_s: float | None
    fingerprint: str | None = None  # remediator.plan.fingerprint of the facts, as recorded with them


@dataclass(frozen=True)
class KnownGood:
    host: str
    at: float
    source: KnownGoodSource
    facts: HostFacts


@dataclass(frozen=True)
class CheckRecord:
    """The latest drift check of a host, as the report and the metrics read it."""

    host: str
    at: float
    run_id: str
    status: str
    report: Mapping[str, Any]


@dataclass(frozen=True)
class VerifyRecord:
    host: str
    at: float
    passed: bool
    result: Mapping[str, Any]


# --- the store ----------------------------------------------------------------------------------------


class Store:
    """A connection to the state database. Open with `Store.open(path)`; close it (or use `with`)."""

    def __init__(self, db: sqlite3.Connection, path: Path, clock: Callable[[], float]) -> None:
        self._db = db
        self.path = path
        self._clock = clock

    # --- opening ---

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, clock: Callable[[], float] = time.time,
             migrations: Sequence[Callable[[sqlite3.Connection], None]] = MIGRATIONS) -> Store:
        """Open (creating it and its directory when missing) and migrate the store at `path`.

        A store switched off (`switched_off`) is a StateError here: recording commands check first and
        skip; commands that read it (history, report, drift's known-good) say it is off."""
        if switched_off(path):
            raise StateError(f"the state store is switched off ({ENV_VAR}=off): nothing to read or record",
                             hint=f"unset {ENV_VAR}, or pass --state-db FILE")
        target = Path(path) if path is not None else default_path()
        where = str(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StateError(f"state db {where}: cannot create its directory: {exc.strerror or exc}",
                             hint=f"choose another path with --state-db or {ENV_VAR}") from None
        try:
            # isolation_level=None: we issue BEGIN ourselves, so every transaction is explicit.
            db = sqlite3.connect(where, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except sqlite3.Error as exc:
            raise StateError(f"state db {where}: cannot open: {exc}",
                             hint=f"choose another path with --state-db or {ENV_VAR}") from None
        store = cls(db, target, clock)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            store._set_up(migrations)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StateError(f"state db {where}: {exc}",
                             hint="it is not a remediate state db, or it is damaged; move it aside") from None
        except BaseException:
            db.close()
            raise
        return store

    def _set_up(self, migrations: Sequence[Callable[[sqlite3.Connection], None]]) -> None:
        # Two commands creating the file at once can meet SQLITE_BUSY that SQLite reports without calling
        # the busy handler (while the other switches the file to WAL or runs the first migration): the
        # whole set-up is idempotent, so it is simply tried again until the busy timeout is spent.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                mode = self._enable_wal()
                if mode != "wal":
                    raise StateError(f"state db {self.path}: cannot switch to WAL mode (got {mode!r})",
                                     hint="put the state db on a local filesystem")
                # NORMAL is durable across application crashes in WAL mode; an OS crash may lose the last
                # commits.
                self._db.execute("PRAGMA synchronous = NORMAL")
                self._db.execute("PRAGMA foreign_keys = ON")
                self._migrate(migrations)
                return
            except (sqlite3.OperationalError, StateError) as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() > deadline:
                    raise
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                time.sleep(0.05)

    def _enable_wal(self) -> str:
        # SQLite answers with the old mode, rather than waiting, when another connection holds the lock
        # the switch needs (two commands creating the file at once): retry briefly. A filesystem without
        # WAL support answers the same way, so this gives up after a few seconds, not the busy timeout.
        deadline = time.monotonic() + 5
        while True:
            mode = str(self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            if mode == "wal" or time.monotonic() > deadline:
                return mode
            time.sleep(0.02)

    def _migrate(self, migrations: Sequence[Callable[[sqlite3.Connection], None]]) -> None:
        current = self.schema_version()
        if current > len(migrations):
            raise StateError(
                f"state db {self.path} has schema version {current}, newer than this remediate knows "
                f"({len(migrations)})", hint="upgrade remediate, or point --state-db at another file")
        if current == len(migrations):
            return
        with self._transaction():
            # Re-read under the write lock: another process may have migrated meanwhile.
            current = self.schema_version()
            for version in range(current, len(migrations)):
                migrations[version](self._db)
                self._db.execute(f"PRAGMA user_version = {version + 1}")

    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self._db.in_transaction:  # inside batch(): one transaction for many records
            yield self._db
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StateError(f"state db {self.path}: {exc}", hint="another command holds it too long; retry") \
                from None
        try:
            yield self._db
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StateError(f"state db {self.path}: cannot write: {exc}") from None
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise StateError(f"state db {self.path}: cannot commit: {exc}") from None

    @contextlib.contextmanager
    def batch(self) -> Iterator[Store]:
        """Many records in one transaction (a fleet's results): all are kept, or none."""
        with self._transaction():
            yield self

    def _now(self, at: float | None) -> float:
        return self._clock() if at is None else at

    def _write(self, sql: str, params: Sequence[Any]) -> int:
        try:
            with self._transaction() as db:
                cursor = db.execute(sql, params)
                return int(cursor.lastrowid or 0)
        except sqlite3.Error as exc:
            raise StateError(f"state db {self.path}: cannot write: {exc}") from None

    def _put_facts(self, facts: HostFacts) -> tuple[str, str]:
        """Store facts once per content; return (digest, collected_at)."""
        data = facts.to_dict()
        collected_at = str(data.pop("collected_at", ""))
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO facts_blobs(digest, json) VALUES (?, ?)", (digest, text))
        return digest, collected_at

    def _get_facts(self, digest: str | None, collected_at: str | None) -> HostFacts | None:
        if digest is None:
            return None
        row = self._db.execute("SELECT json FROM facts_blobs WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        data["collected_at"] = collected_at or ""
        return HostFacts.from_dict(data, source=f"{self.path}: facts {digest[:19]}")

    # --- recording ---

    def start_run(self, command: str, *, run_id: str | None = None, at: float | None = None) -> str:
        from remediator import __version__

        now = self._now(at)
        rid = run_id or new_run_id(now)
        self._write("INSERT OR IGNORE INTO runs(run_id, command, started_at, tool_version) VALUES (?, ?, ?, ?)",
                    (rid, command, now, __version__))
        return rid

    def finish_run(self, run_id: str, exit_status: int, *, at: float | None = None) -> None:
        self._write("UPDATE runs SET finished_at = ?, exit_status = ? WHERE run_id = ?",
                    (self._now(at), int(exit_status), run_id))

    def record_probe(self, run_id: str, host: str, result: HostFacts | str, duration_s: float | None = None,
                     *, status: str | None = None, at: float | None = None) -> int:
        """A probe of `host`: its facts, or the error (a string) when it gave none.

        `status` defaults to "ok" for facts and "failed" for an error; pass "unreachable" when it was.
        """
        with self._transaction():
            if isinstance(result, HostFacts):
                digest, collected = self._put_facts(result)
                return self._write(
                    "INSERT INTO probes(run_id, host, at, status, facts_digest, collected_at, fingerprint, "
                    "duration_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, host, self._now(at), status or "ok", digest, collected, fingerprint(result),
                     duration_s))
            return self._write(
                "INSERT INTO probes(run_id, host, at, status, error, duration_s) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, host, self._now(at), status or "failed", result, duration_s))

    def record_plan(self, plan: Plan, *, run_id: str | None = None, at: float | None = None) -> str:
        """Every host of a plan, one row each; returns the run id it was recorded under."""
        rid = run_id or new_run_id(self._now(at))
        with self._transaction():
            for h in plan.hosts:
                self._write("INSERT INTO plans(run_id, host, at, status, fingerprint, plan_json) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            (rid, h.host, self._now(at), h.status, h.fingerprint, json.dumps(h.to_dict())))
        return rid

    def record_apply(self, run_id: str, host: str, outcome: str, manifest: Mapping[str, Any] | None = None,
                     *, facts: HostFacts | None = None, at: float | None = None) -> int:
        """An apply's outcome on a host ("applied", "failed", "unreachable", "skipped", ...) and the
        quarantine manifest it wrote; `facts` are those read after the apply, when apply has them."""
        with self._transaction():
            digest, collected = self._put_facts(facts) if facts is not None else (None, None)
            return self._write(
                "INSERT INTO applies(run_id, host, at, outcome, manifest_json, facts_digest, collected_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, host, self._now(at), outcome, json.dumps(dict(manifest)) if manifest is not None else None,
                 digest, collected))

    def record_verify(self, host: str, result: Mapping[str, Any] | str, *, passed: bool | None = None,
                      facts: HostFacts | None = None, run_id: str | None = None, at: float | None = None) -> int:
        """A verify result (a JSON object or its text). Whether it passed is `passed`, else the result's
        `passed` (bool) or its `status` ("passed"/"ok"); `facts` are those verify read, when it has them."""
        data = _json_object(result, "verify result")
        if passed is None:
            if isinstance(data.get("passed"), bool):
                passed = bool(data["passed"])
            else:
                passed = str(data.get("status", "")).lower() in ("passed", "ok", "pass")
        with self._transaction():
            digest, collected = self._put_facts(facts) if facts is not None else (None, None)
            return self._write(
                "INSERT INTO verifies(run_id, host, at, passed, result_json, facts_digest, collected_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, host, self._now(at), int(passed), json.dumps(data), digest, collected))

    def record_drift(self, run_id: str, report: HostDrift, *, at: float | None = None) -> int:
        compliant = report.compliant
        return self._write(
            "INSERT INTO drift_checks(run_id, host, at, status, compliant, drifted, report_json) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, report.host, self._now(at), report.status, None if compliant is None else int(compliant),
             int(report.drifted), json.dumps(report.to_dict())))

    def mark_known_good(self, host: str, facts: HostFacts, *, source: KnownGoodSource = "baseline",
                        note: str | None = None, at: float | None = None) -> int:
        """Record `facts` as the host's known-good state (what `drift --baseline` does)."""
        with self._transaction():
            digest, collected = self._put_facts(facts)
            return self._write(
                "INSERT INTO known_good(host, at, source, facts_digest, collected_at, note) VALUES (?, ?, ?, ?, ?, ?)",
                (host, self._now(at), source, digest, collected, note))

    # --- reading ---

    def last_known_good(self, host: str) -> HostFacts | None:
        """The facts of the host's last verified apply or manual baseline, whichever is newer."""
        record = self.known_good(host)
        return record.facts if record is not None else None

    def known_good(self, host: str) -> KnownGood | None:
        candidates: list[KnownGood] = []
        row = self._db.execute(
            "SELECT at, source, facts_digest, collected_at FROM known_good WHERE host = ? "
            "ORDER BY at DESC, id DESC LIMIT 1", (host,)).fetchone()
        if row is not None:
            facts = self._get_facts(row[2], row[3])
            if facts is not None:
                candidates.append(KnownGood(host, row[0], row[1], facts))
        verified = self._verified_apply(host)
        if verified is not None:
            candidates.append(verified)
        return max(candidates, key=lambda k: k.at) if candidates else None

    def _verified_apply(self, host: str) -> KnownGood | None:
        """The last passing verify that follows an "applied" apply, with the facts of that state: those
        the verify recorded, else the apply's, else the last good probe between the apply and the verify."""
        row = self._db.execute(
            "SELECT v.at, v.facts_digest, v.collected_at, a.at, a.facts_digest, a.collected_at FROM verifies v "
            "JOIN applies a ON a.host = v.host AND a.outcome = 'applied' AND a.at <= v.at "
            "WHERE v.host = ? AND v.passed = 1 ORDER BY v.at DESC, v.id DESC, a.at DESC, a.id DESC LIMIT 1",
            (host,)).fetchone()
        if row is None:
            return None
        verify_at, verify_digest, verify_collected, apply_at, apply_digest, apply_collected = row
        digest, collected = (verify_digest, verify_collected) if verify_digest else (apply_digest, apply_collected)
        if digest is None:
            probe = self._db.execute(
                "SELECT facts_digest, collected_at FROM probes WHERE host = ? AND facts_digest IS NOT NULL "
                "AND at >= ? AND at <= ? ORDER BY at DESC, id DESC LIMIT 1", (host, apply_at, verify_at)).fetchone()
            if probe is None:
                return None
            digest, collected = probe
        facts = self._get_facts(digest, collected)
        return KnownGood(host, verify_at, "verified-apply", facts) if facts is not None else None

    def last_probe(self, host: str, *, ok_only: bool = True) -> ProbeRecord | None:
        row = self._db.execute(
            "SELECT at, run_id, status, facts_digest, collected_at, error, duration_s, fingerprint FROM probes "
            "WHERE host = ? "
            "AND (? = 0 OR facts_digest IS NOT NULL) ORDER BY at DESC, id DESC LIMIT 1", (host, int(ok_only))
        ).fetchone()
        if row is None:
            return None
        return ProbeRecord(host, row[0], row[1], row[2], self._get_facts(row[3], row[4]), row[5], row[6], row[7])

    def last_check(self, host: str, *, successful: bool = False) -> CheckRecord | None:
        """The host's latest drift check; with `successful`, the latest that could probe the host."""
        row = self._db.execute(
            "SELECT at, run_id, status, report_json FROM drift_checks WHERE host = ? "
            "AND (? = 0 OR status IN ('ok', 'drift')) ORDER BY at DESC, id DESC LIMIT 1", (host, int(successful))
        ).fetchone()
        return CheckRecord(host, row[0], row[1], row[2], json.loads(row[3])) if row else None

    def last_plan(self, host: str) -> tuple[float, Mapping[str, Any]] | None:
        row = self._db.execute("SELECT at, plan_json FROM plans WHERE host = ? ORDER BY at DESC, id DESC LIMIT 1",
                               (host,)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def last_verify(self, host: str) -> VerifyRecord | None:
        row = self._db.execute(
            "SELECT at, passed, result_json FROM verifies WHERE host = ? ORDER BY at DESC, id DESC LIMIT 1",
            (host,)).fetchone()
        return VerifyRecord(host, row[0], bool(row[1]), json.loads(row[2])) if row else None

    def hosts(self) -> list[str]:
        """Every host the store has a record of, sorted."""
        rows = self._db.execute(
            "SELECT host FROM probes UNION SELECT host FROM plans UNION SELECT host FROM applies "
            "UNION SELECT host FROM verifies UNION SELECT host FROM drift_checks UNION SELECT host FROM known_good "
            "ORDER BY host").fetchall()
        return [r[0] for r in rows]

    def last_run(self, command: str) -> tuple[str, float, float | None, int | None] | None:
        row = self._db.execute(
            "SELECT run_id, started_at, finished_at, exit_status FROM runs WHERE command = ? "
            "ORDER BY started_at DESC LIMIT 1", (command,)).fetchone()
        return (row[0], row[1], row[2], row[3]) if row else None

    def history(self, host: str, *, limit: int | None = None) -> list[Event]:
        """Everything recorded about `host`, oldest first (the newest `limit` events when given)."""
        events: list[Event] = []
        for at, rid, status, fp, err, dur in self._db.execute(
                "SELECT at, run_id, status, fingerprint, error, duration_s FROM probes WHERE host = ?", (host,)):
            summary = f"probed in {dur:.1f}s, facts {fp[7:19]}" if status == "ok" and dur is not None and fp \
                else f"probe {status}: {err}"
            events.append(Event(at, "probe", host, rid, status, summary,
                                {"fingerprint": fp, "error": err, "duration_s": dur}))
        for at, rid, status, plan_json in self._db.execute(
                "SELECT at, run_id, status, plan_json FROM plans WHERE host = ?", (host,)):
            plan = json.loads(plan_json)
            summary = f"plan: {status}, {len(plan.get('actions', []))} action(s)"
            if plan.get("error"):
                summary += f" ({plan['error']})"
            events.append(Event(at, "plan", host, rid, status, summary, plan))
        for at, rid, outcome, manifest in self._db.execute(
                "SELECT at, run_id, outcome, manifest_json FROM applies WHERE host = ?", (host,)):
            data = {"manifest": json.loads(manifest) if manifest else None}
            events.append(Event(at, "apply", host, rid, outcome, f"apply: {outcome}", data))
        for at, rid, passed, result in self._db.execute(
                "SELECT at, run_id, passed, result_json FROM verifies WHERE host = ?", (host,)):
            word = "passed" if passed else "failed"
            events.append(Event(at, "verify", host, rid, word, f"verify {word}", json.loads(result)))
        for at, rid, status, report_json in self._db.execute(
                "SELECT at, run_id, status, report_json FROM drift_checks WHERE host = ?", (host,)):
            report = json.loads(report_json)
            events.append(Event(at, "drift", host, rid, status, _drift_summary(report), report))
        for at, source, digest, note in self._db.execute(
                "SELECT at, source, facts_digest, note FROM known_good WHERE host = ?", (host,)):
            events.append(Event(at, "known-good", host, None, source,
                                f"marked known-good ({source})" + (f": {note}" if note else ""),
                                {"facts_digest": digest, "note": note}))
        events.sort(key=lambda e: e.at)
        return events[-limit:] if limit else events

    def integrity_check(self) -> str:
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def count(self, table: str) -> int:
        if table not in ("probes", "plans", "applies", "verifies", "drift_checks", "known_good", "facts_blobs",
                         "runs"):
            raise ValueError(f"no table {table!r}")
        return int(self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608 - allowlisted


def _drift_summary(report: Mapping[str, Any]) -> str:
    status = report.get("status")
    if status in ("unreachable", "failed"):
        return f"drift check: host {status}: {report.get('error')}"
    errors = sum(1 for f in report.get("findings", []) if f.get("severity") == "error")
    changes = len(report.get("changes", []))
    if status == "ok":
        return "drift check: no drift" + ("" if report.get("baseline") else " (no known-good state yet)")
    return f"drift check: {changes} change(s) since known-good, {errors} error finding(s)"


def _json_object(value: Mapping[str, Any] | str, what: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise StateError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, Mapping):
        raise StateError(f"{what} must be a JSON object")
    return dict(value)


def open_store(path: str | os.PathLike[str] | None = None) -> Store:
    """`Store.open` at `path`, or at the default path (REMEDIATE_STATE_DB, then the XDG state dir)."""
    return Store.open(path if path is not None else default_path())
