//! The command line: `kafka-gateway run` and `kafka-gateway check`, tracing set up, exit statuses
//! that scripts can act on (2: the configuration was refused, 1: anything else went wrong).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kafka_gateway::{check, Config, Gateway};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(version, about = "A Kafka wire-protocol gateway for private links: shows an unchanged cluster under per-broker names")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve: listen on the bootstrap and broker ports of every listener group.
    Run(ConfigArgs),
    /// Ask the cluster for its brokers, print what each listener group would advertise, and exit
    /// non-zero on any problem.
    Check(ConfigArgs),
}

#[derive(Args)]
struct ConfigArgs {
    /// The TOML configuration file; KAFKA_GATEWAY_… variables and --set override it.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override one key, e.g. --set listeners.tidb.bootstrap_port=9092 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        // Colours only for people: log collectors get plain lines.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let (ConfigArgs { config, overrides }, command) = match cli.command {
        Command::Run(args) => (args, "run"),
        Command::Check(args) => (args, "check"),
    };
    let config = match Config::load(config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kafka-gateway: configuration refused: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async move {
        if command == "check" {
            let report = check::check(&config).await;
            print!("{}", report.render());
            return if report.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
        }
        match Gateway::start(config).await {
            Ok(gateway) => {
                wait_for_signal().await;
                tracing::info!("shutting down");
                gateway.shutdown();
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kafka-gateway: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
