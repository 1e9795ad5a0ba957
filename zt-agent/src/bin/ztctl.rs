//! `ztctl`: the operator's command line for a running zt agent. Thin: the commands live in
//! `zt_agent::cli`, the wire protocol in `zt_agent::api`.

use std::process::ExitCode;

fn main() -> ExitCode {
    zt_agent::cli::main()
}
