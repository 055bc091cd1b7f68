"""The territory-scoped view every analysis reads, and the engine glue behind it.

:class:`Scope` opens the engine, defines the view ``territory_flows`` (flows with
at least one end inside the territory, inside the analysis window) and runs the
analyses' SQL, recording each query for provenance. Only aggregates come back.

Columns of ``territory_flows``:

* ``ts_utc`` (naive UTC timestamp of the first packet), ``ts_end`` (last packet),
  ``day`` (UTC date), ``year``, ``month`` (UTC)
* ``side`` — ``out`` / ``in`` / ``internal``; ``internal_addr`` (the inside end:
  source for out and internal flows, destination for in), ``remote_addr``, and their
  ports ``internal_port`` / ``remote_port``
* ``local_ts`` — wall-clock time in the territory (zone history applied),
  ``local_day``, ``local_weekday`` (0 = Monday), ``local_hour``, ``local_minute``
  (minute of the day)
* ``flow_bytes``, ``flow_packets`` — both directions × sampling rate (DOUBLE)
* the measured ``proto``, ``src_port``, ``dst_port``, ``tcp_flags``, ``packets``,
  ``bytes``, ``rev_packets``, ``rev_bytes`` (as reported), ``sampling_rate``,
  ``exporter``, ``source_id``, and what the source saw: ``app_label``,
  ``server_name``, ``dns_query``
* the remote end's enrichment: ``remote_country``, ``remote_asn`` (BIGINT),
  ``remote_as_org`` (from ``dst_*`` for out and internal flows, ``src_*`` for in),
  and the flow's ``service``, ``category``, ``confidence``, ``evidence``, ``coin``,
  ``pool`` and ``wallet``, and ``intel`` (the ';'-separated ids of the reference-data
  snapshots used at ingest); all null for flows stored before schema 2

Periods are UTC (the window flags are UTC days); local time only classifies a
flow's weekday and hour. The analyses' SQL uses only these columns and portable
SQL (the subset DuckDB and Spark SQL read alike), so it runs on either engine
(:func:`rogueflow.analyze.engine.open_engine`); the few engine-specific
expressions live in :data:`DIALECTS`, reached through ``scope.dialect``. Portable
means, beside the obvious: explicit ``NULLS FIRST/LAST`` wherever an ``ORDER BY``
may meet a null (the engines' defaults differ), no ``INTERVAL (expr)`` (use
``Dialect.seconds``), no ``::`` casts, and no cast of a fraction to an integer
(DuckDB rounds, Spark truncates: use ``floor``/``round``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa

from rogueflow import territory as terr
from rogueflow.analyze.engine import Engine, open_engine, sql_string
from rogueflow.enrich.territory import (
    fingerprint,
    indexed,
    local_time_sql,
    member_sql,
    side_case,
)
from rogueflow.errors import ConfigError, RogueflowError
from rogueflow.territory import Territory, utc_offsets
from rogueflow.workspace import Workspace

VIEW = "territory_flows"
ROLLUP_VIEW = "territory_rollup"


@dataclass(frozen=True)
class Trend:
    """Where a query of address-free trends reads: the roll-ups when they can answer
    (see :mod:`rogueflow.store.rollup`), else the flows. Its columns are
    ``ts_utc`` (the flow's, or its quarter-hour's), ``day``, ``year``, ``month``,
    ``side``, the ``local_*`` columns, ``category``, ``service``, ``coin``, ``proto``,
    ``sampling_rate``, ``source_id``, ``flow_bytes`` and ``flow_packets``; count flows
    with ``flows`` (an aggregate expression) and weigh a row with ``weight``."""

    view: str = VIEW
    flows: str = "count(*)"
    weight: str = "1"


ROLLUP_TREND = Trend(ROLLUP_VIEW, "sum(flows)", "flows")
#: the columns a trend query may group by besides time
TREND_COLUMNS = ("side", "category", "service", "coin", "proto", "sampling_rate", "source_id")


@dataclass(frozen=True)
class Dialect:
    """Expressions whose spelling differs between engines (``{x}`` is the argument)."""

    name: str
    weekday: str  # 0 = Monday … 6 = Sunday
    seconds: str  # an interval of {x} seconds (an integer expression), to add to a timestamp
    naive: str  # a stored timestamp (UTC, with time zone) as a timestamp without time zone


DIALECTS = {
    # from the epoch: a cast of a timestamp with time zone goes through ICU's calendar
    # per row (3.9 s against 1.1 s for two columns of 29.6M flows)
    "duckdb": Dialect(
        "duckdb", "(isodow({x}) - 1)", "INTERVAL ({x}) SECOND", "make_timestamp(epoch_us({x}))"
    ),
    # Spark SQL parses INTERVAL only before a literal
    "spark": Dialect(
        "spark", "weekday({x})", "make_dt_interval(0, 0, 0, {x})", "CAST({x} AS TIMESTAMP)"
    ),
}


@dataclass(frozen=True)
class QueryRecord:
    label: str
    sql: str


@dataclass(frozen=True)
class ProfileInfo:
    """The territory profile as used: its source and the sha256 of its exact text."""

    territory: Territory
    source: str
    sha256: str


def load_profile(code: str | None, territory_file: str | Path | None) -> ProfileInfo:
    """Resolve a profile (built-in or file) and hash the text it was parsed from."""
    if territory_file is not None:
        try:
            text = Path(territory_file).read_text()
        except OSError as exc:
            raise ConfigError(
                f"{territory_file}: cannot read territory file ({exc.strerror})"
            ) from None
        t = terr.parse_profile(text, str(territory_file))
        if code and t.code != code.lower():
            raise ConfigError(
                f"{territory_file}: profile code {t.code!r} differs from --territory {code!r}"
            )
        source = str(territory_file)
    else:
        t = terr.resolve(code, None)
        name = t.source.removeprefix("built-in:")
        text = (resources.files("rogueflow.territory") / "profiles" / name).read_text()
        source = t.source
    return ProfileInfo(t, source, hashlib.sha256(text.encode()).hexdigest())


def _ts(d: date) -> str:
    return f"TIMESTAMP '{d.isoformat()} 00:00:00'"


def one_of(column: str, values: Iterable[str]) -> str:
    """Portable SQL condition: ``column`` is one of the string ``values``.

    Written as the list's range and the list: DuckDB pushes a range into the Parquet
    scan as a filter, but a list of two or more only as row-group pruning, so a bare
    ``IN`` reads every other column of every row before testing it (crypto's session
    queries over the full demo: 1.04 s bare, 0.52 s with the range).
    """
    vs = sorted(set(values))
    if not vs:
        return "1 = 0"
    q = [sql_string(v) for v in vs]
    if len(q) == 1:
        return f"{column} = {q[0]}"
    return f"({column} BETWEEN {q[0]} AND {q[-1]} AND {column} IN ({', '.join(q)}))"


@dataclass
class Scope:
    """An open analysis scope: one territory, one window, one engine connection."""

    engine: Engine
    profile: ProfileInfo
    start: date  # analysis window, UTC days, inclusive
    end: date
    first_ts: datetime  # data window: first and last territory flow
    last_ts: datetime
    flows: int
    baseline: tuple[date, date] | None = None  # comparison window given by the user
    dialect: Dialect = DIALECTS["duckdb"]
    trend: Trend = Trend()
    log: list[QueryRecord] = field(default_factory=list)
    _cache: dict[str, pa.Table] = field(default_factory=dict)
    _traces: list[list[QueryRecord]] = field(default_factory=list)
    _intel: list[dict[str, Any]] | None = None
    _derived: dict[str, str] = field(default_factory=dict)

    @property
    def territory(self) -> Territory:
        return self.profile.territory

    @property
    def first_day(self) -> date:
        return self.first_ts.date()

    @property
    def last_day(self) -> date:
        return self.last_ts.date()

    # --- running SQL ------------------------------------------------------------

    def query(self, label: str, sql: str) -> pa.Table:
        """Run (or reuse) an aggregate query; record it in the log and open traces."""
        sql = _dedent(sql)
        rec = QueryRecord(label, sql)
        if rec not in self.log:
            self.log.append(rec)
        for trace in self._traces:
            if rec not in trace:
                trace.append(rec)
        if sql not in self._cache:
            try:
                self._cache[sql] = self.engine.arrow(sql)
            except self.engine.errors as exc:
                raise RogueflowError(f"analysis query {label!r} failed: {exc}") from exc
        return self._cache[sql]

    def rows(self, label: str, sql: str) -> list[dict[str, Any]]:
        return list(self.query(label, sql).to_pylist())

    @contextmanager
    def trace(self) -> Iterator[list[QueryRecord]]:
        """Collect the queries run (or reused) inside the block, for one finding."""
        used: list[QueryRecord] = []
        self._traces.append(used)
        try:
            yield used
        finally:
            self._traces.remove(used)

    def derived(self, name: str, sql: str) -> str:
        """A view ``name`` over aggregate rows of the scope that several queries read,
        materialised on first use (in the row cache, like the scope) and recorded as
        ``derived view NAME`` in the log and in every open trace on each use, so the
        provenance of each finding reading it, and only of those, holds its
        definition. Returns ``name``."""
        sql = _dedent(sql)
        known = self._derived.get(name)
        if known is None:
            try:
                self.engine.create_view(name, sql, materialise=True)
            except self.engine.errors as exc:
                raise RogueflowError(f"derived view {name!r} failed: {exc}") from exc
            self._derived[name] = sql
        elif known != sql:
            raise ValueError(f"derived view {name!r} is already defined differently")
        rec = QueryRecord(f"derived view {name}", sql)
        for records in (self.log, *self._traces):
            if rec not in records:
                records.append(rec)
        return name

    def weekday(self, expr: str) -> str:
        return self.dialect.weekday.format(x=expr)

    def seconds(self, expr: str) -> str:
        """An interval of ``expr`` seconds, to add to a timestamp column."""
        return self.dialect.seconds.format(x=expr)

    # --- shared aggregates -------------------------------------------------------

    def daily(self) -> pa.Table:
        """Per UTC day with data: flows, bytes, packets (the base series of every chart)."""
        return self.query(
            "daily series",
            f"""
            SELECT day, {self.trend.flows} AS flows, sum(flow_bytes) AS bytes,
                   sum(flow_packets) AS packets
            FROM {self.trend.view} GROUP BY day ORDER BY day
            """,
        )

    def sources(self) -> list[dict[str, Any]]:
        """Catalog sources contributing territory flows, with their first and last day."""
        return self.rows(
            "sources used",
            f"""
            SELECT source_id, count(*) AS flows, min(day) AS first_day, max(day) AS last_day
            FROM {VIEW} GROUP BY source_id ORDER BY source_id
            """,
        )

    def sampling(self) -> list[dict[str, Any]]:
        return self.rows(
            "sampling rates",
            f"""
            SELECT sampling_rate, {self.trend.flows} AS flows FROM {self.trend.view}
            GROUP BY sampling_rate ORDER BY sampling_rate
            """,
        )

    def intel_used(self) -> list[dict[str, Any]]:
        """The reference-data snapshots the flows in scope were enriched with.

        Read from the flows themselves (their ``intel`` column), so a report names
        exactly the snapshots behind its numbers, including ones valid only for part
        of the window. The query runs (from cache) on every call so that each
        finding's trace records it.
        """
        rows = self.rows(
            "reference data used",
            f"""
            SELECT intel, count(*) AS flows, min(day) AS first_day, max(day) AS last_day
            FROM {VIEW} WHERE intel IS NOT NULL GROUP BY intel
            """,
        )
        if self._intel is None:
            self._intel = resolve_snapshots(self.engine.ws, rows)
        return self._intel

    def close(self) -> None:
        self.engine.close()


def _when(t: datetime | None) -> str:
    if t is None:
        return ""
    t = t.astimezone(UTC)
    return t.date().isoformat() if t.time() == datetime.min.time() else t.isoformat()


def validity_text(valid_from: datetime | None, valid_to: datetime | None) -> str:
    """'2018-01-01 to 2019-01-01' (end exclusive), 'from …', 'until …' or 'always'."""
    if valid_from is None and valid_to is None:
        return "always (no validity interval)"
    if valid_to is None:
        return f"from {_when(valid_from)}"
    if valid_from is None:
        return f"until {_when(valid_to)}"
    return f"{_when(valid_from)} to {_when(valid_to)}"


def resolve_snapshots(ws: Workspace, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Snapshot ids as found in ``intel`` (rows of intel, flows, first_day, last_day)
    to their description; an id no longer in the store is listed as ``(removed) <id>``."""
    from rogueflow.intel.snapshots import IntelStore

    use: dict[str, dict[str, Any]] = {}
    for r in rows:
        for sid in {x.strip() for x in str(r["intel"]).split(";") if x.strip()}:
            u = use.setdefault(sid, {"flows": 0, "first_day": r["first_day"], "last_day": None})
            u["flows"] += int(r["flows"])
            u["first_day"] = min(u["first_day"], r["first_day"])
            u["last_day"] = max(u["last_day"] or r["last_day"], r["last_day"])
    if not use:
        return []
    out: list[dict[str, Any]] = []
    store = IntelStore(ws)
    try:
        for sid, u in use.items():
            try:
                snap = store.get(sid)
            except ConfigError:
                snap = None
            used = {
                "flows": u["flows"],
                "first_day": str(u["first_day"]),
                "last_day": str(u["last_day"]),
            }
            if snap is None or snap.id != sid:
                kind, _, rest = sid.partition(":")
                out.append(
                    {
                        "kind": kind,
                        "id": sid,
                        "label": f"(removed) {sid}",
                        "name": rest.rpartition(":")[0],
                        "source": "",
                        "sha256": "",
                        "valid_from": None,
                        "valid_to": None,
                        "validity": "unknown (no longer in the store)",
                        "retrieved_at": None,
                        "removed": True,
                        **used,
                    }
                )
                continue
            out.append(
                {
                    "kind": snap.kind,
                    "id": snap.id,
                    "label": snap.id,
                    "name": snap.name,
                    "source": snap.source,
                    "sha256": snap.sha256,
                    "valid_from": snap.valid_from.isoformat() if snap.valid_from else None,
                    "valid_to": snap.valid_to.isoformat() if snap.valid_to else None,
                    "validity": validity_text(snap.valid_from, snap.valid_to),
                    "retrieved_at": snap.retrieved_at.isoformat(),
                    "removed": False,
                    **used,
                }
            )
    finally:
        store.close()
    out.sort(key=lambda e: (e["kind"], e["valid_from"] or "", e["id"]))
    return out


