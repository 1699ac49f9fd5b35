"""transfers.page: keyset pages of the history (no gap, no duplicate, new transfers never shift a
page), the filters `tradelane transfers` has plus the Prefect run, errors scrubbed; audit's keyset."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session

from core import audit, dataflows, partners, transfers
from core.endpoints import rows as endpoint_rows
from core.errors import Invalid
from core.models import DataFlow, Endpoint, Partner, utcnow
from core.transfers import TransferFilter
from tests.services.conftest import arrive, unique
from tests.tenancy import account_scope, home_scope

SECRET = "s3-Secret-Value-0042"


def setup(session: Session, tmp_path: Path) -> tuple[list[Partner], list[DataFlow]]:
    cli = home_scope(session)
    lake = unique("lake")
    endpoint_rows.add(
        session,
        cli,
        lake,
        "s3",
        {"bucket": "b", "endpoint_url": "http://127.0.0.1:9"},
        {"access_key_id": "AKIDEXAMPLE", "secret_access_key": SECRET},
    )
    names = [unique("pa"), unique("pb")]
    made = [partners.add(session, cli, name, password="Page-Pass-12345") for name in names]
    flows = [dataflows.add(session, cli, unique("fl"), source=f"mailbox:{name}", dest=lake) for name in names]
    return made, flows


def test_keyset_pages_have_no_gap_and_no_duplicate_while_transfers_arrive(
    session: Session, tmp_path: Path
) -> None:
    (a, _), (flow, _) = setup(session, tmp_path)
    ids = [arrive(session, a, [flow], f"f{i}.csv")[1][0].id for i in range(8)]
    scrub = endpoint_rows.scrubber(session, home_scope(session))
    only = TransferFilter(flow=flow.name)
    seen: list[int] = []
    first = transfers.page(session, home_scope(session), only, limit=3, scrubber=scrub)
    seen += [v.id for v in first.rows]
    arrive(session, a, [flow], "late.csv")  # newer than every page: shifts none of the older ones
    before = first.next_before
    while before is not None:
        older = transfers.page(session, home_scope(session), only, before=before, limit=3, scrubber=scrub)
        seen += [v.id for v in older.rows]
        before = older.next_before
    assert seen == sorted(ids, reverse=True)
    last = transfers.page(session, home_scope(session), only, before=ids[2], limit=2, scrubber=scrub)
    assert [v.id for v in last.rows] == [ids[1], ids[0]] and last.next_before is None


def test_filters_are_those_of_tradelane_transfers_and_errors_are_scrubbed(
    session: Session, tmp_path: Path
) -> None:
    (a, b), (fa, fb) = setup(session, tmp_path)
    old = utcnow() - timedelta(days=3)
    arrive(session, a, [fa], "old.csv", states=["delivered"], received_at=old)
    arrive(session, a, [fa], "bad.csv", states=["failed"], errors=[f"refused with key {SECRET}"], run="run-1")
    arrive(session, b, [fb], "b1.csv", states=["rejected"], errors=["not valid JSON"], run="run-1")
    arrive(session, b, [fb], "b2.csv", states=["delivered"], run="run-2")
    scope = home_scope(session)
    scrub = endpoint_rows.scrubber(session, scope)
    lake = session.get(Endpoint, fa.dest_endpoint_id)
    assert lake is not None

    def ids(**wanted: object) -> list[int]:
        found = transfers.page(session, scope, TransferFilter(**wanted), limit=200, scrubber=scrub)  # type: ignore[arg-type]
        return [v.id for v in found.rows if v.flow in (fa.name, fb.name)]

    def cli_ids(**wanted: object) -> list[int]:
        return [v.id for v in transfers.recent(session, scope, 200, **wanted) if v.flow in (fa.name, fb.name)]  # type: ignore[arg-type]

    for wanted in (
        {"state": "delivered"},
        {"flow": fb.name},
        {"partner": a.name},
        {"dest": lake.name},
        {"since": utcnow() - timedelta(days=1)},
        {"until": utcnow() - timedelta(days=1)},
    ):
        assert ids(**wanted) == cli_ids(**wanted), wanted
    assert (
        len(ids(dest=lake.name)) == 4
        and len(ids(partner=a.name)) == 2
        and len(ids(since=utcnow() - timedelta(days=1))) == 3
    )
    assert len(ids(run="run-1")) == 2 and ids(run="run-1", partner=b.name) == ids(
        partner=b.name, state="rejected"
    )
    failed = transfers.page(session, scope, TransferFilter(flow=fa.name, state="failed"), scrubber=scrub).rows
    assert len(failed) == 1 and failed[0].error and SECRET not in failed[0].error
    assert failed[0].error.startswith("refused with key ")


def test_another_accounts_transfers_are_not_on_the_page(session: Session, tmp_path: Path) -> None:
    from core import accounts

    (a, _), (flow, _) = setup(session, tmp_path)
    arrive(session, a, [flow], "mine.csv")
    other = unique("acct")
    accounts.add(session, other, email=f"admin@{other}.example", password="Account-Pass-12345")
    theirs = account_scope(session, other)
    found = transfers.page(session, theirs, scrubber=endpoint_rows.scrubber(session, theirs))
    assert found.rows == [] and found.next_before is None


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"limit": 0}, "a page holds 1 to 200 transfers, not 0"),
        ({"limit": 201}, "a page holds 1 to 200 transfers, not 201"),
        ({"before": 0}, "before must be a transfer id (1 or more), not 0"),
    ],
)
def test_bad_paging_is_refused_with_a_400(session: Session, kwargs: dict[str, int], words: str) -> None:
    scope = home_scope(session)
    with pytest.raises(Invalid) as caught:
        transfers.page(session, scope, scrubber=endpoint_rows.scrubber(session, scope), **kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == f"400: {words}"
    now = utcnow()
    with pytest.raises(Invalid, match="since must be earlier than until"):
        transfers.page(
            session,
            scope,
            TransferFilter(since=now, until=now),
            scrubber=endpoint_rows.scrubber(session, scope),
        )


def test_audit_events_page_by_keyset(session: Session) -> None:
    scope = home_scope(session)
    target = unique("aud")
    for i in range(5):
        audit.record(session, "test.page", actor="cli", account_id=scope.account_id, target=target, n=i)
    session.flush()
    newest = audit.events(session, scope, action="test.page", limit=2)
    ns = [e.detail["n"] for e in newest]
    while len(newest) == 2:
        newest = audit.events(session, scope, action="test.page", before=newest[-1].id, limit=2)
        ns += [e.detail["n"] for e in newest]
    assert ns == [4, 3, 2, 1, 0]
