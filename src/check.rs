//! `kafka-gateway check`: asks the cluster for its brokers and shows, per listener group and broker,
//! what the gateway would advertise and where it would listen — and every problem on the way.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::config::Config;
use crate::topology::advertised_address;
use crate::upstream::{self, BrokerView};

/// One broker as one listener group shows it.
#[derive(Debug, Clone)]
pub struct Row {
    pub group: String,
    pub node_id: i32,
    pub rack: Option<String>,
    pub upstream: String,
    pub az: Option<String>,
    /// `host:port`, or why there is none.
    pub advertised: Result<String, String>,
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub cluster_id: Option<String>,
    pub answered_by: Option<String>,
    pub rows: Vec<Row>,
    pub problems: Vec<String>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The report as a table, then the problems.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(by) = &self.answered_by {
            let id = self.cluster_id.as_deref().unwrap_or("(none)");
            let _ = writeln!(out, "cluster {id}, described by {by}");
        }
        let header = ["GROUP", "NODE", "RACK", "UPSTREAM", "AZ", "ADVERTISED", "LISTEN"].map(String::from);
        let cells: Vec<[String; 7]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.group.clone(),
                    r.node_id.to_string(),
                    r.rack.clone().unwrap_or_else(|| "-".into()),
                    r.upstream.clone(),
                    r.az.clone().unwrap_or_else(|| "-".into()),
                    r.advertised.clone().unwrap_or_else(|_| "(none)".into()),
                    r.listen.map_or_else(|| "-".into(), |a| a.to_string()),
                ]
            })
            .collect();
        let widths: Vec<usize> =
            (0..7).map(|i| cells.iter().map(|c| c[i].len()).chain([header[i].len()]).max().unwrap_or(0)).collect();
        for line in std::iter::once(&header).chain(&cells) {
            let row: Vec<String> = line.iter().zip(&widths).map(|(c, w)| format!("{c:w$}")).collect();
            let _ = writeln!(out, "{}", row.join("  ").trim_end());
        }
        for p in &self.problems {
            let _ = writeln!(out, "problem: {p}");
        }
        if self.is_ok() {
            let _ = writeln!(out, "ok: {} broker(s) in {} listener group(s)", self.rows.len() / self.groups().max(1), self.groups());
        }
        out
    }

    fn groups(&self) -> usize {
        self.rows.iter().map(|r| &r.group).collect::<BTreeSet<_>>().len()
    }
}

/// Builds the report from the live cluster; every broker's upstream address is dialed too.
pub async fn check(config: &Config) -> Report {
    let limit = config.upstream.connect_timeout;
    let mut report = Report::default();
    for addr in &config.upstream.bootstrap_servers {
        if let Err(e) = upstream::connect(addr, limit, None).await {
            report.problems.push(format!("bootstrap server {e}"));
        }
    }
    let view = match upstream::describe_cluster(&config.upstream.bootstrap_servers, limit).await {
        Ok(view) => view,
        Err(e) => {
            report.problems.push(e.to_string());
            return report;
        }
    };
    report.cluster_id = view.cluster_id.clone();
    report.answered_by = Some(view.answered_by.to_string());
    if view.brokers.is_empty() {
        report.problems.push("the cluster reports no brokers".into());
    }
    let nodes: BTreeSet<i32> = view.brokers.iter().map(|b| b.node_id).collect();
    if let Err(e) = config.check_ports(&nodes) {
        report.problems.push(format!("port collision: {e}"));
    }
    for broker in &view.brokers {
        let addr = format!("{}:{}", broker.host, broker.port);
        let reachable = match crate::config::HostPort::parse(&addr) {
            Ok(hp) => upstream::connect(&hp, limit, None).await.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = reachable {
            report.problems.push(format!("broker {}: {e}", broker.node_id));
        }
    }
    report.rows = rows(config, &view.brokers);
    for row in &report.rows {
        if let Err(e) = &row.advertised {
            report.problems.push(format!("listener group {}, broker {}: {e}", row.group, row.node_id));
        }
    }
    report
}

/// The table rows for `brokers`, without touching the network.
pub fn rows(config: &Config, brokers: &[BrokerView]) -> Vec<Row> {
    let mut rows = Vec::new();
    for group in &config.groups {
        let mut sorted: Vec<_> = brokers.iter().collect();
        sorted.sort_by_key(|b| b.node_id);
        for b in sorted {
            let rack = b.rack.clone().flatten();
            let advertised = advertised_address(group, b.node_id, rack.as_deref());
            rows.push(Row {
                group: group.name.clone(),
                node_id: b.node_id,
                rack: rack.clone(),
                upstream: format!("{}:{}", b.host, b.port),
                az: group.az_of(b.node_id, rack.as_deref()).map(str::to_owned),
                listen: group.broker_port(b.node_id).ok().map(|p| SocketAddr::new(group.bind, p)),
                advertised: advertised.map(|a| format!("{}:{}", a.host, a.port)).map_err(|e| e.to_string()),
            });
        }
    }
    rows
}
