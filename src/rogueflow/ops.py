"""Library operations behind the CLI commands (each callable from Python too)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from rogueflow.arrays import prefer_jemalloc
from rogueflow.errors import InputError, RogueflowError
from rogueflow.ingest.base import ReadOptions
from rogueflow.ingest.pipeline import expand, ingest_file
from rogueflow.schema import INDEX_SCHEMA
from rogueflow.store.catalog import Source
from rogueflow.store.flowstore import FlowStore, IngestResult
from rogueflow.workspace import Workspace


def ingest_paths(
    ws: Workspace,
    paths: Iterable[str | Path],
    *,
    fmt: str | None = None,
    force: bool = False,
    options: ReadOptions | None = None,
    quiet: bool = True,
) -> list[IngestResult]:
    """Ingest files and directories; each file is atomic on its own.

    Stops at the first bad file (after committing the good ones before it) and
    re-raises its error, which names the file and position.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from rogueflow.detect.behaviour import Behaviour
    from rogueflow.enrich.intel import Enricher

    prefer_jemalloc()
    files = expand(paths)
    store = FlowStore(ws)
    enricher = Enricher(ws)
    # one per run: a session cut into rotation files (nfcapd) is judged as a whole
    behaviour = Behaviour()
    results: list[IngestResult] = []
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[rows]:,} flows"),
            TimeElapsedColumn(),
            disable=quiet,
            transient=True,
        ) as progress:
            task = progress.add_task("ingest", total=len(files), rows=0)
            rows = 0
            for f in files:
                progress.update(task, description=f"ingest {f.name}")

                def bump(n: int) -> None:
                    nonlocal rows
                    rows += n
                    progress.update(task, rows=rows)

                try:
                    results.append(
                        ingest_file(
                            store,
                            f,
                            fmt=fmt,
                            force=force,
                            options=options,
                            on_rows=bump,
                            enricher=enricher,
                            behaviour=behaviour,
                        )
                    )
                except RogueflowError:
                    raise
                except (OSError, ValueError) as exc:
                    raise InputError(f, None, f"cannot ingest ({exc})") from exc
                progress.advance(task)
    finally:
        store.close()
    return results


def enrich_store(
    ws: Workspace, sources: Iterable[str] = (), *, quiet: bool = True
) -> list[tuple[str, int]]:
    """Re-enrich stored flows with the reference data now in the workspace.

    Run after ``intel add`` / ``intel update``; it also upgrades files written with an
    older schema. Each source is rewritten atomically; measured columns never change.
    Returns (source id, rows) per source.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from rogueflow.enrich.intel import Enricher

    prefer_jemalloc()
    store = FlowStore(ws)
    enricher = Enricher(ws)
    wanted = set(sources)
    todo = [s for s in store.catalog.sources() if not wanted or s.source_id in wanted]
    unknown = wanted - {s.source_id for s in todo}
    if unknown:
        store.close()
        raise RogueflowError(
            f"no ingested source {', '.join(sorted(unknown))}; see `rogueflow sources`"
        )
    done: list[tuple[str, int]] = []
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
            disable=quiet, transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task("enrich", total=len(todo))
            for src in todo:
                progress.update(task, description=f"enrich {Path(src.path).name}")
                done.append((src.source_id, store.rewrite_source(src.source_id, enricher.apply)))
                progress.advance(task)
    finally:
        store.close()
    return done


def unindexed_note(sources: list[Source], sql: str) -> str | None:
    """A warning for a query that reads the territory index while some sources were
    stored before it existed: their flows have null ``src_territory``/``dst_territory``
    (a report then tests the prefixes; a user's query would silently miss them)."""
    if "_territory" not in sql.lower():
        return None
    old = [s for s in sources if s.schema_version < INDEX_SCHEMA]
    if not old:
        return None
    rows = sum(s.rows for s in old)
    return (
        f"warning: {len(old)} of {len(sources)} sources ({rows:,} flows) were stored before "
        f"the territory index (schema {INDEX_SCHEMA}); src_territory and dst_territory are "
        "null in their flows until `rogueflow enrich` rewrites them"
    )


def run_query(
    ws: Workspace,
    sql: str,
    fmt: str,
    limit: int | None,
    out: IO[str],
    *,
    engine: str | None = None,
    spark_master: str | None = None,
) -> None:
    from rogueflow.analyze.engine import DuckDBEngine, open_engine

    eng = open_engine(ws, engine, spark_master=spark_master)
    try:
        note = unindexed_note(eng.store.catalog.sources(), sql)
        if note:
            print(note, file=sys.stderr)
        # relations run lazily: errors in the data (a failed cast) surface on fetch
        try:
            if isinstance(eng, DuckDBEngine):
                rel = eng.sql(sql)
                if rel is None:
                    return
                if fmt == "table":
                    if limit is not None:
                        rel = rel.limit(limit)
                    rel.show(max_width=200, max_rows=limit or 40)
                    return
                table = rel.to_arrow_table()
            elif fmt == "table":
                shown = eng.head(sql, limit or 40)
                if shown.num_columns:
                    out.write(_text_table(_arrow_text(shown)))
                return
            else:
                table = eng.arrow(sql)
        except eng.errors as exc:
            raise RogueflowError(f"query failed: {exc}") from None
        if fmt == "csv":
            import pyarrow as pa
            import pyarrow.csv as pacsv

            # via a buffer: Arrow's writer wants a binary file it may close, ``out`` is text
            sink = pa.BufferOutputStream()
            pacsv.write_csv(_arrow_text(table), sink)
            out.write(sink.getvalue().to_pybytes().decode())
        else:
            for row in _arrow_text(table).to_pylist():
                out.write(json.dumps(row, default=str) + "\n")
    finally:
        eng.close()


def _text_table(table: Any) -> str:  # pa.Table
    """Rows as aligned plain text, a header line first (engines without a printer)."""
    rows = [[("NULL" if v is None else str(v)) for v in r.values()] for r in table.to_pylist()]
    head = list(table.column_names)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines) + f"\n({len(rows)} rows)\n"


