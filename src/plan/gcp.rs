//! Google Cloud: an internal passthrough network load balancer (a regional backend service of the
//! gateway's instance groups behind one forwarding rule) and a Private Service Connect service
//! attachment on that forwarding rule. The forwarding rule carries ALL ports: a rule's ports cannot
//! be changed once a service attachment uses it, so a broker added later would otherwise mean a
//! new attachment and a new endpoint on TiDB Cloud's side. The per-broker rules are firewall rules,
//! one per port, admitting the PSC NAT subnet.

use super::text::{dns, header, require, rule_comment, rules};
use super::{GroupPlan, Health, Plan};

/// Where Google's health-check probers come from (they reach the instances directly, not through
/// the service attachment).
const HEALTH_CHECK_RANGES: &str = "35.191.0.0/16,130.211.0.0/22";

/// PSC connections a TiDB Cloud project may open through the attachment.
const CONNECTION_LIMIT: u32 = 10;

pub(super) fn cli(plan: &Plan) -> String {
    let mut out = header(plan);
    out.push_str("set -eu\n");
    let full = plan.groups.iter().any(GroupPlan::is_full);
    let mut vars = vec![
        ("REGION", "the region of the gateway instances, e.g. us-west1"),
        ("NETWORK", "the VPC network of the gateway instances"),
        ("PSC_NAT_RANGE", "the IP range of the Private Service Connect NAT subnet"),
        ("GATEWAY_TAG", "the network tag of the gateway instances"),
    ];
    if full {
        vars.extend([
            ("SUBNET", "the subnet of the load balancer's address"),
            ("PSC_NAT_SUBNET", "a subnet with purpose PRIVATE_SERVICE_CONNECT in REGION"),
            ("INSTANCE_GROUPS", "the gateway instance groups as ZONE/NAME, space-separated"),
            ("TIDB_CLOUD_PROJECT", "the project TiDB Cloud shows"),
        ]);
    }
    out.push_str(&require(&vars));
    for g in plan.groups.iter().filter(|g| g.has_work()) {
        let lb = &g.base;
        out.push_str(&format!("\n# ==== listener group {}: internal load balancer {lb} ====\n", g.group));
        if g.is_full() {
            let (create_check, source) = match plan.health {
                Health::Http { port } => (
                    format!(
                        "gcloud compute health-checks create http {lb} --region=\"$REGION\" --port={port} \
                         --request-path=/readyz\n"
                    ),
                    format!("--allow=tcp:{port}"),
                ),
                Health::Tcp => {
                    let port = g.bootstrap.unwrap_or(g.brokers[0].port);
                    (
                        format!("gcloud compute health-checks create tcp {lb} --region=\"$REGION\" --port={port}\n"),
                        format!("--allow=tcp:{port}"),
                    )
                }
            };
            out.push_str(&create_check);
            out.push_str(&format!(
                "gcloud compute firewall-rules create {lb}-health --network=\"$NETWORK\" --direction=INGRESS \
                 {source} --source-ranges={HEALTH_CHECK_RANGES} --target-tags=\"$GATEWAY_TAG\"\n"
            ));
            out.push_str(&format!(
                "gcloud compute backend-services create {lb} --region=\"$REGION\" --load-balancing-scheme=INTERNAL \
                 --protocol=TCP --health-checks={lb} --health-checks-region=\"$REGION\"\n"
            ));
            out.push_str("for ig in $INSTANCE_GROUPS; do\n");
            out.push_str(&format!(
                "    gcloud compute backend-services add-backend {lb} --region=\"$REGION\" \
                 --instance-group=\"${{ig#*/}}\" --instance-group-zone=\"${{ig%%/*}}\"\n"
            ));
            out.push_str("done\n");
            out.push_str("# ALL ports: a forwarding rule's ports cannot change while a service attachment uses it.\n");
            out.push_str(&format!(
                "gcloud compute forwarding-rules create {lb} --region=\"$REGION\" --load-balancing-scheme=INTERNAL \
                 --network=\"$NETWORK\" --subnet=\"$SUBNET\" --ip-protocol=TCP --ports=ALL --backend-service={lb} \
                 --backend-service-region=\"$REGION\"\n"
            ));
        }
        for (suffix, node, port) in rules(g) {
            out.push('\n');
            out.push_str(&rule_comment(g, node, port));
            out.push_str(&format!(
                "gcloud compute firewall-rules create {lb}-{suffix} --network=\"$NETWORK\" --direction=INGRESS \
                 --allow=tcp:{port} --source-ranges=\"$PSC_NAT_RANGE\" --target-tags=\"$GATEWAY_TAG\"\n"
            ));
        }
        if g.is_full() {
            out.push_str(&format!("\n# The service attachment TiDB Cloud connects to (listener group {}).\n", g.group));
            let proxy = if plan.options.proxy_protocol { " --enable-proxy-protocol" } else { "" };
            out.push_str(&format!(
                "gcloud compute service-attachments create {lb} --region=\"$REGION\" --producer-forwarding-rule={lb} \
                 --connection-preference=ACCEPT_MANUAL --consumer-accept-list=\"$TIDB_CLOUD_PROJECT={CONNECTION_LIMIT}\" \
                 --nat-subnets=\"$PSC_NAT_SUBNET\"{proxy}\n"
            ));
            out.push_str(&format!(
                "echo \"listener group {}: give TiDB Cloud the service attachment \
                 $(gcloud compute service-attachments describe {lb} --region=\"$REGION\" --format='value(selfLink)')\"\n",
                g.group
            ));
        }
    }
    out.push_str(&dns(
        plan,
        "TiDB Cloud resolves these names to its PSC endpoint; there is nothing to create for them on this side. \
         The names:",
    ));
    out
}

