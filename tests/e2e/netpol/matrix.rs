//! The reachability matrix: every source (the nine pods and the outside host) to every pod
//! on every served port and protocol over IPv4 and IPv6, probed in parallel with real TCP connections and UDP
//! round trips, and compared with what the case expects.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use zt_tests::{Family, tcp_connect, udp_roundtrip};

use super::cluster::{Cluster, OUTSIDE, SERVED_PORTS, all_pods};

/// A first probe waits this long for an answer; a blocked probe costs exactly this.
const PROBE: Duration = Duration::from_millis(1000);
/// A probe that was blocked but should have passed is tried once more with this much
/// patience, so a slow machine cannot fake a drop.
const RETRY: Duration = Duration::from_secs(4);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// A served port, over one address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port {
    pub proto: Proto,
    pub number: u16,
    pub family: Family,
}

impl Port {
    pub fn v4(self) -> bool {
        self.family == Family::V4
    }

    pub fn tcp(self) -> bool {
        self.proto == Proto::Tcp
    }

    pub fn udp(self) -> bool {
        self.proto == Proto::Udp
    }

    fn label(self) -> String {
        let family = if self.v4() { "v4" } else { "v6" };
        format!("{}/{} {family}", if self.tcp() { "TCP" } else { "UDP" }, self.number)
    }
}

/// Every probed port: TCP 80, TCP 81, UDP 80, UDP 81, over IPv4 then IPv6.
pub fn ports() -> Vec<Port> {
    let mut ports = Vec::new();
    for family in Family::ALL {
        for proto in [Proto::Tcp, Proto::Udp] {
            ports.extend(SERVED_PORTS.map(|number| Port { proto, number, family }));
        }
    }
    ports
}

/// The sources: every pod, then the outside host.
pub fn sources() -> Vec<String> {
    let mut sources = all_pods();
    sources.push(OUTSIDE.to_string());
    sources
}

/// One verdict per (source, destination pod, port), in `sources()` x `all_pods()` x
/// `ports()` order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matrix(Vec<bool>);

impl Matrix {
    /// What `expect(from, to, port)` says for every cell, except that a pod always reaches
    /// itself: that traffic never leaves the pod's network namespace, so no policy judges
    /// it (upstream's conformance suite allows loopback the same way).
    pub fn expected(expect: &dyn Fn(&str, &str, Port) -> bool) -> Matrix {
        Matrix(cells().iter().map(|(from, to, port)| from == to || expect(from, to, *port)).collect())
    }

    /// Probes every cell at once. Cells that came out blocked where `expected` says they
    /// pass are probed again, patiently.
    pub fn observe(cluster: &Cluster, expected: &Matrix) -> Matrix {
        let cells = cells();
        let first = probe_all(cluster, &cells, PROBE, &|_| true);
        let retry: Vec<bool> = first.iter().zip(&expected.0).map(|(got, expected)| !got && *expected).collect();
        if !retry.contains(&true) {
            return Matrix(first);
        }
        let again = probe_all(cluster, &cells, RETRY, &|i| retry[i]);
        Matrix(first.iter().zip(again).map(|(first, again)| *first || again).collect())
    }

    /// The cells where `self` and `other` differ, as `x/a -> y/b TCP/80: expected ..., got ...`.
    pub fn differences(&self, observed: &Matrix) -> Vec<String> {
        let word = |passed: bool| if passed { "allowed" } else { "blocked" };
        cells()
            .iter()
            .zip(self.0.iter().zip(&observed.0))
            .filter(|(_, (e, o))| e != o)
            .map(|((from, to, port), (e, o))| {
                format!("{from} -> {to} {}: expected {}, got {}", port.label(), word(*e), word(*o))
            })
            .collect()
    }

    /// One table per port, sources down, destinations across: `.` passes, `X` is blocked,
    /// and a cell that differs from `expected` shows what was observed in brackets.
    pub fn render(&self, expected: &Matrix) -> String {
        let (sources, pods, ports) = (sources(), all_pods(), ports());
        let mut text = String::new();
        for (k, port) in ports.iter().enumerate() {
            let _ = write!(text, "\n{:<12}", port.label());
            for to in &pods {
                let _ = write!(text, "{to:<6}");
            }
            text.push('\n');
            for (i, from) in sources.iter().enumerate() {
                let _ = write!(text, "{from:<12}");
                for j in 0..pods.len() {
                    let index = (i * pods.len() + j) * ports.len() + k;
                    let mark = |passed: bool| if passed { "." } else { "X" };
                    let cell = if self.0[index] == expected.0[index] {
                        mark(self.0[index]).to_string()
                    } else {
                        format!("[{}]", mark(self.0[index]))
                    };
                    let _ = write!(text, "{cell:<6}");
                }
                text.push('\n');
            }
        }
        text
    }
}

fn cells() -> Vec<(String, String, Port)> {
    let mut cells = Vec::new();
    for from in sources() {
        for to in all_pods() {
            for port in ports() {
                cells.push((from.clone(), to.clone(), port));
            }
        }
    }
    cells
}

/// Probes the cells `which` picks, each on its own thread; the others read `false`.
fn probe_all(
    cluster: &Cluster,
    cells: &[(String, String, Port)],
    timeout: Duration,
    which: &(dyn Fn(usize) -> bool + Sync),
) -> Vec<bool> {
    thread::scope(|scope| {
        let probes: Vec<_> = cells
            .iter()
            .enumerate()
            .map(|(i, (from, to, port))| {
                let chosen = which(i);
                let ns = &cluster.workload(from).host.ns;
                let addr = SocketAddr::new(cluster.ip_of(to, port.family), port.number);
                scope.spawn(move || {
                    chosen
                        && match port.proto {
                            Proto::Tcp => tcp_connect(ns, addr, timeout).is_ok(),
                            Proto::Udp => udp_roundtrip(ns, addr, b"netpol probe", timeout),
                        }
                })
            })
            .collect();
        probes.into_iter().map(|probe| probe.join().expect("probe thread")).collect()
    })
}
