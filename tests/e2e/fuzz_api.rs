//! Fuzzing the agent API as a black box: a real agent in a network namespace, and thousands
//! of connections to its Unix socket carrying random and mutated request lines — valid
//! requests from docs/api.md with damaged bytes or fields, random JSON, random bytes,
//! invalid UTF-8, deep nesting, huge lines (one above the 64 MiB limit), lines without a
//! newline, several lines at once, half-closed and empty connections.
//!
//! For every connection: the agent answers with JSON lines that all carry `"api": 1` and a
//! documented `type`, the last one `ok` or `error`; an error has a documented code and a
//! non-empty one-line message; a connection that sends nothing is closed without an answer.
//! Afterwards the agent is still running and `ztctl status` works.
//!
//! Bounded for CI: `ZT_FUZZ_CONNECTIONS` connections (default 10,000), stopping early after
//! `ZT_FUZZ_SECONDS` (default 15). `ZT_FUZZ_SEED` replays a run (the seed is printed).

mod common;

use std::{
    collections::BTreeMap,
    io::{ErrorKind, Read, Write},
    net::Shutdown,
    os::unix::net::UnixStream,
    path::Path,
    time::{Duration, Instant},
};

use common::{AgentNet, server_policy};
use serde_json::{Value, json};
use zt_tests::rng::Rng;
use zt_tests::skip_unless_privileged;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

const MAX_REQUEST_BYTES: usize = 64 << 20;
const CODES: &[&str] = &["permission-denied", "unsupported-version", "bad-request", "rejected", "not-found", "failed"];
const TYPES: &[&str] = &["ok", "error", "flow", "lost"];

const POLICY_TEXT: &str = "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: fuzz}\nspec:\n  selector: {app: server}\n  ingress:\n    - from: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 8080}]\n";

/// Valid requests of every documented command (docs/api.md). State-changing ones are kept
/// harmless: pushes are dry runs or push the same test policy, quarantine uses a
/// documentation address.
fn valid_requests() -> Vec<Value> {
    vec![
        json!({"api": 1, "command": "status"}),
        json!({"api": 1, "command": "endpoint-list"}),
        json!({"api": 1, "command": "identity-list"}),
        json!({"api": 1, "command": "policy-get"}),
        json!({"api": 1, "command": "policy-get", "name": "fuzz"}),
        json!({"api": 1, "command": "policy-history"}),
        json!({"api": 1, "command": "policy-apply", "sources": [{"name": "fuzz.yaml", "text": POLICY_TEXT}], "dry_run": true}),
        json!({"api": 1, "command": "policy-apply", "sources": [{"name": "fuzz.yaml", "text": POLICY_TEXT}], "dry_run": false}),
        json!({"api": 1, "command": "policy-diff", "sources": [{"name": "fuzz.yaml", "text": POLICY_TEXT}]}),
        json!({"api": 1, "command": "policy-delete", "name": "nosuch", "dry_run": true}),
        json!({"api": 1, "command": "policy-rollback", "revision": 1}),
        json!({"api": 1, "command": "explain", "from": "198.51.100.1", "to": "198.51.100.2", "protocol": "tcp", "port": 80}),
        json!({"api": 1, "command": "explain", "from": "2001:db8::1", "to": "2001:db8::2", "protocol": "icmpv6", "direction": "egress"}),
        json!({"api": 1, "command": "flows", "filter": {"verdict": "denied", "from": {"cidr": "10.0.0.0/8"}, "port": 80}, "follow": false}),
        json!({"api": 1, "command": "flows", "filter": {"to": {"labels": {"app": "server"}}, "since_seconds": 60}, "follow": false}),
        json!({"api": 1, "command": "quarantine-list"}),
        json!({"api": 1, "command": "quarantine-add", "ip": "192.0.2.77", "ttl_seconds": 1}),
        json!({"api": 1, "command": "quarantine-release", "ip": "192.0.2.77"}),
    ]
}

/// A random JSON value, `depth` levels deep at most.
fn random_value(r: &mut Rng, depth: usize) -> Value {
    match r.below(if depth == 0 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => Value::Bool(r.chance(50)),
        2 => json!(r.u64() as i64),
        3 => json!((r.u64() % 1_000_000) as f64 / 7.0),
        4 => Value::String(random_string(r)),
        5 => json!(r.u64()),
        6 | 7 => Value::Array((0..r.below(4)).map(|_| random_value(r, depth - 1)).collect()),
        _ => Value::Object((0..r.below(4)).map(|_| (random_string(r), random_value(r, depth - 1))).collect()),
    }
}

