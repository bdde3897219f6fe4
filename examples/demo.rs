//! The demo: an embedded 3-broker cluster (librdkafka's mock cluster) with racks us-west-2a,
//! us-west-2c and us-west-2b, and the gateway in front of it with the AWS per-AZ pattern.
//!
//! `cargo run --example demo [-- --port 9092 --bind 127.0.0.1]`

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kafka_gateway::admin::{self, Observe};
use kafka_gateway::{Config, Gateway, check};
use rdkafka::mocking::MockCluster;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
struct Args {
    /// The bootstrap port; broker N listens on PORT + N.
    #[arg(long, default_value_t = 9092)]
    port: u16,
    /// The address the gateway listens on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long)]
    seconds: Option<u64>,
    /// Run only the cluster and print `bootstrap HOST:PORT,…` (for tests/e2e/private-link.sh,
    /// which runs the real gateway binary in front of it).
    #[arg(long)]
    cluster_only: bool,
}

const RACKS: [&str; 3] = ["us-west-2a", "us-west-2c", "us-west-2b"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();

    let cluster = MockCluster::new(3)?;
    for (i, rack) in RACKS.iter().enumerate() {
        cluster.broker_rack(i as i32 + 1, rack)?;
    }
    if args.cluster_only {
        println!("bootstrap {}", cluster.bootstrap_servers());
        tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(wait(args.seconds))?;
        return Ok(());
    }
    let config = Config::from_toml(&format!(
        r#"
        [upstream]
        bootstrap_servers = "{servers}"

        [listeners.tidb]
        bind = "{bind}"
        bootstrap_port = {port}
        broker_port_base = {port}
        advertised = "b{{node_id}}.{{az}}.unique_name.aws.plc.tidbcloud.com:{{port}}"
        az_by_rack = {{ "us-west-2a" = "usw2-az1", "us-west-2c" = "usw2-az2", "us-west-2b" = "usw2-az3" }}
        "#,
        servers = cluster.bootstrap_servers(),
        bind = args.bind,
        port = args.port,
    ))?;
    // The runtime `kafka-gateway run` builds, so that the demo serves as the gateway does.
    kafka_gateway::runtime::build(&config)?.block_on(serve(args, config))?;
    drop(cluster);
    Ok(())
}

async fn serve(args: Args, config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let gateway = Gateway::start(config.clone()).await?;
    // The admin endpoint as `kafka-gateway run` serves it; the demo goes on without it if its port
    // is taken.
    let admin = match config.admin.bind {
        Some(bind) => match admin::serve(bind, Arc::clone(&gateway) as Arc<dyn Observe>).await {
            Ok(admin) => Some(admin),
            Err(e) => {
                eprintln!("no admin endpoint on {bind}: {e}");
                None
            }
        },
        None => None,
    };
    let report = check::check(&config).await;
    println!("\n{}", report.render());

    let names: Vec<String> = report.rows.iter().filter_map(|r| r.advertised.clone().ok()).collect();
    let hosts: Vec<&str> = names.iter().filter_map(|a| a.rsplit_once(':').map(|(h, _)| h)).collect();
    let bootstrap = format!("{}:{}", args.bind, args.port);
    println!(
        "Try it with kcat (apt-get install kcat):
  kcat -b {bootstrap} -L                  # the brokers, under their private-link names
To produce and consume, the names must resolve to the gateway, as TiDB Cloud's private DNS does:
  echo '{bind} {hosts}' | sudo tee -a /etc/hosts
  seq 1 10 | kcat -b {bootstrap} -P -t test-topic
  kcat -b {bootstrap} -G demo-group test-topic -e
Or let the testbed do all of it in network namespaces, as behind a private link (root):
  tests/e2e/private-link.sh
{admin}Ctrl-C stops the demo.",
        admin = admin.as_ref().map_or_else(String::new, |a| format!(
            "The admin endpoint: curl http://{0}/metrics (/readyz, /topology), or kafka-gateway check --admin {0}\n",
            a.local_addr()
        )),
        bind = args.bind,
        hosts = hosts.join(" "),
    );
    wait(args.seconds).await?;
    gateway.shutdown();
    Ok(())
}

async fn wait(seconds: Option<u64>) -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    match seconds {
        Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
        None => tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        },
    }
    Ok(())
}
