"""The cross-instance settings on the accepting side, in-process (no second instance needed: each is
refused before a request leaves): TRADELANE_PUBLIC_URL is required, and TRADELANE_PEER_ALLOW_PRIVATE
decides whether a link on a loopback address may be called at all. TRADELANE_PEER_CHECK_SECONDS is
used by the state checks that tests/b2b/test_peers_up.py sees repair a lost revoke notice.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.b2b import tokens
from core.b2b.worker import notice_delay
from core.config import Settings
from tests.b2b.helpers import dump, run
from tests.isolation import clear_caches
from tests.servers import free_port


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, b2b: object) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch
    clear_caches()


def accept(link: str) -> str:
    return " ".join(
        run("connect", "accept", link, "--name", "from-far", "--dest", "lake:in/acme", ok=False).split()
    )


def test_defaults() -> None:
    settings = Settings()
    assert settings.peer_check_seconds == 30.0 and settings.peer_allow_private is False
    assert [notice_delay(n) for n in range(1, 7)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]


def test_accepting_across_needs_our_public_url(settings_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings_env.delenv("TRADELANE_PUBLIC_URL", raising=False)
    clear_caches()
    before = dump()
    said = accept(tokens.link("https://files.acme.example", tokens.new_token()))
    assert "400: set TRADELANE_PUBLIC_URL to the address the other instance can reach this one at" in said
    assert dump() == before


def test_a_link_on_a_private_address_is_refused_unless_allowed(settings_env: pytest.MonkeyPatch) -> None:
    settings_env.setenv("TRADELANE_PUBLIC_URL", "https://files.globex.example")
    settings_env.delenv("TRADELANE_PEER_ALLOW_PRIVATE", raising=False)
    clear_caches()
    port = free_port()
    link = tokens.link(f"http://127.0.0.1:{port}", tokens.new_token())
    before = dump()
    said = accept(link)
    assert "400: http://127.0.0.1" in said and "a loopback address (not public)" in said, said
    assert "(TRADELANE_PEER_ALLOW_PRIVATE)" in said
    assert dump() == before

    # Allowed: the call is made (nothing listens there, so the peer does not answer), nothing stored.
    settings_env.setenv("TRADELANE_PEER_ALLOW_PRIVATE", "true")
    clear_caches()
    with socket.socket() as probe:  # the port is still free: a connection is refused
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    said = accept(link)
    assert f"503: the other instance at 127.0.0.1:{port} did not answer" in said, said
    assert dump() == before
