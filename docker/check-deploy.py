#!/usr/bin/env python3
"""Cross-checks of the deployment recipes that no schema can make: that each compose file and Kubernetes manifest
agrees with the config it ships with (ports, hosts, secret paths, session counts, memory), and the rules written in
their comments. Run by `make lint-deploy` after the schema validators; needs PyYAML and Python 3.11+ (tomllib).

Usage: check-deploy.py DOCKER_DIR KUBERNETES_DIR. Prints one line per problem and exits 1 if there is any."""

import re
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import yaml

# Measured (README.md, docs): the daemon idles at ~15 MiB, one headless Chromium login takes up to ~430 MB (PSS).
DAEMON_MIB = 16
CHROMIUM_MIB = 430
# browser.max_sessions when the config does not say (contract.md).
DEFAULT_MAX_SESSIONS = 2
# The image's user (docker/Dockerfile: USER 10001:10001).
IMAGE_UID = 10001
# The Compose spec's restart values; its JSON schema only says "string".
RESTART = re.compile(r"^(no|always|unless-stopped|on-failure(:[1-9][0-9]*)?)$")

problems: list[str] = []


def problem(where: str, message: str) -> None:
    problems.append(f"{where}: {message}")


def mib(quantity: str) -> float:
    """A memory quantity of compose ("1200M", "1.5g") or Kubernetes ("700Mi", "1Gi") in MiB."""
    m = re.fullmatch(r"([0-9.]+)\s*([A-Za-z]*)", str(quantity).strip())
    if not m:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    units = {"": 1 / 2**20, "b": 1 / 2**20, "k": 1 / 1024, "kb": 1 / 1024, "ki": 1 / 1024, "m": 1, "mb": 1,
             "mi": 1, "g": 1024, "gb": 1024, "gi": 1024}
    return float(m[1]) * units[m[2].lower()]


def listen_port(config: dict, where: str) -> int:
    listen = config.get("server", {}).get("listen", "127.0.0.1:8787")
    host, _, port = listen.rpartition(":")
    if host not in ("0.0.0.0", "[::]"):
        problem(where, f"server.listen is {listen!r}: in a container it must be 0.0.0.0:PORT, or nothing outside "
                       "the container's own loopback reaches it")
    return int(port)


def redis_hosts(config: dict) -> set[str]:
    urls = [s["url"] for s in config.get("sinks", []) if s.get("type") == "redis"]
    coordination = config.get("coordination", {})
    if coordination.get("type") == "redis":
        urls.append(coordination.get("url", ""))
    return {urlsplit(u).hostname or "" for u in urls}


def max_sessions(config: dict) -> int:
    return int(config.get("browser", {}).get("max_sessions", DEFAULT_MAX_SESSIONS))


def needed_mib(sessions: int) -> int:
    return DAEMON_MIB + sessions * CHROMIUM_MIB


def secret_files(config: dict) -> list[str]:
    return [v for a in config.get("accounts", []) for k, v in a.items() if k.endswith("_file")]


