"""Download one feed file over HTTP(S), defensively.

The content is data for a loader and nothing else: it is never executed or
unpickled. Every byte counts against a hard cap (downloaded and, for gzip, bzip2,
xz and single-member zip files, decompressed), a decompression ratio above
``max_ratio`` is refused as a bomb, redirects are few and stay on http/https,
and the whole transfer has a deadline. The result appears under its final name
only when complete.
"""

from __future__ import annotations

import bz2
import contextlib
import http.client
import lzma
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, Protocol

from rogueflow.errors import InputError

CHUNK = 1 << 16
MAX_REDIRECTS = 5
#: below this many decompressed bytes the ratio is not judged: tiny files of
#: repetitive text legitimately compress 100:1 and harm nobody
RATIO_FLOOR = 1 << 20
USER_AGENT = "rogueflow-intel-update (+https://github.com/rogueflow)"

_GZIP, _BZ2, _XZ, _ZIP = b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"PK\x03\x04"


class Fetcher(Protocol):
    def __call__(
        self, url: str, dest_dir: Path, *, max_bytes: int, timeout: float, max_ratio: float
    ) -> Path: ...


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow at most MAX_REDIRECTS redirects, and only to http/https."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            raise InputError(req.full_url, f"HTTP {code}", f"redirect to {scheme}: refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    # build_opener keeps the proxy handler (http_proxy / no_proxy from the environment)
    # and replaces the default redirect handler with the restricted one
    return urllib.request.build_opener(_Redirects())


