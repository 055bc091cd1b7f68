"""Structural check of pcap and pcapng files, before a C engine reads them.

libpcap (under nfstream) stops silently at a truncated record and some corrupt
headers make it skip or misread the rest of a capture, so a damaged file would
be ingested as a shorter, plausible one. :func:`check` walks every record (pcap)
or block (pcapng) header without reading payloads and raises
:class:`~rogueflow.errors.InputError` naming the packet number and byte offset
of the first problem.

It reads the file through ``mmap`` and touches only the headers, so a 1 GB
capture takes a few seconds.

>>> kind_of(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
'pcap'
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from rogueflow.errors import InputError

# Magic number as stored in the file -> (byte order, record header size, time unit).
# a1b2c3d4 = microseconds, a1b23c4d = nanoseconds, a1b2cd34 = Alexey Kuznetsov's
# "modified" pcap, whose record header has 8 more bytes (ifindex, protocol, type).
PCAP_MAGICS: dict[bytes, tuple[str, int, str]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 16, "us"),
    b"\xa1\xb2\xc3\xd4": (">", 16, "us"),
    b"\x4d\x3c\xb2\xa1": ("<", 16, "ns"),
    b"\xa1\xb2\x3c\x4d": (">", 16, "ns"),
    b"\x34\xcd\xb2\xa1": ("<", 24, "us"),
    b"\xa1\xb2\xcd\x34": (">", 24, "us"),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
PCAPNG_BOM = 0x1A2B3C4D
PCAP_HEADER = 24

# libpcap refuses records longer than this (MAXIMUM_SNAPLEN, raised for a few link types
# by max_snaplen_for_dlt); nfstream would stop with an error on them.
MAX_CAPLEN = 262_144
MAX_CAPLEN_FOR_LINKTYPE = {231: 128 * 1024 * 1024, 249: 1024 * 1024, 279: 8 * 1024 * 1024}
# No legitimate block comes near this; a larger length is a corrupt header.
MAX_BLOCK = 16 * 1024 * 1024

# pcapng block types
SHB, IDB, PB, SPB, EPB = 0x0A0D0D0A, 0x00000001, 0x00000002, 0x00000003, 0x00000006


@dataclass
class Summary:
    """What the walk found: enough to report and to decide how to read the file."""

    kind: str
    packets: int = 0
    linktypes: list[int] = field(default_factory=list)
    time_unit: str = "us"


def kind_of(head: bytes) -> str | None:
    """``"pcap"``, ``"pcapng"`` or None, from the first bytes of a file."""
    if head[:4] in PCAP_MAGICS and len(head) >= PCAP_HEADER:
        order = PCAP_MAGICS[head[:4]][0]
        (major,) = struct.unpack_from(order + "H", head, 4)
        return "pcap" if major == 2 else None
    if head[:4] == PCAPNG_SHB and len(head) >= 12:
        # The byte-order magic must follow, in either order; "\n\r\r\n" alone could be text.
        bom = head[8:12]
        if bom in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
            return "pcapng"
    return None


def check(path: Path, *, display: str | Path | None = None) -> Summary:
    """Walk the whole file; raise InputError (naming ``display`` or ``path``) if it is damaged."""
    name = display if display is not None else path
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise InputError(name, "byte offset 0", "empty file, not a pcap or pcapng capture")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            head = bytes(buf[:PCAP_HEADER])
            kind = kind_of(head)
            if kind == "pcap":
                return _walk_pcap(buf, size, name)
            if kind == "pcapng":
                return _walk_pcapng(buf, size, name)
    if head[:4] in PCAP_MAGICS and size < PCAP_HEADER:
        raise InputError(name, "byte offset 0", f"file header truncated ({size} of 24 bytes)")
    if head[:4] == PCAPNG_SHB and size < 12:
        raise InputError(name, "byte offset 0", f"section header truncated ({size} bytes)")
    raise InputError(name, "byte offset 0", "not a pcap or pcapng file (unknown magic number)")


def _walk_pcap(buf: mmap.mmap, size: int, name: str | Path) -> Summary:
    order, rec_size, unit = PCAP_MAGICS[bytes(buf[:4])]
    (network,) = struct.unpack_from(order + "I", buf, 20)
    linktype = network & 0xFFFF  # the upper bits carry FCS information
    summary = Summary("pcap", linktypes=[linktype], time_unit=unit)
    rec = struct.Struct(order + "IIII")
    # Exactly 10**6 µs is a known rounding bug of some writers, so only larger values count.
    frac_limit = 1_000_000_000 if unit == "ns" else 1_000_000
    limit = MAX_CAPLEN_FOR_LINKTYPE.get(linktype, MAX_CAPLEN)
    off, n = PCAP_HEADER, 0
    while off < size:
        n += 1
        where = f"packet {n} at byte offset {off}"
        if size - off < rec_size:
            raise InputError(
                name,
                where,
                f"record header truncated ({size - off} of {rec_size} bytes); "
                "the file was cut short",
            )
        secs, frac, incl, _ = rec.unpack_from(buf, off)
        if incl > limit:
            raise InputError(
                name,
                where,
                f"captured length {incl} exceeds the maximum of {limit} bytes; the file is corrupt",
            )
        if frac > frac_limit:
            raise InputError(
                name,
                where,
                f"timestamp fraction {frac} is above {frac_limit}; the record header is corrupt",
            )
        if secs >= 1 << 31:
            # libpcap reads the seconds as signed 32-bit: this would become a time before 1970
            raise InputError(
                name,
                where,
                f"timestamp seconds {secs} are beyond 2038-01-19 (libpcap reads them as a "
                "time before 1970); the record header is corrupt",
            )
        end = off + rec_size + incl
        if end > size:
            raise InputError(
                name,
                where,
                f"packet data truncated ({size - off - rec_size} of {incl} bytes); "
                "the file was cut short",
            )
        off = end
    summary.packets = n
    return summary


def _walk_pcapng(buf: mmap.mmap, size: int, name: str | Path) -> Summary:
    summary = Summary("pcapng", time_unit="us")
    off, n = 0, 0
    order = "<"
    interfaces = 0  # in the current section
    while off < size:
        where = f"packet {n + 1} at byte offset {off}"
        if size - off < 12:
            raise InputError(
                name, where, f"block header truncated ({size - off} bytes); the file was cut short"
            )
        raw_type = bytes(buf[off : off + 4])
        if raw_type == PCAPNG_SHB:
            # A new section: its own byte order, its own interfaces.
            (bom,) = struct.unpack_from("<I", buf, off + 8)
            if bom == PCAPNG_BOM:
                order = "<"
            elif bom == 0x4D3C2B1A:
                order = ">"
            else:
                raise InputError(name, where, "section header has no valid byte-order magic")
            interfaces = 0
        btype, total = struct.unpack_from(order + "II", buf, off)
        problem = _block_problem(btype, total, size - off)
        if problem:
            raise InputError(name, where, problem)
        (trailer,) = struct.unpack_from(order + "I", buf, off + total - 4)
        if trailer != total:
            raise InputError(
                name,
                where,
                f"block total length {total} in the header but {trailer} in the trailer; "
                "the file is corrupt",
            )
        if btype == SHB:
            major, _minor = struct.unpack_from(order + "HH", buf, off + 12)
            if major != 1:
                raise InputError(name, where, f"unsupported pcapng major version {major}")
        elif btype == IDB:
            (linktype,) = struct.unpack_from(order + "H", buf, off + 8)
            summary.linktypes.append(linktype)
            interfaces += 1
        elif btype in (EPB, PB, SPB):
            n += 1
            _check_packet_block(buf, off, btype, total, order, interfaces, name, where)
        off += total
    summary.packets = n
    return summary


def _block_problem(btype: int, total: int, remaining: int) -> str | None:
    minimum = {SHB: 28, IDB: 20, EPB: 32, PB: 32, SPB: 16}.get(btype, 12)
    if total % 4 or total < minimum:
        return f"block type 0x{btype:08x} has an invalid total length {total}; the file is corrupt"
    if total > MAX_BLOCK:
        return f"block type 0x{btype:08x} claims {total} bytes; the file is corrupt"
    if total > remaining:
        return (
            f"block type 0x{btype:08x} truncated ({remaining} of {total} bytes); "
            "the file was cut short"
        )
    return None


def _check_packet_block(
    buf: mmap.mmap,
    off: int,
    btype: int,
    total: int,
    order: str,
    interfaces: int,
    name: str | Path,
    where: str,
) -> None:
    if btype == SPB:
        iface = 0
        caplen = None  # the captured length is min(original length, snaplen): nothing to check
    elif btype == EPB:
        iface, _, _, caplen, _ = struct.unpack_from(order + "IIIII", buf, off + 8)
    else:  # obsolete Packet Block: 16-bit interface id and drops count
        iface, _, _, _, caplen, _ = struct.unpack_from(order + "HHIIII", buf, off + 8)
    if iface >= interfaces:
        raise InputError(
            name,
            where,
            f"packet refers to interface {iface} but the section describes {interfaces}",
        )
    if caplen is not None and 28 + caplen + 4 > total:
        raise InputError(
            name,
            where,
            f"captured length {caplen} does not fit in a block of {total} bytes; "
            "the file is corrupt",
        )
