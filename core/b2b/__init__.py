"""B2B Connect: two accounts connected so that one sends files into the other's storage.

`tokens` (invitation tokens), `connections` (the state machine and its operations), `outbox`
(the sender's write path through intake), `landing` (the receiver-owned data flow and its run
labels), `history` (what each side may see of the files sent).
"""
