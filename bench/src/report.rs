//! Turning results into `results.json`, `results.md` (Markdown tables, also printed) and
//! the plot, and judging each figure against the project's aims.

use std::{fmt::Write as _, path::Path};

use anyhow::Context;

use crate::{
    plot,
    results::{DatapathFigure, Results, Target},
    stats::Sample,
};

/// The project's aims (not test assertions), each with the figure that answers it.
pub fn targets(r: &Results) -> Vec<Target> {
    let mut t = Vec::new();
    for family in ["IPv4", "IPv6"] {
        // The worst table size is the one that counts.
        if let Some(f) = r
            .datapath
            .iter()
            .filter(|f| f.family == family && f.case == "established flow")
            .max_by(|a, b| a.ratio.median.total_cmp(&b.ratio.median))
        {
            t.push(Target {
                aim: format!("established-flow cost ≤ 5× the empty program ({family})"),
                measured: format!("{:.2}× at {} entries (worst size)", f.ratio.median, f.rules),
                met: f.ratio.median <= 5.0,
            });
        }
        // The physical-limit reference: what any stateful filter must do per packet.
        for (case, aim) in [
            ("established flow", 1.3),
            ("quarantined source", 1.2),
            ("repeated denied SYN (default-deny)", 1.5),
            ("repeated denied packet (UDP, default-deny)", 1.5),
            ("new flow denied (default-deny)", 4.0),
            ("new flow allowed", 8.0),
            ("new flow allowed, rate-limited (under the limit)", 8.0),
            ("new flow over its rate limit", 4.0),
            ("repeated packet over its rate limit (UDP)", 1.5),
        ] {
            if let Some(f) = r
                .datapath
                .iter()
                .filter(|f| f.family == family && f.case == case)
                .max_by(|a, b| a.reference_ratio.median.total_cmp(&b.reference_ratio.median))
            {
                t.push(Target {
                    aim: format!("{case} ≤ {aim}× the reference ({family})"),
                    measured: format!(
                        "{:.2}× ({:.1} vs {:.1} ns) at {} entries (worst size)",
                        f.reference_ratio.median, f.ns.median, f.reference_ns.median, f.rules
                    ),
                    met: f.reference_ratio.median <= aim,
                });
            }
        }
        for case in ["new flow denied (default-deny)", "new flow allowed"] {
            let at = |rules| r.datapath.iter().find(|f| f.family == family && f.case == case && f.rules == rules);
            if let (Some(small), Some(large)) = (at(10), at(100_000)) {
                let growth = large.ns.median / small.ns.median;
                t.push(Target {
                    aim: format!("cost at 100k rules ≤ 1.3× cost at 10 rules ({case}, {family})"),
                    measured: format!("{growth:.2}× ({:.1} ns vs {:.1} ns)", large.ns.median, small.ns.median),
                    met: growth <= 1.3,
                });
            }
        }
    }
    let e2e = |who: &str, traffic: &str, rules| {
        r.endtoend.iter().find(|f| f.contender == who && f.traffic == traffic && f.rules == rules).map(|f| f.pps.median)
    };
    if let Some(zt) = e2e("zt", "drop", 10_000) {
        for (other, aim) in [("nftables", 1.3), ("iptables", 10.0)] {
            if let Some(o) = e2e(other, "drop", 10_000) {
                let ratio = zt / o;
                t.push(Target {
                    aim: format!("end-to-end drop rate ≥ {aim}× {other} at 10k rules"),
                    measured: format!("{ratio:.2}× ({} vs {})", pps(zt), pps(o)),
                    met: ratio >= aim,
                });
            }
        }
    }
    if let Some(f) = r.bulk.iter().find(|f| f.contender == "zt default hook") {
        t.push(Target {
            aim: "bulk TCP on a veth with zt's default hook ≥ 0.95× no filter".into(),
            measured: format!("{:.2}× ({:.1} Gbit/s)", f.ratio.median, f.gbit_per_s.median),
            met: f.ratio.median >= 0.95,
        });
    }
    for (rules, aim_ms) in [(10_000, 50.0), (100_000, 500.0)] {
        if let Some(c) = r.control.iter().find(|c| c.rules == rules) {
            t.push(Target {
                aim: format!("{}k-rule push (compile + apply) ≤ {aim_ms} ms", rules / 1000),
                measured: format!(
                    "{:.1} ms (compile {:.1} + apply {:.1})",
                    c.push_ms.median, c.compile_ms.median, c.apply_ms.median
                ),
                met: c.push_ms.median <= aim_ms,
            });
        }
    }
    if let Some(c) = &r.change {
        t.push(Target {
            aim: format!("one-rule change to a {}k-rule policy (compile + apply) ≤ 20 ms", c.rules / 1000),
            measured: format!(
                "{:.1} ms (compile {:.1} + apply {:.1})",
                c.push_ms.median, c.compile_ms.median, c.apply_ms.median
            ),
            met: c.push_ms.median <= 20.0,
        });
    }
    if let Some(m) = &r.memory {
        t.push(Target {
            aim: format!("agent RSS with {}k rules ≤ 48 MiB", m.rules / 1000),
            measured: format!(
                "{:.1} MiB; kernel maps {:.1} MiB",
                m.agent_rss_kib as f64 / 1024.0,
                m.bpf_map_memlock_kib as f64 / 1024.0
            ),
            met: m.agent_rss_kib <= 48 * 1024,
        });
    }
    t
}

