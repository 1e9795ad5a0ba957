//! Fuzzing the policy parser and compiler: random and mutated `zt/v1` YAML through
//! `policy::parse` and, when a push parses, `policy::compile`.
//!
//! Properties, for every generated push:
//! - nothing panics (parse or compile);
//! - every parse error displays as one non-empty line that names the source file it is
//!   about (the operator sees it verbatim in `ztctl policy apply`);
//! - every compile error displays as one non-empty line (it is about the whole push, so it
//!   names no file).
//!
//! Documents are generated as text, not through a YAML library, so the inputs do not depend
//! on the parser's YAML crate: structurally plausible Endpoint/Policy documents whose fields
//! are randomly valid, wrong-typed, huge, unicode, deeply nested or aliased, then mutated at
//! the byte level (deleted spans, duplicated lines, inserted garbage, truncation).
//!
//! Bounded for CI (`cargo test`): `ZT_FUZZ_DOCS` pushes (default 10,000), stopping early
//! after `ZT_FUZZ_SECONDS` (default 6). `ZT_FUZZ_SEED` replays a run; the seed is printed.
//! `cargo xtask fuzz` runs it with large bounds.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    time::{Duration, Instant},
};

use zt_agent::{
    identity::IdentityAllocator,
    policy::{self, CompileSettings},
};

/// SplitMix64: tiny, seedable, good enough to drive a generator.
struct Rng(u64, usize);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn seed() -> u64 {
    env_u64("ZT_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    })
}

const NAMES: &[&str] = &["web", "api-1", "db.prod", "a", "x-y-z", "", "UPPER", "-bad", "bad-", "ünï", "a b"];
const LABEL_KEYS: &[&str] = &["app", "tier", "team", "k8s.io/name", "a/b/c", "", "reserved:host"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP", "ICMP", "ICMPv6", "tcp", "GRE", "", "TCP "];
const ENTITIES: &[&str] = &["host", "world", "any", "cluster", "HOST", ""];
const ADDRESSES: &[&str] = &[
    "10.0.0.1",
    "10.0.0.0/8",
    "10.0.0.1/8",
    "0.0.0.0/0",
    "::/0",
    "fd00::1",
    "fd00::/64",
    "fd00::1/129",
    "256.0.0.1",
    "10.0.0.0/33",
    "198.18.0.2",
    "::ffff:10.0.0.1",
    "fe80::1%eth0",
    "1.2.3.4/-1",
    "",
];

/// A random scalar of any YAML type, valid for nothing in particular.
fn junk_scalar(r: &mut Rng) -> String {
    match r.below(16) {
        0 => "null".into(),
        1 => "~".into(),
        2 => r.pick(&["true", "false", "yes", "no", "on"]).to_string(),
        3 => (r.next() as i64).to_string(),
        4 => format!("{}", r.next() as u128 * r.next() as u128 * 1000),
        5 => r.pick(&["1e400", "-1e400", ".nan", ".inf", "-.inf", "0x1F", "0o17", "-0", "1_000"]).to_string(),
        6 => format!("\"{}\"", escaped(&unicode_string(r))),
        7 => format!("'{}'", unicode_string(r).replace('\'', "''").replace('\n', " ")),
        8 => "[]".into(),
        9 => "{}".into(),
        10 => format!("\"{}\"", "a".repeat(r.below(5000))),
        11 => "\"line one\\nline two\"".into(),
        12 => "!!binary aGVsbG8=".into(),
        13 => "!custom tag".into(),
        14 => "*undefined_alias".into(),
        _ => format!("{:.3}", (r.next() % 100_000) as f64 / 7.0),
    }
}

/// Characters from everywhere: ASCII, controls, combining marks, RTL, emoji, NUL.
fn unicode_string(r: &mut Rng) -> String {
    const CHARS: &[char] = &[
        'a', 'Z', '0', '-', '.', '/', ':', ' ', '\t', '\n', '\r', '\0', '\u{7f}', '\u{85}', '\u{2028}', 'é', '\u{301}',
        '\u{202e}', 'ß', '中', '😀', '\u{feff}', '"', '\'', '\\', '#', '&', '*', '!', '|', '>', '%', '@', '`', '{',
        '}', '[', ']', ',',
    ];
    let n = r.below(24);
    (0..n).map(|_| *r.pick(CHARS)).collect()
}

/// A double-quoted YAML string body for `s` (escapes for the controls YAML forbids raw).
fn escaped(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => o.push_str(&format!("\\x{:02x}", c as u32)),
            c => o.push(c),
        }
    }
    o
}

