//! The plan's own rules: names, lengths, health checks, and `--only-new` against a previous plan.

use super::*;
use crate::check;

const AWS: &str = r#"
[upstream]
bootstrap_servers = ["10.0.0.11:9092"]
[listeners.tidb]
bootstrap_port = 9092
broker_port_base = 9092
advertised = "b{node_id}.{az}.unique_name.aws.plc.tidbcloud.com:{port}"
az_by_rack = { "us-west-2a" = "usw2-az1", "us-west-2c" = "usw2-az2", "us-west-2b" = "usw2-az3" }
"#;

fn options(cloud: Cloud, format: Format) -> Options {
    Options { cloud, format, name: "kafka-gateway".into(), proxy_protocol: false }
}

fn brokers(ids: &[(i32, &str)]) -> Vec<(i32, Option<String>)> {
    ids.iter().map(|(id, rack)| (*id, Some((*rack).to_owned()))).collect()
}

fn build(config: &str, ids: &[(i32, &str)], opts: Options, previous: Option<&str>) -> Result<Plan, PlanError> {
    let config = Config::from_toml(config).unwrap();
    let report = check::plan(&config, &brokers(ids));
    assert!(report.is_ok(), "{}", report.render());
    Plan::build(&config, &report, opts, previous.map(|p| ("previous.sh", p)))
}

const THREE: &[(i32, &str)] = &[(1, "us-west-2a"), (2, "us-west-2c"), (3, "us-west-2b")];

#[test]
fn markers_record_every_port_and_read_back() {
    let plan = build(AWS, THREE, options(Cloud::Aws, Format::Cli), None).unwrap();
    let text = plan.render();
    let marker = text.lines().nth(1).unwrap();
    assert_eq!(marker, "# kafka-gateway plan: cloud=aws group=tidb bootstrap=9092 brokers=1:9093,2:9094,3:9095");
    let previous = Previous::parse(&text).unwrap();
    assert_eq!(previous.cloud, Cloud::Aws);
    let group = &previous.groups["tidb"];
    assert_eq!(group.bootstrap, Some(9092));
    assert_eq!(group.brokers, BTreeMap::from([(1, 9093), (2, 9094), (3, 9095)]));
}

#[test]
fn only_new_keeps_just_the_added_broker_and_names_the_gone_one() {
    let before = build(AWS, THREE, options(Cloud::Aws, Format::Cli), None).unwrap().render();
    let now = &[(1, "us-west-2a"), (3, "us-west-2b"), (4, "us-west-2a")];
    let plan = build(AWS, now, options(Cloud::Aws, Format::Cli), Some(&before)).unwrap();
    let g = &plan.groups[0];
    assert_eq!(g.only, Some(vec![4]));
    assert_eq!(g.gone, vec![(2, 9094)]);
    assert_eq!(text::rules(g), vec![("b4".to_owned(), Some(4), 9096)]);
    let text = plan.render();
    assert!(text.contains("broker 2 (port 9094) is gone from the cluster"), "{text}");
    assert!(!text.contains("create-load-balancer"), "{text}");
    assert!(text.contains("describe-load-balancers --names kafka-gateway-tidb"), "{text}");
}

#[test]
fn only_new_refuses_a_moved_port_and_another_cloud() {
    let before = build(AWS, THREE, options(Cloud::Aws, Format::Cli), None).unwrap().render();
    let moved = AWS.replace("bootstrap_port = 9092", "bootstrap_port = 9091");
    let err = build(&moved, THREE, options(Cloud::Aws, Format::Cli), Some(&before)).unwrap_err().to_string();
    assert!(err.starts_with("--only-new previous.sh: listener group tidb's bootstrap port"), "{err}");
    let moved = AWS.replace("bootstrap_port = 9092", "bootstrap_port = 9092\nbroker_ports = { \"2\" = 9200 }");
    let err = build(&moved, THREE, options(Cloud::Aws, Format::Cli), Some(&before)).unwrap_err().to_string();
    assert!(err.contains("broker 2 of listener group tidb was on port 9094 and is on 9200 now"), "{err}");
    let err = build(AWS, THREE, options(Cloud::Gcp, Format::Cli), Some(&before)).unwrap_err().to_string();
    assert_eq!(err, "--only-new previous.sh: it is a plan for aws, not gcp");
    let err = build(AWS, THREE, options(Cloud::Aws, Format::Cli), Some("#!/bin/sh\n")).unwrap_err().to_string();
    assert!(err.contains("no '# kafka-gateway plan:' line"), "{err}");
}