fn random_string(r: &mut Rng) -> String {
    const PARTS: &[&str] = &[
        "status",
        "policy-apply",
        "flows",
        "api",
        "command",
        "sources",
        "name",
        "text",
        "dry_run",
        "ip",
        "follow",
        "filter",
        "a",
        "",
        " ",
        "\n",
        "\u{0}",
        "é",
        "😀",
        "\u{202e}",
        "\\",
        "\"",
        "192.0.2.1",
        "::",
        "-1",
        "99999999999999999999",
    ];
    (0..r.below(5)).map(|_| PARTS[r.below(PARTS.len())]).collect()
}

/// A valid request with some fields damaged: wrong types, other values, removed or added
/// fields, another version.
fn mutate_fields(r: &mut Rng, mut v: Value) -> Value {
    let Value::Object(map) = &mut v else { return v };
    for _ in 0..1 + r.below(3) {
        let keys: Vec<String> = map.keys().cloned().collect();
        match r.below(6) {
            0 if !keys.is_empty() => {
                let k = &keys[r.below(keys.len())];
                map.insert(k.clone(), random_value(r, 3));
            }
            1 if !keys.is_empty() => {
                let k = &keys[r.below(keys.len())];
                map.remove(k);
            }
            2 => {
                map.insert(random_string(r), random_value(r, 3));
            }
            3 => {
                let api = [json!(0), json!(2), json!("1"), json!(1.0), json!(-1), json!(null), json!(u64::MAX)];
                map.insert("api".into(), api[r.below(api.len())].clone());
            }
            4 => {
                map.insert("command".into(), Value::String(random_string(r)));
            }
            _ => {
                // A policy text of random YAML-ish content.
                if let Some(Value::Array(sources)) = map.get_mut("sources")
                    && let Some(Value::Object(s)) = sources.first_mut()
                {
                    let text: String = POLICY_TEXT
                        .chars()
                        .map(|c| if r.chance(3) { ['\n', ':', '{', '-', 'é', '\u{0}', ' '][r.below(7)] } else { c })
                        .collect();
                    s.insert("text".into(), Value::String(text));
                    s.insert("name".into(), Value::String(random_string(r)));
                }
            }
        }
    }
    v
}

/// Byte-level damage; the result may not be UTF-8.
fn mutate_bytes(r: &mut Rng, line: &mut Vec<u8>) {
    for _ in 0..1 + r.below(4) {
        let len = line.len();
        if len == 0 {
            line.extend(r.bytes(4));
            continue;
        }
        match r.below(5) {
            0 => {
                let at = r.below(len);
                line[at] ^= 1 << r.below(8);
            }
            1 => {
                let at = r.below(len);
                line[at] = r.u64() as u8;
            }
            2 => {
                let at = r.below(len);
                let n = (1 + r.below(8)).min(len - at);
                line.drain(at..at + n);
            }
            3 => {
                let at = r.below(len + 1);
                let junk =
                    [b"\"".as_slice(), b"{", b"}", b"[", b"\\", b"\xff\xfe", b"\xc3", b"\n", b"\0", b",", b"1e999"];
                let j = junk[r.below(junk.len())];
                line.splice(at..at, j.iter().copied());
            }
            _ => line.truncate(r.below(len + 1)),
        }
    }
}

/// How a connection is used.
enum Send {
    /// Write the bytes, then half-close the write side.
    HalfClose(Vec<u8>),
    /// Write the bytes (which end in a newline) and keep the connection open.
    Line(Vec<u8>),
    /// Connect and close without sending anything.
    Nothing,
}

