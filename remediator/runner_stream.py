"""One playbook run through ansible-runner's streaming interface: transmit -> worker -> process.

That is how AWX and Receptor run jobs on remote execution nodes: the control side packs the job (its private
data directory, the project included) into one stream (`transmit`), a worker anywhere runs it and streams
back events, status and artifacts (`ansible-runner worker`), and the control side turns that stream into
the same events and artifacts a local run makes (`process`). `remediate apply --runner-worker CMD` hands
the stream to CMD (`ansible-runner worker`, `ssh exec01 ansible-runner worker`, `receptorctl work submit
--node exec01 ansible-runner --payload - -f`, ...), an argv run without a shell.

The worker is not trusted more than a host: its output is read line by line with a cap on each line and on
the whole stream, events whose file names would leave the artifact directory are dropped, the artifacts it
sends back are unpacked only as regular files inside the run's artifact directory (no symlinks, no `..`, a
size cap), and it is stopped (SIGTERM to its process group, then SIGKILL) on cancel or when it outlives
the batch timeout. What the worker needs on its side: ansible-runner and ansible-core, and the inventory's
keys and known_hosts files at the same paths (docs/apply.md).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from remediator.errors import UsageError
from remediator.hostscript import collection_dir

MAX_LINE_BYTES = 64 * 1024 * 1024  # one event (a task's whole output) or status line
MAX_STREAM_BYTES = 4 * 1024 * 1024 * 1024  # everything one worker may send back
MAX_ARTIFACT_BYTES = 2 * 1024 * 1024 * 1024  # the artifacts it sends, unpacked
GRACE_S = 30.0  # past the batch timeout (which the worker's own runner enforces) before we stop it
TERM_WAIT_S = 10.0  # after SIGTERM (the worker's runner then stops ansible-playbook) before SIGKILL
_UUID_RE = re.compile(r"[0-9a-fA-F-]{1,64}")
_ERROR_MAX = 500


@dataclass(frozen=True)
class Streamed:
    status: str  # the runner's (successful, failed, timeout, canceled) or error
    rc: int | None
    artifact_dir: str
    stats: Mapping[str, Any] | None  # the playbook_on_stats event's counts, as Runner.stats gives them
    error: str | None = None


def worker_argv(text: str) -> list[str]:
    """`--runner-worker CMD` as an argv (shlex rules, no shell): `ansible-runner worker`, `ssh exec01 ...`."""
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"--runner-worker {text!r}: {exc}", hint="quote it as a shell would") from None
    if not argv:
        raise UsageError("--runner-worker needs a command, e.g. 'ansible-runner worker'")
    return argv


def run_streamed(argv: Sequence[str], pdd: Path, playbook: Path, *, ident: str, forks: int, check: bool,
                 timeout: int | None, cancel: Callable[[], bool] | None,
                 event_handler: Callable[[dict[str, Any]], bool],
                 status_handler: Callable[..., None], env: Mapping[str, str]) -> Streamed:
    """Run `playbook` with the inventory and env already written into `pdd` through the worker `argv`.

    The job's own private data dir is `pdd/stream/<ident>/` (inventory, env, and a project holding the
    playbooks and the remediator.gpu collection beside them, as playbook-adjacent collections); its stream is
    `pdd/stream/<ident>.job`. Events, status and artifacts come back into `pdd/artifacts/<ident>/`, where a
    direct run puts them.
    """
    from ansible_runner.interface import run as runner_run

    from remediator.runner import RunnerError

    job = _stage(pdd, playbook, ident)
    stream_path = pdd / "stream" / f"{ident}.job"
    try:
        fd = os.open(stream_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            runner_run(streamer="transmit", _output=out, private_data_dir=str(job), playbook=playbook.name,
                       ident=ident, forks=forks, cmdline="--check" if check else None, quiet=True, timeout=timeout)
    except OSError as exc:
        raise RunnerError(f"cannot write the job stream {stream_path}: {exc.strerror or exc}") from None

    explanation: list[str] = []

    def on_status(data: dict[str, Any], runner_config: Any = None) -> None:
        if data.get("job_explanation"):
            explanation.append(str(data["job_explanation"]))
        status_handler(data, runner_config)

    stats: list[Mapping[str, Any]] = []

    def on_event(data: dict[str, Any]) -> bool:
        if data.get("event") == "playbook_on_stats" and isinstance(data.get("event_data"), Mapping):
            ed = data["event_data"]
            stats.append({k: ed.get(k) if isinstance(ed.get(k), Mapping) else {} for k in
                          ("skipped", "ok", "dark", "failures", "ignored", "rescued", "processed", "changed")})
        return event_handler(data)

    with tempfile.TemporaryFile() as stderr:
        try:
            with open(stream_path, "rb") as stdin:
                proc = subprocess.Popen(list(argv), stdin=stdin, stdout=subprocess.PIPE, stderr=stderr, env=dict(env),
                                        cwd=str(pdd), start_new_session=True)
        except OSError as exc:
            raise RunnerError(f"cannot start the runner worker {argv[0]!r}: {exc.strerror or exc}",
                              hint="--runner-worker takes a command line such as 'ansible-runner worker'") from None
        stopped: list[str] = []
        done = threading.Event()
        deadline = time.monotonic() + timeout + GRACE_S if timeout else None

        def watch() -> None:
            while not done.wait(0.5):
                if cancel is not None and cancel():
                    stopped.append("canceled")
                elif deadline is not None and time.monotonic() > deadline:
                    stopped.append(f"the runner worker ran past the batch timeout ({timeout}s) and was stopped")
                else:
                    continue
                _stop(proc)
                return

        watcher = threading.Thread(target=watch, name="runner-worker-watch", daemon=True)
        watcher.start()
        artifact_dir = pdd / "artifacts" / ident
        assert proc.stdout is not None
        processor = _processor_class()(_input=_BoundedStream(proc.stdout), private_data_dir=str(pdd), ident=ident,
                                       quiet=True, event_handler=on_event, status_handler=on_status)
        error: str | None = None
        try:
            status, _ = processor.run()
        except (OSError, ValueError, zipfile.BadZipFile, KeyError, TypeError) as exc:
            # ansible-runner lets a broken artifacts stream through (its caller is to handle it): so do we, per run.
            status, error = "error", f"the runner worker's stream is broken: {type(exc).__name__}: {exc}"
        finally:
            done.set()
            _finish(proc)
            watcher.join()
        worker_rc = proc.returncode
        tail = _tail(stderr)
        if stopped:
            status = "canceled" if stopped[0] == "canceled" else "timeout"
            error = stopped[0] if status == "timeout" else None
        if error is None and not stats:
            why = explanation[-1] if explanation else None
            if worker_rc:
                why = f"the runner worker exited with status {worker_rc}" + (f": {why}" if why else "") + (
                    f" ({tail})" if tail else "")
            error = _short(why)
    return Streamed(status=str(status), rc=_read_rc(artifact_dir), artifact_dir=str(artifact_dir),
                    stats=stats[-1] if stats else None, error=_short(error))


# --- the job ----------------------------------------------------------------------------------------


def _stage(pdd: Path, playbook: Path, ident: str) -> Path:
    """pdd/stream/<ident>/: what the worker gets. Only the run's inventory and env, and the playbooks with the
    collection beside them; never the artifacts of the run's other batches."""
    from remediator.runner import RunnerError

    job = pdd / "stream" / ident
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "ansible.cfg")
    try:
        if job.exists():
            shutil.rmtree(job)
        job.mkdir(parents=True, mode=0o700)
        for sub in ("inventory", "env"):
            shutil.copytree(pdd / sub, job / sub)
        project = job / "project"
        shutil.copytree(playbook.parent, project, ignore=ignore, symlinks=False)
        shutil.copytree(collection_dir(), project / "collections" / "ansible_collections" / "remediator" / "gpu",
                        ignore=ignore, symlinks=False, dirs_exist_ok=True)
        cfg = playbook.parent / "ansible.cfg"
        text = cfg.read_text(encoding="utf-8") if cfg.is_file() else "[defaults]\n"
        # The project's collection, found beside the playbooks wherever the worker unpacks them.
        text = re.sub(r"(?m)^collections_paths?\s*=.*$", "collections_path = collections", text)
        (project / "ansible.cfg").write_text(text, encoding="utf-8")
    except OSError as exc:
        raise RunnerError(f"cannot stage the job for the runner worker in {job}: {exc.strerror or exc}") from None
    return job


