//! Pieces every cloud's output shares: the header of a shell script and of a Terraform file, the
//! DNS table, and the notes of an `--only-new` output.

use super::{Format, GroupPlan, Plan};

/// The lines every output starts with: markers, what made it, and the health-check choice.
pub(super) fn header(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.options.format == Format::Cli {
        out.push_str("#!/bin/sh\n");
    }
    out.push_str(&plan.markers());
    let format = match plan.options.format {
        Format::Cli => "cli",
        Format::Terraform => "terraform",
    };
    let only_new = if plan.groups.iter().any(|g| !g.is_full()) { " --only-new" } else { "" };
    out.push_str(&format!(
        "# Written by `kafka-gateway plan --for {} --format {format}{only_new}`: what to build around the gateway.\n",
        plan.options.cloud
    ));
    out.push_str(&format!("# {}.\n", plan.health_note));
    if plan.options.proxy_protocol {
        out.push_str(
            "# PROXY protocol v2 is turned on: every listener group must read it \
             (listeners.<group>.access.proxy_protocol = \"required\").\n",
        );
    }
    for g in &plan.groups {
        if let Some(only) = &g.only {
            let list: Vec<String> = only.iter().map(ToString::to_string).collect();
            let what =
                if list.is_empty() { "nothing new".to_owned() } else { format!("broker(s) {}", list.join(", ")) };
            out.push_str(&format!("# listener group {}: only what is new since the previous plan: {what}.\n", g.group));
        }
        for (node, port) in &g.gone {
            out.push_str(&format!(
                "# listener group {}: broker {node} (port {port}) is gone from the cluster; its rule can be removed.\n",
                g.group
            ));
        }
    }
    if !plan.has_work() {
        out.push_str("# Nothing to create.\n");
    }
    out
}

/// The names TiDB Cloud resolves, as comments: nothing to create for them on this side.
pub(super) fn dns(plan: &Plan, how: &str) -> String {
    let mut out = format!("\n# DNS: {how}\n");
    out.push_str(&super::dns_lines(plan));
    out
}

/// `: "${NAME:?why}"` lines, so that the script stops before its first command when a value is missing.
pub(super) fn require(vars: &[(&str, &str)]) -> String {
    vars.iter().map(|(name, why)| format!(": \"${{{name}:?set {name}: {why}}}\"\n")).collect()
}

/// A comment naming one rule.
pub(super) fn rule_comment(g: &GroupPlan, node: Option<i32>, port: u16) -> String {
    match node {
        None => format!("# listener group {}: bootstrap port {port} (reaches any broker)\n", g.group),
        Some(id) => {
            let b = g.brokers.iter().find(|b| b.node_id == id).expect("a broker of the group");
            let az = b.az.as_deref().map(|az| format!(", {az}")).unwrap_or_default();
            format!("# listener group {}: broker {id}, {}:{port}{az}\n", g.group, b.host)
        }
    }
}

/// The rules to create in one group: the bootstrap port (in a full plan) and each new broker's
/// port, as (resource suffix, node id, port).
pub(super) fn rules(g: &GroupPlan) -> Vec<(String, Option<i32>, u16)> {
    let bootstrap = g.bootstrap.filter(|_| g.is_full()).map(|p| ("bootstrap".to_owned(), None, p));
    bootstrap.into_iter().chain(g.new_brokers().map(|b| (format!("b{}", b.node_id), Some(b.node_id), b.port))).collect()
}
