"""Tor's link protocol in a capture: its TLS handshake and its fixed-size cells.

Clients and relays speak TLS to a relay's ORPort (9001 by convention, 443 for many
relays) and give themselves away in ways ordinary TLS rarely combines:

* **ClientHello**: the SNI is a random name ``www.<4–25 base32 characters>.com``
  (tor's ``crypto_random_hostname(4, 25, "www.", ".com")`` in ``tortls``) and there
  is no ALPN extension.
* **Link certificate** (in clear up to TLS 1.2): subject ``CN=www.<8–20 base32>.net``,
  issuer ``CN=www.<8–20 base32>.com``, two different random names and nothing else
  in either name.
* **Cell framing**: after the handshake both sides send fixed-size cells (512 bytes
  up to link protocol 3, 514 from 4 on), one or a few per TLS record, so most
  application-data records hold whole cells plus the cipher's overhead: 531 bytes
  for one cell under TLS 1.3, 538 under TLS 1.2 GCM, 544 under TLS 1.0 CBC-SHA with
  1/n-1 record splitting (nDPI's tor.pcap, where the 1-byte halves are 32-byte
  records), 560–592 under TLS 1.1+ CBC.
* **Port**: 9001 (ORPort default), 9030 (DirPort default) or 443.

The first three are *strong* signals; a label needs two of them (0.93, or 0.97 with
all three), so a script fetching ``www.python.com`` without ALPN, or a chat protocol
with 540-byte messages, is not Tor. A connection captured mid-way shows no
handshake: cell framing in both directions on a Tor port gives a low-confidence
label (0.60 on 9001/9030, 0.55 on 443). Pluggable transports (obfs4, meek,
Snowflake) hide all of this and are not detected here.

Nothing here raises on arbitrary bytes; :func:`probe` decides cheaply, per payload
segment, whether a connection is worth buffering.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from rogueflow.detect.p2p import Label, Stream, place

SERVICE, CATEGORY = "tor", "anonymizer.tor"
#: ports that count as a (weak) Tor signal, and what they are
TOR_PORTS = {9001: "Tor ORPort default", 9030: "Tor DirPort default", 443: "ORPort on 443"}
CELL_SIZES = (512, 514)  # link protocol ≤ 3, ≥ 4
#: bytes a TLS record adds to its plaintext: AEAD tag (+ explicit nonce, content
#: type), or MAC + padding (+ explicit IV) for CBC; 16–80 covers TLS 1.0–1.3 suites
OVERHEAD = (16, 80)
#: most cells per record considered: 31 × 514 + 80 < 16 384, so a full-size record
#: of ordinary bulk TLS never counts as cells
MAX_CELLS = 31
TINY = 64  # records below this are 1/n-1 halves, alerts, tickets: not judged
#: cell-framed records needed: with a handshake, and in each direction without one
MIN_CELL_RECORDS, MIN_MIDWAY_RECORDS = 3, 4
MIN_CELL_SHARE, MIN_MIDWAY_SHARE = 0.6, 0.75
SAME_LENGTH = 0.9  # share of the k-cell records that must have the most common length
MAX_RECORD = 16384 + 2048  # TLSCiphertext.length limit
MAX_RECORDS = 4096  # per stream: enough to judge, bounded on any input

SNI_NAME = re.compile(r"www\.[a-z2-7]{4,25}\.(?:com|net)")
CERT_NAME = re.compile(r"www\.[a-z2-7]{8,20}\.(?:com|net)")
_CN_OID = b"\x06\x03\x55\x04\x03"
# a CN attribute holding a Tor-shaped name: UTF8String, PrintableString or IA5String
_CERT_CN = re.compile(
    rb"\x06\x03\x55\x04\x03[\x0c\x13\x16][\x0c-\x1d]www\.[a-z2-7]{8,20}\.(?:com|net)"
)
_HANDSHAKE, _APPDATA = 22, 23
_CLIENT_HELLO, _CERTIFICATE = 1, 11
_EXT_SNI, _EXT_ALPN = 0, 16


# ---- TLS records ------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    offset: int  # of the 5-byte header in the stream
    kind: int  # content type: 20 change_cipher_spec, 21 alert, 22 handshake, 23 data
    length: int  # of the body, from the header (the body may be cut at the buffer's end)


def _header(data: bytes, pos: int) -> int | None:
    """Body length of a plausible TLS record header at ``pos``, else None."""
    if pos + 5 > len(data) or not 20 <= data[pos] <= 23 or data[pos + 1] != 3:
        return None
    if data[pos + 2] > 4:
        return None
    length = int.from_bytes(data[pos + 3 : pos + 5], "big")
    return length if 0 < length <= MAX_RECORD else None


def _chains(data: bytes, pos: int, length: int) -> bool:
    """Does the record at ``pos`` end at the data's end or where another begins?"""
    nxt = pos + 5 + length
    return nxt >= len(data) or _header(data, nxt) is not None


