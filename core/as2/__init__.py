"""AS2 (RFC 4130) in both directions, built on pyas2lib.

* identity.py — our AS2 ID, key pair and certificate (created or imported; key encrypted at rest)
* profiles.py — partners' AS2 profiles: URL, certificate, security both ways, their mailbox
* receive.py  — one inbound message: sender check, decrypt, verify, decompress, de-duplicate, intake, MDN
* replay.py   — recognising a signed message received before under another Message-ID
* send.py     — one outbound message: build, POST, judge the MDN; resends on MDN timeout
* mdn.py      — building, delivering and judging MDNs
* spool.py    — the size cap and disk spools around pyas2lib (which works in memory)
* worker.py   — the API process's thread for async MDNs and resends
* messages.py — the message history `tradelane as2 messages` shows
"""
