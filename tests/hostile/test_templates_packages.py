"""Issue 14, bad input: an installed template package that fails to import. The others keep
working; the error names the package (`template list`, `template show`, `flow add --template`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.isolation import isolated_home
from tradelane import templates

runner = CliRunner()


def fake_distribution(site: Path, dist: str, module: str, source: str, entry_points: str) -> None:
    """A package installed into `site` as pip would: its module and a dist-info with entry points."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[tradelane.templates]\n{entry_points}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(
        site, "acme-broken-template", "acme_broken_tpl", "import gnupg_that_is_not_here\n",
        "broken = acme_broken_tpl:flow",
    )  # fmt: skip
    fake_distribution(site, "acme-not-a-template", "acme_plain", "flow = 42\n", "plain = acme_plain:flow")
    fake_distribution(
        site, "acme-good-template", "acme_good_tpl", "from tests.templates.sample import sample\n",
        "sample = acme_good_tpl:sample\nsampler = acme_good_tpl:sample",
    )  # fmt: skip
    monkeypatch.syspath_prepend(str(site))
    templates.refresh()
    with isolated_home(tmp_path / "home"):
        yield site
    monkeypatch.undo()
    templates.refresh()


def run(*args: str, ok: bool = True) -> str:
    result = runner.invoke(app, list(args))
    assert (result.exit_code == 0) == ok, result.output
    return " ".join(result.output.split())


def test_a_package_that_fails_to_import_is_named_and_the_others_work(site: Path) -> None:
    rows = {row["name"]: row for row in json.loads(run("template", "list", "--json"))}
    assert rows["broken"]["source"] == "acme-broken-template"
    assert (
        "ModuleNotFoundError" in rows["broken"]["error"]
        and "gnupg_that_is_not_here" in rows["broken"]["error"]
    )
    assert rows["plain"]["source"] == "acme-not-a-template" and "is not a template" in rows["plain"]["error"]
    assert rows["transfer"]["error"] is None and rows["sample"]["error"] is None
    assert (
        "points at template 'sample'" in rows["sampler"]["error"]
    )  # an entry point's name is the template's
    # the fork server preloads the modules of the templates that load, not of the broken ones
    built_in = sorted(target.partition(":")[0] for target in templates.BUILT_IN.values())
    assert templates.preload_modules() == sorted([*built_in, "tests.templates.sample"])
    assert "acme-broken-template" in run("template", "list")
    said = run("template", "show", "broken", ok=False)
    assert "package 'acme-broken-template' failed to load" in said and "Traceback" not in said
    run("partner", "add", "acme", "--password", "Tr4de-lane-Pass")
    run("endpoint", "add", "archive", "--type", "file", "--path", str(site / "archive"))
    said = run(
        "flow", "add", "f", "--source", "mailbox:acme", "--dest", "archive", "--template", "broken", ok=False
    )
    assert "acme-broken-template" in said and "gnupg_that_is_not_here" in said
    run("flow", "add", "g", "--source", "mailbox:acme", "--dest", "archive", "--template", "sample",
        "--param", "recipients=ops")  # fmt: skip
