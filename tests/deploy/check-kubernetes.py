#!/usr/bin/env python3
"""deploy/kubernetes checked offline: rendered by kubectl's own kustomize, validated against the
Kubernetes API's schemas, and compared with what the gateway itself says of its configuration.

For the base and each overlay (aws, azure, gcp):
- `kubectl kustomize` renders it; every object validates, strictly (no unknown field), against the
  schemas kubernetes-validate bundles for Kubernetes 1.30 (the oldest with the preStop sleep
  action) and 1.37; GKE's ServiceAttachment against deploy/kubernetes/schemas;
- the rendered ConfigMap's gateway.toml passes `kafka-gateway validate --broker …` for the brokers
  the Service names (its kafka-gateway/brokers annotation), and the Service's ports are exactly the
  bootstrap port and those brokers' ports (port name broker-N for node N), each to the same port on
  the pod; the container declares them; the NetworkPolicy admits them and lets out only the
  bootstrap servers and DNS;
- the probes ask /readyz and /livez on admin.bind's port, which binds every address; the grace
  period outlasts the preStop pause plus gateway.drain_secs; ≥ 2 replicas spread over zones, a
  PodDisruptionBudget over the same pods; non-root, read-only root filesystem, no capabilities,
  seccomp RuntimeDefault; requests and limits set, worker_threads within the CPU limit;
- every file gateway.toml names (its commented TLS/SASL lines too) lies in a mounted Secret or
  ConfigMap that provides it (deploy/kubernetes/secrets renders those Secrets from stand-in files);
- each cloud's load-balancer annotations are there with their values, and the load balancer sends
  PROXY protocol v2 exactly when the listener group requires it.

usage: check-kubernetes.py KAFKA_GATEWAY_BINARY      (KUBECTL names kubectl)
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import jsonschema
import kubernetes_validate
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
KUBE = os.path.join(HERE, "..", "..", "deploy", "kubernetes")
KUBECTL = os.environ.get("KUBECTL", "kubectl")
VERSIONS = ["1.30.0", "1.37.0"]
CRD_SCHEMAS = {("networking.gke.io/v1", "ServiceAttachment"): "serviceattachment-networking.gke.io-v1.json"}
DEFAULT_DRAIN_SECS = 30

ANNOTATIONS = {
    "aws": {
        "service.beta.kubernetes.io/aws-load-balancer-type": "external",
        "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
        "service.beta.kubernetes.io/aws-load-balancer-attributes": "load_balancing.cross_zone.enabled=true",
    },
    "azure": {
        "service.beta.kubernetes.io/azure-load-balancer-internal": "true",
        "service.beta.kubernetes.io/azure-pls-create": "true",
        # cloud-provider-azure applies azure-pls-auto-approval only with visibility "*".
        "service.beta.kubernetes.io/azure-pls-visibility": "*",
    },
    "gcp": {"networking.gke.io/load-balancer-type": "Internal"},
    "base": {},
}


def fail(where, message):
    print(f"kubernetes check FAILED: {where}: {message}", file=sys.stderr)
    sys.exit(1)


def render(path):
    out = subprocess.run([KUBECTL, "kustomize", path], capture_output=True, text=True)
    if out.returncode != 0:
        fail(path, f"kubectl kustomize: {out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def validate_schemas(where, docs):
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key in CRD_SCHEMAS:
            with open(os.path.join(KUBE, "schemas", CRD_SCHEMAS[key])) as f:
                schema = json.load(f)
            try:
                jsonschema.validate(doc, schema)
            except jsonschema.ValidationError as e:
                fail(where, f"{doc['kind']} {doc['metadata']['name']}: {e.message} at {list(e.absolute_path)}")
            continue
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                fail(where, f"{doc['kind']} {doc['metadata']['name']} (Kubernetes {version}): {e.message} "
                            f"at {list(e.path)}")
            except kubernetes_validate.SchemaNotFoundError:
                fail(where, f"no schema for {key} in Kubernetes {version}, and none vendored")


def one(docs, kind, where):
    found = [d for d in docs if d["kind"] == kind]
    if len(found) != 1:
        fail(where, f"expected one {kind}, found {len(found)}")
    return found[0]


def gateway_validate(binary, where, toml_text, brokers):
    """`kafka-gateway validate` on the rendered configuration: {node: (advertised, listen port)}."""
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(toml_text)
        path = f.name
    try:
        args = [binary, "validate", "--config", path] + [a for b in brokers for a in ("--broker", b)]
        out = subprocess.run(args, capture_output=True, text=True)
        if out.returncode != 0:
            fail(where, f"kafka-gateway validate refused the ConfigMap's gateway.toml:\n{out.stdout}{out.stderr}")
    finally:
        os.unlink(path)
    rows = {}
    for line in out.stdout.splitlines()[1:]:
        cells = line.split()
        if cells and not line.startswith(("ok:", "access ")):
            rows[int(cells[1])] = (cells[5], int(cells[6].rsplit(":", 1)[1]))
    return rows


def check_overlay(binary, name, secrets):
    where = f"deploy/kubernetes/{name}"
    docs = render(os.path.join(KUBE, name))
    validate_schemas(where, docs)
    deployment = one(docs, "Deployment", where)
    service = one(docs, "Service", where)
    policy = one(docs, "NetworkPolicy", where)
    pdb = one(docs, "PodDisruptionBudget", where)
    configmap = one(docs, "ConfigMap", where)
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    [container] = spec["containers"]
    toml_text = configmap["data"]["gateway.toml"]
    config = tomllib.loads(toml_text)
    [group] = config["listeners"]

    # The brokers' ports, as the gateway computes them, against the Service.
    brokers = service["metadata"]["annotations"]["kafka-gateway/brokers"].split(",")
    rows = gateway_validate(binary, where, toml_text, brokers)
    bootstrap = config["listeners"][group]["bootstrap_port"]
    want = {"bootstrap": bootstrap, **{f"broker-{node}": port for node, (_, port) in rows.items()}}
    got = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    if got != want:
        fail(where, f"Service ports {got} != the gateway's {want}")
    for p in service["spec"]["ports"]:
        if p["targetPort"] != p["port"] or p.get("protocol", "TCP") != "TCP":
            fail(where, f"Service port {p} must go to the same TCP port on the pod")
    if service["spec"]["type"] != "LoadBalancer":
        fail(where, "the Service is not a LoadBalancer")
    if service["spec"]["selector"] != deployment["spec"]["selector"]["matchLabels"]:
        fail(where, "the Service does not select the Deployment's pods")

    # The admin endpoint and the probes.
    admin_bind = config.get("admin", {}).get("bind", "127.0.0.1:9644")
    admin_ip, admin_port = admin_bind.rsplit(":", 1)
    if admin_ip not in ("0.0.0.0", "[::]"):
        fail(where, f"admin.bind {admin_bind} is not reachable by the kubelet's probes")
    declared = {p["name"]: p["containerPort"] for p in container["ports"]}
    if declared != {**want, "admin": int(admin_port)}:
        fail(where, f"container ports {declared} != {want} and admin {admin_port}")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = container[probe]["httpGet"]
        if get["path"] != path or declared.get(get["port"], get["port"]) != int(admin_port):
            fail(where, f"{probe} asks {get}, not {path} on the admin port {admin_port}")

    # Drain, spread, disruption budget.
    drain = config.get("gateway", {}).get("drain_secs", DEFAULT_DRAIN_SECS)
    pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = spec["terminationGracePeriodSeconds"]
    if grace <= pause + drain:
        fail(where, f"terminationGracePeriodSeconds {grace} is not above preStop {pause} s + drain {drain} s")
    if deployment["spec"]["replicas"] < 2:
        fail(where, "fewer than 2 replicas")
    zones = [c for c in spec.get("topologySpreadConstraints", []) if c["topologyKey"] == "topology.kubernetes.io/zone"]
    if not zones or zones[0]["labelSelector"]["matchLabels"] != deployment["spec"]["selector"]["matchLabels"]:
        fail(where, "no topology spread over zones for the Deployment's pods")
    if pdb["spec"]["selector"]["matchLabels"] != deployment["spec"]["selector"]["matchLabels"]:
        fail(where, "the PodDisruptionBudget does not cover the Deployment's pods")

    # Security.
    psc, csc = spec["securityContext"], container["securityContext"]
    if not (psc.get("runAsNonRoot") and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
            and csc.get("readOnlyRootFilesystem") and csc.get("allowPrivilegeEscalation") is False
            and csc.get("capabilities", {}).get("drop") == ["ALL"] and not csc.get("capabilities", {}).get("add")):
        fail(where, f"security contexts {psc} / {csc}")
    resources = container["resources"]
    if not all(k in resources.get(s, {}) for s in ("requests", "limits") for k in ("cpu", "memory")):
        fail(where, f"resources without requests and limits: {resources}")
    workers = config.get("gateway", {}).get("worker_threads", 0)
    cpu_limit = resources["limits"]["cpu"]
    cores = float(cpu_limit[:-1]) / 1000 if str(cpu_limit).endswith("m") else float(cpu_limit)
    if not 0 < workers <= max(1, cores):
        fail(where, f"gateway.worker_threads {workers} does not fit the CPU limit {cpu_limit}")

    # Files the configuration names lie in mounted volumes that provide them.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for path in sorted(set(re.findall(r'"(/etc/kafka-gateway/[^"]+)"', toml_text))):
        mount = next((m for p, m in mounts.items() if path.startswith(p.rstrip("/") + "/")), None)
        if mount is None:
            fail(where, f"gateway.toml names {path}, which no volume mounts")
        volume = volumes[mount["name"]]
        key = path[len(mount["mountPath"].rstrip("/")) + 1:]
        if "secret" in volume:
            provided = secrets.get(volume["secret"]["secretName"])
            if provided is None or key not in provided:
                fail(where, f"{path}: Secret {volume['secret']['secretName']} ({provided}) has no key {key}")
        else:
            fail(where, f"{path} is in volume {mount['name']}, not a Secret")

    # The NetworkPolicy: in, the gateway's ports and the admin port; out, the brokers and DNS only.
    if policy["spec"]["podSelector"]["matchLabels"] != deployment["spec"]["selector"]["matchLabels"]:
        fail(where, "the NetworkPolicy does not select the Deployment's pods")
    allowed_in = []
    for rule in policy["spec"]["ingress"]:
        for p in rule["ports"]:
            allowed_in.append(range(p["port"], p.get("endPort", p["port"]) + 1))
    for port in [*want.values(), int(admin_port)]:
        if not any(port in r for r in allowed_in):
            fail(where, f"the NetworkPolicy does not admit port {port}")
    servers = config["upstream"]["bootstrap_servers"]
    servers = servers if isinstance(servers, list) else servers.split(",")
    out_rules = policy["spec"]["egress"]
    dns = [r for r in out_rules if {(p["protocol"], p["port"]) for p in r["ports"]} == {("UDP", 53), ("TCP", 53)}]
    brokers_out = [r for r in out_rules if r not in dns]
    if len(dns) != 1 or dns[0]["to"][0]["podSelector"]["matchLabels"] != {"k8s-app": "kube-dns"}:
        fail(where, f"egress to DNS is not exactly kube-dns on port 53: {dns}")
    pairs = {(t["ipBlock"]["cidr"], p["port"]) for r in brokers_out for t in r["to"] for p in r["ports"]}
    want_pairs = {(f"{s.rsplit(':', 1)[0]}/32", int(s.rsplit(":", 1)[1])) for s in servers}
    if pairs != want_pairs:
        fail(where, f"egress {sorted(pairs)} != the bootstrap servers {sorted(want_pairs)}")

    # The cloud's load balancer, and PROXY protocol on both sides or neither.
    annotations = service["metadata"].get("annotations", {})
    for key, value in ANNOTATIONS[name].items():
        if annotations.get(key) != value:
            fail(where, f"annotation {key} is {annotations.get(key)!r}, not {value!r}")
    required = config["listeners"][group].get("access", {}).get("proxy_protocol") == "required"
    if name == "aws":
        sends = "proxy_protocol_v2.enabled=true" in annotations.get(
            "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes", "")
        if annotations["service.beta.kubernetes.io/aws-load-balancer-name"] != f"kafka-gateway-{group}":
            fail(where, "the NLB's name is not the one `kafka-gateway plan --for aws` looks up")
        if sends and annotations.get("service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol") != "tcp":
            fail(where, "with PROXY protocol on, NLB health checks carry the header: they must be TCP")
    elif name == "azure":
        sends = annotations.get("service.beta.kubernetes.io/azure-pls-proxy-protocol") == "true"
        if sends and service["spec"].get("externalTrafficPolicy") == "Local":
            fail(where, "PLS PROXY protocol with externalTrafficPolicy Local fails the load balancer's probes")
    elif name == "gcp":
        attachment = one(docs, "ServiceAttachment", where)
        if attachment["spec"]["resourceRef"]["name"] != service["metadata"]["name"]:
            fail(where, "the ServiceAttachment does not name the Service")
        sends = attachment["spec"].get("proxyProtocol", False)
    else:
        sends = False
    if sends != required:
        fail(where, f"the load balancer sends PROXY protocol: {sends}; listeners.{group}.access requires it: {required}")
    return f"{name} ({len(docs)} objects, ports {sorted(want.values())})"


def render_secrets():
    """deploy/kubernetes/secrets rendered from stand-in files: {secret name: its keys}."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "secrets")
        shutil.copytree(os.path.join(KUBE, "secrets"), copy)
        for name in ("tls.crt", "tls.key", "ca.crt", "password"):
            with open(os.path.join(copy, name), "w") as f:
                f.write(f"stand-in {name}\n")
        docs = render(copy)
    validate_schemas("deploy/kubernetes/secrets", docs)
    return {d["metadata"]["name"]: set(d["data"]) for d in docs if d["kind"] == "Secret"}


def main(binary):
    secrets = render_secrets()
    done = [check_overlay(binary, name, secrets) for name in ("base", "aws", "azure", "gcp")]
    print(f"kubernetes ok: secrets {sorted(secrets)}; " + "; ".join(done) +
          f"; schemas of Kubernetes {', '.join(VERSIONS)}")


if __name__ == "__main__":
    main(sys.argv[1])