/// A value that is usually right for the field, sometimes anything at all.
fn or_junk(r: &mut Rng, good: impl FnOnce(&mut Rng) -> String) -> String {
    if r.chance(r.1) { junk_scalar(r) } else { good(r) }
}

fn name(r: &mut Rng) -> String {
    if r.1 == 0 && r.chance(90) {
        return format!("\"n{}-{}\"", r.below(1000), r.pick(&["web", "api-1", "db.prod", "a", "x-y-z"]));
    }
    let good = if r.chance(80) { format!("n{}-{}", r.below(50), r.pick(NAMES)) } else { r.pick(NAMES).to_string() };
    or_junk(r, |_| format!("\"{}\"", escaped(&good)))
}

fn labels(r: &mut Rng) -> String {
    if r.1 > 0 && r.chance(5) {
        return junk_scalar(r);
    }
    let n = r.below(4);
    let rot = r.below(3);
    let items: Vec<String> = (0..n)
        .map(|i| {
            let k = if r.1 == 0 {
                ["app", "tier", "team"][(i + rot) % 3].to_string()
            } else if r.chance(95) {
                r.pick(LABEL_KEYS).to_string()
            } else {
                unicode_string(r)
            };
            let v = if r.1 == 0 {
                r.pick(&["web", "api", "db", "x1"]).to_string()
            } else if r.chance(95) {
                r.pick(NAMES).to_string()
            } else {
                unicode_string(r)
            };
            let v = or_junk(r, |_| format!("\"{}\"", escaped(&v)));
            format!("\"{}\": {}", escaped(&k), v)
        })
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn address(r: &mut Rng) -> String {
    if r.1 == 0 && r.chance(90) {
        // Distinct per call: two endpoints claiming one address with other labels is an error.
        return if r.chance(50) {
            format!("\"192.0.{}.{}\"", r.below(256), r.below(256))
        } else {
            format!("\"fd00:{:x}::{:x}/128\"", r.below(65536), 1 + r.below(65535))
        };
    }
    let a = if r.chance(85) {
        r.pick(ADDRESSES).to_string()
    } else {
        format!("{}.{}.{}.{}/{}", r.below(300), r.below(256), r.below(256), r.below(256), r.below(40))
    };
    or_junk(r, |_| format!("\"{a}\""))
}

fn list(r: &mut Rng, max: usize, mut item: impl FnMut(&mut Rng) -> String) -> String {
    if r.1 > 0 && r.chance(4) {
        return junk_scalar(r);
    }
    let n = r.below(max + 1);
    let items: Vec<String> = (0..n).map(|_| item(r)).collect();
    format!("[{}]", items.join(", "))
}

fn port_number(r: &mut Rng) -> String {
    match r.below(if r.1 == 0 { 40 } else { 8 }) {
        0 => "0".into(),
        1 => "65536".into(),
        2 => "-1".into(),
        3 => "99999999999999999999999".into(),
        4 => "\"80\"".into(),
        _ => (1 + r.below(65535)).to_string(),
    }
}

fn port(r: &mut Rng) -> String {
    let mut fields = Vec::new();
    if r.chance(90) {
        let protocols = if r.1 == 0 { &PROTOCOLS[..3] } else { PROTOCOLS };
        fields.push(format!("protocol: {}", or_junk(r, |r| r.pick(protocols).to_string())));
    }
    if r.chance(70) {
        fields.push(format!("port: {}", port_number(r)));
    }
    if r.chance(25) {
        fields.push(format!("endPort: {}", port_number(r)));
    }
    if r.chance(3) {
        fields.push(format!("{}: 1", unicode_string(r).replace(['\n', '\r', ':', '{', '}', ',', '[', ']'], "")));
    }
    format!("{{{}}}", fields.join(", "))
}

fn peer(r: &mut Rng) -> String {
    if r.1 == 0 {
        return match r.below(3) {
            0 => format!("{{selector: {}}}", labels(r)),
            1 => format!("{{cidr: \"10.{}.0.0/16\"}}", r.below(256)),
            _ => format!("{{entity: {}}}", r.pick(&ENTITIES[..3])),
        };
    }
    let mut fields = Vec::new();
    if r.chance(45) {
        fields.push(format!("selector: {}", labels(r)));
    }
    if r.chance(35) {
        fields.push(format!("cidr: {}", address(r)));
    }
    if r.chance(12) {
        fields.push(format!("except: {}", list(r, 3, address)));
    }
    if r.chance(30) {
        fields.push(format!("entity: {}", or_junk(r, |r| r.pick(ENTITIES).to_string())));
    }
    format!("{{{}}}", fields.join(", "))
}

fn rule(r: &mut Rng, ingress: bool) -> String {
    let mut fields = Vec::new();
    if r.chance(20) {
        fields.push(format!("action: {}", or_junk(r, |r| r.pick(&["allow", "deny", "Allow", "drop"]).to_string())));
    }
    let peer_field = if r.chance(if r.1 == 0 { 100 } else { 90 }) == ingress { "from" } else { "to" };
    if r.chance(85) {
        fields.push(format!("{peer_field}: {}", list(r, 3, peer)));
    }
    if r.chance(70) {
        fields.push(format!("ports: {}", list(r, 4, port)));
    }
    format!("{{{}}}", fields.join(", "))
}

fn endpoint(r: &mut Rng) -> String {
    let mut s = String::from("apiVersion: zt/v1\nkind: Endpoint\n");
    s += &format!("metadata: {{name: {}{}}}\n", name(r), if r.chance(10) { ", namespace: ns" } else { "" });
    s += "spec:\n";
    if r.chance(95) {
        s += &format!("  addresses: {}\n", list(r, 4, address));
    }
    if r.chance(80) {
        s += &format!("  labels: {}\n", labels(r));
    }
    s
}

fn policy_doc(r: &mut Rng) -> String {
    let mut s = String::from("apiVersion: zt/v1\nkind: Policy\n");
    s += &format!("metadata: {{name: {}}}\n", name(r));
    s += "spec:\n";
    if r.chance(90) {
        s += &format!("  selector: {}\n", labels(r));
    }
    if r.chance(20) {
        s += &format!("  mode: {}\n", or_junk(r, |r| r.pick(&["enforce", "audit", "Audit"]).to_string()));
    }
    if r.chance(75) {
        s += &format!("  ingress: {}\n", list(r, 3, |r| rule(r, true)));
    }
    if r.chance(60) {
        s += &format!("  egress: {}\n", list(r, 3, |r| rule(r, false)));
    }
    s
}

/// Something that is not quite a document: other kinds and versions, scalars, deep
/// nesting, alias bombs.
fn odd_doc(r: &mut Rng) -> String {
    match r.below(9) {
        0 => format!("apiVersion: {}\nkind: {}\nmetadata: {{name: x}}\nspec: {{}}\n", junk_scalar(r), junk_scalar(r)),
        1 => format!("apiVersion: zt/v2\nkind: {}\n", r.pick(&["Policy", "Endpoint", "NetworkPolicy"])),
        2 => format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {}}}\n", name(r)),
        3 => {
            let depth = 1 + r.below(400);
            format!("apiVersion: zt/v1\nkind: Policy\nspec: {}{}\n", "[".repeat(depth), "]".repeat(depth))
        }
        4 => {
            let depth = 1 + r.below(300);
            format!("apiVersion: zt/v1\nkind: Policy\nspec: {}1{}\n", "{a: ".repeat(depth), "}".repeat(depth))
        }
        5 => {
            // Exponential alias expansion ("billion laughs").
            let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
            for i in 1..(2 + r.below(10)) {
                s += &format!(
                    "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                    p = i - 1
                );
            }
            s
        }
        6 => junk_scalar(r) + "\n",
        7 => String::new(),
        _ => (0..r.below(300)).map(|_| (r.below(0x80) as u8) as char).collect(),
    }
}

