"""The Helm chart (deploy/helm/kube-event-watcher) with a real helm (built from
helm.sh/helm/v3 by tests/e2e/controlplane/build.sh) and the real kube-apiserver.

For each example values file (the chart's ci/*-values.yaml, helm's convention) helm lints and
renders the chart, and the rendering is held against deploy/ and the daemon's own code, not a
copy of them here: the securityContext of deploy/deployment.yaml on every container; a config
that check-config's loader accepts; RBAC equal to what deploy/ grants for the same features
and to what `doctor` computes that config needs, in the same places. Then the rendered objects
are created on the apiserver in a namespace enforcing Pod Security "restricted": the pod
template is admitted (a privileged one is not), and the ServiceAccount is allowed what the
daemon needs and denied the rest (SubjectAccessReview). A last test runs `helm install` itself.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_event_watcher import __version__
from kube_event_watcher.config.loading import LoadedConfig, load_config
from kube_event_watcher.config.schema import Config
from kube_event_watcher.daemon import watch_scopes
from kube_event_watcher.kube.client import own_namespace
from kube_event_watcher.kube.diagnosis import required_access
from kube_event_watcher.notifiers.registry import config_models
from tests.e2e.controlplane.cluster import ApiError, ControlPlane
from tests.e2e.manifests import (
    DEPLOY_DIR,
    REPO,
    create,
    create_all,
    granted,
    load_documents,
    pod_from_template,
)
from tests.e2e.rbac import ServiceAccount

JSON = dict[str, Any]
CHART = REPO / "deploy" / "helm" / "kube-event-watcher"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
PROMETHEUS_OPERATOR = "monitoring.coreos.com/v1"
"""The ServiceMonitor's API: no Prometheus Operator CRD on the test apiserver, so it is
checked in the rendering only."""

Grant = tuple[str | None, str, str, str]
"""(namespace or None for cluster-wide, apiGroup, resource[/subresource], verb)"""


@dataclass(frozen=True)
class Helm:
    """The helm binary, with its config, cache and data dirs in a temp dir (not ~)."""

    binary: Path
    home: Path

    def __call__(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
            "KUBECONFIG": str(self.home / "no-kubeconfig"),  # only --kubeconfig reaches a cluster
        }
        return subprocess.run(
            [str(self.binary), *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="session")
def run_helm(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm, tmp_path_factory.mktemp("helm-home"))


def case_name(values: Path) -> str:
    return values.name.removesuffix("-values.yaml")


@dataclass(frozen=True)
class Rendered:
    """`helm template` of one ci values file, as the objects it renders."""

    case: str
    release: str
    namespace: str
    docs: list[JSON]

    def all(self, kind: str) -> list[JSON]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str) -> JSON:
        [doc] = self.all(kind)
        return doc

    @property
    def pod_spec(self) -> JSON:
        spec: JSON = self.one("Deployment")["spec"]["template"]["spec"]
        return spec

    @property
    def account(self) -> ServiceAccount:
        return ServiceAccount(self.namespace, self.pod_spec["serviceAccountName"])

    def config_text(self) -> str:
        text: str = self.one("ConfigMap")["data"]["config.yaml"]
        return text

    def secret_env(self) -> dict[str, str]:
        """What the chart's own Secret gives the daemon as environment variables."""
        return {
            key: base64.b64decode(value).decode()
            for secret in self.all("Secret")
            for key, value in secret.get("data", {}).items()
        }

    def grants(self) -> set[Grant]:
        """Everything the bindings to the ServiceAccount grant it, and where."""
        subject = {"kind": "ServiceAccount", "name": self.account.name, "namespace": self.namespace}
        out: set[Grant] = set()
        for binding in self.all("ClusterRoleBinding") + self.all("RoleBinding"):
            if subject not in binding["subjects"]:
                continue
            ref = binding["roleRef"]
            where = binding["metadata"].get("namespace")
            [role] = [
                d
                for d in self.all(ref["kind"])
                if d["metadata"]["name"] == ref["name"] and d["metadata"].get("namespace") == where
            ]
            out |= {(where, *g) for g in granted(role["rules"])}
        return out


def render(run_helm: Helm, values: Path, *extra: str | Path) -> Rendered:
    case = case_name(values)
    release, namespace = f"kew-{case}", f"kew-helm-{case}"
    done = run_helm("template", release, CHART, "-n", namespace, "-f", values, *extra)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    return Rendered(case, release, namespace, docs)


