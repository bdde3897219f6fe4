//! Azure: an internal Standard load balancer whose one backend pool holds every gateway replica,
//! one load-balancing rule per port (bootstrap and each broker, same port in front and behind),
//! and a Private Link Service on its frontend, visible to and auto-approving TiDB Cloud's
//! subscription. The guide's one pool per broker is not needed: every replica serves every port.

use super::text::{dns, header, require, rule_comment, rules};
use super::{GroupPlan, Health, Plan};

/// Azure keeps idle flows through a Private Link Service for 240-300 s whatever the rule says; the
/// rule's own timeout (minutes) is set to its maximum, with a TCP reset so clients learn of a drop.
const IDLE_TIMEOUT_MINUTES: u32 = 30;

pub(super) fn cli(plan: &Plan) -> String {
    let mut out = header(plan);
    out.push_str("set -eu\n");
    let full = plan.groups.iter().any(GroupPlan::is_full);
    let mut vars = vec![("RESOURCE_GROUP", "the resource group of the gateway's virtual network")];
    if full {
        vars.extend([
            ("VNET", "the virtual network of the gateway instances"),
            ("SUBNET", "the subnet of the load balancer's frontend and the Private Link Service's NAT addresses"),
            ("GATEWAY_NICS", "the gateway instances' NICs as NIC:IPCONFIG, space-separated, e.g. 'gw-1-nic:ipconfig1'"),
            ("TIDB_CLOUD_SUBSCRIPTION", "the subscription id TiDB Cloud shows"),
        ]);
    }
    out.push_str(&require(&vars));
    for g in plan.groups.iter().filter(|g| g.has_work()) {
        let lb = &g.base;
        let rg = "--resource-group \"$RESOURCE_GROUP\"";
        out.push_str(&format!("\n# ==== listener group {}: load balancer {lb} ====\n", g.group));
        if g.is_full() {
            out.push_str(&format!(
                "az network lb create {rg} --name {lb} --sku Standard --vnet-name \"$VNET\" --subnet \"$SUBNET\" \
                 --frontend-ip-name {lb}-frontend --backend-pool-name {lb}-pool\n"
            ));
            out.push_str("for nic in $GATEWAY_NICS; do\n");
            out.push_str(&format!(
                "    az network nic ip-config address-pool add {rg} --nic-name \"${{nic%%:*}}\" \
                 --ip-config-name \"${{nic#*:}}\" --lb-name {lb} --address-pool {lb}-pool\n"
            ));
            out.push_str("done\n");
            if let Health::Http { port } = plan.health {
                out.push_str(&format!(
                    "az network lb probe create {rg} --lb-name {lb} --name {lb}-readyz --protocol Http --port {port} \
                     --path /readyz\n"
                ));
            }
        }
        for (suffix, node, port) in rules(g) {
            out.push('\n');
            out.push_str(&rule_comment(g, node, port));
            let probe = match plan.health {
                Health::Http { .. } => format!("{lb}-readyz"),
                Health::Tcp => {
                    out.push_str(&format!(
                        "az network lb probe create {rg} --lb-name {lb} --name {lb}-{suffix} --protocol Tcp --port {port}\n"
                    ));
                    format!("{lb}-{suffix}")
                }
            };
            out.push_str(&format!(
                "az network lb rule create {rg} --lb-name {lb} --name {lb}-{suffix} --protocol Tcp --frontend-port {port} \
                 --backend-port {port} --frontend-ip-name {lb}-frontend --backend-pool-name {lb}-pool --probe-name {probe} \
                 --idle-timeout {IDLE_TIMEOUT_MINUTES} --enable-tcp-reset true\n"
            ));
        }
        if g.is_full() {
            out.push_str(&format!(
                "\n# The Private Link Service TiDB Cloud connects to (listener group {}).\n",
                g.group
            ));
            out.push_str(&format!(
                "az network vnet subnet update {rg} --vnet-name \"$VNET\" --name \"$SUBNET\" \
                 --private-link-service-network-policies Disabled\n"
            ));
            out.push_str(&format!(
                "az network private-link-service create {rg} --name {lb}-pls --vnet-name \"$VNET\" --subnet \"$SUBNET\" \
                 --lb-name {lb} --lb-frontend-ip-configs {lb}-frontend --visibility \"$TIDB_CLOUD_SUBSCRIPTION\" \
                 --auto-approval \"$TIDB_CLOUD_SUBSCRIPTION\" --enable-proxy-protocol {}\n",
                plan.options.proxy_protocol
            ));
            out.push_str(&format!(
                "echo \"listener group {}: give TiDB Cloud the Private Link Service alias \
                 $(az network private-link-service show {rg} --name {lb}-pls --query alias --output tsv) \
                 and the bootstrap port(s) {}\"\n",
                g.group,
                bootstrap_ports(g)
            ));
        }
    }
    out.push_str(&dns(
        plan,
        "TiDB Cloud resolves these names to its private endpoint; there is nothing to create for them on this side. \
         The names:",
    ));
    out
}

/// What TiDB Cloud's changefeed form asks as "bootstrap ports": the gateway's bootstrap port, or,
/// without one, every broker's.
fn bootstrap_ports(g: &GroupPlan) -> String {
    match g.bootstrap {
        Some(port) => port.to_string(),
        None => g.brokers.iter().map(|b| b.port.to_string()).collect::<Vec<_>>().join(","),
    }
}

