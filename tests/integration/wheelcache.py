"""The lab's shared wheel cache for real framework installs (docs/playbooks.md).

The outer /var is the lower layer of every lab host's /var, so what is downloaded and unpacked here once
is there for every host; venvs link to it (symlinks: a host's /opt and /var are different overlay mounts,
so hard links cannot cross them). uv itself is copied in too: a lab host sees neither the outer /tmp nor,
wherever CI clones the repository, necessarily the clone's .venv.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

WHEEL_CACHE = Path("/var/cache/remediator-lab")


@dataclass(frozen=True)
class WheelCache:
    root: Path
    uv: Path  # a copy every lab host can run

    @property
    def wheelhouse(self) -> Path:
        return self.root / "wheelhouse"

    @property
    def uv_cache(self) -> Path:
        return self.root / "uv"


class CacheUnavailable(Exception):
    """The wheels cannot be had here (no index reachable, no uv): the caller skips with this reason."""


def fill(requirement: str) -> WheelCache:
    """Download `requirement`'s wheels once (pip, with this machine's configured indexes) and unpack them into
    a uv cache once; later runs and every lab host reuse both."""
    uv = Path(sys.executable).parent / "uv"
    if not uv.exists():
        raise CacheUnavailable("uv is not installed (pip install -e '.[dev]')")
    shared_uv = WHEEL_CACHE / "bin" / "uv"
    if not shared_uv.exists() or shared_uv.stat().st_size != uv.stat().st_size:
        shared_uv.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(uv, shared_uv)
    stamp = WHEEL_CACHE / f"filled-{requirement}"
    if not stamp.exists():
        wheelhouse, warm = WHEEL_CACHE / "wheelhouse", WHEEL_CACHE / "warm"
        wheelhouse.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--dest",
                            str(wheelhouse), requirement], check=True, timeout=1200)
            if not (warm / "bin" / "python").exists():
                subprocess.run(["/usr/bin/python3", "-m", "venv", str(warm)], check=True, timeout=300)
            subprocess.run([str(uv), "pip", "install", "--no-config", "--python", str(warm / "bin" / "python"),
                            "--cache-dir", str(WHEEL_CACHE / "uv"), "--find-links", str(wheelhouse), "--no-index",
                            "--link-mode", "symlink", requirement], check=True, timeout=1200)
        except (subprocess.SubprocessError, OSError) as exc:
            raise CacheUnavailable(f"the wheels of {requirement} cannot be had here: {exc}") from exc
        stamp.write_text("")
    return WheelCache(WHEEL_CACHE, shared_uv)
