//! Step 3, atoms and verdicts: each rule x local x peer x port block is an *atom*, a key
//! region with what it contributes (an allow, a deny, isolation, failsafe); isolated locals
//! get a catch-all atom and `(any, any, any protocol)` is always present. Contributions of
//! every atom covering a key merge, per evaluation [`Layer`], into one [`Decision`] and so
//! into the key's [`PolicyValue`].

use zt_common::identity::{ANY, HOST};
use zt_common::policy::{POLICY_NONE, PolicyValue, RULE_NONE};
use zt_common::reason;

use super::resolve::{PortSpecificity, Resolved};
use crate::policy::model::{Action, Direction};
use crate::policy::ports::PortBlock;

/// Which rule a verdict names. Ordered so that the *preferred* attribution is the greatest:
/// most precise port, then a named peer over "any", then the lowest policy id and rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Attribution {
    pub specificity: PortSpecificity,
    pub peer_specific: bool,
    pub policy_id: u32,
    pub rule: u32,
}

impl Attribution {
    pub(super) fn preference(&self) -> impl Ord {
        (self.specificity, self.peer_specific, std::cmp::Reverse(self.policy_id), std::cmp::Reverse(self.rule))
    }

    pub(super) fn best(current: Option<Self>, candidate: Self) -> Option<Self> {
        match current {
            Some(current) if current.preference() >= candidate.preference() => Some(current),
            _ => Some(candidate),
        }
    }
}

/// What an atom adds to the verdict of the keys it covers. Adding one to a [`Decision`] is
/// idempotent and the order of adding does not matter (flags are set; of attributions the
/// preferred is kept, and two with the same preference are equal), which lets the closure
/// add each distinct contribution once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Contribution {
    /// The catch-all that guarantees a hit; adds nothing.
    Neutral,
    Isolate {
        enforcing: bool,
        policy_id: u32,
    },
    /// The agent's default deny: isolates every local identity except pods; audit-only
    /// (`enforcing: false`) with `--default-deny audit`.
    DefaultIsolate {
        enforcing: bool,
    },
    /// The local side is a Kubernetes pod, which default deny does not isolate.
    Pod,
    Rule {
        action: Action,
        enforcing: bool,
        attribution: Attribution,
    },
    Failsafe,
    /// The local side is world or a CIDR prefix: never isolated.
    NotLocal,
}

impl Contribution {
    /// Contributions of one kind, which [`Contribution::combine`] can fold into one: the
    /// variant, whether it enforces and, for rules, whether it denies.
    fn kind(&self) -> (u8, bool, bool) {
        match *self {
            Contribution::Neutral => (0, false, false),
            Contribution::Isolate { enforcing, .. } => (1, enforcing, false),
            Contribution::DefaultIsolate { enforcing } => (2, enforcing, false),
            Contribution::Pod => (3, false, false),
            Contribution::Rule { action, enforcing, .. } => (4, enforcing, action == Action::Deny),
            Contribution::Failsafe => (5, false, false),
            Contribution::NotLocal => (6, false, false),
        }
    }

    /// One contribution whose adding has the effect of adding both (same [`kind`](Self::kind)):
    /// of isolations the lowest policy id is kept (what [`Layer`] names), of rules the
    /// preferred attribution; the other variants are equal.
    fn combine(self, other: Contribution) -> Contribution {
        match (self, other) {
            (Contribution::Isolate { enforcing, policy_id: a }, Contribution::Isolate { policy_id: b, .. }) => {
                Contribution::Isolate { enforcing, policy_id: a.min(b) }
            }
            (Contribution::Rule { action, enforcing, attribution: a }, Contribution::Rule { attribution: b, .. }) => {
                Contribution::Rule { action, enforcing, attribution: Attribution::best(Some(a), b).unwrap_or(a) }
            }
            (this, _) => this,
        }
    }
}

