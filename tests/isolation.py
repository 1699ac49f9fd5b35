"""Point core's cached settings, engine and key at a throwaway home for one test (defined once, in
tradelane.testing, which template authors' tests use too)."""

from __future__ import annotations

from tradelane.testing import clear_caches, isolated_home

__all__ = ["clear_caches", "isolated_home"]