/// Writes the three files into `dir`; returns the Markdown.
pub fn write(r: &Results, dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let json = serde_json::to_string_pretty(r)?;
    std::fs::write(dir.join("results.json"), json).context("cannot write results.json")?;
    let md = markdown(r);
    std::fs::write(dir.join("results.md"), &md).context("cannot write results.md")?;
    if let Err(e) = plot::cost_vs_rules(&r.datapath, &dir.join("cost-vs-rules.svg")) {
        eprintln!("zt-bench: no plot: {e:#}");
    }
    Ok(md)
}

pub fn pps(v: f64) -> String {
    if v >= 1e6 { format!("{:.2} Mpps", v / 1e6) } else { format!("{:.1} kpps", v / 1e3) }
}

fn pps_sample(s: &Sample) -> String {
    format!("{} [{}–{}]", pps(s.median), pps(s.min), pps(s.max))
}

fn ns_cell(f: &DatapathFigure) -> String {
    format!(
        "{:.1} ns · {:.2}× [{:.2}–{:.2}] · ref {:.2}×",
        f.ns.median, f.ratio.median, f.ratio.min, f.ratio.max, f.reference_ratio.median
    )
}

pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(s, "# zt benchmarks{}\n", if r.plan.quick { " (quick run)" } else { "" });
    let _ = writeln!(
        s,
        "Machine: {} ({} cores, {} MiB), kernel {}; {}; {}. Wall time {:.0} s. Medians over {} rounds, \
         [min–max] over rounds; ratios are computed round by round against a baseline measured in the same round.\n",
        m.cpu_model, m.cores, m.memory_mib, m.kernel, m.rustc, m.rustc_nightly, r.wall_seconds, r.plan.rounds
    );

    let _ = writeln!(s, "## 1. Datapath cost per packet (BPF_PROG_TEST_RUN, real program and maps)\n");
    let _ = writeln!(
        s,
        "Each cell: ns per packet · ratio to the empty XDP program [ratio min–max] · ratio to the reference (an XDP program that parses Ethernet, IPv4/IPv6 and the ports and does one 5-tuple lookup in a hash table as large as CONNTRACK: the least any stateful filter must do). {} ipcache prefixes loaded at every size. \
         *New flow allowed* creates a conntrack entry per run, so it is measured once per packet over {} distinct tuples \
         per round (`repeat=1`), and its baseline is the empty program run the same way (one run per packet, so the fixed \
         cost of a test run is on both sides of the ratio); the other cases repeat one packet {} times per call.\n",
        r.plan.ipcache_prefixes, r.plan.new_flows, r.plan.repeat
    );
    let mut sizes: Vec<usize> = r.datapath.iter().map(|f| f.rules).collect();
    sizes.dedup();
    for family in ["IPv4", "IPv6"] {
        let figs: Vec<&DatapathFigure> = r.datapath.iter().filter(|f| f.family == family).collect();
        if figs.is_empty() {
            continue;
        }
        let _ = writeln!(s, "**{family}**\n");
        let _ = write!(s, "| case |");
        for n in &sizes {
            let _ = write!(s, " {n} entries |");
        }
        let _ = write!(s, "\n|---|");
        for _ in &sizes {
            let _ = write!(s, "---|");
        }
        s.push('\n');
        let mut cases: Vec<&str> = figs.iter().map(|f| f.case).collect();
        cases.dedup();
        let mut seen = Vec::new();
        for case in cases {
            if seen.contains(&case) {
                continue;
            }
            seen.push(case);
            let _ = write!(s, "| {case} |");
            for n in &sizes {
                let cell = figs.iter().find(|f| f.case == case && f.rules == *n).map_or("–".into(), |f| ns_cell(f));
                let _ = write!(s, " {cell} |");
            }
            s.push('\n');
        }
        let _ = write!(s, "| *reference: parse + one 5-tuple lookup (repeat)* |");
        for n in &sizes {
            let cell = figs
                .iter()
                .find(|f| f.rules == *n && f.case == "established flow")
                .map_or("–".into(), |f| format!("{:.1} ns", f.reference_ns.median));
            let _ = write!(s, " {cell} |");
        }
        s.push('\n');
        let _ = write!(s, "| *empty program (repeat)* |");
        for n in &sizes {
            let cell = figs
                .iter()
                .find(|f| f.rules == *n && !f.method.contains(" x "))
                .map_or("–".into(), |f| format!("{:.1} ns", f.baseline_ns.median));
            let _ = write!(s, " {cell} |");
        }
        let _ = write!(s, "\n| *empty program (repeat=1)* |");
        for n in &sizes {
            let cell = figs
                .iter()
                .find(|f| f.rules == *n && f.method.contains(" x "))
                .map_or("–".into(), |f| format!("{:.1} ns", f.baseline_ns.median));
            let _ = write!(s, " {cell} |");
        }
        s.push_str("\n\n");
    }
    s.push_str("Plot: `cost-vs-rules.svg`.\n\n");

    let _ = writeln!(s, "## 2. End-to-end on a veth pair (IPv4 UDP, minimum-size frames)\n");
    let _ = writeln!(
        s,
        "**Drop rate**: denied packets per second the filter disposes of (its own drop counter) while an XDP live-frames \
         sender saturates the link ({:.1} s per round after {:.1} s warm-up). **Pass rate**: allowed packets per second \
         delivered to a UDP socket. *No filter* drops nothing by rule: its drop rate is the stack discarding datagrams to \
         a closed port (UDP NoPorts). Allowed pair is the last of N (worst case for linear rules). Frames are sent \
         and filtered on one core (the receiving veth's NAPI runs as a softirq on the sending core), so a rate is \
         sender + veth + filter cost per packet; the offered load is in results.json (`offered_pps`).\n",
        r.plan.e2e_measure.as_secs_f64(),
        r.plan.e2e_warmup.as_secs_f64()
    );
    let _ =
        writeln!(s, "| traffic | rules | no filter | zt | nftables | iptables | zt/nft | zt/iptables | zt/no filter |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    let mut e2e_sizes: Vec<usize> = r.endtoend.iter().map(|f| f.rules).filter(|n| *n > 0).collect();
    e2e_sizes.dedup();
    for traffic in ["drop", "pass"] {
        let get = |who: &str, n: usize| {
            r.endtoend.iter().find(|f| f.contender == who && f.traffic == traffic && f.rules == n)
        };
        let none = get("no filter", 0);
        for &n in &e2e_sizes {
            let cell = |f: Option<&crate::results::EndToEndFigure>| f.map_or("–".into(), |f| pps_sample(&f.pps));
            let ratio =
                |a: Option<&crate::results::EndToEndFigure>, b: Option<&crate::results::EndToEndFigure>| match (a, b) {
                    (Some(a), Some(b)) if b.pps.median > 0.0 => format!("{:.2}×", a.pps.median / b.pps.median),
                    _ => "–".into(),
                };
            let zt = get("zt", n);
            let _ = writeln!(
                s,
                "| {traffic} | {n} | {} | {} | {} | {} | {} | {} | {} |",
                cell(none),
                cell(zt),
                cell(get("nftables", n)),
                cell(get("iptables", n)),
                ratio(zt, get("nftables", n)),
                ratio(zt, get("iptables", n)),
                ratio(zt, none)
            );
        }
    }
    s.push('\n');

    let _ = writeln!(s, "## 3. Control plane\n");
    let _ = writeln!(s, "| rules | YAML | POLICY entries | ipcache prefixes | compile (ms) | apply (ms) | push (ms) |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for c in &r.control {
        let _ = writeln!(
            s,
            "| {} | {} KiB | {} | {} | {} | {} | {} |",
            c.rules,
            c.yaml_bytes / 1024,
            c.policy_entries,
            c.ipcache_prefixes,
            c.compile_ms.show(1),
            c.apply_ms.show(1),
            c.push_ms.show(1)
        );
    }
    if let Some(c) = &r.change {
        let _ = writeln!(
            s,
            "\nOne rule changed in a running {}-rule policy of {} files, every file pushed again: compile {} ms \
             (only the changed file is read), apply {} ms ({} entries written, {} removed), push {} ms.",
            c.rules,
            c.files,
            c.compile_ms.show(1),
            c.apply_ms.show(1),
            c.written,
            c.removed,
            c.push_ms.show(1)
        );
    }
    if let Some(m) = &r.memory {
        let _ = writeln!(
            s,
            "\nAgent with {} rules: RSS {} KiB; {} BPF maps holding {} KiB of kernel memory (memlock).",
            m.rules, m.agent_rss_kib, m.bpf_maps, m.bpf_map_memlock_kib
        );
        let _ = writeln!(s, "\n| kernel map | max entries | KiB |\n|---|---|---|");
        for (name, entries, kib) in &m.per_map {
            let _ = writeln!(s, "| {name} | {entries} | {kib} |");
        }
    }
    s.push('\n');

    if let Some(f) = &r.flows {
        let _ = writeln!(s, "## 4. Flow pipeline (one core)\n");
        let _ = writeln!(s, "| stage | events/s |\n|---|---|");
        let _ = writeln!(
            s,
            "| ring-buffer drain + decode + enrich | {:.0} [{:.0}–{:.0}] |",
            f.decode_per_s.median, f.decode_per_s.min, f.decode_per_s.max
        );
        let _ = writeln!(
            s,
            "| JSON lines to a file | {:.0} [{:.0}–{:.0}] |",
            f.json_lines_per_s.median, f.json_lines_per_s.min, f.json_lines_per_s.max
        );
        let _ = writeln!(s, "\n{} events per round.\n", f.events_per_round);
    }

    if !r.bulk.is_empty() {
        let _ = writeln!(s, "## 5. Bulk TCP on a veth pair (iperf3, {} s per run)\n", r.plan.bulk_seconds);
        let _ = writeln!(s, "| filter | Gbit/s [min–max] | ratio to no filter [min–max] |\n|---|---|---|");
        for f in &r.bulk {
            let (g, q) = (&f.gbit_per_s, &f.ratio);
            let _ = writeln!(
                s,
                "| {} | {:.2} [{:.2}–{:.2}] | {:.2}× [{:.2}–{:.2}] |",
                f.contender, g.median, g.min, g.max, q.median, q.min, q.max
            );
        }
        s.push('\n');
    }

    let _ = writeln!(s, "## Aims\n\n| aim | measured | |\n|---|---|---|");
    for t in &r.targets {
        let _ = writeln!(s, "| {} | {} | {} |", t.aim, t.measured, if t.met { "met" } else { "**missed**" });
    }
    if !r.notes.is_empty() {
        s.push_str("\n## Notes\n\n");
        for n in &r.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        machine::Machine,
        plan::Plan,
        results::{BulkFigure, ChangeFigure, ControlFigure, EndToEndFigure},
    };

    fn results() -> Results {
        let s = |v: f64| Sample::new(vec![v, v, v]);
        let dp = |case, rules, ns: f64, base: f64| DatapathFigure {
            family: "IPv4",
            case,
            rules,
            policy_entries: rules,
            ipcache_prefixes: 100_000,
            method: "repeat=1000".into(),
            ns: s(ns),
            baseline_ns: s(base),
            ratio: s(ns).ratio_to(&s(base)),
            // The reference costs twice the empty program in these figures.
            reference_ns: s(2.0 * base),
            reference_ratio: s(ns).ratio_to(&s(2.0 * base)),
        };
        let e2e = |contender, pps| EndToEndFigure {
            contender,
            traffic: "drop",
            rules: 10_000,
            pps: s(pps),
            offered_pps: s(9e6),
        };
        Results {
            machine: Machine {
                kernel: "6.1".into(),
                cpu_model: "cpu".into(),
                cores: 2,
                memory_mib: 1024,
                rustc: "rustc".into(),
                rustc_nightly: "nightly".into(),
                nft: "nft".into(),
                iptables: "iptables".into(),
            },
            plan: Plan::new(true),
            wall_seconds: 1.0,
            datapath: vec![
                dp("established flow", 10, 40.0, 10.0),
                dp("established flow", 100_000, 60.0, 10.0),
                dp("new flow denied (default-deny)", 10, 100.0, 10.0),
                dp("new flow denied (default-deny)", 100_000, 120.0, 10.0),
            ],
            endtoend: vec![e2e("zt", 4e6), e2e("nftables", 1e6), e2e("iptables", 1e5)],
            control: vec![ControlFigure {
                rules: 10_000,
                yaml_bytes: 1,
                policy_entries: 1,
                ipcache_prefixes: 1,
                compile_ms: s(30.0),
                apply_ms: s(90.0),
                push_ms: s(120.0),
            }],
            change: Some(ChangeFigure {
                rules: 100_000,
                files: 100,
                compile_ms: s(15.0),
                apply_ms: s(3.0),
                push_ms: s(18.0),
                written: 1,
                removed: 1,
            }),
            memory: None,
            flows: None,
            bulk: vec![
                BulkFigure { contender: "no filter", gbit_per_s: s(15.0), ratio: s(1.0) },
                BulkFigure { contender: "zt default hook", gbit_per_s: s(14.7), ratio: s(0.98) },
                BulkFigure { contender: "zt native XDP", gbit_per_s: s(7.5), ratio: s(0.5) },
            ],
            targets: vec![],
            notes: vec![],
        }
    }

    fn verdict(targets: &[Target], aim_start: &str) -> bool {
        targets.iter().find(|t| t.aim.starts_with(aim_start)).unwrap_or_else(|| panic!("no aim {aim_start}")).met
    }

    #[test]
    fn each_aim_is_judged_on_its_own_figure() {
        let t = targets(&results());
        assert!(!verdict(&t, "established-flow cost ≤ 5×"), "the worst size (6×) decides");
        assert!(verdict(&t, "cost at 100k rules ≤ 1.3× cost at 10 rules (new flow denied"), "1.2× growth");
        assert!(verdict(&t, "end-to-end drop rate ≥ 1.3× nftables"));
        assert!(verdict(&t, "end-to-end drop rate ≥ 10× iptables"));
        assert!(!verdict(&t, "10k-rule push"), "120 ms is over 100 ms");
        assert!(verdict(&t, "one-rule change to a 100k-rule policy"), "18 ms is within 20 ms");
        assert!(verdict(&t, "bulk TCP on a veth with zt's default hook ≥ 0.95×"), "0.98×");
        assert!(!verdict(&t, "established flow ≤ 1.3× the reference"), "60 ns vs 20 ns: 3×");
        assert!(!verdict(&t, "new flow denied (default-deny) ≤ 4× the reference"), "120 ns vs 20 ns: 6× is over");
    }

    #[test]
    fn markdown_has_every_section_and_marks_missed_aims() {
        let mut r = results();
        r.targets = targets(&r);
        let md = markdown(&r);
        for heading in ["## 1. Datapath", "## 2. End-to-end", "## 3. Control plane", "## 5. Bulk TCP", "## Aims"] {
            assert!(md.contains(heading), "{heading} missing");
        }
        assert!(md.contains(
            "| established flow | 40.0 ns · 4.00× [4.00–4.00] · ref 2.00× | 60.0 ns · 6.00× [6.00–6.00] · ref 3.00× |"
        ));
        assert!(md.contains("| zt native XDP | 7.50 [7.50–7.50] | 0.50× [0.50–0.50] |"));
        assert!(md.contains("**missed**"));
        assert!(md.contains("| drop | 10000 | – | 4.00 Mpps [4.00 Mpps–4.00 Mpps] |"));
    }

    #[test]
    fn the_plot_is_an_svg_with_one_line_per_case() {
        let dir = zt_tests::Scratch::new("bench-plot").unwrap();
        let path = dir.join("plot.svg");
        plot::cost_vs_rules(&results().datapath, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("established flow (IPv4)"));
        assert!(svg.matches("<polyline").count() >= 2, "a line per case");
    }
}
