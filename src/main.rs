//! `cc-engine`: the daemon and its offline commands.
//!
//! ```text
//! cc-engine [run] [--config FILE] [--listen ADDR:PORT] [--state-dir DIR] [--mgmt ADDR:PORT|off] [--shards N|auto]
//! cc-engine check-config FILE
//! cc-engine agents --state-dir DIR [--config FILE]
//! cc-engine cdrs --state-dir DIR [--since T]
//! ```
//!
//! `--help` on the command and on every subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use cc_engine::config::{Config, Shards};

const DEFAULT_CONFIG: &str = "config/cc-engine.toml";

/// SIP call-center engine. Without a subcommand it runs the engine.
#[derive(Parser)]
#[command(name = "cc-engine", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: Overrides,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the engine (what cc-engine does without a subcommand).
    Run(Overrides),
    /// Validate a configuration file; exit 1 naming the file and key on error.
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print agents and their registrations (JSON lines) from the database
    /// of a stopped engine.
    Agents {
        /// The engine's state directory (its database).
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        /// The config naming the agents (without it: registered agents only).
        #[arg(short = 'c', long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print call detail records (JSON lines, or CSV): from a running
    /// engine's API with --mgmt and --token, else from the database of a
    /// stopped engine.
    Cdrs {
        /// The engine's state directory (its database).
        #[arg(long, value_name = "DIR", required_unless_present = "mgmt")]
        state_dir: Option<PathBuf>,
        /// Only records ended at or after T (unix seconds or RFC 3339).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// Write CSV (with a header line) instead of JSON lines.
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print the queue log as `epoch|callid|queue|agent|event|data1|data2|data3`
    /// lines: from a running engine's API with --mgmt and --token, else from
    /// the database of a stopped engine.
    QueueLog {
        /// The engine's state directory (its database).
        #[arg(long, value_name = "DIR", required_unless_present = "mgmt")]
        state_dir: Option<PathBuf>,
        /// Only lines at or after T (unix seconds or RFC 3339).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Reading from a running engine's management API.
#[derive(clap::Args, Debug)]
struct ApiArgs {
    /// The management API of a running engine, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL", requires = "token")]
    mgmt: Option<String>,
    /// A viewer or admin bearer token of that API.
    #[arg(long, value_name = "T")]
    token: Option<String>,
}

/// Command-line overrides of the config file's keys.
#[derive(Args, Default)]
struct Overrides {
    /// Configuration file [default: config/cc-engine.toml].
    #[arg(short = 'c', long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// SIP listen address (sip.listen).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// State directory for the database (engine.state_dir).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Management HTTP address, or off (mgmt.listen).
    #[arg(long, value_name = "ADDR:PORT|off")]
    mgmt: Option<String>,
    /// Signalling shards: a count or auto (engine.shards).
    #[arg(long, value_name = "N|auto")]
    shards: Option<String>,
}

/// Loads the file and applies command-line overrides, which are checked as
/// strictly as the file's own keys.
fn load(o: &Overrides) -> Result<Config, String> {
    let path = o.config.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let mut cfg = Config::load(&path).map_err(|e| e.to_string())?;
    if let Some(l) = &o.listen {
        cfg.sip.listen = l.parse().map_err(|_| format!("--listen: `{l}` is not ADDR:PORT"))?;
        if cfg.sip.listen.port() == 0 {
            return Err("--listen: port 0 is not a listening port".into());
        }
    }
    if let Some(d) = &o.state_dir {
        cfg.engine.state_dir = d.clone();
    }
    if let Some(m) = &o.mgmt {
        cfg.mgmt.listen = match m.as_str() {
            "off" => None,
            _ => Some(m.parse().map_err(|_| format!("--mgmt: `{m}` is not ADDR:PORT or off"))?),
        };
    }
    if let Some(s) = &o.shards {
        cfg.engine.shards = match s.as_str() {
            "auto" => Shards::Auto,
            n => match n.parse::<u16>() {
                Ok(n) if (1..=256).contains(&n) => Shards::Count(n),
                _ => return Err(format!("--shards: `{n}` is not auto or 1..=256")),
            },
        };
    }
    Ok(cfg)
}

/// Logging to stderr through a filter the management API can replace at
/// run time (`PUT /v1/log-level`).
fn init_logging(level: &str) {
    use tracing_subscriber::{fmt, prelude::*, reload, EnvFilter};
    // RUST_LOG wins over the config when it parses.
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| EnvFilter::try_new(s).is_ok())
        .unwrap_or_else(|| level.to_string());
    let (spec, filter) = match EnvFilter::try_new(&spec) {
        Ok(f) => (spec, f),
        Err(_) => ("info".to_string(), EnvFilter::new("info")),
    };
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_writer(std::io::stderr).with_target(false))
        .init();
    cc_engine::mgmt::log_level::install(&spec, move |s| {
        let f = EnvFilter::try_new(s).map_err(|e| e.to_string())?;
        handle.reload(f).map_err(|e| e.to_string())
    });
}

fn main() -> ExitCode {
    // clap prints usage errors and exits 2; --help and --version exit 0.
    let cli = Cli::parse();
    match cli.command {
        None => serve(&cli.run),
        Some(Cmd::Run(o)) => serve(&o),
        Some(Cmd::CheckConfig { file }) => match Config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Some(Cmd::Agents { state_dir, config }) => agents(state_dir, config),
        Some(Cmd::Cdrs { state_dir, since, csv, api }) => cdrs(state_dir, since, csv, api),
        Some(Cmd::QueueLog { state_dir, since, api }) => queue_log(state_dir, since, api),
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("cc-engine: {msg}\n(cc-engine --help for usage)");
    ExitCode::from(2)
}

fn serve(o: &Overrides) -> ExitCode {
    let cfg = match load(o) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cc-engine: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&cfg.engine.log_level);
    match cc_engine::shard::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn agents(dir: PathBuf, config: Option<PathBuf>) -> ExitCode {
    // The config names the agents that have no registration; without it
    // only registered agents are listed.
    let defs: Vec<cc_engine::acd::AgentDef> = match &config {
        Some(p) => match Config::load(p) {
            Ok(c) => c
                .agents
                .iter()
                .map(|a| {
                    let mut d = cc_engine::acd::AgentDef::new(a.id.clone(), a.password.clone());
                    d.max_calls = a.max_calls;
                    d.queues = a.queues.clone();
                    d.skills = a.skills.keys().cloned().collect();
                    d
                })
                .collect(),
            Err(e) => {
                eprintln!("cc-engine: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => Vec::new(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    print_json_lines(cc_engine::acd::agents_report(&dir, &defs, now))
}

fn cdrs(dir: Option<PathBuf>, since: Option<String>, csv: bool, api: ApiArgs) -> ExitCode {
    let since_ms = match since.as_deref().map(cc_engine::acd::parse_since) {
        None => None,
        Some(Ok(ms)) => Some(ms),
        Some(Err(e)) => return usage_error(&format!("--since: {e}")),
    };
    let rows = match (&api.mgmt, &api.token, dir) {
        (Some(url), Some(token), _) => {
            cc_engine::mgmt::client::all_cdrs(url, token, since_ms).map_err(|e| e.to_string())
        }
        (_, _, Some(dir)) => cc_engine::acd::cdrs_report(&dir, since_ms).map_err(|e| e.to_string()),
        _ => return usage_error("give --state-dir DIR, or --mgmt URL --token T"),
    };
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cc-engine: {e}");
            return ExitCode::FAILURE;
        }
    };
    if csv {
        print!("{}", cc_engine::mgmt::client::cdrs_csv(&rows));
        ExitCode::SUCCESS
    } else {
        print_json_lines(Ok(rows))
    }
}

fn queue_log(dir: Option<PathBuf>, since: Option<String>, api: ApiArgs) -> ExitCode {
    let since_ms = match since.as_deref().map(cc_engine::acd::parse_since) {
        None => None,
        Some(Ok(ms)) => Some(ms),
        Some(Err(e)) => return usage_error(&format!("--since: {e}")),
    };
    let lines = match (&api.mgmt, &api.token, dir) {
        (Some(url), Some(token), _) => {
            cc_engine::mgmt::client::queue_log(url, token, since_ms).map_err(|e| e.to_string())
        }
        (_, _, Some(dir)) => {
            cc_engine::acd::queue_log_report(&dir, since_ms, usize::MAX).map_err(|e| e.to_string())
        }
        _ => return usage_error("give --state-dir DIR, or --mgmt URL --token T"),
    };
    match lines {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cc-engine: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a report as JSON lines, or its error (exit 1).
fn print_json_lines(report: Result<Vec<serde_json::Value>, cc_engine::acd::StoreError>) -> ExitCode {
    match report {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cc-engine: {e}");
            ExitCode::FAILURE
        }
    }
}
