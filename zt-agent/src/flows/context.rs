//! What enrichment needs to turn numbers into names: identity labels, policy names and
//! interface names. The agent replaces the whole context on every policy push; readers
//! take a cheap snapshot per record batch.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use zt_api::labels::Labels;

pub use zt_api::record::Names;

/// Shared, swappable naming context.
#[derive(Clone, Default)]
pub struct FlowContext {
    inner: Arc<RwLock<Arc<Names>>>,
}

impl FlowContext {
    pub fn new(names: Names) -> FlowContext {
        FlowContext { inner: Arc::new(RwLock::new(Arc::new(names))) }
    }

    pub fn snapshot(&self) -> Arc<Names> {
        self.inner.read().expect("flow context lock").clone()
    }

    pub fn replace(&self, names: Names) {
        *self.inner.write().expect("flow context lock") = Arc::new(names);
    }

    /// Names interface `ifindex` (one attached while running), keeping everything else.
    pub fn name_interface(&self, ifindex: u32, name: String) {
        let mut guard = self.inner.write().expect("flow context lock");
        let mut names = (**guard).clone();
        names.interfaces.insert(ifindex, name);
        *guard = Arc::new(names);
    }

    /// Updates the policy-derived part, keeping interface names.
    pub fn update_policy(&self, identities: HashMap<u32, Arc<Labels>>, policies: HashMap<u32, String>) {
        let mut guard = self.inner.write().expect("flow context lock");
        let interfaces = guard.interfaces.clone();
        *guard = Arc::new(Names { identities, policies, interfaces });
    }
}
