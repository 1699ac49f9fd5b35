"""The deployment recipes in deploy/ cannot rot silently.

Docker and Kubernetes are not on the test machine, so the recipes are checked with what is: the
Compose file against the Compose specification's JSON schema (vendored by check-jsonschema), the
manifests against Kubernetes' OpenAPI schemas (kubernetes-validate, strict), every environment
variable a tradelane container is given against the settings tradelane, Prefect and boto3 read,
every container's command against the `tradelane` CLI, each role's environment against what that
role refuses to start without, and the recipes' one-shot steps (the bucket, the TLS certificate and
SFTP host keys) by running their own code here, against a moto server and a folder.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from core.config import Settings, get_settings
from tests.servers import moto_client, require_tool

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
# Oldest Kubernetes release the manifests must be valid for (kubernetes-validate ships its schemas).
K8S_VERSION = "1.30.0"
# What the recipes give boto3 for the S3 store; test_boto3_takes_the_s3_store_from_the_recipe
# shows boto3 reads each of them.
AWS_VARIABLES = {"AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
# The one-shot steps that run code of their own (python -c); each is run below. Kubernetes has one
# more: the worker pods' init container migrates the store (Compose's workers wait for the API's
# health instead, which answers once the API has migrated it).
ONE_SHOT = {"bucket", "keys"}
K8S_ONE_SHOT = {*ONE_SHOT, "store"}
# The roles plus workers are the whole cluster: `serve dispatcher` keeps the deployments
# registered (`python -m deployments.serve` is `up`'s runner child, not a role of a cluster).
ROLES = {"prefect", "api", "mailboxes", "dispatcher", "worker"}


# --- reading the recipes ----------------------------------------------------------------------------


class MissingVariable(LookupError):
    """A ${VAR:?message} whose variable is unset: Compose refuses to start, naming it."""


_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))"
)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation (the forms the recipes use: $$, ${X}, ${X:-d}, ${X-d},
    ${X:?msg}, ${X?msg}); an unset variable without a default is an error, not an empty string."""

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg, given = match["op"], match["arg"], env.get(name)
        if op == ":-":
            return given or arg
        if op == "-":
            return arg if given is None else given
        if op in (":?", "?") and (given is None or (op == ":?" and not given)):
            raise MissingVariable(f"{name}: {arg}")
        if given is None:
            raise MissingVariable(name)
        return given

    return _REFERENCE.sub(one, value)