def check_compose(path: Path) -> None:
    where = f"docker/{path.name}"
    doc = yaml.safe_load(path.read_text())
    services: dict = doc["services"]
    example = doc.get("x-config-example")
    if not example or not (path.parent / example).is_file():
        problem(where, "x-config-example must name the example config (in docker/) that goes with this file")
        return
    config = tomllib.loads((path.parent / example).read_text())
    port = listen_port(config, f"docker/{example}")

    daemons = {name: s for name, s in services.items() if s.get("command") == ["run"]}
    if not daemons:
        problem(where, "no service runs the daemon (command: [\"run\"])")
    host_ports: dict[str, str] = {}
    state_volumes: dict[str, str] = {}
    for name, service in services.items():
        restart = str(service.get("restart", "no"))
        if not RESTART.match(restart):
            problem(where, f"services.{name}.restart: {restart!r} is not a Compose restart policy")
        for published in service.get("ports", []):
            host_part, _, container_port = str(published).rpartition(":")
            if name in daemons and int(container_port) != port:
                problem(where, f"services.{name}.ports: {published!r} does not reach server.listen's port {port}")
            if host_part in host_ports:
                problem(where, f"services.{name}.ports: {host_part} is published by {host_ports[host_part]} too")
            host_ports[host_part] = name
    for name, service in daemons.items():
        # Exit 2 (bad config) must not be restarted for ever: an always-restarting daemon waits for a check first.
        if service.get("restart") in ("always", "unless-stopped"):
            gate = service.get("depends_on", {}).get("check-config", {})
            check = services.get("check-config", {})
            if gate.get("condition") != "service_completed_successfully" or check.get("command") != ["check-config"]:
                problem(where, f"services.{name}: restarts always, so it must depend on a check-config service "
                               "(command [\"check-config\"]) with condition service_completed_successfully")
        mounted = {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", []) if ":" in v}
        state = mounted.get(config.get("state_dir", "/var/lib/upstox-relogin"))
        if state in state_volumes:
            problem(where, f"services.{name}: shares its state volume {state!r} with {state_volumes[state]}")
        state_volumes[state] = name
        for file in secret_files(config):
            if file.startswith("/run/secrets/") and file.removeprefix("/run/secrets/") not in service.get("secrets", []):
                problem(where, f"services.{name}: the config reads {file}, but the service has no such secret")
        webdriver = config.get("browser", {}).get("webdriver_url", "")
        memory = service.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory")
        if not webdriver and memory and mib(memory) < needed_mib(max_sessions(config)):
            problem(where, f"services.{name}: memory limit {memory} is below {needed_mib(max_sessions(config))} MiB, "
                           f"the daemon plus browser.max_sessions = {max_sessions(config)} Chromium logins")
    if len(daemons) > 1 and config.get("coordination", {}).get("type") != "redis":
        problem(f"docker/{example}", f"{len(daemons)} daemons need [coordination] type = \"redis\"")
    for host in redis_hosts(config):
        if host not in services:
            problem(f"docker/{example}", f"a redis:// URL names host {host!r}, which is no service of {path.name}")

    webdriver = config.get("browser", {}).get("webdriver_url", "")
    if webdriver:
        host = urlsplit(webdriver).hostname
        grid = services.get(host)
        if grid is None:
            problem(f"docker/{example}", f"browser.webdriver_url names host {host!r}, which is no service of {path.name}")
        else:
            slots = int(grid.get("environment", {}).get("SE_NODE_MAX_SESSIONS", 1))
            if slots != max_sessions(config):
                problem(where, f"services.{host}: SE_NODE_MAX_SESSIONS = {slots}, but browser.max_sessions = "
                               f"{max_sessions(config)} in {example}: the two must match")
            if "shm_size" not in grid:
                problem(where, f"services.{host}: a browser container needs shm_size")


def check_kubernetes(directory: Path) -> None:
    where = lambda name: f"deploy/kubernetes/{name}"  # noqa: E731
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    manifests = sorted(p.name for p in directory.glob("*.yaml") if p.name != "kustomization.yaml")
    if sorted(kustomization.get("resources", [])) != manifests:
        problem(where("kustomization.yaml"), f"resources must list exactly the manifests here: {manifests}")

    objects: dict[tuple[str, str], tuple[str, dict]] = {}
    for name in manifests:
        for obj in yaml.safe_load_all((directory / name).read_text()):
            if obj:
                objects[(obj["kind"], obj["metadata"]["name"])] = (name, obj)
                if obj["kind"] != "Namespace" and obj["metadata"].get("namespace") != kustomization.get("namespace"):
                    problem(where(name), f"{obj['kind']}/{obj['metadata']['name']} must name namespace "
                                         f"{kustomization.get('namespace')!r}, for `kubectl apply -f`")

    config_file, config_map = objects[("ConfigMap", "upstox-relogin-config")]
    config = tomllib.loads(config_map["data"]["config.toml"])
    port = listen_port(config, where(config_file))
    file, deployment = objects[("Deployment", "upstox-relogin")]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "relogin"]

    for kind, (name, obj) in [(k, v) for (k, _), v in objects.items() if k in ("Deployment", "StatefulSet")]:
        if obj["spec"]["template"]["spec"].get("enableServiceLinks") is not False:
            problem(where(name), f"{kind}/{obj['metadata']['name']}: enableServiceLinks must be false (service "
                                 "variables named UPSTOX_RELOGIN_* would be read as config keys)")
    if pod["securityContext"].get("runAsUser") != IMAGE_UID or not pod["securityContext"].get("runAsNonRoot"):
        problem(where(file), f"the daemon must run as non-root uid {IMAGE_UID}, the image's user")
    if not container["securityContext"].get("readOnlyRootFilesystem"):
        problem(where(file), "the daemon's root filesystem must be read-only")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    if ports.get("http") != port:
        problem(where(file), f"containerPort http is {ports.get('http')}, server.listen's port is {port}")
    probes = {k: container.get(k, {}).get("httpGet", {}).get("path") for k in ("livenessProbe", "readinessProbe")}
    if probes != {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}:
        problem(where(file), f"probes must be liveness /healthz and readiness /readyz, not {probes}")
    if deployment["spec"]["replicas"] > 1 and config.get("coordination", {}).get("type") != "redis":
        problem(where(config_file), "several replicas need [coordination] type = \"redis\"")
    limit = container["resources"]["limits"]["memory"]
    if mib(limit) < needed_mib(max_sessions(config)):
        problem(where(file), f"memory limit {limit} is below {needed_mib(max_sessions(config))} MiB, the daemon "
                             f"plus browser.max_sessions = {max_sessions(config)} Chromium logins")

    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret_volumes = [n for n, v in volumes.items() if "secret" in v]
    for path in secret_files(config):
        if not any(path.startswith(mounts[n] + "/") for n in secret_volumes):
            problem(where(config_file), f"{path} is not under the Secret's mount point")
    for n in secret_volumes:
        if volumes[n]["secret"].get("defaultMode") not in (0o400, 0o440):
            problem(where(file), f"volume {n}: defaultMode must be 0400 or 0440 (decimal 256 or 288)")
    for path in ("/tmp", config.get("state_dir", "/var/lib/upstox-relogin")):
        if path not in mounts.values():
            problem(where(file), f"{path} must be a writable volume (the root filesystem is read-only)")
    for host in redis_hosts(config):
        if ("Service", host) not in objects:
            problem(where(config_file), f"a redis:// URL names host {host!r}, which is no Service here")

    ingress_file, ingress = objects[("Ingress", "upstox-relogin-notifier")]
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    notifier = config.get("server", {}).get("notifier_path", "/upstox/notifier")
    if [(p["path"], p["pathType"]) for p in paths] != [(notifier, "Exact")]:
        problem(where(ingress_file), f"must route exactly one path, {notifier} (server.notifier_path), pathType Exact")
    if not ingress["spec"].get("tls"):
        problem(where(ingress_file), "Upstox requires https for the webhook: a tls section is needed")
    for p in paths:
        backend = p["backend"]["service"]
        service = objects.get(("Service", backend["name"]))
        if service is None or backend["port"].get("name") not in {x["name"] for x in service[1]["spec"]["ports"]}:
            problem(where(ingress_file), f"backend {backend} is no port of a Service here")
        elif not service[1]["spec"].get("publishNotReadyAddresses"):
            problem(where(service[0]), f"Service/{backend['name']} must publish not-ready pods: the webhook must get "
                                       "through while no token is valid (the pods are not ready then)")


def main() -> int:
    docker, kubernetes = Path(sys.argv[1]), Path(sys.argv[2])
    composes = sorted(docker.glob("compose*.yaml"))
    for path in composes:
        check_compose(path)
    check_kubernetes(kubernetes)
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print(f"check-deploy: {len(composes)} compose files and deploy/kubernetes agree with their configs")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
