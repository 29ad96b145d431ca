//! The `semantic` binary: argv and env to config, tracing, signals, and wiring the crates together.
//! The only place that reads the environment and the only crate that uses `anyhow`.

mod agents_cli;
mod agents_move;
mod bench_cli;
mod cli;
mod encryption;
mod generate;
mod http_server;
mod models_cli;
mod perplexity;
mod preflight;
mod scenario_cli;
mod serve;
mod stores;

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn init_tracing() {
    let filter = EnvFilter::try_from_env("SEMANTIC_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,llama_cpp_2=warn,llama-cpp-2=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    init_tracing();
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