/// Byte-level damage that keeps the text valid UTF-8.
fn mutate(r: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..1 + r.below(4) {
        let len = chars.len();
        match r.below(8) {
            0 if len > 0 => {
                let at = r.below(len);
                let n = r.below(len - at + 1).min(20);
                chars.drain(at..at + n);
            }
            1 if len > 0 => {
                let at = r.below(len);
                chars.truncate(at);
            }
            2 => {
                let at = r.below(len + 1);
                let junk: Vec<char> = unicode_string(r).chars().collect();
                chars.splice(at..at, junk);
            }
            3 if len > 0 => {
                let at = r.below(len);
                chars[at] = *r.pick(&[':', '-', ' ', '\n', '\t', '[', '{', '&', '*', '"', '#', '|', '\u{0}', 'é']);
            }
            4 => {
                // Duplicate a line (duplicate keys, re-indented blocks).
                let s: String = chars.iter().collect();
                let lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let i = r.below(lines.len());
                    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                    out.insert(i, format!("{}{}", " ".repeat(r.below(4)), lines[i]));
                    chars = out.join("\n").chars().collect();
                }
            }
            5 => {
                let at = r.below(len + 1);
                chars.splice(at..at, "\n---\n".chars());
            }
            6 if len > 0 => {
                let at = r.below(len);
                chars[at] = char::from_u32(r.next() as u32 % 0x11_0000).unwrap_or('\u{fffd}');
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

fn document(r: &mut Rng) -> String {
    let doc = match r.below(if r.1 == 0 { 9 } else { 10 }) {
        0..=3 => endpoint(r),
        4..=8 => policy_doc(r),
        _ => odd_doc(r),
    };
    if r.1 > 0 && r.chance(25) { mutate(r, &doc) } else { doc }
}

/// One push: 1-3 sources of 1-4 documents each.
fn push(r: &mut Rng) -> Vec<(String, String)> {
    (0..1 + r.below(3))
        .map(|i| {
            let name = format!("fuzz-{i}-{}.yaml", r.below(1000));
            let docs: Vec<String> = (0..1 + r.below(4)).map(|_| document(r)).collect();
            let mut text = docs.join("---\n");
            if r.1 > 0 && r.chance(5) {
                text = mutate(r, &text);
            }
            (name, text)
        })
        .collect()
}

/// What running the fuzzer found; `problems` fail the test.
#[derive(Default)]
struct Tally {
    pushes: u64,
    parsed: u64,
    compiled: u64,
    parse_errors: u64,
    compile_errors: u64,
    problems: Vec<String>,
}

fn check_push(sources: &[(String, String)], t: &mut Tally) {
    t.pushes += 1;
    let outcome = catch_unwind(AssertUnwindSafe(|| policy::parse(sources)));
    let parsed = match outcome {
        Err(_) => {
            t.problems.push(format!("parse panicked on {sources:?}"));
            return;
        }
        Ok(p) => p,
    };
    match parsed {
        Err(errors) => {
            t.parse_errors += errors.len() as u64;
            if errors.is_empty() {
                t.problems.push(format!("parse failed without an error on {sources:?}"));
            }
            for e in errors {
                let msg = e.to_string();
                if std::env::var("ZT_FUZZ_DEBUG").is_ok() && t.parse_errors < 40 {
                    println!("{msg}");
                }
                if msg.trim().is_empty() {
                    t.problems.push(format!("empty parse error {e:?} for {sources:?}"));
                } else if !sources.iter().any(|(name, _)| msg.contains(name.as_str())) {
                    t.problems.push(format!("parse error names no source file: {msg:?} for {sources:?}"));
                } else if msg.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']) {
                    t.problems.push(format!("parse error spans lines: {msg:?} for {sources:?}"));
                }
            }
        }
        Ok(set) => {
            t.parsed += 1;
            let settings = CompileSettings::default();
            let mut allocator = IdentityAllocator::new();
            let compiled = catch_unwind(AssertUnwindSafe(|| policy::compile(&set, &settings, &mut allocator)));
            match compiled {
                Err(_) => t.problems.push(format!("compile panicked on {sources:?}")),
                Ok(Ok(_)) => t.compiled += 1,
                Ok(Err(e)) => {
                    t.compile_errors += 1;
                    let msg = e.to_string();
                    if msg.trim().is_empty() || msg.contains('\n') {
                        t.problems.push(format!("compile error is not one line: {msg:?} for {sources:?}"));
                    }
                }
            }
        }
    }
}

#[test]
fn policy_parser_and_compiler_survive_random_documents() {
    let seed = seed();
    let max = env_u64("ZT_FUZZ_DOCS").unwrap_or(10_000);
    let budget = Duration::from_secs(env_u64("ZT_FUZZ_SECONDS").unwrap_or(6));
    println!("policy fuzz: seed {seed} (replay with ZT_FUZZ_SEED={seed}), up to {max} pushes or {budget:?}");
    // Panics are caught and reported with their input; keep the default hook's message short.
    let mut r = Rng(seed, 0);
    let mut t = Tally::default();
    let start = Instant::now();
    let mut last_report = Instant::now();
    while t.pushes < max && start.elapsed() < budget {
        // A third of the pushes are well-formed (no junk values, no mutations) so that many
        // reach the compiler; the rest carry junk in about 4% of the fields.
        r.1 = if r.chance(33) { 0 } else { 4 };
        let sources = push(&mut r);
        check_push(&sources, &mut t);
        if t.problems.len() >= 20 {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            println!("policy fuzz: {} pushes, {:.0}/s", t.pushes, t.pushes as f64 / start.elapsed().as_secs_f64());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "policy fuzz: {} pushes in {secs:.1}s ({:.0}/s): {} parsed, {} compiled, {} parse errors, {} compile errors",
        t.pushes,
        t.pushes as f64 / secs,
        t.parsed,
        t.compiled,
        t.parse_errors,
        t.compile_errors
    );
    assert!(t.problems.is_empty(), "seed {seed}: {} problems:\n{}", t.problems.len(), t.problems.join("\n"));
}
