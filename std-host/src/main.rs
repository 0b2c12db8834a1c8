//! The `stomp-relay` binary: parse the configuration, run the server until SIGINT/SIGTERM.

use stomp_relay::Config;

fn main() {
    let config = match Config::from_env_and_args() {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            if code == 0 {
                println!("{e}");
            } else {
                eprintln!("{e}");
            }
            std::process::exit(code);
        }
    };
    println!(
        "stomp-relay {} {:?}",
        env!("CARGO_PKG_VERSION"),
        config.listen
    );
}