def interpolated(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolated(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolated(value, env) for key, value in node.items()}
    return node


def read_dotenv(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return {key: value for key, value in pairs}


@pytest.fixture(scope="module")
def dotenv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The secrets file deploy/make-env.sh writes, as a user makes it before the first start."""
    path = tmp_path_factory.mktemp("recipes") / ".env"
    subprocess.run(
        ["sh", str(DEPLOY / "make-env.sh"), str(path)], check=True, capture_output=True, timeout=30
    )
    return read_dotenv(path)


@pytest.fixture(scope="module")
def compose(dotenv: dict[str, str]) -> dict[str, Any]:
    """docker-compose.yml as Compose sees it with that file: merge keys resolved, variables filled in
    (a bucket of this test's own, so the moto server shared with other tests has it only from here)."""
    raw = yaml.safe_load(COMPOSE.read_text())
    chosen = {"TRADELANE_BUCKET": "recipes-bucket", "TRADELANE_PUBLIC_HOST": "files.example.test"}
    return interpolated(raw, {**dotenv, **chosen})  # type: ignore[no-any-return]


def manifests(folder: Path = K8S) -> list[dict[str, Any]]:
    return [
        doc for path in sorted(folder.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc
    ]


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's stages, each a list of instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in (line.strip() for line in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def image_entrypoint() -> list[str]:
    (line,) = [line for line in dockerfile_stages()[-1] if line.startswith("ENTRYPOINT ")]
    entrypoint: list[str] = json.loads(line.removeprefix("ENTRYPOINT "))
    return entrypoint


def tradelane_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the tradelane image (built from deploy/Dockerfile)."""
    return {name: s for name, s in compose["services"].items() if s.get("build", {}).get("dockerfile")}


def compose_argv(service: dict[str, Any]) -> list[str]:
    """What a service runs: an entrypoint of its own clears the image's CMD (as Compose does)."""
    if "entrypoint" in service:
        return [*service["entrypoint"], *service.get("command", [])]
    return [*image_entrypoint(), *service.get("command", ["--help"])]


def k8s_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, container) of every container that runs the tradelane image."""
    for doc in manifests():
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            if container["image"].startswith("tradelane:"):
                yield container["name"], container


def k8s_pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in manifests():
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        if any(c["image"].startswith("tradelane:") for c in spec.get("containers", [])):
            yield doc["metadata"]["name"], spec


def k8s_argv(container: dict[str, Any]) -> list[str]:
    return [*(container.get("command") or image_entrypoint()), *container.get("args", [])]


def config_map(name: str) -> dict[str, str]:
    (found,) = [d for d in manifests() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name]
    data: dict[str, str] = found["data"]
    return data


def k8s_environment(container: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet makes it: envFrom first, then env in order, each
    `$(NAME)` replaced by a variable defined before it; `secrets` stands for the Secret's values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, "secrets are named one by one (env), so they can be checked"
        env.update(config_map(source["configMapRef"]["name"]))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "tradelane-secrets"
            env[item["name"]] = secrets[ref["key"]]
    return env


def k8s_referenced(container: dict[str, Any]) -> set[str]:
    """Variables a container defines only to build others from (`$(POSTGRES_PASSWORD)`)."""
    values = [item.get("value", "") for item in container.get("env", [])]
    return {name for value in values for name in re.findall(r"\$\((\w+)\)", value)}


# --- what tradelane, Prefect and boto3 read ----------------------------------------------------------


def prefect_setting_names() -> set[str]:
    from prefect.settings import Settings as PrefectSettings
    from prefect.settings.legacy import _get_valid_setting_names

    return set(_get_valid_setting_names(PrefectSettings))


def known_variable(name: str) -> bool:
    """A variable tradelane (core/config.py), Prefect or boto3 reads."""
    if name.startswith("TRADELANE_"):
        return name.removeprefix("TRADELANE_").lower() in Settings.model_fields
    if name.startswith("PREFECT_"):
        return name in prefect_setting_names()
    return name in AWS_VARIABLES


def test_the_variable_check_tells_known_from_unknown() -> None:
    assert known_variable("TRADELANE_DATABASE_URL") and known_variable("PREFECT_API_URL")
    assert known_variable("PREFECT_SERVER_DATABASE_CONNECTION_URL")
    assert not known_variable("TRADELANE_DATABASE_URI")  # a typo
    assert not known_variable("PREFECT_API_AUTH")
    assert not known_variable("AWS_S3_ENDPOINT")


def test_every_variable_of_a_compose_tradelane_service_is_one_tradelane_prefect_or_boto3_reads(
    compose: dict[str, Any],
) -> None:
    unknown = {
        (name, variable)
        for name, service in tradelane_services(compose).items()
        for variable in service.get("environment", {})
        if not known_variable(variable)
    }
    assert not unknown


def test_every_variable_of_a_kubernetes_tradelane_container_is_known_or_only_builds_another() -> None:
    unknown = set()
    for name, container in k8s_containers():
        names = [item["name"] for item in container.get("env", [])]
        for source in container.get("envFrom", []):
            names += list(config_map(source["configMapRef"]["name"]))
        sources = k8s_referenced(container)
        unknown |= {(name, v) for v in names if not known_variable(v) and v not in sources}
    assert not unknown


def test_boto3_takes_the_s3_store_from_the_recipe(compose: dict[str, Any], dotenv: dict[str, str]) -> None:
    env = compose["services"]["api"]["environment"]
    assert set(env) >= AWS_VARIABLES
    with pytest.MonkeyPatch.context() as patch:
        for variable in [v for v in os.environ if v.startswith("AWS_")]:
            patch.delenv(variable)
        for variable in AWS_VARIABLES:
            patch.setenv(variable, env[variable])
        client = boto3.client("s3")
        credentials = boto3.Session().get_credentials()
    assert client.meta.endpoint_url == "http://minio:9000"  # the minio service
    assert client.meta.region_name == "us-east-1"
    assert credentials is not None
    assert (credentials.access_key, credentials.secret_key) == (
        dotenv["MINIO_ROOT_USER"],
        dotenv["MINIO_ROOT_PASSWORD"],
    )
    assert "minio" in compose["services"]


# --- the roles are given what they refuse to start without ------------------------------------------


def check_role(argv: list[str], env: dict[str, str], home: Path) -> None:
    """Fails the way the role would refuse to start if `env` lacks something it must share."""
    from cli.serve import PREFECT, SECRET_KEY, STORAGE, STORE, check_prefect_server_auth, check_shared
    from cli.supervisor import prefect_environment

    storage = env["TRADELANE_STORAGE_URL"]
    bucket, _, prefix = storage.removeprefix("s3://").partition("/")
    assert storage.startswith("s3://") and bucket and prefix, storage
    with pytest.MonkeyPatch.context() as patch:
        for variable in [v for v in os.environ if v.startswith(("TRADELANE_", "PREFECT_", "AWS_"))]:
            patch.delenv(variable)
        for variable, value in env.items():
            patch.setenv(variable, value)
        patch.setenv("TRADELANE_HOME", str(home))
        get_settings.cache_clear()
        try:
            settings = get_settings()
            assert settings.storage_url is not None and settings.storage_url.startswith("s3://")
            match argv:
                case ["tradelane", "serve", "prefect"]:
                    check_prefect_server_auth(settings)
                    server = prefect_environment(settings, own_server=True)
                    assert server["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith(
                        "postgresql+asyncpg://"
                    )
                    assert server["PREFECT_SERVER_API_HOST"] == "0.0.0.0"  # reachable by the others
                case ["tradelane", "serve", role]:
                    check_shared(role, settings)
                    prefect_environment(settings)  # no PREFECT_* contradicting another
                case ["tradelane", "worker"]:
                    assert all(shared.given(settings) for shared in (STORE, SECRET_KEY, STORAGE, PREFECT))
                    # A worker sends Prefect's own setting when it is given (cli/worker.py); equal to ours.
                    assert os.environ["PREFECT_API_AUTH_STRING"] == settings.prefect_auth
                    prefect_environment(settings)
                case _:
                    raise AssertionError(f"not a role: {argv}")
            assert settings.database_url is not None and settings.database_url.startswith(
                "postgresql+psycopg://"
            )
            assert settings.secret_key is not None
            Fernet(settings.secret_key)  # a usable key
        finally:
            get_settings.cache_clear()


def test_every_compose_role_is_given_what_it_must_share(compose: dict[str, Any], tmp_path: Path) -> None:
    roles = {n: s for n, s in tradelane_services(compose).items() if n not in ONE_SHOT}
    assert set(roles) == ROLES
    for name, service in roles.items():
        check_role(compose_argv(service), service["environment"], tmp_path / name)


def test_every_kubernetes_role_is_given_what_it_must_share(dotenv: dict[str, str], tmp_path: Path) -> None:
    roles = {name: c for name, c in k8s_containers() if name not in K8S_ONE_SHOT}
    assert set(roles) == ROLES
    for name, container in roles.items():
        check_role(k8s_argv(container), k8s_environment(container, dotenv), tmp_path / name)


def test_a_role_missing_a_shared_setting_fails_the_check(compose: dict[str, Any], tmp_path: Path) -> None:
    from cli.serve import RoleSettingError

    env = dict(compose["services"]["mailboxes"]["environment"])
    del env["TRADELANE_SFTP_HOST_KEY_DIR"]
    with pytest.raises(RoleSettingError, match="TRADELANE_SFTP_HOST_KEY_DIR"):
        check_role(["tradelane", "serve", "mailboxes"], env, tmp_path)


def test_compose_and_kubernetes_give_each_role_the_same_settings(compose: dict[str, Any]) -> None:
    services = tradelane_services(compose)
    for name, container in k8s_containers():
        k8s = {item["name"] for item in container.get("env", [])} - k8s_referenced(container)
        for source in container.get("envFrom", []):
            k8s |= set(config_map(source["configMapRef"]["name"]))
        service = services["worker" if name == "store" else name]  # its init container
        assert k8s == set(service.get("environment", {})), name
        if name != "store":
            assert k8s_argv(container) == compose_argv(service), name


def test_every_tradelane_pod_is_spared_kubernetes_service_variables() -> None:
    # A Service named `prefect` would otherwise put PREFECT_PORT, PREFECT_SERVICE_HOST, ... into every
    # pod: variables in Prefect's own namespace that no one set.
    pods = dict(k8s_pod_specs())
    assert {*ROLES, "bucket"} <= set(pods)
    assert all(spec.get("enableServiceLinks") is False for spec in pods.values())


# --- every command exists ----------------------------------------------------------------------------


def check_command(argv: list[str]) -> None:
    from cli.main import app

    match argv:
        case ["tradelane", *rest]:
            result = CliRunner().invoke(app, [*rest, "--help"])
            assert result.exit_code == 0, f"tradelane {' '.join(rest)}: {result.output}"
        case ["python", "-c", code]:
            compile(code, "<recipe>", "exec")
        case _:
            raise AssertionError(f"not a command of the tradelane image: {argv}")


def test_the_command_check_refuses_what_does_not_exist() -> None:
    with pytest.raises(AssertionError):
        check_command(["tradelane", "serve", "mailbox"])
    with pytest.raises(AssertionError):
        check_command(["tradelane", "worker", "--limits", "2"])
    with pytest.raises(AssertionError, match="not a command of the tradelane image"):
        check_command(["python", "-m", "deployments.serve"])  # `up`'s runner child, not a role


def test_every_compose_command_exists(compose: dict[str, Any]) -> None:
    for service in tradelane_services(compose).values():
        check_command(compose_argv(service))
    assert {n for n, s in tradelane_services(compose).items() if compose_argv(s)[1] == "-c"} == ONE_SHOT


def test_every_kubernetes_command_exists() -> None:
    for _name, container in k8s_containers():
        check_command(k8s_argv(container))


def test_the_health_checks_ask_what_the_roles_serve(compose: dict[str, Any]) -> None:
    from api.app import create_app

    assert "/api/health" in create_app().openapi()["paths"]
    checks = {
        name: " ".join(s["healthcheck"]["test"])
        for name, s in tradelane_services(compose).items()
        if "healthcheck" in s
    }
    assert "http://127.0.0.1:8080/api/health" in checks["api"]
    assert "http://127.0.0.1:4200/api/health" in checks["prefect"]  # Prefect's own
    assert "2222" in checks["mailboxes"] and "2121" in checks["mailboxes"]
    for name, condition in compose["services"]["dispatcher"]["depends_on"].items():
        expected = {"postgres": "service_healthy", "prefect": "service_healthy"}
        assert condition["condition"] == expected.get(name, "service_completed_successfully")
    # A worker runs flows against the store: it starts once the API (which migrates it) answers.
    assert compose["services"]["worker"]["depends_on"]["api"] == {"condition": "service_healthy"}
    assert {"postgres", "prefect"} <= set(compose["services"]["worker"]["depends_on"])


# --- the one-shot steps, run ------------------------------------------------------------------------


def run_snippet(code: str, env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TRADELANE_", "PREFECT_", "AWS_"))}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_bucket_step_makes_the_storage_bucket_once(compose: dict[str, Any], moto_server: str) -> None:
    service = compose["services"]["bucket"]
    env = {k: v for k, v in service["environment"].items() if k in AWS_VARIABLES | {"TRADELANE_STORAGE_URL"}}
    env["AWS_ENDPOINT_URL_S3"] = moto_server  # in place of the minio service
    code = compose_argv(service)[2]
    assert "recipes-bucket is ready" in run_snippet(code, env)
    assert "recipes-bucket is ready" in run_snippet(code, env)  # started again: nothing to do
    assert "recipes-bucket" in {b["Name"] for b in moto_client(moto_server).list_buckets()["Buckets"]}
    (job,) = [c for name, c in k8s_containers() if name == "bucket"]
    assert k8s_argv(job)[2] == code  # the same step in both recipes


def test_the_keys_step_makes_the_certificate_and_host_keys_the_mailboxes_are_given(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    from core import tls
    from mailboxes.sftp.hostkeys import load_host_keys

    keys, mailboxes = compose["services"]["keys"], compose["services"]["mailboxes"]
    code = compose_argv(keys)[2]
    env = {**keys["environment"], "TRADELANE_HOME": str(tmp_path)}
    first = run_snippet(code, env)
    assert first == run_snippet(code, env)  # kept, not made again: partners pinned them
    # The mailboxes read them where the keys step's home (its volume) is mounted.
    (volume,) = keys["volumes"]
    name, home = volume.split(":")
    assert home == keys["environment"]["TRADELANE_HOME"]
    assert f"{name}:{home}:ro" in mailboxes["volumes"]
    given = mailboxes["environment"]
    cert = tmp_path / Path(given["TRADELANE_TLS_CERT_FILE"]).relative_to(home)
    key = tmp_path / Path(given["TRADELANE_TLS_KEY_FILE"]).relative_to(home)
    tls.check_pair(cert, key)
    assert tls.fingerprint(cert) in first
    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "files.example.test" in names.value.get_values_for_type(x509.DNSName)  # TRADELANE_PUBLIC_HOST
    assert given["TRADELANE_SFTP_HOST_KEY_DIR"] == home
    assert len(load_host_keys(tmp_path)) == 2
    (init,) = [c for n, c in k8s_containers() if n == "keys"]
    assert k8s_argv(init)[2] == code


# --- the schemas ------------------------------------------------------------------------------------


def compose_schema() -> dict[str, Any]:
    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(vendored.read_text())
    return schema


def test_the_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    validator.validate({k: v for k, v in compose.items() if not k.startswith("x-")})
    broken = {
        **compose,
        "services": {**compose["services"], "api": {**compose["services"]["api"], "comand": []}},
    }
    assert not validator.is_valid(broken)  # the schema does catch a misspelt key
    named = set(compose["volumes"])
    for name, service in compose["services"].items():
        assert set(service.get("depends_on", {})) <= set(compose["services"]), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (source.startswith("./") and (DEPLOY / source).is_file()) or source in named, volume


def test_compose_refuses_to_start_without_the_secrets(dotenv: dict[str, str]) -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    for secret in (
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "TRADELANE_SECRET_KEY",
        "TRADELANE_PREFECT_AUTH",
    ):
        without = {k: v for k, v in dotenv.items() if k != secret}
        with pytest.raises(MissingVariable, match=f"{secret}: set {secret} in deploy/.env"):
            interpolated(raw, without)


def test_the_kubernetes_manifests_are_valid_in_strict_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    # kubernetes-validate parses its schema files (the definitions: 1.2 MB) again for every document.
    schemas = functools.cache(kubernetes_validate.utils.schema_contents)
    monkeypatch.setattr(kubernetes_validate.utils, "schema_contents", schemas)
    docs = manifests() + manifests(K8S / "examples")
    kinds = {doc["kind"] for doc in docs}
    assert {"Namespace", "ConfigMap", "Secret", "StatefulSet", "Deployment", "Service", "Job"} <= kinds
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    (worker,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "worker"]
    typo = {**worker, "spec": {**worker["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSION, strict=True)


def test_the_secret_example_has_the_keys_make_env_writes(dotenv: dict[str, str]) -> None:
    (secret,) = manifests(K8S / "examples")
    assert set(secret["stringData"]) == set(dotenv)
    used = {
        item["valueFrom"]["secretKeyRef"]["key"]
        for doc in manifests()
        for spec in [doc.get("spec", {}).get("template", {}).get("spec", {})]
        for container in [*spec.get("initContainers", []), *spec.get("containers", [])]
        for item in container.get("env", [])
        if "valueFrom" in item
    }
    assert used == set(dotenv)


# --- the image --------------------------------------------------------------------------------------


def test_the_image_runs_tradelane_as_a_user_that_is_not_root_without_build_tools() -> None:
    *builds, final = dockerfile_stages()
    assert builds, "a build stage keeps compilers out of the image"
    (user,) = [line.split()[1] for line in final if line.startswith("USER ")]
    assert user.split(":")[0] not in ("root", "0")
    text = " ".join(final)
    assert not re.search(r"build-essential|\bgcc\b|\bg\+\+|\bmake\b", text)
    assert "COPY --from=build /opt/tradelane /opt/tradelane" in text
    assert image_entrypoint() == ["tradelane"]


def test_the_image_installs_the_package_as_make_does() -> None:
    build = " ".join(dockerfile_stages()[0])
    assert "-c constraints.txt '.[postgres]'" in build  # the pinned versions, and PostgreSQL's driver
    makefile = (ROOT / "Makefile").read_text()
    for step in (
        "pip uninstall -q -y oscrypto",
        "--no-deps --force-reinstall -c constraints.txt elements-oscrypto",
    ):
        assert step in makefile  # the swap below mirrors make's
    assert "pip uninstall -y oscrypto" in build
    assert "--no-deps --force-reinstall -c constraints.txt elements-oscrypto" in build
    assert 'python -c "import pyas2lib, cli.main"' in build


def test_the_image_copies_every_package_the_distribution_has() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copies = [line.split()[1:-1] for line in dockerfile_stages()[0] if line.startswith("COPY ")]
    copied = {source for sources in copies for source in sources}
    assert packages <= copied
    assert {"pyproject.toml", "constraints.txt", "README.md"} <= copied
    allowed = {
        line.strip("!/")
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert copied <= allowed


INSTALLED_CHECK = """
import sys
from pathlib import Path

import api, cli, core, migrations
target = Path(sys.argv[1])
for package in (api, cli, core, migrations):
    assert Path(package.__file__).is_relative_to(target), package.__file__

from fastapi.testclient import TestClient
from api.app import create_app
from api.web.accept_service import CoreAcceptService
with TestClient(create_app(accept_service=CoreAcceptService())) as client:
    for page in ("/login", "/docs"):
        answer = client.get(page)
        assert answer.status_code == 200, (page, answer.status_code, answer.text[:300])

from cli.main import main
sys.argv = ["tradelane", "partner", "list"]  # the store made by the migrations the package carries
main()
"""


def test_what_the_build_stage_copies_installs_a_tradelane_that_runs_outside_the_source_tree(
    tmp_path: Path,
) -> None:
    """The build stage's `pip install .`, done here from exactly what the Dockerfile copies: the
    package data (migrations, web templates and assets) travels with it."""
    source = tmp_path / "src"
    source.mkdir()
    for line in dockerfile_stages()[0]:
        if line.startswith("COPY "):
            for name in line.split()[1:-1]:
                copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
                copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheel = tmp_path / "wheel"
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", str(wheel), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (package,) = wheel.glob("tradelane-*.whl")
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(tmp_path / "target"), str(package)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    home = tmp_path / "home"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TRADELANE_", "PREFECT_"))}
    env = {**clean, "PYTHONPATH": str(tmp_path / "target"), "TRADELANE_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", INSTALLED_CHECK, str(tmp_path / "target")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (home / "tradelane.db").is_file()


def test_the_number_of_workers_is_one_setting(dotenv: dict[str, str]) -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    assert interpolated(raw, dotenv)["services"]["worker"]["deploy"]["replicas"] == "2"
    four = interpolated(raw, {**dotenv, "TRADELANE_WORKERS": "4"})
    assert four["services"]["worker"]["deploy"]["replicas"] == "4"
    deployments = {d["metadata"]["name"]: d["spec"] for d in manifests() if d["kind"] == "Deployment"}
    assert (deployments["worker"]["replicas"], deployments["api"]["replicas"]) == (2, 2)
    # The mailboxes' keys volume is ReadWriteOnce: one pod, the old one gone before the new starts.
    assert deployments["mailboxes"]["replicas"] == 1
    assert deployments["mailboxes"]["strategy"] == {"type": "Recreate"}


def test_the_store_step_migrates_the_store_before_a_worker_pod_runs_flows(tmp_path: Path) -> None:
    (init,) = [c for n, c in k8s_containers() if n == "store"]
    worker = next(d for d in manifests() if d["kind"] == "Deployment" and d["metadata"]["name"] == "worker")
    assert worker["spec"]["template"]["spec"]["initContainers"] == [init]
    database = tmp_path / "store.db"
    env = {"TRADELANE_HOME": str(tmp_path), "TRADELANE_DATABASE_URL": f"sqlite:///{database}"}
    code = k8s_argv(init)[2]
    assert "the store is migrated" in run_snippet(code, env)
    assert "the store is migrated" in run_snippet(code, env)  # every start: nothing left to do
    import sqlite3

    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"alembic_version", "transfer", "receipt", "dataflow"} <= tables


# --- Compose itself ---------------------------------------------------------------------------------


def compose_config(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` (Compose 1.29, Debian's; it needs no Docker daemon) of a copy of
    deploy/ in `folder`, with `env` as its .env file."""
    tool = require_tool("docker-compose")
    copy = folder / "deploy"
    copy.mkdir(parents=True, exist_ok=True)
    # 1.29 predates the top-level `name` (Compose v2's project name), which the schema test covers.
    text = COMPOSE.read_text()
    assert text.count("\nname: tradelane\n") == 1
    (copy / COMPOSE.name).write_text(text.replace("\nname: tradelane\n", "\n"))
    shutil.copy2(DEPLOY / "postgres-init.sql", copy)
    (copy / ".env").write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    ours = ("TRADELANE_", "PREFECT_", "AWS_", "POSTGRES_", "MINIO_", "COMPOSE_", "DOCKER_")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    command = [tool, "-f", str(copy / COMPOSE.name), "--env-file", str(copy / ".env"), "config"]
    return subprocess.run(command, env=clean, cwd=folder, capture_output=True, text=True, timeout=120)


def test_compose_reads_the_file_as_these_tests_do(
    compose: dict[str, Any], dotenv: dict[str, str], tmp_path: Path
) -> None:
    chosen = {"TRADELANE_BUCKET": "recipes-bucket", "TRADELANE_PUBLIC_HOST": "files.example.test"}
    done = compose_config(tmp_path, {**dotenv, **chosen})
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert set(config["services"]) == set(compose["services"])
    for name, service in compose["services"].items():
        theirs = config["services"][name]
        assert theirs.get("environment", {}) == service.get("environment", {}), name
        for key in ("entrypoint", "command"):
            assert theirs.get(key) == service.get(key), (name, key)
        assert set(theirs.get("depends_on", {})) == set(service.get("depends_on", {})), name
        if "build" in service:
            assert theirs["build"] == {"context": str(tmp_path), "dockerfile": "deploy/Dockerfile"}
    assert config["services"]["worker"]["deploy"]["replicas"] == 2
    init = config["services"]["postgres"]["volumes"][1]
    assert init.split(":")[0] == str(tmp_path / "deploy" / "postgres-init.sql")


def test_compose_refuses_a_start_without_a_secret(dotenv: dict[str, str], tmp_path: Path) -> None:
    done = compose_config(tmp_path, {k: v for k, v in dotenv.items() if k != "TRADELANE_SECRET_KEY"})
    assert done.returncode != 0
    assert "set TRADELANE_SECRET_KEY in deploy/.env" in done.stderr


def test_make_env_never_replaces_the_secrets_it_made(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    make = ["sh", str(DEPLOY / "make-env.sh"), str(path)]
    subprocess.run(make, check=True, capture_output=True, timeout=30)
    first = path.read_text()
    assert path.stat().st_mode & 0o077 == 0  # private
    again = subprocess.run(make, capture_output=True, text=True, timeout=30)
    assert again.returncode != 0 and "exists" in again.stderr
    assert path.read_text() == first  # the key that encrypts stored secrets is kept
    Fernet(read_dotenv(path)["TRADELANE_SECRET_KEY"])


def test_the_passive_ftp_ports_are_the_ones_published(compose: dict[str, Any]) -> None:
    from mailboxes.ftp.server import parse_port_range

    service = compose["services"]["mailboxes"]
    passive = set(parse_port_range(service["environment"]["TRADELANE_FTP_PASSIVE_PORTS"]))
    published = f"{min(passive)}-{max(passive)}:{min(passive)}-{max(passive)}"
    assert len(passive) == max(passive) - min(passive) + 1 and published in service["ports"]
    assert {"2222:2222", "2121:2121"} <= set(service["ports"])
    (container,) = [c for name, c in k8s_containers() if name == "mailboxes"]
    given = {item["name"]: item.get("value") for item in container["env"]}
    assert set(parse_port_range(given["TRADELANE_FTP_PASSIVE_PORTS"])) == passive
    (k8s_service,) = [
        d for d in manifests() if d["kind"] == "Service" and d["metadata"]["name"] == "mailboxes"
    ]
    assert {p["port"] for p in k8s_service["spec"]["ports"]} == passive | {2222, 2121}


def test_the_ftp_passive_address_is_given_to_the_mailboxes_only(
    compose: dict[str, Any], dotenv: dict[str, str]
) -> None:
    variable = "TRADELANE_FTP_PASSIVE_ADDRESS"
    given = {name for name, s in tradelane_services(compose).items() if variable in s.get("environment", {})}
    assert given == {"mailboxes"}
    # Compose: 127.0.0.1 for a try on this machine, else what deploy/.env says.
    assert compose["services"]["mailboxes"]["environment"][variable] == "127.0.0.1"
    raw = yaml.safe_load(COMPOSE.read_text())
    chosen = interpolated(raw, {**dotenv, variable: "198.51.100.7"})
    assert chosen["services"]["mailboxes"]["environment"][variable] == "198.51.100.7"
    # Kubernetes: a key of the mailboxes' own ConfigMap, empty until set to the Service's address.
    containers = dict(k8s_containers())
    assert {name for name, c in containers.items() if variable in k8s_environment(c, dotenv)} == {"mailboxes"}
    k8s_value = k8s_environment(containers["mailboxes"], dotenv)[variable]
    assert k8s_value == ""
    # Each is read as the role reads it: an address, or unset (the address the client connected to).
    read = {}
    for value in ("127.0.0.1", "198.51.100.7", k8s_value):
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(variable, value)
            read[value] = Settings().ftp_passive_address
    assert read == {"127.0.0.1": "127.0.0.1", "198.51.100.7": "198.51.100.7", "": None}