@pytest.fixture(scope="module", params=CI_VALUES, ids=case_name)
def rendered(run_helm: Helm, request: pytest.FixtureRequest) -> Rendered:
    return render(run_helm, request.param)


def loaded_config(rendered: Rendered, tmp_path: Path) -> LoadedConfig:
    """The ConfigMap's config, loaded as `check-config -c` loads it, with the chart's Secret
    as the environment (each of its keys is an environment variable of the daemon)."""
    path = tmp_path / "config.yaml"
    path.write_text(rendered.config_text())
    return load_config(str(path), config_models(), env=rendered.secret_env())


def doctor_needs(rendered: Rendered, loaded: LoadedConfig) -> set[Grant]:
    """Every access `doctor` checks for this config, computed as doctor computes it: the
    watched namespaces of each cluster, and the pod's namespace ($POD_NAMESPACE) as its own."""
    config = loaded.config
    sections = config.model_dump(mode="json")
    needs: set[Grant] = set()
    for cluster in config.clusters:
        namespaces = [scope.namespace for scope, _ in watch_scopes(cluster.name, config.sources)]
        own = own_namespace(cluster, {"POD_NAMESPACE": rendered.namespace})
        for need in required_access(sections, namespaces or [None], own):
            resource = f"{need.resource}/{need.subresource}" if need.subresource else need.resource
            needs.add((need.namespace, need.group, resource, need.verb))
    return needs


def watched_namespaces(loaded: LoadedConfig) -> list[str | None]:
    config = loaded.config
    return list(
        dict.fromkeys(
            scope.namespace
            for cluster in config.clusters
            for scope, _ in watch_scopes(cluster.name, config.sources)
        )
    )


# -- deploy/: what the plain manifests grant for the features a config turns on ----------


def deploy_rules(name: str) -> list[JSON]:
    rules: list[JSON] = load_documents(DEPLOY_DIR / name)[0]["rules"]
    return rules