def fetch(
    url: str,
    dest_dir: Path,
    *,
    max_bytes: int,
    timeout: float,
    max_ratio: float,
) -> Path:
    """Download ``url`` into ``dest_dir``; returns the (decompressed) file.

    ``max_bytes`` caps the download and the decompressed size; ``timeout`` is
    the deadline in seconds for the whole transfer.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise InputError(url, None, "only http:// and https:// URLs can be fetched")
    deadline = time.monotonic() + timeout
    dest_dir.mkdir(parents=True, exist_ok=True)
    raw = dest_dir / f".{uuid.uuid4().hex}.download"
    out = dest_dir / f".{uuid.uuid4().hex}.part"
    try:
        _download(url, raw, max_bytes=max_bytes, timeout=timeout, deadline=deadline)
        name = _file_name(parts.path)
        with open(raw, "rb") as fh:
            magic = fh.read(6)
        if magic.startswith(_ZIP):
            name = _unzip(url, raw, out, max_bytes=max_bytes, max_ratio=max_ratio)
        elif magic.startswith((_GZIP, _BZ2, _XZ)):
            _decompress(url, raw, out, magic, max_bytes=max_bytes, max_ratio=max_ratio)
            name = re.sub(r"\.(gz|tgz|bz2|xz)$", "", name, flags=re.I) or "feed"
        else:
            os.replace(raw, out)
        final = dest_dir / name
        os.replace(out, final)
        return final
    finally:
        for p in (raw, out):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _download(url: str, dest: Path, *, max_bytes: int, timeout: float, deadline: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with _opener().open(request, timeout=timeout) as resp, open(dest, "wb") as fh:
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise InputError(
                    url,
                    "Content-Length",
                    f"{int(length):,} bytes announced, over the cap of {max_bytes:,}; "
                    "refused (raise max_bytes for this feed if it is genuine)",
                )
            total = 0
            # read1: return what has arrived, so a trickling server meets the deadline
            read = getattr(resp, "read1", resp.read)
            while True:
                if time.monotonic() > deadline:
                    raise InputError(url, f"byte {total}", f"not complete after {timeout:g} s")
                chunk = read(CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise InputError(
                        url, f"byte {max_bytes}", f"more than the cap of {max_bytes:,} bytes"
                    )
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    except urllib.error.HTTPError as exc:
        where = f"HTTP {exc.code}"
        if exc.code in (301, 302, 303, 307, 308):
            # urllib itself refuses redirects to schemes other than http/https/ftp
            scheme = urllib.parse.urlsplit(exc.filename or "").scheme.lower()
            if scheme not in ("http", "https"):
                raise InputError(url, where, f"redirect to {scheme}: refused") from None
            raise InputError(url, where, "too many redirects (or a redirect loop)") from None
        raise InputError(url, where, str(exc.reason)) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        problem = "timed out" if isinstance(reason, TimeoutError) else str(reason)
        raise InputError(url, None, f"cannot fetch: {problem}") from None
    except TimeoutError:
        raise InputError(url, None, f"timed out after {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise InputError(url, None, f"transfer failed: {exc}") from None


def _decompressor(magic: bytes) -> Any:
    if magic.startswith(_GZIP):
        return zlib.decompressobj(wbits=31)
    if magic.startswith(_BZ2):
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor()


class _Sink:
    """Counts output bytes against the size cap and the ratio to the input consumed."""

    def __init__(self, url: str, fh: IO[bytes], max_bytes: int, max_ratio: float) -> None:
        self.url, self.fh, self.max_bytes, self.max_ratio = url, fh, max_bytes, max_ratio
        self.out = 0

    def write(self, data: bytes, consumed: int) -> None:
        self.out += len(data)
        if self.out > self.max_bytes:
            raise InputError(
                self.url,
                f"decompressed byte {self.max_bytes}",
                f"expands past the cap of {self.max_bytes:,} bytes; refused",
            )
        if self.out > RATIO_FLOOR and self.out > self.max_ratio * max(consumed, 1):
            raise InputError(
                self.url,
                f"compressed byte {consumed}",
                f"decompression bomb refused: {self.out:,} bytes from {consumed:,} "
                f"(ratio over {self.max_ratio:g})",
            )
        self.fh.write(data)


def _decompress(
    url: str, raw: Path, out: Path, magic: bytes, *, max_bytes: int, max_ratio: float
) -> None:
    """Stream-decompress (multi-member gzip/bz2/xz too); output never outruns the caps."""
    with open(raw, "rb") as fin, open(out, "wb") as fout:
        sink = _Sink(url, fout, max_bytes, max_ratio)
        dec = _decompressor(magic)
        consumed = 0
        pending = b""
        try:
            while True:
                if not pending:
                    pending = fin.read(CHUNK)
                    consumed += len(pending)
                    if not pending:
                        break
                _drain(dec, pending, sink, consumed)
                pending = _leftover(dec)
                if _finished(dec):
                    if not pending:
                        pending = fin.read(CHUNK)
                        consumed += len(pending)
                    if not pending.strip(b"\0"):  # trailing padding after the last member
                        break
                    dec = _decompressor(pending)
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
            raise InputError(url, f"compressed byte {consumed}", f"corrupt: {exc}") from None
        if not _finished(dec):
            raise InputError(url, f"compressed byte {consumed}", "truncated compressed stream")
        fout.flush()
        os.fsync(fout.fileno())


def _drain(dec: Any, data: bytes, sink: _Sink, consumed: int) -> None:
    """Feed ``data``, taking output in CHUNK pieces so a bomb never lands in memory."""
    if isinstance(dec, type(zlib.decompressobj())):
        buf = data
        while True:
            chunk = dec.decompress(buf, CHUNK)
            sink.write(chunk, consumed)
            buf = dec.unconsumed_tail
            # a full chunk with no tail left may still have output pending inside zlib
            if dec.eof or (not buf and len(chunk) < CHUNK):
                return
    sink.write(dec.decompress(data, CHUNK), consumed)
    while not dec.eof and not dec.needs_input:
        sink.write(dec.decompress(b"", CHUNK), consumed)


def _leftover(dec: Any) -> bytes:
    return bytes(dec.unused_data) if _finished(dec) else b""


def _finished(dec: Any) -> bool:
    return bool(dec.eof)


def _unzip(url: str, raw: Path, out: Path, *, max_bytes: int, max_ratio: float) -> str:
    """A zip is accepted only with one regular, unencrypted member; returns its name."""
    try:
        with zipfile.ZipFile(raw) as zf:
            members = [i for i in zf.infolist() if not i.is_dir()]
            if len(members) != 1:
                raise InputError(
                    url, None, f"zip archive with {len(members)} files refused (one expected)"
                )
            info = members[0]
            if info.flag_bits & 0x1:
                raise InputError(url, info.filename, "encrypted zip member refused")
            consumed = max(info.compress_size, 1)
            with zf.open(info) as fin, open(out, "wb") as fout:
                sink = _Sink(url, fout, max_bytes, max_ratio)
                while chunk := fin.read(CHUNK):
                    sink.write(chunk, consumed)
                fout.flush()
                os.fsync(fout.fileno())
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise InputError(url, None, f"corrupt zip archive: {exc}") from None
    return _file_name(info.filename)


def _file_name(url_path: str) -> str:
    """A safe local file name from the last path segment (never a path)."""
    base = urllib.parse.unquote(url_path.rstrip("/").rsplit("/", 1)[-1])
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".")
    return clean[:120] or "feed"
