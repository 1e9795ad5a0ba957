//! Cluster objects the agent cannot take, set aside so the rest of the cluster is still
//! enforced. Each object stands on its own, as in Kubernetes: one invalid NetworkPolicy
//! must not hold back a pod label change elsewhere.
//!
//! When a cluster push is rejected and every problem is about a cluster source
//! (`kubernetes:<resource>/<key>`, as the rejection records each problem's source), those
//! objects are set aside and
//! the rest is pushed again in the same burst. A set-aside object is remembered by its
//! source name and text, so later bursts leave it out without compiling it again, until
//! it changes or is deleted. Where the object had a version the agent accepted before,
//! that version stays enforced in its place (an invalid edit of a NetworkPolicy does not
//! open what the policy closed); an object that never had a valid version is left out.
//! A problem that names no single cluster source (an operator's file, a size limit) keeps
//! the push refused as a whole. The agent's start does the same with the first list, so
//! an invalid object does not keep the agent from starting.
//!
//! The last accepted versions are saved in the state directory ([`ACCEPTED_FILE`]) and read
//! back at start, so an object edited into an invalid state while the agent was down (or
//! crashed) keeps its last accepted version enforced after the restart too, instead of
//! being left out — which for a NetworkPolicy would open what it closed. Saving every
//! push would write megabytes per watch event in a large cluster, so a push saves only
//! when [`SAVE_INTERVAL`] has passed since the last save, and the push loop saves what is
//! left once changes pause ([`SetAside::save_due_in`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::agent::{CLUSTER_SOURCE_PREFIX, Rejected};

/// How many times a push is tried again after setting objects aside (so at most three
/// compiles a burst).
pub const SET_ASIDE_RETRIES: usize = 2;

/// One object set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Aside {
    /// The text that was rejected.
    text: String,
    /// The problems the rejection named, joined by `; `.
    problem: String,
    /// The object is valid on its own: the problem is with another object (an address or a
    /// name both claim), so it is tried again in every burst instead of waiting for a change.
    relational: bool,
}

/// The file under the state directory holding the last accepted version of every cluster
/// object (a JSON object: source name -> text).
pub const ACCEPTED_FILE: &str = "cluster-accepted.json";

/// The least time between two saves of the last accepted versions.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(5);

/// The set-aside objects and the cluster sources the running policy holds.
#[derive(Debug, Default)]
pub struct SetAside {
    aside: BTreeMap<String, Aside>,
    /// The cluster sources of the last accepted push, as they were pushed.
    accepted: BTreeMap<String, String>,
    /// Where `accepted` is saved (`None`: kept in memory only).
    file: Option<PathBuf>,
    /// When `accepted` was last saved, and whether it changed since.
    saved_at: Option<Instant>,
    unsaved: bool,
}

impl SetAside {
    /// The last accepted versions an earlier agent saved in `state_dir` (none when there is
    /// no file; an unreadable one is reported and ignored), saved back there from now on.
    pub fn restored(state_dir: &Path) -> SetAside {
        let file = state_dir.join(ACCEPTED_FILE);
        let accepted = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                eprintln!(
                    "zt-agent: kubernetes: ignoring {}: {e}; cluster objects invalid at start have no last accepted version",
                    file.display()
                );
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        SetAside { accepted, file: Some(file), ..SetAside::default() }
    }

    /// How long until the last accepted versions are due to be saved (zero: now); `None`
    /// when they are saved already.
    pub fn save_due_in(&self) -> Option<Duration> {
        if !self.unsaved || self.file.is_none() {
            return None;
        }
        Some(self.saved_at.map_or(Duration::ZERO, |at| SAVE_INTERVAL.saturating_sub(at.elapsed())))
    }

    /// Saves the last accepted versions if they are due ([`Self::save_due_in`]).
    pub fn save_if_due(&mut self) {
        if self.save_due_in() == Some(Duration::ZERO) {
            self.save();
        }
    }

    /// Saves the last accepted versions now (atomically: a new file renamed over the old).
    pub fn save(&mut self) {
        let Some(file) = &self.file else { return };
        let written = std::fs::create_dir_all(file.parent().unwrap_or(Path::new(".")))
            .and_then(|()| crate::state_file::write_json(file, &self.accepted, false));
        match written {
            Ok(()) => {
                self.unsaved = false;
                self.saved_at = Some(Instant::now());
            }
            Err(e) => eprintln!(
                "zt-agent: kubernetes: cannot save the last accepted cluster objects to {}: {e}",
                file.display()
            ),
        }
    }

    /// How many objects are set aside.
    pub fn len(&self) -> usize {
        self.aside.len()
    }

    /// Whether no object is set aside.
    pub fn is_empty(&self) -> bool {
        self.aside.is_empty()
    }

