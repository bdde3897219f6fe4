//! The advertised-address template of a listener group: `b{node_id}.{az}.abc.aws.plc.tidbcloud.com:{port}`.
//!
//! A template is parsed once, at configuration time, into literal and placeholder pieces, so that a
//! typo (`{nodeid}`) or a missing `{port}` is a startup error and rendering a name can never fail
//! for a reason the operator could have caught earlier.

use std::fmt;

/// One piece of the host part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    NodeId,
    Az,
    Rack,
}

/// What a template needs to render one broker's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs<'a> {
    pub node_id: i32,
    pub az: Option<&'a str>,
    pub rack: Option<&'a str>,
}

/// A parsed `HOST:{port}` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    host: Vec<Piece>,
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("must end in ':{{port}}' so that each broker keeps its own load-balancer port (got '{0}')")]
    NoPort(String),
    #[error("unknown placeholder '{{{0}}}'; known: {{node_id}}, {{az}}, {{rack}}, {{port}}")]
    UnknownPlaceholder(String),
    #[error("unclosed '{{' in '{0}'")]
    Unclosed(String),
    #[error("'{{port}}' may only appear after the last ':'")]
    PortInHost,
    #[error("the host part is empty")]
    EmptyHost,
    #[error("character {0:?} cannot appear in a host name")]
    BadCharacter(char),
}

/// Why a name could not be rendered for a broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the template uses {{az}} but broker {0} has no AZ")]
    NoAz(i32),
    #[error("the template uses {{rack}} but broker {0} reports no rack")]
    NoRack(i32),
    #[error("broker {node_id}'s {what} {value:?} is not valid in a host name")]
    BadValue { node_id: i32, what: &'static str, value: String },
}

impl Template {
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let host_src = source.strip_suffix(":{port}").ok_or_else(|| TemplateError::NoPort(source.to_owned()))?;
        let mut host = Vec::new();
        let mut rest = host_src;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest.find('}').ok_or_else(|| TemplateError::Unclosed(source.to_owned()))?;
                    let name = &rest[1..end];
                    if name.contains('{') {
                        return Err(TemplateError::Unclosed(source.to_owned()));
                    }
                    host.push(match name {
                        "node_id" => Piece::NodeId,
                        "az" => Piece::Az,
                        "rack" => Piece::Rack,
                        "port" => return Err(TemplateError::PortInHost),
                        other => return Err(TemplateError::UnknownPlaceholder(other.to_owned())),
                    });
                    rest = &rest[end + 1..];
                }
                found => {
                    let end = found.unwrap_or(rest.len());
                    let literal = &rest[..end];
                    if let Some(c) = literal.chars().find(|&c| !is_host_char(c)) {
                        return Err(TemplateError::BadCharacter(c));
                    }
                    host.push(Piece::Literal(literal.to_owned()));
                    rest = &rest[end..];
                }
            }
        }
        if host.is_empty() {
            return Err(TemplateError::EmptyHost);
        }
        Ok(Self { source: source.to_owned(), host })
    }

    pub fn uses_az(&self) -> bool {
        self.host.contains(&Piece::Az)
    }

    /// Renders the host name of one broker; its port is always the broker's listen port.
    pub fn render_host(&self, inputs: Inputs<'_>) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.source.len() + 16);
        for piece in &self.host {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::NodeId => out.push_str(&inputs.node_id.to_string()),
                Piece::Az => {
                    let az = inputs.az.ok_or(RenderError::NoAz(inputs.node_id))?;
                    push_checked(&mut out, inputs.node_id, "AZ", az)?;
                }
                Piece::Rack => {
                    let rack = inputs.rack.ok_or(RenderError::NoRack(inputs.node_id))?;
                    push_checked(&mut out, inputs.node_id, "rack", rack)?;
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Letters, digits, '-', '.' and '_' (the last for names like `unique_name` in TiDB Cloud's guide).
pub fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')
}

fn push_checked(out: &mut String, node_id: i32, what: &'static str, value: &str) -> Result<(), RenderError> {
    if value.is_empty() || !value.chars().all(is_host_char) {
        return Err(RenderError::BadValue { node_id, what, value: value.to_owned() });
    }
    out.push_str(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(node_id: i32, az: Option<&'static str>) -> Inputs<'static> {
        Inputs { node_id, az, rack: Some("us-west-2a") }
    }

    #[test]
    fn renders_the_aws_per_az_pattern() {
        let t = Template::parse("b{node_id}.{az}.unique_name.aws.plc.tidbcloud.com:{port}").unwrap();
        assert!(t.uses_az());
        assert_eq!(
            t.render_host(inputs(1, Some("usw2-az1"))).unwrap(),
            "b1.usw2-az1.unique_name.aws.plc.tidbcloud.com"
        );
    }

    #[test]
    fn renders_the_azure_pattern_without_az() {
        let t = Template::parse("b{node_id}.abc.eastus.azure.3199745.tidbcloud.com:{port}").unwrap();
        assert!(!t.uses_az());
        assert_eq!(t.render_host(inputs(3, None)).unwrap(), "b3.abc.eastus.azure.3199745.tidbcloud.com");
    }

    #[test]
    fn renders_rack_and_large_node_ids() {
        let t = Template::parse("{rack}-n{node_id}.example:{port}").unwrap();
        assert_eq!(t.render_host(inputs(1001, None)).unwrap(), "us-west-2a-n1001.example");
    }

    #[test]
    fn refuses_templates_without_port() {
        for bad in ["b{node_id}.x.com", "b{node_id}.x.com:9093", "b{node_id}.x.com:{port}x"] {
            assert!(matches!(Template::parse(bad), Err(TemplateError::NoPort(_))), "{bad}");
        }
    }

    #[test]
    fn refuses_unknown_or_broken_placeholders() {
        assert_eq!(Template::parse("b{nodeid}.x:{port}"), Err(TemplateError::UnknownPlaceholder("nodeid".into())));
        for unclosed in ["b{node_id.x:{port}", "b{node_id:{port}", "b{{node_id}.x:{port}"] {
            assert!(matches!(Template::parse(unclosed), Err(TemplateError::Unclosed(_))), "{unclosed}");
        }
        assert_eq!(Template::parse("{port}.x:{port}"), Err(TemplateError::PortInHost));
        assert_eq!(Template::parse(":{port}"), Err(TemplateError::EmptyHost));
        assert_eq!(Template::parse("b 1.x:{port}"), Err(TemplateError::BadCharacter(' ')));
    }

    #[test]
    fn a_missing_az_is_an_error_never_a_wrong_name() {
        let t = Template::parse("b{node_id}.{az}.x:{port}").unwrap();
        assert_eq!(t.render_host(inputs(2, None)), Err(RenderError::NoAz(2)));
        let no_rack = Inputs { rack: None, ..inputs(2, None) };
        let t = Template::parse("b{node_id}.{rack}.x:{port}").unwrap();
        assert_eq!(t.render_host(no_rack), Err(RenderError::NoRack(2)));
    }

    #[test]
    fn values_that_would_break_the_name_are_refused() {
        let t = Template::parse("b{node_id}.{rack}.x:{port}").unwrap();
        let odd = Inputs { rack: Some("rack 1/a"), ..inputs(2, None) };
        assert!(matches!(t.render_host(odd), Err(RenderError::BadValue { what: "rack", .. })));
    }
}
