//! The Prometheus text exposition format (version 0.0.4): what `GET /metrics` answers.
//!
//! Every metric family is written as one block — `# HELP`, `# TYPE`, then its samples — so
//! a family's samples are never interleaved with another's, which strict parsers require.
//! Label values and help texts are escaped as the format says (`\\`, `\"`, `\n`).

use std::fmt::Write;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus metric types used by the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Builds one exposition document.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

/// Samples of one metric family; created by [`Exposition::family`].
pub struct Family<'a> {
    text: &'a mut String,
    name: &'static str,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts the family `name` with its help text and type; add samples to the result.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> Family<'_> {
        debug_assert!(valid_name(name), "metric name {name:?}");
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.name());
        Family { text: &mut self.text, name }
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &'static str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help).sample(&[], value);
    }

    pub fn finish(self) -> String {
        self.text
    }
}

impl Family<'_> {
    /// One sample of the family itself.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.sample_suffixed("", labels, value)
    }

    /// One sample named `<family><suffix>`: histograms write `_bucket`, `_sum` and `_count`.
    pub fn sample_suffixed(&mut self, suffix: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.text.push_str(self.name);
        self.text.push_str(suffix);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                debug_assert!(valid_label_name(k), "label name {k:?}");
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        self.text.push(' ');
        self.text.push_str(&format_value(value));
        self.text.push('\n');
        self
    }

    /// A histogram's cumulative buckets (upper bound, count at or below it), `+Inf`, sum and
    /// count, all with the same `labels`.
    pub fn histogram(&mut self, labels: &[(&str, &str)], buckets: &[(f64, u64)], sum: f64, count: u64) -> &mut Self {
        for &(le, n) in buckets {
            let le = format_value(le);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample_suffixed("_bucket", &with_le, n as f64);
        }
        let mut inf = labels.to_vec();
        inf.push(("le", "+Inf"));
        self.sample_suffixed("_bucket", &inf, count as f64);
        self.sample_suffixed("_sum", labels, sum);
        self.sample_suffixed("_count", labels, count as f64)
    }
}

/// Numbers as the format writes them: integers without a fraction, `+Inf`/`-Inf`/`NaN`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".to_string() } else { "-Inf".to_string() }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_has_help_type_and_labelled_samples() {
        let mut e = Exposition::new();
        e.family("zt_packets_total", Kind::Counter, "Packets.")
            .sample(&[("verdict", "allowed"), ("reason", "policy")], 3.0)
            .sample(&[("verdict", "denied"), ("reason", "default-deny")], 0.0);
        assert_eq!(
            e.finish(),
            "# HELP zt_packets_total Packets.\n# TYPE zt_packets_total counter\n\
             zt_packets_total{verdict=\"allowed\",reason=\"policy\"} 3\n\
             zt_packets_total{verdict=\"denied\",reason=\"default-deny\"} 0\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut e = Exposition::new();
        e.family("zt_x", Kind::Gauge, "a \\ b\nc").sample(&[("policy", "we\"ird\\na\nme")], 1.0);
        let text = e.finish();
        assert!(text.contains("# HELP zt_x a \\\\ b\\nc\n"), "{text}");
        assert!(text.contains("zt_x{policy=\"we\\\"ird\\\\na\\nme\"} 1\n"), "{text}");
    }

    #[test]
    fn values_are_integers_when_whole_and_special_values_are_spelled_out() {
        assert_eq!(format_value(42.0), "42");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(1e20), "100000000000000000000");
    }

    #[test]
    fn a_histogram_writes_cumulative_buckets_inf_sum_and_count() {
        let mut e = Exposition::new();
        e.family("zt_d_seconds", Kind::Histogram, "D.").histogram(&[], &[(0.1, 1), (1.0, 2)], 0.75, 3);
        let text = e.finish();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "zt_d_seconds_bucket{le=\"0.1\"} 1",
                "zt_d_seconds_bucket{le=\"1\"} 2",
                "zt_d_seconds_bucket{le=\"+Inf\"} 3",
                "zt_d_seconds_sum 0.75",
                "zt_d_seconds_count 3",
            ]
        );
    }

    #[test]
    fn names_follow_the_prometheus_grammar() {
        assert!(valid_name("zt_packets_total"));
        assert!(valid_name(":a1"));
        assert!(!valid_name("1abc"));
        assert!(!valid_name("zt-packets"));
        assert!(!valid_name(""));
    }
}