#[test]
fn names_are_checked_against_each_clouds_limit() {
    let mut opts = options(Cloud::Aws, Format::Cli);
    opts.name = "Kafka".into();
    let err = build(AWS, THREE, opts, None).unwrap_err().to_string();
    assert!(err.starts_with("--name: 'Kafka' must start with a lowercase letter"), "{err}");
    let mut opts = options(Cloud::Aws, Format::Cli);
    opts.name = "a-rather-long-gateway-name".into();
    let err = build(AWS, THREE, opts.clone(), None).unwrap_err().to_string();
    assert!(err.contains("above aws's limit of 32"), "{err}");
    opts.cloud = Cloud::Gcp;
    assert!(build(AWS, THREE, opts, None).is_ok());
}

#[test]
fn health_follows_readiness_only_where_the_balancer_can_ask_it() {
    let plan = build(AWS, THREE, options(Cloud::Aws, Format::Cli), None).unwrap();
    assert_eq!(plan.health, Health::Tcp, "the default admin.bind is loopback");
    let open = format!("{AWS}\n[admin]\nbind = \"0.0.0.0:9644\"\n");
    let plan = build(&open, THREE, options(Cloud::Aws, Format::Cli), None).unwrap();
    assert_eq!(plan.health, Health::Http { port: 9644 });
    // PROXY protocol on (from the config): AWS's and Azure's health checks would carry a header too.
    let proxied = open.replace("[admin]", "[listeners.tidb.access]\nproxy_protocol = \"required\"\n[admin]");
    let plan = build(&proxied, THREE, options(Cloud::Aws, Format::Cli), None).unwrap();
    assert!(plan.options.proxy_protocol);
    assert_eq!(plan.health, Health::Tcp, "{}", plan.health_note);
    let plan = build(&proxied, THREE, options(Cloud::Gcp, Format::Cli), None).unwrap();
    assert_eq!(plan.health, Health::Http { port: 9644 }, "GCP's probers do not pass the attachment");
}

#[test]
fn two_groups_that_would_share_resource_names_are_refused() {
    let two = format!(
        "{AWS}\n[listeners.tidb_a]\nbroker_port_base = 9192\nadvertised = \"a{{node_id}}.x:{{port}}\"\n\
                       [listeners.tidb-a]\nbroker_port_base = 9292\nadvertised = \"b{{node_id}}.x:{{port}}\"\n"
    );
    let err = build(&two, THREE, options(Cloud::Gcp, Format::Cli), None).unwrap_err().to_string();
    assert_eq!(
        err,
        "listeners.tidb_a: the group's name gives the same resource names as listener group tidb-a (kafka-gateway-tidb-a)"
    );
}

#[test]
fn the_load_balancer_sends_proxy_headers_exactly_when_the_groups_read_them() {
    let mut flag = options(Cloud::Aws, Format::Cli);
    flag.proxy_protocol = true;
    let err = build(AWS, THREE, flag.clone(), None).unwrap_err();
    assert!(err.to_string().starts_with("listeners.tidb.access.proxy_protocol is \"off\""), "{err}");

    let required = format!("{AWS}[listeners.tidb.access]\nproxy_protocol = \"required\"\n");
    for opts in [flag, options(Cloud::Aws, Format::Cli)] {
        let plan = build(&required, THREE, opts, None).unwrap();
        assert!(plan.options.proxy_protocol);
        assert!(plan.render().contains("proxy_protocol_v2.enabled,Value=true"));
    }

    let mixed =
        format!("{required}[listeners.other]\nbroker_port_base = 9192\nadvertised = \"o{{node_id}}.x:{{port}}\"\n");
    let err = build(&mixed, THREE, options(Cloud::Aws, Format::Cli), None).unwrap_err();
    assert!(err.to_string().starts_with("listeners.tidb.access.proxy_protocol is \"required\""), "{err}");
}
