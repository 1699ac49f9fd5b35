"""The REST upload's HTTP stack with nothing behind it: uvicorn with httptools on uvloop, in a
process tuned as `tradelane up` tunes its own (cli/roles.tune_interpreter), answering every POST
after reading and discarding its body. bench.rest_upload sends the same file here as to `up`:
how fast the stack alone takes a body is the ceiling for a REST upload on this machine.

    python -m bench.rest_sink 18111
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from cli.roles import tune_interpreter


async def discard(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(size).encode()})


def main() -> None:
    tune_interpreter()
    port = int(sys.argv[1])
    uvicorn.run(discard, host="127.0.0.1", port=port, http="httptools", loop="uvloop", log_level="warning")


if __name__ == "__main__":
    main()
