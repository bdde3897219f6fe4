//! The operator's commands besides `run`: `check` asks the cluster for its brokers and shows, per
//! listener group and broker, what the gateway would advertise and where it would listen, with every
//! problem on the way, or, with `--admin`, what a running gateway knows (its `/topology`);
//! `validate` does the same offline for brokers the operator names; `health` asks a running
//! gateway's `/readyz`.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::admin;
use crate::broker::Broker;
use crate::config::Config;
use crate::report::{Report, Row};
use crate::tls::Acceptor;
use crate::upstream::{self, Connection, Link};

/// Builds the report from the live cluster; every bootstrap server and broker is reached the way
/// the gateway reaches them (TLS and SASL included).
pub async fn check(config: &Config) -> Report {
    let mut report = Report { access: access(config), ..Report::default() };
    let link = match Link::load(config) {
        Ok(link) => link,
        Err(e) => {
            report.problems.push(e.to_string());
            return report;
        }
    };
    for addr in &config.upstream.bootstrap_servers {
        if let Err(e) = Connection::open(addr, &link).await {
            report.problems.push(format!("bootstrap server {e}"));
        }
    }
    let view = match upstream::describe_cluster(&config.upstream.bootstrap_servers, &link).await {
        Ok(view) => view,
        Err(e) => {
            report.problems.push(e.to_string());
            return report;
        }
    };
    report.cluster_id = view.cluster_id.clone();
    report.answered_by = Some(view.answered_by.to_string());
    report.problems.extend(view.unusable.iter().map(ToString::to_string));
    if view.brokers.is_empty() {
        report.problems.push("the cluster reports no brokers".into());
    }
    let nodes: BTreeSet<i32> = view.brokers.iter().map(|b| b.node_id).collect();
    if let Err(e) = config.check_ports(&nodes) {
        report.problems.push(format!("port collision: {e}"));
    }
    for broker in &view.brokers {
        if let Err(e) = Connection::open(&broker.upstream, &link).await {
            report.problems.push(format!("broker {}: {e}", broker.node_id));
        }
    }
    let brokers: Vec<_> = view.brokers.iter().map(|b| (b.node_id, b.rack.clone(), Some(b))).collect();
    report.rows = rows(config, &brokers);
    report.problems.extend(row_problems(config, &report.rows));
    report
}

/// The report for brokers the operator names (`ID` or `ID:RACK`), without touching the network.
pub fn plan(config: &Config, brokers: &[(i32, Option<String>)]) -> Report {
    let named: Vec<_> = brokers.iter().map(|(id, rack)| (*id, rack.clone(), None)).collect();
    let mut report = Report { rows: rows(config, &named), access: access(config), ..Report::default() };
    let nodes: BTreeSet<i32> = brokers.iter().map(|(id, _)| *id).collect();
    if let Err(e) = config.check_ports(&nodes) {
        report.problems.push(format!("port collision: {e}"));
    }
    report.problems.extend(row_problems(config, &report.rows));
    report
}

/// Each group's access rules as `check` and `validate` print them: PROXY protocol, the endpoints and
/// sources it admits, its connection limit and idle timeout, and the gateway's handshake deadline.
pub fn access(config: &Config) -> Vec<String> {
    config
        .groups
        .iter()
        .map(|g| format!("access {}: {}; handshake_timeout {}s", g.name, g.access, config.handshake_timeout.as_secs()))
        .collect()
}

