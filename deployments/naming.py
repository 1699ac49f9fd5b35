"""How a data flow is named in Prefect: one deployment of each template it runs, named after it.

The runner registers the deployments under these names (`serve.py`), the dispatcher and
`tradelane flow run` start runs by them (`flow name/deployment name`, as `run_deployment` and
`read_deployment_by_name` take it). Prefect naming is deployments' business: core knows none of it.

Data flow names are unique per account, so the deployment name says the account too: the `home`
account's flows keep their bare name (existing run history, `poll/<name>`), another account's
are `<account>:<flow>`. `:` is refused in account and flow names (`core.object_names`) and allowed
by Prefect, so no two flows share a deployment; account names exclude `b2b`, the prefix of the
connection flows' names (`b2b:<id>`).
"""

from __future__ import annotations

from flows import names

BARE_NAMED_ACCOUNT = "home"


def deployment_name(data_flow_name: str, account_name: str) -> str:
    """A data flow's deployments (its transfer template's, and its poll's if it polls) bear its name."""
    if account_name == BARE_NAMED_ACCOUNT or data_flow_name.startswith("b2b:"):
        return data_flow_name
    return f"{account_name}:{data_flow_name}"


def transfer_deployment(data_flow_name: str, account_name: str) -> str:
    """The deployment that carries a batch of the data flow's files, for the `transfer` template."""
    return template_deployment(names.TRANSFER, data_flow_name, account_name)


def template_deployment(flow_name: str, data_flow_name: str, account_name: str) -> str:
    """The deployment that carries a batch of the data flow's files: its template's flow's, by name."""
    return f"{flow_name}/{deployment_name(data_flow_name, account_name)}"


def poll_deployment(data_flow_name: str, account_name: str) -> str:
    """The deployment that polls the data flow's source on its schedule."""
    return f"{names.POLL}/{deployment_name(data_flow_name, account_name)}"


def tags(data_flow_name: str, account_name: str) -> list[str]:
    """The tags every run of the data flow carries: its flow and its account."""
    return [f"flow:{data_flow_name}", f"account:{account_name}"]
