"""Helpers for outbox tests through a real `tradelane up`: two accounts joined by a connection whose
receiver lands files in a moto S3 bucket, and the account user's doors (REST with httpx, OpenSSH
`sftp`, ftplib)."""

from __future__ import annotations

import ftplib
import json
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.servers import moto_client, require_tool
from tests.system import System
from tests.waiting import wait_for

SSHPASS = require_tool("sshpass")
SFTP = require_tool("sftp")
PASSWORD = "Outb0x-Owner-Pass-41"
WAIT = 90.0  # a busy machine: generous, and never a timing assertion


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def cli_json(system: System, *args: str) -> Any:
    return json.loads(system.cli(*args, "--json").stdout)


@dataclass
class Pair:
    """`sender` (an account whose admin is `email`) sends to `home` through outbox `orders`."""

    system: System
    sender: str
    email: str
    id: str
    link: str
    receiver_name: str
    bucket: str
    dest: str
    moto: str

    def accept(self) -> None:
        self.system.cli(
            "connect",
            "accept",
            self.link,
            "--account",
            "home",
            "--name",
            self.receiver_name,
            "--dest",
            self.dest,
        )

    def key(self, name: str) -> str:
        return f"inbound/from/{self.sender}/{name}"

    def landed(self, name: str) -> bytes:
        client = moto_client(self.moto)

        def got() -> bytes | None:
            try:
                body: bytes = client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read()
                return body
            except client.exceptions.NoSuchKey:
                return None

        return wait_for(got, f"{name} in the receiver's bucket", timeout=WAIT, interval=0.3)

    def history(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = cli_json(
            self.system, "transfers", "--connection", "to-home", "--account", self.sender
        )
        return rows

    def wait_state(self, file: str, state: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            return next((r for r in self.history() if r["file"] == file and r["state"] == state), None)

        return wait_for(done, f"{file} {state}", timeout=WAIT, interval=0.3)

    def view(self, on: bool) -> None:
        flags = [] if on else ["--off"]
        self.system.cli("connect", "allow-view", self.receiver_name, "--account", "home", *flags)

    # --- the sender's doors -------------------------------------------------------------------

    def token(self, email: str | None = None) -> str:
        answer = httpx.post(
            f"{self.system.api}/api/authentication",
            data={"grant_type": "password", "username": email or self.email, "password": PASSWORD},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    def rest(self, email: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.system.api, headers={"Authorization": f"Bearer {self.token(email)}"}, timeout=60
        )

    def sftp(self, commands: str, cwd: Path, user: str | None = None) -> str:
        """An OpenSSH sftp batch (`-` before a command: go on after its failure); all it printed."""
        done = subprocess.run(
            [SSHPASS, "-p", PASSWORD, SFTP, "-o", "BatchMode=no", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "PubkeyAuthentication=no", "-o", "LogLevel=ERROR",
             "-o", f"User={user or self.email}", "-P", self.system.env["TRADELANE_SFTP_PORT"], "-b", "-",
             "127.0.0.1"],
            input=commands.encode(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd, timeout=120,
        )  # fmt: skip
        return done.stdout.decode()

    def ftp(self, user: str | None = None, password: str = PASSWORD) -> ftplib.FTP:
        client = ftplib.FTP(timeout=30)
        client.connect("127.0.0.1", int(self.system.env["TRADELANE_FTP_PORT"]))
        client.login(user or self.email, password)
        return client


def new_pair(system: System, moto: str, outbox: str = "orders") -> Pair:
    """A new sender account invites `home` to receive into a new moto bucket (not accepted yet)."""
    sender = unique("acme")
    email = f"admin@{sender}.example"
    system.cli("account", "add", sender, "--email", email, "--password", PASSWORD)
    bucket, endpoint = unique("bucket"), unique("vault")
    moto_client(moto).create_bucket(Bucket=bucket)
    system.cli(
        "endpoint", "add", endpoint, "--type", "s3", "--bucket", bucket, "--endpoint-url", moto,
        "--region", "us-east-1", "--access-key-id", "AKIAB2BTEST", "--secret-access-key", "b2b-secret",
        "--prefix", "inbound",
    )  # fmt: skip
    invited = cli_json(
        system, "connect", "invite", "--account", sender, "--send", "--outbox", outbox,
        "--email", "ops@home.example", "--name", "to-home",
    )  # fmt: skip
    return Pair(
        system, sender, email, str(invited["id"]), invited["link"], f"from-{sender}", bucket,
        f"{endpoint}:from/{sender}", moto,
    )  # fmt: skip


def folder_named(client: httpx.Client, *path: str) -> dict[str, Any]:
    """The REST folder resource at `path` below the login's home (by names)."""
    folder: dict[str, Any] = client.get("/api/folders").json()["resources"][0]
    for name in path:
        children = client.get(f"/api/folders/{folder['id']}/children").json()["resources"]
        folder = next(c for c in children if c["name"] == name)
    return folder


def upload(client: httpx.Client, folder_id: str, name: str, data: bytes) -> httpx.Response:
    return client.post(
        f"/api/folders/{folder_id}/files",
        content=data,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Type": "application/octet-stream",
        },
    )
