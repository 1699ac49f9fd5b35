"""The one mailbox model (`core.mailbox`): what each login may do in each folder, reserved names, and
every door's words for it (REST permissions, SFTP modes, FTP `perm` facts) derived from that one table."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from api.space import Space
from core.config import get_settings
from core.endpoints.base import ConfigError
from core.mailbox import layout
from core.mailbox.access import HOME, RULES, Access, Action, FolderRule, LoginKind, access_of
from core.mailbox.view import file_mode, folder_mode
from core.models import Partner
from mailboxes.ftp.filesystem import perm_fact

LIST, READ, WRITE, DELETE = Action.LIST, Action.READ, Action.WRITE, Action.DELETE


@dataclass
class Login:
    can_delete_downloads: bool


@pytest.mark.parametrize(
    ("can_delete", "expected"),
    [
        (True, {HOME: {LIST}, "download": {LIST, READ, DELETE}, "upload": {LIST, WRITE}}),
        (False, {HOME: {LIST}, "download": {LIST, READ}, "upload": {LIST, WRITE}}),
    ],
)
def test_what_a_partner_may_do_in_each_folder(can_delete: bool, expected: dict[str, set[Action]]) -> None:
    access = access_of(Login(can_delete), LoginKind.PARTNER)
    assert {folder: set(actions) for folder, actions in access.actions.items()} == expected
    assert access.folders == ("download", "upload") == layout.FOLDERS  # listing order
    assert access.allows("download", DELETE) is can_delete
    assert access.first_allowing(WRITE) == "upload" and access.first_allowing(READ) == "download"


def test_unknown_folders_allow_nothing_and_a_missing_flag_grants_nothing() -> None:
    access = access_of(object())  # a login without `can_delete_downloads`
    assert not access.allows("download", DELETE)
    assert access.allowed("outbox") == frozenset() and access.allowed(".store") == frozenset()


def test_a_new_kind_of_login_is_a_row_of_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """An account user seeing a B2B outbox, say: a rule in the table, no code in any door."""
    outbox = "outbox-reader"
    rows = (FolderRule(HOME, frozenset({LIST})), FolderRule("outbox", frozenset({LIST, READ})))
    monkeypatch.setattr("core.mailbox.access.RULES", {**RULES, outbox: rows})
    access = access_of(object(), outbox)  # type: ignore[arg-type]
    assert access.folders == ("outbox",)
    assert perm_fact(access, "/outbox") == "el" and perm_fact(access, "/outbox/x.edi") == "r"
    assert folder_mode(access.allowed("outbox")) == 0o555 and file_mode(access.allowed("outbox")) == 0o644


def test_hidden_names_are_reserved_but_another_tradelanes_temporary_name_may_be_uploaded() -> None:
    access = access_of(Login(True))
    temp = ".tradelane-tmp-0123456789ab-po.xml"
    assert access.may_name("upload", "po.xml") and access.may_name("download", "po.xml")
    for name in (".store", ".tmp", ".partial", ".removed", ".archive", ".hidden"):
        assert layout.is_hidden(name)
        assert not access.may_name("upload", name) and not access.may_name("download", name)
    assert access.may_name("upload", temp)  # where the partner writes
    assert not access.may_name("download", temp)
    assert layout.carried_name(temp) == "0123456789ab-po.xml"
    assert {".store", ".tmp", ".partial", ".peer", ".removed", ".archive"} == layout.RESERVED_DIRS


@pytest.mark.parametrize(
    ("name", "in_progress"),
    [
        ("po.xml.part", True),
        ("po.xml.PARTIAL", True),
        ("po.xml.filepart", True),
        ("po.xml.tmp", True),
        ("po.xml.0123456789ab.tradelane.part", True),
        (".tradelane-tmp-0123456789ab-po.xml", True),
        ("po.xml", False),
        ("part", False),
    ],
)
def test_in_progress_names(name: str, in_progress: bool) -> None:
    assert layout.is_in_progress_name(name) is in_progress


def test_where_a_partners_places_are() -> None:
    root = get_settings().mailbox_root
    assert layout.home("home", "acme") == root / "home" / "acme"
    assert layout.home_relative("home", "acme") == "home/acme"
    assert layout.staging("home", "acme") == root / ".partial" / "home" / "acme"
    assert layout.temp_dir() == root / ".tmp" and layout.removed_dir() == root / ".removed"
    for bad in (".acme", "a/b", "..", "", "a/../b"):
        with pytest.raises(ConfigError):
            layout.home("home", bad)
    assert layout.DELIVERY_PATH == "download/{name}" and layout.SOURCE_FOLDER == "upload"


@pytest.mark.parametrize("can_delete", [True, False])
def test_every_door_says_the_same_thing(can_delete: bool) -> None:
    """REST's permission words, SFTP's modes and FTP's MLSD facts, all from one `Access`."""
    partner = Partner(id=1, account_id=1, name="acme", can_delete_downloads=can_delete)
    space = Space(partner)
    access: Access = space.access
    delete = ["delete"] if can_delete else []
    assert [f.name for f in space.children(space.home)] == ["download", "upload"]
    assert space.folder_permissions(space.home) == ["list"]
    assert space.folder_permissions(space.upload) == ["upload"]
    assert space.folder_permissions(space.download) == ["download", *delete]
    assert space.file_permissions(space.upload) == []
    assert space.file_permissions(space.download) == ["download", *delete]
    assert space.can_upload(space.upload) and not space.can_upload(space.download)
    assert space.can_download(space.download) and not space.can_download(space.upload)
    assert space.can_delete(space.download) is can_delete and not space.can_delete(space.upload)

    assert [folder_mode(access.allowed(f)) for f in (HOME, "upload", "download")] == [
        0o555,
        0o755,
        0o755 if can_delete else 0o555,
    ]
    assert file_mode(access.allowed("upload")) == 0o200  # an unfinished upload: write to resume
    assert file_mode(access.allowed("download")) == 0o644

    assert perm_fact(access, "/") == "el"
    assert perm_fact(access, "/upload") == "elc" and perm_fact(access, "/upload/x") == "aw"
    assert perm_fact(access, "/download") == ("elp" if can_delete else "el")
    assert perm_fact(access, "/download/x") == ("rd" if can_delete else "r")
