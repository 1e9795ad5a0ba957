//! Step 4, intersection closure: the key set closed under intersection, each key carrying
//! the merged verdict of every atom that covers it, then keys whose verdict equals their LPM
//! parent's pruned (see the [module docs](super) for why the closure makes the kernel's
//! first hit right).

use foldhash::HashMap;

use zt_common::identity::ANY;
use zt_common::policy::PolicyValue;

use super::verdict::{Atom, Decision, condense};
use super::{Limits, PolicyEntryKey};
use crate::parallel;
use crate::policy::error::CompileError;
use crate::policy::ports::PortBlock;

/// Step 4: the intersection closure of the atoms, each key with its merged verdict.
///
/// Identities and blocks are both trees under containment (ANY above every identity; any
/// protocol above a protocol above its port blocks), so the intersection of atoms is
/// computed per component: a key (l, p, b) is in the closure exactly when some covering atom
/// has local l, some has peer p and some has block b. That bounds the candidates: pairs
/// (l, p) that are an atom pair or combine an (l, any) with an (any, p), and per pair the
/// blocks of the atoms that cover the pair.
pub(super) fn build_entries(
    atoms: [Vec<Atom>; 2],
    limits: Limits,
) -> Result<Vec<(PolicyEntryKey, PolicyValue)>, CompileError> {
    let mut entries = Vec::new();
    let mut closure_keys = 0usize;
    for (direction, mut sorted) in atoms.into_iter().enumerate() {
        let direction = direction as u8;
        // The atoms grouped by identity pair: sorted by pair, each group a run, found by a
        // hash of its pair (looking groups up in a tree was a fifth of the closure).
        sorted.sort_unstable_by_key(|atom| (atom.local, atom.peer));
        let mut groups: Vec<((u32, u32), Vec<Atom>)> = Vec::new();
        for run in sorted.chunk_by(|a, b| (a.local, a.peer) == (b.local, b.peer)) {
            // The groups with an ANY side are scanned for every pair they cover, and many
            // policies selecting one identity put as many isolation atoms in its (local,
            // any) group: each group is condensed to one atom per block and kind of
            // contribution.
            groups.push(((run[0].local, run[0].peer), condense(run.to_vec())));
        }
        drop(sorted);
        let group_of: HashMap<(u32, u32), usize> = groups.iter().enumerate().map(|(i, (pair, _))| (*pair, i)).collect();
        let locals_with_any_peer: Vec<u32> =
            groups.iter().map(|(pair, _)| *pair).filter(|(l, p)| *l != ANY && *p == ANY).map(|k| k.0).collect();
        let peers_with_any_local: Vec<u32> =
            groups.iter().map(|(pair, _)| *pair).filter(|(l, p)| *l == ANY && *p != ANY).map(|k| k.1).collect();
        let mut pairs: Vec<(u32, u32)> = groups.iter().map(|(pair, _)| *pair).collect();
        if !peers_with_any_local.is_empty() {
            for &local in &locals_with_any_peer {
                pairs.extend(peers_with_any_local.iter().map(|&peer| (local, peer)));
            }
            pairs.sort_unstable();
            pairs.dedup();
        }
        // Each pair is closed on its own: a cluster's tens of thousands of pairs are spread
        // over the cores, and the pieces' keys are counted against the limit together.
        let groups = Groups { groups: &groups, of: &group_of };
        let pieces = parallel::chunks(&pairs, PAIRS_PER_THREAD, |pairs| close_pairs(direction, pairs, &groups, limits));
        for piece in pieces {
            let (keys, piece_entries) = piece?;
            closure_keys += keys;
            if closure_keys > limits.closure_keys {
                return Err(CompileError::TooManyKeys { limit: limits.closure_keys });
            }
            entries.extend(piece_entries);
        }
    }
    if entries.len() > limits.policy_entries {
        return Err(CompileError::TooManyEntries { count: entries.len(), limit: limits.policy_entries });
    }
    entries.sort_by_key(|(key, _)| *key);
    Ok(entries)
}

/// Fewer pairs than this per thread are closed on the calling thread.
const PAIRS_PER_THREAD: usize = 2048;

/// One direction's atoms grouped by identity pair, and each pair's group.
struct Groups<'a> {
    groups: &'a [((u32, u32), Vec<Atom>)],
    of: &'a HashMap<(u32, u32), usize>,
}

/// The closure's entries of `pairs` in `direction`, and how many keys the closure had
/// before pruning (more than `limits.closure_keys` is an error at once).
fn close_pairs(
    direction: u8,
    pairs: &[(u32, u32)],
    groups: &Groups,
    limits: Limits,
) -> Result<(usize, Vec<(PolicyEntryKey, PolicyValue)>), CompileError> {
    let mut entries = Vec::new();
    let mut closure_keys = 0usize;
    // Reused across pairs: a cluster has tens of thousands of pairs, and collecting each
    // pair's covering atoms and blocks into new lists was a fifth of the closure.
    let mut blocks: Vec<PortBlock> = Vec::new();
    let mut class: Vec<(PortBlock, PolicyValue)> = Vec::new();
    let mut kept: Vec<(PortBlock, PolicyValue)> = Vec::new();
    for &(local, peer) in pairs {
        let mut covering_groups = [(local, peer), (local, ANY), (ANY, peer), (ANY, ANY)];
        covering_groups.sort_unstable();
        let mut covering: [&[Atom]; 4] = [&[]; 4];
        for (i, group) in covering_groups.iter().enumerate() {
            if i == 0 || covering_groups[i - 1] != *group {
                covering[i] = groups.of.get(group).map_or(&[], |&g| groups.groups[g].1.as_slice());
            }
        }
        let covering = || covering.iter().flat_map(|group| group.iter());
        blocks.clear();
        blocks.extend(covering().map(|a| a.block));
        blocks.sort_unstable();
        blocks.dedup();
        class.clear();
        for &block in &blocks {
            let mut decision = Decision::default();
            let (mut exact_local, mut exact_peer) = (local == ANY, peer == ANY);
            for atom in covering().filter(|a| a.block.contains(&block)) {
                decision.add(&atom.contribution);
                exact_local |= atom.local == local;
                exact_peer |= atom.peer == peer;
            }
            if !(exact_local && exact_peer) {
                continue; // a less specific key already gives this answer
            }
            closure_keys += 1;
            if closure_keys > limits.closure_keys {
                return Err(CompileError::TooManyKeys { limit: limits.closure_keys });
            }
            class.push((block, decision.value()));
        }
        prune_into(&mut class, &mut kept);
        entries.extend(kept.iter().map(|&(block, value)| (PolicyEntryKey::new(direction, local, peer, block), value)));
    }
    Ok((closure_keys, entries))
}

/// Drops keys of one identity pair whose verdict equals that of the nearest kept key
/// containing them: the kernel's LPM lookup then lands on that key with the same answer.
/// Keys without a containing key stay, since without them the lookup would move on to the
/// next identity pair. Sorts `class`; the keys kept go to `kept` (emptied first).
fn prune_into(class: &mut [(PortBlock, PolicyValue)], kept: &mut Vec<(PortBlock, PolicyValue)>) {
    class.sort_by_key(|(block, _)| (block.lpm_prefix_len(), *block));
    kept.clear();
    for &(block, value) in class.iter() {
        // `kept` is ordered by prefix length, so the last container is the nearest.
        let parent = kept.iter().rev().find(|(outer, _)| outer.contains(&block));
        if parent.is_none_or(|(_, parent_value)| *parent_value != value) {
            kept.push((block, value));
        }
    }
}
