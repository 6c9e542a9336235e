//! `cc-engine`: the daemon and its offline commands.
//!
//! ```text
//! cc-engine [--config FILE] [--listen ADDR:PORT] [--state-dir DIR] [--mgmt ADDR:PORT] [--shards N]
//! cc-engine check-config FILE
//! cc-engine agents --state-dir DIR [--config FILE]
//! cc-engine cdrs --state-dir DIR [--since T]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use cc_engine::config::{Config, Shards};

const DEFAULT_CONFIG: &str = "config/cc-engine.toml";

const USAGE: &str = "\
usage:
  cc-engine [--config FILE] [--listen ADDR:PORT] [--state-dir DIR] [--mgmt ADDR:PORT] [--shards N|auto]
      run the engine (default config: config/cc-engine.toml)
  cc-engine check-config FILE
      validate a configuration file; exit 1 naming the key on error
  cc-engine agents --state-dir DIR [--config FILE]
      print agents and their registrations (JSON lines) from the database
      of a stopped engine
  cc-engine cdrs --state-dir DIR [--since T]
      print call detail records (JSON lines) ended at or after T (unix
      seconds or RFC 3339) from the database of a stopped engine
";

/// Command-line errors: the message says what was wrong and exit is 2.
#[derive(Debug)]
struct UsageError(String);

#[derive(Default)]
struct Overrides {
    config: Option<PathBuf>,
    listen: Option<String>,
    state_dir: Option<PathBuf>,
    mgmt: Option<String>,
    shards: Option<String>,
}

fn parse_overrides(args: &[String]) -> Result<Overrides, UsageError> {
    let mut o = Overrides::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next().cloned().ok_or_else(|| UsageError(format!("{name} needs a value")))
        };
        match a.as_str() {
            "--config" | "-c" => o.config = Some(PathBuf::from(val(a)?)),
            "--listen" => o.listen = Some(val(a)?),
            "--state-dir" => o.state_dir = Some(PathBuf::from(val(a)?)),
            "--mgmt" => o.mgmt = Some(val(a)?),
            "--shards" => o.shards = Some(val(a)?),
            other => return Err(UsageError(format!("unknown argument `{other}`"))),
        }
    }
    Ok(o)
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--help" | "-h" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("--version" | "-V") => {
            println!("cc-engine {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("check-config") => match args.get(1) {
            Some(file) if args.len() == 2 => match Config::load(std::path::Path::new(file)) {
                Ok(_) => {
                    println!("{file}: ok");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            },
            _ => usage_error("check-config takes exactly one FILE"),
        },
        Some("agents") => agents(&args[1..]),
        Some("cdrs") => cdrs(&args[1..]),
        _ => serve(&args),
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("cc-engine: {msg}\n{USAGE}");
    ExitCode::from(2)
}

fn serve(args: &[String]) -> ExitCode {
    let o = match parse_overrides(args) {
        Ok(o) => o,
        Err(UsageError(m)) => return usage_error(&m),
    };
    let cfg = match load(&o) {
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

fn agents(args: &[String]) -> ExitCode {
    let o = match parse_overrides(args) {
        Ok(o) => o,
        Err(UsageError(m)) => return usage_error(&m),
    };
    let Some(dir) = o.state_dir.clone() else {
        return usage_error("agents needs --state-dir DIR");
    };
    // The config names the agents that have no registration; without it
    // only registered agents are listed.
    let defs: Vec<cc_engine::acd::AgentDef> = match &o.config {
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

fn cdrs(args: &[String]) -> ExitCode {
    let (mut dir, mut since) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--state-dir", Some(v)) => dir = Some(PathBuf::from(v)),
            ("--since", Some(v)) => since = Some(v.clone()),
            (other, _) => return usage_error(&format!("cdrs: unexpected `{other}`")),
        }
    }
    let Some(dir) = dir else {
        return usage_error("cdrs needs --state-dir DIR");
    };
    let since_ms = match since.as_deref().map(cc_engine::acd::parse_since) {
        None => None,
        Some(Ok(ms)) => Some(ms),
        Some(Err(e)) => return usage_error(&format!("--since: {e}")),
    };
    print_json_lines(cc_engine::acd::cdrs_report(&dir, since_ms))
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
