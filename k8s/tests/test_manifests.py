"""Policy tests for the rendered Kubernetes manifests: every workload keeps its hardening,
and the pieces keep fitting together (selectors, ports, probes, settings).

Run by scripts/check-deploy (the test command), with the ops venv's Python:
    target/tools/ops-venv/bin/python -m unittest discover -s k8s/tests -v
It renders each overlay itself with `kubectl kustomize` (KUBECTL, default: the ops venv's).
"""

import os
import re
import subprocess
import unittest
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUBECTL = os.environ.get("KUBECTL", str(ROOT / "target/tools/ops-venv/bin/kubectl"))
TARGETS = {"base": K8S / "base", "staging": K8S / "overlays/staging",
           "production": K8S / "overlays/production"}
# The settings that are secrets: everything else the control plane reads is in the ConfigMap.
SECRET_KEYS = {"DATABASE_URL", "JWT_SECRET", "EDGE_PUBLISH_TOKEN", "REDIS_URL",
               "OTEL_EXPORTER_OTLP_HEADERS"}
WORKLOAD_KINDS = {"Deployment", "Job", "StatefulSet", "DaemonSet", "ReplicaSet", "CronJob", "Pod"}


def render(path):
    out = subprocess.run([KUBECTL, "kustomize", str(path)], check=True, capture_output=True,
                         text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


RENDERED = {name: render(path) for name, path in TARGETS.items()}


def of_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name=None):
    found = [d for d in of_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(workload):
    spec = workload["spec"]
    if workload["kind"] == "Pod":
        return spec
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def pod_labels(workload):
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return workload["spec"]["template"]["metadata"]["labels"]


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def config_map_data(docs):
    return one(docs, "ConfigMap")["data"]


def settings_read_by_the_control_plane():
    """Every variable control-plane/src/config.rs reads: lookup("NAME") and parse("NAME", …)."""
    source = (ROOT / "control-plane/src/config.rs").read_text()
    return set(re.findall(r'lookup\("([A-Z][A-Z0-9_]*)"\)', source))


class Workloads(unittest.TestCase):
    """The hardening of every pod template, in every overlay."""

    def workloads(self):
        for target, docs in RENDERED.items():
            for doc in docs:
                if doc["kind"] in WORKLOAD_KINDS:
                    yield target, doc

    def test_there_are_workloads(self):
        kinds = {(t, d["kind"]) for t, d in self.workloads()}
        for target in TARGETS:
            self.assertIn((target, "Deployment"), kinds)
            self.assertIn((target, "Job"), kinds)

    def test_pod_security(self):
        for target, w in self.workloads():
            where = f"{target}: {w['kind']}/{w['metadata']['name']}"
            with self.subTest(where):
                spec = pod_spec(w)
                pod_sc = spec.get("securityContext", {})
                self.assertIs(spec.get("automountServiceAccountToken"), False, where)
                self.assertNotIn(spec.get("serviceAccountName", "default"), ("default", ""), where)
                for host in ("hostNetwork", "hostPID", "hostIPC"):
                    self.assertFalse(spec.get(host, False), f"{where}: {host}")
                self.assertIs(pod_sc.get("runAsNonRoot"), True, where)
                self.assertGreater(pod_sc.get("runAsUser", 0), 0, where)
                self.assertEqual(pod_sc.get("seccompProfile", {}).get("type"), "RuntimeDefault",
                                 where)
                containers = spec["containers"] + spec.get("initContainers", [])
                self.assertTrue(containers, where)
                for c in containers:
                    sc = c.get("securityContext", {})
                    name = f"{where} container {c['name']}"
                    self.assertIs(sc.get("allowPrivilegeEscalation"), False, name)
                    self.assertIs(sc.get("readOnlyRootFilesystem"), True, name)
                    self.assertFalse(sc.get("privileged", False), name)
                    self.assertIn("ALL", sc.get("capabilities", {}).get("drop", []), name)
                    self.assertFalse(sc.get("capabilities", {}).get("add"), name)
                    self.assertIsNot(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")), False,
                                     name)
                    self.assertNotEqual(sc.get("runAsUser", 1), 0, name)
                    self.assertEqual(
                        sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type"),
                        "RuntimeDefault", name)
                    resources = c.get("resources", {})
                    for kind in ("requests", "limits"):
                        for res in ("cpu", "memory"):
                            self.assertIn(res, resources.get(kind, {}), f"{name}: {kind}.{res}")
                    image = c["image"]
                    self.assertFalse(image.endswith(":latest"), f"{name}: {image}")
                    self.assertTrue(":" in image.rsplit("/", 1)[-1] or "@sha256:" in image,
                                    f"{name}: untagged image {image}")

    def test_the_control_plane_deployment(self):
        for target, docs in RENDERED.items():
            with self.subTest(target):
                d = one(docs, "Deployment", "edgemock-control-plane")
                spec = d["spec"]
                self.assertGreaterEqual(spec.get("replicas", 2), 2)
                self.assertEqual(spec["strategy"]["type"], "RollingUpdate")
                self.assertEqual(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0)
                pod = pod_spec(d)
                self.assertTrue(pod["affinity"]["podAntiAffinity"])
                self.assertTrue(pod["topologySpreadConstraints"])
                for t in pod["topologySpreadConstraints"]:
                    self.assertTrue(selects(t["labelSelector"]["matchLabels"], pod_labels(d)))
                c = pod["containers"][0]
                self.assertEqual(c["args"], ["serve"])
                for probe, path in (("startupProbe", "/health/startup"),
                                    ("livenessProbe", "/health/live"),
                                    ("readinessProbe", "/health/ready")):
                    self.assertEqual(c[probe]["httpGet"]["path"], path, probe)
                    self.assertEqual(c[probe]["httpGet"]["port"], "http", probe)
                self.assertIn("http", [p["name"] for p in c["ports"]])
                sources = {next(iter(k for k in e if k.endswith("Ref"))): next(iter(e.values()))
                           ["name"] for e in c["envFrom"]}
                self.assertEqual(sources["configMapRef"],
                                 one(docs, "ConfigMap")["metadata"]["name"])
                self.assertTrue(sources["secretRef"].startswith("edgemock-secrets"))

    def test_replicas_never_migrate_the_job_does(self):
        for target, docs in RENDERED.items():
            with self.subTest(target):
                self.assertEqual(config_map_data(docs)["DATABASE_MIGRATE"], "false")
                job = one(docs, "Job", "edgemock-migrate")
                c = pod_spec(job)["containers"][0]
                self.assertEqual(c["args"], ["migrate"])
                self.assertIn(pod_spec(job)["restartPolicy"], ("Never", "OnFailure"))
                names = {e["name"] for e in c["env"]}
                self.assertIn("DATABASE_URL", names)
                self.assertNotIn("JWT_SECRET", names, "the Job needs no more than the database")
                deployment = one(docs, "Deployment", "edgemock-control-plane")
                self.assertEqual(c["image"], pod_spec(deployment)["containers"][0]["image"],
                                 "the Job migrates for the image the Deployment runs")


class Wiring(unittest.TestCase):
    """The objects that must agree with each other."""

    def test_autoscaler(self):
        for target, docs in RENDERED.items():
            with self.subTest(target):
                hpa = one(docs, "HorizontalPodAutoscaler")
                self.assertEqual(hpa["spec"]["scaleTargetRef"],
                                 {"apiVersion": "apps/v1", "kind": "Deployment",
                                  "name": "edgemock-control-plane"})
                self.assertGreaterEqual(hpa["spec"]["minReplicas"], 2)
                self.assertGreater(hpa["spec"]["maxReplicas"], hpa["spec"]["minReplicas"])
                targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"]
                           for m in hpa["spec"]["metrics"]}
                self.assertEqual(targets, {"cpu": 70, "memory": 80})
                behavior = hpa["spec"]["behavior"]
                self.assertEqual(behavior["scaleUp"]["stabilizationWindowSeconds"], 0)
                self.assertGreaterEqual(behavior["scaleDown"]["stabilizationWindowSeconds"], 300)

    def test_selectors_match_the_pods(self):
        for target, docs in RENDERED.items():
            with self.subTest(target):
                d = one(docs, "Deployment", "edgemock-control-plane")
                pods = pod_labels(d)
                self.assertTrue(selects(d["spec"]["selector"]["matchLabels"], pods))
                service = one(docs, "Service", "edgemock-control-plane")
                self.assertTrue(selects(service["spec"]["selector"], pods))
                self.assertIn("http", [p["name"] for p in service["spec"]["ports"]])
                pdb = one(docs, "PodDisruptionBudget")
                self.assertTrue(selects(pdb["spec"]["selector"]["matchLabels"], pods))
                job_pods = pod_labels(one(docs, "Job"))
                self.assertFalse(selects(service["spec"]["selector"], job_pods),
                                 "the Service must not send traffic to the migration Job")
                monitor = one(docs, "ServiceMonitor")
                self.assertTrue(selects(monitor["spec"]["selector"]["matchLabels"],
                                        service["metadata"]["labels"]))
                self.assertEqual([(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]],
                                 [("http", "/metrics")])
                for external in ("edgemock-postgres", "edgemock-redis"):
                    s = one(docs, "Service", external)
                    self.assertEqual(s["spec"]["type"], "ExternalName")
                    self.assertNotIn("selector", s["spec"])

    def test_ingress(self):
        for target, docs in RENDERED.items():
            with self.subTest(target):
                ingress = one(docs, "Ingress")
                self.assertIn("cert-manager.io/cluster-issuer", ingress["metadata"]["annotations"])
                hosts = {r["host"] for r in ingress["spec"]["rules"]}
                tls_hosts = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
                self.assertTrue(hosts <= tls_hosts, "every host is served over TLS")
                paths = {}
                for rule in ingress["spec"]["rules"]:
                    for p in rule["http"]["paths"]:
                        paths[p["path"]] = (p["pathType"], p["backend"]["service"])
                service = {"name": "edgemock-control-plane", "port": {"name": "http"}}
                for path in ("/api", "/mock", "/mock-graphql", "/ws", "/internal"):
                    self.assertEqual(paths.get(path), ("Prefix", service), path)
                for path in ("/health/live", "/health/ready"):
                    self.assertEqual(paths.get(path), ("Exact", service), path)
                self.assertNotIn("/metrics", paths, "metrics stay inside the cluster")
                self.assertNotIn("/health", paths, "health details are for operators")
                self.assertFalse(any(path.startswith("/") and len(path) == 1 for path in paths),
                                 "no catch-all route")

    def test_network_policies_cover_every_pod(self):
        for target, docs in RENDERED.items():
            with self.subTest(target):
                policies = of_kind(docs, "NetworkPolicy")
                deny = [p for p in policies if p["spec"]["podSelector"] == {}]
                self.assertTrue(deny, "a default-deny policy")
                self.assertEqual(set(deny[0]["spec"]["policyTypes"]), {"Ingress", "Egress"})
                self.assertNotIn("ingress", deny[0]["spec"])
                self.assertNotIn("egress", deny[0]["spec"])
                for w in of_kind(docs, "Deployment") + of_kind(docs, "Job"):
                    self.assertTrue(any(selects(p["spec"]["podSelector"].get("matchLabels"),
                                                pod_labels(w)) for p in policies),
                                    w["metadata"]["name"])

    def test_namespace_enforces_restricted_pods(self):
        for target, docs in RENDERED.items():
            ns = one(docs, "Namespace")
            self.assertEqual(ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
                             "restricted", target)
            for d in docs:
                if d["kind"] != "Namespace":
                    self.assertEqual(d["metadata"]["namespace"], ns["metadata"]["name"])

    def test_service_account_has_no_token(self):
        for target, docs in RENDERED.items():
            self.assertIs(one(docs, "ServiceAccount")["automountServiceAccountToken"], False)