def _dedent(sql: str) -> str:
    lines = [ln.strip() for ln in sql.strip().splitlines()]
    return "\n".join(ln for ln in lines if ln)


BASE = "_scope_base"
#: the window of a report given no --from/--to (in the SQL: its text stays the same as
#: data is added, so the row cache can reuse the months an ingest did not change)
OPEN_WINDOW = (date(1970, 1, 1), date(2099, 12, 31))


def _index_members(t: Territory, alias: str) -> tuple[str, str]:
    """Whether the source and the destination of rows ``alias`` (store or roll-up rows)
    are inside ``t``, by the store's territory index."""
    code = sql_string(t.code)
    return f"{alias}.src_territory = {code}", f"{alias}.dst_territory = {code}"


def _scope_filter(t: Territory, start: date, end: date, indexed: bool) -> tuple[str, str, str]:
    """The window condition and whether the source and the destination are inside the
    territory, over the stored flows ``f`` (``flows_stored``: without the derived
    columns of ``flows``, which the scope never reads). ``indexed``: every file read
    holds the store's territory index for ``t`` as its profile is now, so membership
    is its columns (see :mod:`rogueflow.enrich.territory`) instead of prefix tests."""
    window = f"f.ts_start >= {_ts(start)} AND f.ts_start < {_ts(end + timedelta(days=1))}"
    if indexed:
        si, di = _index_members(t, "f")
        # named in the SQL (and so in every finding's provenance): which index answered
        note = f"/* the store's territory index, {t.code} {fingerprint(t)} */"
        return window, f"({si} {note})", f"({di})"
    return (
        window,
        member_sql(t, "f.src_addr", "f.ts_start"),
        member_sql(t, "f.dst_addr", "f.ts_start"),
    )