def enrichment_md_rules() -> list[JSON]:
    """The rules listed in deploy/rbac-enrichment.md's YAML block."""
    text = (DEPLOY_DIR / "rbac-enrichment.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    rules: list[JSON] = yaml.safe_load(block)
    return rules


def deploy_cluster_wide(config: Config) -> set[tuple[str, str, str]]:
    """What deploy/ grants cluster-wide to a daemon with `config`'s features: rbac-cluster.yaml
    (its events rule alone without enrichment, as its comment says), and the optional grants."""
    rules = deploy_rules("rbac-cluster.yaml")
    if not config.enrichment.enabled:
        rules = [r for r in rules if r["apiGroups"] == ["events.k8s.io"]]
    grants = granted(rules)
    if config.enrichment.enabled and config.enrichment.log_tail.enabled:
        grants |= granted(deploy_rules("rbac-log-tail.yaml"))
    if config.enrichment.enabled and config.enrichment.namespace_labels:
        grants |= granted([r for r in enrichment_md_rules() if r["resources"] == ["namespaces"]])
    if config.enrichment.enabled and config.enrichment.owner_groups:
        # rbac-enrichment.md's rule for one group (argoproj.io), for each group listed.
        [template] = [r for r in enrichment_md_rules() if r["resources"] == ["*"]]
        for group in config.enrichment.owner_groups:
            grants |= granted([{**template, "apiGroups": [group]}])
    if config.watches_objects:
        grants |= granted(deploy_rules("rbac-detectors.yaml"))
    return grants


def deploy_own_namespace(config: Config) -> set[tuple[str, str, str]]:
    """What deploy/rbac-namespace.yaml grants in the daemon's namespace, of the rules for the
    features `config` turns on (the ConfigMap store, the leader Lease)."""
    wanted = set()
    if config.state.backend == "configmap":
        wanted.add("configmaps")
    if config.ha.enabled:
        wanted.add("leases")
    rules = deploy_rules("rbac-namespace.yaml")
    return granted([r for r in rules if set(r["resources"]) <= wanted])


# -- helm lint ----------------------------------------------------------------------------


def test_the_chart_is_the_daemons_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == __version__  # pyproject.toml's version


def test_there_are_example_values_for_each_mode() -> None:
    assert {case_name(p) for p in CI_VALUES} >= {
        "default",
        "namespaced",
        "ha-configmap",
        "enrichment-log-tail",
    }


@pytest.mark.parametrize(
    "values", [None, *CI_VALUES], ids=lambda p: case_name(p) if p else "chart-defaults"
)
def test_helm_lint_strict_passes(run_helm: Helm, values: Path | None) -> None:
    done = run_helm("lint", "--strict", CHART, *(["-f", values] if values else []))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("replicaCount: 2\n", "at '': additional properties 'replicaCount' not allowed"),
        ("ha:\n  enabeld: true\n", "at '/ha': additional properties 'enabeld' not allowed"),
        ("config:\n  recievers: []\n", "at '/config': additional properties 'recievers'"),
        ("image:\n  pullpolicy: Always\n", "at '/image': additional properties 'pullpolicy'"),
        # The chart sets these from its values (the RBAC follows them): not in `config`.
        ("config:\n  state:\n    backend: configmap\n", "at '/config/state/backend'"),
        ("config:\n  enrichment:\n    log_tail:\n      enabled: true\n", "/log_tail/enabled"),
        ("ha:\n  enabled: true\n", "at '/state/backend': value must be 'configmap'"),
        ("scope: namespaced\n", "at '/namespaces': minItems"),
        ("namespaces: [shop]\n", "at '/namespaces': maxItems"),
        ("scope: namespace\n", "at '/scope': value must be one of 'cluster', 'namespaced'"),
    ],
    ids=[
        "unknown-top-level-key",
        "misspelt-nested-key",
        "misspelt-config-section",
        "key-case",
        "chart-owned-config-key",
        "chart-owned-nested-config-key",
        "ha-without-configmap-state",
        "namespaced-without-namespaces",
        "namespaces-with-cluster-scope",
        "scope-typo",
    ],
)
def test_a_wrong_value_fails_lint_and_install_naming_the_key(
    run_helm: Helm, tmp_path: Path, values: str, message: str
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(values)
    lint = run_helm("lint", "--strict", CHART, "-f", path)
    assert lint.returncode != 0
    assert message in lint.stdout
    # install and upgrade validate the values as template does, before anything is sent.
    template = run_helm("template", "kew", CHART, "-f", path)
    assert template.returncode != 0
    assert message in template.stderr


def test_the_values_shown_in_the_docs_lint(run_helm: Helm, tmp_path: Path) -> None:
    text = (REPO / "docs" / "deploy.md").read_text()
    block = text.split("<!-- fragment: Helm values", 1)[1].split("```yaml\n", 1)[1]
    path = tmp_path / "values.yaml"
    path.write_text(block.split("```", 1)[0])
    done = run_helm("lint", "--strict", CHART, "-f", path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_source_namespace_without_a_grant_fails_to_render(run_helm: Helm, tmp_path: Path) -> None:
    # Beyond the schema: a template check, so helm template/install fail (helm lint only
    # reports a template's `fail` as [INFO]).
    path = tmp_path / "values.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "scope": "namespaced",
                "namespaces": ["shop"],
                "config": {"sources": [{"namespaces": ["shop", "billing"]}]},
            }
        )
    )
    done = run_helm("template", "kew", CHART, "-f", path)
    assert done.returncode != 0
    assert 'config.sources[0].namespaces: "billing" is not in namespaces' in done.stderr


def test_the_schema_knows_exactly_the_daemons_config_sections() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    config = schema["properties"]["config"]
    assert config["additionalProperties"] is False
    assert set(config["properties"]) == set(Config.model_fields)


# -- helm template: what a user would notice ---------------------------------------------