/// One policy evaluation: either enforce-mode policies only, or all policies treated as
/// enforcing (which is what audit mode reports against).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Layer {
    pub(super) isolated: bool,
    /// The isolating policy that names a `default-deny` verdict: the one whose name sorts
    /// first (the lowest id), so the choice does not depend on the order of atoms.
    pub(super) isolated_by: Option<u32>,
    /// Isolated by default deny alone (void for pods).
    pub(super) isolated_by_default: bool,
    pub(super) allow: Option<Attribution>,
    pub(super) deny: Option<Attribution>,
}

impl Layer {
    pub(super) fn add(&mut self, contribution: &Contribution) {
        match *contribution {
            Contribution::Isolate { policy_id, .. } => {
                self.isolated = true;
                self.isolated_by = Some(self.isolated_by.map_or(policy_id, |p| p.min(policy_id)));
            }
            Contribution::DefaultIsolate { .. } => self.isolated_by_default = true,
            Contribution::Rule { action: Action::Allow, attribution, .. } => {
                self.allow = Attribution::best(self.allow, attribution)
            }
            Contribution::Rule { action: Action::Deny, attribution, .. } => {
                self.deny = Attribution::best(self.deny, attribution)
            }
            Contribution::Neutral | Contribution::Failsafe | Contribution::NotLocal | Contribution::Pod => {}
        }
    }

    /// (verdict, reason, policy id, rule) of this layer alone; a `default-deny` names the
    /// policy that isolates the local identity, if one does. A deny only ever comes from
    /// a policy that also isolates the local identity, so checking it first merely makes
    /// "deny always wins" explicit. `pod`: the local side is a pod, so only policies that
    /// select it isolate it.
    pub(super) fn decide(&self, pod: bool) -> (u8, u8, u32, u32) {
        if let Some(deny) = self.deny {
            (reason::VERDICT_DENIED, reason::DENY_RULE, deny.policy_id, deny.rule)
        } else if !(self.isolated || (self.isolated_by_default && !pod)) {
            (reason::VERDICT_ALLOWED, reason::NOT_ISOLATED, POLICY_NONE, RULE_NONE)
        } else if let Some(allow) = self.allow {
            (reason::VERDICT_ALLOWED, reason::POLICY, allow.policy_id, allow.rule)
        } else {
            (reason::VERDICT_DENIED, reason::DEFAULT_DENY, self.isolated_by.unwrap_or(POLICY_NONE), RULE_NONE)
        }
    }
}

/// The merged verdict of every atom covering a key.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Decision {
    pub(super) not_local: bool,
    pub(super) pod: bool,
    pub(super) failsafe: bool,
    pub(super) enforce: Layer,
    pub(super) all: Layer,
}

impl Decision {
    pub(super) fn add(&mut self, contribution: &Contribution) {
        let enforcing = match *contribution {
            Contribution::Failsafe => {
                self.failsafe = true;
                return;
            }
            Contribution::NotLocal => {
                self.not_local = true;
                return;
            }
            Contribution::Pod => {
                self.pod = true;
                return;
            }
            Contribution::DefaultIsolate { enforcing }
            | Contribution::Isolate { enforcing, .. }
            | Contribution::Rule { enforcing, .. } => enforcing,
            Contribution::Neutral => return,
        };
        self.all.add(contribution);
        if enforcing {
            self.enforce.add(contribution);
        }
    }

    /// Failsafe beats everything; an enforce-mode drop is a drop; a drop that only audit
    /// policies cause is an audit verdict carrying what enforcement would have said.
    pub(super) fn value(&self) -> PolicyValue {
        let (verdict, reason, policy_id, rule) = if self.not_local {
            (reason::VERDICT_ALLOWED, reason::NOT_ISOLATED, POLICY_NONE, RULE_NONE)
        } else if self.failsafe {
            (reason::VERDICT_ALLOWED, reason::FAILSAFE, POLICY_NONE, RULE_NONE)
        } else {
            let enforce = self.enforce.decide(self.pod);
            let all = self.all.decide(self.pod);
            if enforce.0 == reason::VERDICT_DENIED {
                enforce
            } else if all.0 == reason::VERDICT_DENIED {
                (reason::VERDICT_AUDIT, all.1, all.2, all.3)
            } else {
                enforce
            }
        };
        PolicyValue::new(verdict, reason, policy_id, rule)
    }
}

