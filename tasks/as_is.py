"""A task argument Prefect hands over as it is, without walking into it."""

from __future__ import annotations

from typing import TypeVar, cast

from prefect.utilities.annotations import opaque

T = TypeVar("T")


def as_is(value: T) -> T:
    """`value`, marked so that Prefect's task engine looks at it but not into it.

    Prefect walks every argument of a task call twice, object by object: once to record upstream
    task runs for the run's graph, once to swap futures and states for their results. For a batch
    of 200 jobs (each a file's receipt, data flow and endpoints) that was ~11 % of a flow run's CPU
    in a burst's profile. Our tasks' arguments are plain data read from the store, never futures or
    states. `value` itself is still looked at, so a list another task returned (`start`'s jobs)
    still links that task to this one in the run's graph; the task receives `value` itself."""
    return cast(T, opaque(value))
