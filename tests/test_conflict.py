"""The conflict policy's pure parts: the numbered names `rename` takes, and the setting's checks."""

from __future__ import annotations

import itertools
import re

import pytest

from core.endpoints.base import ConfigError, OnConflict
from core.endpoints.conflict import MAX_CANDIDATES, candidates, default_for, effective, parse, setting_for


def first(path: str, n: int = 4) -> list[str]:
    return list(itertools.islice(candidates(path), n))


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("invoice_812.edi", ["invoice_812.edi", "invoice_812 (2).edi", "invoice_812 (3).edi"]),
        ("out/in/po.json", ["out/in/po.json", "out/in/po (2).json", "out/in/po (3).json"]),
        ("README", ["README", "README (2)", "README (3)"]),
        ("data.tar.gz", ["data.tar.gz", "data.tar (2).gz", "data.tar (3).gz"]),
        ("x (2).edi", ["x (2).edi", "x (2) (2).edi", "x (2) (3).edi"]),
    ],
)
def test_numbered_names_go_before_the_last_extension(path: str, names: list[str]) -> None:
    assert first(path, 3) == names


def test_numbered_names_of_a_255_byte_name_still_fit_255_bytes() -> None:
    name = "é" * 125 + "x.edi"
    assert len(name.encode()) == 255
    second, tenth = first(name, 2)[1], list(candidates(name))[9]
    assert second.endswith(" (2).edi") and tenth.endswith(" (10).edi")
    assert all(len(n.encode()) <= 255 for n in list(candidates(name))[:20])
    second.encode().decode()  # never cut inside a character


def test_a_dot_far_from_the_end_is_not_an_extension() -> None:
    name = "a." + "b" * 200
    assert first(name, 2)[1] == name[: 255 - 4] + " (2)"


def test_rename_counts_up_to_a_bound() -> None:
    names = list(candidates("x.txt"))
    assert len(names) == MAX_CANDIDATES and names[-1] == f"x ({MAX_CANDIDATES}).txt"


def test_the_setting_is_one_of_three() -> None:
    assert parse(" Rename ") is OnConflict.rename
    with pytest.raises(ConfigError, match=re.escape("one of rename|overwrite|fail, not 'skip'")):
        parse("skip")


def test_defaults_by_destination_type() -> None:
    for kind in ("file", "mailbox", "sftp", "ftp", "s3", "azure"):
        assert default_for(kind) is OnConflict.rename
    for kind in ("http", "email", "as2"):
        assert default_for(kind) is None
        assert effective(None, kind) is OnConflict.overwrite  # a new message each time
        with pytest.raises(ConfigError, match="does not apply"):
            setting_for("rename", kind)
    assert effective("fail", "s3") is OnConflict.fail
    assert setting_for(None, "file") is None
