#!/usr/bin/python3
"""nvidia-smi of a remediate lab host: prints what the real tool prints for this host's driver and GPUs.

Installed as /usr/bin/nvidia-smi inside a lab host by `remediate lab up`, with the host's data filled in
below. It knows the summary table (three layouts: before R450, R450 to R525, from R530), -L, --version,
--query-gpu with --format=csv[,noheader][,nounits], -q and -q -x (taken from a real H200's report), and
fails as the real one does when the kernel module is missing or does not match the libraries.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import uuid
from typing import Any

DATA = json.loads("@DATA@")
Q_TEXT = "@Q_TEXT@"
Q_XML = "@Q_XML@"


def _branch() -> int:
    return int(DATA["driver"].split(".")[0])


def _gpus() -> list[dict[str, Any]]:
    host = socket.gethostname()
    out = []
    for i, g in enumerate(DATA["gpus"]):
        gpu = dict(g)
        gpu["index"] = i
        gpu["uuid"] = "GPU-" + str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{host}.gpu{i}.remediate-lab"))
        gpu["serial"] = str(1650000000000 + int(uuid.uuid5(uuid.NAMESPACE_DNS, host).int % 10**8) * 10 + i)
        gpu["bus_id"] = f"00000000:{0x17 + i * 0x10:02X}:00.0"
        gpu["used"] = 0
        gpu["reserved"] = gpu["memory_mib"] // 233 if _branch() >= 520 else 0
        gpu["temp"] = 33 + i
        gpu["power"] = max(int(gpu["power_cap_w"]) // 9, 9)
        out.append(gpu)
    return out


def fail(text: str, code: int) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
    raise SystemExit(code)


def check_driver() -> None:
    state = DATA["state"]
    if state == "not_loaded":
        fail(
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
            "Make sure that the latest NVIDIA driver is installed and running.\n\n",
            9,
        )
    if state == "mismatch":
        text = "Failed to initialize NVML: Driver/library version mismatch\n"
        if _branch() >= 535:  # newer NVML also names its own version
            text += "NVML library version: {}\n".format(".".join(DATA["driver"].split(".")[:2]))
        fail(text, 18)


def _mig(g: dict[str, Any]) -> bool:
    # MIG exists on A100/H100-class parts; the table shows "Disabled" there and "N/A" elsewhere.
    return str(g["name"]).startswith(("NVIDIA A100", "NVIDIA H100", "NVIDIA H200"))


def _name(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 3] + "..."


def table() -> str:
    stamp = time.strftime("%a %b %e %H:%M:%S %Y") + "       "
    drv, cuda, branch = DATA["driver"], DATA["cuda"], _branch()
    gpus = _gpus()
    lines = [stamp]
    if branch >= 530:
        bar = "+" + "-" * 89 + "+"
        sep = "+-----------------------------------------+------------------------+----------------------+"
        lines += [
            bar,
            f"| NVIDIA-SMI {drv:<23}Driver Version: {drv:<15}CUDA Version: {cuda:<9}|",
            sep,
            "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
            "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
            "|                                         |                        |               MIG M. |",
            "|=========================================+========================+======================|",
        ]
        for g in gpus:
            fan = "0%" if g["brand"] == "GeForce" else "N/A"
            ecc = "N/A" if g["brand"] == "GeForce" else "0"
            lines += [
                f"|{g['index']:>4}  {_name(str(g['name']), 31):<31}On  |{g['bus_id']:>19} Off |{ecc:>21} |",
                f"| {fan:>3} {str(g['temp']) + 'C':>5} {'P0':>5} {str(g['power']) + 'W':>15} / "
                f"{str(g['power_cap_w']) + 'W':>5} |{str(g['used']) + 'MiB':>11} / "
                f"{str(g['memory_mib']) + 'MiB':>9} "
                f"|{'0%':>8}{'Default':>13} |",
                f"|{'':41}|{'':24}|{'Disabled' if _mig(g) else 'N/A':>21} |",
                sep,
            ]
        lines += [
            "",
            bar,
            "| Processes:" + " " * 78 + "|",
            "|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |",
            "|        ID   ID                                                               Usage      |",
            "|" + "=" * 89 + "|",
            "|  No running processes found" + " " * 61 + "|",
            bar,
        ]
        return "\n".join(lines) + "\n"
    bar = "+" + "-" * 77 + "+"
    sep = "+-------------------------------+----------------------+----------------------+"
    cuda_part = f"CUDA Version: {cuda:<9}"
    lines += [
        bar,
        f"| NVIDIA-SMI {drv:<13}Driver Version: {drv:<13}{cuda_part}|",
        "|-------------------------------+----------------------+----------------------+",
        "| GPU  Name        Persistence-M| Bus-Id        Disp.A | Volatile Uncorr. ECC |",
        "| Fan  Temp  Perf  Pwr:Usage/Cap|         Memory-Usage | GPU-Util  Compute M. |",
    ]
    if branch >= 450:
        lines.append("|                               |                      |               MIG M. |")
    lines.append("|===============================+======================+======================|")
    for g in gpus:
        fan = "0%" if g["brand"] == "GeForce" else "N/A"
        ecc = "N/A" if g["brand"] == "GeForce" else "0"
        lines += [
            f"|{g['index']:>4}  {_name(str(g['name']), 18):<18}  On   "
            f"| {g['bus_id'][4:]:>16} Off |{ecc:>21} |",
            f"| {fan:>3} {str(g['temp']) + 'C':>5} {'P0':>5} {str(g['power']) + 'W':>6} / "
            f"{str(g['power_cap_w']) + 'W':>4} |{str(g['used']) + 'MiB':>10} / "
            f"{str(g['memory_mib']) + 'MiB':>8} "
            f"|{'0%':>8}{'Default':>13} |",
        ]
        if branch >= 450:
            lines.append(f"|{'':31}|{'':22}|{'N/A':>21} |")
        lines.append(sep)
    lines.append(" " * 79)
    lines.append(bar)
    if branch >= 450:
        lines += [
            "| Processes:" + " " * 66 + "|",
            "|  GPU   GI   CI        PID   Type   Process name                  GPU Memory |",
            "|        ID   ID                                                   Usage      |",
        ]
    else:
        lines += [
            "| Processes:                                                       GPU Memory |",
            "|  GPU       PID   Type   Process name                             Usage      |",
        ]
    lines += ["|" + "=" * 77 + "|", "|  No running processes found" + " " * 49 + "|", bar]
    return "\n".join(lines) + "\n"


def list_gpus() -> str:
    return "".join(f"GPU {g['index']}: {g['name']} (UUID: {g['uuid']})\n" for g in _gpus())


def version() -> str:
    drv = DATA["driver"]
    nvml = ".".join(drv.split(".")[:2])
    return (
        f"NVIDIA-SMI version  : {drv}\nNVML version        : {nvml}\n"
        f"DRIVER version      : {drv}\nCUDA Version        : {DATA['cuda']}\n"
    )


# --query-gpu fields: name -> (unit, value). Aliases share one entry.
def _fields(g: dict[str, Any], count: int) -> dict[str, tuple[str, str]]:
    total, used, reserved = int(g["memory_mib"]), int(g["used"]), int(g["reserved"])
    f: dict[str, tuple[str, str]] = {
        "timestamp": ("", time.strftime("%Y/%m/%d %H:%M:%S.000")),
        "driver_version": ("", DATA["driver"]),
        "count": ("", str(count)),
        "name": ("", str(g["name"])),
        "index": ("", str(g["index"])),
        "serial": ("", str(g["serial"])),
        "uuid": ("", str(g["uuid"])),
        "pci.bus_id": ("", str(g["bus_id"])),
        "pci.device_id": ("", "0x" + str(g["device_id"])[2:]),
        "vbios_version": ("", str(g["vbios"])),
        "persistence_mode": ("", "Enabled"),
        "display_mode": ("", "Disabled"),
        "display_active": ("", "Disabled"),
        "pstate": ("", "P0"),
        "temperature.gpu": ("", str(g["temp"])),
        "utilization.gpu": ("%", "0"),
        "utilization.memory": ("%", "0"),
        "memory.total": ("MiB", str(total)),
        "memory.used": ("MiB", str(used)),
        "memory.free": ("MiB", str(total - used - reserved)),
        "memory.reserved": ("MiB", str(reserved)),
        "power.draw": ("W", f"{g['power']}.00"),
        "power.limit": ("W", f"{g['power_cap_w']}.00"),
        "mig.mode.current": ("", "Disabled" if _mig(g) else "[N/A]"),
        "ecc.mode.current": ("", "Enabled"),
        "compute_mode": ("", "Default"),
        "clocks.max.sm": ("MHz", "1980"),
    }
    if _branch() >= 515:  # compute_cap became queryable in R515
        f["compute_cap"] = ("", str(g["compute_cap"]))
    for alias, real in (
        ("gpu_name", "name"),
        ("gpu_uuid", "uuid"),
        ("gpu_serial", "serial"),
        ("gpu_bus_id", "pci.bus_id"),
        ("pci.bus_id", "pci.bus_id"),
    ):
        f[alias] = f[real]
    return f


def query(fields: list[str], fmt: str, ids: list[int] | None) -> str:
    opts = [o.strip() for o in fmt.split(",")]
    if not opts or opts[0] != "csv" or any(o not in ("csv", "noheader", "nounits") for o in opts):
        fail(f'"{fmt}" is not a valid format.\n\n', 2)
    gpus = [g for g in _gpus() if ids is None or g["index"] in ids]
    known = _fields(gpus[0] if gpus else _gpus()[0], len(DATA["gpus"]))
    for name in fields:
        if name not in known:
            fail(f'Field "{name}" is not a valid field to query.\n\n', 2)
    lines = []
    if "noheader" not in opts:
        lines.append(", ".join(f"{n} [{known[n][0]}]" if known[n][0] else n for n in fields))
    for g in gpus:
        vals = _fields(g, len(DATA["gpus"]))
        row = []
        for n in fields:
            unit, value = vals[n]
            if unit and "nounits" not in opts:
                value = f"{value} %" if unit == "%" else f"{value} {unit}"
            row.append(value)
        lines.append(", ".join(row))
    return "\n".join(lines) + "\n"


def _set(lines: list[str], path: str, value: str, *, xml: bool) -> None:
    """Replace the value at `path` (parent/child names) in an indented -q report, first match only."""
    want = path.split("/")
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        if xml:
            stripped = line.strip()
            if not stripped.startswith("<") or stripped.startswith("</"):
                if stripped.startswith("</") and stack:
                    stack.pop()
                continue
            tag = stripped[1:].split(">")[0].split(" ")[0]
            if stripped.endswith(f"</{tag}>"):
                names = [s for _, s in stack] + [tag]
                if names[-len(want) :] == want:
                    indent = line[: len(line) - len(line.lstrip())]
                    lines[i] = f"{indent}<{tag}>{value}</{tag}>"
                    return
            elif not stripped.endswith("/>"):
                stack.append((0, tag))
            continue
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        key = line.split(":")[0].strip() if " : " in line else line.strip()
        while stack and stack[-1][0] >= depth:
            stack.pop()
        names = [s for _, s in stack] + [key]
        if " : " in line and names[-len(want) :] == want:
            head = line.split(" : ")[0]
            lines[i] = f"{head} : {value}"
            return
        stack.append((depth, key))


def _gpu_block(text: str, xml: bool) -> tuple[str, str, str]:
    start_tag = '\t<gpu id="' if xml else "GPU 0000"
    start = text.index(start_tag)
    end = text.index("\t</gpu>") + len("\t</gpu>\n") if xml else len(text)
    return text[:start], text[start:end], text[end:]


def report(xml: bool) -> str:
    text = Q_XML if xml else Q_TEXT
    head, block, tail = _gpu_block(text, xml)
    drv = DATA["driver"]
    gsp = drv if _branch() >= 510 else "N/A"
    head_lines = head.split("\n")
    stamp = time.strftime("%a %b %e %H:%M:%S %Y")
    for path, value in (
        ("timestamp", stamp),
        ("driver_version", drv),
        ("cuda_version", DATA["cuda"]),
        ("attached_gpus", str(len(DATA["gpus"]))),
    ):
        if not xml:
            path = {
                "timestamp": "Timestamp",
                "driver_version": "Driver Version",
                "cuda_version": "CUDA Version",
                "attached_gpus": "Attached GPUs",
            }[path]
        _set(head_lines, path, value, xml=xml)
    blocks = []
    for g in _gpus():
        total, reserved = int(g["memory_mib"]), int(g["reserved"])
        lines = block.split("\n")
        bus = str(g["bus_id"])
        if xml:
            lines[0] = f'\t<gpu id="{bus}">'
            pairs = [
                ("product_name", g["name"]),
                ("product_brand", g["brand"]),
                ("product_architecture", g["architecture"]),
                ("serial", g["serial"]),
                ("uuid", g["uuid"]),
                ("minor_number", g["index"]),
                ("vbios_version", g["vbios"]),
                ("gsp_firmware_version", gsp),
                ("pci/pci_bus", bus[9:11]),
                ("pci/pci_device", bus[12:14]),
                ("pci/pci_device_id", str(g["device_id"])[2:]),
                ("pci/pci_bus_id", bus),
                ("fb_memory_usage/total", f"{total} MiB"),
                ("fb_memory_usage/reserved", f"{reserved} MiB"),
                ("fb_memory_usage/used", "0 MiB"),
                ("fb_memory_usage/free", f"{total - reserved} MiB"),
                ("temperature/gpu_temp", f"{g['temp']} C"),
                ("gpu_power_readings/current_power_limit", f"{g['power_cap_w']}.00 W"),
                ("gpu_power_readings/default_power_limit", f"{g['power_cap_w']}.00 W"),
                ("gpu_power_readings/max_power_limit", f"{g['power_cap_w']}.00 W"),
            ]
        else:
            lines[0] = f"GPU {bus}"
            pairs = [
                ("Product Name", g["name"]),
                ("Product Brand", g["brand"]),
                ("Product Architecture", g["architecture"]),
                ("Serial Number", g["serial"]),
                ("GPU UUID", g["uuid"]),
                ("Minor Number", g["index"]),
                ("VBIOS Version", g["vbios"]),
                ("GSP Firmware Version", gsp),
                ("PCI/Bus", "0x" + bus[9:11]),
                ("PCI/Device", "0x" + bus[12:14]),
                ("PCI/Device Id", g["device_id"]),
                ("PCI/Bus Id", bus),
                ("FB Memory Usage/Total", f"{total} MiB"),
                ("FB Memory Usage/Reserved", f"{reserved} MiB"),
                ("FB Memory Usage/Used", "0 MiB"),
                ("FB Memory Usage/Free", f"{total - reserved} MiB"),
                ("Temperature/GPU Current Temp", f"{g['temp']} C"),
                ("GPU Power Readings/Current Power Limit", f"{g['power_cap_w']}.00 W"),
                ("GPU Power Readings/Default Power Limit", f"{g['power_cap_w']}.00 W"),
                ("GPU Power Readings/Max Power Limit", f"{g['power_cap_w']}.00 W"),
            ]
        for path, value in pairs:
            _set(lines, path, str(value), xml=xml)
        blocks.append("\n".join(lines))
    if xml:
        return "\n".join(head_lines) + "".join(blocks) + tail
    return "\n".join(head_lines) + "\n".join(b.rstrip("\n") + "\n" for b in blocks) + "\n"


USAGE = """NVIDIA System Management Interface -- v{drv}