def base_sql(
    t: Territory,
    start: date,
    end: date,
    dialect: Dialect = DIALECTS["duckdb"],
    *,
    indexed: bool = False,
) -> str:
    """The flows in scope: inside the UTC days ``start``..``end`` with at least one end in
    the territory, with their side (materialised once as ``_scope_base``: the one scan
    of the store; the window, its first and last flow are then read from it)."""
    window, s_in, d_in = _scope_filter(t, start, end, indexed)
    # the sides are resolved here, once: the table holds the inside and outside end and
    # the outside end's enrichment only, not both ends' (memory: strings dominate it).
    # Membership is computed once per end as a boolean (si, di) and every swap reads it.
    return f"""
    SELECT s.ts_utc, s.ts_end,
           {side_case("s.si", "s.di")} AS side,
           CASE WHEN s.si THEN s.src_addr ELSE s.dst_addr END AS internal_addr,
           CASE WHEN s.si THEN s.dst_addr ELSE s.src_addr END AS remote_addr,
           CASE WHEN s.si THEN s.src_port ELSE s.dst_port END AS internal_port,
           CASE WHEN s.si THEN s.dst_port ELSE s.src_port END AS remote_port,
           s.proto, s.tcp_flags, s.packets, s.bytes, s.rev_packets, s.rev_bytes,
           s.sampling_rate, s.exporter, s.source_id, s.app_label, s.server_name, s.dns_query,
           CASE WHEN s.si THEN s.dst_country ELSE s.src_country END AS remote_country,
           CAST(CASE WHEN s.si THEN s.dst_asn ELSE s.src_asn END AS BIGINT) AS remote_asn,
           CASE WHEN s.si THEN s.dst_as_org ELSE s.src_as_org END AS remote_as_org,
           s.service, s.category, s.confidence, s.evidence, s.coin, s.pool, s.wallet, s.intel
    FROM (
      SELECT {dialect.naive.format(x="f.ts_start")} AS ts_utc,
             {dialect.naive.format(x="f.ts_end")} AS ts_end,
             f.src_addr, f.dst_addr, f.proto, f.src_port, f.dst_port, f.tcp_flags, f.packets,
             f.bytes, f.rev_packets, f.rev_bytes, f.sampling_rate, f.exporter, f.source_id,
             f.app_label, f.server_name, f.dns_query,
             f.src_country, f.dst_country, f.src_asn, f.dst_asn, f.src_as_org, f.dst_as_org,
             f.service, f.category, f.confidence, f.evidence, f.coin, f.pool, f.wallet,
             f.intel, {s_in} AS si, {d_in} AS di
      FROM flows_stored f WHERE {window}
    ) s
    WHERE s.si OR s.di
    """


