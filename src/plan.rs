//! The `plan` command: what an operator must build around the gateway on one cloud — the load
//! balancer's rules (one per broker port, plus the bootstrap port), the private-link service
//! TiDB Cloud connects to, and the DNS names TiDB Cloud will resolve — as ready-to-run CLI
//! commands (aws, az, gcloud) or as Terraform.
//!
//! It never computes a name or a port itself: it takes `check`'s rows (from brokers named on the
//! command line, the live cluster, or a running gateway's `/topology`), so a plan and the gateway
//! can never disagree. Every output starts with one marker line per listener group that records
//! the ports it covers, so that a later `plan --only-new PREVIOUS` prints only the rules of brokers
//! added since.

mod aws;
mod azure;
mod gcp;
mod text;

use std::collections::BTreeMap;
use std::fmt;

use crate::config::{Config, ListenerGroup, ProxyProtocol};
use crate::report::Report;

/// Where the gateway runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Cloud {
    Aws,
    Azure,
    Gcp,
}

impl Cloud {
    fn name(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Azure => "azure",
            Cloud::Gcp => "gcp",
        }
    }

    /// The cloud's name in a sentence.
    fn title(self) -> &'static str {
        match self {
            Cloud::Aws => "AWS",
            Cloud::Azure => "Azure",
            Cloud::Gcp => "Google Cloud",
        }
    }

    /// The longest resource name the cloud accepts for the names the plan gives: AWS target
    /// groups and load balancers (32), GCP resources (63, RFC 1035), Azure load-balancer rules (80).
    fn max_name(self) -> usize {
        match self {
            Cloud::Aws => 32,
            Cloud::Azure => 80,
            Cloud::Gcp => 63,
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the plan is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// A POSIX shell script of aws / az / gcloud commands.
    #[default]
    Cli,
    /// Terraform (HCL) for the hashicorp/aws, azurerm or google provider.
    Terraform,
}

/// What the operator chose on the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub cloud: Cloud,
    pub format: Format,
    /// The first part of every resource name; the listener group's name follows it.
    pub name: String,
    /// The load balancer prepends a PROXY protocol v2 header (the listener group must then read it:
    /// `listeners.<group>.access.proxy_protocol = "required"`).
    pub proxy_protocol: bool,
}

/// Why no plan could be made; each names the flag or key to change.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("--name: {0}")]
    Name(String),
    #[error("--only-new {path}: {reason}")]
    Previous { path: String, reason: String },
    #[error("listeners.{group}: broker {node_id} is advertised on port {advertised} but listens on {listen}")]
    PortMismatch { group: String, node_id: i32, advertised: u16, listen: u16 },
    #[error("listeners.{group}: broker {node_id} has no port")]
    NoPort { group: String, node_id: i32 },
    #[error("listeners.{0}: no brokers to plan for")]
    NoBrokers(String),
    #[error("listeners.{0}: the group's name {1}")]
    Group(String, String),
    #[error(
        "listeners.{0}.access.proxy_protocol is \"off\", but the plan turns PROXY protocol on at the load balancer \
         (--proxy-protocol, or another group requires it): the group would take each header for Kafka bytes; set it \
         to \"required\", or leave the flag out"
    )]
    ProxyProtocolOff(String),
    #[error(
        "listeners.{0}.access.proxy_protocol is \"required\", but other groups' is \"off\": one plan turns PROXY \
         protocol on or off at every load balancer; plan the groups with the same setting"
    )]
    ProxyProtocolMixed(String),
}

/// One broker's rule: the port the load balancer forwards to the same port on every replica, and
/// the name TiDB Cloud resolves for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRule {
    pub node_id: i32,
    pub port: u16,
    /// The advertised host, without the port.
    pub host: String,
    pub az: Option<String>,
}

/// How the load balancer tells a ready replica from one that is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// `GET /readyz` on the admin port: turns false while a replica drains or lost the cluster.
    Http { port: u16 },
    /// A TCP connect on each rule's own port.
    Tcp,
}

/// What one listener group needs.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    pub group: String,
    /// The base of resource names: `<--name>-<group>`, e.g. `kafka-gateway-tidb`.
    pub base: String,
    /// The base of Terraform identifiers, e.g. `tidb`.
    pub ident: String,
    pub bootstrap: Option<u16>,
    /// Every broker the group has now, by node id.
    pub brokers: Vec<BrokerRule>,
    /// Set when printing only what is new since a previous plan: the brokers whose rules are new
    /// (the load balancer, its bootstrap rule and the private-link service exist already).
    pub only: Option<Vec<i32>>,
    /// Brokers the previous plan had that are gone now (node id, port): their rules can go.
    pub gone: Vec<(i32, u16)>,
}

