//! The README's recipes give exactly the names of TiDB Cloud's guides (../shared/seeds), and its
//! configuration reference is a valid configuration.

use kafka_gateway::Config;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The TOML block of the README whose first line is `first_line`.
fn block(first_line: &str) -> String {
    let text = readme();
    let start = text.find(&format!("```toml\n{first_line}\n")).unwrap_or_else(|| panic!("no block {first_line}"));
    let body = &text[start + 8..];
    body[..body.find("```").unwrap()].to_owned()
}

fn names(recipe: &str, racks: [&str; 3]) -> Vec<String> {
    let config = Config::from_toml(&block(&format!("# recipe: {recipe}"))).unwrap();
    (1..=3).map(|n| config.groups[0].advertised(n, Some(racks[n as usize - 1])).unwrap().to_string()).collect()
}

const RACKS: [&str; 3] = ["us-west-2a", "us-west-2c", "us-west-2b"];

#[test]
fn the_aws_recipe_gives_the_aws_guides_names() {
    assert_eq!(
        names("aws", RACKS),
        [
            "b1.usw2-az1.unique_name.aws.plc.tidbcloud.com:9093",
            "b2.usw2-az2.unique_name.aws.plc.tidbcloud.com:9094",
            "b3.usw2-az3.unique_name.aws.plc.tidbcloud.com:9095",
        ]
    );
}

#[test]
fn the_azure_recipe_gives_the_azure_guides_names() {
    assert_eq!(
        names("azure", RACKS),
        [
            "b1.abc.eastus.azure.3199745.tidbcloud.com:9093",
            "b2.abc.eastus.azure.3199745.tidbcloud.com:9094",
            "b3.abc.eastus.azure.3199745.tidbcloud.com:9095",
        ]
    );
}

#[test]
fn the_gcp_recipe_follows_the_private_service_connect_pattern() {
    // b<node.id>.<unique>.<region>.gcp.<account>.tidbcloud.com:<port>
    assert_eq!(
        names("gcp", RACKS),
        [
            "b1.abc.us-west1.gcp.3199745.tidbcloud.com:9093",
            "b2.abc.us-west1.gcp.3199745.tidbcloud.com:9094",
            "b3.abc.us-west1.gcp.3199745.tidbcloud.com:9095",
        ]
    );
}

#[test]
fn the_configuration_reference_is_a_valid_configuration() {
    let config = Config::from_toml(&block("[upstream]")).unwrap();
    assert_eq!(config.groups[0].broker_port(7), Ok(9100));
}