# --- the worker's output ------------------------------------------------------------------------------


class _BoundedStream:
    """The worker's stdout as ansible-runner's Processor reads it (readline; read for the artifacts), with a
    cap on each line and on the whole stream, and only JSON objects as lines."""

    closed = False

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._total = 0

    def readline(self) -> bytes:
        line = self._raw.readline(MAX_LINE_BYTES + 1)
        self._count(len(line))
        if len(line) > MAX_LINE_BYTES:
            raise OSError(f"the worker wrote a line longer than {MAX_LINE_BYTES} bytes")
        if line and not line.lstrip().startswith(b"{"):
            raise OSError(f"the worker wrote something other than ansible-runner's stream: {line[:120]!r}")
        return line

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(MAX_LINE_BYTES if size is None or size < 0 else min(size, MAX_LINE_BYTES))
        self._count(len(data))
        return data

    def _count(self, n: int) -> None:
        self._total += n
        if self._total > MAX_STREAM_BYTES:
            raise OSError(f"the worker sent more than {MAX_STREAM_BYTES} bytes")

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:
        raise OSError("read-only")

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def _processor_class() -> type:
    from ansible_runner.streaming import Processor

    class _Processor(Processor):  # type: ignore[misc]
        """ansible_runner.interface.run(streamer="process") builds a Processor; this one refuses what a
        worker could use to write outside the artifact directory."""

        def event_callback(self, event_data: Any) -> None:
            counter, uuid = event_data.get("counter"), event_data.get("uuid")
            if not isinstance(counter, int) or isinstance(counter, bool) or counter < 1:
                return
            if not isinstance(uuid, str) or not _UUID_RE.fullmatch(uuid):
                return  # its file name would be job_events/<counter>-<uuid>.json
            super().event_callback(event_data)

        def artifacts_callback(self, artifacts_data: Any) -> None:
            length = artifacts_data.get("zipfile")
            if not isinstance(length, int) or isinstance(length, bool) or not 0 < length <= MAX_ARTIFACT_BYTES:
                raise OSError(f"the worker announced artifacts of {length!r} bytes")
            _unpack(self._input, length, Path(self.artifact_dir))
            if self.artifacts_handler is not None:
                self.artifacts_handler(self.artifact_dir)

    return _Processor


