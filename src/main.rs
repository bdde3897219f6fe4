//! The command line: `kafka-gateway run`, `check` and the other operator commands, tracing set up
//! (text, or JSON for log shippers), exit statuses that scripts can act on (2: the configuration was refused, 1:
//! anything else went wrong).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use kafka_gateway::admin::{self, Observe};
use kafka_gateway::config::LogFormat;
use kafka_gateway::tls::{Acceptor, TlsError};
use kafka_gateway::upstream::Link;
use kafka_gateway::{Config, Gateway, check, fixture, lifecycle, plan};
use tracing_subscriber::EnvFilter;

/// jemalloc, with its background thread purging freed pages: memory the gateway freed after a burst
/// (held Fetch answers for a dozen consumers, read buffers of many connections) goes back to the
/// kernel within seconds, where glibc's malloc kept it in its arenas for as long as the process ran.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    version,
    about = "A Kafka wire-protocol gateway for private links: shows an unchanged cluster under per-broker names"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written: text, or one JSON object per line for log shippers (overrides
    /// the configuration's log.format).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve: listen on the bootstrap and broker ports of every listener group.
    Run(ConfigArgs),
    /// Ask the cluster for its brokers, print what each listener group would advertise, and exit
    /// non-zero on any problem; with --admin, print what a running gateway knows instead.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
        /// A running gateway's admin endpoint (HOST:PORT): print its live topology, with open
        /// connections, and exit non-zero if it is not ready. No configuration is read.
        #[arg(long, value_name = "HOST:PORT")]
        admin: Option<String>,
    },
    /// Check the configuration without connecting; with --broker, print the names and ports those
    /// brokers would get (to plan DNS and load-balancer rules before the gateway runs).
    Validate {
        #[command(flatten)]
        config: ConfigArgs,
        /// A broker as ID or ID:RACK, e.g. --broker 1:us-west-2a (repeatable).
        #[arg(long = "broker", value_name = "ID[:RACK]", value_parser = parse_broker)]
        brokers: Vec<(i32, Option<String>)>,
    },
    /// Print what to build around the gateway on one cloud: load-balancer rules per port, the
    /// private-link service, the DNS names TiDB Cloud uses; as CLI commands or Terraform.
    Plan(PlanArgs),
    /// Exit 0 if a running gateway with this configuration is ready (its admin endpoint's
    /// /readyz; for container health checks).
    Health(ConfigArgs),
    /// Replay fixture cases (protocol-fixtures/, or cases recorded with gateway.record_dir) through
    /// the gateway's rewrite path; print what changed per case; exit 1 if any case fails.
    Replay {
        #[command(flatten)]
        config: ConfigArgs,
        /// The listener group whose template names the brokers (default: the first).
        #[arg(long)]
        group: Option<String>,
        /// Case files (NAME.toml or NAME.frame) or directories of them.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The cloud the gateway runs in.
    #[arg(long = "for", value_enum, value_name = "CLOUD")]
    cloud: plan::Cloud,
    /// cli: a shell script of aws / az / gcloud commands; terraform: HCL.
    #[arg(long, value_enum, default_value_t)]
    format: plan::Format,
    /// Plan for these brokers, as ID or ID:RACK (repeatable), without connecting; without --broker
    /// and --admin, the brokers come from the live cluster, as `check` finds them.
    #[arg(long = "broker", value_name = "ID[:RACK]", value_parser = parse_broker, conflicts_with = "admin")]
    brokers: Vec<(i32, Option<String>)>,
    /// Plan for the brokers a running gateway knows (its admin endpoint's /topology).
    #[arg(long, value_name = "HOST:PORT")]
    admin: Option<String>,
    /// A plan printed before (by this command): print only the rules of brokers added since.
    #[arg(long, value_name = "PREVIOUS_PLAN")]
    only_new: Option<PathBuf>,
    /// The first part of every resource name; the listener group's name follows it.
    #[arg(long, default_value = "kafka-gateway")]
    name: String,
    /// Turn PROXY protocol v2 on at the load balancer (on anyway when every listener group requires it;
    /// refused when one does not).
    #[arg(long)]
    proxy_protocol: bool,
}

