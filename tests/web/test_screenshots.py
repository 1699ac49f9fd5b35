"""The README's pictures (`make screenshots`) exist, are PNGs, and have the sizes it promises."""

from __future__ import annotations

import re
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_every_picture_the_readme_shows_exists_at_its_size() -> None:
    named = re.findall(r"!\[[^\]]*\]\((docs/screenshots/[^)]+\.png)\)", (ROOT / "README.md").read_text())
    assert len(named) >= 7
    for name in named:
        expected = (390, 844) if name.endswith("-phone.png") else (1280, 800)
        assert png_size(ROOT / name) == expected, name
