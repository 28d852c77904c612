"""Checks of the alert rules and the Grafana dashboard beyond what promtool does alone:
only the metric names issue 6 fixed, every dashboard query valid PromQL (each is checked
by `promtool check rules` as a recording rule), and every alert's runbook link pointing
at a section of docs/runbook.md.

Run by scripts/check-deploy: target/tools/ops-venv/bin/python -m unittest discover -s monitoring
(PROMTOOL: the promtool binary, default target/tools/bin/promtool).
"""

import json
import os
import re
import subprocess
import tempfile
import unittest
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROMTOOL = os.environ.get("PROMTOOL", str(ROOT / "target/tools/bin/promtool"))
COUNTERS_AND_GAUGES = {
    "http_requests_total", "http_requests_in_progress", "mock_requests_total",
    "webhook_deliveries_total", "cache_hits_total", "cache_misses_total",
    "rate_limit_exceeded_total",
    # edgemock's own: publish failures, the edge analytics lag, Redis (with REDIS_URL).
    "edgemock_publish_failures_total", "edgemock_analytics_lag_seconds",
    "edgemock_analytics_native_requests_total", "edgemock_analytics_native_pending_rows",
    "edgemock_redis_up", "edgemock_redis_errors_total",
    # Prometheus' own, per scrape target.
    "up",
}
HISTOGRAMS = {"http_request_duration_seconds", "mock_response_duration_seconds",
              "webhook_delivery_duration_seconds"}
KNOWN = COUNTERS_AND_GAUGES | {h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
# A selector: a metric name directly before `{`. Every query here writes its selectors so.
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": "edgemock", "${datasource}": "x"}


def dashboard():
    return json.loads((ROOT / "monitoring/grafana-dashboard.json").read_text())


def dashboard_queries():
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def alert_rules():
    doc = yaml.safe_load((ROOT / "monitoring/alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def metrics_in(expr):
    return set(SELECTOR.findall(expr)) - {"by", "without", "on", "ignoring"}


def github_anchor(heading):
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


class Metrics(unittest.TestCase):
    def test_alerts_use_only_known_metrics(self):
        for rule in alert_rules():
            used = metrics_in(rule["expr"])
            self.assertTrue(used, rule["alert"])
            self.assertFalse(used - KNOWN, f"{rule['alert']}: unknown metrics {used - KNOWN}")

    def test_dashboard_uses_only_known_metrics(self):
        queries = list(dashboard_queries())
        self.assertGreater(len(queries), 10)
        for title, expr in queries:
            used = metrics_in(expr)
            self.assertTrue(used, title)
            self.assertFalse(used - KNOWN, f"{title}: unknown metrics {used - KNOWN}")

    def test_every_fixed_metric_is_on_the_dashboard(self):
        used = set().union(*(metrics_in(e) for _, e in dashboard_queries()))
        for name in COUNTERS_AND_GAUGES:
            self.assertIn(name, used)
        for name in HISTOGRAMS:
            self.assertIn(name + "_bucket", used)


class Dashboard(unittest.TestCase):
    def test_shape(self):
        d = dashboard()
        self.assertEqual(d["uid"], "edgemock-control-plane")
        ids = [p["id"] for p in d["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
        variables = {v["name"] for v in d["templating"]["list"]}
        self.assertEqual(variables, {"datasource", "namespace"})
        for panel in d["panels"]:
            if panel["type"] == "row":
                continue
            self.assertEqual(panel["datasource"]["uid"], "${datasource}", panel["title"])
            for target in panel["targets"]:
                self.assertIn('namespace="$namespace"', target["expr"], panel["title"])

    def test_every_query_is_valid_promql(self):
        rules = []
        for i, (title, expr) in enumerate(dashboard_queries()):
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            rules.append({"record": f"dashboard:query_{i}", "expr": expr})
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
            f.flush()
            run = subprocess.run([PROMTOOL, "check", "rules", f.name], capture_output=True,
                                 text=True)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)


class Runbook(unittest.TestCase):
    def test_alerts_link_to_runbook_sections(self):
        text = (ROOT / "docs/runbook.md").read_text()
        anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}
        for rule in alert_rules():
            link = rule["annotations"]["runbook"]
            path, _, anchor = link.partition("#")
            self.assertEqual(path, "docs/runbook.md", rule["alert"])
            self.assertIn(anchor, anchors, f"{rule['alert']}: no section #{anchor}")
            self.assertIn(rule["labels"]["severity"], ("warning", "critical"))

    def test_runbook_lists_the_metrics_issue_6_still_owes(self):
        text = (ROOT / "docs/runbook.md").read_text()
        for name in ("edgemock_publish_failures_total", "edgemock_analytics_lag_seconds"):
            self.assertIn(name, text)


if __name__ == "__main__":
    unittest.main()
