//! `ae`, the always-encrypted command-line tool (placeholder until its own issue).
#![allow(clippy::print_stdout)]
fn main() {
    println!("ae: the command-line tool is not built yet.");
}
