//! Step 5, rate limits: every rate-limited ingress allow rule of an enforcing policy gets an
//! index (1-based, in policy-id then rule order, so an unchanged policy keeps its indexes
//! from push to push), and every POLICY value whose verdict that rule decided names it. The
//! kernel then charges a new flow to the source's bucket of exactly the rule that admitted
//! it; the merged verdict of a key already names one deciding rule, so nothing else merges.

use std::collections::HashMap;

use zt_common::policy::PolicyValue;
use zt_common::ratelimit::{RATE_LIMITS_PER_SLOT, RateLimit};
use zt_common::reason;

use super::PolicyEntryKey;
use super::resolve::Resolved;
use crate::policy::error::CompileError;
use crate::policy::model::Action;

/// Rate-limited rules one generation may have (index 0 means "none").
pub const MAX_RATE_LIMITS: usize = RATE_LIMITS_PER_SLOT as usize - 1;

/// Numbers the limits and stamps their indexes into `entries`; returns the limits, where
/// index `i` is `limits[i - 1]`.
pub(super) fn attach(
    resolved: &Resolved,
    entries: &mut [(PolicyEntryKey, PolicyValue)],
) -> Result<Vec<RateLimit>, CompileError> {
    let mut limits = Vec::new();
    let mut index_of: HashMap<(u32, u32), u16> = HashMap::new();
    let limited = resolved
        .rules()
        .filter(|rule| rule.direction == reason::DIR_INGRESS && rule.action == Action::Allow && rule.enforcing);
    for rule in limited {
        let Some(limit) = rule.rate_limit else { continue };
        if limits.len() == MAX_RATE_LIMITS {
            let count = resolved.rules().filter(|r| r.rate_limit.is_some()).count();
            return Err(CompileError::TooManyRateLimits { count, limit: MAX_RATE_LIMITS });
        }
        limits.push(limit.to_kernel());
        index_of.insert((rule.policy_id, rule.rule), limits.len() as u16);
    }
    if limits.is_empty() {
        return Ok(limits);
    }
    for (key, value) in entries.iter_mut() {
        let decided_by_allow_rule = key.direction == reason::DIR_INGRESS
            && value.verdict == reason::VERDICT_ALLOWED
            && value.reason == reason::POLICY;
        if let Some(&index) = index_of.get(&(value.policy_id, value.rule)).filter(|_| decided_by_allow_rule) {
            *value = value.with_rate_limit(index);
        }
    }
    Ok(limits)
}
