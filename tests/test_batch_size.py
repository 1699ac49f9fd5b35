"""How many files one run carries at most: TRADELANE_DISPATCH_BATCH_SIZE when set; unset, 200 while
at most one worker is online on the pool (nothing to share a burst with) and 50 with more, or
when Prefect could not say (a burst then makes runs enough to share among the workers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import BATCH_ALONE, BATCH_SHARED, Settings


def test_unset_it_follows_the_workers_online(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRADELANE_DISPATCH_BATCH_SIZE", raising=False)
    settings = Settings(home=tmp_path)
    assert (BATCH_ALONE, BATCH_SHARED) == (200, 50)
    assert [settings.batch_size(n) for n in (0, 1, 2, 4, None)] == [200, 200, 50, 50, 50]


def test_set_it_is_used_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADELANE_DISPATCH_BATCH_SIZE", "7")
    settings = Settings(home=tmp_path)
    assert [settings.batch_size(n) for n in (0, 1, 2, None)] == [7, 7, 7, 7]
    monkeypatch.setenv("TRADELANE_DISPATCH_BATCH_SIZE", "0")
    with pytest.raises(ValueError, match="greater than 0"):
        Settings(home=tmp_path)
