"""Azurite, Microsoft's Azure Storage emulator (Blob service only), as a real server for tests.

`azurite-blob` comes from npm (scripts/install-test-servers.sh installs it). One process per
test session, on a free loopback port, storing blobs in a temporary directory; tests make a
fresh container each with `new_container`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from tests.servers import free_port, wait_until_listening

__all__ = ["AZURITE_ACCOUNT", "AZURITE_KEY", "Azurite", "azurite", "run_azurite"]

# The emulator's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class Azurite:
    """How to reach a running Azurite blob service."""

    port: int
    account_url: str  # http://127.0.0.1:<port>/devstoreaccount1
    account_name: str
    account_key: str

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.account_url};"
        )

    def service(self) -> BlobServiceClient:
        """A plain SDK client for arranging and inspecting what an endpoint did."""
        return BlobServiceClient.from_connection_string(self.connection_string, retry_total=0)

    def container_sas(self, container: str, **permissions: bool) -> str:
        """A SAS token for `container` granting only `permissions` (read=True, list=True, ...)."""
        return generate_container_sas(
            self.account_name,
            container,
            account_key=self.account_key,
            permission=ContainerSasPermissions(**permissions),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )

    def new_container(self, prefix: str = "tradelane") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        with self.service() as service:
            service.create_container(name)
        return name


@contextmanager
def run_azurite(*, port: int | None = None, location: Path | None = None) -> Iterator[Azurite]:
    """Run `azurite-blob` on a free loopback port until the block ends; yields how to reach it."""
    binary = shutil.which("azurite-blob")
    if binary is None:
        raise RuntimeError("azurite-blob is not installed: run scripts/install-test-servers.sh")
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="azurite-") as tmp:
        data = location or Path(tmp) / "data"
        data.mkdir(parents=True, exist_ok=True)
        log = Path(tmp) / "azurite.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    "--disableTelemetry",
                    "--silent",
                    "--skipApiVersionCheck",
                    "--loose",
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    str(port),
                    "--location",
                    str(data),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_until_listening("azurite", port, proc, log)
                server = Azurite(
                    port=port,
                    account_url=f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}",
                    account_name=AZURITE_ACCOUNT,
                    account_key=AZURITE_KEY,
                )
                # Listening is not serving yet: wait for a real answer from the blob service.
                deadline = time.monotonic() + 30
                while True:
                    try:
                        with server.service() as service:
                            next(iter(service.list_containers()), None)
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
                yield server
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One Azurite blob service for the whole test session."""
    with run_azurite() as server:
        yield server
