"""AS2 benchmark: messages/s received (with a signed sync MDN) and sent, and memory per MB of payload.

    .venv/bin/python -m bench.as2_bench [--messages 200] [--big-mib 50]
    .venv/bin/python -m bench.as2_bench --memory-only --big-mib 2048   # one big message only

Everything runs on loopback against a fresh TRADELANE_HOME: the API (uvicorn, one process) as
the receiver; messages are 10 KiB, signed (sha256) and encrypted (aes256), with a signed sync MDN.
* receive: messages pre-built by pyas2lib in this process, then POSTed one after another; with
  the API process's CPU time per message (user + system), which the machine's load moves less;
* send: the `as2` endpoint of this process sends to the same API, which receives each as a
  partner (so one "send" includes the receiver's work on the same machine);
* memory: a fresh process sends one big message (its payload written to the `as2` endpoint in
  1 MiB pieces, never held whole) to the API, which receives it; the peak RSS growth of each
  process divided by the payload size (large messages stream through files, core.as2.bigsend
  and core.as2.bigreceive). `--memory-only` prints just that, as `memory-ratios RECV SEND`.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from core.tenancy import scope_for_cli

OURS, PEER = "BENCH-US", "BENCH-PEER"
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def rss_now_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (load-independent, unlike messages/s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def setup(port: int) -> tuple[str, str, str, str]:
    """Two identities in one store: we send as OURS to PEER; the API receives as PEER from OURS."""
    from core import db, partners
    from core.as2 import identity, profiles

    db.init_db()
    us_key, us_cert = identity.self_signed(OURS)
    peer_key, peer_cert = identity.self_signed(PEER)
    with db.session_scope() as session:
        identity.create(session, scope_for_cli(session, "home"), OURS, us_key, us_cert)
        identity.create(session, scope_for_cli(session, "home"), PEER, peer_key, peer_cert)
        partners.add(
            session, scope_for_cli(session, "home"), "bench-in", password="as2-load-" + os.urandom(8).hex()
        )
        security = {"sign": "sha256", "encrypt": "aes256", "mdn": "sync", "mdn_sign": "sha256"}
        url = f"http://127.0.0.1:{port}/as2/receive"
        # PEER's profile (we send to it) and OURS as a partner of PEER (it receives from us).
        profiles.add(
            session,
            scope_for_cli(session, "home"),
            PEER,
            mailbox="bench-in",
            url=url,
            certificate=peer_cert.encode(),
            org=OURS,
            **security,
        )
        profiles.add(
            session,
            scope_for_cli(session, "home"),
            OURS,
            mailbox="bench-in",
            url=url,
            certificate=us_cert.encode(),
            org=PEER,
            **security,
        )
    return us_key, us_cert, peer_key, peer_cert


def build_messages(
    n: int, size: int, keys: tuple[str, str, str, str]
) -> list[tuple[dict[str, str], bytes, object]]:
    import pyas2lib

    us_key, us_cert, _, peer_cert = keys
    org = pyas2lib.Organization(as2_name=OURS, sign_key=(us_key + us_cert).encode(), domain="bench")
    partner = pyas2lib.Partner(
        as2_name=PEER, verify_cert=peer_cert.encode(), encrypt_cert=peer_cert.encode(), validate_certs=False,
        sign=True, digest_alg="sha256", encrypt=True, enc_alg="aes_256_cbc", mdn_mode="SYNC",
        mdn_digest_alg="sha256",
    )  # fmt: skip
    out = []
    for i in range(n):
        message = pyas2lib.Message(sender=org, receiver=partner)
        message.build(os.urandom(size), filename=f"bench-{i}.bin", content_type="application/octet-stream")
        headers = {k: " ".join(str(v).split()) for k, v in message.headers.items()}
        out.append((headers, bytes(message.content), message))
    return out


def send_big_child(mib: int) -> None:
    """In a fresh process: send one big message; print peak RSS before and after (KiB), and the
    message's status. Imports and the first database session come before the first figure."""
    import pyas2lib  # noqa: F401  (imported by sending anyway: not the message's memory)

    from core.endpoints.as2 import As2Endpoint

    endpoint = As2Endpoint({"partner": PEER})
    piece = os.urandom(MIB)
    before = rss_peak_kib(os.getpid())
    with endpoint.open_write("big.bin") as out:
        for i in range(mib):
            out.write(piece[:-8] + i.to_bytes(8, "big"))
    print(before, rss_peak_kib(os.getpid()), endpoint.last_sent.status)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--big-mib", type=int, default=50)
    parser.add_argument("--memory-only", action="store_true", help="only the big message's memory")
    parser.add_argument("--send-big-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send_big_child:
        send_big_child(args.send_big_child)
        return
    measure(0 if args.memory_only else args.messages, args.big_mib)


def measure(messages_n: int, big_mib: int) -> dict[str, float]:
    """Run the benchmark (printing its lines); messages/s received and sent, and MB of peak RSS
    growth per MB of payload receiving and sending one `big_mib` message (for `bench.all`)."""
    args = argparse.Namespace(messages=messages_n, big_mib=big_mib)
    home = Path(tempfile.mkdtemp(prefix="tradelane-as2-bench-"))
    port = free_port()
    os.environ.update(
        TRADELANE_HOME=str(home),
        TRADELANE_API_PORT=str(port),
        TRADELANE_AS2_MAX_MESSAGE_BYTES=str((args.big_mib + 10) * MIB),
        TRADELANE_AS2_MAX_MDN_BYTES=str(MIB),
    )
    os.environ.pop("TRADELANE_DATABASE_URL", None)
    keys = setup(port)
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env=os.environ.copy(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/as2/receive").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the API did not start")
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/as2/receive"
        size = 10 * 1024
        rates = _rates(api, url, size, args.messages, keys) if args.messages else None
        recv_growth_mib, send_growth_mib = _big_memory(api, args.big_mib)
    finally:
        api.terminate()
        api.wait(10)
        shutil.rmtree(home, ignore_errors=True)  # the big message is in its mailbox (up to GiBs)

    recv_ratio, send_ratio = recv_growth_mib / args.big_mib, send_growth_mib / args.big_mib
    if rates is None:
        print(f"memory-ratios {recv_ratio:.3f} {send_ratio:.3f}")
    print(f"AS2 memory, {args.big_mib} MiB message: receive peak RSS +{recv_growth_mib:.0f} MiB "
          f"({recv_ratio:.2f} MB per MB of payload); send peak RSS +{send_growth_mib:.0f} MiB "
          f"({send_ratio:.2f} MB per MB of payload)")  # fmt: skip
    print(f"(this process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB)")
    if rates is None:
        return {"receive_memory_ratio": recv_ratio, "send_memory_ratio": send_ratio}
    return {**rates, "receive_memory_ratio": recv_ratio, "send_memory_ratio": send_ratio}


def _rates(
    api: subprocess.Popen[bytes], url: str, size: int, n: int, keys: tuple[str, str, str, str]
) -> dict[str, float]:
    """Messages/s received and sent (printed), for `measure`."""
    # --- receive ---
    messages = build_messages(n, size, keys)
    latencies = []
    with httpx.Client(timeout=60) as client:
        client.post(url, headers=messages[0][0], content=messages[0][1])  # warm-up (keys, imports)
        api_cpu = cpu_seconds(api.pid)
        start = time.perf_counter()
        for headers, body, _ in messages[1:]:
            t = time.perf_counter()
            r = client.post(url, headers=headers, content=body)
            latencies.append(time.perf_counter() - t)
            assert r.status_code == 200 and b"processed" in r.content and b"Error" not in r.content, r.text
        received_rate = (len(messages) - 1) / (time.perf_counter() - start)
        api_cpu_ms = (cpu_seconds(api.pid) - api_cpu) / (len(messages) - 1) * 1000

    # --- send ---
    from core.endpoints.as2 import As2Endpoint

    payloads = [os.urandom(size) for _ in range(n)]
    endpoint = As2Endpoint({"partner": PEER})
    with endpoint.open_write("warm.bin") as out:
        out.write(payloads[0])
    start = time.perf_counter()
    for i, payload in enumerate(payloads[1:]):
        with endpoint.open_write(f"sent-{i}.bin") as out:
            out.write(payload)
    sent_rate = (len(payloads) - 1) / (time.perf_counter() - start)

    p50 = statistics.median(latencies) * 1000
    p95 = sorted(latencies)[int(len(latencies) * 0.95) - 1] * 1000
    print(f"AS2 receive, 10 KiB signed+encrypted, signed sync MDN: {received_rate:.1f} messages/s "
          f"(sequential; latency p50 {p50:.1f} ms, p95 {p95:.1f} ms; "
          f"API CPU {api_cpu_ms:.1f} ms per message)")  # fmt: skip
    print(f"AS2 send,    10 KiB signed+encrypted, signed sync MDN verified: {sent_rate:.1f} messages/s "
          f"(sequential; includes the receiver on the same machine)")  # fmt: skip
    return {"receive_per_s": received_rate, "send_per_s": sent_rate, "receive_p50_ms": p50}


def _big_memory(api: subprocess.Popen[bytes], mib: int) -> tuple[float, float]:
    """(MiB of peak RSS growth of the API receiving, of a fresh process sending) one message of
    `mib` MiB, sent by that process to the API."""
    baseline = rss_now_kib(api.pid)
    peak_before = rss_peak_kib(api.pid)
    child = subprocess.run(
        [sys.executable, "-m", "bench.as2_bench", "--send-big-child", str(mib)],
        env=os.environ.copy(), capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    if child.returncode != 0:
        raise SystemExit(child.stderr)
    before, after, status = child.stdout.split()[-3:]
    if status != "acknowledged":
        raise SystemExit(f"the big message was not acknowledged: {status}")
    recv_growth_mib = (max(rss_peak_kib(api.pid), peak_before) - baseline) / 1024
    return recv_growth_mib, (int(after) - int(before)) / 1024


if __name__ == "__main__":
    main()
