"""Folders account users may put `file` endpoints in (core/endpoints/file_roots.py): for tests that
add one through the admin API or the console."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from core.endpoints.file_roots import roots_for


def allowed_folder(account: str, name: str = "") -> Path:
    """A new folder inside the account's first allowed root of this process's home."""
    folder = roots_for(account)[0] / (name or f"t-{secrets.token_hex(4)}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def home_files() -> Path:
    """A fresh folder the home account's users may use (what `tmp_path` is for an operator)."""
    return allowed_folder("home")
