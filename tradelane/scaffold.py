"""`tradelane template new NAME`: a small installable package holding one new flow template.

DIR/NAME/
  pyproject.toml             the entry point `tradelane.templates`: NAME = "<package>.flow:<function>"
  README.md                  what it does, how to test, install and use it
  <package>/__init__.py
  <package>/flow.py          the params model, one task and the flow, registered with @template
  conftest.py                loads the tradelane.testing fixtures
  tests/test_<package>.py    runs the template in-process against a real Prefect test server

Its test passes with `pytest` run in DIR/NAME before anything is installed (pytest puts the folder
on sys.path, see `pythonpath` in its pyproject).
"""

from __future__ import annotations

from pathlib import Path

from tradelane.templates import TemplateError, check_name

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "The {name} flow template for tradelane."
readme = "README.md"
requires-python = ">=3.11"
# It runs inside tradelane (which brings Prefect and pydantic): install it into tradelane's environment.
dependencies = []

# This line is what makes tradelane find the template: group tradelane.templates, the template's
# name = the decorated flow.
[project.entry-points."tradelane.templates"]
{name} = "{package}.flow:{function}"

[tool.setuptools]
packages = ["{package}"]

[tool.pytest.ini_options]
pythonpath = ["."]
testpaths = ["tests"]
asyncio_default_fixture_loop_scope = "function"  # tradelane's environment has pytest-asyncio
"""

FLOW = '''\
"""The `{name}` flow template: deliver the files that start with the text in `starts_with`; reject the
others, saying why. Replace `check` with your own step; `start` and `carry` stay.

A run gets a batch of one data flow's pending transfers: `start` marks them running and loads their
jobs (receipt, data flow, destination), your step looks at each file (streamed, never whole in memory)
and says which to refuse, and `carry` records the refused ones as rejected and pushes the others to the
data flow's destination with its retries.
"""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict

from core.delivery import Job
from core.validators.base import ValidationError
from flows.transfer import carry
from tasks.push import push
from tasks.start import start
from tradelane.templates import template


class Params(BaseModel):
    """What a data flow that runs `{name}` sets with `--param key=value` (or `params:` in YAML)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    starts_with: str = ""
    """The text every file must begin with; a file that does not is rejected. Empty: every file."""


def refusal(job: Job, starts_with: str) -> ValidationError | None:
    """Why this file is refused, or None. Reads only the first bytes of the file."""
    wanted = starts_with.encode()
    with job.open_source().open_read(job.source_path) as stream:
        head = stream.read(len(wanted))
    if head != wanted:
        return ValidationError("{name}", f"does not start with {{starts_with!r}}")
    return None


@task(name="check", cache_policy=NO_CACHE)
async def check(jobs: list[Job], starts_with: str) -> list[ValidationError | None]:
    """Look at each file of the batch; one result per job, in order."""
    return [await to_thread.run_sync(refusal, job, starts_with) for job in jobs]


@template("{name}", params=Params, tasks=[start, check, push])
@flow(name="{name}", persist_result=False)
async def {function}(data_flow_id: int, transfer_ids: list[int], params: Params) -> State[Any]:
    """Deliver the files that start with `starts_with`; reject the others."""
    started = await start(transfer_ids, flow_run.get_id())
    refused = await check(started.jobs, params.starts_with) if started.jobs else None
    return await carry(started, refused)
'''

CONFTEST = '''\
"""The tradelane.testing fixtures (`tradelane_harness`) for this package's tests."""

pytest_plugins = ["tradelane.testing"]
'''

TEST = '''\
"""The `{name}` template, run in-process against a real Prefect test server (tradelane.testing)."""

from __future__ import annotations

from tradelane.testing import TemplateHarness

import {package}.flow  # noqa: F401  (registers the template, installed or not)


def test_files_that_start_right_are_delivered_the_others_rejected(tradelane_harness: TemplateHarness) -> None:
    flow = tradelane_harness.data_flow("{name}", params={{"starts_with": "HELLO"}})
    run = flow.run({{"good.txt": b"HELLO world", "bad.txt": b"goodbye"}})
    assert run.delivered == {{"good.txt": b"HELLO world"}}
    assert run.states == {{"good.txt": "delivered", "bad.txt": "rejected"}}
    assert "does not start with 'HELLO'" in run.errors["bad.txt"]


def test_a_param_the_template_does_not_have_is_refused(tradelane_harness: TemplateHarness) -> None:
    import pytest

    from tradelane.templates import TemplateError

    with pytest.raises(TemplateError, match="no param 'start_with'"):
        tradelane_harness.data_flow("{name}", params={{"start_with": "HELLO"}})
'''

README = """\
# {name}: a tradelane flow template

Delivers the files that start with the text in the `starts_with` param and rejects the others,
saying why. Written from `tradelane template new {name}`; change `{package}/flow.py` to do your step.

    pytest                                   # runs the template in-process (tradelane.testing)
    pip install -e .                         # into tradelane's environment; then restart `tradelane up`
    tradelane template show {name}
    tradelane flow add my-flow --source mailbox:acme --dest archive \\
        --template {name} --param starts_with=HELLO

See tradelane's docs/templates.md.
"""


def names_for(name: str) -> dict[str, str]:
    """The template's name → its package, function and distribution names."""
    snake = name.replace("-", "_")
    return {
        "name": name,
        "package": f"{snake}_template",
        "function": snake if snake.isidentifier() and not snake[0].isdigit() else f"t_{snake}",
        "dist": f"tradelane-template-{name}",
    }


def write(name: str, directory: Path) -> Path:
    """Write the package into `directory/name` (created; refused if it exists); its path."""
    try:
        check_name(name)
    except TemplateError:
        raise TemplateError(
            "a template's name is lowercase letters, digits and -, "
            f"such as 'stamp' or 'edi-split', not {name!r}"
        ) from None
    values = names_for(name)
    root = directory / name
    if root.exists():
        raise FileExistsError(f"{root} exists already: choose another --dir or name")
    package = root / values["package"]
    files = {
        root / "pyproject.toml": PYPROJECT,
        root / "README.md": README,
        package / "__init__.py": '"""The {name} flow template for tradelane."""\n',
        package / "flow.py": FLOW,
        root / "conftest.py": CONFTEST,
        root / "tests" / f"test_{values['package']}.py": TEST,
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(**values))
    return root