def test_every_container_has_the_restricted_security_context_of_deploy(
    rendered: Rendered,
) -> None:
    deployed = load_documents(DEPLOY_DIR / "deployment.yaml")[0]["spec"]["template"]["spec"]
    pod = rendered.pod_spec
    assert pod["securityContext"] == deployed["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    containers = pod["containers"] + pod.get("initContainers", [])
    assert containers
    for container in containers:
        context = container["securityContext"]
        assert context == deployed["containers"][0]["securityContext"], container["name"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 65532
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is deployed["automountServiceAccountToken"] is True
    assert "hostNetwork" not in pod
    assert "hostPID" not in pod


def test_the_config_passes_the_daemons_loader(rendered: Rendered, tmp_path: Path) -> None:
    loaded = loaded_config(rendered, tmp_path)  # raises ConfigError listing every problem
    # Every release watches its own cluster, but a fleet's central instance, which reads
    # the edges' stream instead.
    assert loaded.config.clusters or loaded.config.fleet is not None
    assert all(c.in_cluster for c in loaded.config.clusters)
    # Secrets come from the environment: the chart's Secret holds no config, the ConfigMap no
    # secret value.
    for value in rendered.secret_env().values():
        assert value not in rendered.config_text()


def test_the_deployment_runs_that_config_with_its_state_port_and_secrets(
    rendered: Rendered, tmp_path: Path
) -> None:
    config = loaded_config(rendered, tmp_path).config
    deployment = rendered.one("Deployment")
    pod = rendered.pod_spec
    [container] = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert container["args"] == ["run", "--config", f"{mounts['config']}/config.yaml"]
    assert volumes["config"]["configMap"]["name"] == rendered.one("ConfigMap")["metadata"]["name"]
    assert mounts["state"] == config.state.path  # the spool is there whatever the backend
    assert "emptyDir" in volumes["tmp"]  # the root file system is read-only
    address = config.ops.address
    assert address is not None
    assert config.ops.listen.startswith("0.0.0.0:")  # the kubelet's probes reach it
    assert container["ports"] == [{"name": "ops", "containerPort": address.port, "protocol": "TCP"}]
    assert {k: container[k]["httpGet"]["path"] for k in ("livenessProbe", "startupProbe")} == {
        "livenessProbe": "/healthz",
        "startupProbe": "/healthz",
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
    sources = {ref["secretRef"]["name"] for ref in container.get("envFrom", [])}
    assert {s["metadata"]["name"] for s in rendered.all("Secret")} <= sources
    if config.ha.enabled:
        assert deployment["spec"]["replicas"] >= 2
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
        assert config.state.backend == "configmap"
    else:
        # Two daemons side by side would both deliver (deploy/deployment.yaml).
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    for budget in rendered.all("PodDisruptionBudget"):
        assert budget["spec"]["selector"] == deployment["spec"]["selector"]


def test_the_service_and_service_monitor_reach_the_metrics_port(rendered: Rendered) -> None:
    service = rendered.one("Service")
    pod_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [port] = service["spec"]["ports"]
    assert port["port"] == 9464
    assert port["targetPort"] == "ops"
    for monitor in rendered.all("ServiceMonitor"):
        assert monitor["apiVersion"] == PROMETHEUS_OPERATOR
        wanted = monitor["spec"]["selector"]["matchLabels"]
        assert wanted.items() <= service["metadata"]["labels"].items()
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [rendered.namespace]}
        assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [
            (port["name"], "/metrics")
        ]


def test_the_rbac_is_what_deploy_grants_for_the_same_features(
    rendered: Rendered, tmp_path: Path
) -> None:
    loaded = loaded_config(rendered, tmp_path)
    config = loaded.config
    grants = rendered.grants()
    cluster_wide = deploy_cluster_wide(config)
    own = deploy_own_namespace(config)

    def at(namespace: str | None) -> set[tuple[str, str, str]]:
        return {g[1:] for g in grants if g[0] == namespace}

    watched = watched_namespaces(loaded)
    if watched == [None]:  # scope: cluster: deploy/'s grants as they are
        assert at(None) == cluster_wide
        assert at(rendered.namespace) == own
        assert {g[0] for g in grants} <= {None, rendered.namespace}
    else:  # scope: namespaced: in each namespace, what deploy/ grants cluster-wide
        assert None not in watched
        for namespace in watched:
            expected = cluster_wide | (own if namespace == rendered.namespace else set())
            assert at(None) | at(namespace) == expected, namespace
            assert not at(None) & at(namespace), namespace
        if rendered.namespace not in watched:
            assert at(rendered.namespace) == own
        assert {g[0] for g in grants} <= {None, rendered.namespace, *watched}


def test_the_rbac_is_exactly_what_doctor_checks_for_the_config(
    rendered: Rendered, tmp_path: Path
) -> None:
    loaded = loaded_config(rendered, tmp_path)
    needs = doctor_needs(rendered, loaded)
    # `get` on events: kubectl-style read access, as deploy/rbac-cluster.yaml grants it.
    events_get = {(ns, "events.k8s.io", "events", "get") for ns in watched_namespaces(loaded)}
    assert rendered.grants() == needs | events_get


# -- on the apiserver ---------------------------------------------------------------------


@dataclass
class Installed:
    rendered: Rendered
    objects: list[JSON]
    statuses: list[int]
    warnings: list[str]


def restricted_namespace(name: str) -> JSON:
    """deploy/namespace.yaml (Pod Security "restricted" enforced, warned, audited), renamed."""
    namespace = load_documents(DEPLOY_DIR / "namespace.yaml")[0]
    namespace["metadata"]["name"] = name
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    return namespace


def ensure_namespace(plane: ControlPlane, doc: JSON) -> None:
    """Create a namespace, or keep the one an earlier case made (they are never deleted
    here: there is no namespace controller)."""
    response = create(plane, doc)
    assert response.status in (201, 409), response.body[:300]


def wait_for_bindings(plane: ControlPlane, rendered: Rendered) -> None:
    """Return once the authorizer has seen every binding: one grant of each is allowed."""
    by_where: dict[str | None, Grant] = {}
    for grant in sorted(rendered.grants(), key=str):
        by_where.setdefault(grant[0], grant)
    for namespace, group, resource, verb in by_where.values():
        plural, _, sub = resource.partition("/")
        rendered.account.wait_until(plane, True, verb, plural, namespace or "", group, sub)


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane, rendered: Rendered) -> Installed:
    """The rendered objects created on the apiserver as the admin, server-side (every
    admission step runs), in a "restricted" namespace; the watched namespaces made first."""
    ensure_namespace(control_plane, restricted_namespace(rendered.namespace))
    for namespace in {d["metadata"].get("namespace") for d in rendered.docs} - {None}:
        ensure_namespace(control_plane, restricted_namespace(str(namespace)))
    objects = [d for d in rendered.docs if d["apiVersion"] != PROMETHEUS_OPERATOR]
    responses = create_all(control_plane, objects)
    wait_for_bindings(control_plane, rendered)
    return Installed(
        rendered,
        objects,
        [r.status for r in responses],
        [r.headers.get("Warning", "") for r in responses],
    )


def test_every_rendered_object_is_accepted_in_a_restricted_namespace(
    control_plane: ControlPlane, installed: Installed
) -> None:
    refused = [
        (d["kind"], d["metadata"]["name"], status)
        for d, status in zip(installed.objects, installed.statuses, strict=True)
        if status != 201
    ]
    assert refused == []
    # The namespace also warns on "restricted": the Deployment would carry a Warning header.
    assert [w for w in installed.warnings if w] == []
    namespace = installed.rendered.namespace
    stored = control_plane.get(f"/api/v1/namespaces/{namespace}")
    assert stored["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_pod_template_is_admitted_and_a_privileged_one_is_not(
    control_plane: ControlPlane, installed: Installed
) -> None:
    rendered = installed.rendered
    deployment = rendered.one("Deployment")
    # dryRun=All: Pod Security admission judges it, nothing is stored.
    pod = pod_from_template(deployment, f"{rendered.release}-template", rendered.namespace)
    admitted = create(control_plane, pod, dry_run=True)
    assert admitted.status == 201, admitted.body[:500]
    assert admitted.json()["metadata"]["name"] == pod["metadata"]["name"]
    with pytest.raises(ApiError) as missing:
        control_plane.get(f"/api/v1/namespaces/{rendered.namespace}/pods/{pod['metadata']['name']}")
    assert missing.value.status == 404

    privileged = copy.deepcopy(pod)
    context = privileged["spec"]["containers"][0]["securityContext"]
    context.update(privileged=True, allowPrivilegeEscalation=True)
    refused = create(control_plane, privileged, dry_run=True)
    assert refused.status == 403
    message = refused.json()["message"]
    assert 'violates PodSecurity "restricted:latest"' in message
    assert "privileged" in message


def test_the_service_account_is_allowed_what_the_daemon_needs(
    control_plane: ControlPlane, installed: Installed, tmp_path: Path
) -> None:
    rendered = installed.rendered
    loaded = loaded_config(rendered, tmp_path)
    needs = doctor_needs(rendered, loaded)
    if loaded.config.clusters:  # not a fleet's central instance, which needs nothing
        assert {(n[2], n[3]) for n in needs} >= {("events", "list"), ("events", "watch")}
    else:
        assert needs == set() and rendered.grants() == set()

    def allowed(grant: Grant) -> bool:
        namespace, group, resource, verb = grant
        plural, _, sub = resource.partition("/")
        return rendered.account.may(control_plane, verb, plural, namespace or "", group, sub)

    assert sorted(n for n in needs if not allowed(n)) == []


def denials(rendered: Rendered, config: Config, watched: list[str | None]) -> list[Grant]:
    """What the ServiceAccount must not do with this config: the list deploy/'s is checked
    against (test_deploy.py), and what only a feature this config leaves off would grant."""
    ns = rendered.namespace
    denied: list[Grant] = [
        (ns, "", "secrets", "get"),
        (None, "", "secrets", "list"),
        ("default", "", "secrets", "get"),
        ("default", "", "pods", "delete"),
        ("default", "events.k8s.io", "events", "create"),
        ("default", "", "events", "create"),
        (None, "", "nodes", "patch"),
        ("default", "", "configmaps", "update"),
        (ns, "", "configmaps", "delete"),
        ("kube-system", "coordination.k8s.io", "leases", "update"),
        ("default", "apps", "deployments", "get"),
        ("default", "", "pods/exec", "create"),
    ]
    if not config.watches_objects:
        denied.append((None, "", "pods", "list"))
    if not (config.enrichment.enabled and config.enrichment.log_tail.enabled):
        denied.append(("default", "", "pods/log", "get"))
    if not (config.enrichment.enabled and config.enrichment.namespace_labels):
        denied.append(("default", "", "namespaces", "get"))
    if not config.enrichment.enabled:
        denied += [(None, "", "nodes", "get"), (None, "", "pods", "get")]
    if not config.ha.enabled:
        denied.append((ns, "coordination.k8s.io", "leases", "create"))
    if config.state.backend != "configmap":
        denied.append((ns, "", "configmaps", "update"))
    if None not in watched:  # scope: namespaced
        denied += [
            (None, "events.k8s.io", "events", "list"),
            (None, "events.k8s.io", "events", "watch"),
            ("default", "events.k8s.io", "events", "list"),
            ("default", "", "pods", "get"),
        ]
    return denied


def test_the_service_account_is_denied_the_rest(
    control_plane: ControlPlane, installed: Installed, tmp_path: Path
) -> None:
    rendered = installed.rendered
    loaded = loaded_config(rendered, tmp_path)
    denied = denials(rendered, loaded.config, watched_namespaces(loaded))
    assert not set(denied) & doctor_needs(rendered, loaded)  # the list itself is right

    def allowed(grant: Grant) -> bool:
        namespace, group, resource, verb = grant
        plural, _, sub = resource.partition("/")
        return rendered.account.may(control_plane, verb, plural, namespace or "", group, sub)

    assert [d for d in denied if allowed(d)] == []


# -- helm install --------------------------------------------------------------------------


@contextlib.contextmanager
def helm_release(
    run_helm: Helm, plane: ControlPlane, release: str, namespace: str, values: Path
) -> Iterator[subprocess.CompletedProcess[str]]:
    """`helm install` on the apiserver; `helm uninstall` afterwards, pass or fail."""
    cluster = ("--kubeconfig", plane.kubeconfig, "-n", namespace)
    done = run_helm("install", release, CHART, *cluster, "-f", values)
    try:
        yield done
    finally:
        if done.returncode == 0:
            gone = run_helm("uninstall", release, *cluster)
            assert gone.returncode == 0, gone.stderr


def test_helm_install_creates_the_release_on_the_apiserver(
    control_plane: ControlPlane, run_helm: Helm
) -> None:
    namespace, release = "kew-helm-install", "kew"
    ensure_namespace(control_plane, restricted_namespace(namespace))
    values = CHART / "ci" / "default-values.yaml"
    cluster = ("--kubeconfig", control_plane.kubeconfig, "-n", namespace)
    with helm_release(run_helm, control_plane, release, namespace, values) as done:
        assert done.returncode == 0, done.stderr
        assert "STATUS: deployed" in done.stdout
        # NOTES.txt: how to see the alerts, and doctor as the pod's ServiceAccount.
        assert f"kubectl -n {namespace} logs deploy/kew-kube-event-watcher -f" in done.stdout
        assert "kube-event-watcher doctor -c /etc/kube-event-watcher/config.yaml" in done.stdout
        status = run_helm("status", release, *cluster, "-o", "json")
        assert json.loads(status.stdout)["info"]["status"] == "deployed"
        deployment = control_plane.get(
            f"/apis/apps/v1/namespaces/{namespace}/deployments/kew-kube-event-watcher"
        )
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"kube-event-watcher:{__version__}"
        account = ServiceAccount(namespace, "kew-kube-event-watcher")
        account.wait_until(control_plane, True, "watch", "events", group="events.k8s.io")
    # Uninstalled: the cluster-wide grant went with the release.
    account.wait_until(control_plane, False, "watch", "events", group="events.k8s.io")
    with pytest.raises(ApiError) as gone:
        control_plane.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/kew-kube-event-watcher")
    assert gone.value.status == 404
