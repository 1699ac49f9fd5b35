"""Cross-instance connections for the push tests: what the invitation handshake leaves behind, and
a relay between the instances.

The two-instance tests (tests/b2b/test_peerpush_up.py) pair their instances with the real
handshake (`connect invite` on A, `connect accept <link>` on B) and read each side's connection
with `side_named`. The in-process tests (test_peer_endpoint.py, one home holding both ends) write
the rows the handshake would, with `sender_begin`, `receiver_side` and `sender_activate`:

* on the receiving side B: an active `connection` row (receiver side: account, name, the
  destination endpoint and folder), its `peer` row (A's URL, A's connection uid, A's key id and
  public key, and B's own key pair minted with `core.b2b.keys.mint`), and B's landing flow;
* on the sending side A: an active `connection` row (sender side: account, name, outbox), its
  `peer` row (B's URL, uid, key id and public key; A's key pair), and A's push flow
  (`core.b2b.push_flow.create_flow`).

Each function runs against the home of the process it runs in; `in_home(env, ...)` runs one in
a real `tradelane up`'s home (a subprocess with that instance's environment). `Relay` sits between
A and B's API port to cut, slow down or hold the connection (resume and crash tests).
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlmodel import select

from core.models import Connection, ConnectionState, Peer, utcnow


@dataclass(frozen=True)
class Side:
    """One instance's end of the pair: its connection (id, uid), and its public key."""

    connection_id: int
    uid: str
    key_id: str
    public_key: str


# --- run in a home ----------------------------------------------------------------------------------


def sender_begin(account: str, name: str, outbox: str, peer_url: str) -> Side:
    """A's connection row and key, before it knows B (the handshake's step 5 on A, first half)."""
    from core.b2b import keys
    from core.db import session_scope
    from core.tenancy import find_account

    with session_scope() as session:
        found = find_account(session, account)
        assert found is not None, f"no account {account}"
        conn = Connection(
            direction="send",
            state=ConnectionState.active,
            sender_account_id=found.id,
            sender_name=name,
            outbox_name=outbox,
            created_by="peer-pair fixture",
            accepted_at=utcnow(),
            accepted_by="peer-pair fixture",
        )
        session.add(conn)
        session.flush()
        assert conn.id is not None
        minted = keys.mint()
        session.add(
            Peer(
                connection_id=conn.id,
                base_url=peer_url,
                our_key_id=minted.key_id,
                our_public_key=minted.public_key,
                our_private_key=minted.sealed_private_key,
            )
        )
        return Side(conn.id, conn.uid, minted.key_id, minted.public_key)


def sender_activate(connection_id: int, their: Side, their_account: str, their_name: str) -> int:
    """A learns B's uid and key and becomes active: its push flow (what the handshake does)."""
    from core.b2b import push_flow
    from core.db import session_scope

    with session_scope() as session:
        conn = session.get(Connection, connection_id)
        peer = session.exec(select(Peer).where(Peer.connection_id == connection_id)).one()
        assert conn is not None
        peer.their_connection_uid, peer.their_account = their.uid, their_account
        peer.their_key_id, peer.their_public_key = their.key_id, their.public_key
        conn.receiver_name = their_name
        session.add(peer)
        flow = push_flow.create_flow(session, conn)
        conn.data_flow_id = flow.id
        session.add(conn)
        assert flow.id is not None
        return flow.id


def receiver_side(
    account: str, name: str, endpoint: str, folder: str, peer_url: str, their: Side, their_account: str
) -> Side:
    """B's active receiving connection from A, its peer row and its landing flow."""
    from core.b2b import keys, landing
    from core.db import session_scope
    from core.models import Endpoint as EndpointRow
    from core.tenancy import find_account

    with session_scope() as session:
        found = find_account(session, account)
        assert found is not None, f"no account {account}"
        row = session.exec(
            select(EndpointRow).where(EndpointRow.account_id == found.id, EndpointRow.name == endpoint)
        ).one()
        conn = Connection(
            direction="send",
            state=ConnectionState.active,
            receiver_account_id=found.id,
            receiver_name=name,
            dest_endpoint_id=row.id,
            dest_dir=folder,
            created_by="peer-pair fixture",
            accepted_at=utcnow(),
            accepted_by="peer-pair fixture",
        )
        session.add(conn)
        session.flush()
        assert conn.id is not None
        minted = keys.mint()
        session.add(
            Peer(
                connection_id=conn.id,
                base_url=peer_url,
                their_connection_uid=their.uid,
                their_account=their_account,
                their_key_id=their.key_id,
                their_public_key=their.public_key,
                our_key_id=minted.key_id,
                our_public_key=minted.public_key,
                our_private_key=minted.sealed_private_key,
            )
        )
        flow = landing.create_flow(session, conn)
        conn.data_flow_id = flow.id
        session.add(conn)
        return Side(conn.id, conn.uid, minted.key_id, minted.public_key)


# --- what the tests read in a home -------------------------------------------------------------------


def uploads(connection_id: int) -> list[dict[str, Any]]:
    """The connection's peer uploads (receiving side) and the bytes each has staged."""
    from core.b2b import peer_upload
    from core.db import session_scope
    from core.models import PeerUpload

    with session_scope() as session:
        rows = session.exec(select(PeerUpload).where(PeerUpload.connection_id == connection_id)).all()
        return [
            {
                "uid": r.uid,
                "name": r.name,
                "state": r.state,
                "offset": r.offset,
                "held": peer_upload.held(r),
                "resumes": r.resumes,
                "receipt_id": r.receipt_id,
                "transfer_key": r.transfer_key,
            }
            for r in rows
        ]