NVSMI provides monitoring information for Tesla and select Quadro devices.
The data is presented in either a plain text or an XML format, via stdout or a file.
NVSMI also provides several management operations for changing the device state.

    nvidia-smi [OPTION1 [ARG1]] [OPTION2 [ARG2]] ...

    -h,   --help                Print usage information and exit.
    -L,   --list-gpus           Display a list of GPUs connected to the system.
    -q,   --query               Display GPU or Unit info.
    -x,   --xml-format          Produce XML output.
          --query-gpu           Information about GPU.
          --format              Comma separated list of format options (csv, noheader, nounits).
    -i,   --id=                 Target a specific GPU.
"""


def main(argv: list[str]) -> int:
    args: list[str] = []
    for a in argv:  # --opt=value and --opt value are the same
        if a.startswith("--") and "=" in a:
            args += a.split("=", 1)
        else:
            args.append(a)
    if "-h" in args or "--help" in args:
        sys.stdout.write(USAGE.format(drv=DATA["driver"]))
        return 0
    check_driver()
    ids: list[int] | None = None
    fields: list[str] | None = None
    fmt: str | None = None
    flags = set()
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-i", "--id") and i + 1 < len(args):
            ids = [int(x) for x in args[i + 1].split(",")]
            i += 2
            continue
        if a.startswith("-i") and a[2:].isdigit():
            ids = [int(a[2:])]
        elif a == "--query-gpu" and i + 1 < len(args):
            fields = [f.strip() for f in args[i + 1].split(",") if f.strip()]
            i += 2
            continue
        elif a == "--format" and i + 1 < len(args):
            fmt = args[i + 1]
            i += 2
            continue
        elif a in ("-d", "--display", "-f", "--filename") and i + 1 < len(args):
            i += 2
            continue
        else:
            flags.add(a)
        i += 1
    if fields is not None:
        if fmt is None:
            fail("--format must be specified with --query-gpu.\n\n", 2)
        sys.stdout.write(query(fields, fmt or "csv", ids))
    elif flags & {"-L", "--list-gpus"}:
        sys.stdout.write(list_gpus())
    elif "--version" in flags:
        sys.stdout.write(version())
    elif flags & {"-q", "--query", "-a"}:
        sys.stdout.write(report(bool(flags & {"-x", "--xml-format"})))
    elif flags - {"-x", "--xml-format"}:
        bad = sorted(flags)[0]
        fail(f"\nInvalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n\n{bad}\n", 2)
    else:
        sys.stdout.write(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