/// A key region and its contribution.
#[derive(Clone, Copy, Debug)]
pub(super) struct Atom {
    pub(super) local: u32,
    pub(super) peer: u32,
    pub(super) block: PortBlock,
    pub(super) contribution: Contribution,
}

/// The atoms of one identity pair, fewest that add up to the same: atoms of a pair differ
/// only in block and contribution, and adding contributions is idempotent and order-free, so
/// per block the contributions of each kind fold into one. A hundred policies isolating one
/// identity leave one isolation atom in its (identity, any) group, which the closure scans
/// for every peer of that identity.
pub(super) fn condense(mut group: Vec<Atom>) -> Vec<Atom> {
    group.sort_unstable_by_key(|atom| (atom.block, atom.contribution.kind()));
    let mut condensed: Vec<Atom> = Vec::with_capacity(group.len());
    for atom in group {
        match condensed.last_mut() {
            Some(last) if last.block == atom.block && last.contribution.kind() == atom.contribution.kind() => {
                last.contribution = last.contribution.combine(atom.contribution);
            }
            _ => condensed.push(atom),
        }
    }
    condensed
}

/// Step 3: atoms per direction (indexed by `DIR_INGRESS`/`DIR_EGRESS`).
pub(super) fn atoms(resolved: &Resolved) -> [Vec<Atom>; 2] {
    let mut atoms: [Vec<Atom>; 2] = [Vec::new(), Vec::new()];
    let catch_all = |contribution| Atom { local: ANY, peer: ANY, block: PortBlock::ANY, contribution };
    for direction in Direction::BOTH {
        let out = &mut atoms[usize::from(direction.to_u8())];
        out.push(catch_all(Contribution::Neutral));
        if resolved.default_deny.isolates() {
            out.push(catch_all(Contribution::DefaultIsolate { enforcing: resolved.default_deny.enforces() }));
        }
    }
    for isolation in &resolved.isolations {
        let contribution = Contribution::Isolate { enforcing: isolation.enforcing, policy_id: isolation.policy_id };
        let atom = Atom { local: isolation.local, ..catch_all(contribution) };
        atoms[usize::from(isolation.direction)].push(atom);
    }
    for &local in &resolved.not_local {
        for out in atoms.iter_mut() {
            out.push(Atom { local, ..catch_all(Contribution::NotLocal) });
        }
    }
    if resolved.default_deny.isolates() {
        for &local in &resolved.pods {
            for out in atoms.iter_mut() {
                out.push(Atom { local, ..catch_all(Contribution::Pod) });
            }
        }
    }
    for (direction, ports) in &resolved.failsafe {
        for block in ports.blocks() {
            let atom = Atom { local: HOST, peer: ANY, block, contribution: Contribution::Failsafe };
            atoms[usize::from(*direction)].push(atom);
        }
    }
    for rule in resolved.rules() {
        for ports in &rule.ports {
            let blocks = ports.blocks();
            for &local in rule.locals.iter() {
                for &peer in rule.peers.iter() {
                    let attribution = Attribution {
                        specificity: ports.specificity(),
                        peer_specific: peer != ANY,
                        policy_id: rule.policy_id,
                        rule: rule.rule,
                    };
                    let contribution =
                        Contribution::Rule { action: rule.action, enforcing: rule.enforcing, attribution };
                    let out = &mut atoms[usize::from(rule.direction)];
                    out.extend(blocks.iter().map(|&block| Atom { local, peer, block, contribution }));
                }
            }
        }
    }
    atoms
}