fn generate(r: &mut Rng, valid: &[Value]) -> (&'static str, Send) {
    let pick = |r: &mut Rng| valid[r.below(valid.len())].clone();
    let with_newline = |mut b: Vec<u8>| {
        b.push(b'\n');
        b
    };
    match r.below(100) {
        0..=14 => ("valid", Send::Line(with_newline(pick(r).to_string().into_bytes()))),
        15..=39 => {
            let v = pick(r);
            ("mutated-fields", Send::Line(with_newline(mutate_fields(r, v).to_string().into_bytes())))
        }
        40..=59 => {
            let mut b = pick(r).to_string().into_bytes();
            mutate_bytes(r, &mut b);
            ("mutated-bytes", Send::Line(with_newline(b)))
        }
        60..=69 => ("random-json", Send::Line(with_newline(random_value(r, 4).to_string().into_bytes()))),
        70..=77 => {
            let n = r.below(300);
            let mut b = r.bytes(n);
            b.retain(|&c| c != b'\n');
            ("random-bytes", Send::Line(with_newline(b)))
        }
        78..=83 => {
            // No newline at all: the agent answers when the write side closes.
            let mut b = pick(r).to_string().into_bytes();
            if r.chance(50) {
                mutate_bytes(r, &mut b);
                b.retain(|&c| c != b'\n');
            }
            ("no-newline-half-closed", Send::HalfClose(b))
        }
        84..=87 => {
            // Several lines at once: only the first is a request.
            let mut b = Vec::new();
            for _ in 0..2 + r.below(3) {
                b.extend(pick(r).to_string().into_bytes());
                b.push(b'\n');
            }
            ("several-lines", Send::Line(b))
        }
        88..=90 => {
            let depth = 1 + r.below(200_000);
            let mut b = Vec::with_capacity(2 * depth + 1);
            b.extend(std::iter::repeat_n(if r.chance(50) { b'[' } else { b'{' }, depth));
            ("deep-nesting", Send::Line(with_newline(b)))
        }
        91..=92 => {
            // A big but allowed line: an unknown field is ignored.
            let n = 1 + r.below(4 << 20);
            let mut v = pick(r);
            v["padding"] = Value::String("x".repeat(n));
            ("huge-line", Send::Line(with_newline(v.to_string().into_bytes())))
        }
        93..=95 => ("empty", Send::Nothing),
        96..=97 => ("empty-line", Send::Line(b"\n".to_vec())),
        _ => ("whitespace", Send::Line(with_newline(b" \t\r ".to_vec()))),
    }
}

/// Reads the agent's answer (until it closes, or until a `flows --follow` stream has
/// answered with at least its first line or gone quiet).
fn read_answer(stream: &mut UnixStream, follow: bool) -> std::io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(if follow { Duration::from_millis(300) } else { Duration::from_secs(30) }))?;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if follow && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(out),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

/// Checks one answer; returns what is wrong with it.
fn check_answer(sent: &[u8], answer: &[u8], follow: bool, t: &mut Tally) -> Result<(), String> {
    let sent_nothing = sent.is_empty();
    if sent_nothing {
        return if answer.is_empty() { Ok(()) } else { Err("answered a connection that sent nothing".into()) };
    }
    let text = std::str::from_utf8(answer).map_err(|e| format!("answer is not UTF-8: {e}"))?;
    if text.is_empty() {
        return if follow { Ok(()) } else { Err("closed without an answer".into()) };
    }
    if !text.ends_with('\n') && !follow {
        return Err("the last answer line has no newline".into());
    }
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("answer line {i} is not JSON ({e}): {line:.200}"))?;
        if v["api"] != json!(1) {
            return Err(format!("answer line without \"api\": 1: {line:.200}"));
        }
        let ty = v["type"].as_str().unwrap_or("");
        if !TYPES.contains(&ty) {
            return Err(format!("answer line of undocumented type: {line:.200}"));
        }
        let last = i + 1 == lines.len();
        if !last && matches!(ty, "ok" | "error") {
            return Err(format!("a final line ({ty}) is followed by more: {text:.300}"));
        }
        if last && !follow && !matches!(ty, "ok" | "error") {
            return Err(format!("the answer does not end with ok or error: {line:.200}"));
        }
        if ty == "error" {
            let code = v["error"]["code"].as_str().unwrap_or("");
            let message = v["error"]["message"].as_str().unwrap_or("");
            if !CODES.contains(&code) {
                return Err(format!("undocumented error code: {line:.300}"));
            }
            if message.trim().is_empty() {
                return Err(format!("empty error message: {line:.300}"));
            }
            if message.contains(['\n', '\r']) {
                return Err(format!("error message is not one line: {line:.300}"));
            }
            *t.codes.entry(code.to_string()).or_default() += 1;
            if let Some(problems) = v["error"]["problems"].as_array()
                && problems.iter().any(|p| p.as_str().is_some_and(|p| p.contains(['\n', '\r'])))
            {
                return Err(format!("a rejected push's problem is not one line: {line:.300}"));
            }
        } else if last {
            *t.codes.entry(ty.to_string()).or_default() += 1;
        }
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    connections: u64,
    bytes_sent: u64,
    by_kind: BTreeMap<&'static str, u64>,
    codes: BTreeMap<String, u64>,
    problems: Vec<String>,
}

