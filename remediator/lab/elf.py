"""Tiny x86-64 ELF shared objects that stand in for NVIDIA libraries on lab hosts.

Each stub carries the real SONAME, so `ldconfig` caches it and `ctypes.CDLL` loads it, and may export
a few functions that report a version (`cudnnGetVersion`, `cudaRuntimeGetVersion`, ...), so a probe
that asks a library for its version gets the scenario's answer. No code of NVIDIA's is involved.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

_PAGE = 0x1000


class Kind(Enum):
    """What an exported stub function does."""

    RETURN = "return"  # int f(...) { return value; }
    STORE = "store"  # int f(int *out, ...) { *out = value; return 0; }


@dataclass(frozen=True)
class Export:
    name: str
    kind: Kind
    value: int


def _code(export: Export) -> bytes:
    imm = struct.pack("<i", export.value)
    if export.kind is Kind.RETURN:
        return b"\xb8" + imm + b"\xc3"  # mov eax, imm32; ret
    return b"\xc7\x07" + imm + b"\x31\xc0\xc3"  # mov dword [rdi], imm32; xor eax, eax; ret


def _elf_hash(name: bytes) -> int:
    h = 0
    for c in name:
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def shared_object(
    soname: str,
    exports: tuple[Export, ...] = (),
    *,
    needed: tuple[str, ...] = (),
    rpath: tuple[str, ...] = (),
    runpath: tuple[str, ...] = (),
) -> bytes:
    """Return the bytes of a shared object named `soname` exporting `exports`.

    `needed` become DT_NEEDED entries, `rpath` and `runpath` one DT_RPATH / DT_RUNPATH each (entries
    joined with `:`, written as given: `$ORIGIN/../lib`). An object with DT_NEEDED entries loads only
    where the loader finds those libraries; the lab's framework objects are read, never loaded."""
    # Layout, all in one read+execute PT_LOAD at address 0:
    # ELF header | 3 program headers | .hash | .dynsym | .dynstr | .text | .dynamic
    strtab = bytearray(b"\0")

    def add_str(s: str) -> int:
        off = len(strtab)
        strtab.extend(s.encode() + b"\0")
        return off

    soname_off = add_str(soname)
    needed_offs = [add_str(n) for n in needed]
    rpath_off = add_str(":".join(rpath)) if rpath else None
    runpath_off = add_str(":".join(runpath)) if runpath else None
    name_offs = [add_str(e.name) for e in exports]
    nsyms = len(exports) + 1  # index 0 is the null symbol

    ehdr_size, phdr_size, nphdr = 64, 56, 3
    hash_off = ehdr_size + phdr_size * nphdr
    nbucket = 1
    hash_size = 4 * (2 + nbucket + nsyms)
    dynsym_off = hash_off + hash_size
    dynsym_off = (dynsym_off + 7) & ~7
    dynsym_size = 24 * nsyms
    dynstr_off = dynsym_off + dynsym_size
    text_off = (dynstr_off + len(strtab) + 15) & ~15
    codes = [_code(e) for e in exports]
    code_offs = []
    pos = text_off
    for c in codes:
        code_offs.append(pos)
        pos = (pos + len(c) + 15) & ~15
    dynamic_off = (pos + 7) & ~7
    dyn_entries = [(1, off) for off in needed_offs]  # DT_NEEDED, in link order
    dyn_entries += [
        (4, hash_off),  # DT_HASH
        (5, dynstr_off),  # DT_STRTAB
        (6, dynsym_off),  # DT_SYMTAB
        (10, len(strtab)),  # DT_STRSZ
        (11, 24),  # DT_SYMENT
        (14, soname_off),  # DT_SONAME
    ]
    if rpath_off is not None:
        dyn_entries.append((15, rpath_off))  # DT_RPATH
    if runpath_off is not None:
        dyn_entries.append((29, runpath_off))  # DT_RUNPATH
    dyn_entries.append((0, 0))  # DT_NULL
    dynamic_size = 16 * len(dyn_entries)
    total = dynamic_off + dynamic_size

    out = bytearray(total)
    out[0:16] = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    struct.pack_into(
        "<HHIQQQIHHHHHH",
        out,
        16,
        3,
        62,
        1,
        0,
        ehdr_size,
        0,
        0,
        ehdr_size,
        phdr_size,
        nphdr,
        64,
        0,
        0,
    )
    phdrs = [
        (1, 5, 0, 0, 0, total, total, _PAGE),  # PT_LOAD, R+X
        (2, 4, dynamic_off, dynamic_off, dynamic_off, dynamic_size, dynamic_size, 8),  # PT_DYNAMIC
        (0x6474E551, 6, 0, 0, 0, 0, 0, 16),  # PT_GNU_STACK, RW: no executable stack wanted
    ]
    for i, ph in enumerate(phdrs):
        struct.pack_into("<IIQQQQQQ", out, ehdr_size + i * phdr_size, *ph)

    buckets = [0] * nbucket
    chains = [0] * nsyms
    for i, e in enumerate(exports, start=1):
        b = _elf_hash(e.name.encode()) % nbucket
        chains[i] = buckets[b]
        buckets[b] = i
    struct.pack_into(f"<II{nbucket}I{nsyms}I", out, hash_off, nbucket, nsyms, *buckets, *chains)

    for i, (name_off, code_off, code) in enumerate(zip(name_offs, code_offs, codes, strict=True), start=1):
        # st_shndx only has to be defined (non-zero); the object has no section headers.
        struct.pack_into("<IBBHQQ", out, dynsym_off + 24 * i, name_off, 0x12, 0, 1, code_off, len(code))
    out[dynstr_off : dynstr_off + len(strtab)] = strtab
    for code_off, code in zip(code_offs, codes, strict=True):
        out[code_off : code_off + len(code)] = code
    for i, (tag, val) in enumerate(dyn_entries):
        struct.pack_into("<qQ", out, dynamic_off + 16 * i, tag, val)
    return bytes(out)
