"""Pieces shared by every command module: the context object, error handling, options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from rogueflow import settings
from rogueflow.errors import RogueflowError
from rogueflow.workspace import Workspace

F = TypeVar("F", bound=Callable[..., Any])


class Ctx:
    def __init__(self, workspace: str | None, quiet: bool) -> None:
        self._workspace_flag = workspace
        self.quiet = quiet
        self._ws: Workspace | None = None

    @property
    def ws(self) -> Workspace:
        if self._ws is None:
            self._ws = Workspace(settings.resolve("workspace", self._workspace_flag))
        return self._ws

    def say(self, msg: str) -> None:
        if not self.quiet:
            click.echo(msg, err=True)


pass_ctx = click.make_pass_decorator(Ctx)


def handle_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RogueflowError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def territory_options(fn: F) -> F:
    """--territory / --territory-file, shared by every command that needs a profile."""
    fn = click.option(
        "--territory-file",
        type=click.Path(dir_okay=False),
        default=None,
        help="A territory profile (TOML) instead of a built-in one.",
    )(fn)
    fn = click.option(
        "--territory",
        "-t",
        default=None,
        metavar="CODE",
        help=f"Territory code ({settings.BY_NAME['territory'].help.split('(')[0].strip()}).",
    )(fn)
    return fn


def window_options(fn: F) -> F:
    fn = click.option(
        "--to",
        "end",
        type=click.DateTime(["%Y-%m-%d"]),
        default=None,
        help="Last day (inclusive), UTC.",
    )(fn)
    fn = click.option(
        "--from", "start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First day, UTC."
    )(fn)
    return fn


def engine_options(fn: F) -> F:
    """--engine / --spark-master, for the commands that run SQL (help from the settings)."""
    from rogueflow.analyze.engine import ENGINES

    fn = click.option(
        "--spark-master",
        default=None,
        metavar="URL",
        help=f"{settings.BY_NAME['spark_master'].help} [env ROGUEFLOW_SPARK_MASTER]",
    )(fn)
    fn = click.option(
        "--engine",
        type=click.Choice(ENGINES),
        default=None,
        help=f"{settings.BY_NAME['engine'].help} [env ROGUEFLOW_ENGINE]",
    )(fn)
    return fn
