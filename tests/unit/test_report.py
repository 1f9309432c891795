"""`remediate report`: the page from the store's latest records, checked as Chromium renders it (the DOM
after its script ran, and the pixels of a screenshot: the summary's tiles and every host row are on
screen), the summary and problem groups it opens with, and the text and JSON forms of that summary.
The 1,000-host page is tests/unit/test_report_fleet.py; hostile values, tests/unit/test_report_hostile.py."""

from __future__ import annotations

import json
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
from remediator.report import HostRow, collect, render_html, summarize, swatch_colour
from remediator.report.page import STATUS_COLOURS, script_hash
from remediator.report.script import SCRIPT
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


def test_summary_and_groups(store_path: Path) -> None:
    with Store.open(store_path) as s:
        summary = summarize(collect(s))
    counts = dict(summary.counts)
    assert counts == {"not compliant": 1, "changed": 2, "failed": 0, "unreachable": 1, "unchecked": 0, "ok": 1}
    charts = {d.key: d for d in summary.charts}
    # gpu03 is unreachable now: counted with its last probed facts, as its row shows them
    assert charts["driver"].bars == (("535.161.08", 5),) and charts["driver"].hosts == 5
    assert dict(charts["cudnn"].bars) == {"8.0": 4, "8.1": 1}  # gpu02's copy was replaced
    assert dict(charts["framework"].bars) == {"tensorflow 2.4.1": 5}
    by_codes = {g.codes: g for g in summary.groups}
    assert by_codes[("UNREACHABLE",)].hosts == ("gpu03",)
    assert "Connection refused" in by_codes[("UNREACHABLE",)].what
    assert all(g.hosts != ("gpu01",) for g in summary.groups)  # a healthy host is in no group
    wrong_target = next(g for g in summary.groups if g.hosts == ("gpu05",))
    assert any(c.startswith("FRAMEWORK_") for c in wrong_target.codes)
    changed = next(g for g in summary.groups if g.hosts == ("gpu02",))
    assert "changed:cudnn" in changed.codes and changed.what.startswith("changed since known-good")
    # largest first, ids in that order
    assert [g.id for g in summary.groups] == [f"g{i}" for i in range(1, len(summary.groups) + 1)]
    assert [len(g.hosts) for g in summary.groups] == sorted((len(g.hosts) for g in summary.groups), reverse=True)


def _row(host: str, fix: tuple[str, ...], source: str = "plan", codes: tuple[str, ...] = ("CUDNN_MISMATCH",),
         ) -> HostRow:
    row = HostRow(host=host, status="not compliant", target=None, checked_at=None, swatch="#000000")
    row.codes, row.fix, row.fix_source = codes, fix, source  # type: ignore[assignment]
    return row


def test_a_group_says_whether_its_fix_is_the_same_for_every_host() -> None:
    same = summarize([_row("a", ("+ install x", "- quarantine y")), _row("b", ("+ install x", "- quarantine y"))])
    (g,) = same.groups
    assert g.fix_common == ("+ install x", "- quarantine y") and not g.varies and g.fix_source == "plan"
    varies = summarize([_row("a", ("+ install x", "- quarantine /a")), _row("b", ("+ install x", "- quarantine /b")),
                        _row("c", ("+ install x", "- quarantine /b")), _row("d", ("hint",), "diagnosis")])
    (g,) = varies.groups
    # the plans' lines only: the host without a current plan is counted, its hint is not mixed in
    assert g.fix_common == ("+ install x",) and g.varies and g.unplanned == 1
    assert g.fix_varies == (("- quarantine /b", 2), ("- quarantine /a", 1))
    hints = summarize([_row("a", ("hint 1",), "diagnosis"), _row("b", ("hint 1", "hint 2"), "diagnosis")]).groups[0]
    assert hints.fix_source == "diagnosis" and hints.fix_common == ("hint 1",) and hints.fix_varies == (("hint 2", 1),)
    # different problems are different groups, the larger first
    two = summarize([_row("a", (), codes=("A",)), _row("b", (), codes=("B",)), _row("c", (), codes=("B",))]).groups
    assert [(g.codes, g.hosts) for g in two] == [(("B",), ("b", "c")), (("A",), ("a",))]


def test_the_page_is_self_contained_and_runs_only_its_own_script(store_path: Path) -> None:
    with Store.open(store_path) as s:
        page = render_html(collect(s), generated_at=0)
    assert "alert(&quot;x&quot;)" in page and "<script>alert" not in page
    assert "http://" not in page and "https://" not in page and "<link" not in page and "src=" not in page
    dom = _Dom()
    dom.feed(page)
    assert dom.script_types == ["application/json", None]
    assert dom.script_text[1] == SCRIPT
    (policy,) = dom.csp
    assert policy == f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src {script_hash()}"
    data = json.loads(dom.script_text[0])
    assert [h["host"] for h in data] == list(HOSTS)