SCOPED = "flows_scoped"  # the scope files' rows (see rogueflow.store.scopefile)


def scoped_sql(t: Territory, start: date, end: date) -> str:
    """``_scope_base`` from the scope files the store wrote at ingest (view ``SCOPED``):
    their rows are ``base_sql``'s over the open window, in its columns; the window
    selects the report's."""
    note = f"/* scope files of the store's territory index, {t.code} {fingerprint(t)} */"
    return f"""
    SELECT * FROM {SCOPED} s {note}
    WHERE s.ts_utc >= {_ts(start)} AND s.ts_utc < {_ts(end + timedelta(days=1))}
    """


def rollup_sql(
    t: Territory, start: date, end: date, first: datetime, last: datetime, dialect: Dialect
) -> str:
    """``territory_rollup``: the roll-up rows (view ``flows_rollup``) of the window that
    touch the territory, with the columns of :class:`Trend` derived as for flows."""
    si, di = _index_members(t, "r")
    return _timed_view(
        t,
        first,
        last,
        dialect,
        f"""s.ts_utc, CAST(s.ts_utc AS DATE) AS day,
             {side_case("s.si", "s.di")} AS side,
             s.category, s.service, s.coin, s.proto, s.sampling_rate, s.source_id, s.flows,
             {_TOTALS}""",
        f"""(
        SELECT {dialect.naive.format(x="r.qh")} AS ts_utc, r.category, r.service, r.coin,
               r.proto, r.sampling_rate, r.source_id, r.flows, r.packets, r.bytes,
               r.rev_packets, r.rev_bytes, {si} AS si, {di} AS di
        FROM flows_rollup r
        WHERE r.qh >= {_ts(start)} AND r.qh < {_ts(end + timedelta(days=1))}
          AND ({si} OR {di})
      ) s""",
    )


