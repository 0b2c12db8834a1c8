//! The `stomp-relay` binary.

fn main() {
    println!("stomp-relay {}", env!("CARGO_PKG_VERSION"));
}
