//! Command line: `serve`, `check`, `events`, `demo` and `simulate-appwrite`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::telemetry::{self, LogFormat};

#[derive(Parser, Debug)]
#[command(
    name = "revokd",
    version,
    about = "Turns signed identity events into Appwrite session revocations"
)]
pub struct Cli {
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Receive events and deliver revocations until SIGTERM.
    Serve {
        /// Config file (TOML).
        #[arg(long, env = "REVOKD_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file and print each rule as understood.
    Check {
        /// Config file (TOML).
        #[arg(long, env = "REVOKD_CONFIG")]
        config: PathBuf,
        /// Also call each target to test its endpoint, API key and scopes.
        #[arg(long)]
        targets: bool,
    },
    /// List stored events, show their jobs and attempts, retry dead jobs.
    Events(crate::inspect::EventsArgs),
    /// Run revokd and an Appwrite simulator on loopback and send sample events.
    Demo,
    /// Run only the Appwrite simulator.
    SimulateAppwrite(crate::simulator::SimulateArgs),
}

/// Parses the command line, runs the command and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config } => {
            telemetry::init(cli.log_format);
            let config = match Config::load(&config) {
                Ok(config) => config,
                Err(err) => {
                    tracing::error!("invalid config: {err}");
                    return ExitCode::FAILURE;
                }
            };
            match crate::app::serve(config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!("revokd stopped: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config, targets } => {
            let config = match Config::load(&config) {
                Ok(config) => config,
                Err(err) => {
                    eprintln!("error: {err}");
                    return ExitCode::FAILURE;
                }
            };
            crate::check::print_config(&config);
            if targets && !crate::check::probe_targets(&config).await {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Command::Events(args) => {
            // Log lines go to stderr, so stdout carries only the table or JSON.
            telemetry::init_with_writer(cli.log_format, "warn", std::io::stderr);
            crate::inspect::run(args).await
        }
        Command::Demo => {
            // Only what the demo is about: outcome lines and request decisions.
            let filter = "warn,revokd::outcome=info,revokd::request=info";
            telemetry::init_with_writer(cli.log_format, filter, std::io::stdout);
            match crate::demo::run().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("demo failed: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::SimulateAppwrite(args) => {
            telemetry::init(cli.log_format);
            match crate::simulator::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("simulator failed: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