def quarter_hours(t: Territory, first: datetime, last: datetime) -> bool:
    """Whether local time at quarter-hour resolution classifies every flow as its own
    time would: each UTC offset of the window and each change of it on a quarter-hour,
    and business hours starting and ending on one."""
    steps = utc_offsets(t.timezone, first, last + timedelta(seconds=1))
    q = 15 * 60
    offsets = all(off % q == 0 for _, off in steps)
    changes = all(int(since.timestamp()) % q == 0 for since, _ in steps[1:])
    hours = all((b.hour * 60 + b.minute) % 15 == 0 and not b.second for b in t.business_hours)
    return offsets and changes and hours


def view_sql(t: Territory, first: datetime, last: datetime, dialect: Dialect) -> str:
    """``territory_flows`` over ``_scope_base`` (see the module docstring): sides, local
    time (the zone's offsets between the first and last flow) and totals."""
    return _timed_view(
        t,
        first,
        last,
        dialect,
        f"""s.ts_utc, s.ts_end, CAST(s.ts_utc AS DATE) AS day, s.side,
             s.internal_addr, s.remote_addr, s.internal_port, s.remote_port,
             CASE WHEN s.side = 'in' THEN s.remote_port ELSE s.internal_port END AS src_port,
             CASE WHEN s.side = 'in' THEN s.internal_port ELSE s.remote_port END AS dst_port,
             s.proto, s.tcp_flags, s.sampling_rate, s.exporter,
             s.source_id, s.app_label, s.server_name, s.dns_query,
             s.remote_country, s.remote_asn, s.remote_as_org,
             s.service, s.category, s.confidence, s.evidence, s.coin, s.pool, s.wallet,
             s.intel, s.packets, s.bytes, s.rev_packets, s.rev_bytes,
             {_TOTALS}""",
        f"{BASE} s",
    )


