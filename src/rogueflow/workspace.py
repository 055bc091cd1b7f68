"""One directory holds everything an analysis needs; two workspaces share nothing.

<workspace>/
  config.toml          settings (see rogueflow.settings)
  catalog.sqlite       ingested sources and the store files they own
  store/flows/day=YYYY-MM-DD/*.parquet
  store/.staging/      files of ingests in progress (invisible to queries)
  intel/               reference-data snapshots
  reports/             generated reports
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rogueflow import settings
from rogueflow.errors import ConfigError, StoreError

CONFIG_NAME = "config.toml"
DEFAULT_CONFIG = """\
# rogueflow workspace configuration. Settings: see docs/settings.md.
# territory = "kp"
# zstd_level = 3
"""


class Workspace:
    """A workspace directory. Created on first use."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        chosen = root if root is not None else settings.resolve("workspace")
        self.root = Path(chosen).expanduser().resolve()
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"workspace {self.root} exists and is not a directory")
        self.root.mkdir(parents=True, exist_ok=True)
        config_path = self.root / CONFIG_NAME
        if not config_path.exists():
            config_path.write_text(DEFAULT_CONFIG)
        self.config = self._load_config(config_path)

    @staticmethod
    def _load_config(path: Path) -> dict[str, Any]:
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        unknown = sorted(set(data) - set(settings.BY_NAME))
        if unknown:
            raise ConfigError(
                f"{path}: unknown setting(s) {', '.join(unknown)}; see docs/settings.md"
            )
        return data

    def setting(self, name: str, flag: Any = None) -> Any:
        return settings.resolve(name, flag, self.config)

    @property
    def store_dir(self) -> Path:
        return self.root / "store"

    @property
    def flows_dir(self) -> Path:
        return self.store_dir / "flows"

    @property
    def staging_dir(self) -> Path:
        return self.store_dir / ".staging"

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.sqlite"

    @property
    def intel_dir(self) -> Path:
        return self.root / "intel"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @contextlib.contextmanager
    def write_lock(self, wait: bool = True) -> Iterator[None]:
        """Exclusive lock for anything that changes the store (ingest, collect)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            flags = fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB)
            try:
                fcntl.flock(fh.fileno(), flags)
            except BlockingIOError:
                raise StoreError(
                    f"workspace {self.root} is being written by another rogueflow process"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
