//! AWS: an internal network load balancer with cross-zone load balancing, one TCP listener and
//! target group per port (bootstrap and each broker), and a VPC endpoint service on it that TiDB
//! Cloud's account may connect to. TiDB Cloud resolves `bN.<az_id>.<unique>.aws.plc.tidbcloud.com`
//! to its endpoint in that AZ, so the load balancer needs a subnet in every AZ ID the names use.

use super::text::{dns, header, require, rule_comment, rules};
use super::{GroupPlan, Health, Plan};

pub(super) fn cli(plan: &Plan) -> String {
    let mut out = header(plan);
    out.push_str("set -eu\n");
    let full = plan.groups.iter().any(GroupPlan::is_full);
    let mut vars = vec![
        ("VPC_ID", "the VPC of the gateway instances (vpc-...)"),
        ("GATEWAY_TARGETS", "the gateway instances as target entries, e.g. 'Id=i-0abc Id=i-0def'"),
    ];
    if full {
        vars.push(("SUBNET_IDS", "the load balancer's subnets, one per AZ, space-separated"));
        vars.push(("TIDB_CLOUD_PRINCIPAL", "the principal TiDB Cloud shows, e.g. arn:aws:iam::<account>:root"));
    }
    out.push_str(&require(&vars));
    for g in plan.groups.iter().filter(|g| g.has_work()) {
        let lb = &g.base;
        out.push_str(&format!("\n# ==== listener group {}: network load balancer {lb} ====\n", g.group));
        if g.is_full() {
            let azs = g.azs();
            if !azs.is_empty() {
                out.push_str(&format!(
                    "# TiDB Cloud reaches each AZ's names through its endpoint in that AZ: the subnets must cover {}.\n",
                    azs.join(" ")
                ));
                out.push_str(
                    "covered=\" $(aws ec2 describe-subnets --subnet-ids $SUBNET_IDS \
                     --query 'Subnets[].AvailabilityZoneId' --output text | tr '\\t' ' ') \"\n",
                );
                out.push_str(&format!("for az in {}; do\n", azs.join(" ")));
                out.push_str(
                    "    case \"$covered\" in *\" $az \"*) ;; *) echo \"SUBNET_IDS has no subnet in $az\" >&2; exit 1 ;; esac\n",
                );
                out.push_str("done\n");
            }
            out.push_str(&format!(
                "lb=$(aws elbv2 create-load-balancer --name {lb} --type network --scheme internal --subnets $SUBNET_IDS \
                 --query 'LoadBalancers[0].LoadBalancerArn' --output text)\n"
            ));
            out.push_str(
                "# Cross-zone: any replica serves any broker's port, so every AZ's endpoint reaches every replica.\n",
            );
            out.push_str(
                "aws elbv2 modify-load-balancer-attributes --load-balancer-arn \"$lb\" \
                 --attributes Key=load_balancing.cross_zone.enabled,Value=true\n",
            );
        } else {
            out.push_str(&format!(
                "lb=$(aws elbv2 describe-load-balancers --names {lb} --query 'LoadBalancers[0].LoadBalancerArn' --output text)\n"
            ));
        }
        for (suffix, node, port) in rules(g) {
            out.push('\n');
            out.push_str(&rule_comment(g, node, port));
            let health = match plan.health {
                Health::Http { port } => {
                    format!("--health-check-protocol HTTP --health-check-port {port} --health-check-path /readyz")
                }
                Health::Tcp => "--health-check-protocol TCP".to_owned(),
            };
            out.push_str(&format!(
                "tg=$(aws elbv2 create-target-group --name {lb}-{suffix} --protocol TCP --port {port} --vpc-id \"$VPC_ID\" \
                 --target-type instance {health} --query 'TargetGroups[0].TargetGroupArn' --output text)\n"
            ));
            if plan.options.proxy_protocol {
                out.push_str(
                    "aws elbv2 modify-target-group-attributes --target-group-arn \"$tg\" \
                     --attributes Key=proxy_protocol_v2.enabled,Value=true\n",
                );
            }
            out.push_str("aws elbv2 register-targets --target-group-arn \"$tg\" --targets $GATEWAY_TARGETS\n");
            out.push_str(&format!(
                "aws elbv2 create-listener --load-balancer-arn \"$lb\" --protocol TCP --port {port} \
                 --default-actions Type=forward,TargetGroupArn=\"$tg\"\n"
            ));
        }
        if g.is_full() {
            out.push_str(&format!("\n# The endpoint service TiDB Cloud connects to (listener group {}).\n", g.group));
            out.push_str(
                "svc=$(aws ec2 create-vpc-endpoint-service-configuration --network-load-balancer-arns \"$lb\" \
                 --acceptance-required --query 'ServiceConfiguration.ServiceId' --output text)\n",
            );
            out.push_str(
                "aws ec2 modify-vpc-endpoint-service-permissions --service-id \"$svc\" \
                 --add-allowed-principals \"$TIDB_CLOUD_PRINCIPAL\"\n",
            );
            out.push_str(&format!(
                "echo \"listener group {}: create TiDB Cloud's private link connection with the endpoint service \
                 $(aws ec2 describe-vpc-endpoint-service-configurations --service-ids \"$svc\" \
                 --query 'ServiceConfigurations[0].ServiceName' --output text)\"\n",
                g.group
            ));
        }
    }
    out.push_str(&dns(
        plan,
        "TiDB Cloud resolves these names to its endpoint in each AZ once you attach its managed domain to the \
         private link connection; there is nothing to create for them on this side. The names:",
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
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "vpc_id" {
  description = "The VPC of the gateway instances."
  type        = string
}

variable "subnet_ids" {
  description = "The load balancer's subnets, one per AZ the broker names use."
  type        = list(string)
}

variable "gateway_instance_ids" {
  description = "The gateway instances (every replica serves every port)."
  type        = list(string)
}

variable "tidb_cloud_principals" {
  description = "The principals TiDB Cloud shows, e.g. arn:aws:iam::<account>:root."
  type        = list(string)
}
"#,
        );
    } else {
        out.push_str("# Add this file beside the plan that created the load balancers: it uses its variables.\n");
    }
    for g in plan.groups.iter().filter(|g| g.has_work()) {
        let id = &g.ident;
        out.push_str(&format!("\n# ==== listener group {}: network load balancer {} ====\n", g.group, g.base));
        if g.is_full() {
            let azs = g.azs();
            if !azs.is_empty() {
                out.push_str(&format!("# The subnets must cover the AZs the names use: {}.\n", azs.join(", ")));
            }
            out.push_str(&format!(
                r#"resource "aws_lb" "{id}" {{
  name                             = "{base}"
  load_balancer_type               = "network"
  internal                         = true
  subnets                          = var.subnet_ids
  enable_cross_zone_load_balancing = true
}}
"#,
                base = g.base
            ));
        }
        for (suffix, node, port) in rules(g) {
            out.push('\n');
            out.push_str(&rule_comment(g, node, port));
            let health = match plan.health {
                Health::Http { port } => {
                    format!(
                        "  health_check {{\n    protocol = \"HTTP\"\n    port     = \"{port}\"\n    path     = \"/readyz\"\n  }}\n"
                    )
                }
                Health::Tcp => "  health_check {\n    protocol = \"TCP\"\n  }\n".to_owned(),
            };
            out.push_str(&format!(
                r#"resource "aws_lb_target_group" "{id}_{suffix}" {{
  name              = "{base}-{suffix}"
  port              = {port}
  protocol          = "TCP"
  vpc_id            = var.vpc_id
  target_type       = "instance"
  proxy_protocol_v2 = {proxy}
{health}}}

resource "aws_lb_target_group_attachment" "{id}_{suffix}" {{
  for_each         = toset(var.gateway_instance_ids)
  target_group_arn = aws_lb_target_group.{id}_{suffix}.arn
  target_id        = each.value
  port             = {port}
}}

resource "aws_lb_listener" "{id}_{suffix}" {{
  load_balancer_arn = aws_lb.{id}.arn
  port              = {port}
  protocol          = "TCP"

  default_action {{
    type             = "forward"
    target_group_arn = aws_lb_target_group.{id}_{suffix}.arn
  }}
}}
"#,
                base = g.base,
                proxy = plan.options.proxy_protocol
            ));
        }
        if g.is_full() {
            out.push_str(&format!(
                r#"
# The endpoint service TiDB Cloud connects to.
resource "aws_vpc_endpoint_service" "{id}" {{
  acceptance_required        = true
  network_load_balancer_arns = [aws_lb.{id}.arn]
  allowed_principals         = var.tidb_cloud_principals
}}

output "{id}_endpoint_service_name" {{
  description = "Give this to TiDB Cloud's private link connection (listener group {group})."
  value       = aws_vpc_endpoint_service.{id}.service_name
}}
"#,
                group = g.group
            ));
        }
    }
    out.push_str(&dns(
        plan,
        "TiDB Cloud resolves these names to its endpoint in each AZ once you attach its managed domain to the \
         private link connection; nothing to create for them here. The names:",
    ));
    out
}