impl GroupPlan {
    /// The brokers whose rules this output creates.
    pub fn new_brokers(&self) -> impl Iterator<Item = &BrokerRule> {
        self.brokers.iter().filter(|b| self.only.as_ref().is_none_or(|only| only.contains(&b.node_id)))
    }

    /// Whether this output creates the group's shared resources too.
    pub fn is_full(&self) -> bool {
        self.only.is_none()
    }

    /// Whether this output creates anything for the group.
    pub fn has_work(&self) -> bool {
        self.is_full() || self.new_brokers().next().is_some()
    }

    /// The availability zones the brokers' names use, in order.
    pub fn azs(&self) -> Vec<&str> {
        let mut azs: Vec<&str> = self.brokers.iter().filter_map(|b| b.az.as_deref()).collect();
        azs.sort_unstable();
        azs.dedup();
        azs
    }
}

/// The whole plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub options: Options,
    pub health: Health,
    /// Why the health check is what it is, for a comment in the output.
    pub health_note: String,
    pub groups: Vec<GroupPlan>,
}

impl Plan {
    /// Builds the plan from `report` (check's rows for the brokers), `config` (bootstrap ports and
    /// the admin endpoint), and, with `--only-new`, a previous plan's text.
    pub fn build(
        config: &Config,
        report: &Report,
        options: Options,
        previous: Option<(&str, &str)>,
    ) -> Result<Self, PlanError> {
        check_name(&options.name)?;
        let options = proxy_protocol(config, options)?;
        let previous = previous
            .map(|(path, text)| {
                Previous::parse(text)
                    .map_err(|reason| PlanError::Previous { path: path.to_owned(), reason })
                    .map(|p| (path, p))
            })
            .transpose()?;
        if let Some((path, prev)) = &previous
            && prev.cloud != options.cloud
        {
            return Err(PlanError::Previous {
                path: path.to_string(),
                reason: format!("it is a plan for {}, not {}", prev.cloud, options.cloud),
            });
        }
        let (health, health_note) = health(config, &options);
        let mut groups = Vec::new();
        for group in &config.groups {
            let mut brokers = Vec::new();
            for row in report.rows.iter().filter(|r| r.group == group.name) {
                let advertised = row
                    .advertised
                    .as_ref()
                    .map_err(|_| PlanError::NoPort { group: group.name.clone(), node_id: row.node_id })?;
                let (host, port) = advertised
                    .rsplit_once(':')
                    .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
                    .ok_or_else(|| PlanError::NoPort { group: group.name.clone(), node_id: row.node_id })?;
                let listen = row
                    .listen
                    .map(|l| l.port())
                    .ok_or_else(|| PlanError::NoPort { group: group.name.clone(), node_id: row.node_id })?;
                // The load balancer forwards a port to the same port on every replica: a template
                // always ends in {port}, so these agree unless a report was edited by hand.
                if listen != port {
                    return Err(PlanError::PortMismatch {
                        group: group.name.clone(),
                        node_id: row.node_id,
                        advertised: port,
                        listen,
                    });
                }
                brokers.push(BrokerRule { node_id: row.node_id, port, host, az: row.az.clone() });
            }
            brokers.sort_by_key(|b| b.node_id);
            if brokers.is_empty() {
                return Err(PlanError::NoBrokers(group.name.clone()));
            }
            let slug = group.name.to_ascii_lowercase().replace('_', "-");
            let base = format!("{}-{slug}", options.name);
            let mut ident = group.name.replace('-', "_");
            if !ident.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                ident.insert_str(0, "g_");
            }
            let mut plan = GroupPlan {
                group: group.name.clone(),
                base,
                ident,
                bootstrap: group.bootstrap_port,
                brokers,
                only: None,
                gone: Vec::new(),
            };
            if let Some((path, prev)) = &previous
                && let Some(before) = prev.groups.get(&group.name)
            {
                plan.apply_previous(before).map_err(|reason| PlanError::Previous { path: path.to_string(), reason })?;
            }
            check_lengths(&plan, options.cloud)?;
            if plan.base.ends_with('-') || plan.base.contains("--") {
                return Err(PlanError::Group(
                    group.name.clone(),
                    format!("gives the resource name '{}', which clouds refuse", plan.base),
                ));
            }
            if let Some(other) = groups.iter().find(|g: &&GroupPlan| g.base == plan.base) {
                return Err(PlanError::Group(
                    group.name.clone(),
                    format!("gives the same resource names as listener group {} ({})", other.group, plan.base),
                ));
            }
            groups.push(plan);
        }
        Ok(Self { options, health, health_note, groups })
    }

    /// The plan in the chosen format.
    pub fn render(&self) -> String {
        if !self.has_work() {
            return text::header(self);
        }
        match (self.options.cloud, self.options.format) {
            (Cloud::Aws, Format::Cli) => aws::cli(self),
            (Cloud::Aws, Format::Terraform) => aws::terraform(self),
            (Cloud::Azure, Format::Cli) => azure::cli(self),
            (Cloud::Azure, Format::Terraform) => azure::terraform(self),
            (Cloud::Gcp, Format::Cli) => gcp::cli(self),
            (Cloud::Gcp, Format::Terraform) => gcp::terraform(self),
        }
    }

    /// The marker lines every output starts with: the cloud, and per group the bootstrap port and
    /// every broker's port, all of them (not only the new ones), so that this output can serve as
    /// the previous plan of the next `--only-new`.
    fn markers(&self) -> String {
        let mut out = String::new();
        for g in &self.groups {
            let brokers: Vec<String> = g.brokers.iter().map(|b| format!("{}:{}", b.node_id, b.port)).collect();
            let bootstrap = g.bootstrap.map_or_else(|| "-".to_owned(), |p| p.to_string());
            out.push_str(&format!(
                "{MARKER} cloud={} group={} bootstrap={bootstrap} brokers={}\n",
                self.options.cloud,
                g.group,
                brokers.join(",")
            ));
        }
        out
    }

    /// Whether any group has anything to create.
    fn has_work(&self) -> bool {
        self.groups.iter().any(GroupPlan::has_work)
    }
}