def records(data: bytes, limit: int = MAX_RECORDS) -> list[Record]:
    """The TLS records of one direction of a connection.

    A stream captured mid-way, or with a gap (the reassembler marks one with a
    newline), is resynchronised at the next header followed by another header."""
    out: list[Record] = []
    pos = 0
    while pos < len(data) and len(out) < limit:
        length = _header(data, pos)
        if length is None or (pos and not _chains(data, pos, length)):
            got = _resync(data, pos + 1)
            if got is None:
                break
            pos, length = got
        out.append(Record(pos, data[pos], length))
        pos += 5 + length
    return out


def _resync(data: bytes, start: int) -> tuple[int, int] | None:
    """The next header at or after ``start`` that another header follows. It lies within
    one maximal record, or this is not TLS: a JSON or P2P stream costs a bounded scan
    (for the version byte 3, found by ``bytes.find``), not its whole buffer."""
    end = min(len(data), start + MAX_RECORD + 6)
    i = data.find(3, start + 1, end)
    while i >= 0:
        if not 20 <= data[i - 1] <= 23 or i + 1 >= len(data) or data[i + 1] > 4:
            i = data.find(3, i + 1, end)
            continue
        length = _header(data, i - 1)
        # three bytes of ciphertext look like a header once in ~80 000 positions, two
        # headers in a row almost never
        nxt = i + 4 + (length or 0)
        if length is not None and nxt < len(data) and _header(data, nxt) is not None:
            return i - 1, length
        i = data.find(3, i + 1, end)
    return None


def handshake_messages(data: bytes, recs: list[Record]) -> list[tuple[int, int, bytes]]:
    """(type, stream offset, body) of the clear-text handshake messages that open a
    stream (records from offset 0 until the first non-handshake record); a body cut
    by the capture is returned as far as it goes."""
    buf, starts = bytearray(), []  # starts: (buffer offset, stream offset) per record
    for r in recs:
        if r.kind != _HANDSHAKE or (not buf and r.offset != 0):
            break
        starts.append((len(buf), r.offset + 5))
        buf += data[r.offset + 5 : r.offset + 5 + r.length]
    out: list[tuple[int, int, bytes]] = []
    pos = 0
    while pos + 4 <= len(buf) and len(out) < 16:
        kind, size = buf[pos], int.from_bytes(buf[pos + 1 : pos + 4], "big")
        where = max((s for s in starts if s[0] <= pos), default=(0, 0))
        out.append((kind, where[1] + pos - where[0], bytes(buf[pos + 4 : pos + 4 + size])))
        pos += 4 + size
    return out


# ---- ClientHello and certificate -------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    sni: str | None
    alpn: bool
    complete: bool  # every extension was read: an absent SNI/ALPN is really absent


