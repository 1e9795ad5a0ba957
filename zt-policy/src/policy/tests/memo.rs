//! The compile memo against compiling from scratch: over random push sequences (sources
//! edited, added, removed, renamed, reordered, repeated, broken and fixed; the settings
//! changed now and then; now and then a compile whose result is thrown away, as a
//! superseded compile job's is), a compile that reuses the last one's universe and
//! resolutions gives exactly what a compile from scratch gives with the same allocator —
//! entries, ipcache, identities, policies, rate limits and warnings, or the same problems —
//! and leaves the allocator the same.

use super::incremental::change;
use super::random::Rng;
use super::*;
use crate::generation::{check, check_cached};

/// Everything a compile gives but its lookup index (derived from the entries, and a hash map).
fn outcome(r: Result<CompiledPolicy, crate::generation::Rejected>) -> Result<String, Vec<String>> {
    r.map(|c| format!("{:?}", (&c.entries, &c.ipcache, &c.identities, &c.policies, &c.rate_limits, &c.warnings)))
        .map_err(|r| r.sentences())
}

#[test]
fn compiling_with_the_memo_equals_compiling_from_scratch_over_random_push_sequences() {
    const SEED: u64 = 0x5eed_2026_1127;
    const SEQUENCES: usize = 200;
    const PUSHES: usize = 14;
    let mut rng = Rng(SEED);
    let (mut accepted, mut universes, mut resolutions) = (0, 0, 0);
    for sequence in 0..SEQUENCES {
        // Every source is remembered here, so every push may use the memo (check_cached uses
        // it only then).
        let mut cache = ParseCache::remembering_all();
        let mut allocator = IdentityAllocator::new();
        let mut settings = CompileSettings::default();
        let mut sources: Vec<(String, String)> = Vec::new();
        for push in 0..PUSHES {
            change(&mut rng, &mut sources);
            if rng.chance(10) {
                settings.default_deny = [DefaultDeny::On, DefaultDeny::Off, DefaultDeny::Audit][rng.below(3)];
            }
            if rng.chance(10) {
                settings.host_addresses =
                    if settings.host_addresses.is_empty() { vec!["198.18.0.1".parse().unwrap()] } else { vec![] };
            }
            if rng.chance(15) {
                // A compile job whose result is never applied: its numbering is not kept.
                let _ = check_cached(&sources, &settings, &mut allocator.clone(), &mut cache);
            }
            let mut scratch = allocator.clone();
            let want = outcome(check(&sources, &settings, &mut scratch));
            let got = outcome(check_cached(&sources, &settings, &mut allocator, &mut cache));
            assert_eq!(got, want, "sequence {sequence} push {push} (seed {SEED:#x}): sources {sources:#?}");
            assert_eq!(allocator, scratch, "sequence {sequence} push {push}: the allocators differ");
            accepted += usize::from(got.is_ok());
        }
        let [u, r] = cache.compile.reused.get();
        universes += u;
        resolutions += r;
    }
    assert!(accepted > 1000, "{accepted} accepted pushes");
    assert!(
        universes > 300 && resolutions > 300,
        "the memo was used: {universes} universes, {resolutions} resolutions"
    );
}

#[test]
fn a_one_rule_change_reuses_the_universe_and_the_other_policies() {
    let policy = |name: &str, port: u16| {
        format!(
            "apiVersion: zt/v1\nkind: Policy\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: db}}\n  ingress:\n    - from: [{{cidr: 198.18.0.0/24}}]\n      ports: [{{protocol: TCP, port: {port}}}]\n"
        )
    };
    let sources = |port: u16| {
        vec![
            ("a.yaml".to_string(), policy("a", 5432)),
            ("b.yaml".to_string(), policy("b", port)),
            ("e.yaml".to_string(), DB_ENDPOINT.to_string()),
        ]
    };
    let mut cache = ParseCache::remembering_all();
    let mut allocator = IdentityAllocator::new();
    let settings = CompileSettings::default();
    check_cached(&sources(80), &settings, &mut allocator, &mut cache).unwrap();
    assert_eq!(cache.compile.reused.get(), [0, 0]);
    let changed = check_cached(&sources(81), &settings, &mut allocator, &mut cache).unwrap();
    assert_eq!(cache.compile.reused.get(), [1, 1], "the universe and policy a are reused, b is resolved again");
    let fresh = check(&sources(81), &settings, &mut allocator.clone()).unwrap();
    assert_eq!(format!("{:?}", changed.entries), format!("{:?}", fresh.entries));
    // A new CIDR prefix changes the universe: nothing is reused.
    let mut wider = sources(81);
    wider[1].1 = wider[1].1.replace("198.18.0.0/24", "198.18.0.0/25");
    check_cached(&wider, &settings, &mut allocator, &mut cache).unwrap();
    assert_eq!(cache.compile.reused.get(), [1, 1]);
    assert!(!cache.compile.is_empty());
    // Sources too small to remember: no memo is kept.
    let mut small = ParseCache::default();
    check_cached(&sources(81), &settings, &mut allocator, &mut small).unwrap();
    check_cached(&sources(81), &settings, &mut allocator, &mut small).unwrap();
    assert!(small.compile.is_empty());
    assert_eq!(small.compile.reused.get(), [0, 0]);
    // A compile whose identities and resolution took less than MIN_SAVING is not kept.
    let mut quick = CompileMemo::default();
    let set = parse(&sources(81)).unwrap();
    compile_remembering(&set, &settings, &mut allocator, &mut quick).unwrap();
    assert!(quick.is_empty(), "a three-document policy compiles in microseconds");
}