pub(super) fn terraform(plan: &Plan) -> String {
    let mut out = header(plan);
    let full = plan.groups.iter().any(GroupPlan::is_full);
    if full {
        out.push_str(
            r#"
terraform {
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
  }
}

variable "region" {
  description = "The region of the gateway instances, e.g. us-west1."
  type        = string
}

variable "network" {
  description = "The VPC network of the gateway instances."
  type        = string
}

variable "subnetwork" {
  description = "The subnet of the load balancer's address."
  type        = string
}

variable "psc_nat_subnetwork" {
  description = "A subnet with purpose PRIVATE_SERVICE_CONNECT in the region."
  type        = string
}

variable "psc_nat_range" {
  description = "The IP range of that subnet."
  type        = string
}

variable "gateway_instance_groups" {
  description = "The gateway instance groups (self links)."
  type        = list(string)
}

variable "gateway_tag" {
  description = "The network tag of the gateway instances."
  type        = string
}

variable "tidb_cloud_projects" {
  description = "The projects TiDB Cloud shows."
  type        = list(string)
}
"#,
        );
    } else {
        out.push_str("# Add this file beside the plan that created the load balancers: it uses its variables.\n");
    }
    for g in plan.groups.iter().filter(|g| g.has_work()) {
        let id = &g.ident;
        let lb = &g.base;
        out.push_str(&format!("\n# ==== listener group {}: internal load balancer {lb} ====\n", g.group));
        if g.is_full() {
            let (check, check_port) = match plan.health {
                Health::Http { port } => (
                    format!(
                        "  http_health_check {{\n    port         = {port}\n    request_path = \"/readyz\"\n  }}\n"
                    ),
                    port,
                ),
                Health::Tcp => {
                    let port = g.bootstrap.unwrap_or(g.brokers[0].port);
                    (format!("  tcp_health_check {{\n    port = {port}\n  }}\n"), port)
                }
            };
            let ranges: Vec<String> = HEALTH_CHECK_RANGES.split(',').map(|r| format!("\"{r}\"")).collect();
            out.push_str(&format!(
                r#"resource "google_compute_region_health_check" "{id}" {{
  name   = "{lb}"
  region = var.region
{check}}}

resource "google_compute_firewall" "{id}_health" {{
  name          = "{lb}-health"
  network       = var.network
  direction     = "INGRESS"
  source_ranges = [{ranges}]
  target_tags   = [var.gateway_tag]

  allow {{
    protocol = "tcp"
    ports    = ["{check_port}"]
  }}
}}

resource "google_compute_region_backend_service" "{id}" {{
  name                  = "{lb}"
  region                = var.region
  protocol              = "TCP"
  load_balancing_scheme = "INTERNAL"
  health_checks         = [google_compute_region_health_check.{id}.id]

  dynamic "backend" {{
    for_each = var.gateway_instance_groups
    content {{
      group          = backend.value
      balancing_mode = "CONNECTION"
    }}
  }}
}}

# ALL ports: a forwarding rule's ports cannot change while a service attachment uses it.
resource "google_compute_forwarding_rule" "{id}" {{
  name                  = "{lb}"
  region                = var.region
  load_balancing_scheme = "INTERNAL"
  network               = var.network
  subnetwork            = var.subnetwork
  ip_protocol           = "TCP"
  all_ports             = true
  backend_service       = google_compute_region_backend_service.{id}.id
}}
"#,
                ranges = ranges.join(", ")
            ));
        }
        for (suffix, node, port) in rules(g) {
            out.push('\n');
            out.push_str(&rule_comment(g, node, port));
            out.push_str(&format!(
                r#"resource "google_compute_firewall" "{id}_{suffix}" {{
  name          = "{lb}-{suffix}"
  network       = var.network
  direction     = "INGRESS"
  source_ranges = [var.psc_nat_range]
  target_tags   = [var.gateway_tag]

  allow {{
    protocol = "tcp"
    ports    = ["{port}"]
  }}
}}
"#
            ));
        }
        if g.is_full() {
            out.push_str(&format!(
                r#"
# The service attachment TiDB Cloud connects to.
resource "google_compute_service_attachment" "{id}" {{
  name                  = "{lb}"
  region                = var.region
  connection_preference = "ACCEPT_MANUAL"
  nat_subnets           = [var.psc_nat_subnetwork]
  target_service        = google_compute_forwarding_rule.{id}.id
  enable_proxy_protocol = {proxy}

  dynamic "consumer_accept_lists" {{
    for_each = var.tidb_cloud_projects
    content {{
      project_id_or_num = consumer_accept_lists.value
      connection_limit  = {CONNECTION_LIMIT}
    }}
  }}
}}

output "{id}_service_attachment" {{
  description = "Give this to TiDB Cloud (listener group {group})."
  value       = google_compute_service_attachment.{id}.self_link
}}
"#,
                proxy = plan.options.proxy_protocol,
                group = g.group
            ));
        }
    }
    out.push_str(&dns(
        plan,
        "TiDB Cloud resolves these names to its PSC endpoint; nothing to create for them here. The names:",
    ));
    out
}
