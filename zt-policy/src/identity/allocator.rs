//! The identity allocator: label set -> numeric identity, stable for the agent's lifetime.
//!
//! Conntrack entries, flow events and the POLICY map all carry identity numbers, so a label
//! set must keep its number across policy pushes, and across agent restarts when the agent
//! persists the allocator (it serializes with serde). Numbers are never reused: an identity
//! that disappears from policy keeps its number in case it comes back, and the 32-bit space
//! is large enough that this never runs out in practice.

use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::HashMap;

use serde::{Deserialize, Serialize};
use zt_common::identity::FIRST_ALLOCATED;

use super::labels::Labels;

/// Maps label sets to identities `>= FIRST_ALLOCATED` (256). The reserved identities (0 any,
/// 1 host, 2 world) are never handed out here; the compiler assigns them itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "AllocatorState", into = "AllocatorState")]
pub struct IdentityAllocator {
    /// Hashed (foldhash, seeded per process): a compile looks up every endpoint's labels,
    /// and comparing label sets down a tree of 10,000 was a third of its identity step.
    /// Each label set is held once, shared by both maps and by the compiled policies that
    /// name it: a compile job copies the allocator, which for 10,000 pods took 15 ms while
    /// it copied every label.
    by_labels: HashMap<Arc<Labels>, u32>,
    by_id: BTreeMap<u32, Arc<Labels>>,
    next: u32,
}

impl Default for IdentityAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl IdentityAllocator {
    pub fn new() -> Self {
        Self { by_labels: HashMap::default(), by_id: BTreeMap::new(), next: FIRST_ALLOCATED }
    }

    /// The identity of `labels`, allocating the next free number the first time.
    pub fn allocate(&mut self, labels: &Labels) -> Result<u32, AllocatorError> {
        if let Some(&id) = self.by_labels.get(labels) {
            return Ok(id);
        }
        let id = self.next;
        self.next = id.checked_add(1).ok_or(AllocatorError::Exhausted)?;
        let labels = Arc::new(labels.clone());
        self.by_labels.insert(labels.clone(), id);
        self.by_id.insert(id, labels);
        Ok(id)
    }

    /// The identity already allocated for `labels`, if any.
    pub fn get(&self, labels: &Labels) -> Option<u32> {
        self.by_labels.get(labels).copied()
    }

    /// [`Self::get`], with the allocator's own copy of the labels.
    pub fn get_shared(&self, labels: &Labels) -> Option<(u32, &Arc<Labels>)> {
        self.by_labels.get_key_value(labels).map(|(labels, &id)| (id, labels))
    }

    /// The labels of an allocated identity.
    pub fn labels(&self, id: u32) -> Option<&Labels> {
        self.by_id.get(&id).map(|labels| &**labels)
    }

    /// Every allocated identity, in numeric order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Labels)> {
        self.by_id.iter().map(|(&id, labels)| (id, &**labels))
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Takes the identities an [`Allocation`] handed out.
    pub fn commit(&mut self, added: Added) {
        for (labels, id) in added.identities {
            self.by_id.insert(id, labels.clone());
            self.by_labels.insert(labels, id);
        }
        self.next = added.next;
    }
}

/// Identities handed out by one compile on top of an allocator that stays unchanged until
/// the compile succeeds ([`IdentityAllocator::commit`]): a rejected push must not change the
/// numbering, and copying an allocator of 10,000 label sets for every compile (and freeing
/// the old one after) cost more than the compile's own lookups.
pub struct Allocation<'a> {
    base: &'a IdentityAllocator,
    added: HashMap<Arc<Labels>, u32>,
    next: u32,
}

/// What an [`Allocation`] handed out, for [`IdentityAllocator::commit`].
pub struct Added {
    identities: HashMap<Arc<Labels>, u32>,
    next: u32,
}

impl<'a> Allocation<'a> {
    pub fn new(base: &'a IdentityAllocator) -> Self {
        Allocation { base, added: HashMap::default(), next: base.next }
    }

    /// As [`IdentityAllocator::allocate`] would, without changing the allocator.
    pub fn allocate(&mut self, labels: &Labels) -> Result<u32, AllocatorError> {
        if let Some(id) = self.get(labels) {
            return Ok(id);
        }
        let id = self.next;
        self.next = id.checked_add(1).ok_or(AllocatorError::Exhausted)?;
        self.added.insert(Arc::new(labels.clone()), id);
        Ok(id)
    }

    /// The identity of `labels`, allocated before or by this allocation.
    pub fn get(&self, labels: &Labels) -> Option<u32> {
        self.get_shared(labels).map(|(id, _)| id)
    }

    /// [`Self::get`], with the labels as the allocator will hold them.
    pub fn get_shared(&self, labels: &Labels) -> Option<(u32, &Arc<Labels>)> {
        self.base.get_shared(labels).or_else(|| self.added.get_key_value(labels).map(|(labels, &id)| (id, labels)))
    }

