"""Docs checked against code: generated pages, every command, option, setting, reader."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from rogueflow import settings
from rogueflow.cli.main import cli
from rogueflow.ingest import READERS
from rogueflow.ingest.mapping import PRESETS
from rogueflow.territory import builtin_codes
from rogueflow.territory.profile import _KNOWN_KEYS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _commands(
    group: click.Command, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, click.Command]]:
    if isinstance(group, click.Group):
        for name, cmd in sorted(group.commands.items()):
            yield " ".join((*prefix, name)), cmd
            yield from _commands(cmd, (*prefix, name))


COMMANDS = list(_commands(cli))


def _all_docs_text() -> str:
    parts = [p.read_text() for p in sorted(DOCS.glob("*.md"))]
    readme = ROOT / "README.md"
    if readme.exists():
        parts.append(readme.read_text())
    return "\n".join(parts)


def _generated(args: list[str], tmp_path: Path) -> str:
    result = CliRunner().invoke(cli, ["-w", str(tmp_path / "ws"), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_schema_page_is_generated(tmp_path: Path) -> None:
    assert (DOCS / "schema.md").read_text() == _generated(["schema", "--markdown"], tmp_path), (
        "regenerate: rogueflow schema --markdown > docs/schema.md"
    )


def test_settings_page_is_generated(tmp_path: Path) -> None:
    assert (DOCS / "settings.md").read_text() == _generated(["settings", "--markdown"], tmp_path), (
        "regenerate: rogueflow settings --markdown > docs/settings.md"
    )


def test_every_setting_is_documented() -> None:
    text = (DOCS / "settings.md").read_text()
    for s in settings.SETTINGS:
        assert f"`{s.name}`" in text
        if s.env:
            assert f"`{s.env}`" in text


def test_there_are_commands() -> None:
    assert {"ingest", "query", "territories", "sources", "schema", "settings"} <= {
        name for name, _ in COMMANDS
    }


@pytest.mark.parametrize(("name", "cmd"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_is_mentioned(name: str, cmd: click.Command) -> None:
    assert f"rogueflow {name}" in _all_docs_text(), f"`rogueflow {name}` is not documented"


def _section(name: str) -> str:
    text = (DOCS / "cli.md").read_text()
    heading = f"## `rogueflow {name}`"
    assert heading in text, f"docs/cli.md has no section {heading}"
    body = text.split(heading, 1)[1]
    return re.split(r"\n## ", body, maxsplit=1)[0]


@pytest.mark.parametrize(("name", "cmd"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_cli_page_documents_every_option(name: str, cmd: click.Command) -> None:
    section = _section(name)
    for param in cmd.params:
        if isinstance(param, click.Option):
            for flag in (*param.opts, *param.secondary_opts):
                assert f"`{flag}" in section or f" {flag}" in section, (
                    f"docs/cli.md: {flag} of `rogueflow {name}` is not documented"
                )
            if isinstance(param.type, click.Choice):
                for choice in param.type.choices:
                    assert str(choice) in section, f"docs/cli.md: {name} {param.opts[0]} {choice}"
        elif isinstance(param, click.Argument):
            assert param.make_metavar(click.Context(cmd)).rstrip(".") in section


def test_cli_page_documents_global_options() -> None:
    text = (DOCS / "cli.md").read_text().split("## `rogueflow ", 1)[0]
    for param in cli.params:
        for flag in param.opts:
            assert f"`{flag}" in text, f"docs/cli.md: global option {flag}"


@pytest.mark.parametrize("reader", [r.name for r in READERS])
def test_every_reader_is_documented(reader: str) -> None:
    assert f"`{reader}`" in (DOCS / "ingest.md").read_text()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_is_documented(preset: str) -> None:
    text = (DOCS / "ingest.md").read_text()
    assert f"`{preset}`" in text
    for source_column in PRESETS[preset].values():
        if preset != "rogueflow":
            assert source_column in text, f"docs/ingest.md: {preset} column {source_column}"


def test_territory_page_documents_keys_and_profiles() -> None:
    text = (DOCS / "territories.md").read_text()
    for key in sorted(_KNOWN_KEYS):
        assert f"`{key}`" in text, f"docs/territories.md: key {key}"
    for code in builtin_codes():
        assert f"`{code}`" in text, f"docs/territories.md: profile {code}"
