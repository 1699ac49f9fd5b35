"""Hostile input to the console's endpoint form (api/web/forms.py): secrets never come back in the
page, whatever field they were typed into; markup in values is shown as text; fields the form
does not have are refused, not ignored; every type's form fits the bounds it is read with."""

from __future__ import annotations

from typing import Any

import pytest

from api.web import forms
from core.endpoints.registry import endpoint_class, user_types
from core.endpoints.settings import SettingsError
from tests.test_web_endpoint_forms import CASE_IDS, CASES, page, typed
from tests.web_form_reader import read_page


def refused(type_: str, posted: dict[str, str]) -> SettingsError:
    """The error the console gets for this post: from reading the form, or from the models."""
    try:
        submitted = forms.parse_form(type_, posted)
        endpoint_class(type_).parse(submitted.settings, submitted.secrets)
    except SettingsError as exc:
        return exc
    raise AssertionError("the post was accepted")


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) and len(value) >= 6 else []


@pytest.mark.parametrize(("type_", "settings", "secrets"), CASES, ids=CASE_IDS)
def test_a_refused_post_shows_no_secret_it_carried(
    type_: str, settings: dict[str, Any], secrets: dict[str, Any]
) -> None:
    _, blank = page(forms.build(type_))
    # Every secret typed, and one unknown field to get the post refused.
    posted = {**blank.submit({"name": "n", **typed(type_, settings, secrets)}), "setting.no_such": "x"}
    error = refused(type_, posted)
    html, _ = page(forms.build(type_, posted, error=error))
    assert "unknown setting &#39;no_such&#39;" in html
    for value in _strings(secrets):
        assert value not in html, (type_, value)


def test_a_credential_typed_into_a_plain_field_is_not_shown_again() -> None:
    _, blank = page(forms.build("http"))
    posted = blank.submit(
        {
            "name": "api",
            # user:password@ and a query key in the URL, a credential header among the plain ones
            "setting.url": "https://bob:pw-in-url-21@api.example.com/in?key=q-key-22",
            "setting.headers": "Authorization: Bearer hdr-tok-23\nX-Trace: on",
            "setting.timeout": "-1",  # and something wrong, so the form comes back
        }
    )
    error = refused("http", posted)
    form = forms.build("http", posted, error=error)
    html, shown = page(form)
    for secret in ("pw-in-url-21", "q-key-22", "hdr-tok-23", "bob:"):
        assert secret not in html
    named = shown.by_name()
    assert named["setting.url"].value == "https://api.example.com/in?key=***"
    assert named["setting.headers"].value == "X-Trace: on"
    assert named["setting.timeout"].value == "-1"


def test_settings_that_cannot_be_split_together_are_still_not_shown() -> None:
    _, blank = page(forms.build("http"))
    posted = blank.submit(
        {
            "name": "api",
            "setting.url": "https://bob:pw-24@api.example.com/in",
            "secret.bearer": "bearer-25",  # basic auth in the URL and a bearer token: refused
        }
    )
    error = refused("http", posted)
    assert "give one way to authenticate" in str(error)
    html, shown = page(forms.build("http", posted, error=error))
    assert "pw-24" not in html and "bearer-25" not in html
    assert shown.by_name()["setting.url"].value == "https://api.example.com/in"
    assert "give one way to authenticate" in html


@pytest.mark.parametrize("type_", user_types())
def test_markup_in_values_is_shown_as_text(type_: str) -> None:
    hostile = '"><script>alert(1)</script><input name="setting.x'
    _, blank = page(forms.build(type_))
    fields = {
        c.name: hostile for c in forms.controls_of(type_)[1] if not c.secret and c.shape in ("string", "text")
    }
    posted = blank.submit({"name": hostile, **fields})
    try:  # as2 and ftp take these values; the others refuse some: shown again either way
        error: SettingsError | None = refused(type_, posted)
    except AssertionError:
        error = None
    html, shown = page(forms.build(type_, posted, error=error, posted=True))
    assert "<script>" not in html
    named = shown.by_name()  # no field was added by a value
    assert set(named) == {f.name for f in blank.fields}
    assert named["name"].value == hostile
    for name in fields:  # shown as typed (where the type keeps it plain), as text
        assert named[name].value in (hostile, ""), name


def test_fields_the_form_does_not_have_are_refused() -> None:
    for name in ("setting.__class__", "secret.no_such", "clear.bucket", "setting.secrets"):
        _, blank = page(forms.build("s3"))
        posted = {**blank.submit({"name": "s", "setting.bucket": "b"}), name: "1"}
        with pytest.raises(SettingsError) as error:
            forms.parse_form("s3", posted)
        assert "unknown" in str(error.value), name
    # A clear box belongs to a secret only: the settings' blank already means "unset".
    assert forms.parse_form("s3", {"name": "s", "setting.bucket": "b", "clear.access_key_id": "1"}).clear == [
        "access_key_id"
    ]


def test_a_secret_typed_and_cleared_at_once_keeps_the_typed_one() -> None:
    submitted = forms.parse_form("ftp", {"secret.password": "new-26", "clear.password": "1"})
    assert submitted.secrets == {"password": "new-26"} and submitted.clear == []


@pytest.mark.parametrize(("type_", "settings", "secrets"), CASES, ids=CASE_IDS)
def test_every_form_fits_the_bounds_it_is_read_with(
    type_: str, settings: dict[str, Any], secrets: dict[str, Any]
) -> None:
    from urllib.parse import urlencode

    form = forms.build(type_, editing=True, secret_names=list(secrets))
    _, shown = page(form)
    posted = shown.submit(
        {"name": "n", **typed(type_, settings, secrets)}, {c.clear_name for c in form.secrets}
    )
    assert len(posted) + 1 <= forms.FORM_FIELDS  # + the CSRF field
    assert len(urlencode(posted)) < forms.FORM_BYTES // 4


def test_the_page_names_no_secret_of_the_stored_endpoint_even_in_its_ids() -> None:
    html = str(forms.render(forms.build("sftp", editing=True, secret_names=["password", "private_key"])))
    page_ = read_page(html)
    for field in page_.fields:
        if field.name.startswith("secret."):
            assert field.value == ""
    assert html.count("set — leave blank to keep") == 2
    assert 'name="clear.password"' in html and 'name="clear.passphrase"' not in html
