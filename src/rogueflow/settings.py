"""Every setting, declared once: name, type, default, environment variable, help.

The CLI builds its shared options from this table and ``docs/settings.md`` is
generated from it (``rogueflow settings --markdown``); a test checks both.
Values resolve in order: command-line flag, environment variable, the
workspace's ``config.toml``, default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rogueflow.errors import ConfigError


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str
    env: str | None = None
    in_config: bool = True


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "workspace",
        str,
        "./rogueflow-data",
        "Directory holding config, flow store, catalog, reference data and reports.",
        env="ROGUEFLOW_WORKSPACE",
        in_config=False,
    ),
    Setting(
        "batch_rows",
        int,
        262_144,
        "Rows per Arrow batch read from an input file (bounds reader memory).",
        env="ROGUEFLOW_BATCH_ROWS",
    ),
    Setting(
        "row_group_rows",
        int,
        1_048_576,
        "Rows per Parquet row group in the store.",
        env="ROGUEFLOW_ROW_GROUP_ROWS",
    ),
    Setting(
        "buffer_rows",
        int,
        4_194_304,
        "Rows held in memory across day partitions during ingest before flushing.",
        env="ROGUEFLOW_BUFFER_ROWS",
    ),
    Setting(
        "zstd_level",
        int,
        # 1, not zstd's 3: the store's columns are dictionary/delta encoded before zstd,
        # so level 3 saves <1% of the bytes for ~20% more write time (benchmarks/run.py)
        1,
        "zstd compression level of the Parquet store (1–22).",
        env="ROGUEFLOW_ZSTD_LEVEL",
    ),
    Setting(
        "territory",
        str,
        "kp",
        "Default territory (ISO code of a profile) for reports.",
        env="ROGUEFLOW_TERRITORY",
    ),
    Setting(
        "engine",
        str,
        "duckdb",
        "Analysis engine: duckdb (embedded) or spark (PySpark over the same store; "
        "pip install 'rogueflow[spark]', needs Java 17+).",
        env="ROGUEFLOW_ENGINE",
    ),
    Setting(
        "spark_master",
        str,
        "local[2]",
        "Spark master URL for the spark engine (local[N] runs in-process on loopback).",
        env="ROGUEFLOW_SPARK_MASTER",
    ),
    Setting(
        "threads", int, 0, "Engine threads; 0 lets the engine choose.", env="ROGUEFLOW_THREADS"
    ),
    Setting(
        "memory_limit",
        str,
        # the limit bounds DuckDB's buffer pool only; Python, Arrow results and the
        # Parquet readers come on top. A report over 23M flows in scope (of 100M) peaks
        # at 1.1 GiB since the scope is Parquet, not a temporary table (3.6 GiB before)
        "3GB",
        "Engine memory limit, e.g. 3GB (DuckDB's limit; Spark's driver memory in local mode).",
        env="ROGUEFLOW_MEMORY_LIMIT",
    ),
    Setting(
        "scope_cache",
        int,
        4,
        "Materialised report views kept in <workspace>/.cache/rows for later runs over "
        "the same files (a report makes five: its scope, about 28 bytes per flow in it, "
        "its trends from the roll-ups and three derived views, all kept after it even "
        "beyond this number; the scope is kept a month of store files at a time, so a "
        "report after an ingest recomputes only the months the ingest changed; 0: none).",
        env="ROGUEFLOW_SCOPE_CACHE",
    ),
    Setting(
        "use_rollups",
        int,
        1,
        "1: a report reads its address-free trends (flows and bytes per day, month, side "
        "and local time) from the store's roll-ups when they can answer; 0: always from "
        "the flows (the answers are the same).",
        env="ROGUEFLOW_USE_ROLLUPS",
    ),
    Setting(
        "use_scope_files",
        int,
        1,
        "1: a report reads its scope (the flows touching its territory, sided) from the "
        "scope files the store writes at ingest when every source has them; 0: always "
        "builds it from the stored flows (the rows are the same).",
        env="ROGUEFLOW_USE_SCOPE_FILES",
    ),
)

BY_NAME = {s.name: s for s in SETTINGS}
ENV_VARS = tuple(s.env for s in SETTINGS if s.env)


def _coerce(setting: Setting, value: Any, origin: str) -> Any:
    if isinstance(value, setting.type):
        return value
    try:
        return setting.type(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"setting {setting.name!r} from {origin} must be {setting.type.__name__}, got {value!r}"
        ) from None


def resolve(
    name: str,
    flag: Any = None,
    config: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Any:
    """The value of one setting by precedence flag > env > config.toml > default."""
    setting = BY_NAME[name]
    env = os.environ if environ is None else environ
    if flag is not None:
        return _coerce(setting, flag, f"--{name.replace('_', '-')}")
    if setting.env and setting.env in env:
        return _coerce(setting, env[setting.env], f"${setting.env}")
    if config and setting.in_config and name in config:
        return _coerce(setting, config[name], "config.toml")
    return setting.default


def markdown() -> str:
    lines = [
        "# Settings",
        "",
        "Generated from `rogueflow.settings.SETTINGS` by `rogueflow settings --markdown`; "
        "do not edit. Precedence: flag > environment > `config.toml` in the workspace > default.",
        "",
        "| setting | type | default | environment | config.toml | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        lines.append(
            f"| `{s.name}` | {s.type.__name__} | `{s.default}` | "
            f"{'`' + s.env + '`' if s.env else ''} | {'yes' if s.in_config else 'no'} | {s.help} |"
        )
    return "\n".join(lines) + "\n"
