//! Incremental parsing against the reference: over random sequences of pushes (sources
//! edited, added, removed, renamed, reordered, repeated, broken and fixed), `parse_cached`
//! with one cache kept across the sequence gives exactly what `parse` gives from scratch —
//! the same policy set, or the same errors in the same order — and so the same compile.

use super::random::Rng;
use super::*;

const LABEL_VALUES: [&str; 3] = ["a", "b", "c"];
const ADDRESSES: [&str; 6] = ["198.18.0.1", "198.18.0.2", "198.18.1.0/24", "198.18.0.3", "fd00::1", "fd00::2"];

fn labels(rng: &mut Rng) -> String {
    let mut parts = Vec::new();
    for key in ["app", "tier"] {
        if rng.chance(60) {
            parts.push(format!("{key}: {}", rng.pick(&LABEL_VALUES)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

fn port(rng: &mut Rng) -> u32 {
    // Now and then out of range, so some pushes are rejected.
    if rng.chance(4) { 70_000 } else { rng.pick(&[22, 53, 80, 443, 8080]) }
}

/// One document of any kind this parser reads; names repeat across documents on purpose.
fn document(rng: &mut Rng) -> String {
    let n = rng.below(4);
    match rng.below(7) {
        0 => format!(
            "apiVersion: zt/v1\nkind: Endpoint\nmetadata: {{name: e{n}}}\nspec:\n  addresses: [{}]\n  labels: {}\n",
            rng.pick(&ADDRESSES),
            labels(rng)
        ),
        1 => format!(
            "apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: p{n}}}\nspec:\n  selector: {}\n  ingress:\n    - from: [{{selector: {}}}]\n      ports: [{{protocol: TCP, port: {}}}]\n",
            labels(rng),
            labels(rng),
            port(rng)
        ),
        2 => format!(
            "apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: q{n}}}\nspec:\n  selector: {}\n  egress:\n    - to: [{{cidr: 198.18.0.0/16}}]\n",
            labels(rng)
        ),
        3 => format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns{n}, labels: {}}}\n", labels(rng)),
        4 => format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: pod{}, namespace: ns{n}, labels: {}}}\nspec:\n  containers: [{{ports: [{{name: http, containerPort: {}}}]}}]\nstatus: {{phase: Running, podIP: 198.19.0.{}}}\n",
            rng.below(3),
            labels(rng),
            port(rng),
            1 + rng.below(5)
        ),
        5 => format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np{}, namespace: ns{n}}}\nspec:\n  podSelector: {{matchLabels: {}}}\n  ingress:\n    - from: [{{namespaceSelector: {{}}, podSelector: {{matchLabels: {}}}}}]\n      ports: [{{port: http}}, {{protocol: TCP, port: {}}}]\n",
            rng.below(2),
            labels(rng),
            labels(rng),
            port(rng)
        ),
        // Unknown field: a schema error.
        _ if rng.chance(30) => "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: broken}\nspec: {color: red}\n".into(),
        _ => "~\n".into(),
    }
}

pub(super) fn source_text(rng: &mut Rng) -> String {
    (0..1 + rng.below(3)).map(|_| document(rng)).collect::<Vec<_>>().join("---\n")
}

/// One random change of the sources of a push.
pub(super) fn change(rng: &mut Rng, sources: &mut Vec<(String, String)>) {
    let names = ["a.yaml", "b.yaml", "c.yaml", "kubernetes:pods/x/y", "dir/d.yaml"];
    match rng.below(8) {
        0..=2 if !sources.is_empty() => {
            let i = rng.below(sources.len());
            sources[i].1 = source_text(rng);
        }
        3 if !sources.is_empty() => {
            sources.remove(rng.below(sources.len()));
        }
        4 if sources.len() > 1 => {
            let (i, j) = (rng.below(sources.len()), rng.below(sources.len()));
            sources.swap(i, j);
        }
        5 if !sources.is_empty() => {
            let i = rng.below(sources.len());
            sources[i].0 = rng.pick(&names).to_string();
        }
        6 => {} // the same push again
        _ => sources.push((rng.pick(&names).to_string(), source_text(rng))),
    }
}

fn outcome(result: Result<PolicySet, Vec<PolicyError>>) -> Result<PolicySet, Vec<String>> {
    result.map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

#[test]
fn parsing_with_the_cache_equals_parsing_from_scratch_over_random_push_sequences() {
    const SEED: u64 = 0x5eed_2026_1126;
    const SEQUENCES: usize = 300;
    const PUSHES: usize = 12;
    let mut rng = Rng(SEED);
    let (mut accepted, mut rejected) = (0, 0);
    for sequence in 0..SEQUENCES {
        // These sources are all short: one in four sequences reads them the way the agent
        // does (not remembered), the others remember them all.
        let mut cache = if sequence % 4 == 0 { ParseCache::default() } else { ParseCache::remembering_all() };
        let mut sources: Vec<(String, String)> = Vec::new();
        for push in 0..PUSHES {
            change(&mut rng, &mut sources);
            let want = outcome(parse(&sources));
            let got = outcome(parse_cached(&sources, &mut cache));
            assert_eq!(got, want, "sequence {sequence} push {push} (seed {SEED:#x}): sources {sources:#?}");
            if let Ok(set) = &want {
                let settings = CompileSettings::default();
                let full = compile(set, &settings, &mut IdentityAllocator::new()).map(|c| c.entries);
                let cached =
                    compile(got.as_ref().unwrap(), &settings, &mut IdentityAllocator::new()).map(|c| c.entries);
                assert_eq!(format!("{cached:?}"), format!("{full:?}"));
                accepted += 1;
            } else {
                rejected += 1;
            }
        }
    }
    assert!(accepted > 500 && rejected > 500, "{accepted} accepted and {rejected} rejected pushes");
}

#[test]
fn an_unchanged_source_is_not_read_again() {
    let policy =
        "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ingress: []\n";
    let mut cache = ParseCache::remembering_all();
    let first = parse_cached(&[("a.yaml", policy), ("b.yaml", DB_ENDPOINT)], &mut cache).unwrap();
    assert_eq!(cache.len(), 2);
    let again = parse_cached(&[("a.yaml", policy), ("b.yaml", DB_ENDPOINT)], &mut cache).unwrap();
    assert_eq!(first, again);
    parse_cached(&[("a.yaml", policy)], &mut cache).unwrap();
    assert_eq!(cache.len(), 1, "a source no longer pushed is forgotten");
}

#[test]
fn small_sources_are_read_again_rather_than_remembered() {
    let small =
        "apiVersion: zt/v1\nkind: Policy\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ingress: []\n";
    let large = format!("{small}---\n{}", "# a comment that makes the file long\n".repeat(200));
    let sources = [("small.yaml", small.to_string()), ("large.yaml", large.replace("name: web", "name: db"))];
    let mut cache = ParseCache::default();
    let first = parse_cached(&sources, &mut cache).unwrap();
    assert_eq!(cache.len(), 1, "only the large source is remembered");
    assert_eq!(parse_cached(&sources, &mut cache).unwrap(), first);
    assert_eq!(first, parse(&sources).unwrap());
}
