"""The distributed engine: Spark SQL over the same Parquet store (``--engine spark``).

Needs the ``spark`` extra (``pip install 'rogueflow[spark]'``, PySpark) and a Java 17+
runtime. ``--spark-master`` (setting ``spark_master``) says where it runs: ``local[2]``
(the default) keeps the driver and its executors in this process's JVM, bound to the
loopback interface with no web UI; a ``spark://`` or ``yarn`` master runs the same
queries on a cluster that can read the workspace's store path.

The engine defines what :class:`rogueflow.analyze.engine.DuckDBEngine` defines, from
the same pieces:

* ``flows`` — the Parquet files the catalog lists (never a directory glob, so files of
  an unfinished ingest stay invisible), read with the canonical schema so files of an
  older schema read with the new columns null, plus the computed ``day``, ``src_ip``,
  ``dst_ip``, ``community_id`` and ``source_file``;
* ``ip_text(blob)``, ``in_prefix(blob, 'cidr')`` as SQL functions, and ``ip(text)``,
  ``prefix_lo``/``prefix_hi`` and the Community ID as Arrow UDFs running the very
  functions DuckDB registers (vectorised over Arrow batches on the executors);
* a materialised view is a cached temporary view (``CACHE TABLE``).

Session settings that make Spark SQL read like DuckDB's: UTC session time zone,
``TIMESTAMP`` meaning a timestamp without time zone (DuckDB's ``TIMESTAMP``), and
non-ANSI arithmetic (a division by zero is NULL rather than an error; the analyses
guard their divisions, so this only matters for ad-hoc queries).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import warnings
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from rogueflow.analyze.engine import (
    _V4_HEX,
    _community_id,
    _ip6_text,
    _ip_parse,
    _prefix_hi,
    _prefix_lo,
)
from rogueflow.errors import MissingDependency, RogueflowError
from rogueflow.schema import FLOW_SCHEMA
from rogueflow.store.flowstore import FlowStore
from rogueflow.workspace import Workspace

if TYPE_CHECKING:  # PySpark is optional; the types are only for the checker
    from pyspark.sql import SparkSession

INSTALL_HINT = "pip install 'rogueflow[spark]'"
JAVA_HINT = "apt-get install openjdk-17-jre-headless (or set JAVA_HOME)"
DEFAULT_MASTER = "local[2]"

#: Spark type of each Arrow type of the canonical schema, as Spark's Parquet reader maps
#: the stored (unsigned) types: uint8 -> smallint, uint16 -> int, uint32 -> bigint.
_SPARK_TYPES = {
    "timestamp[us, tz=UTC]": "timestamp_ltz",
    "fixed_size_binary[16]": "binary",
    "uint8": "smallint",
    "uint16": "int",
    "uint32": "bigint",
    "int64": "bigint",
    "float": "float",
    "string": "string",
}

#: Runtime SQL settings of every engine session (see the module docstring).
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    "spark.sql.ansi.enabled": "false",
    # strings and binaries come back as Arrow string/binary, as DuckDB returns them
    "spark.sql.execution.arrow.useLargeVarTypes": "false",
}


def _pyspark() -> Any:
    try:
        import pyspark
    except ImportError:
        raise MissingDependency("PySpark (the spark engine)", INSTALL_HINT) from None
    return pyspark


def spark_schema_ddl() -> str:
    """The canonical flow schema as a Spark DDL string (the reader's requested schema)."""
    cols = []
    for f in FLOW_SCHEMA:
        kind = _SPARK_TYPES.get(str(f.type))
        if kind is None:  # a schema change must extend the map, not silently read wrong
            raise TypeError(f"no Spark type for column {f.name!r} of type {f.type}")
        cols.append(f"`{f.name}` {kind}")
    return ", ".join(cols)


def _driver_memory(limit: str) -> str | None:
    """DuckDB's memory limit spelling (``4GB``, ``512MB``) as Spark's (``4g``, ``512m``)."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT])i?B?\s*", limit, re.IGNORECASE)
    return f"{m.group(1)}{m.group(2).lower()}" if m else None


def spark_session(master: str | None = None, memory_limit: str | None = None) -> SparkSession:
    """The process's SparkSession: the active one when there is one (a notebook's, a test
    module's), else a new one started for ``master`` on the loopback interface."""
    pyspark = _pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    master = master or DEFAULT_MASTER
    builder = (
        SparkSession.builder.master(master)
        .appName("rogueflow")
        # loopback only, no web UI: nothing listens beyond this machine in local mode
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if master.startswith("local"):
        # UDF workers run this interpreter (it has rogueflow and pyarrow) unless the user
        # chose one; PySpark reads the variable when the context starts, not a setting
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # the JVM's own address guess (the first interface) is not used for anything then
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # a day-partitioned store is many small files: list them on the driver (no job)
        # and pack them into few tasks rather than one task per file
        builder = builder.config("spark.sql.sources.parallelPartitionDiscovery.threshold", "100000")
        builder = builder.config("spark.sql.files.openCostInBytes", str(1 << 20))
        # a few cores: Spark's 200 shuffle partitions would be 200 tiny tasks per query
        builder = builder.config("spark.sql.shuffle.partitions", "4")
        memory = _driver_memory(memory_limit or "")
        if memory:
            builder = builder.config("spark.driver.memory", memory)
        # the driver's log4j2 at errors only: a local driver JVM starts with these options
        # (this replaces a spark-defaults.conf value of the same key for the session)
        log4j = resources.files("rogueflow.analyze") / "spark-log4j2.properties"
        builder = builder.config(
            "spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{log4j}"
        )
    for key, value in SESSION_CONF.items():
        builder = builder.config(key, value)
    try:
        _launch_gateway(builder)
        with warnings.catch_warnings():
            # PySpark 4.3 checks its pandas support while starting (it imports its test
            # helpers) and warns about pandas 3; rogueflow uses no pandas API through it
            warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas")
            session = builder.getOrCreate()
    except pyspark.errors.PySparkException as exc:
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise MissingDependency(
                "a Java 17+ runtime (Spark runs on the JVM)", JAVA_HINT
            ) from None
        raise RogueflowError(f"--spark-master {master}: Spark did not start: {exc}") from None
    session.sparkContext.setLogLevel("ERROR")
    return session


#: What the JVM prints on every start because Spark's launcher always adds
#: ``--add-modules=jdk.incubator.vector`` (JavaModuleOptions, not configurable), and no
#: JVM option silences: the one line the driver's stderr relay drops.
JVM_NOTICE = b"WARNING: Using incubator modules: jdk.incubator.vector"


def relay_stderr(source: int, dest: int = 2) -> None:
    """Copy the lines read from file descriptor ``source`` to ``dest`` until end of file,
    all but :data:`JVM_NOTICE`; closes ``source``. Runs on the relay thread."""
    with os.fdopen(source, "rb", buffering=0) as fh:
        for line in iter(fh.readline, b""):
            if line.rstrip(b"\r\n") != JVM_NOTICE:
                os.write(dest, line)


def _launch_gateway(builder: Any) -> None:
    """Start the driver JVM (PySpark's gateway) with its stderr through
    :func:`relay_stderr`, where PySpark would start it with this process's stderr.

    Log lines, errors and a failed start still reach stderr; only the JVM's notice goes.
    Nothing is done when the process already has a gateway (a session was started
    before, or PySpark was told to attach to one).
    """
    from pyspark import SparkConf, SparkContext, java_gateway

    launch_gateway: Any = java_gateway.launch_gateway  # untyped in PySpark

    # the builder's options are what getOrCreate would give the launcher (a PySpark
    # without them as this attribute starts its gateway itself, notice and all)
    options = getattr(builder, "_options", None)
    if (
        not isinstance(options, dict)
        or SparkContext._gateway is not None
        or "PYSPARK_GATEWAY_PORT" in os.environ
    ):
        return
    conf = SparkConf()
    for key, value in options.items():
        conf.set(key, str(value))
    read_end, write_end = os.pipe()
    relay = threading.Thread(
        target=relay_stderr, args=(read_end,), name="spark-jvm-stderr", daemon=True
    )
    relay.start()
    try:
        gateway = launch_gateway(conf, popen_kwargs={"stderr": write_end})
    except BaseException:
        os.close(write_end)
        relay.join(5)  # the JVM exited: let its last words out before the error
        raise
    os.close(write_end)  # the JVM holds its own copy; the relay ends when the JVM does
    SparkContext._ensure_initialized(gateway=gateway, conf=conf)


class SparkEngine:
    """A Spark session with the workspace's ``flows`` view (see the module docstring)."""

    name = "spark"

    def __init__(
        self,
        workspace: Workspace,
        *,
        master: str | None = None,
        session: SparkSession | None = None,
    ) -> None:
        pyspark = _pyspark()
        from py4j.protocol import Py4JError

        self.errors: tuple[type[BaseException], ...] = (pyspark.errors.PySparkException, Py4JError)
        self.ws = workspace
        from pyspark.sql import SparkSession

        started = session is None and SparkSession.getActiveSession() is None
        base = session or spark_session(
            str(workspace.setting("spark_master", master)),
            str(workspace.setting("memory_limit")),
        )
        self._owned: SparkSession | None = base if started else None
        # a session of its own: temporary views and functions do not leak between engines
        self.spark = base.newSession()
        for key, value in SESSION_CONF.items():
            self.spark.conf.set(key, value)
        self._cached: list[str] = []
        self.store = FlowStore(workspace)
        self.files: list[Path] = []
        try:
            self._register_helpers()
            self.refresh()
        except BaseException:
            self.close()
            raise

    def _register_helpers(self) -> None:
        from pyspark.sql.pandas import functions

        # PySpark reads the kind of UDF from the functions' type hints (pa.Array in and
        # out) and warns when it is also given; its stubs want it given: hence Any
        arrow_udf: Any = functions.arrow_udf

        def register(name: str, fn: Any, kind: str) -> None:
            # the functions DuckDB registers, run on Arrow batches by the Python workers
            self.spark.udf.register(name, arrow_udf(fn, kind))

        register("_ip6_text", _ip6_text, "string")
        register("ip", _ip_parse, "binary")
        register("prefix_lo", _prefix_lo, "binary")
        register("prefix_hi", _prefix_hi, "binary")
        register("_community_id", _community_id, "string")
        octets = ", ".join(f"conv(substr(hex(a), {i}, 2), 16, 10)" for i in (25, 27, 29, 31))
        self.spark.sql(
            f"""
            CREATE OR REPLACE TEMPORARY FUNCTION ip_text(a BINARY) RETURNS STRING RETURN
            CASE WHEN a IS NULL THEN NULL
                 WHEN substr(hex(a), 1, 24) = '{_V4_HEX}' THEN concat_ws('.', {octets})
                 ELSE _ip6_text(a) END
            """
        )
        self.spark.sql(
            """
            CREATE OR REPLACE TEMPORARY FUNCTION in_prefix(a BINARY, cidr STRING)
            RETURNS BOOLEAN RETURN a BETWEEN prefix_lo(cidr) AND prefix_hi(cidr)
            """
        )

    def refresh(self) -> None:
        """(Re)build the views over the currently committed files."""
        self.files = self.store.files()  # what flows_stored reads
        files = [os.fspath(p) for p in self.files]
        sources = self.store.catalog.sources()
        self.spark.createDataFrame(
            [(s.source_id, s.path) for s in sources], "source_id string, source_path string"
        ).createOrReplaceTempView("_sources")
        schema = spark_schema_ddl()
        stored = (
            self.spark.read.schema(schema).parquet(*files)
            if files
            else self.spark.createDataFrame([], schema)
        )
        stored.createOrReplaceTempView("flows_stored")
        self.spark.sql(
            """
            CREATE OR REPLACE TEMPORARY VIEW flows AS
            SELECT f.*,
                   CAST(f.ts_start AS DATE) AS day,
                   timestamp_seconds(div(unix_seconds(f.ts_start), 3600) * 3600) AS hour,
                   ip_text(f.src_addr) AS src_ip,
                   ip_text(f.dst_addr) AS dst_ip,
                   _community_id(f.src_addr, f.dst_addr, f.proto, f.src_port, f.dst_port)
                       AS community_id,
                   s.source_path AS source_file
            FROM flows_stored f LEFT JOIN _sources s ON s.source_id = f.source_id
            """
        )

    def arrow(self, query: str, params: list[Any] | None = None) -> pa.Table:
        """Run one query; the result as an Arrow table (``?`` placeholders take ``params``)."""
        df = self.spark.sql(query, args=params) if params else self.spark.sql(query)
        table: pa.Table = df.toArrow()
        return table

    def head(self, query: str, n: int) -> pa.Table:
        """The first ``n`` rows of a query, limited before they reach the driver."""
        table: pa.Table = self.spark.sql(query).limit(n).toArrow()
        return table

    def create_view(
        self, name: str, query: str, *, materialise: bool = False, rows_of: str | None = None
    ) -> None:
        """A temporary view; with ``materialise`` computed once and cached (Spark keeps
        it in executor memory and spills what does not fit to local disk, for this
        session only: ``rows_of``, which lets DuckDB reuse a month's rows across runs,
        changes nothing here)."""
        if materialise:
            self.spark.sql(f"CACHE TABLE {name} AS {query}")
            self._cached.append(name)
        else:
            self.spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW {name} AS {query}")

    def parquet_view(self, name: str, files: list[Path]) -> None:
        """A temporary view over Parquet files of one schema (at least one file)."""
        self.spark.read.parquet(*(os.fspath(f) for f in files)).createOrReplaceTempView(name)

    def close(self) -> None:
        try:
            for name in self._cached:
                self.spark.sql(f"UNCACHE TABLE IF EXISTS {name}")
            self._cached.clear()
        finally:
            self.store.close()
            if self._owned is not None:
                self._owned.stop()
                self._owned = None
