"""Exports: a findings document as STIX 2.1, a MISP event, or a Zeek intel file.

One module per format, each with a pure ``render(doc) -> str``; :data:`FORMATS`
lists them. The format modules import stix2/pymisp, which take a moment to load,
so they are imported only when used::

    doc = load_findings(Path("reports/kp/findings.json"))
    write_exports(doc, Path("reports/kp"))   # report.stix.json, report.misp.json, intel.dat

Every export is a function of the document alone: the same findings.json gives
byte-identical files.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rogueflow.errors import ConfigError, InputError
from rogueflow.export.common import read

__all__ = [
    "FORMATS",
    "Format",
    "by_name",
    "load_findings",
    "render",
    "write_export",
    "write_exports",
]


@dataclass(frozen=True)
class Format:
    name: str  # the CLI's --format value
    filename: str  # the file written beside findings.json
    module: str  # rogueflow.export.<module>, imported on first use
    description: str

    def render(self, doc: dict[str, Any], source: str | None = None) -> str:
        mod = importlib.import_module(f"rogueflow.export.{self.module}")
        return str(mod.render(doc, source))


FORMATS = (
    Format(
        "stix",
        "report.stix.json",
        "stix",
        "STIX 2.1 bundle: report, notes and opinions, observed-data, indicators",
    ),
    Format(
        "misp",
        "report.misp.json",
        "misp",
        "MISP event: event reports, netflow and coin-address objects, attributes",
    ),
    Format(
        "zeek-intel",
        "intel.dat",
        "zeekintel",
        "Zeek intel framework file of the addresses and domains",
    ),
)


def by_name(name: str) -> Format:
    for f in FORMATS:
        if f.name == name:
            return f
    known = ", ".join(f.name for f in FORMATS)
    raise ConfigError(f"unknown export format {name!r}; use one of: {known}")


def load_findings(path: Path) -> dict[str, Any]:
    """Read and check a findings.json; errors name the file and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(path, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"line {exc.lineno} column {exc.colno}", exc.msg) from None
    read(doc, str(path))  # checks the format marker and every field the exporters use
    return doc  # type: ignore[no-any-return]


def render(doc: dict[str, Any], fmt: str, source: str | None = None) -> str:
    """One export as text."""
    return by_name(fmt).render(doc, source)


def write_export(doc: dict[str, Any], fmt: str, path: Path, source: str | None = None) -> Path:
    """Write one export to ``path`` (atomically: a reader never sees half a file)."""
    text = render(doc, fmt, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, text)
    return path


def write_exports(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write every format beside findings.json: report.stix.json, report.misp.json, intel.dat."""
    out_dir.mkdir(parents=True, exist_ok=True)
    read(doc)  # fail before writing anything
    return [write_export(doc, f.name, out_dir / f.filename) for f in FORMATS]


def _write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
