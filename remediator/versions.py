"""Version values that keep the string as it was written beside a comparable form.

NVIDIA writes driver versions like `450.51.06`; `packaging.Version` would normalise that to
`450.51.6`, so we compare the parsed form and always display the raw one. Kernel and distro
version strings are not PEP 440 at all: those stay plain strings.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from packaging.version import InvalidVersion, Version

_LEADING_NUMERIC = re.compile(r"^\s*v?(\d+(?:\.\d+)*)")


@functools.total_ordering
@dataclass(frozen=True)
class RawVersion:
    """A version as written (`raw`) with a `packaging` Version for ordering.

    Anything after the leading dotted numbers (`+cu118`, `-1`, `.dev`) is kept in `raw` but not
    compared, because what we compare (drivers, toolkits, cuDNN, wheels) orders by those numbers.
    """

    raw: str
    parsed: Version = field(compare=False, repr=False)

    @classmethod
    def parse(cls, raw: str) -> RawVersion:
        text = str(raw).strip()
        match = _LEADING_NUMERIC.match(text)
        if not match:
            raise ValueError(f"not a version: {raw!r}")
        try:
            parsed = Version(match.group(1))
        except InvalidVersion as exc:  # pragma: no cover - the regex admits only valid input
            raise ValueError(f"not a version: {raw!r}") from exc
        return cls(text, parsed)

    @property
    def release(self) -> tuple[int, ...]:
        return self.parsed.release

    @property
    def major(self) -> int:
        return self.parsed.release[0]

    def major_minor(self) -> tuple[int, int]:
        rel = (*self.parsed.release, 0)
        return rel[0], rel[1]

    def _key(self) -> tuple[int, ...]:
        # Strip trailing zeros so that 11.2 == 11.2.0 (packaging does the same).
        key = self.__dict__.get("_cached_key")
        if key is None:
            rel = list(self.parsed.release)
            while len(rel) > 1 and rel[-1] == 0:
                rel.pop()
            key = tuple(rel)
            object.__setattr__(self, "_cached_key", key)
        return key

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RawVersion):
            return self._key() == other._key()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: object) -> bool:
        if isinstance(other, RawVersion):
            return self._key() < other._key()
        return NotImplemented

    def __str__(self) -> str:
        return self.raw


@functools.lru_cache(maxsize=8192)
def parse_version(raw: str) -> RawVersion:
    # Cached: a fleet repeats the same few hundred version strings, and RawVersion is immutable.
    return RawVersion.parse(raw)


def try_version(raw: str | None) -> RawVersion | None:
    """Parse or return None: host facts are untrusted and may hold anything."""
    if raw is None or not isinstance(raw, str):
        return None
    try:
        return parse_version(raw)
    except ValueError:
        return None


def same_series(a: RawVersion, b: RawVersion, depth: int = 2) -> bool:
    """True when the first `depth` release numbers agree (11.2.1 and 11.2.0 at depth 2)."""
    pa = (a.release + (0,) * depth)[:depth]
    pb = (b.release + (0,) * depth)[:depth]
    return pa == pb
