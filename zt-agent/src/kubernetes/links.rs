//! This node's pod interfaces: the host side of each pod's veth, found by name patterns
//! (`lxc*`, `cali*`, `veth*` by default).

/// Whether `name` matches the glob `pattern` (`*` any run of characters, `?` one).
pub fn matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some((b'?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// Whether `name` matches any of `patterns`.
pub fn is_pod_link(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| matches(p, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(matches("lxc*", "lxc1a2b"));
        assert!(matches("veth*", "veth"));
        assert!(matches("cali?x", "cali1x"));
        assert!(!matches("cali*", "xcali1"));
        assert!(!matches("lxc?", "lxc"));
        assert!(is_pod_link(&["a*".into(), "pod-*".into()], "pod-x"));
    }
}