#: both directions times the sampling rate, over rows ``s`` (flows or roll-up rows)
_TOTALS = """CAST(s.bytes + s.rev_bytes AS DOUBLE) * s.sampling_rate AS flow_bytes,
             CAST(s.packets + s.rev_packets AS DOUBLE) * s.sampling_rate AS flow_packets"""


def _timed_view(
    t: Territory, first: datetime, last: datetime, dialect: Dialect, columns: str, rows: str
) -> str:
    """``columns`` of ``rows`` (aliased ``s``, with a naive UTC ``ts_utc``) and the year,
    month and local-time columns (the zone's offsets between the first and last flow)."""
    local = local_time_sql(t, "s.ts_utc", first, last + timedelta(seconds=1), dialect.seconds)
    wd = dialect.weekday.format(x="l.local_ts")
    return f"""
    SELECT l.*,
           EXTRACT(YEAR FROM l.ts_utc) AS year,
           EXTRACT(MONTH FROM l.ts_utc) AS month,
           CAST(l.local_ts AS DATE) AS local_day,
           {wd} AS local_weekday,
           EXTRACT(HOUR FROM l.local_ts) AS local_hour,
           EXTRACT(HOUR FROM l.local_ts) * 60 + EXTRACT(MINUTE FROM l.local_ts) AS local_minute
    FROM (
      SELECT {columns},
             {local} AS local_ts
      FROM {rows}
    ) l
    """


