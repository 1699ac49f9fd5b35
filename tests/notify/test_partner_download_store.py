"""Which files a partner's "waiting in download/" notice names (in-process, a throwaway home):
those a data flow delivered into that partner's mailbox within the window, never another
partner's (of this account or another), never one that was not delivered, and nothing at all
for a partner that did not ask or a destination that is no mailbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.db import session_scope
from core.models import TransferState
from core.notify import partner_notices
from tests.isolation import run_cli
from tests.notify.partner_rows import PASSWORD, carried, flow, partner

AT = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
DELIVERED = TransferState.delivered


def test_the_window_names_only_this_partners_delivered_files(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_cli("account", "add", "far", "--email", "boss@far.example", "--password", PASSWORD)
    partner("sender")
    told = ("--contact-email", "ops@told.test,edi@told.test", "--tell-downloads")
    partner("told", *told)
    partner("other", "--contact-email", "ops@other.test", "--tell-downloads")
    partner("quiet", "--contact-email", "ops@quiet.test", "--tell-rejected")
    partner("farsender", account="far")
    partner("fartold", "--contact-email", "ops@far.test", "--tell-downloads", account="far")
    run_cli("endpoint", "add", "shelf", "--type", "file", "--path", str(tmp_path / "shelf"))
    to_told, to_other = flow("to-told", "sender", "mailbox:told"), flow("to-other", "sender", "mailbox:other")
    to_quiet, to_shelf = flow("to-quiet", "sender", "mailbox:quiet"), flow("to-shelf", "sender", "shelf")
    to_far = flow("to-far", "farsender", "mailbox:fartold", account="far")

    first = carried(to_told, "a.edi", DELIVERED, AT, destination="mailbox://told/download/a.edi")
    carried(
        to_told, "b.edi", DELIVERED, AT + timedelta(seconds=3), destination="mailbox://told/download/in/b.edi"
    )
    carried(to_told, "late.edi", DELIVERED, AT + timedelta(seconds=30))
    carried(to_told, "broken.edi", TransferState.failed, AT + timedelta(seconds=1))
    others = carried(to_other, "other.edi", DELIVERED, AT + timedelta(seconds=2))
    far = carried(to_far, "far.edi", DELIVERED, AT + timedelta(seconds=2))
    quiet = carried(to_quiet, "quiet.edi", DELIVERED, AT)
    shelved = carried(to_shelf, "shelved.edi", DELIVERED, AT)
    failed = carried(to_told, "failed.edi", TransferState.failed, AT)

    with session_scope() as session:
        notice = partner_notices.downloads(
            session, first, AT - timedelta(seconds=1), AT + timedelta(seconds=10)
        )
        assert notice is not None
        assert notice.recipients == ["ops@told.test", "edi@told.test"]
        assert notice.subject == "[home] 2 files are waiting for you in download/"
        assert "* download/a.edi (9 bytes, delivered 2026-12-05 09:00:00 UTC)" in notice.body
        assert "* download/in/b.edi (9 bytes, delivered 2026-12-05 09:00:03 UTC)" in notice.body
        for elsewhere in ("late.edi", "broken.edi", "other.edi", "far.edi", "quiet.edi", "shelved.edi"):
            assert elsewhere not in notice.body
        alone = partner_notices.downloads(session, first)  # no digest: the one file
        assert alone is not None and alone.subject == "[home] download/a.edi is waiting for you"

        other = partner_notices.downloads(
            session, others, AT - timedelta(seconds=1), AT + timedelta(seconds=10)
        )
        assert other is not None and other.recipients == ["ops@other.test"]
        assert "other.edi" in other.body and "a.edi" not in other.body
        far_notice = partner_notices.downloads(
            session, far, AT - timedelta(seconds=1), AT + timedelta(seconds=10)
        )
        assert far_notice is not None and far_notice.recipients == ["ops@far.test"]
        assert (
            "[far]" in far_notice.subject and "far.edi" in far_notice.body and "a.edi" not in far_notice.body
        )
        # Not asked (contacts told of rejections only), not a mailbox, not delivered: nothing to tell.
        assert partner_notices.downloads(session, quiet) is None
        assert partner_notices.downloads(session, shelved) is None
        assert partner_notices.downloads(session, failed) is None
        # A window of more files than a notice lists: the first ones by name, then how many more.
        monkeypatch.setattr(partner_notices, "DIGEST_LISTED", 1)
        capped = partner_notices.downloads(
            session, first, AT - timedelta(seconds=1), AT + timedelta(seconds=10)
        )
        assert capped is not None and capped.subject == "[home] 2 files are waiting for you in download/"
        assert (
            "download/a.edi" in capped.body and "b.edi" not in capped.body and "… and 1 more" in capped.body
        )
    run_cli("partner", "set", "told", "--no-tell-downloads")
    with session_scope() as session:
        assert partner_notices.downloads(session, first) is None
