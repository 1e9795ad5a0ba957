//! Policy: from `zt/v1` YAML to the maps the kernel enforces.
//!
//! ```text
//! files --load_path--> (name, text) --parse--> PolicySet --compile--> CompiledPolicy --> loader
//!                                       |                     |
//!                               Vec<PolicyError>        CompileError
//! ```
//! [`parse()`] validates a whole push and returns every error at once; [`compile()`] resolves
//! labels to identities (allocating new ones from the agent's
//! [`IdentityAllocator`](crate::identity::IdentityAllocator)) and produces the ipcache
//! prefixes and POLICY entries of one generation. Both are pure, so a rejected push leaves
//! the running policy untouched. [`CompiledPolicy::lookup`] answers exactly as the kernel
//! will, for `ztctl explain` and for tests.

pub mod compile;
pub mod error;
pub mod load;
pub mod model;
pub mod parse;
pub mod ports;

#[cfg(test)]
mod tests;

pub use compile::{
    CompileMemo, CompileSettings, CompiledPolicy, DefaultDeny, FailsafeRule, PolicyEntryKey, PolicyInfo, compile,
    compile_remembering,
};
pub use error::{CompileError, PolicyError, Problem};
pub use load::{load_path, load_paths};
pub use model::{Direction, Mode, Origin, PolicySet};
pub use parse::{ParseCache, parse, parse_cached};
