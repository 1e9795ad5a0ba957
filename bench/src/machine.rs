//! What the figures were measured on: kernel, CPU, cores, memory and toolchains, so a
//! reader can tell whether two result files are comparable.

use std::process::Command;

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub kernel: String,
    pub cpu_model: String,
    pub cores: usize,
    pub memory_mib: u64,
    pub rustc: String,
    pub rustc_nightly: String,
    pub nft: String,
    pub iptables: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
            cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_mib: field(&meminfo, "MemTotal")
                .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kib| kib / 1024),
            rustc: version(Command::new("rustc").arg("--version")),
            rustc_nightly: version(Command::new("rustc").args(["+nightly", "--version"])),
            nft: version(Command::new("nft").arg("--version")),
            iptables: version(Command::new("iptables-legacy").arg("--version")),
        }
    }
}

/// The value of the first `name: value` line.
fn field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == name).map(|(_, v)| v.trim().to_string()))
}

fn version(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "not installed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_colon_separated_fields() {
        let text = "processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\nMemTotal:       24683012 kB\n";
        assert_eq!(field(text, "model name").as_deref(), Some("Some CPU @ 2.0GHz"));
        assert_eq!(field(text, "MemTotal").as_deref(), Some("24683012 kB"));
        assert_eq!(field(text, "missing"), None);
    }
}