def _arrow_text(table: Any) -> Any:  # pa.Table (pyarrow has no type stubs)
    """Binary columns (addresses) as text, so CSV/JSON output is readable."""
    import pyarrow as pa

    from rogueflow import addr

    cols = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        if (pa.types.is_fixed_size_binary(col.type) and col.type.byte_width == 16) or (
            pa.types.is_binary(col.type)
            and all(v is None or len(v) == 16 for v in col.to_pylist()[:100])
        ):
            col = pa.array(addr.format_array(col.cast(addr.ADDR_TYPE)), pa.string())
        cols.append((name, col))
    return pa.table(dict(cols))


def describe_territories(code: str | None, territory_file: str | None, as_json: bool) -> str:
    from rogueflow import territory as terr

    profiles = (
        [terr.resolve(code, territory_file)]
        if (code or territory_file)
        else [terr.load_builtin(c) for c in terr.builtin_codes()]
    )
    if as_json:
        return json.dumps(
            [
                {
                    "code": t.code,
                    "iso": t.iso,
                    "name": t.name,
                    "timezone": t.timezone,
                    "working_days": sorted(t.working_days),
                    "business_hours": [
                        t.business_hours[0].isoformat("minutes"),
                        t.business_hours[1].isoformat("minutes"),
                    ],
                    "countries": list(t.countries),
                    "prefixes": [
                        {
                            "cidr": p.cidr,
                            "asn": p.asn,
                            "valid_from": p.valid.valid_from.isoformat(),
                            "valid_to": p.valid.valid_to.isoformat(),
                            "note": p.note,
                        }
                        for p in t.prefixes
                    ],
                    "asns": [a.asn for a in t.asns],
                    "upstreams": [
                        {"asn": a.asn, "name": a.name, "valid_from": a.valid.valid_from.isoformat()}
                        for a in t.upstreams
                    ],
                    "exclude": [{"asn": a.asn, "name": a.name} for a in t.exclude],
                    "source": t.source,
                }
                for t in profiles
            ],
            indent=2,
        )
    lines = []
    for t in profiles:
        days = ",".join(
            ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[d] for d in sorted(t.working_days)
        )
        lines.append(
            f"{t.code}  {t.name} ({t.iso})  tz {t.timezone}  week {days} "
            f"{t.business_hours[0]:%H:%M}-{t.business_hours[1]:%H:%M}"
        )
        lines.append(f"    space: {t.describe_space()}")
        if t.upstreams:
            lines.append("    upstreams: " + ", ".join(f"AS{a.asn} {a.name}" for a in t.upstreams))
    return "\n".join(lines)