def _unpack(stream: Any, length: int, target: Path) -> None:
    """The worker's artifacts zip (base64, `length` bytes once decoded) into `target`: regular files and
    directories only, each inside `target`, owner-only, at most MAX_ARTIFACT_BYTES unpacked."""
    from ansible_runner.utils.base64io import Base64IO

    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryFile() as tmp:
        with Base64IO(stream) as source:
            remaining = length
            while remaining:
                data = source.read(min(1 << 20, remaining))
                if not data:
                    raise OSError("the worker's stream ended inside its artifacts")
                tmp.write(data)
                remaining -= len(data)
        tmp.seek(0)
        with zipfile.ZipFile(tmp) as archive:
            total = 0
            for info in archive.infolist():
                parts = PurePosixPath(info.filename).parts
                if not parts or info.filename.startswith("/") or any(p in ("..", "") for p in parts):
                    continue
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    continue
                out = target.joinpath(*parts)
                if _escapes(out, target):
                    continue
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True, mode=0o700)
                    continue
                total += info.file_size
                if total > MAX_ARTIFACT_BYTES:
                    raise OSError(f"the worker's artifacts unpack to more than {MAX_ARTIFACT_BYTES} bytes")
                out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                if out.is_symlink() or (out.exists() and not out.is_file()):
                    continue
                fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as dst, archive.open(info) as src:
                    shutil.copyfileobj(src, dst, 1 << 20)


def _escapes(path: Path, root: Path) -> bool:
    """Whether `path` (not yet created) would land outside `root` through a symlinked directory."""
    real_root = os.path.realpath(root)
    parent = os.path.realpath(path.parent)
    return os.path.commonpath([real_root, parent]) != real_root


def _read_rc(artifact_dir: Path) -> int | None:
    try:
        fd = os.open(artifact_dir / "rc", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        text = f.read(32).strip()
    return int(text) if re.fullmatch(rb"-?[0-9]{1,6}", text) else None


# --- the worker's process -------------------------------------------------------------------------


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the worker's process group (its runner stops ansible-playbook), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, TERM_WAIT_S), (signal.SIGKILL, TERM_WAIT_S)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)


def _finish(proc: subprocess.Popen[bytes]) -> None:
    """After its stream ended: the worker should exit on its own; if it does not, it is stopped."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(TERM_WAIT_S)
    _stop(proc)
    if proc.stdout is not None:
        proc.stdout.close()
    proc.wait()


def _tail(stderr: IO[bytes]) -> str | None:
    stderr.seek(0, os.SEEK_END)
    size = stderr.tell()
    stderr.seek(max(0, size - 4096))
    lines = [line.strip() for line in stderr.read().decode("utf-8", "replace").splitlines() if line.strip()]
    return " | ".join(lines[-3:]) if lines else None


def _short(text: str | None) -> str | None:
    if not text:
        return None
    return text if len(text) <= _ERROR_MAX else text[: _ERROR_MAX - 3] + "..."


__all__ = ["MAX_LINE_BYTES", "Streamed", "run_streamed", "worker_argv"]