class _Dom(HTMLParser):
    """What the tests read of a page: host rows (with `hidden`), the table's marks, scripts, details, elements."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str | None]] = []
        self.table: dict[str, str | None] = {}
        self.details = 0
        self.filled: list[str] = []  # text of each host detail drawn (a full-width row under its host)
        self.scripts = 0
        self.script_types: list[str | None] = []
        self.script_text: list[str] = []
        self.csp: list[str | None] = []
        self.elements = 0
        self.handlers: list[tuple[str, str]] = []  # on* attributes: there must be none
        self._in_script = False
        self._filled_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.elements += 1
        self.handlers += [(tag, k) for k in a if k.lower().startswith("on")]
        if tag == "tr" and "data-host" in a:
            self.rows.append(a)
        elif tag == "tr" and a.get("class") == "detail":
            self._filled_depth = 1
            self.filled.append("")
        elif tag == "table" and a.get("id") == "hosts":
            self.table = a
        elif tag == "span" and "data-swatch" in a:
            self.rows[-1]["swatch"] = a["data-swatch"]
        elif tag == "details":
            self.details += 1
        elif tag == "script":
            self.scripts += 1
            self.script_types.append(a.get("type"))
            self.script_text.append("")
            self._in_script = True
        elif tag == "meta" and a.get("http-equiv") == "Content-Security-Policy":
            self.csp.append(a.get("content"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False
        elif tag == "tr" and self._filled_depth:
            self._filled_depth = 0

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text[-1] += data
        elif self._filled_depth:
            self.filled[-1] += data

    def shown(self) -> list[str]:
        return [str(r["data-host"]) for r in self.rows if "hidden" not in r]


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


def dump(page: Path, fragment: str = "") -> _Dom:
    dom = _Dom()
    dom.feed(chromium("--dump-dom", page.as_uri() + fragment).stdout.decode())
    assert dom.table.get("data-ready") == "yes", "the page's script did not run"
    return dom


def test_report_renders_in_headless_chromium(store_path: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "report.html"
    assert main(["report", "--html", str(page), "--state-db", str(store_path)]) == 0
    assert "wrote" in capsys.readouterr().out

    dom = first = dump(page)
    assert [r["data-host"] for r in dom.rows] == list(HOSTS) and dom.shown() == list(HOSTS)
    assert dom.scripts == 2 and not dom.handlers  # its own two; the hostile path stayed text
    assert not dom.filled  # every host's detail folded, and not drawn until opened

    # Opened from the URL: gpu02's findings, its change since known-good and its failed verify, with evidence.
    dom = dump(page, "#open=gpu02")
    (detail,) = dom.filled
    assert "changed since known-good" in detail and "verify failed" in detail and "cudnn load failed" in detail
    assert '<script>alert("x")</script>' in detail and dom.scripts == 2  # shown as text, never an element

    # Filters and sorting from the fragment, as a bookmark or a click on a tile sets them.
    assert dump(page, "#status=changed").shown() == ["gpu02", "gpu04"]
    assert dump(page, "#filter=refused").shown() == ["gpu03"]  # the text filter reads every cell
    assert dump(page, "#sort=host&dir=desc").shown() == list(reversed(HOSTS))
    assert dump(page, f"#group={first.rows[2]['data-group']}&status=unreachable").shown() == ["gpu03"]

    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1400,1400", page.as_uri())
    png = decode_png(shot.read_bytes())
    for status in ("ok", "changed", "not compliant", "unreachable"):  # the summary's tiles
        assert count_colour(png, STATUS_COLOURS[status]) >= 100 * 40, f"no {status} tile on screen"
    assert count_colour(png, STATUS_COLOURS["failed"]) == 0  # no failed host: its tile is grey
    for r in first.rows:
        swatch = str(r["swatch"])
        assert swatch == swatch_colour(list(HOSTS).index(str(r["data-host"])))
        assert count_colour(png, swatch) >= 12 * 12 * 0.8, f"row {r['data-host']} ({swatch}) is not on screen"
    assert count_colour(png, "#123456") == 0  # the check can fail


def test_summary_as_json_and_text(store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--format", "json", "--state-db", str(store_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["hosts"] == 5 and doc["counts"]["changed"] == 2
    assert [c["key"] for c in doc["charts"]] == ["driver", "cuda", "cuda_driver", "cudnn", "framework"]
    unreachable = next(g for g in doc["groups"] if g["codes"] == ["UNREACHABLE"])
    assert unreachable["hosts"] == ["gpu03"] and unreachable["count"] == 1 and "fix" in unreachable

    page = tmp_path / "r.html"
    assert main(["report", "--html", str(page), "--format", "json", "--state-db", str(store_path),
                 "--host", "gpu01", "--host", "gpu03"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["hosts"] == 2 and "wrote" in err and page.exists()

    assert main(["report", "--state-db", str(store_path)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("5 host(s): 1 not compliant, 2 changed, 1 unreachable, 1 ok")
    assert "distinct problem(s), largest first" in text and "UNREACHABLE" in text


def test_report_errors(tmp_path: Path, store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--html", str(tmp_path / "r.html"), "--state-db", str(tmp_path / "empty.db")]) == 1
    assert "has no records yet" in capsys.readouterr().err
    assert main(["report", "--html", str(tmp_path / "r.html"), "--state-db", str(store_path), "--host", "x"]) == 1
    assert "no records of host(s) 'x'" in capsys.readouterr().err
    assert main(["report", "--html", str(tmp_path / "no" / "r.html"), "--state-db", str(store_path)]) == 1
    err = capsys.readouterr().err
    assert "cannot write the report" in err and "Traceback" not in err
    assert re.search(r"\bno such file", err, re.IGNORECASE)
