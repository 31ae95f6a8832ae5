"""The `core` package's public module list."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import core

EXPECTED = [
    "admission",
    "api_keys",
    "asgi_serving",
    "catalogue",
    "catalogue_store",
    "errors",
    "heap",
    "internal_auth",
    "internal_headers",
    "migrate",
    "pg_listen",
    "postgres_text",
    "pricing",
    "quota",
    "service_logging",
    "settings",
    "unix_sockets",
    "usage",
]


def test_all_is_pinned_and_sorted() -> None:
    assert core.__all__ == EXPECTED
    assert sorted(core.__all__) == core.__all__


@pytest.mark.parametrize("name", EXPECTED)
def test_every_name_is_an_importable_submodule(name: str) -> None:
    module = importlib.import_module(f"core.{name}")
    assert isinstance(module, types.ModuleType)
    assert module.__name__ == f"core.{name}"
    assert module.__spec__ is not None
    assert module.__spec__.parent == "core"


def test_all_names_only_real_modules() -> None:
    modules = {m.name for m in pkgutil.iter_modules(core.__path__) if not m.ispkg}
    assert set(EXPECTED) <= modules


def test_all_lists_every_plain_module() -> None:
    modules = {m.name for m in pkgutil.iter_modules(core.__path__) if not m.ispkg}
    assert modules == set(core.__all__)