class Settings(unittest.TestCase):
    """Every setting the control plane reads has a home: the ConfigMap or the Secret."""

    def template(self):
        return yaml.safe_load((K8S / "base/secret.template.yaml").read_text())

    def test_no_secret_is_rendered(self):
        for target, docs in RENDERED.items():
            self.assertFalse(of_kind(docs, "Secret"), f"{target}: secrets never live in git")

    def test_every_setting_is_in_the_config_map_or_the_secret(self):
        read = settings_read_by_the_control_plane()
        self.assertIn("DATABASE_URL", read)
        secret_keys = set(self.template()["stringData"])
        self.assertTrue(secret_keys <= SECRET_KEYS, secret_keys - SECRET_KEYS)
        for target, docs in RENDERED.items():
            with self.subTest(target):
                config = set(config_map_data(docs))
                self.assertFalse(config & SECRET_KEYS, "secrets in the ConfigMap")
                missing = read - config - secret_keys
                self.assertFalse(missing, f"settings without a home in k8s/base/config.env or "
                                          f"secret.template.yaml: {sorted(missing)}")

    def test_the_secret_template_holds_no_real_values(self):
        for key, value in self.template()["stringData"].items():
            self.assertIn("CHANGE-ME", value, key)


if __name__ == "__main__":
    unittest.main()
