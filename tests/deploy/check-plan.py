#!/usr/bin/env python3
"""`kafka-gateway plan` checked against the configuration it was made from, on every cloud.

For each cloud, the real binary writes a plan for brokers 1-3 (the recipe of TiDB Cloud's guide)
in both formats, and `kafka-gateway validate` names the same brokers; then:

- the CLI script runs for real under `sh`, with `aws`, `az` and `gcloud` replaced by a recorder on
  PATH that logs every command line and answers with a made-up ID. For `aws`, the recorder first
  hands the command to the real AWS CLI (awscli from PyPI, pointed at a closed loopback port with
  dummy credentials): the CLI checks the operation and every parameter against AWS's service model
  before it connects, so a wrong flag or value fails here. `gcloud` calls go to the real gcloud
  (google-cloud-cli, part of this machine's image; no registry reachable here serves it) with a
  configuration of its own and no account: it parses every flag and choice, then stops for want of
  credentials without opening a connection. az is not installable here (azure-cli's hundreds of
  dependencies): its commands are checked for structure only.
- the recorded commands hold one load-balancer / firewall rule per broker port plus the bootstrap
  port, each on the port `validate` gives, and the DNS lines name exactly `validate`'s addresses;
- the Terraform parses with python-hcl2 and holds the same rules as resources;
- `--only-new` against the first plan, with broker 4 added, creates only broker 4's rules;
- on AWS, the script stops before creating anything when the subnets miss an AZ the names use.

usage: check-plan.py KAFKA_GATEWAY_BINARY
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import hcl2

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIGS = {
    "aws": 'advertised = "b{node_id}.{az}.unique_name.aws.plc.tidbcloud.com:{port}"\n'
    'az_by_rack = { "us-west-2a" = "usw2-az1", "us-west-2c" = "usw2-az2", "us-west-2b" = "usw2-az3" }\n',
    "azure": 'advertised = "b{node_id}.abc.eastus.azure.3199745.tidbcloud.com:{port}"\n',
    "gcp": 'advertised = "b{node_id}.abc.us-west1.gcp.3199745.tidbcloud.com:{port}"\n',
}
BROKERS = ["1:us-west-2a", "2:us-west-2c", "3:us-west-2b"]
LATER = "4:us-west-2a"

RECORDER = r"""#!/bin/sh
# Records one cloud CLI call and answers with a made-up ID (check_aws then hands the aws calls to awscli).
tool=$(basename "$0")
printf '%s' "$tool" >> "$PLAN_LOG"
for a in "$@"; do printf ' %s' "$(printf '%s' "$a" | sed "s/'/'\\\\''/g; s/^/'/; s/$/'/")" >> "$PLAN_LOG"; done
echo >> "$PLAN_LOG"
if [ "$tool" = aws ] && [ "$2" = describe-subnets ]; then echo "$FAKE_AZS"; exit 0; fi
echo "fake-$tool-$2"
"""


def fail(message):
    print(f"plan check FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def run(args, **kw):
    out = subprocess.run(args, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        fail(f"{' '.join(args)} exited {out.returncode}:\n{out.stdout}{out.stderr}")
    return out.stdout


def config_file(tmp, cloud, access=""):
    path = os.path.join(tmp, f"{cloud}{'-access' if access else ''}.toml")
    with open(path, "w") as f:
        f.write('[upstream]\nbootstrap_servers = ["10.0.0.11:9092"]\n[listeners.tidb]\n'
                'bootstrap_port = 9092\nbroker_port_base = 9092\n' + CONFIGS[cloud] + access +
                '[admin]\nbind = "0.0.0.0:9644"\n')
    return path


def validate(binary, config, brokers):
    """(node id, advertised host:port, listen port) per broker, as `kafka-gateway validate` prints them."""
    args = [binary, "validate", "--config", config]
    for b in brokers:
        args += ["--broker", b]
    rows = []
    for line in run(args).splitlines()[1:]:
        cells = line.split()
        # The table's rows; `ok:` ends it, and each group's `access` line follows it.
        if line.startswith(("ok:", "access ")) or not cells:
            continue
        rows.append((int(cells[1]), cells[5], int(cells[6].rsplit(":", 1)[1])))
    if len(rows) != len(brokers):
        fail(f"validate printed {rows} for {brokers}")
    return rows


def plan(binary, config, cloud, fmt, brokers, *extra):
    args = [binary, "plan", "--config", config, "--for", cloud, "--format", fmt, *extra]
    for b in brokers:
        args += ["--broker", b]
    return run(args)


def run_script(tmp, script, env_extra):
    """Runs a CLI plan under sh with the recorder in front of the cloud CLIs; the recorded commands."""
    bindir = os.path.join(tmp, "bin")
    os.makedirs(bindir, exist_ok=True)
    for tool in ("aws", "az", "gcloud"):
        path = os.path.join(bindir, tool)
        with open(path, "w") as f:
            f.write(RECORDER)
        os.chmod(path, 0o755)
    log = os.path.join(tmp, "calls.log")
    open(log, "w").close()
    path = os.path.join(tmp, "plan.sh")
    with open(path, "w") as f:
        f.write(script)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", PLAN_LOG=log,
               FAKE_AZS="usw2-az1\tusw2-az2\tusw2-az3", VPC_ID="vpc-0a1b2c3d4e5f67890",
               SUBNET_IDS="subnet-0a1b2c3d4e5f67891 subnet-0a1b2c3d4e5f67892 subnet-0a1b2c3d4e5f67893",
               GATEWAY_TARGETS="Id=i-0a1b2c3d4e5f67891 Id=i-0a1b2c3d4e5f67892",
               TIDB_CLOUD_PRINCIPAL="arn:aws:iam::123456789012:root", RESOURCE_GROUP="kafka-rg",
               VNET="kafka-vnet", SUBNET="gateway-subnet", GATEWAY_NICS="gw-1-nic:ipconfig1 gw-2-nic:ipconfig1",
               TIDB_CLOUD_SUBSCRIPTION="99549169-6cee-4263-8491-924a3011ee31", REGION="us-west1",
               NETWORK="kafka-net", PSC_NAT_RANGE="10.100.0.0/24", GATEWAY_TAG="kafka-gateway",
               PSC_NAT_SUBNET="psc-nat", INSTANCE_GROUPS="us-west1-a/gw-a us-west1-b/gw-b",
               TIDB_CLOUD_PROJECT="tidb-cloud-project")
    env.update(env_extra)
    out = subprocess.run(["sh", path], capture_output=True, text=True, env=env)
    with open(log) as f:
        calls = [shlex.split(line) for line in f if line.strip()]
    check_aws(calls)
    check_gcloud(calls)
    return out, calls


# Calls the real CLIs already accepted: plans repeat most commands, and each gcloud start costs a second.
ACCEPTED = set()


def check_aws(calls):
    """Every recorded aws call through the real AWS CLI, in this process (one Python start for all):
    awscli checks the operation and each parameter against AWS's service model before it connects,
    and it is pointed at a closed loopback port with dummy credentials, so an accepted call ends in
    "Could not connect" and a wrong one in awscli's own refusal."""
    import contextlib
    import io
    os.environ.update(AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="example", AWS_DEFAULT_REGION="us-west-2",
                      AWS_MAX_ATTEMPTS="1", AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    from awscli.clidriver import create_clidriver
    driver = create_clidriver()
    for call in calls:
        if call[0] != "aws" or tuple(call) in ACCEPTED:
            continue
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                driver.main(["--endpoint-url", "http://127.0.0.1:9", "--cli-connect-timeout", "1", *call[1:]])
            except SystemExit:
                pass
        if "Could not connect to the endpoint URL" not in err.getvalue():
            fail(f"awscli refused: {shlex.join(call)}\n{err.getvalue()}")
        ACCEPTED.add(tuple(call))


def check_gcloud(calls):
    """Every recorded gcloud call through the real gcloud, two at a time: with no account and the
    metadata server, update checks and usage reports turned off, an accepted call stops at "You do
    not currently have an active account selected" (before any connection) and a wrong one at the
    argument parser."""
    from concurrent.futures import ThreadPoolExecutor

    calls = list({tuple(c): c for c in calls if c[0] == "gcloud" and tuple(c) not in ACCEPTED}.values())
    if not calls:
        return
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        fail("gcloud is missing (google-cloud-cli comes with this machine's image; no reachable registry serves it)")
    with tempfile.TemporaryDirectory() as config:
        env = dict(os.environ, CLOUDSDK_CONFIG=config, CLOUDSDK_CORE_CHECK_GCE_METADATA="false",
                   CLOUDSDK_CORE_DISABLE_USAGE_REPORTING="true", CLOUDSDK_CORE_DISABLE_PROMPTS="1",
                   CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK="true", CLOUDSDK_CORE_PROJECT="example-project")

        def run_one(call):
            out = subprocess.run([gcloud, *call[1:]], capture_output=True, text=True, env=env)
            return call, out.stderr

        with ThreadPoolExecutor(max_workers=2) as pool:
            for call, err in pool.map(run_one, calls):
                if "You do not currently have an active account selected" not in err:
                    fail(f"gcloud refused: {shlex.join(call)}\n{err}")
                ACCEPTED.add(tuple(call))


def flag(call, name):
    for i, arg in enumerate(call):
        if arg == name:
            return call[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def rules_from_calls(cloud, calls):
    """The (rule name, port) pairs the recorded commands create: one per forwarded port."""
    if cloud == "aws":
        groups = {flag(c, "--port"): flag(c, "--name") for c in calls if c[1:3] == ["elbv2", "create-target-group"]}
        listeners = [flag(c, "--port") for c in calls if c[1:3] == ["elbv2", "create-listener"]]
        if sorted(listeners) != sorted(groups):
            fail(f"aws: listeners {listeners} and target groups {groups} differ")
        for c in calls:
            if c[1:3] == ["elbv2", "create-listener"] and "TargetGroupArn=fake-aws-create-target-group" not in flag(c, "--default-actions"):
                fail(f"aws: a listener that does not forward to its target group: {c}")
        return {(name, int(port)) for port, name in groups.items()}
    if cloud == "azure":
        rules = [c for c in calls if c[1:5] == ["network", "lb", "rule", "create"]]
        for c in rules:
            if flag(c, "--frontend-port") != flag(c, "--backend-port"):
                fail(f"azure: a rule that maps a port to another: {c}")
        return {(flag(c, "--name"), int(flag(c, "--frontend-port"))) for c in rules}
    rules = [c for c in calls if c[1:4] == ["compute", "firewall-rules", "create"] and not c[4].endswith("-health")]
    for c in calls:
        if c[1:4] == ["compute", "forwarding-rules", "create"] and flag(c, "--ports") != "ALL":
            fail(f"gcp: the forwarding rule must carry ALL ports: {c}")
    return {(c[4], int(flag(c, "--allow").split(":")[1])) for c in rules}


def rules_from_terraform(cloud, text):
    doc = hcl2.loads(text)
    resources = {}
    for block in doc.get("resource", []):
        for kind, named in block.items():
            for name, body in named.items():
                resources[(kind.strip('"'), name.strip('"'))] = body
    unquote = lambda v: v.strip('"') if isinstance(v, str) else v
    if cloud == "aws":
        listeners = {unquote(b["port"]) for (k, _), b in resources.items() if k == "aws_lb_listener"}
        groups = {(unquote(b["name"]), int(b["port"])) for (k, _), b in resources.items() if k == "aws_lb_target_group"}
        if {p for _, p in groups} != {int(p) for p in listeners}:
            fail(f"aws terraform: listeners {listeners} and target groups {groups} differ")
        return groups
    if cloud == "azure":
        return {(unquote(b["name"]), int(b["frontend_port"])) for (k, _), b in resources.items() if k == "azurerm_lb_rule"}
    return {(unquote(b["name"]), int(unquote(b["allow"][0]["ports"][0])))
            for (k, _), b in resources.items()
            if k == "google_compute_firewall" and not unquote(b["name"]).endswith("-health")}


def expected_rules(cloud, rows, bootstrap=9092, only=None):
    base = "kafka-gateway-tidb"
    rules = set() if only else {(f"{base}-bootstrap", bootstrap)}
    for node, _, port in rows:
        if only is None or node in only:
            rules.add((f"{base}-b{node}", port))
    return rules


def dns_names(text):
    return sorted(m.group(1) for m in re.finditer(r"^#\s+(\S+:\d+)\s+broker \d+", text, re.M))


def main(binary):
    checked = []
    with tempfile.TemporaryDirectory() as tmp:
        for cloud in CONFIGS:
            config = config_file(tmp, cloud)
            rows = validate(binary, config, BROKERS)
            advertised = sorted(a for _, a, _ in rows)

            script = plan(binary, config, cloud, "cli", BROKERS)
            out, calls = run_script(tmp, script, {})
            if out.returncode != 0:
                fail(f"{cloud}: the CLI plan failed under sh:\n{out.stdout}{out.stderr}")
            got = rules_from_calls(cloud, calls)
            if got != expected_rules(cloud, rows):
                fail(f"{cloud} cli: rules {sorted(got)} != {sorted(expected_rules(cloud, rows))}")
            if dns_names(script) != advertised:
                fail(f"{cloud} cli: DNS names {dns_names(script)} != validate's {advertised}")

            tf = plan(binary, config, cloud, "terraform", BROKERS)
            got = rules_from_terraform(cloud, tf)
            if got != expected_rules(cloud, rows):
                fail(f"{cloud} terraform: rules {sorted(got)} != {sorted(expected_rules(cloud, rows))}")
            if dns_names(tf) != advertised:
                fail(f"{cloud} terraform: DNS names {dns_names(tf)} != validate's {advertised}")

            # PROXY protocol v2 on: every rule (AWS target groups), the PLS, the attachment, because
            # the group requires it; asking for it where the group does not read it is refused.
            refused = subprocess.run([binary, "plan", "--config", config, "--for", cloud, "--proxy-protocol"]
                                     + [a for b in BROKERS for a in ("--broker", b)], capture_output=True, text=True)
            if refused.returncode == 0 or "listeners.tidb.access.proxy_protocol" not in refused.stderr:
                fail(f"{cloud}: --proxy-protocol without proxy_protocol = \"required\" was not refused: {refused.stderr}")
            config = config_file(tmp, cloud, '[listeners.tidb.access]\nproxy_protocol = "required"\n')
            out, calls = run_script(tmp, plan(binary, config, cloud, "cli", BROKERS), {})
            if out.returncode != 0:
                fail(f"{cloud}: the --proxy-protocol CLI plan failed under sh:\n{out.stdout}{out.stderr}")
            if cloud == "aws":
                on = [c for c in calls if c[1:3] == ["elbv2", "modify-target-group-attributes"]
                      and flag(c, "--attributes") == "Key=proxy_protocol_v2.enabled,Value=true"]
                if len(on) != len(expected_rules(cloud, rows)):
                    fail(f"aws: proxy_protocol_v2 on {len(on)} target groups, not every one")
            elif cloud == "azure":
                if [flag(c, "--enable-proxy-protocol") for c in calls if c[1:4] == ["network", "private-link-service", "create"]] != ["true"]:
                    fail("azure: the Private Link Service does not turn PROXY protocol on")
            elif not any(c[1:4] == ["compute", "service-attachments", "create"] and "--enable-proxy-protocol" in c for c in calls):
                fail("gcp: the service attachment does not turn PROXY protocol on")
            tf_proxy = plan(binary, config, cloud, "terraform", BROKERS, "--proxy-protocol")
            config = config_file(tmp, cloud)
            attr = {"aws": "proxy_protocol_v2", "azure": "enable_proxy_protocol", "gcp": "enable_proxy_protocol"}[cloud]
            values = [b[attr] for block in hcl2.loads(tf_proxy)["resource"] for named in block.values()
                      for b in named.values() if attr in b]
            if not values or any(v is not True for v in values):
                fail(f"{cloud} terraform --proxy-protocol: {attr} = {values}")

            # A broker added later: only its rule, in both formats, against the plans above.
            later = validate(binary, config, BROKERS + [LATER])
            for fmt, before in (("cli", script), ("terraform", tf)):
                previous = os.path.join(tmp, f"previous-{cloud}-{fmt}")
                with open(previous, "w") as f:
                    f.write(before)
                new = plan(binary, config, cloud, fmt, BROKERS + [LATER], "--only-new", previous)
                want = expected_rules(cloud, later, only={4})
                if fmt == "cli":
                    out, calls = run_script(tmp, new, {})
                    if out.returncode != 0:
                        fail(f"{cloud}: the --only-new CLI plan failed under sh:\n{out.stdout}{out.stderr}")
                    got = rules_from_calls(cloud, calls)
                    creates = [c for c in calls if "create" in c[2:5] and c not in ()]
                    shared = [c for c in creates if (c[1:3] == ["elbv2", "create-load-balancer"]
                              or c[1:4] in (["network", "lb", "create"], ["network", "private-link-service", "create"])
                              or c[1:3] == ["compute", "service-attachments"])]
                    if shared:
                        fail(f"{cloud}: --only-new creates shared resources again: {shared}")
                else:
                    got = rules_from_terraform(cloud, new)
                    if any(k in new for k in ("resource \"aws_lb\"", "resource \"azurerm_lb\"",
                                              "google_compute_service_attachment\"")):
                        fail(f"{cloud}: --only-new terraform declares shared resources again:\n{new}")
                if got != want:
                    fail(f"{cloud} {fmt} --only-new: rules {sorted(got)} != {sorted(want)}")
            checked.append(cloud)

        # The AZ guard: subnets that miss usw2-az3 stop the script before anything is created.
        config = config_file(tmp, "aws")
        out, calls = run_script(tmp, plan(binary, config, "aws", "cli", BROKERS), {"FAKE_AZS": "usw2-az1\tusw2-az2"})
        if out.returncode == 0 or "SUBNET_IDS has no subnet in usw2-az3" not in out.stderr:
            fail(f"aws: subnets without usw2-az3 were not refused:\n{out.stdout}{out.stderr}")
        if any(c[1:3] == ["elbv2", "create-load-balancer"] for c in calls):
            fail("aws: the load balancer was created although the subnets miss an AZ")

    print(f"plan ok: {', '.join(checked)}: CLI scripts ran (aws commands accepted by awscli, gcloud commands by gcloud), "
          f"Terraform parsed by python-hcl2, one rule per port, --only-new adds only broker 4")


if __name__ == "__main__":
    main(sys.argv[1])
