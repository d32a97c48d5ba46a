#!/usr/bin/python3
"""Checks the deployment files without a Docker engine or a cluster:
the compose file passes `docker-compose config`, the Kubernetes manifests parse
as YAML and agree with each other and with the Dockerfile (image, port, probes,
ConfigMap), and every shipped policy file passes `ratelimitd --check-config`.
Usage: check_deploy.py SOURCE_DIR RATELIMITD_BINARY"""
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

src, binary = sys.argv[1], sys.argv[2]
failures = []
passed = 0


def check(ok, what):
    global passed
    if ok:
        passed += 1
    else:
        failures.append(what)
        print("FAIL:", what)


def check_config(path_or_text, label):
    if os.path.exists(path_or_text):
        path = path_or_text
    else:
        fd, path = tempfile.mkstemp(suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(path_or_text)
    r = subprocess.run([binary, "--check-config", path], capture_output=True, text=True)
    check(r.returncode == 0, f"{label} passes --check-config: {r.stdout}{r.stderr}")


# docker-compose.yml
r = subprocess.run(["docker-compose", "-f", os.path.join(src, "docker-compose.yml"), "config"],
                   capture_output=True, text=True, cwd=src)
check(r.returncode == 0, "docker-compose config: " + r.stderr)
compose = yaml.safe_load(r.stdout) if r.returncode == 0 else {}
services = compose.get("services", {})
check(set(services) == {"redis", "ratelimitd", "nginx", "api"},
      f"compose services are redis, ratelimitd, nginx, api: {sorted(services)}")
rl = services.get("ratelimitd", {})
check(rl.get("image") == "ratelimitd:latest", "compose ratelimitd image is ratelimitd:latest")
check("/readyz" in " ".join(rl.get("healthcheck", {}).get("test", [])), "compose healthcheck on /readyz")
check("0.0.0.0:8080" in rl.get("command", []), "compose ratelimitd listens on 0.0.0.0:8080")
check_config(os.path.join(src, "deploy/compose/policies.json"), "deploy/compose/policies.json")
with open(os.path.join(src, "deploy/compose/nginx.conf")) as f:
    ngx = f.read()
check("server ratelimitd:8080" in ngx, "compose nginx points at ratelimitd:8080")

# Kubernetes manifests
docs = []
for name in sorted(os.listdir(os.path.join(src, "deploy/k8s"))):
    with open(os.path.join(src, "deploy/k8s", name)) as f:
        docs += [d for d in yaml.safe_load_all(f) if d]
kinds = {d["kind"]: d for d in docs}
check({"Deployment", "ConfigMap"} <= set(kinds), f"k8s has a Deployment and a ConfigMap: {sorted(kinds)}")
cm = kinds.get("ConfigMap", {})
dep = kinds.get("Deployment", {})
pod = dep.get("spec", {}).get("template", {}).get("spec", {})
containers = {c["name"]: c for c in pod.get("containers", [])}
check(len(containers) == 2 and "ratelimitd" in containers, "the pod runs the API plus the ratelimitd sidecar")
side = containers.get("ratelimitd", {})
check(side.get("image") == rl.get("image"), "the sidecar image is the compose image")
port = side.get("ports", [{}])[0].get("containerPort")
check(port == 8080, "the sidecar exposes 8080")
check(side.get("livenessProbe", {}).get("httpGet") == {"path": "/healthz", "port": port},
      "liveness probe: /healthz on the sidecar port")
check(side.get("readinessProbe", {}).get("httpGet") == {"path": "/readyz", "port": port},
      "readiness probe: /readyz on the sidecar port")
res = side.get("resources", {})
check("requests" in res and "limits" in res, "the sidecar has resource requests and limits")
vols = {v["name"]: v for v in pod.get("volumes", [])}
check(vols.get("policies", {}).get("configMap", {}).get("name") == cm.get("metadata", {}).get("name"),
      "the policies volume mounts the ConfigMap")
check("--config" in side.get("args", []) and "/etc/ratelimitd/config.json" in side.get("args", []),
      "the sidecar reads /etc/ratelimitd/config.json")
check_config(cm.get("data", {}).get("config.json", ""), "the ConfigMap's config.json")
check(side.get("securityContext", {}).get("runAsNonRoot") is True, "the sidecar runs as non-root")

# Dockerfile
with open(os.path.join(src, "Dockerfile")) as f:
    dockerfile = f.read()
check(len(re.findall(r"^FROM ", dockerfile, re.M)) == 2, "Dockerfile is multi-stage")
check("debian:12-slim" in dockerfile, "Dockerfile runtime is Debian slim")
check(re.search(r"^USER 10001", dockerfile, re.M) is not None, "Dockerfile runs as a non-root user")
check(re.search(r"HEALTHCHECK.*\n.*\/healthz", dockerfile) is not None, "Dockerfile HEALTHCHECK on /healthz")
check_config(os.path.join(src, "deploy/policies.example.json"), "deploy/policies.example.json")

# Grafana dashboard: valid JSON whose queries only use metrics the service exports
with open(os.path.join(src, "deploy/grafana/ratelimitd.json")) as f:
    dash = json.load(f)
exported = {"ratelimitd_decisions_total", "ratelimitd_checks_total", "ratelimitd_check_duration_seconds_bucket",
            "ratelimitd_store_errors_total", "ratelimitd_redis_up", "ratelimitd_config_reloads_total",
            "ratelimitd_config_last_reload_success", "ratelimitd_build_info"}
used = set()
for p in dash["panels"]:
    for t in p["targets"]:
        used |= set(re.findall(r"ratelimitd_[a-z_]+", t["expr"]))
check(used and used <= exported, f"dashboard queries only exported metrics: {sorted(used - exported)}")
titles = " ".join(p["title"] for p in dash["panels"]).lower()
for want in ("outcome", "denial ratio", "p50", "redis"):
    check(want in titles, f"dashboard has a panel on {want}")

print(f"deploy: {passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
