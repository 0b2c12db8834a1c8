//! The `stomp-relay` binary: parse the configuration, serve until SIGINT/SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use stomp_relay::{Config, Server};

fn main() -> ExitCode {
    let config = match Config::from_env_and_args() {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            if code == 0 {
                println!("{e}");
            } else {
                eprintln!("{e}");
            }
            return ExitCode::from(code as u8);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.worker_threads {
        builder.worker_threads(n.get());
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let server = match Server::builder(config).bind().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        match server.run_until_signal().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        }
    })
}
