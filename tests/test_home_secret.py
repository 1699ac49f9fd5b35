"""Secrets generated into the home (secret.key, prefect-auth): one value however many start at once, 0600."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from core.crypto import home_secret
from tests.isolation import isolated_home


def test_processes_starting_together_keep_one_secret(tmp_path: Path) -> None:
    with isolated_home(tmp_path / "home") as home:
        start = threading.Barrier(8)
        seen: list[bytes] = []

        def race() -> None:
            start.wait()
            seen.append(home_secret("race.key", lambda: os.urandom(16).hex().encode()))

        threads = [threading.Thread(target=race) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(seen) == 8 and len(set(seen)) == 1 and len(seen[0]) == 32
        assert stat.S_IMODE((home / "race.key").stat().st_mode) == 0o600
        assert sorted(p.name for p in home.iterdir()) == ["race.key"]  # no temporary file left
        assert home_secret("race.key", lambda: b"never used") == seen[0]