fn parse_broker(s: &str) -> Result<(i32, Option<String>), String> {
    let (id, rack) = match s.split_once(':') {
        Some((id, rack)) => (id, Some(rack.to_owned())),
        None => (s, None),
    };
    let id = id.parse::<i32>().ok().filter(|&n| n >= 0).ok_or_else(|| format!("'{id}' is not a node id"))?;
    Ok((id, rack))
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

/// How long `check --admin` waits for a running gateway's answer.
const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Check { admin: Some(addr), .. } = &cli.command {
        init_tracing(cli.log_format.unwrap_or_default());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        return report(runtime.block_on(check::live(addr, ADMIN_TIMEOUT)));
    }
    let args = match &cli.command {
        Command::Run(args) | Command::Health(args) => args,
        Command::Check { config, .. } | Command::Validate { config, .. } | Command::Replay { config, .. } => config,
        Command::Plan(plan) => &plan.config,
    };
    let config = match Config::load(args.config.as_deref(), &args.overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kafka-gateway: configuration refused: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Certificates and keys are part of the configuration: one that does not load is refused
    // before anything listens or dials.
    if let Err(e) = load_tls(&config) {
        eprintln!("kafka-gateway: configuration refused: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    init_tracing(cli.log_format.unwrap_or(config.log_format));
    let source = lifecycle::Source { file: args.config.clone(), overrides: args.overrides.clone() };
    let runtime = kafka_gateway::runtime::build(&config).expect("a tokio runtime");
    runtime.block_on(async move {
        match cli.command {
            Command::Run(_) => run(config, source).await,
            Command::Check { .. } => report(check::check(&config).await),
            Command::Validate { brokers, .. } if brokers.is_empty() => {
                check::access(&config).iter().for_each(|line| println!("{line}"));
                println!("ok: configuration valid ({} listener group(s))", config.groups.len());
                ExitCode::SUCCESS
            }
            Command::Validate { brokers, .. } => report(check::plan(&config, &brokers)),
            Command::Plan(args) => plan(&config, args).await,
            Command::Replay { group, paths, .. } => replay(&config, group.as_deref(), &paths),
            Command::Health(_) => match check::health(&config).await {
                Ok(answer) => {
                    println!("ok: {answer}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("unhealthy: {e}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}

/// Log lines on stderr, at `RUST_LOG`'s levels (default info), as text or JSON.
fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        // Colours only for people: log collectors get plain lines.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // One object per line: the event's fields at the top level, the connection's span (group,
        // target, client) under "span".
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
}

fn replay(config: &Config, group: Option<&str>, paths: &[PathBuf]) -> ExitCode {
    let Some(group) = config.groups.iter().find(|g| group.is_none_or(|name| g.name == name)) else {
        eprintln!("kafka-gateway: no listener group {}", group.unwrap_or_default());
        return ExitCode::from(EXIT_CONFIG);
    };
    let cases = match fixture::find(paths) {
        Ok(cases) if !cases.is_empty() => cases,
        Ok(_) => {
            eprintln!(
                "kafka-gateway: no cases under {}",
                paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("kafka-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for path in &cases {
        match fixture::Case::load(path) {
            Ok(case) => {
                let report = fixture::replay(&case, group);
                print!("{}", report.render());
                if report.passed { passed += 1 } else { failed += 1 }
            }
            Err(e) => {
                println!(
                    "FAIL {}
    {e}",
                    path.display()
                );
                failed += 1;
            }
        }
    }
    println!("{} cases: {passed} passed, {failed} failed (listener group {})", passed + failed, group.name);
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// `plan`: the brokers from the command line, a running gateway or the live cluster, then what to
/// build around the gateway for them.
async fn plan(config: &Config, args: PlanArgs) -> ExitCode {
    let report = if !args.brokers.is_empty() {
        check::plan(config, &args.brokers)
    } else if let Some(addr) = &args.admin {
        check::live(addr, ADMIN_TIMEOUT).await
    } else {
        check::check(config).await
    };
    if !report.is_ok() {
        eprint!("{}", report.render());
        eprintln!("kafka-gateway: no plan: the brokers above have problems");
        return ExitCode::FAILURE;
    }
    let previous = match &args.only_new {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some((path.display().to_string(), text)),
            Err(e) => {
                eprintln!("kafka-gateway: --only-new {}: {e}", path.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => None,
    };
    let options =
        plan::Options { cloud: args.cloud, format: args.format, name: args.name, proxy_protocol: args.proxy_protocol };
    match plan::Plan::build(config, &report, options, previous.as_ref().map(|(p, t)| (p.as_str(), t.as_str()))) {
        Ok(plan) => {
            print!("{}", plan.render());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kafka-gateway: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn load_tls(config: &Config) -> Result<(), TlsError> {
    Link::load(config)?;
    for group in &config.groups {
        if let Some(files) = &group.tls {
            Acceptor::load(files, &format!("listeners.{}.tls", group.name))?;
        }
    }
    Ok(())
}

fn report(report: kafka_gateway::report::Report) -> ExitCode {
    print!("{}", report.render());
    if report.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

async fn run(config: Config, source: lifecycle::Source) -> ExitCode {
    // Before any port opens: from here on no signal kills the gateway unannounced.
    let signals = match lifecycle::Signals::register() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("kafka-gateway: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Without it, jemalloc purges only when a thread allocates or frees, so an idle gateway would
    // keep a burst's pages.
    #[cfg(target_os = "linux")]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!("jemalloc's background purging is off ({e}): memory freed after a burst returns later");
    }
    // Every client connection costs two descriptors (client and upstream side).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!("open-file limit {limit}: room for about {} client connections", limit / 2),
        Err(e) => tracing::warn!("could not raise the open-file limit: {e}"),
    }
    let admin_bind = config.admin.bind;
    let gateway = match Gateway::new(config) {
        Ok(gateway) => gateway,
        Err(e) => {
            eprintln!("kafka-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The admin endpoint first, so that it says "starting" while the cluster is reached.
    let _admin = match admin_bind {
        Some(bind) => match admin::serve(bind, Arc::clone(&gateway) as Arc<dyn Observe>).await {
            Ok(admin) => Some(admin),
            Err(e) => {
                eprintln!("kafka-gateway: cannot listen on {bind} (admin.bind): {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    match gateway.open().await {
        Ok(()) => lifecycle::serve(gateway, signals, source).await,
        Err(e) => {
            eprintln!("kafka-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
