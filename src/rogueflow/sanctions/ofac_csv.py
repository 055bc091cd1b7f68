"""OFAC's legacy ``sdn.csv``: digital-currency addresses inside the remarks text.

Twelve columns, no header: ``ent_num, SDN_Name, SDN_Type, Program, Title, Call_Sign,
Vess_type, Tonnage, GRT, Vess_flag, Vess_owner, Remarks``; ``-0-`` is an empty
value; several programmes are written ``DPRK3] [CYBER2``; the file ends with a DOS
end-of-file byte (0x1A). Addresses sit in the remarks as
``Digital Currency Address - XBT 1abc…; alt. Digital Currency Address - ETH 0x…``.

The legacy format cuts remarks at 1,000 characters (the rest goes to the separate
``sdn_comments.csv``). An address that runs into that cut is incomplete: it is left
out, never reported as a shorter address, and every cut remark is listed in
:attr:`SanctionsList.problems`, so the caller knows some addresses are missing.

The file carries no issue date: pass ``list_date``, or name the file with one
(``sdn-2024-05-03.csv``).
"""

from __future__ import annotations

import csv
import io
import re
import zlib
from datetime import date
from pathlib import Path

from rogueflow.errors import InputError
from rogueflow.sanctions.model import (
    Listing,
    Party,
    SanctionsList,
    make_listing,
    merge_programmes,
    open_bytes,
)

FORMAT = "ofac-sdn-csv"
COLUMNS = 12
REMARKS_CAP = 1000  # the legacy format's remarks field length
NULL = "-0-"
_ADDRESS = re.compile(r"Digital Currency Address - ([A-Za-z0-9]+)\s+([^\s;]+)")
_DATE_IN_NAME = re.compile(r"(20\d\d)-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])")
_MAX_BYTES = 256 << 20  # a legacy list is ~4 MB; refuse to slurp something absurd


def _value(text: str) -> str:
    text = text.strip()
    return "" if text == NULL else text


def date_from_name(path: Path) -> date | None:
    """``2024-05-03`` or ``20240503`` in the file name, if any."""
    m = _DATE_IN_NAME.search(path.name)
    if m is None:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def _read_text(path: Path) -> str:
    try:
        with open_bytes(path) as fh:
            raw = fh.read(_MAX_BYTES + 1)
    except EOFError:
        raise InputError(path, None, "truncated: the compressed stream ends early") from None
    except (OSError, zlib.error) as exc:
        raise InputError(path, None, f"cannot read: {exc}") from None
    if len(raw) > _MAX_BYTES:
        raise InputError(path, None, f"larger than {_MAX_BYTES >> 20} MB; not an sdn.csv")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # older issues are Windows-1252; Latin-1 decodes any byte, so nothing is lost
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError:
            return raw.decode("latin-1")


def remark_addresses(remarks: str, ent: str, problems: list[str]) -> list[tuple[str, str]]:
    """(asset, address) pairs of one remarks field; cut-off ones go to ``problems``."""
    out = []
    cut = len(remarks) >= REMARKS_CAP and not remarks.rstrip().endswith(".")
    for m in _ADDRESS.finditer(remarks):
        asset, token = m.group(1).upper(), m.group(2)
        at_end = m.end() >= len(remarks.rstrip())
        if token.endswith("."):
            token, at_end = token.rstrip("."), False  # the remark's closing period
        if at_end and cut:
            problems.append(
                f"ent_num {ent}: {asset} address {token!r} runs into the {REMARKS_CAP}-character "
                "cut of the legacy remarks; left out"
            )
            continue
        out.append((asset, token))
    if cut:
        problems.append(
            f"ent_num {ent}: remarks cut at {REMARKS_CAP} characters; addresses after the cut "
            "are only in sdn_comments.csv (or the advanced XML)"
        )
    return out


def parse(path: str | Path, list_date: date | None = None) -> SanctionsList:
    """Parse a legacy ``sdn.csv`` (plain, .bz2 or .gz) into a :class:`SanctionsList`."""
    p = Path(path)
    text = _read_text(p)
    problems: list[str] = []
    parties: dict[str, Party] = {}
    listings: list[Listing] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    line = 0
    try:
        for row in reader:
            line = reader.line_num
            if not row or row == ["\x1a"] or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != COLUMNS:
                raise InputError(
                    p,
                    f"line {line}",
                    f"{len(row)} columns, expected {COLUMNS} (ent_num … Remarks); "
                    "truncated or not an sdn.csv",
                )
            ent = row[0].strip()
            if not ent.isdigit():
                raise InputError(p, f"line {line}", f"ent_num {ent[:20]!r} is not a number")
            kind = _value(row[2]).lower() or "entity"
            programmes = merge_programmes([_value(row[3]).strip("[]").split("] [")])
            old = parties.get(ent)
            if old is not None:  # a repeated ent_num adds programmes, never a second party
                programmes = merge_programmes([old.programmes, programmes])
            parties[ent] = Party(ent, _value(row[1]), kind, programmes, None)
            for asset, address in remark_addresses(_value(row[11]), ent, problems):
                listings.append(make_listing(asset, address, ent))
    except csv.Error as exc:
        raise InputError(p, f"line {reader.line_num}", f"malformed CSV ({exc})") from None
    if not parties:
        raise InputError(p, None, "no rows; not an sdn.csv")
    if not text.rstrip("\r\n").endswith("\x1a"):
        problems.append(
            "no end-of-file marker (0x1A) after the last row: the file may have been cut at a "
            f"row boundary (line {line})"
        )
    return SanctionsList(
        str(p), FORMAT, list_date or date_from_name(p), parties, listings, problems
    )
