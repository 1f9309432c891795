"""The lab's nvidia-smi prints what the real one prints (checked against a real H200 host and public
reports of older drivers) and fails the way the real one fails."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from remediator.lab import catalog
from remediator.lab.build import render_nvidia_smi

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lab"


def gpu(model: str) -> dict[str, Any]:
    m = catalog.GPUS[model]
    return {
        "name": m.name, "memory_mib": m.memory_mib, "compute_cap": m.compute_cap, "architecture": m.architecture,
        "brand": m.brand, "power_cap_w": m.power_cap_w, "device_id": m.device_id, "vbios": "96.00.A5.00.1A",
    }  # fmt: skip


def smi(
    tmp_path: Path, driver: str, models: list[str], *args: str, state: str = "ok"
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "nvidia-smi"
    data = {"driver": driver, "cuda": catalog.driver_cuda(driver), "state": state, "gpus": [gpu(m) for m in models]}
    script.write_text(render_nvidia_smi(data))
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=30)


def pipes(line: str) -> list[int]:
    return [i for i, c in enumerate(line) if c in "|+"]


def test_the_r580_table_has_the_real_layout(tmp_path: Path) -> None:
    real = (FIXTURES / "h200-nvidia-smi.txt").read_text().splitlines()
    ours = smi(tmp_path, "580.159.04", ["NVIDIA H200"]).stdout.splitlines()
    assert len(ours) == len(real)
    assert re.match(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}       $", ours[0])
    for r, o in zip(real[1:], ours[1:], strict=True):
        assert len(o) == len(r) and pipes(o) == pipes(r), (r, o)
        if not re.search(r"\d+(W|C|MiB|%)|00000000:", r):  # everything but the live values is verbatim
            assert o == r


@pytest.mark.parametrize(("driver", "model", "real_header", "real_row"), [
    ("410.72", "Tesla K80", 0, 5),
    ("450.80.02", "Tesla V100-SXM2-16GB", 7, 9),
])  # fmt: skip
def test_older_tables_have_the_layout_public_reports_show(tmp_path: Path, driver: str, model: str,
                                                          real_header: int, real_row: int) -> None:  # fmt: skip
    real = (FIXTURES / "old-table-lines.txt").read_text().splitlines()
    ours = smi(tmp_path, driver, [model]).stdout.splitlines()
    assert ours[2] == real[real_header]
    row = next(line for line in ours if line.startswith("|   0  "))
    assert len(row) == len(real[real_row]) and pipes(row) == pipes(real[real_row])
    assert ("MIG M." in "\n".join(ours)) == driver.startswith("450")
    width = {len(line) for line in ours[1:] if line.strip()}
    assert width == {79}


def test_list_and_query_match_the_real_formats(tmp_path: Path) -> None:
    listing = smi(tmp_path, "580.159.04", ["NVIDIA H200"], "-L").stdout
    assert (
        re.sub(r"GPU-[0-9a-f-]{36}", "GPU-00000000-0000-0000-0000-000000000000", listing)
        == (FIXTURES / "h200-list.txt").read_text()
    )
    fields = "--query-gpu=name,driver_version,memory.total,uuid,pci.bus_id,compute_cap"
    out = smi(tmp_path, "580.159.04", ["NVIDIA H200"], fields, "--format=csv").stdout.splitlines()
    real = (FIXTURES / "h200-query.csv").read_text().splitlines()
    assert out[0] == real[0]
    assert out[1].split(", ")[:3] == real[1].split(", ")[:3] and out[1].endswith(", 9.0")
    plain = smi(tmp_path, "535.54.03", ["Tesla T4", "Tesla T4"], "--query-gpu", "memory.total,index",
                "--format=csv,noheader,nounits").stdout  # fmt: skip
    assert plain == "15360, 0\n15360, 1\n"


def test_query_errors_are_the_real_ones(tmp_path: Path) -> None:
    bad = smi(tmp_path, "535.54.03", ["Tesla T4"], "--query-gpu=bogus", "--format=csv")
    assert bad.returncode == 2 and 'Field "bogus" is not a valid field to query.' in bad.stdout
    old = smi(tmp_path, "470.82.01", ["Tesla T4"], "--query-gpu=compute_cap", "--format=csv")
    assert old.returncode == 2  # compute_cap is a field of R515 and later


def test_q_and_xml_reports_describe_each_gpu(tmp_path: Path) -> None:
    text = smi(tmp_path, "535.104.05", ["NVIDIA L4", "NVIDIA L4"], "-q").stdout
    assert re.search(r"^Driver Version\s+: 535\.104\.05$", text, re.M)
    assert re.search(r"^CUDA Version\s+: 12\.2$", text, re.M)
    assert re.search(r"^Attached GPUs\s+: 2$", text, re.M)
    assert len(re.findall(r"^    Product Name\s+: NVIDIA L4$", text, re.M)) == 2
    assert len(re.findall(r"^        Total\s+: 23034 MiB$", text, re.M)) == 2
    xml = smi(tmp_path, "535.104.05", ["NVIDIA L4"], "-q", "-x").stdout
    root = ET.fromstring(xml.split("\n", 2)[2])  # past the XML declaration and DOCTYPE
    assert root.findtext("driver_version") == "535.104.05"
    g = root.find("gpu")
    assert g is not None and g.findtext("product_name") == "NVIDIA L4"
    assert g.findtext("fb_memory_usage/total") == "23034 MiB"


@pytest.mark.parametrize(("driver", "state", "code", "text"), [
    ("460.73.01", "mismatch", 18, "Failed to initialize NVML: Driver/library version mismatch\n"),
    ("550.144.03", "mismatch", 18,
     "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 550.144\n"),
    ("535.54.03", "not_loaded", 9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
     "Make sure that the latest NVIDIA driver is installed and running.\n\n"),
])  # fmt: skip
def test_broken_drivers_fail_as_the_real_tool_does(
    tmp_path: Path, driver: str, state: str, code: int, text: str
) -> None:
    for args in ((), ("-L",), ("--query-gpu=name", "--format=csv")):
        r = smi(tmp_path, driver, ["Tesla T4"], *args, state=state)
        assert (r.returncode, r.stdout) == (code, text)