def client_hello(body: bytes) -> Hello | None:
    """SNI and ALPN presence of a ClientHello body (possibly cut short)."""
    pos = 2 + 32  # version, random
    if len(body) < pos + 1:
        return None
    pos += 1 + body[pos]  # session id
    if pos + 2 > len(body):
        return Hello(None, False, False)
    pos += 2 + int.from_bytes(body[pos : pos + 2], "big")  # cipher suites
    if pos + 1 > len(body):
        return Hello(None, False, False)
    pos += 1 + body[pos]  # compression methods
    if pos + 2 > len(body):
        return Hello(None, False, pos == len(body))  # no extensions at all (SSL 3 style)
    end = min(len(body), pos + 2 + int.from_bytes(body[pos : pos + 2], "big"))
    complete = pos + 2 + int.from_bytes(body[pos : pos + 2], "big") <= len(body)
    pos += 2
    sni, alpn = None, False
    while pos + 4 <= end:
        kind, size = int.from_bytes(body[pos : pos + 2], "big"), body[pos + 2] << 8 | body[pos + 3]
        ext = body[pos + 4 : min(end, pos + 4 + size)]
        if kind == _EXT_ALPN:
            alpn = True
        elif kind == _EXT_SNI and len(ext) >= 5 and ext[2] == 0:
            name = ext[5 : 5 + int.from_bytes(ext[3:5], "big")]
            sni = name.decode("ascii", "replace")
        pos += 4 + size
    return Hello(sni, alpn, complete and pos == end)


