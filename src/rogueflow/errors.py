"""The errors rogueflow raises, one small hierarchy.

    RogueflowError            anything the tool reports to the user
    ├── InputError            a file or value that cannot be read; names where
    │   └── UnknownFormat     no reader recognises the file
    ├── ConfigError           a setting, flag, profile or workspace that is wrong
    ├── StoreError            the flow store or its catalog is unusable
    └── MissingDependency     an optional package or external binary is absent

Every message says what is wrong, where, and what to do next.
"""

from __future__ import annotations

from pathlib import Path


class RogueflowError(Exception):
    """Base class: the CLI prints these without a traceback."""


class InputError(RogueflowError):
    """Bad input. ``where`` is a position such as ``line 12`` or ``byte 4096``."""

    def __init__(self, path: str | Path | None, where: str | None, problem: str) -> None:
        self.path = str(path) if path is not None else None
        self.where = where
        self.problem = problem
        location = self.path or "<input>"
        if where:
            location = f"{location}, {where}"
        super().__init__(f"{location}: {problem}")


class UnknownFormat(InputError):
    """No reader claims the file; the user should pass ``--format``."""


class ConfigError(RogueflowError):
    """A configuration value, profile or flag is invalid."""


class StoreError(RogueflowError):
    """The workspace store or catalog cannot be used as asked."""


class MissingDependency(RogueflowError):
    """An optional dependency is not installed; the message names the install command."""

    def __init__(self, what: str, install: str) -> None:
        self.what = what
        self.install = install
        super().__init__(f"{what} is not available; install it with: {install}")
