"""Templates (NetFlow v9, IPFIX) as numpy dtypes, and the records they describe.

A template becomes one packed numpy structured dtype over its fixed-length fields,
so a data set of N records is decoded by one ``np.frombuffer`` — and the data sets
of many datagrams by one call over their concatenation. Variable-length fields
(RFC 7011 §7) cannot be described by a dtype: records of such templates are walked
once in Python, their fixed fields copied out into the packed layout and the
variable ones skipped. Unknown and enterprise-specific elements are opaque bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from rogueflow.collect.elements import ADDRESS_ROLES, role_of

VARIABLE = 0xFFFF

#: (element id, enterprise number or 0, length; 0xFFFF = variable)
FieldSpec = tuple[int, int, int]

U64 = npt.NDArray[np.uint64]


class TemplateError(ValueError):
    """A template or a record that contradicts its template; the message says which."""


@dataclass
class Template:
    tid: int
    fields: tuple[FieldSpec, ...]
    scope_count: int
    options: bool
    dtype: np.dtype[Any]
    roles: dict[str, str]
    variable: bool
    fixed_len: int
    refreshed: float = 0.0
    #: per field: (length or VARIABLE, keep) for the variable-length walker
    _walk: tuple[tuple[int, bool], ...] = field(default=())

    def same_layout(self, other: Template) -> bool:
        return self.fields == other.fields and self.scope_count == other.scope_count

    def has_flow_fields(self) -> bool:
        r = self.roles
        return ("src4" in r or "src6" in r) and ("dst4" in r or "dst6" in r)


def _field_dtype(role: str | None, length: int) -> Any:
    if role in ("src4", "dst4") and length == 4:
        return ">u4"
    if role in ("src6", "dst6") and length == 16:
        return ("u1", (16,))
    if role == "sampling_probability" and length in (4, 8):
        return f">f{length}"
    if role is not None and role not in ADDRESS_ROLES and length in (1, 2, 4, 8):
        return f">u{length}"
    if role is not None and role not in ADDRESS_ROLES and length <= 8:
        return ("u1", (length,))  # reduced-size encoding of an unsigned (RFC 7011 §6.2)
    return f"V{length}"


def build_template(
    tid: int, fields: tuple[FieldSpec, ...], *, scope_count: int = 0, options: bool = False
) -> Template:
    """A Template; raises TemplateError for a layout no record can have."""
    if not fields:
        raise TemplateError(f"template {tid} has no fields")
    if tid < 256:
        raise TemplateError(f"template id {tid} is reserved (must be >= 256)")
    names: list[str] = []
    formats: list[Any] = []
    offsets: list[int] = []
    roles: dict[str, str] = {}
    walk: list[tuple[int, bool]] = []
    pos = 0
    variable = False
    for i, (element, enterprise, length) in enumerate(fields):
        if length == VARIABLE:
            variable = True
            walk.append((VARIABLE, False))
            continue
        if length == 0:
            continue  # e.g. the v9 options scope "System" of length 0: no bytes
        role = role_of(element, enterprise)
        fmt = _field_dtype(role, length)
        if role is not None and role not in roles and not str(fmt).startswith("V"):
            # only named roles are in the dtype: the other bytes are never copied
            name = f"f{i}"
            roles[role] = name
            names.append(name)
            formats.append(fmt)
            offsets.append(pos)
        pos += length
        walk.append((length, True))
    if pos == 0 and not variable:
        raise TemplateError(f"template {tid} describes records of 0 bytes")
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": pos})
    return Template(
        tid=tid,
        fields=fields,
        scope_count=scope_count,
        options=options,
        dtype=dtype,
        roles=roles,
        variable=variable,
        fixed_len=pos,
        _walk=tuple(walk),
    )


def split_records(tpl: Template, payload: bytes) -> tuple[bytes, int]:
    """The packed fixed-field bytes of a data set's records, and how many there are.

    Trailing bytes too short for a record are padding (RFC 7011 §3.3.1). A record of a
    variable-length template that runs past the set is an error unless the bytes left
    are all zero (padding again).
    """
    if not tpl.variable:
        n = len(payload) // tpl.fixed_len
        used = n * tpl.fixed_len
        return (payload if used == len(payload) else payload[:used]), n
    out = bytearray()
    end = len(payload)
    pos = 0
    n = 0
    while pos < end:
        start = pos
        rec = bytearray()
        complete = True
        for length, keep in tpl._walk:
            if length == VARIABLE:
                if pos >= end:
                    complete = False
                    break
                length = payload[pos]
                pos += 1
                if length == 255:
                    if pos + 2 > end:
                        complete = False
                        break
                    length = int.from_bytes(payload[pos : pos + 2], "big")
                    pos += 2
            if pos + length > end:
                complete = False
                break
            if keep:
                rec += payload[pos : pos + length]
            pos += length
        if not complete or pos == start:
            if any(payload[start:]):
                raise TemplateError(
                    f"template {tpl.tid}: record {n + 1} runs past the end of its set"
                )
            break
        out += rec
        n += 1
    return bytes(out), n


def uint_column(records: np.ndarray[Any, Any], name: str) -> U64:
    """A role's values as uint64, whatever its encoded width (1–8 bytes)."""
    col = records[name]
    if col.ndim == 1:
        if col.dtype.kind == "f":  # only sampling_probability; never a negative count
            return np.asarray(np.clip(np.nan_to_num(col), 0, 2**63), dtype=np.uint64)
        return np.asarray(col, dtype=np.uint64)
    raw = np.asarray(col, dtype=np.uint8).reshape(len(records), -1)
    out = np.zeros(len(records), dtype=np.uint64)
    for i in range(raw.shape[1]):
        out = (out << np.uint64(8)) | raw[:, i].astype(np.uint64)
    return out
