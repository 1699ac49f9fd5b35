"""How a data flow is named in Prefect: one deployment of each template it runs, named after it.

The runner registers the deployments under these names (`serve.py`), the dispatcher and
`tradelane flow run` start runs by them (`flow name/deployment name`, as `run_deployment` and
`read_deployment_by_name` take it). Prefect naming is deployments' business: core knows none of it.
"""

from __future__ import annotations

from flows import names


def deployment_name(data_flow_name: str) -> str:
    """A data flow's deployments (its transfer template's, and its poll's if it polls) bear its name."""
    return data_flow_name


def transfer_deployment(data_flow_name: str) -> str:
    """The deployment that carries a batch of the data flow's files."""
    return f"{names.TRANSFER}/{deployment_name(data_flow_name)}"


def poll_deployment(data_flow_name: str) -> str:
    """The deployment that polls the data flow's source on its schedule."""
    return f"{names.POLL}/{deployment_name(data_flow_name)}"
