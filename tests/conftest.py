"""Shared fixtures: hermetic environment, the shared real data, fresh workspaces."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from rogueflow import settings

# Time limits flake on a loaded 2-core machine; example counts bound the work instead.
hypothesis_settings.register_profile(
    "rogueflow", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("rogueflow")

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ROGUEFLOW_SHARED_DATA", ROOT.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library reads these; tests must not inherit them from the caller."""
    for name in settings.ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def shared() -> Path:
    """../shared/data; skipped when absent (CI always has it)."""
    if not SHARED.is_dir():
        if IN_CI:
            pytest.fail(f"{SHARED} is missing in CI")
        pytest.skip(f"{SHARED} not present (tests that read shared real data)")
    return SHARED


def require_tool(name: str, package: str) -> str:
    """Path of an external binary; skip locally, fail in CI, when it is missing."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not installed (apt-get install {package})"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def workspace(tmp_path: Path):  # type: ignore[no-untyped-def]
    from rogueflow.workspace import Workspace

    return Workspace(tmp_path / "ws")


class DemoRun:
    """A small demo generated, ingested and reported once per test session."""

    def __init__(self, root: Path, scenario: str) -> None:
        import json

        from rogueflow.demo import run_demo
        from rogueflow.workspace import Workspace

        self.ws = Workspace(root / "ws")
        self.result = run_demo(
            self.ws, scale="small", seed=20170517, out=None, quiet=True, scenario=scenario
        )
        self.input = self.result.input_dir
        self.truth = self.result.truth
        assert self.result.report is not None
        self.report_dir = self.result.report.out_dir
        self.doc = json.loads((self.report_dir / "findings.json").read_text())
        self.findings = {f["id"]: f for f in self.doc["findings"]}


@pytest.fixture(scope="session")
def demo_reference(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The reference scenario (the behaviours of the reference case), small scale."""
    return DemoRun(tmp_path_factory.mktemp("demo-reference"), "reference")


@pytest.fixture(scope="session")
def demo_control(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The control scenario (none of the behaviours), small scale."""
    return DemoRun(tmp_path_factory.mktemp("demo-control"), "control")