    /// What to push for `current`, the cluster's objects: a set-aside object whose text is
    /// unchanged is pushed at its last accepted version, or left out if it had none; a
    /// changed one is tried again. Objects deleted since are forgotten; `log` gets a line
    /// for each.
    /// `None`: push `current` as it is (nothing is set aside).
    pub fn sources(&mut self, current: &[(String, String)], log: &mut Vec<String>) -> Option<Vec<(String, String)>> {
        if self.aside.is_empty() {
            return None;
        }
        let names: BTreeSet<&str> = current.iter().map(|(n, _)| n.as_str()).collect();
        self.aside.retain(|name, _| {
            let keep = names.contains(name.as_str());
            if !keep {
                log.push(format!("{name} is deleted; it is no longer set aside"));
            }
            keep
        });
        let sources = current
            .iter()
            .filter_map(|(name, text)| match self.aside.get(name) {
                Some(a) if a.text == *text && !a.relational => self.stand_in(name, text),
                _ => Some((name.clone(), text.clone())),
            })
            .collect();
        Some(sources)
    }

    /// The last accepted version of `name`, if it differs from the rejected `text`.
    fn stand_in(&self, name: &str, text: &str) -> Option<(String, String)> {
        self.accepted.get(name).filter(|old| *old != text).map(|old| (name.to_string(), old.clone()))
    }

    /// `pushed` (made by [`Self::sources`] from `current`) was rejected with `rejected`:
    /// sets aside every object the problems name and returns what to push instead, or
    /// `None` when a problem names no cluster object in `pushed` (the push is refused as a
    /// whole). `log` gets a line for each object newly set aside or with a new problem.
    pub fn reject(
        &mut self,
        current: &[(String, String)],
        pushed: &[(String, String)],
        rejected: &Rejected,
        log: &mut Vec<String>,
    ) -> Option<Vec<(String, String)>> {
        let pushed_texts: BTreeMap<&str, &str> = pushed.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        let mut problems: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for problem in &rejected.0 {
            let source = problem.source.as_deref().filter(|s| s.starts_with(CLUSTER_SOURCE_PREFIX))?;
            pushed_texts.get(source)?;
            problems.entry(source).or_default().push(&problem.sentence);
        }
        if problems.is_empty() {
            return None;
        }
        let current_texts: BTreeMap<&str, &str> = current.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        let mut replaced: BTreeMap<&str, Option<(String, String)>> = BTreeMap::new();
        for (name, lines) in problems {
            let pushed_text = pushed_texts[name];
            let problem = lines.join("; ");
            match current_texts.get(name) {
                Some(text) if *text == pushed_text => {
                    let relational = crate::policy::parse(&[(name, *text)]).is_ok();
                    let entry = Aside { text: text.to_string(), problem, relational };
                    let stand_in = self.stand_in(name, text);
                    if self.aside.get(name) != Some(&entry) {
                        let instead = if stand_in.is_some() {
                            "its last accepted version stays enforced"
                        } else {
                            "it is left out until it is fixed"
                        };
                        log.push(format!("{name} is set aside ({instead}): {}", entry.problem));
                    }
                    self.aside.insert(name.to_string(), entry);
                    replaced.insert(name, stand_in);
                }
                // The last accepted version stood in and fails too (against the other
                // objects now): the object is left out.
                _ => {
                    log.push(format!(
                        "{name}: its last accepted version is rejected too, so it is left out: {problem}"
                    ));
                    self.accepted.remove(name);
                    replaced.insert(name, None);
                }
            }
        }
        Some(
            pushed
                .iter()
                .filter_map(|(name, text)| match replaced.get(name.as_str()) {
                    Some(instead) => instead.clone(),
                    None => Some((name.clone(), text.clone())),
                })
                .collect(),
        )
    }

