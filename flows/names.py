"""The templates' flow names, as the Prefect UI shows them and deployments are addressed by them.

Kept apart from the flows themselves so that naming a deployment (`deployments/naming.py`) does not
import the flows, their tasks and Prefect's task machinery into the API process and the CLI.
"""

TRANSFER = "transfer"
POLL = "poll"
NOTIFY = "tradelane-notify"
