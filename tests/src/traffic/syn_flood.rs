//! Bounded TCP SYN floods with `hping3`, the attacker of the rate-limit tests: SYNs to one
//! IPv4 port, from the sender's own address (a real client opening connections as fast as
//! it may) or from random spoofed sources (`--rand-source`).
//!
//! Every flood is bounded twice, in packets (`-c`) and in seconds (`timeout -s INT`, after
//! which hping3 prints its statistics and exits), and runs inside the attacker's namespace;
//! spoofed packets reach only the link to the victim's namespace.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns::Netns;

/// How a flood's sources are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sources {
    /// The sender's own address, a new source port per SYN: one client, many connections.
    Own,
    /// A random IPv4 source per SYN (`--rand-source`): a spoofed flood.
    Spoofed,
}

/// What a flood did.
#[derive(Debug, Clone, Copy)]
pub struct SynFlood {
    /// SYNs hping3 reports as transmitted.
    pub sent: u64,
    /// Wall time of the flood, from the start of hping3 to its exit.
    pub elapsed: Duration,
}

/// Sends at most `count` SYNs, one every `interval` (microsecond resolution), from `ns` to
/// `dst`, for at most `seconds`.
pub fn syn_flood(
    ns: &Netns,
    dst: SocketAddrV4,
    sources: Sources,
    count: u64,
    interval: Duration,
    seconds: u64,
) -> Result<SynFlood> {
    let mut args: Vec<String> = vec![
        "-s".into(),
        "INT".into(),
        seconds.to_string(),
        "hping3".into(),
        "-S".into(),
        "-q".into(),
        "-p".into(),
        dst.port().to_string(),
        "-c".into(),
        count.to_string(),
        "-i".into(),
        format!("u{}", interval.as_micros().max(1)),
    ];
    if sources == Sources::Spoofed {
        args.push("--rand-source".into());
    }
    args.push(dst.ip().to_string());
    let start = Instant::now();
    // hping3 waits a moment for replies after the last SYN; the outer deadline covers it.
    let out = ns.exec_timeout("timeout", &args, Duration::from_secs(seconds + 10))?;
    let elapsed = start.elapsed();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let sent = transmitted(&text).ok_or_else(|| {
        Error::io(format!("hping3 reported no statistics: {text}"), std::io::ErrorKind::InvalidData.into())
    })?;
    Ok(SynFlood { sent, elapsed })
}

/// `N packets transmitted` from hping3's statistics.
fn transmitted(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::transmitted;

    #[test]
    fn the_transmitted_count_is_read_from_the_statistics() {
        let text = "HPING 198.18.0.2 (veth 198.18.0.2): S set, 40 headers + 0 data bytes\n\n--- 198.18.0.2 hping \
                    statistic ---\n3000 packets transmitted, 12 packets received, 100% packet loss\n";
        assert_eq!(transmitted(text), Some(3000));
        assert_eq!(transmitted("hping3: command not found"), None);
    }
}
