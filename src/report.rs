//! The table of what the gateway names each broker, per listener group: what `check`, `validate`
//! and `plan` work from and a running gateway's `/topology` serves (as JSON), with the problems
//! found on the way. Only data and its rendering: it reaches nothing.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// One broker as one listener group shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "RowJson", from = "RowJson")]
pub struct Row {
    pub group: String,
    pub node_id: i32,
    pub rack: Option<String>,
    pub upstream: String,
    pub az: Option<String>,
    /// `host:port`, or why there is none.
    pub advertised: Result<String, String>,
    pub listen: Option<SocketAddr>,
    /// Client connections open on the broker's port: known only to a running gateway.
    pub connections: Option<i64>,
}

/// A row as `/topology` writes it for scripts: the advertised address, or the problem.
#[derive(Serialize, Deserialize)]
struct RowJson {
    group: String,
    node_id: i32,
    rack: Option<String>,
    upstream: String,
    az: Option<String>,
    advertised: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
    listen: Option<SocketAddr>,
    #[serde(default)]
    connections: Option<i64>,
}

impl From<Row> for RowJson {
    fn from(r: Row) -> Self {
        let (advertised, problem) = match r.advertised {
            Ok(a) => (Some(a), None),
            Err(e) => (None, Some(e)),
        };
        Self {
            group: r.group,
            node_id: r.node_id,
            rack: r.rack,
            upstream: r.upstream,
            az: r.az,
            advertised,
            problem,
            listen: r.listen,
            connections: r.connections,
        }
    }
}

impl From<RowJson> for Row {
    fn from(r: RowJson) -> Self {
        let advertised = match (r.advertised, r.problem) {
            (Some(a), _) => Ok(a),
            (None, problem) => Err(problem.unwrap_or_else(|| "no advertised address".into())),
        };
        Self {
            group: r.group,
            node_id: r.node_id,
            rack: r.rack,
            upstream: r.upstream,
            az: r.az,
            advertised,
            listen: r.listen,
            connections: r.connections,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    pub cluster_id: Option<String>,
    pub answered_by: Option<String>,
    pub rows: Vec<Row>,
    pub problems: Vec<String>,
    /// Who may connect to each group (`[listeners.<group>.access]`), one line per group.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<String>,
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
        // A running gateway's report (`check --admin`) has a column more: open connections.
        let live = self.rows.iter().any(|r| r.connections.is_some());
        let mut header: Vec<String> =
            ["GROUP", "NODE", "RACK", "UPSTREAM", "AZ", "ADVERTISED", "LISTEN"].map(String::from).to_vec();
        if live {
            header.push("CONNECTIONS".into());
        }
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                let mut cells = vec![
                    r.group.clone(),
                    r.node_id.to_string(),
                    r.rack.clone().unwrap_or_else(|| "-".into()),
                    r.upstream.clone(),
                    r.az.clone().unwrap_or_else(|| "-".into()),
                    r.advertised.clone().unwrap_or_else(|_| "(none)".into()),
                    r.listen.map_or_else(|| "-".into(), |a| a.to_string()),
                ];
                if live {
                    cells.push(r.connections.map_or_else(|| "-".into(), |n| n.to_string()));
                }
                cells
            })
            .collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| cells.iter().map(|c| c[i].len()).chain([header[i].len()]).max().unwrap_or(0))
            .collect();
        for line in std::iter::once(&header).chain(&cells) {
            let row: Vec<String> = line.iter().zip(&widths).map(|(c, w)| format!("{c:w$}")).collect();
            let _ = writeln!(out, "{}", row.join("  ").trim_end());
        }
        for line in &self.access {
            let _ = writeln!(out, "{line}");
        }
        for p in &self.problems {
            let _ = writeln!(out, "problem: {p}");
        }
        if self.is_ok() {
            let _ = writeln!(
                out,
                "ok: {} broker(s) in {} listener group(s)",
                self.rows.len() / self.groups().max(1),
                self.groups()
            );
        }
        out
    }

    fn groups(&self) -> usize {
        self.rows.iter().map(|r| &r.group).collect::<BTreeSet<_>>().len()
    }
}
