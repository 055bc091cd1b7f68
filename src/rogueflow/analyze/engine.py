"""The engine seam, and the embedded engine: DuckDB over the committed Parquet files.

:class:`Engine` is what the analyses' scope needs from an engine; :func:`open_engine`
picks one by the ``engine`` setting (``--engine duckdb|spark``). DuckDB is built in;
Spark's glue lives in :mod:`rogueflow.analyze.engine_spark`, imported only when chosen
(it needs the ``spark`` extra). Both define the same views and SQL helpers.

``flows`` is the view users and analyses query. It holds the stored columns of
:mod:`rogueflow.schema` plus computed ones (nothing computed is stored):

* ``day`` — UTC date of ``ts_start``
* ``src_ip``, ``dst_ip`` — addresses as text
* ``community_id`` — Community ID v1 (computed only when selected)
* ``source_file`` — the ingested file's path (from the catalog)

SQL helpers: ``ip_text(blob)``, ``ip(text)``, ``in_prefix(blob, 'cidr')``,
``prefix_lo('cidr')``/``prefix_hi('cidr')``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa

import rogueflow
from rogueflow import addr, flowkey
from rogueflow.analyze.rowcache import CHUNKS, RowCache
from rogueflow.errors import ConfigError
from rogueflow.schema import FLOW_SCHEMA, SCHEMA_VERSION
from rogueflow.store.flowstore import FlowStore
from rogueflow.workspace import Workspace

_V4_HEX = "00000000000000000000FFFF"
STORE_VIEW = "flows_stored"  # the stored flows (a materialised view's rows_of)


def sql_string(s: str) -> str:
    """``s`` as a SQL string constant that DuckDB and Spark SQL read alike.

    A single quote is doubled (both engines' rule). A backslash is not a character
    Spark SQL reads literally (``'a\\b'`` is ``a`` and a backspace there, ``a\\b`` in
    DuckDB), so it is spelled ``chr(92)`` and concatenated: a string without one is a
    plain literal."""
    lit = "'" + s.replace("'", "''") + "'"
    if "\\" not in s:
        return lit
    return "(" + lit.replace("\\", "' || chr(92) || '") + ")"


def _ip6_text(values: pa.Array) -> pa.Array:
    return pa.array(addr.format_array(values), pa.string())


def _ip_parse(values: pa.Array) -> pa.Array:
    out = []
    for v in values.to_pylist():
        try:
            out.append(None if v is None else addr.parse_one(v))
        except ValueError:
            out.append(None)
    return pa.array(out, pa.binary())


def _prefix_lo(values: pa.Array) -> pa.Array:
    return pa.array(
        [None if v is None else addr.prefix_range(v)[0] for v in values.to_pylist()], pa.binary()
    )


def _prefix_hi(values: pa.Array) -> pa.Array:
    return pa.array(
        [None if v is None else addr.prefix_range(v)[1] for v in values.to_pylist()], pa.binary()
    )


def _community_id(
    src: pa.Array, dst: pa.Array, proto: pa.Array, sport: pa.Array, dport: pa.Array
) -> pa.Array:
    return pa.array(
        flowkey.community_ids(
            src.to_pylist(),
            dst.to_pylist(),
            proto.to_pylist(),
            sport.to_pylist(),
            dport.to_pylist(),
        ),
        pa.string(),
    )


def register_helpers(con: duckdb.DuckDBPyConnection) -> None:
    """Address helpers as SQL functions and macros."""
    from duckdb.sqltypes import BLOB, USMALLINT, UTINYINT, VARCHAR

    udf: dict[str, Any] = {"type": "arrow", "side_effects": False}
    con.create_function("_ip6_text", _ip6_text, [BLOB], VARCHAR, **udf)
    con.create_function("ip", _ip_parse, [VARCHAR], BLOB, **udf)
    con.create_function("prefix_lo", _prefix_lo, [VARCHAR], BLOB, **udf)
    con.create_function("prefix_hi", _prefix_hi, [VARCHAR], BLOB, **udf)
    con.create_function(
        "_community_id",
        _community_id,
        [BLOB, BLOB, UTINYINT, USMALLINT, USMALLINT],
        VARCHAR,
        **udf,
    )
    con.execute(
        f"""
        CREATE OR REPLACE MACRO _octet(h, i) AS ('0x' || substr(h, i, 2))::UTINYINT;
        CREATE OR REPLACE MACRO ip_text(a) AS CASE
            WHEN a IS NULL THEN NULL
            WHEN substr(hex(a), 1, 24) = '{_V4_HEX}' THEN
                concat_ws('.', _octet(hex(a), 25), _octet(hex(a), 27),
                               _octet(hex(a), 29), _octet(hex(a), 31))
            ELSE _ip6_text(a) END;
        CREATE OR REPLACE MACRO in_prefix(a, cidr) AS a BETWEEN prefix_lo(cidr) AND prefix_hi(cidr);
        """
    )


ENGINES = ("duckdb", "spark")


class Engine(Protocol):
    """What a scope needs from an engine: the ``flows`` view over the workspace's store,
    SQL in and Arrow out, and named views (one of them materialised once)."""

    name: str
    ws: Workspace
    store: FlowStore
    #: the committed store files the views read (as of the last refresh)
    files: list[Path]
    #: exceptions a failing query raises (the scope names the analysis query in its error)
    errors: tuple[type[BaseException], ...]

    def arrow(self, query: str, params: list[Any] | None = None) -> pa.Table: ...

    def head(self, query: str, n: int) -> pa.Table: ...

    def create_view(
        self, name: str, query: str, *, materialise: bool = False, rows_of: str | None = None
    ) -> None: ...

    def parquet_view(self, name: str, files: list[Path]) -> None: ...

    def close(self) -> None: ...


def open_engine(
    ws: Workspace, name: str | None = None, *, spark_master: str | None = None
) -> Engine:
    """The engine the ``engine`` setting names (flag ``name`` > env > config > default).

    >>> open_engine(Workspace("ws"), "spark", spark_master="local[2]")  # doctest: +SKIP
    """
    chosen = str(ws.setting("engine", name)).strip().lower()
    if chosen == "duckdb":
        return DuckDBEngine(ws)
    if chosen == "spark":
        # imported here: PySpark is an optional extra, and slow to import
        from rogueflow.analyze.engine_spark import SparkEngine

        return SparkEngine(ws, master=spark_master)
    raise ConfigError(f"--engine {chosen!r}: expected one of {', '.join(ENGINES)}")


class DuckDBEngine:
    """A DuckDB connection with the workspace's ``flows`` view."""

    name = "duckdb"
    errors: tuple[type[BaseException], ...] = (duckdb.Error,)

    def __init__(self, workspace: Workspace, *, threads: int | None = None) -> None:
        self.ws = workspace
        self.store = FlowStore(workspace)
        self.row_cache = RowCache(
            workspace.root / ".cache" / "rows", int(workspace.setting("scope_cache"))
        )
        self.reused: dict[str, bool] = {}  # materialised view -> rows came from the cache
        self._parquet: dict[str, list[Path]] = {}  # parquet_view name -> its files
        self.files: list[Path] = []
        self.con = duckdb.connect(config={"allow_unsigned_extensions": False})
        n_threads = int(workspace.setting("threads", threads))
        if n_threads > 0:
            self.con.execute(f"SET threads = {n_threads}")
        self.con.execute(f"SET memory_limit = {sql_string(str(workspace.setting('memory_limit')))}")
        # every query of a report reads the same files: their footers are parsed once, not
        # once per query (DuckDB checks each file's modification time before reusing one)
        self.con.execute("SET parquet_metadata_cache = true")
        tmp = workspace.root / ".tmp"
        tmp.mkdir(exist_ok=True)
        self.con.execute(f"SET temp_directory = {sql_string(str(tmp))}")
        self.con.execute("SET TimeZone = 'UTC'")
        register_helpers(self.con)
        self.refresh()

    def refresh(self) -> None:
        """(Re)build the views over the currently committed files."""
        files = self.store.files()
        self.files = files  # what flows_stored reads (the row cache's key names these)
        sources = self.store.catalog.sources()
        self.con.register(
            "_sources",
            pa.table(
                {
                    "source_id": [s.source_id for s in sources],
                    "source_path": [s.path for s in sources],
                },
                schema=pa.schema([("source_id", pa.string()), ("source_path", pa.string())]),
            ),
        )
        # the empty canonical table fixes the column set and types: files written with an
        # older schema (fewer columns) read with the new columns null (schema.MIGRATIONS
        # rewrites them for good on `rogueflow enrich`)
        self.con.register("_empty_flows", FLOW_SCHEMA.empty_table())
        # union_by_name reads every file's footer when the view is defined (1 s for the
        # full demo's 2,026 files, on every report and query): only needed while a
        # source's files have an older schema's columns
        self._older = any(s.schema_version != SCHEMA_VERSION for s in sources)
        self._define_stored(files)
        self.con.execute(
            """
            CREATE OR REPLACE VIEW flows AS
            SELECT f.*,
                   -- from the epoch, not CAST(ts_start AS DATE): a cast of a timestamp with
                   -- time zone goes through ICU's calendar per row (4x slower at 100M flows)
                   CAST(make_timestamp(epoch_us(f.ts_start) // 86400000000 * 86400000000)
                        AS DATE) AS day,
                   to_timestamp(epoch_us(f.ts_start) // 3600000000 * 3600) AS hour,
                   ip_text(f.src_addr) AS src_ip,
                   ip_text(f.dst_addr) AS dst_ip,
                   _community_id(f.src_addr, f.dst_addr, f.proto, f.src_port, f.dst_port)
                       AS community_id,
                   (SELECT s.source_path FROM _sources s WHERE s.source_id = f.source_id)
                       AS source_file
            FROM flows_stored f
            """
        )

    def _define_stored(self, files: list[Path]) -> None:
        """``flows_stored``: the stored columns of ``files`` (the view ``flows`` reads)."""
        stored = "SELECT * FROM _empty_flows"
        if files:
            listing = ", ".join(sql_string(os.fspath(p)) for p in files)
            union = ", union_by_name = true" if self._older else ""
            stored = (
                f"SELECT * FROM read_parquet([{listing}], hive_partitioning = false{union}) "
                f"UNION ALL BY NAME {stored}"
            )
        self.con.execute(f"CREATE OR REPLACE VIEW flows_stored AS {stored}")

    def sql(self, query: str) -> duckdb.DuckDBPyRelation:
        return self.con.sql(query)

    def arrow(self, query: str, params: list[Any] | None = None) -> pa.Table:
        # a relation's Arrow export avoids the extra copy (and warning) of a DB-API result
        return plain_integers(self.con.sql(query, params=params).to_arrow_table())

    def head(self, query: str, n: int) -> pa.Table:
        """The first ``n`` rows of a query (the rest is never computed where avoidable)."""
        return plain_integers(self.con.sql(query).limit(n).to_arrow_table())

    def create_view(
        self, name: str, query: str, *, materialise: bool = False, rows_of: str | None = None
    ) -> None:
        """A temporary view; with ``materialise`` over the query's rows computed once;
        ``rows_of``: each row of ``query`` comes from one row of that view (no
        aggregate), ``flows_stored`` or a :meth:`parquet_view` over day-partitioned
        files, so its rows are built a month of those files at a time and each month's
        reused by later runs over the same files of that month.

        Materialised rows are Parquet files in the workspace's row cache
        (:mod:`rogueflow.analyze.rowcache`: reused by the next run over the same files,
        ``scope_cache`` entries kept), not a temporary table: DuckDB keeps a temporary
        table uncompressed, and a scope of 23.7M flows took 5.4 GiB, half of it spilled
        past the memory limit and read back by every query. As Parquet it takes
        0.64 GiB on disk, is written in less time, and each query reads only its
        columns (3-6x faster per query, peak RSS 3.2 -> 0.6 GiB).
        """
        if not materialise:
            self.con.execute(f"CREATE OR REPLACE TEMPORARY VIEW {name} AS {query}")
            return

        version = f"{rogueflow.__version__} duckdb {duckdb.__version__}"

        def copy(out: Path) -> None:
            self.con.execute("SET preserve_insertion_order = false")  # parallel writers
            try:
                self.con.execute(
                    f"COPY ({query}) TO {sql_string(os.fspath(out))} (FORMAT parquet, "
                    "PER_THREAD_OUTPUT true, COMPRESSION lz4_raw, PARQUET_VERSION v2)"
                )
            finally:
                self.con.execute("RESET preserve_insertion_order")

        if rows_of is not None and (
            rows_of not in query or (rows_of != STORE_VIEW and rows_of not in self._parquet)
        ):
            raise ValueError(f"view {name}: rows of {rows_of}, which it does not read")

        def build(out: Path) -> None:
            if rows_of is not None:
                self._build_by_month(query, rows_of, version, out / "rows", copy)
            else:
                copy(out / "rows")
            (out / "query.sql").write_text(query)

        # the files the views were defined over, not the catalog's current list: an
        # ingest committing in between must not label old rows with its new files
        key = self.row_cache.key(query, self.files, version)
        entry, reused = self.row_cache.open(key, build)
        self.reused[name] = reused
        files = sorted((entry / "rows").glob("*.parquet"))
        if files:
            listing = ", ".join(sql_string(os.fspath(f)) for f in files)
            rows = f"SELECT * FROM read_parquet([{listing}])"
        else:  # no rows, no file: the query's columns and types from an empty run
            self.con.execute(
                f"CREATE OR REPLACE TEMPORARY TABLE {name}__empty AS "
                f"SELECT * FROM ({query}) LIMIT 0"
            )
            rows = f"SELECT * FROM {name}__empty"
        self.con.execute(f"CREATE OR REPLACE TEMPORARY VIEW {name} AS {rows}")

    def _build_by_month(
        self, query: str, source: str, version: str, rows: Path, copy: Callable[[Path], None]
    ) -> None:
        """The rows of ``query`` one month of ``source``'s files at a time (``source``:
        ``flows_stored`` or a Parquet view), each month's rows taken (hard-linked) from
        an older cache entry that computed them from the same files, else computed
        with ``source`` redefined over that month's files alone.

        A query of rows (the scope: each row from one stored flow; the trends: one
        from each roll-up row) over a month's files gives exactly that month's share
        of the rows over all files, so after an ingest of new days a report
        recomputes only the months they fall in (the full demo's scope: 23.7M flows
        in 35 months). ``rows/chunks.json`` names each month's key and files, for the
        next build to find."""
        everything, define = self._view_files(source)
        rows.mkdir()
        chunks: dict[str, list[str]] = {}
        lenders = self.row_cache.lenders()
        try:
            for files in month_groups(everything):
                chunk = self.row_cache.key(query, files, version)
                names = self.row_cache.borrow(chunk, rows, lenders)
                if names is None:
                    part = rows / f".{chunk}"
                    define(files)
                    copy(part)
                    names = []
                    for i, f in enumerate(sorted(part.glob("*.parquet"))):
                        f.rename(rows / f"{chunk}-{i}.parquet")
                        names.append(f"{chunk}-{i}.parquet")
                    shutil.rmtree(part, ignore_errors=True)  # none when no rows
                chunks[chunk] = names
        finally:
            define(everything)
        (rows / CHUNKS).write_text(json.dumps(chunks, indent=1))

    def _view_files(self, view: str) -> tuple[list[Path], Callable[[list[Path]], None]]:
        """The files view ``view`` reads and how to define it over others."""
        if view == STORE_VIEW:
            return self.files, self._define_stored
        return list(self._parquet[view]), lambda files: self.parquet_view(view, files)

    def parquet_view(self, name: str, files: list[Path]) -> None:
        """A temporary view over Parquet files of one schema (at least one file)."""
        self._parquet[name] = list(files)
        listing = ", ".join(sql_string(os.fspath(f)) for f in files)
        self.con.execute(
            f"CREATE OR REPLACE TEMPORARY VIEW {name} AS "
            f"SELECT * FROM read_parquet([{listing}], hive_partitioning = false)"
        )

    def close(self) -> None:
        self.con.close()
        self.store.close()
        self.row_cache.release()


def plain_integers(table: pa.Table) -> pa.Table:
    """Whole-number decimals as int64: DuckDB sums integers into HUGEINT (Arrow
    decimal128(38, 0)), Spark into BIGINT; analyses and findings.json see ints from
    either engine (the cast is checked: a sum beyond int64 raises, never wraps)."""
    fields = list(table.schema)
    if not any(pa.types.is_decimal(f.type) and f.type.scale == 0 for f in fields):
        return table
    cols = [
        table.column(i).cast(pa.int64())
        if pa.types.is_decimal(f.type) and f.type.scale == 0
        else table.column(i)
        for i, f in enumerate(fields)
    ]
    return pa.Table.from_arrays(cols, names=table.column_names)


def month_groups(files: list[Path]) -> list[list[Path]]:
    """Store files by the month of their day partition (``day=YYYY-MM-DD``), sorted."""
    groups: dict[str, list[Path]] = {}
    for p in sorted(files):
        name = p.parent.name
        groups.setdefault(name[:11] if name.startswith("day=") else name, []).append(p)
    return [groups[k] for k in sorted(groups)]


def store_paths(store: FlowStore) -> list[Path]:
    return store.files()
