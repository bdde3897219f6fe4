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

/// Where the README's blocks keep certificates, keys and the SASL password (deploy/kubernetes
/// mounts its secrets there).
const SECRETS: &str = "/etc/kafka-gateway/";

/// A block whose files under [`SECRETS`] are placed in `dir` instead (configurations must name
/// readable files; what they hold is only read at start, so any text will do).
fn with_files(block: &str, dir: &std::path::Path) -> String {
    let mut rest = block;
    while let Some(start) = rest.find(SECRETS) {
        let path = &rest[start + SECRETS.len()..];
        let path = &path[..path.find('"').unwrap()];
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "secret\n").unwrap();
        rest = &rest[start + SECRETS.len()..];
    }
    block.replace(SECRETS, &format!("{}/", dir.display()))
}

fn parse(first_line: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    Config::from_toml(&with_files(&block(first_line), dir.path())).unwrap()
}

#[test]
fn the_configuration_reference_is_a_valid_configuration() {
    let config = parse("[upstream]");
    assert_eq!(config.groups[0].broker_port(7), Ok(9100));
    let tls = config.upstream.tls.as_ref().unwrap();
    assert!(tls.ca.is_some() && tls.cert.is_some() && tls.key.is_some() && tls.server_name.is_some());
    assert!(!tls.insecure_skip_verify);
    assert_eq!(config.upstream.sasl.as_ref().unwrap().password.expose(), "secret");
    assert!(config.groups[0].tls.as_ref().unwrap().client_ca.is_some());
}

/// Every key of `[listeners.<group>.tls]`, `[upstream.tls]` and `[upstream.sasl]` has its row in
/// the README's key table, and the reference block sets each.
#[test]
fn every_tls_and_sasl_key_is_documented() {
    let text = readme();
    let reference = block("[upstream]");
    let keys = [
        ("listeners.<name>.tls.", "[listeners.tidb.tls]", &["cert", "key", "client_ca"][..]),
        ("upstream.tls.", "[upstream.tls]", &["ca", "cert", "key", "server_name", "insecure_skip_verify"][..]),
        ("upstream.sasl.", "[upstream.sasl]", &["mechanism", "username", "password", "password_file"][..]),
    ];
    for (prefix, header, fields) in keys {
        // The section's own lines, up to the next header: `key = ` elsewhere does not count.
        let start = reference.find(&format!("\n{header}")).unwrap_or_else(|| panic!("no {header} in the reference"));
        let section = &reference[start + 1 + header.len()..];
        let section = &section[..section.find("\n[").unwrap_or(section.len())];
        for field in fields {
            let row = format!("| `{prefix}{field}`");
            let shared = format!("`{prefix}{field}`, ");
            let paired = format!(", `{prefix}{field}` |");
            assert!(
                text.contains(&row) || text.contains(&shared) || text.contains(&paired),
                "no row for {prefix}{field}"
            );
            assert!(section.contains(&format!("{field} = ")), "the reference block does not name {prefix}{field}");
        }
    }
    assert!(text.contains("KAFKA_GATEWAY_UPSTREAM__SASL__PASSWORD"));
}

#[test]
fn the_tls_and_sasl_recipes_are_valid_configurations_with_the_guides_names() {
    let aws = [
        "b1.usw2-az1.unique_name.aws.plc.tidbcloud.com:9093",
        "b2.usw2-az2.unique_name.aws.plc.tidbcloud.com:9094",
        "b3.usw2-az3.unique_name.aws.plc.tidbcloud.com:9095",
    ];
    let names = |config: &Config, racks: [&str; 3]| -> Vec<String> {
        (1..=3).map(|n| config.groups[0].advertised(n, Some(racks[n as usize - 1])).unwrap().to_string()).collect()
    };

    // MSK reports AZ IDs as racks.
    let msk = parse("# recipe: msk-sasl-ssl");
    assert_eq!(names(&msk, ["usw2-az1", "usw2-az2", "usw2-az3"]), aws);
    let tls = msk.upstream.tls.as_ref().unwrap();
    assert!(tls.ca.is_none() && !tls.insecure_skip_verify, "MSK's certificates are checked with the system's CAs");
    assert_eq!(msk.upstream.sasl.as_ref().unwrap().mechanism.name(), "SCRAM-SHA-512");
    assert!(msk.groups[0].tls.as_ref().unwrap().client_ca.is_none());

    let mtls = parse("# recipe: mtls");
    assert_eq!(names(&mtls, RACKS), aws);
    assert!(mtls.groups[0].tls.as_ref().unwrap().client_ca.is_some());
    assert!(mtls.upstream.tls.is_none());

    let upstream_only = parse("# recipe: tls-upstream-only");
    assert_eq!(names(&upstream_only, RACKS), aws);
    assert!(upstream_only.upstream.tls.as_ref().unwrap().ca.is_some());
    assert!(upstream_only.groups[0].tls.is_none());
}
