//! `ztctl`: the operator's command line for a running zt agent. Thin: the commands live in
//! the `ztctl` library (this crate's `lib.rs`), the wire protocol and client in `zt_api`.

use std::process::ExitCode;

fn main() -> ExitCode {
    ztctl::main()
}
