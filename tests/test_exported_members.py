"""The curated public API: ``rogueflow.__all__`` lists exactly the public names (httpx style)."""

from __future__ import annotations

import types

import rogueflow


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then CamelCase classes, then everything else
    if name.isupper():
        return 0, name
    if name[0].isupper():
        return 1, name
    return 2, name


def test_all_is_sorted() -> None:
    assert rogueflow.__all__ == sorted(rogueflow.__all__, key=_isort_key)


def test_all_imports_are_exported() -> None:
    # Submodules become attributes of the package once imported anywhere; they are
    # reached by their dotted names, not re-exported.
    included_private_members = ["__version__"]
    public = sorted(
        (
            name
            for name, value in vars(rogueflow).items()
            if (not name.startswith("_") or name in included_private_members)
            and not isinstance(value, types.ModuleType)
        ),
        key=_isort_key,
    )
    assert rogueflow.__all__ == public


def test_exports_resolve() -> None:
    for name in rogueflow.__all__:
        assert getattr(rogueflow, name) is not None
    assert isinstance(rogueflow.__version__, str)