def receipts_of(connection_id: int) -> list[dict[str, Any]]:
    """The receipts taken in for a connection (either side)."""
    from core.db import session_scope
    from core.models import Receipt

    with session_scope() as session:
        rows = session.exec(select(Receipt).where(Receipt.connection_id == connection_id)).all()
        return [{"id": r.id, "name": r.name, "sha256": r.sha256, "protocol": r.protocol} for r in rows]


def sent(connection_id: int) -> list[dict[str, Any]]:
    """The sending side's transfers of a connection, with each stored answer checked again with
    the receiver's key (`receipts.verify_stored`)."""
    from core.b2b import receipts
    from core.db import session_scope
    from core.models import Receipt, Transfer

    with session_scope() as session:
        conn = session.get(Connection, connection_id)
        peer = session.exec(select(Peer).where(Peer.connection_id == connection_id)).one()
        assert conn is not None
        rows = session.exec(
            select(Transfer, Receipt)
            .join(Receipt, Receipt.id == Transfer.receipt_id)  # type: ignore[arg-type]
            .where(Transfer.data_flow_id == conn.data_flow_id)
            .order_by(Transfer.id)  # type: ignore[arg-type]
        ).all()
        out = []
        for transfer, receipt in rows:
            facts: dict[str, Any] | None = None
            problem = None
            if transfer.destination_answer is not None:
                try:
                    facts = asdict(receipts.verify_stored(transfer.destination_answer, peer))
                except receipts.ReceiptInvalid as exc:
                    problem = str(exc)
            out.append(
                {
                    "id": transfer.id,
                    "name": receipt.name,
                    "sha256": receipt.sha256,
                    "state": transfer.state,
                    "attempts": transfer.attempts,
                    "error": transfer.error,
                    "next_attempt_at": transfer.next_attempt_at,
                    "finished_at": transfer.finished_at,
                    "replay_of": transfer.replay_of,
                    "uri": transfer.destination_uri,
                    "answer": transfer.destination_answer,
                    "receipt": facts,
                    "receipt_problem": problem,
                }
            )
        return out


def side_named(account: str, name: str) -> Side:
    """This instance's end of the cross-instance connection `name` of `account` (after the handshake)."""
    from core.db import session_scope
    from core.tenancy import Scope

    with session_scope() as session:
        from core.b2b import connections
        from core.b2b.caller import cli_caller

        scope: Scope = cli_caller(session, account)
        conn = connections.require(session, scope, name)
        peer = session.exec(select(Peer).where(Peer.connection_id == conn.id)).one()
        assert conn.id is not None
        return Side(conn.id, conn.uid, peer.our_key_id, peer.our_public_key)


COMMANDS = {
    "side_named": side_named,
    "sender_begin": sender_begin,
    "sender_activate": sender_activate,
    "receiver_side": receiver_side,
    "uploads": uploads,
    "receipts_of": receipts_of,
    "sent": sent,
}


def in_home(env: dict[str, str], command: str, **args: Any) -> Any:
    """Run `command(**args)` in the home `env` names (a subprocess, as the CLI would); its result."""
    for key, value in args.items():
        if isinstance(value, Side):
            args[key] = {"__side__": asdict(value)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.b2b.peer_pair", command, json.dumps(args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    if done.returncode != 0:
        raise AssertionError(f"{command} failed:\n{done.stdout}\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if isinstance(result, dict) and "__side__" in result:
        return Side(**result["__side__"])
    return result


def _main(command: str, text: str) -> None:
    args = {
        key: Side(**value["__side__"]) if isinstance(value, dict) and "__side__" in value else value
        for key, value in json.loads(text).items()
    }
    result = COMMANDS[command](**args)  # type: ignore[operator]
    print(json.dumps({"__side__": asdict(result)} if isinstance(result, Side) else result, default=str))


# --- a relay between A and B -------------------------------------------------------------------------


class Relay:
    """Forwards 127.0.0.1:<port> to B's API port, and on request breaks things on the way to B:

    * `cut_after(n)`: the next connection that carries more than n bytes towards B is cut there
      (once), as a network failure mid-body would;
    * `rate`: bytes per second towards B (None: as fast as it goes), so an upload is slow enough
      to be killed in the middle;
    * `hold()` / `release()`: new connections wait, unconnected, until released (a peer that is
      restarting behind a proxy that keeps clients waiting);
    * `refuse()` / `release()`: new connections are closed at once (a peer that is down).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.rate: float | None = None
        self._cut: int | None = None
        self._open = threading.Event()
        self._open.set()
        self._refusing = False
        self._stop = threading.Event()
        self.cuts = 0
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port: int = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut_after(self, n: int) -> None:
        self._cut = n

    def hold(self) -> None:
        self._open.clear()

    def refuse(self) -> None:
        self._refusing = True

    def release(self) -> None:
        self._refusing = False
        self._open.set()

    def close(self) -> None:
        self._stop.set()
        self._open.set()
        self._server.close()

    def _accept(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self._refusing:
            client.close()
            return
        while not self._open.wait(0.2):
            if self._stop.is_set():
                client.close()
                return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._pipe(client, upstream)

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, client)
        towards_b = 0
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.5):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(16384)
                    if not data:
                        return
                    if source is client:
                        cut = self._cut
                        if cut is not None and towards_b + len(data) > cut:
                            self._cut = None
                            self.cuts += 1
                            upstream.sendall(data[: max(0, cut - towards_b)])
                            return  # both sockets close: a broken connection, mid-body
                        towards_b += len(data)
                        if self.rate:
                            time.sleep(len(data) / self.rate)
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
