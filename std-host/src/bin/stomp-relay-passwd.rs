//! `stomp-relay-passwd`: prints an argon2id hash (PHC string) of the password read from
//! standard input, for the `password` of a `--users-file` entry.
//!
//!     echo -n 'correct horse' | stomp-relay-passwd
//!
//! The password is read from stdin (first line, without its line end) rather than taken
//! as an argument, so it never shows in the process list or shell history.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;

fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        eprintln!("usage: echo -n PASSWORD | stomp-relay-passwd   (prints an argon2id hash for --users-file)");
        return ExitCode::from(2);
    }
    let mut line = String::new();
    if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
        eprintln!("error: cannot read the password from stdin: {e}");
        return ExitCode::from(1);
    }
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        eprintln!("error: empty password on stdin");
        return ExitCode::from(2);
    }
    let salt = SaltString::generate(&mut OsRng);
    match Argon2::default().hash_password(password.as_bytes(), &salt) {
        Ok(h) => {
            let _ = writeln!(std::io::stdout(), "{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
