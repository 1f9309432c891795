"""Raw-preserving versions: compare by numbers, display as written."""

from __future__ import annotations

import pytest

from remediator.versions import parse_version, same_series, try_version


def test_nvidia_zero_padding_is_kept_for_display_but_compares_by_number() -> None:
    v = parse_version("450.51.06")
    assert str(v) == "450.51.06"
    assert v == parse_version("450.51.6")
    assert parse_version("450.80.02") > v


def test_trailing_zeros_and_local_parts() -> None:
    assert parse_version("11.2") == parse_version("11.2.0")
    assert parse_version("2.11.0+cu130") == parse_version("2.11.0")
    assert str(parse_version("2.11.0+cu130")) == "2.11.0+cu130"
    assert parse_version("535.161.08").major == 535


@pytest.mark.parametrize("raw", ["", "latest", "$(reboot)", "6.18.44-fc-v657-gpu\n"[:0] + "abc", None])
def test_garbage_is_not_a_version(raw: str | None) -> None:
    assert try_version(raw) is None


def test_same_series() -> None:
    assert same_series(parse_version("11.2.152"), parse_version("11.2"))
    assert not same_series(parse_version("11.2.152"), parse_version("11.20"))