def open_scope(
    ws: Workspace,
    profile: ProfileInfo,
    start: date | None = None,
    end: date | None = None,
    baseline: tuple[date, date] | None = None,
    *,
    engine: str | None = None,
    spark_master: str | None = None,
) -> Scope:
    """Open the engine (``engine``: ``duckdb`` or ``spark``, default the ``engine``
    setting) and define ``territory_flows``; raise when no flow touches the territory."""
    if start is not None and end is not None and end < start:
        raise ConfigError(f"--to {end} is before --from {start}")
    t = profile.territory
    lo, hi = start or OPEN_WINDOW[0], end or OPEN_WINDOW[1]  # the window in the SQL
    eng = open_engine(ws, engine, spark_master=spark_master)
    try:
        dialect = DIALECTS[eng.name]
        index_used = indexed(t, eng.store.claims(eng.files))
        # written at ingest from the same index: no scan of the store at all (both
        # engines read their naive UTC timestamps as written: tests/test_engines.py)
        scoped = (
            eng.store.scope_files(t.code, eng.files)
            if index_used and int(ws.setting("use_scope_files"))
            else None
        )
        probe = f"SELECT count(*) AS n, min(ts_utc) AS first_ts, max(ts_utc) AS last_ts FROM {BASE}"
        try:
            if scoped:
                eng.parquet_view(SCOPED, scoped)
                base = scoped_sql(t, lo, hi)
                # DuckDB reads the files' columns per query as fast as a copy of them;
                # Spark keeps the rows in executor memory, read once (CACHE TABLE)
                eng.create_view(BASE, base, materialise=eng.name != "duckdb")
            else:
                base = base_sql(t, lo, hi, dialect, indexed=index_used)
                # one scan of the store; every analysis then reads its rows (both
                # engines spill to local disk past their memory limit)
                eng.create_view(BASE, base, materialise=True, rows_of="flows_stored")
            row = eng.arrow(probe).to_pylist()[0]
        except eng.errors as exc:
            raise RogueflowError(f"{eng.name}: cannot read the flow store: {exc}") from exc
        if not row["n"]:
            where = ""
            if start or end:
                where = f" between {start or 'the first day'} and {end or 'the last day'}"
            raise RogueflowError(
                f"no flows touch territory {t.code} in the store{where}; "
                "ingest data or check the window"
            )
        first = row["first_ts"].replace(tzinfo=UTC)
        last = row["last_ts"].replace(tzinfo=UTC)
        scope = Scope(
            engine=eng,
            profile=profile,
            start=start or first.date(),
            end=end or last.date(),
            first_ts=first,
            last_ts=last,
            flows=int(row["n"]),
            baseline=baseline,
            dialect=dialect,
        )
        view = view_sql(t, first, last, dialect)
        eng.create_view(VIEW, view)
        scope.log.append(QueryRecord(f"view {BASE}", _dedent(base)))
        scope.log.append(QueryRecord(f"view {VIEW}", _dedent(view)))
        rollups = eng.store.rollups(eng.files)
        if (
            index_used
            and rollups
            and int(ws.setting("use_rollups"))
            and quarter_hours(t, first, last)
        ):
            eng.parquet_view("flows_rollup", rollups)
            # the same window as the scope's (not the data's first and last day, which
            # select the same roll-up rows): an ingest of later days leaves the SQL as
            # it was, so the months it did not touch are reused from the row cache
            trends = rollup_sql(t, lo, hi, first, last, dialect)
            # once: a store has a roll-up per file, thousands of small files, and the
            # view computes local time; its rows are a fraction of the scope's
            eng.create_view(ROLLUP_VIEW, trends, materialise=True, rows_of="flows_rollup")
            scope.log.append(QueryRecord(f"view {ROLLUP_VIEW}", _dedent(trends)))
            scope.trend = ROLLUP_TREND
        return scope
    except BaseException:
        eng.close()
        raise


def parse_baseline(text: str | None) -> tuple[date, date] | None:
    """``YYYY-MM-DD:YYYY-MM-DD`` (inclusive UTC days) to a pair of dates."""
    if not text:
        return None
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        lo, hi = date.fromisoformat(parts[0].strip()), date.fromisoformat(parts[1].strip())
    except ValueError:
        raise ConfigError(
            f"--baseline {text!r}: expected YYYY-MM-DD:YYYY-MM-DD (first and last day, UTC)"
        ) from None
    if hi < lo:
        raise ConfigError(f"--baseline {text!r}: the last day is before the first")
    return lo, hi
