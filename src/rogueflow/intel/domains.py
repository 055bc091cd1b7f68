"""Match observed host names (TLS SNI, DNS query names, HTTP Host) against many domains.

An entry ``example.com`` matches ``example.com`` itself and every name under it
(``a.b.example.com``), on label boundaries only: ``notexample.com`` does not
match. Among several matching entries the longest suffix wins, so
``mail.google.com`` can mean Gmail while ``google.com`` means search. Names are
compared case-insensitively with one trailing dot ignored; internationalised
names are matched as given (punycode ``xn--`` against punycode, Unicode against
Unicode) because the data carries whichever form the wire did.

>>> t = DomainTable.from_domains(["example.com", "pool.example.com"])
>>> t.match(pa.array(["x.pool.example.com", "notexample.com", None])).tolist()
[1, -1, -1]
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rogueflow.errors import InputError

I32 = npt.NDArray[np.int32]
_MAX_NAME = 1024  # longer strings are not host names; they match nothing


def normalise(name: str) -> str:
    """Lower-case, one trailing dot removed; the form entries and names are compared in."""
    name = name.lower()
    return name[:-1] if name.endswith(".") else name


def entry_problem(domain: str) -> str | None:
    """Why ``domain`` (already normalised) cannot be a table entry, or None."""
    if not domain:
        return "empty domain"
    if len(domain) > 253:
        return "a domain name has at most 253 characters"
    for label in domain.split("."):
        if not label:
            return f"empty label in {domain!r}"
        if len(label) > 63:
            return f"label longer than 63 characters in {domain!r}"
        if not all(ch.isalnum() or ch in "-_" for ch in label):
            return f"{domain!r} is not a domain name"
    return None


class DomainTable:
    """Domains (suffixes) -> value index; vectorised over Arrow string columns."""

    def __init__(self, codes: dict[str, int], values: Sequence[Any]) -> None:
        self._codes = codes
        self.values: list[Any] = list(values)
        self._entries: list[str] | None = None

    def __len__(self) -> int:
        return len(self._codes)

    def __repr__(self) -> str:
        return f"DomainTable({len(self)} domains, {len(self.values)} values)"

    @classmethod
    def from_domains(
        cls,
        domains: Iterable[str],
        values: Iterable[Hashable] | None = None,
        *,
        source: str | Path | None = None,
        on_conflict: Literal["error", "first"] = "error",
    ) -> DomainTable:
        """Entries and their values (default: each entry is its own value, in order).

        One domain given two different values raises :class:`InputError` (or keeps
        the first with ``on_conflict="first"``); an invalid entry raises too.
        """
        codes: dict[str, int] = {}
        index: dict[Hashable, int] = {}
        vals = iter(values) if values is not None else None
        for n, raw in enumerate(domains, 1):
            d = normalise(raw.strip())
            if d.startswith("*."):
                d = d[2:]
            problem = entry_problem(d)
            if problem:
                raise InputError(source, f"entry {n}", problem)
            value: Hashable = d if vals is None else next(vals)
            code = index.setdefault(value, len(index))
            old = codes.setdefault(d, code)
            if old != code and on_conflict == "error":
                first = list(index)[old]
                raise InputError(
                    source, f"entry {n}", f"{d} is listed as {first!r} and as {value!r}"
                )
        return cls(codes, list(index))

    @property
    def entries(self) -> list[str]:
        """The normalised domains, in insertion order."""
        if self._entries is None:
            self._entries = list(self._codes)
        return self._entries

    def code_of(self, domain: str) -> int:
        """Value index of an exact entry (-1 when ``domain`` is not an entry)."""
        return self._codes.get(normalise(domain), -1)

    def match_one(self, name: str | None) -> tuple[int, str | None]:
        """(value index, matched entry) for one name; ``(-1, None)`` when nothing matches."""
        if name is None or len(name) > _MAX_NAME:
            return -1, None
        probe = normalise(name)
        codes = self._codes
        while True:
            code = codes.get(probe)
            if code is not None:
                return code, probe
            dot = probe.find(".")
            if dot < 0:
                return -1, None
            probe = probe[dot + 1 :]

    def match(self, names: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> I32:
        """Value index per name (-1: no entry matches, or null)."""
        return self.match_detail(names)[0]

    def match_detail(
        self, names: pa.Array | pa.ChunkedArray | Sequence[str | None]
    ) -> tuple[I32, npt.NDArray[np.bool_]]:
        """Value index per name and whether the match was exact (the name is an entry).

        Each distinct name is resolved once: the column is dictionary-encoded and
        only its dictionary is walked in Python.
        """
        arr = (
            names if isinstance(names, pa.Array | pa.ChunkedArray) else pa.array(names, pa.string())
        )
        chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
        codes_out: list[I32] = []
        exact_out: list[npt.NDArray[np.bool_]] = []
        for chunk in chunks:
            c, e = self._match_chunk(chunk)
            codes_out.append(c)
            exact_out.append(e)
        if not codes_out:
            return np.zeros(0, np.int32), np.zeros(0, np.bool_)
        return np.concatenate(codes_out), np.concatenate(exact_out)

    def _match_chunk(self, chunk: pa.Array) -> tuple[I32, npt.NDArray[np.bool_]]:
        if not pa.types.is_dictionary(chunk.type):
            if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
                chunk = chunk.cast(pa.string())
            chunk = pc.dictionary_encode(chunk)
        words = chunk.dictionary.to_pylist()
        dict_codes = np.full(len(words) + 1, -1, dtype=np.int32)  # last slot: nulls
        dict_exact = np.zeros(len(words) + 1, dtype=np.bool_)
        for i, word in enumerate(words):
            code, entry = self.match_one(word)
            dict_codes[i] = code
            dict_exact[i] = code >= 0 and entry == normalise(word)
        idx = chunk.indices
        if idx.null_count:
            idx = pc.fill_null(idx, len(words))
        pos = idx.to_numpy(zero_copy_only=False).astype(np.intp, copy=False)
        return dict_codes[pos], dict_exact[pos]
