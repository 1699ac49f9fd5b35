"""AS2 benchmark: messages/s received (with a signed sync MDN) and sent, and memory per MB of payload.

    .venv/bin/python -m bench.as2_bench [--messages 200] [--big-mib 50]

Everything runs on loopback against a fresh TRADELANE_HOME: the API (uvicorn, one process) as
the receiver; messages are 10 KiB, signed (sha256) and encrypted (aes256), with a signed sync MDN.
* receive: messages pre-built by pyas2lib in this process, then POSTed one after another; with
  the API process's CPU time per message (user + system), which the machine's load moves less;
* send: the `as2` endpoint of this process sends to the same API, which receives each as a
  partner (so one "send" includes the receiver's work on the same machine);
* memory: peak RSS growth of the API process receiving one big message, and of a fresh process
  sending one, divided by the payload size (pyas2lib holds messages in memory several times).
"""

from __future__ import annotations

import argparse
import os
import resource
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
    """In a fresh process: send one big message; print peak RSS before and after (KiB)."""
    from core.endpoints.as2 import As2Endpoint

    data = os.urandom(mib * MIB)
    before = rss_peak_kib(os.getpid())
    endpoint = As2Endpoint({"partner": PEER})
    with endpoint.open_write("big.bin") as out:
        for i in range(0, len(data), MIB):
            out.write(data[i : i + MIB])
    print(before, rss_peak_kib(os.getpid()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--big-mib", type=int, default=50)
    parser.add_argument("--send-big-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send_big_child:
        send_big_child(args.send_big_child)
        return
    measure(args.messages, args.big_mib)


def measure(messages_n: int, big_mib: int) -> dict[str, float]:
    """Run the benchmark (printing its lines); messages/s received and sent, and MB of peak RSS
    growth per MB of payload receiving and sending one `big_mib` message (for `bench.all`)."""
    args = argparse.Namespace(messages=messages_n, big_mib=big_mib)
    home = Path(tempfile.mkdtemp(prefix="tradelane-as2-bench-"))
    port = free_port()
    os.environ.update(
        TRADELANE_HOME=str(home),
        TRADELANE_API_PORT=str(port),
        TRADELANE_AS2_MAX_MESSAGE_BYTES=str((args.big_mib * 2 + 10) * MIB),
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

        # --- receive ---
        messages = build_messages(args.messages, size, keys)
        latencies = []
        with httpx.Client(timeout=60) as client:
            client.post(url, headers=messages[0][0], content=messages[0][1])  # warm-up (keys, imports)
            api_cpu = cpu_seconds(api.pid)
            start = time.perf_counter()
            for headers, body, _ in messages[1:]:
                t = time.perf_counter()
                r = client.post(url, headers=headers, content=body)
                latencies.append(time.perf_counter() - t)
                assert r.status_code == 200 and b"processed" in r.content and b"Error" not in r.content, (
                    r.text
                )
            received_rate = (len(messages) - 1) / (time.perf_counter() - start)
            api_cpu_ms = (cpu_seconds(api.pid) - api_cpu) / (len(messages) - 1) * 1000

        # --- send ---
        from core.endpoints.as2 import As2Endpoint

        payloads = [os.urandom(size) for _ in range(args.messages)]
        endpoint = As2Endpoint({"partner": PEER})
        with endpoint.open_write("warm.bin") as out:
            out.write(payloads[0])
        start = time.perf_counter()
        for i, payload in enumerate(payloads[1:]):
            with endpoint.open_write(f"sent-{i}.bin") as out:
                out.write(payload)
        sent_rate = (len(payloads) - 1) / (time.perf_counter() - start)

        # --- memory per MB: receiving one big message ---
        big = build_messages(1, args.big_mib * MIB, keys)[0]
        baseline = rss_now_kib(api.pid)
        peak_before = rss_peak_kib(api.pid)
        r = httpx.post(url, headers=big[0], content=big[1], timeout=600)
        assert r.status_code == 200 and b"processed" in r.content, r.text[:500]
        peak_after = rss_peak_kib(api.pid)
        recv_growth_mib = (max(peak_after, peak_before) - baseline) / 1024
        del big

        # --- memory per MB: sending one big message (fresh process) ---
        child = subprocess.run(
            [sys.executable, "-m", "bench.as2_bench", "--send-big-child", str(args.big_mib)],
            env=os.environ.copy(), capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if child.returncode != 0:
            raise SystemExit(child.stderr)
        before_kib, after_kib = (int(x) for x in child.stdout.split()[-2:])
        send_growth_mib = (after_kib - before_kib) / 1024
    finally:
        api.terminate()
        api.wait(10)

    p50 = statistics.median(latencies) * 1000
    p95 = sorted(latencies)[int(len(latencies) * 0.95) - 1] * 1000
    print(f"AS2 receive, 10 KiB signed+encrypted, signed sync MDN: {received_rate:.1f} messages/s "
          f"(sequential; latency p50 {p50:.1f} ms, p95 {p95:.1f} ms; "
          f"API CPU {api_cpu_ms:.1f} ms per message)")  # fmt: skip
    print(f"AS2 send,    10 KiB signed+encrypted, signed sync MDN verified: {sent_rate:.1f} messages/s "
          f"(sequential; includes the receiver on the same machine)")  # fmt: skip
    recv_ratio, send_ratio = recv_growth_mib / args.big_mib, send_growth_mib / args.big_mib
    print(f"AS2 memory, {args.big_mib} MiB message: receive peak RSS +{recv_growth_mib:.0f} MiB "
          f"({recv_ratio:.1f} MB per MB of payload); send peak RSS +{send_growth_mib:.0f} MiB "
          f"({send_ratio:.1f} MB per MB of payload, beyond the payload buffer itself)")  # fmt: skip
    print(f"(this process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB)")
    return {
        "receive_per_s": received_rate,
        "send_per_s": sent_rate,
        "receive_p50_ms": p50,
        "receive_memory_ratio": recv_ratio,
        "send_memory_ratio": send_ratio,
    }


if __name__ == "__main__":
    main()