    /// `pushed`, made from `current`, is enforced now: it becomes the last accepted
    /// version of every object, and a set-aside object pushed at its current text is taken.
    pub fn accepted(&mut self, current: &[(String, String)], pushed: &[(String, String)], log: &mut Vec<String>) {
        // Most pushes change a few objects of thousands: only those are copied.
        let same_names = self.accepted.len() == pushed.len()
            && pushed.iter().all(|(name, _)| self.accepted.contains_key(name.as_str()));
        if same_names {
            for (name, text) in pushed {
                let old = self.accepted.get_mut(name.as_str()).expect("the same names");
                if old != text {
                    old.clone_from(text);
                    self.unsaved = true;
                }
            }
        } else {
            self.accepted = pushed.iter().cloned().collect();
            self.unsaved = true;
        }
        let current_texts: BTreeMap<&str, &str> = current.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
        self.aside.retain(|name, _| {
            let taken = current_texts
                .get(name.as_str())
                .is_some_and(|t| self.accepted.get(name).map(String::as_str) == Some(*t));
            if taken {
                log.push(format!("{name} is enforced now; it is no longer set aside"));
            }
            !taken
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zt_policy::generation::PushProblem;

    const BAD_NP: &str = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"bad","namespace":"x"},"spec":{"podSelector":{},"ingress":[{"ports":[{"port":70000}]}]}}"#;
    const GOOD_NP: &str = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"bad","namespace":"x"},"spec":{"podSelector":{},"ingress":[{"ports":[{"port":80}]}]}}"#;
    const NP: &str = "kubernetes:networkpolicies/x/bad";
    const NS: &str = "kubernetes:namespaces/x";
    const NS_TEXT: &str = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}}"#;

    fn s(name: &str, text: &str) -> (String, String) {
        (name.to_string(), text.to_string())
    }

    /// What the push loop pushes for `current`.
    fn pushed_for(a: &mut SetAside, current: &[(String, String)], log: &mut Vec<String>) -> Vec<(String, String)> {
        a.sources(current, log).unwrap_or_else(|| current.to_vec())
    }

    /// The rejection the parser gives for `sources`.
    fn rejection(sources: &[(String, String)]) -> Rejected {
        let errors = crate::policy::parse(sources).expect_err("invalid");
        Rejected(errors.iter().map(PushProblem::from).collect())
    }

    /// A problem about `source`'s first document.
    fn about(source: &str, what: &str) -> PushProblem {
        PushProblem { source: Some(source.to_string()), sentence: format!("policy {source}, document 1: {what}") }
    }

    #[test]
    fn a_problem_records_its_source_as_the_sync_names_it() {
        let r = rejection(&[s(NP, BAD_NP)]);
        assert_eq!(r.0[0].source.as_deref(), Some(NP), "{r}");
        // The sentence keeps a source to one line; the recorded source is the name itself.
        let odd = "kubernetes:networkpolicies/x/a\nb";
        let r = rejection(&[s(odd, BAD_NP)]);
        assert_eq!(r.0[0].source.as_deref(), Some(odd), "{r}");
    }

    #[test]
    fn an_invalid_new_object_is_left_out_and_skipped_until_it_changes() {
        let mut a = SetAside::default();
        let mut log = vec![];
        let current = vec![s(NS, NS_TEXT), s(NP, BAD_NP)];
        let pushed = pushed_for(&mut a, &current, &mut log);
        assert_eq!(pushed, current);
        let next = a.reject(&current, &pushed, &rejection(&pushed), &mut log).expect("set aside");
        assert_eq!(next, vec![s(NS, NS_TEXT)]);
        assert_eq!(log.len(), 1);
        assert!(
            log[0].starts_with(&format!("{NP} is set aside (it is left out until it is fixed): policy {NP}")),
            "{log:?}"
        );
        a.accepted(&current, &next, &mut log);
        assert_eq!(a.len(), 1);

        // A later burst leaves it out without trying it.
        assert_eq!(pushed_for(&mut a, &current, &mut log), vec![s(NS, NS_TEXT)]);
        // Fixed: tried, taken, reported once.
        let fixed = vec![s(NS, NS_TEXT), s(NP, GOOD_NP)];
        let pushed = pushed_for(&mut a, &fixed, &mut log);
        assert_eq!(pushed, fixed);
        a.accepted(&fixed, &pushed, &mut log);
        assert!(a.is_empty());
        assert_eq!(log.last().unwrap(), &format!("{NP} is enforced now; it is no longer set aside"));
    }

    #[test]
    fn the_last_accepted_versions_survive_a_restart_and_stand_in_for_an_edit_made_meanwhile() {
        let dir = std::env::temp_dir().join(format!("zt-aside-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut log = vec![];
        let good = vec![s(NS, NS_TEXT), s(NP, GOOD_NP)];
        let mut a = SetAside::restored(&dir);
        assert_eq!(a.save_due_in(), None, "nothing to save yet");
        a.accepted(&good, &good, &mut log);
        assert_eq!(a.save_due_in(), Some(Duration::ZERO), "never saved: due now");
        a.save_if_due();
        assert_eq!(a.save_due_in(), None);
        // A later change waits for the interval.
        let labelled = NS_TEXT.replace("\"x\"}", "\"x\",\"labels\":{\"a\":\"b\"}}");
        let edited = vec![s(NS, &labelled), s(NP, GOOD_NP)];
        a.accepted(&edited, &edited, &mut log);
        assert!(a.save_due_in().is_some_and(|d| d > Duration::ZERO && d <= SAVE_INTERVAL));
        a.save_if_due();
        assert!(a.save_due_in().is_some(), "not saved before the interval");
        drop(a);
        // Restarted with the policy edited into an invalid state meanwhile: the saved
        // version stands in for it.
        let mut b = SetAside::restored(&dir);
        let bad = vec![s(NS, NS_TEXT), s(NP, BAD_NP)];
        let pushed = pushed_for(&mut b, &bad, &mut log);
        let next = b.reject(&bad, &pushed, &rejection(&pushed), &mut log).expect("set aside");
        assert_eq!(next, good, "the saved version stands in");
        // An unreadable file is ignored.
        std::fs::write(dir.join(ACCEPTED_FILE), "not json").unwrap();
        let mut c = SetAside::restored(&dir);
        let next = c.reject(&bad, &bad, &rejection(&bad), &mut log).expect("set aside");
        assert_eq!(next, vec![s(NS, NS_TEXT)], "no stand-in: left out");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_invalid_edit_keeps_the_last_accepted_version() {
        let mut a = SetAside::default();
        let mut log = vec![];
        let good = vec![s(NS, NS_TEXT), s(NP, GOOD_NP)];
        a.accepted(&good, &good, &mut log);
        let bad = vec![s(NS, NS_TEXT), s(NP, BAD_NP)];
        let pushed = pushed_for(&mut a, &bad, &mut log);
        let next = a.reject(&bad, &pushed, &rejection(&pushed), &mut log).expect("set aside");
        assert_eq!(next, good, "the last accepted version stands in");
        assert!(log[0].contains("its last accepted version stays enforced"), "{log:?}");
        a.accepted(&bad, &next, &mut log);
        assert_eq!(log.len(), 1, "{log:?}");
        // Later bursts push the old version again, and nothing is logged twice.
        assert_eq!(pushed_for(&mut a, &bad, &mut log), good);
        assert_eq!(log.len(), 1);
        // Deleted: forgotten, said once.
        let gone = vec![s(NS, NS_TEXT)];
        assert_eq!(pushed_for(&mut a, &gone, &mut log), gone);
        assert!(a.is_empty());
        assert_eq!(log[1], format!("{NP} is deleted; it is no longer set aside"));
    }

    #[test]
    fn a_problem_without_a_cluster_source_refuses_the_whole_push() {
        let mut a = SetAside::default();
        let mut log = vec![];
        let current = vec![s(NP, BAD_NP)];
        let operator = Rejected(vec![about("db.yaml", "spec.x is wrong")]);
        assert_eq!(a.reject(&current, &current, &operator, &mut log), None);
        let limit = Rejected::of_push("the policy needs too many entries");
        assert_eq!(a.reject(&current, &current, &limit, &mut log), None);
        // A sentence that reads like a cluster object's is not one without its source.
        let worded = Rejected::of_push(format!("policy {NP}, document 1: spec.x is wrong"));
        assert_eq!(a.reject(&current, &current, &worded, &mut log), None);
        let mixed = Rejected(vec![rejection(&current).0[0].clone(), about("db.yaml", "x")]);
        assert_eq!(a.reject(&current, &current, &mixed, &mut log), None);
        assert!(a.is_empty() && log.is_empty());
    }

    #[test]
    fn a_failing_stand_in_is_left_out_too() {
        let mut a = SetAside::default();
        let mut log = vec![];
        let good = vec![s(NP, GOOD_NP)];
        a.accepted(&good, &good, &mut log);
        let bad = vec![s(NP, BAD_NP)];
        let pushed = pushed_for(&mut a, &bad, &mut log);
        let next = a.reject(&bad, &pushed, &rejection(&pushed), &mut log).unwrap();
        assert_eq!(next, good);
        // Say the old version now clashes with another object.
        let clash = Rejected(vec![about(NP, "the name is taken")]);
        let next = a.reject(&bad, &next, &clash, &mut log).unwrap();
        assert!(next.is_empty());
        a.accepted(&bad, &next, &mut log);
        assert!(pushed_for(&mut a, &bad, &mut log).is_empty(), "no stand-in any more");
    }

    #[test]
    fn an_object_valid_on_its_own_is_tried_again_in_every_burst() {
        let mut a = SetAside::default();
        let mut log = vec![];
        let current = vec![s(NS, NS_TEXT)];
        let clash = Rejected(vec![about(NS, "the name is taken")]);
        let next = a.reject(&current, &current, &clash, &mut log).unwrap();
        assert!(next.is_empty());
        a.accepted(&current, &next, &mut log);
        assert_eq!(pushed_for(&mut a, &current, &mut log), current, "retried: the clash may be gone");
        a.accepted(&current, &current, &mut log);
        assert!(a.is_empty(), "{log:?}");
    }
}
