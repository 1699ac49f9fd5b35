"""The ledger of the portal's resumable uploads (core/web_uploads.py): bound to the login, one open
upload per name, expiry after the staging's retention (with an injected clock)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core import web_uploads
from core.db import session_scope
from core.errors import Conflict, Gone, NotFound
from core.models import WebUploadState, utcnow
from tests.mailboxes.conftest import MakePartner


def test_an_upload_is_its_logins_alone(make_partner: MakePartner) -> None:
    owner, other = make_partner().user(), make_partner().user()
    with session_scope() as session:
        row, superseded = web_uploads.create(session, owner, "upload", "a.csv", 10)
        assert superseded is None and len(row.id) == 32 and row.state == WebUploadState.open
        upload_id = row.id
    with session_scope() as session:
        assert web_uploads.get(session, upload_id, owner).name == "a.csv"
        with pytest.raises(NotFound):
            web_uploads.get(session, upload_id, other)  # never "forbidden": not even its existence
        with pytest.raises(NotFound):
            web_uploads.get(session, "f" * 32, owner)
        web_uploads.cancel(session, upload_id)
    with session_scope() as session, pytest.raises(NotFound):
        web_uploads.get(session, upload_id, owner)


def test_one_open_upload_per_name_a_stale_one_is_superseded(make_partner: MakePartner) -> None:
    login = make_partner().user()
    start = utcnow()
    with session_scope() as session:
        first, _ = web_uploads.create(session, login, "upload", "po.json", 5, now=start)
        first_id = first.id
    with session_scope() as session, pytest.raises(Conflict, match="already being uploaded"):
        web_uploads.create(session, login, "upload", "po.json", 5, now=start + timedelta(seconds=10))
    later = start + timedelta(seconds=web_uploads.BUSY_SECONDS + 1)
    with session_scope() as session:
        second, superseded = web_uploads.create(session, login, "upload", "po.json", 5, now=later)
        assert superseded is not None and superseded.id == first_id
        assert second.id != first_id
    with session_scope() as session, pytest.raises(NotFound):
        web_uploads.get(session, first_id, login)


def test_an_open_upload_expires_with_the_staging_retention(make_partner: MakePartner) -> None:
    login = make_partner().user()
    start = utcnow()
    with session_scope() as session:
        row, _ = web_uploads.create(session, login, "upload", "late.bin", 5, now=start)
        upload_id = row.id
        web_uploads.record_patch(session, upload_id, 3, now=start)
    with session_scope() as session:
        assert web_uploads.get(session, upload_id, login, now=start + timedelta(hours=23)).received == 3
        with pytest.raises(Gone, match="expired"):
            web_uploads.get(session, upload_id, login, now=start + web_uploads.RETENTION)
        web_uploads.finish(session, upload_id, None)
    with session_scope() as session:  # a finished one answers for good (a late retry sees it done)
        done = web_uploads.get(session, upload_id, login, now=start + timedelta(days=2))
        assert done.state == WebUploadState.done and done.patches == 1