/// One connection: send, read the answer, check it.
fn exchange(socket: &Path, kind: &'static str, send: Send, t: &mut Tally) {
    t.connections += 1;
    *t.by_kind.entry(kind).or_default() += 1;
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            t.problems.push(format!("{kind}: cannot connect: {e}"));
            return;
        }
    };
    let (bytes, half_close) = match &send {
        Send::HalfClose(b) => (b.as_slice(), true),
        Send::Line(b) => (b.as_slice(), false),
        Send::Nothing => (&[][..], true),
    };
    let follow = bytes.windows(6).any(|w| w == b"follow");
    t.bytes_sent += bytes.len() as u64;
    // The agent may answer and close before it read everything (a line over the limit):
    // a broken pipe then is fine, the answer is what counts.
    if let Err(e) = stream.write_all(bytes)
        && !matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)
    {
        t.problems.push(format!("{kind}: write failed: {e}"));
        return;
    }
    if half_close {
        let _ = stream.shutdown(Shutdown::Write);
    }
    match read_answer(&mut stream, follow) {
        Ok(answer) => {
            if let Err(e) = check_answer(bytes, &answer, follow, t) {
                let sent = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
                t.problems.push(format!("{kind}: {e} (sent {} bytes: {sent:?})", bytes.len()));
            }
        }
        Err(e) => t.problems.push(format!("{kind}: reading the answer failed: {e}")),
    }
}

#[test]
fn the_api_answers_random_and_mutated_requests_and_keeps_serving() {
    skip_unless_privileged!();
    let seed = env_u64("ZT_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let max = env_u64("ZT_FUZZ_CONNECTIONS").unwrap_or(10_000);
    let budget = Duration::from_secs(env_u64("ZT_FUZZ_SECONDS").unwrap_or(15));
    println!("api fuzz: seed {seed} (replay with ZT_FUZZ_SEED={seed}), up to {max} connections or {budget:?}");
    let ingress = "    - from: [{selector: {app: client}}]\n      ports: [{protocol: TCP, port: 8080}]\n";
    let mut a = AgentNet::start(&server_policy("fuzz", ingress, ""), &[]);
    let socket = a.socket();
    let valid = valid_requests();
    let mut r = Rng(seed);
    let mut t = Tally::default();
    let start = Instant::now();

    // Over the limit, once: the agent reads 64 MiB, answers bad-request and closes.
    let mut over = b"{\"api\":1,\"command\":\"status\",\"padding\":\"".to_vec();
    over.resize(MAX_REQUEST_BYTES + 16, b'x');
    over.extend(b"\"}\n");
    exchange(&socket, "over-the-limit", Send::Line(over), &mut t);
    if t.codes.get("bad-request") != Some(&1) {
        t.problems.push(format!("a request over 64 MiB was not refused with bad-request: {:?}", t.codes));
    }

    let mut last_report = Instant::now();
    while t.connections < max && start.elapsed() < budget && t.problems.len() < 20 {
        let (kind, send) = generate(&mut r, &valid);
        exchange(&socket, kind, send, &mut t);
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            println!(
                "api fuzz: {} connections, {:.0}/s",
                t.connections,
                t.connections as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "api fuzz: {} connections, {} MB sent in {secs:.1}s ({:.0} connections/s); by kind {:?}; answers {:?}",
        t.connections,
        t.bytes_sent >> 20,
        t.connections as f64 / secs,
        t.by_kind,
        t.codes
    );

    // Still serving, still alive.
    let status = a.ztctl(&["status"]);
    assert!(
        status.status.success(),
        "ztctl status after the fuzz: {}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(a.agent().try_status().expect("agent status").is_none(), "the agent exited during the fuzz");
    assert!(t.problems.is_empty(), "seed {seed}: {} problems:\n{}", t.problems.len(), t.problems.join("\n"));
}