pub(super) fn terraform(plan: &Plan) -> String {
    let mut out = header(plan);
    let full = plan.groups.iter().any(GroupPlan::is_full);
    if full {
        out.push_str(
            r#"
terraform {
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 3.116"
    }
  }
}

variable "resource_group_name" {
  description = "The resource group of the gateway's virtual network."
  type        = string
}

variable "location" {
  description = "The region, e.g. eastus."
  type        = string
}

variable "subnet_id" {
  description = "The subnet of the load balancer's frontend and the Private Link Service's NAT addresses."
  type        = string
}

variable "gateway_nics" {
  description = "The gateway instances' NICs: name => { network_interface_id, ip_configuration_name }."
  type = map(object({
    network_interface_id  = string
    ip_configuration_name = string
  }))
}

variable "tidb_cloud_subscription_ids" {
  description = "The subscription ids TiDB Cloud shows."
  type        = list(string)
}
"#,
        );
    } else {
        out.push_str("# Add this file beside the plan that created the load balancers: it uses its resources.\n");
    }
    for g in plan.groups.iter().filter(|g| g.has_work()) {
        let id = &g.ident;
        let lb = &g.base;
        out.push_str(&format!("\n# ==== listener group {}: load balancer {lb} ====\n", g.group));
        if g.is_full() {
            out.push_str(&format!(
                r#"resource "azurerm_lb" "{id}" {{
  name                = "{lb}"
  location            = var.location
  resource_group_name = var.resource_group_name
  sku                 = "Standard"

  frontend_ip_configuration {{
    name                          = "{lb}-frontend"
    subnet_id                     = var.subnet_id
    private_ip_address_allocation = "Dynamic"
  }}
}}

resource "azurerm_lb_backend_address_pool" "{id}" {{
  name            = "{lb}-pool"
  loadbalancer_id = azurerm_lb.{id}.id
}}

resource "azurerm_network_interface_backend_address_pool_association" "{id}" {{
  for_each                = var.gateway_nics
  network_interface_id    = each.value.network_interface_id
  ip_configuration_name   = each.value.ip_configuration_name
  backend_address_pool_id = azurerm_lb_backend_address_pool.{id}.id
}}
"#
            ));
            if let Health::Http { port } = plan.health {
                out.push_str(&format!(
                    r#"
resource "azurerm_lb_probe" "{id}_readyz" {{
  name            = "{lb}-readyz"
  loadbalancer_id = azurerm_lb.{id}.id
  protocol        = "Http"
  port            = {port}
  request_path    = "/readyz"
}}
"#
                ));
            }
        }
        for (suffix, node, port) in rules(g) {
            out.push('\n');
            out.push_str(&rule_comment(g, node, port));
            let probe = match plan.health {
                Health::Http { .. } => format!("azurerm_lb_probe.{id}_readyz.id"),
                Health::Tcp => {
                    out.push_str(&format!(
                        r#"resource "azurerm_lb_probe" "{id}_{suffix}" {{
  name            = "{lb}-{suffix}"
  loadbalancer_id = azurerm_lb.{id}.id
  protocol        = "Tcp"
  port            = {port}
}}

"#
                    ));
                    format!("azurerm_lb_probe.{id}_{suffix}.id")
                }
            };
            out.push_str(&format!(
                r#"resource "azurerm_lb_rule" "{id}_{suffix}" {{
  name                           = "{lb}-{suffix}"
  loadbalancer_id                = azurerm_lb.{id}.id
  protocol                       = "Tcp"
  frontend_port                  = {port}
  backend_port                   = {port}
  frontend_ip_configuration_name = "{lb}-frontend"
  backend_address_pool_ids       = [azurerm_lb_backend_address_pool.{id}.id]
  probe_id                       = {probe}
  idle_timeout_in_minutes        = {IDLE_TIMEOUT_MINUTES}
  enable_tcp_reset               = true
}}
"#
            ));
        }
        if g.is_full() {
            out.push_str(&format!(
                r#"
# The Private Link Service TiDB Cloud connects to. Its subnet needs
# private_link_service_network_policies_enabled = false.
resource "azurerm_private_link_service" "{id}" {{
  name                                        = "{lb}-pls"
  location                                    = var.location
  resource_group_name                         = var.resource_group_name
  load_balancer_frontend_ip_configuration_ids = [azurerm_lb.{id}.frontend_ip_configuration[0].id]
  visibility_subscription_ids                 = var.tidb_cloud_subscription_ids
  auto_approval_subscription_ids              = var.tidb_cloud_subscription_ids
  enable_proxy_protocol                       = {proxy}

  nat_ip_configuration {{
    name      = "{lb}-nat"
    subnet_id = var.subnet_id
    primary   = true
  }}
}}

output "{id}_private_link_service_alias" {{
  description = "Give this to TiDB Cloud with bootstrap port(s) {ports} (listener group {group})."
  value       = azurerm_private_link_service.{id}.alias
}}
"#,
                proxy = plan.options.proxy_protocol,
                ports = bootstrap_ports(g),
                group = g.group
            ));
        }
    }
    out.push_str(&dns(
        plan,
        "TiDB Cloud resolves these names to its private endpoint; nothing to create for them here. The names:",
    ));
    out
}
