"""The one scrubber (core/redact.py): what it hides, in text, errors, data and log records."""

from __future__ import annotations

import io
import logging
import uuid

from core.endpoints.base import AuthError
from core.redact import Scrubber, install_log_scrubber, remember, scrub, scrub_known, secret_strings


def test_longest_secret_first_and_wire_forms() -> None:
    short, long = "abcd1234", "abcd1234-and-more"
    assert scrub(f"x {long} y {short} z", [short, long]) == "x *** y *** z"
    spaced = "p@ss w/rd+1"
    text = f"raw {spaced} path p%40ss%20w/rd%2B1 form p%40ss+w%2Frd%2B1 strict p%40ss%20w%2Frd%2B1"
    assert scrub(text, [spaced]) == "raw *** path *** form *** strict ***"


def test_short_values_are_not_searched_for() -> None:
    assert scrub("id 42 of 420", ["42"]) == "id 42 of 420"


def test_key_lines_errors_and_data() -> None:
    key = "-----BEGIN KEY-----\nAAAAB3NzaC1yc2EAAAADAQABAAABAQ\nZm9vYmFyYmF6cXV4cXV1eA==\n-----END KEY-----\n"
    scrubber = Scrubber(
        secret_strings({"private_key": key, "user": "acme-login"}, skip=lambda k: k == "user")
    )
    assert scrubber.text("line AAAAB3NzaC1yc2EAAAADAQABAAABAQ seen") == "line *** seen"
    error = scrubber.error(AuthError("refused Zm9vYmFyYmF6cXV4cXV1eA== for acme-login"))
    assert isinstance(error, AuthError) and str(error) == "refused *** for acme-login"
    same = AuthError("nothing secret")
    assert scrubber.error(same) is same
    data = {"summary": "HTTP 200", "body": ["Zm9vYmFyYmF6cXV4cXV1eA=="], "n": 3}
    assert scrubber.data(data) == {"summary": "HTTP 200", "body": ["***"], "n": 3}


def test_log_records_of_the_process_are_scrubbed() -> None:
    secret = f"log-secret-{uuid.uuid4().hex}"
    install_log_scrubber()
    remember([secret])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger(f"test.redact.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("answer: %s", {"target": f"/echo?key={secret}"})
        try:
            raise AuthError(f"refused {secret}")
        except AuthError:
            logger.exception("failed with %s", secret)
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert "answer: {'target': '/echo?key=***'}" in written
    assert "failed with ***" in written and "AuthError: refused ***" in written  # the traceback too
    assert secret not in written
    assert scrub_known({"row": f"x {secret}"}) == {"row": "x ***"}