impl GroupPlan {
    fn apply_previous(&mut self, before: &PreviousGroup) -> Result<(), String> {
        if before.bootstrap != self.bootstrap {
            return Err(format!(
                "listener group {}'s bootstrap port was {} and is {} now: a changed port is not a new rule; \
                 plan the whole group again",
                self.group,
                show_port(before.bootstrap),
                show_port(self.bootstrap)
            ));
        }
        let mut only = Vec::new();
        for b in &self.brokers {
            match before.brokers.get(&b.node_id) {
                None => only.push(b.node_id),
                Some(&port) if port != b.port => {
                    return Err(format!(
                        "broker {} of listener group {} was on port {port} and is on {} now: a changed port is \
                         not a new rule; plan the whole group again",
                        b.node_id, self.group, b.port
                    ));
                }
                Some(_) => {}
            }
        }
        self.gone = before
            .brokers
            .iter()
            .filter(|(id, _)| !self.brokers.iter().any(|b| b.node_id == **id))
            .map(|(id, port)| (*id, *port))
            .collect();
        self.only = Some(only);
        Ok(())
    }
}

fn show_port(port: Option<u16>) -> String {
    port.map_or_else(|| "none".to_owned(), |p| p.to_string())
}

/// The first characters of every marker line.
const MARKER: &str = "# kafka-gateway plan:";

/// What a previous plan covered, read back from its marker lines.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Previous {
    cloud: Cloud,
    groups: BTreeMap<String, PreviousGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PreviousGroup {
    bootstrap: Option<u16>,
    brokers: BTreeMap<i32, u16>,
}

impl Previous {
    fn parse(text: &str) -> Result<Self, String> {
        let mut cloud = None;
        let mut groups = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let Some(rest) = line.strip_prefix(MARKER) else { continue };
            let bad = |what: &str| format!("line {}: {what} in {line:?}", i + 1);
            let fields: BTreeMap<&str, &str> = rest.split_whitespace().filter_map(|kv| kv.split_once('=')).collect();
            let this_cloud = match fields.get("cloud") {
                Some(&"aws") => Cloud::Aws,
                Some(&"azure") => Cloud::Azure,
                Some(&"gcp") => Cloud::Gcp,
                _ => return Err(bad("no cloud")),
            };
            if cloud.is_some_and(|c| c != this_cloud) {
                return Err(bad("a second cloud"));
            }
            cloud = Some(this_cloud);
            let group = fields.get("group").ok_or_else(|| bad("no group"))?;
            let bootstrap = match fields.get("bootstrap") {
                Some(&"-") => None,
                Some(p) => Some(p.parse::<u16>().map_err(|_| bad("a bad bootstrap port"))?),
                None => return Err(bad("no bootstrap port")),
            };
            let mut brokers = BTreeMap::new();
            for pair in fields.get("brokers").ok_or_else(|| bad("no brokers"))?.split(',').filter(|p| !p.is_empty()) {
                let (id, port) = pair.split_once(':').ok_or_else(|| bad("a bad broker"))?;
                let id = id.parse::<i32>().map_err(|_| bad("a bad node id"))?;
                let port = port.parse::<u16>().map_err(|_| bad("a bad port"))?;
                brokers.insert(id, port);
            }
            groups.insert((*group).to_owned(), PreviousGroup { bootstrap, brokers });
        }
        let cloud = cloud
            .ok_or_else(|| format!("no '{MARKER}' line: give a file that an earlier `kafka-gateway plan` wrote"))?;
        Ok(Self { cloud, groups })
    }
}

