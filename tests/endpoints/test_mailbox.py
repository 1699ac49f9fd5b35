"""The mailbox endpoint: the contract, plus where mailbox files and temporary files live."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import get_settings
from core.endpoints.base import ConfigError, Endpoint
from core.endpoints.file import TEMP_PREFIX, FileWriteStream
from core.endpoints.mailbox import MailboxEndpoint, mailbox_root_for, mailbox_temp_dir
from core.endpoints.registry import open_endpoint
from tests.endpoints.contract import EndpointContract, get, paths, put


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh TRADELANE_HOME; settings are cached, so the cache is cleared on both sides."""
    monkeypatch.setenv("TRADELANE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


class TestMailboxEndpoint(EndpointContract):
    @pytest.fixture
    def endpoint(self, home: Path) -> Iterator[Endpoint]:
        with MailboxEndpoint({"partner": "acme"}) as endpoint:
            yield endpoint


def test_root_layout(home: Path) -> None:
    assert mailbox_root_for("home", "acme") == home / "mailboxes" / "home" / "acme"
    assert MailboxEndpoint({"partner": "acme"}).root == home / "mailboxes" / "home" / "acme"
    other = MailboxEndpoint({"partner": "acme", "account": "globex"})
    assert other.root == home / "mailboxes" / "globex" / "acme"


def test_registry_opens_mailbox(home: Path) -> None:
    assert isinstance(open_endpoint("mailbox", {"partner": "acme"}), MailboxEndpoint)


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".tmp", ".hidden", "a\x00b", "/abs", "./a", 3])
def test_bad_names_are_refused(home: Path, name: object) -> None:
    with pytest.raises(ConfigError):
        MailboxEndpoint({"partner": name})
    with pytest.raises(ConfigError):
        MailboxEndpoint({"partner": "acme", "account": name})


def test_partner_is_required(home: Path) -> None:
    with pytest.raises(ConfigError):
        MailboxEndpoint({})


def test_writes_are_staged_outside_every_mailbox(home: Path) -> None:
    endpoint = MailboxEndpoint({"partner": "acme"})
    stream = endpoint.open_write("upload/po.json")
    assert isinstance(stream, FileWriteStream)
    stream.write(b"{}")
    assert stream.temp.parent == mailbox_temp_dir() == home / "mailboxes" / ".tmp"
    assert stream.temp.name.startswith(TEMP_PREFIX)
    assert not any(endpoint.root.rglob("*.json"))
    assert paths(endpoint, "upload") == []
    stream.commit()
    assert not any(mailbox_temp_dir().iterdir())
    assert (endpoint.root / "upload" / "po.json").read_bytes() == b"{}"


def test_failed_write_leaves_no_temp_file(home: Path) -> None:
    endpoint = MailboxEndpoint({"partner": "acme"})
    with pytest.raises(RuntimeError), endpoint.open_write("upload/x.bin") as stream:
        stream.write(b"x" * 10_000)
        raise RuntimeError
    assert not any(mailbox_temp_dir().iterdir())


def test_partners_are_isolated(home: Path) -> None:
    acme = MailboxEndpoint({"partner": "acme"})
    globex = MailboxEndpoint({"partner": "globex"})
    put(acme, "download/invoice.txt", b"for acme")
    assert paths(globex, "download") == []
    assert paths(acme, "download") == ["download/invoice.txt"]
    assert get(acme, "download/invoice.txt") == b"for acme"


def test_new_partner_lists_empty(home: Path) -> None:
    endpoint = MailboxEndpoint({"partner": "newcomer"})
    assert paths(endpoint) == []
    endpoint.check()


def test_uri(home: Path) -> None:
    endpoint = MailboxEndpoint({"partner": "acme"})
    assert endpoint.uri("upload/po 850.json") == "mailbox://acme/upload/po 850.json"
