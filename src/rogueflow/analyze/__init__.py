"""Analyses over a territory scope: volume and growth, pattern of life (see ``base``)."""

from rogueflow.analyze.base import Analysis, AnalysisOutput, builtin_analyses
from rogueflow.analyze.context import Scope, load_profile, open_scope, parse_baseline

__all__ = [
    "Analysis",
    "AnalysisOutput",
    "Scope",
    "builtin_analyses",
    "load_profile",
    "open_scope",
    "parse_baseline",
]
