// Validates the custom resources kubernetes-validate has no schema for (prometheus-operator's
// ServiceMonitor) against the CRD's own OpenAPI schema, as compiled by
// @kubernetes-models/prometheus-operator: required fields, types, enums, patterns.
// Unknown fields are not refused (CRD schemas prune them instead); k8s/tests/test_manifests.py
// checks the fields the scrape depends on.
// Input on stdin: a JSON array of objects. Exit 1 on the first invalid one.
import { readFileSync } from "node:fs";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const models = { "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor };
const objects = JSON.parse(readFileSync(0, "utf8"));
let checked = 0;
for (const object of objects) {
  const key = `${object.apiVersion}/${object.kind}`;
  const Model = models[key];
  if (!Model) {
    console.error(`validate-crds: no schema for ${key} (${object.metadata?.name})`);
    process.exit(1);
  }
  try {
    new Model(object).validate();
    checked += 1;
  } catch (e) {
    console.error(`validate-crds: ${key} ${object.metadata?.name}: ${e.message}`);
    process.exit(1);
  }
}
console.log(`validate-crds: ${checked} custom resources valid`);