/// Names that cannot be advertised, and advertised names a group's TLS certificate does not cover
/// (a client checking the name would refuse the connection).
fn row_problems(config: &Config, rows: &[Row]) -> Vec<String> {
    let mut problems: Vec<String> = rows.iter().filter_map(|row| row.advertised.clone().err()).collect();
    for group in &config.groups {
        let Some(files) = &group.tls else { continue };
        let key = format!("listeners.{}.tls", group.name);
        let acceptor = match Acceptor::load(files, &key) {
            Ok(acceptor) => acceptor,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let hosts: Vec<String> = rows
            .iter()
            .filter(|row| row.group == group.name)
            .filter_map(|row| row.advertised.as_ref().ok())
            .map(|a| a.rsplit_once(':').map_or(a.clone(), |(host, _)| host.to_owned()))
            .collect();
        match acceptor.uncovered(hosts.iter().map(String::as_str)) {
            Ok(uncovered) => problems.extend(uncovered.into_iter().map(|host| {
                format!(
                    "{key}.cert does not cover {host}: a client that checks the name refuses it (add the name or a \
                     wildcard for it to the certificate's SANs)"
                )
            })),
            Err(e) => problems.push(e.to_string()),
        }
    }
    problems
}

/// Asks the running gateway with `config` whether it is ready (`GET /readyz` on its admin
/// endpoint, reached on loopback if it binds a wildcard): Ok with its answer, Err with why not.
/// With the admin endpoint off (`admin.bind = ""`), checks that its bootstrap ports accept.
pub async fn health(config: &Config) -> Result<String, String> {
    let Some(bind) = config.admin.bind else {
        return ports_accept(config).await.map(|n| format!("{n} bootstrap port(s) accept connections"));
    };
    let addr = admin::reachable(bind).to_string();
    match admin::get(&addr, "/readyz", config.upstream.connect_timeout).await {
        Ok((200, body)) => Ok(body.trim().to_owned()),
        Ok((status, body)) => Err(format!("{addr} answered {status}: {}", body.trim())),
        Err(e) => Err(e.to_string()),
    }
}

/// What a running gateway knows, from its admin endpoint at `addr`: every broker per listener
/// group with its open connections, and, as problems, why it is not ready and any broker it
/// cannot name.
pub async fn live(addr: &str, timeout: std::time::Duration) -> Report {
    match admin::topology(addr, timeout).await {
        Ok(report) => report,
        Err(e) => Report { problems: vec![e.to_string()], ..Report::default() },
    }
}

/// Connects to every bootstrap port of a running gateway with `config` (a wildcard bind is reached
/// on loopback). Err names the first port that does not accept.
async fn ports_accept(config: &Config) -> Result<usize, String> {
    let mut checked = 0;
    for group in &config.groups {
        let Some(port) = group.bootstrap_port else { continue };
        let ip = match group.bind {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        let addr = SocketAddr::new(ip, port);
        match tokio::time::timeout(config.upstream.connect_timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => checked += 1,
            Ok(Err(e)) => return Err(format!("listeners.{}.bootstrap_port {addr}: {e}", group.name)),
            Err(_) => return Err(format!("listeners.{}.bootstrap_port {addr}: no answer", group.name)),
        }
    }
    if checked == 0 {
        return Err("nothing to check: no listener group has a bootstrap_port".into());
    }
    Ok(checked)
}

/// The table rows for brokers given as (node id, rack, what the cluster says of it), without
/// touching the network.
pub fn rows(config: &Config, brokers: &[(i32, Option<String>, Option<&Broker>)]) -> Vec<Row> {
    let mut rows = Vec::new();
    for group in &config.groups {
        let mut sorted: Vec<_> = brokers.iter().collect();
        sorted.sort_by_key(|(node_id, _, _)| *node_id);
        for (node_id, rack, known) in sorted {
            let advertised = group.advertised(*node_id, rack.as_deref());
            rows.push(Row {
                group: group.name.clone(),
                node_id: *node_id,
                rack: rack.clone(),
                upstream: known.map_or_else(|| "-".into(), |b| b.upstream.to_string()),
                az: group.az_of(*node_id, rack.as_deref()).map(str::to_owned),
                listen: group.broker_port(*node_id).ok().map(|p| SocketAddr::new(group.bind, p)),
                advertised: advertised.map(|a| a.to_string()).map_err(|e| e.to_string()),
                connections: None,
            });
        }
    }
    rows
}
