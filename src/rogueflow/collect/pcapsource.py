"""UDP datagrams of exporter traffic from a pcap or pcapng capture (parsed with dpkt).

Yields (capture time, exporter address, UDP payload) for every UDP datagram, whatever
its port: the decoder tells NetFlow, IPFIX and sFlow apart by their version field.
IP fragments cannot be decoded without reassembly and are counted, not guessed.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rogueflow.errors import InputError

PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

# libpcap link types
_ETHERNET, _RAW, _RAW_BSD, _RAW_OPENBSD, _LINUX_SLL, _NULL, _LOOP, _SLL2 = (
    1,
    101,
    12,
    14,
    113,
    0,
    108,
    276,
)


@dataclass
class CaptureCounts:
    packets: int = 0
    datagrams: int = 0
    not_udp: int = 0
    fragments: int = 0


def is_capture(head: bytes) -> bool:
    return head[:4] in PCAP_MAGICS or head[:4] == PCAPNG_MAGIC


def datagrams(
    path: Path, counts: CaptureCounts | None = None
) -> Iterator[tuple[float, str, bytes]]:
    """(time, exporter address, payload) of each UDP datagram in the capture."""
    import dpkt

    counts = counts if counts is not None else CaptureCounts()
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the with below; open errors named
    except OSError as exc:
        raise InputError(path, None, f"cannot open ({exc.strerror})") from None
    with fh:
        head = fh.read(4)
        fh.seek(0)
        try:
            reader: Any = dpkt.pcapng.Reader(fh) if head == PCAPNG_MAGIC else dpkt.pcap.Reader(fh)
            link = reader.datalink()
        except (ValueError, dpkt.dpkt.Error, struct_error()) as exc:
            raise InputError(path, "byte 0", f"not a pcap/pcapng capture ({exc})") from None
        number = 0
        try:
            for ts, frame in reader:
                number += 1
                counts.packets += 1
                found = _udp(frame, link, counts)
                if found is not None:
                    counts.datagrams += 1
                    yield float(ts), found[0], found[1]
        except (ValueError, dpkt.dpkt.Error, struct_error()) as exc:
            raise InputError(path, f"packet {number + 1}", f"corrupt capture ({exc})") from None


def struct_error() -> type[Exception]:
    import struct

    return struct.error


def _udp(frame: bytes, link: int, counts: CaptureCounts) -> tuple[str, bytes] | None:
    import dpkt

    try:
        if link == _ETHERNET:
            ip: Any = dpkt.ethernet.Ethernet(frame).data
        elif link in (_RAW, _RAW_BSD, _RAW_OPENBSD):
            ip = dpkt.ip.IP(frame) if frame[:1] and frame[0] >> 4 == 4 else dpkt.ip6.IP6(frame)
        elif link == _LINUX_SLL:
            ip = dpkt.sll.SLL(frame).data
        elif link == _SLL2:
            ip = dpkt.sll2.SLL2(frame).data
        elif link in (_NULL, _LOOP):
            ip = dpkt.loopback.Loopback(frame).data
        else:
            counts.not_udp += 1
            return None
    except (dpkt.dpkt.Error, ValueError, IndexError):
        counts.not_udp += 1
        return None
    if isinstance(ip, dpkt.ip.IP):
        if ip.mf or ip.offset:
            counts.fragments += 1
            return None
        source = socket.inet_ntop(socket.AF_INET, ip.src)
    elif isinstance(ip, dpkt.ip6.IP6):
        if 44 in getattr(ip, "extension_hdrs", {}):
            counts.fragments += 1
            return None
        source = socket.inet_ntop(socket.AF_INET6, ip.src)
    else:
        counts.not_udp += 1
        return None
    udp = ip.data
    if not isinstance(udp, dpkt.udp.UDP):
        counts.not_udp += 1
        return None
    return source, bytes(udp.data)
