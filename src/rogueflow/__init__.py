"""rogueflow: network telemetry to sanctions-evasion intelligence about a watched state."""

from rogueflow.errors import (
    ConfigError,
    InputError,
    MissingDependency,
    RogueflowError,
    StoreError,
    UnknownFormat,
)
from rogueflow.schema import FLOW_SCHEMA, SCHEMA_VERSION
from rogueflow.workspace import Workspace

__version__ = "0.1.0"

__all__ = [
    "FLOW_SCHEMA",
    "SCHEMA_VERSION",
    "ConfigError",
    "InputError",
    "MissingDependency",
    "RogueflowError",
    "StoreError",
    "UnknownFormat",
    "Workspace",
    "__version__",
]