/// Resource names: lowercase letters, digits and '-', starting with a letter (what AWS, Azure and
/// GCP all accept).
fn check_name(name: &str) -> Result<(), PlanError> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(PlanError::Name(format!(
            "'{name}' must start with a lowercase letter and hold only lowercase letters, digits and '-'"
        )));
    }
    Ok(())
}

/// The longest name the plan gives in a group must fit the cloud's limit.
fn check_lengths(plan: &GroupPlan, cloud: Cloud) -> Result<(), PlanError> {
    let longest_node = plan.brokers.iter().map(|b| format!("-b{}", b.node_id).len()).max().unwrap_or(0);
    let longest = plan.base.len() + longest_node.max("-bootstrap".len());
    if longest > cloud.max_name() {
        return Err(PlanError::Name(format!(
            "'{}-bootstrap' and the like would be {longest} characters, above {cloud}'s limit of {} for load \
             balancer and rule names; choose a shorter --name (or listener group name)",
            plan.base,
            cloud.max_name()
        )));
    }
    Ok(())
}

/// The health check: readiness over HTTP where the load balancer can reach the admin endpoint
/// without a PROXY header in front of the request, otherwise a TCP connect.
/// The load balancer sends PROXY headers exactly when the listener groups read them: the config's
/// `access.proxy_protocol = "required"` turns it on, and `--proxy-protocol` must agree with it
/// (a header the gateway does not expect closes every connection, and so does one it waits for).
fn proxy_protocol(config: &Config, mut options: Options) -> Result<Options, PlanError> {
    let required = |g: &ListenerGroup| g.access.proxy_protocol == ProxyProtocol::Required;
    options.proxy_protocol |= !config.groups.is_empty() && config.groups.iter().all(required);
    if let Some(group) = config.groups.iter().find(|g| required(g) != options.proxy_protocol) {
        return Err(if options.proxy_protocol {
            PlanError::ProxyProtocolOff(group.name.clone())
        } else {
            PlanError::ProxyProtocolMixed(group.name.clone())
        });
    }
    Ok(options)
}

fn health(config: &Config, options: &Options) -> (Health, String) {
    let Some(bind) = config.admin.bind else {
        return (Health::Tcp, "admin.bind is off: health checks connect to each rule's port (TCP)".into());
    };
    if bind.ip().is_loopback() {
        return (
            Health::Tcp,
            format!(
                "admin.bind is {bind}, which a load balancer cannot reach: health checks connect to each rule's \
                 port (TCP); bind the admin endpoint to 0.0.0.0:{} for checks that follow readiness (/readyz)",
                bind.port()
            ),
        );
    }
    // AWS and Azure send the PROXY header on health-check connections too, and the admin endpoint
    // reads plain HTTP; GCP's checks come from Google's probers, not through the service attachment.
    if options.proxy_protocol && matches!(options.cloud, Cloud::Aws | Cloud::Azure) {
        return (
            Health::Tcp,
            format!(
                "with PROXY protocol on, {} puts the header in front of health checks too, which the admin \
                 endpoint does not read: health checks connect to each rule's port (TCP)",
                options.cloud.title()
            ),
        );
    }
    (Health::Http { port: bind.port() }, format!("health checks ask GET /readyz on the admin port {}", bind.port()))
}

/// Every broker name of the plan, for DNS: (AZ, host:port) per group.
fn dns_lines(plan: &Plan) -> String {
    let mut out = String::new();
    for g in &plan.groups {
        out.push_str(&format!("#   listener group {}:\n", g.group));
        for b in &g.brokers {
            let az = b.az.as_deref().map(|az| format!(" ({az})")).unwrap_or_default();
            out.push_str(&format!("#     {}:{}  broker {}{az}\n", b.host, b.port, b.node_id));
        }
    }
    out
}

#[cfg(test)]
mod tests;
