"""Dead flow runs noticed by Prefect: an automation marks a run Crashed when its heartbeats stop.

A flow run sends `prefect.flow-run.heartbeat` every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds
while it runs. When the machine, the worker or the runner dies with it (SIGKILL, power), nothing
says so; Prefect's documented answer is a proactive automation: after a heartbeat (or the run
entering Pending or Running), expect another heartbeat or a final state within a window, else mark
the run Crashed. The dispatcher's `recover()` then requeues its unfinished transfers.

The time from a death to the requeue is at most the window, plus the server's proactive evaluation
period, plus the dispatcher's recovery interval: `window_seconds` keeps that within
TRADELANE_DEAD_RUN_SECONDS. The state change is not forced, so a run that reached a final state
(Completed, Failed…) is never turned Crashed by a late evaluation.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from deployments.heartbeat import HEARTBEAT_VARIABLE, DeadRunSettingError, heartbeat_seconds

log = logging.getLogger("tradelane.dead_runs")

AUTOMATION_NAME = "tradelane: flow runs whose heartbeats stopped are crashed"
# How often the Prefect server evaluates proactive automations (its default, which `up` keeps).
PROACTIVE_GRANULARITY_SECONDS = 5.0
# How often the dispatcher checks in-flight transfers against their runs' states.
RECOVERY_INTERVAL_SECONDS = 5.0
# The automation's action, the state change and the dispatcher's pass over in-flight transfers.
ACTING_SECONDS = 2.0
# A heartbeat may come late on a busy machine (it is sent, then the thread sleeps the period):
# the window leaves at least this much room past one period, so a slow run is not taken for dead.
LATE_HEARTBEAT_ROOM_SECONDS = 10.0
# The events a live run sends or causes: each restarts the wait; a final state ends it.
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
STARTS = {HEARTBEAT_EVENT, "prefect.flow-run.Pending", "prefect.flow-run.Running"}
ENDS = {
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
    "prefect.flow-run.Cancelling",
    "prefect.flow-run.Paused",
    "prefect.flow-run.Suspended",
}
CRASH_MESSAGE = "no heartbeat from this flow run: its worker or machine died (tradelane requeues its files)"


# From the window's end to the requeue, at most: Prefect's check, its action, the dispatcher's check.
_CHECKS_SECONDS = PROACTIVE_GRANULARITY_SECONDS + ACTING_SECONDS + RECOVERY_INTERVAL_SECONDS


def minimum_dead_run_seconds(heartbeat: int) -> float:
    return heartbeat + LATE_HEARTBEAT_ROOM_SECONDS + _CHECKS_SECONDS


def window_seconds(dead_run_seconds: float, heartbeat: int) -> float:
    """How long the automation waits for the next sign of life, so that a death is requeued within
    `dead_run_seconds`; refused when that leaves too little room past one heartbeat period."""
    least = minimum_dead_run_seconds(heartbeat)
    if dead_run_seconds < least:
        told = heartbeat + LATE_HEARTBEAT_ROOM_SECONDS
        raise DeadRunSettingError(
            f"TRADELANE_DEAD_RUN_SECONDS={dead_run_seconds:g} is too short: flow runs send a heartbeat "
            f"every {heartbeat} s ({HEARTBEAT_VARIABLE}), so a dead run can be told from a slow one "
            f"only after {told:g} s, plus {_CHECKS_SECONDS:g} s for Prefect's check, its action and "
            f"the dispatcher's check: set at least {least:g}"
        )
    return dead_run_seconds - _CHECKS_SECONDS


def automation(dead_run_seconds: float) -> AutomationCore:
    within = window_seconds(dead_run_seconds, heartbeat_seconds())
    return AutomationCore(
        name=AUTOMATION_NAME,
        description=(
            f"Marks a flow run Crashed when no heartbeat, start or final state came from it for {within:g} s "
            "(its worker or machine died). Made by tradelane (TRADELANE_DEAD_RUN_SECONDS); the dispatcher "
            "then carries the run's files again."
        ),
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            after=STARTS,
            expect=STARTS | ENDS,
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within),
        ),
        # Not forced: Prefect refuses to leave a final state, so a run that finished stays finished.
        actions=[ChangeFlowRunState(name=None, state=StateType.CRASHED, message=CRASH_MESSAGE, force=False)],
    )


async def ensure_automation(client: PrefectClient, dead_run_seconds: float) -> str:
    """Create the automation, or bring the one there up to date; several dispatchers starting at
    once may each create one, so any extra copies are removed. Returns "created", "updated" or "kept"."""
    wanted = automation(dead_run_seconds)
    found = sorted(await client.read_automations_by_name(AUTOMATION_NAME), key=lambda a: str(a.id))
    if not found:
        await client.create_automation(wanted)
        log.info("created the Prefect automation %r", AUTOMATION_NAME)
        return "created"
    first, extra = found[0], found[1:]
    for duplicate in extra:
        await client.delete_automation(duplicate.id)
    if AutomationCore.model_validate(first.model_dump(exclude={"id"})) == wanted:
        return "kept"
    await client.update_automation(first.id, wanted)
    log.info("updated the Prefect automation %r", AUTOMATION_NAME)
    return "updated"
