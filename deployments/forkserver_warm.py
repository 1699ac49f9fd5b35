"""Imported into the runner's fork server: the object stores' SDKs, and S3's service model parsed.

Endpoint types are imported when a run first opens one (core/endpoints/registry.py), so without
this every flow run that pushes to S3 or Azure imported boto3 or azure-storage-blob and parsed
S3's service model inside its `push` task: 1-3 s of CPU per run on a loaded two-core machine,
against a few seconds for the upload of a 256 MiB file (bench/flow_push_bench.py). Done once here,
every run forked from the server starts with them (copy-on-write, frozen by forkserver_guard).
"""

from __future__ import annotations

from core.endpoints import azure, s3

s3.warm()

__all__ = ["azure", "s3"]
