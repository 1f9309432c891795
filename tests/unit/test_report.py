"""`remediate report --html`: the page from the store's latest records, checked as Chromium renders it
(the DOM it parses, and the pixels of a screenshot: every host row's colour block is on screen)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from remediator.cli import main
from remediator.report import collect, render_html, swatch_colour
from remediator.state import Store
from tests.unit.factories import cudnn_copy_in_toolkit, toolkit
from tests.unit.test_drift import FakeFleet, host

EVIL = '<script>alert("x")</script>&'
HOSTS = ("gpu01", "gpu02", "gpu03", "gpu04", "gpu05")


@pytest.fixture
def store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """gpu01 healthy, gpu02 cuDNN replaced, gpu03 unreachable, gpu04 hostile paths, gpu05 wrong target."""
    fake = FakeFleet()
    fake.answers = {h: host() for h in HOSTS}
    monkeypatch.setattr("remediator.probe.probe_fleet", fake)
    (tmp_path / "hosts.ini").write_text(
        "[gpu]\n" + "".join(f"{h} remediate_target=tensorflow==2.4.1\n" for h in HOSTS[:4])
        + "gpu05 remediate_target=pytorch==2.1.0\n")
    db = tmp_path / "state.db"
    argv = ["drift", "-i", str(tmp_path / "hosts.ini"), "--state-db", str(db)]
    assert main([*argv, "--baseline"]) == 2  # gpu05 is not compliant
    fake.answers["gpu02"] = host(cudnn=(cudnn_copy_in_toolkit("8.1.0", "/usr/local/cuda-11.0"),))
    fake.answers["gpu03"] = "cannot connect to gpu03:22: Connection refused"
    fake.answers["gpu04"] = host(toolkits=(toolkit("11.0.3", default=True), toolkit("11.2", path=f"/opt/{EVIL}")),
                                 envs=(replace(host().envs[0], path=f"/opt/{EVIL}"),))
    assert main(argv) == 1
    with Store.open(db) as s:
        s.record_apply("a1", "gpu01", "applied", {})
        s.record_verify("gpu01", {"passed": True, "device": "NVIDIA A100"})
        s.record_verify("gpu02", {"passed": False, "error": f"cudnn load failed {EVIL}"})
    capsys.readouterr()
    return db


def test_rows_from_the_store(store_path: Path) -> None:
    with Store.open(store_path) as s:
        rows = {r.host: r for r in collect(s)}
    # a drift check fails a host for a change since known-good or for findings against its target: the row says which
    assert [rows[h].status for h in HOSTS] == ["ok", "changed", "unreachable", "changed", "not compliant"]
    assert rows["gpu01"].cells["gpu"].status == "ok" and rows["gpu01"].cells["cudnn"].status == "ok"
    assert rows["gpu02"].cells["cudnn"].status == "drift" and rows["gpu02"].cells["gpu"].status == "error"
    assert rows["gpu03"].cells["driver"].status == "unknown"
    assert rows["gpu04"].cells["cuda"].status == "drift" and rows["gpu04"].cells["framework"].status == "drift"
    assert rows["gpu05"].cells["framework"].status == "error"
    assert len({r.swatch for r in rows.values()}) == len(HOSTS)


def test_everything_from_a_host_is_escaped(store_path: Path) -> None:
    with Store.open(store_path) as s:
        page = render_html(collect(s), generated_at=0)
    assert "<script" not in page and "alert(&quot;x&quot;)" in page
    assert "http://" not in page and "https://" not in page and "<link" not in page and "src=" not in page


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str | None]] = []
        self.details = 0
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and "data-host" in a:
            self.rows.append(a)
        elif tag == "span" and "data-swatch" in a:
            self.rows[-1]["swatch"] = a["data-swatch"]
        elif tag == "details":
            self.details += 1
        elif tag == "script":
            self.scripts += 1


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(*args: str) -> subprocess.CompletedProcess[bytes]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (Debian package chromium; scripts/system-deps.sh installs it)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              timeout=120, check=True)


def decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, raw pixel rows) of an 8-bit RGB/RGBA non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    out = bytearray()
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        out += line
        prev = line
    return width, height, bpp, bytes(out)


def count_colour(png: tuple[int, int, int, bytes], colour: str, tolerance: int = 3) -> int:
    width, height, bpp, pixels = png
    want = bytes.fromhex(colour[1:])
    n = 0
    for i in range(0, width * height * bpp, bpp):
        if all(abs(pixels[i + k] - want[k]) <= tolerance for k in range(3)):
            n += 1
    return n


def test_report_renders_in_headless_chromium(store_path: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "report.html"
    assert main(["report", "--html", str(page), "--state-db", str(store_path)]) == 0
    assert "wrote" in capsys.readouterr().out

    dom = _Dom()
    dom.feed(chromium("--dump-dom", page.as_uri()).stdout.decode())
    assert [r["data-host"] for r in dom.rows] == list(HOSTS)
    assert dom.scripts == 0  # the hostile path stayed text
    assert dom.details >= 8  # findings, changes and verify results, each one click away

    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1400,900", page.as_uri())
    png = decode_png(shot.read_bytes())
    for r in dom.rows:
        swatch = str(r["swatch"])
        assert swatch == swatch_colour(list(HOSTS).index(str(r["data-host"])))
        assert count_colour(png, swatch) >= 28 * 28 * 0.8, f"row {r['data-host']} ({swatch}) is not on screen"
    assert count_colour(png, "#123456") == 0  # the check can fail


def test_report_errors(tmp_path: Path, store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--html", str(tmp_path / "r.html"), "--state-db", str(tmp_path / "empty.db")]) == 1
    assert "has no records yet" in capsys.readouterr().err
    assert main(["report", "--html", str(tmp_path / "r.html"), "--state-db", str(store_path), "--host", "x"]) == 1
    assert "no records of host(s) 'x'" in capsys.readouterr().err
    assert main(["report", "--html", str(tmp_path / "no" / "r.html"), "--state-db", str(store_path)]) == 1
    err = capsys.readouterr().err
    assert "cannot write the report" in err and "Traceback" not in err
    assert re.search(r"\bno such file", err, re.IGNORECASE)