    pub fn finish(self) -> Added {
        Added { identities: self.added, next: self.next }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocatorError {
    #[error("all 2^32 identity numbers are used; restart the agent with a fresh state directory")]
    Exhausted,
    #[error("the saved identity state is invalid: {0}; delete it to start afresh")]
    InvalidState(String),
}

/// The persisted form: a list is easier to read and diff than two mirrored maps, and JSON
/// map keys could not hold a label set anyway.
#[derive(Serialize, Deserialize)]
struct AllocatorState {
    next: u32,
    identities: Vec<SavedIdentity>,
}

#[derive(Serialize, Deserialize)]
struct SavedIdentity {
    id: u32,
    labels: Labels,
}

impl From<IdentityAllocator> for AllocatorState {
    fn from(allocator: IdentityAllocator) -> Self {
        let IdentityAllocator { by_labels, by_id, next } = allocator;
        // Then `by_id` holds the allocator's only copy of each label set, to move out.
        drop(by_labels);
        let identities =
            by_id.into_iter().map(|(id, labels)| SavedIdentity { id, labels: Arc::unwrap_or_clone(labels) }).collect();
        Self { next, identities }
    }
}

impl TryFrom<AllocatorState> for IdentityAllocator {
    type Error = AllocatorError;

    /// Rejects states that would break the allocator's promises: reserved or repeated
    /// numbers, a label set with two numbers, or a `next` that could hand out a used number.
    fn try_from(state: AllocatorState) -> Result<Self, Self::Error> {
        let invalid = |why: String| Err(AllocatorError::InvalidState(why));
        let mut allocator = IdentityAllocator { next: state.next, ..IdentityAllocator::new() };
        if state.next < FIRST_ALLOCATED {
            return invalid(format!("next identity {} is below {FIRST_ALLOCATED}", state.next));
        }
        for SavedIdentity { id, labels } in state.identities {
            if id < FIRST_ALLOCATED || id >= state.next {
                return invalid(format!("identity {id} is outside {FIRST_ALLOCATED}..{}", state.next));
            }
            let labels = Arc::new(labels);
            if allocator.by_id.insert(id, labels.clone()).is_some() {
                return invalid(format!("identity {id} appears twice"));
            }
            if allocator.by_labels.insert(labels.clone(), id).is_some() {
                return invalid(format!("labels {labels} have two identities"));
            }
        }
        Ok(allocator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(text: &str) -> Labels {
        Labels::parse(text).unwrap()
    }

    #[test]
    fn allocation_starts_at_first_allocated_and_is_stable() {
        let mut allocator = IdentityAllocator::new();
        let db = allocator.allocate(&labels("app=db")).unwrap();
        let web = allocator.allocate(&labels("app=web")).unwrap();
        assert_eq!((db, web), (FIRST_ALLOCATED, FIRST_ALLOCATED + 1));
        assert_eq!(allocator.allocate(&labels("app=db")).unwrap(), db);
        assert_eq!(allocator.labels(web), Some(&labels("app=web")));
    }

    #[test]
    fn an_allocation_numbers_as_the_allocator_would_and_changes_it_only_when_committed() {
        let mut allocator = IdentityAllocator::new();
        allocator.allocate(&labels("app=db")).unwrap();
        let mut direct = allocator.clone();
        let mut allocation = Allocation::new(&allocator);
        for text in ["app=web", "app=db", "app=cache", "app=web"] {
            assert_eq!(allocation.allocate(&labels(text)).unwrap(), direct.allocate(&labels(text)).unwrap(), "{text}");
        }
        assert_eq!(allocation.get(&labels("app=cache")), Some(FIRST_ALLOCATED + 2));
        let added = allocation.finish();
        assert_eq!(allocator.len(), 1, "nothing changes before the commit");
        allocator.commit(added);
        assert_eq!(allocator, direct);
        assert_eq!(allocator.allocate(&labels("app=new")).unwrap(), FIRST_ALLOCATED + 3);
    }

    #[test]
    fn allocator_survives_a_serde_round_trip() {
        let mut allocator = IdentityAllocator::new();
        allocator.allocate(&labels("app=db,env=prod")).unwrap();
        allocator.allocate(&Labels::cidr("10.0.0.0/8".parse().unwrap())).unwrap();
        let json = serde_json::to_string(&allocator).unwrap();
        let mut restored: IdentityAllocator = serde_json::from_str(&json).unwrap();
        assert_eq!(restored, allocator);
        assert_eq!(restored.allocate(&labels("app=new")).unwrap(), FIRST_ALLOCATED + 2);
    }

    #[test]
    fn corrupt_state_is_rejected() {
        let reserved = r#"{"next": 300, "identities": [{"id": 1, "labels": {"a": "b"}}]}"#;
        assert!(serde_json::from_str::<IdentityAllocator>(reserved).is_err());
        let twice = r#"{"next": 300, "identities": [{"id": 256, "labels": {"a": "b"}},
                                                     {"id": 257, "labels": {"a": "b"}}]}"#;
        assert!(serde_json::from_str::<IdentityAllocator>(twice).is_err());
        let behind = r#"{"next": 256, "identities": [{"id": 256, "labels": {"a": "b"}}]}"#;
        assert!(serde_json::from_str::<IdentityAllocator>(behind).is_err());
    }
}
