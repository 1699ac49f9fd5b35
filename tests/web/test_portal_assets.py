"""The portal's vendored script is the published tus-js-client 4.3.1, byte for byte, with its licence:
its SHA-256 is the one api/static/README.md lists."""

from __future__ import annotations

import hashlib
import re

from api.docs import STATIC_DIR


def test_tus_js_client_is_the_listed_file() -> None:
    readme = (STATIC_DIR / "README.md").read_text()
    listed = {path: digest for digest, path in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.M)}
    for name in ("vendor/tus-js-client/tus.min.js", "vendor/tus-js-client/LICENSE"):
        assert hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest() == listed[name]
    assert "MIT License" in (STATIC_DIR / "vendor/tus-js-client/LICENSE").read_text()
    bundle = (STATIC_DIR / "vendor/tus-js-client/tus.min.js").read_text()
    assert "eval(" not in bundle and "new Function" not in bundle  # nothing our CSP would refuse