def _tlv(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(tag, content start, content end) of the DER element at ``pos``; the end may lie
    beyond the data when the capture cut it."""
    if pos + 2 > len(data):
        return None
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    n = first & 0x7F
    if not 1 <= n <= 3 or pos + 2 + n > len(data):
        return None
    size = int.from_bytes(data[pos + 2 : pos + 2 + n], "big")
    return tag, pos + 2 + n, pos + 2 + n + size


def _children(data: bytes, start: int, end: int, limit: int = 64) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    pos, end = start, min(end, len(data))
    while pos < end and len(out) < limit:
        got = _tlv(data, pos)
        if got is None:
            break
        out.append(got)
        pos = got[2]
    return out


def _name(der: bytes, start: int, end: int) -> list[tuple[bytes, str]]:
    """(attribute OID, value) of every attribute of an X.501 Name."""
    out = []
    for tag, s, e in _children(der, start, end):
        if tag != 0x31:  # SET
            return []
        for tag2, s2, e2 in _children(der, s, e):
            parts = _children(der, s2, e2, 2) if tag2 == 0x30 else []
            if len(parts) != 2 or parts[0][0] != 0x06:
                return []
            (_, os_, oe), (_, vs, ve) = parts
            out.append((der[os_:oe], der[vs:ve].decode("latin-1")))
    return out


def cert_names(der: bytes) -> tuple[list[tuple[bytes, str]], list[tuple[bytes, str]]] | None:
    """(issuer, subject) attributes of a DER X.509 certificate, None if unreadable."""
    cert = _tlv(der, 0)
    tbs = _tlv(der, cert[1]) if cert and cert[0] == 0x30 else None
    if tbs is None or tbs[0] != 0x30:
        return None
    fields = _children(der, tbs[1], tbs[2], 6)
    if fields and fields[0][0] == 0xA0:  # explicit version
        fields = fields[1:]
    if len(fields) < 5 or fields[2][0] != 0x30 or fields[4][0] != 0x30:
        return None
    return _name(der, fields[2][1], fields[2][2]), _name(der, fields[4][1], fields[4][2])


def certificates(body: bytes) -> list[bytes]:
    """The DER certificates of a TLS 1.0–1.2 Certificate message (cut ones included)."""
    out: list[bytes] = []
    pos = 3
    while pos + 3 <= len(body) and len(out) < 8:
        size = int.from_bytes(body[pos : pos + 3], "big")
        out.append(body[pos + 3 : pos + 3 + size])
        pos += 3 + size
    return out


def tor_link_cert(der: bytes) -> tuple[str, str] | None:
    """(subject CN, issuer CN) when the certificate has Tor's link-certificate shape."""
    names = cert_names(der)
    if names is None:
        return None
    issuer, subject = names
    if len(issuer) != 1 or len(subject) != 1:
        return None
    (ioid, icn), (soid, scn) = issuer[0], subject[0]
    if ioid != _CN_OID[2:] or soid != _CN_OID[2:] or icn == scn:
        return None
    if CERT_NAME.fullmatch(icn) and CERT_NAME.fullmatch(scn):
        return scn, icn
    return None


# ---- cell framing -------------------------------------------------------------------


def cells_in(length: int) -> int:
    """How many whole cells a record of ``length`` body bytes may hold (0: none)."""
    for k in range(max(1, (length - OVERHEAD[1]) // CELL_SIZES[1]), MAX_CELLS + 1):
        if k * CELL_SIZES[0] + OVERHEAD[0] > length:
            break
        if length <= k * CELL_SIZES[1] + OVERHEAD[1]:
            return k
    return 0


class Framing:
    """Application-data record lengths of one direction, judged as cells.

    The records before the first cell-sized one are left out: TLS 1.3's encrypted
    handshake and the link handshake's variable-length cells (VERSIONS, CERTS,
    AUTH_CHALLENGE, NETINFO) come first. A cell always has the same plaintext size
    and a connection keeps one cipher, so all records holding k cells have one exact
    length (one cell: 544 B in tor.pcap, 531 B under TLS 1.3; two: 1045 B); ordinary
    TLS of similar sizes varies from record to record."""

    def __init__(self, lengths: list[int]) -> None:
        judged = [n for n in lengths if n >= TINY]
        first = next((i for i, n in enumerate(judged) if cells_in(n)), len(judged))
        self.judged = judged[first:]
        self.by_cells: dict[int, Counter[int]] = {}
        for n in self.judged:
            k = cells_in(n)
            if k:
                self.by_cells.setdefault(k, Counter())[n] += 1

    @property
    def cells(self) -> int:
        """Records holding whole cells."""
        return sum(c.total() for c in self.by_cells.values())

    @property
    def small(self) -> int:
        """Records holding one or two cells: control cells, SENDMEs, short replies."""
        return sum(c.total() for k, c in self.by_cells.items() if k <= 2)

    @property
    def exact(self) -> bool:
        """Records of each cell count have one length (a tenth may differ)."""
        return all(
            c.most_common(1)[0][1] >= SAME_LENGTH * c.total() for c in self.by_cells.values()
        )

    def framed(self, minimum: int, share: float) -> bool:
        return self.small >= minimum and self.exact and self.cells >= share * len(self.judged)


def _framed(directions: list[Framing], minimum: int, share: float) -> bool:
    """Both directions together: enough cells, exact lengths, mostly cells."""
    small = sum(f.small for f in directions)
    cells = sum(f.cells for f in directions)
    judged = sum(len(f.judged) for f in directions)
    exact = all(f.exact for f in directions)
    return small >= minimum and exact and judged > 0 and cells >= share * judged


# ---- the detector ----------------------------------------------------------------------


@dataclass
class _Seen:
    hello: tuple[Stream, int, Hello] | None = None  # any ClientHello, Tor-like or not
    cert: tuple[Stream, int, str, str] | None = None
    handshake: bool = False  # a clear-text handshake opened some direction
    framing: list[Framing] = field(default_factory=list)


def _look(streams: list[Stream]) -> _Seen:
    seen = _Seen()
    for s in streams:
        recs = records(s.data)
        for kind, offset, body in handshake_messages(s.data, recs):
            seen.handshake = True
            if kind == _CLIENT_HELLO and seen.hello is None:
                got = client_hello(body)
                if got is not None:
                    seen.hello = (s, offset, got)
            elif kind == _CERTIFICATE and seen.cert is None:
                for der in certificates(body):
                    names = tor_link_cert(der)
                    if names is not None:
                        seen.cert = (s, offset, *names)
                        break
        seen.framing.append(Framing([r.length for r in recs if r.kind == _APPDATA]))
    return seen


def tor_hello(hello: Hello) -> bool:
    return hello.sni is not None and bool(SNI_NAME.fullmatch(hello.sni)) and not hello.alpn


def detect_tor(streams: list[Stream], ports: tuple[int, int] = (0, 0)) -> Label | None:
    """An ``anonymizer.tor`` label for a connection speaking Tor's link protocol over
    TLS; None otherwise. Never raises on arbitrary bytes."""
    seen = _look(streams)
    notes: list[str] = []
    if seen.hello is not None and tor_hello(seen.hello[2]):
        s, off, hello = seen.hello
        notes.append(
            f"ClientHello SNI {hello.sni} (random base32 name), no ALPN, in "
            f"{place(s, off) or 'the payload'}"
        )
    if seen.cert is not None:
        s, off, subject, issuer = seen.cert
        notes.append(
            f"link certificate CN={subject} issued by CN={issuer} (random names, no other "
            f"attribute) in {place(s, off) or 'the payload'}"
        )
    if _framed(seen.framing, MIN_CELL_RECORDS, MIN_CELL_SHARE):
        notes.append(_framing_note(seen.framing))
    strong = len(notes)
    port = next((p for p in sorted(ports, key=lambda p: p == 443) if p in TOR_PORTS), None)
    port_note = f"port {port} ({TOR_PORTS[port]})" if port is not None else None
    if strong >= 2:
        parts = ["Tor link protocol: " + notes[0], *notes[1:]]
        if port_note:
            parts.append(port_note)
        return Label(SERVICE, CATEGORY, 0.97 if strong == 3 else 0.93, "; ".join(parts))
    midway = not seen.handshake and port is not None and len(seen.framing) == 2
    if midway and all(f.framed(MIN_MIDWAY_RECORDS, MIN_MIDWAY_SHARE) for f in seen.framing):
        evidence = (
            f"Tor link protocol (session seen mid-way, no handshake): "
            f"{_framing_note(seen.framing)}, in both directions; {port_note}"
        )
        return Label(SERVICE, CATEGORY, 0.55 if port == 443 else 0.60, evidence)
    return None


def _framing_note(directions: list[Framing]) -> str:
    counts: Counter[int] = Counter()
    for f in directions:
        for c in f.by_cells.values():
            counts.update(c)
    common = ", ".join(f"{n} B ×{times}" for n, times in counts.most_common(3))
    judged = sum(len(f.judged) for f in directions)
    return (
        f"cell framing: {counts.total()} of {judged} application-data records hold whole "
        f"512/514-byte cells plus TLS overhead, one length per cell count ({common})"
    )


# ---- the cheap per-segment decision ----------------------------------------------------


def probe(head: bytes, sport: int, dport: int) -> bool | None:
    """Buffer this connection for :func:`detect_tor` (True), give up on it (False: an
    ordinary ClientHello, the rest is encrypted), or undecided (None).

    Called on the first payload segments of connections nothing else claimed, so the
    common path (a segment not opening with a TLS record) is two byte comparisons."""
    tls = len(head) >= 9 and head[1] == 3
    if tls and head[0] == _HANDSHAKE and head[5] == _CLIENT_HELLO:
        hello = client_hello(head[9 : 9 + int.from_bytes(head[6:9], "big")])
        if hello is None:
            return None
        if hello.alpn or (hello.sni is not None and not SNI_NAME.fullmatch(hello.sni)):
            return False
        if hello.sni is not None:
            return True
        return False if hello.complete else None  # Tor always names a server
    if tls and head[0] == _APPDATA and (sport in TOR_PORTS or dport in TOR_PORTS):
        # a session seen mid-way: a cell-sized record among the segment's first records
        # (the first may be the 1-byte half of a 1/n-1 split)
        pos = 0
        for _ in range(4):
            length = _header(head, pos)
            if length is None or head[pos] != _APPDATA:
                break
            if cells_in(length):
                return True
            pos += 5 + length
    if tls and head[0] == _HANDSHAKE and _CN_OID in head and _CERT_CN.search(head):
        return True  # a capture that starts after the ClientHello: the server's flight
    return None


__all__ = [
    "CATEGORY",
    "CELL_SIZES",
    "SERVICE",
    "TOR_PORTS",
    "Framing",
    "Hello",
    "Record",
    "cells_in",
    "cert_names",
    "certificates",
    "client_hello",
    "detect_tor",
    "handshake_messages",
    "probe",
    "records",
    "tor_hello",
    "tor_link_cert",
]
