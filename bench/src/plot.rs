//! `cost-vs-rules.svg`: datapath cost per packet against the number of policy entries, one
//! line per case (IPv4 solid, IPv6 dashed), the empty program as the floor. Drawn with
//! plotters' SVG backend; text is emitted as SVG `<text>`, so no font is needed to draw it.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use crate::results::DatapathFigure;

pub fn cost_vs_rules(figures: &[DatapathFigure], path: &Path) -> anyhow::Result<()> {
    let mut cases: Vec<&str> = Vec::new();
    for f in figures {
        if !cases.contains(&f.case) {
            cases.push(f.case);
        }
    }
    let xs: Vec<f64> = figures.iter().map(|f| f.rules as f64).collect();
    let (xmin, xmax) = (xs.iter().copied().fold(f64::MAX, f64::min), xs.iter().copied().fold(0.0, f64::max));
    if figures.is_empty() || xmin >= xmax {
        return Err(anyhow!("the plot needs datapath figures at two or more table sizes"));
    }
    let ymax = figures.iter().map(|f| f.ns.max.max(f.baseline_ns.max)).fold(0.0, f64::max) * 1.1;

    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("zt XDP datapath: cost per packet vs policy entries (median of rounds)", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((xmin * 0.8..xmax * 1.25).log_scale(), 0f64..ymax)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("policy entries (log scale; 100k ipcache prefixes loaded at every size)")
        .y_desc("ns per packet")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;

    // (label, IPv6, points)
    type Series = (String, bool, Vec<(f64, f64)>);
    let mut series: Vec<Series> = Vec::new();
    for family in ["IPv4", "IPv6"] {
        let v6 = family == "IPv6";
        for case in &cases {
            let pts: Vec<(f64, f64)> = figures
                .iter()
                .filter(|f| f.family == family && f.case == *case)
                .map(|f| (f.rules as f64, f.ns.median))
                .collect();
            series.push((format!("{case} ({family})"), v6, pts));
        }
        let base: Vec<(f64, f64)> = figures
            .iter()
            .filter(|f| f.family == family && f.method.starts_with("repeat=") && !f.method.contains(" x "))
            .fold(Vec::<(f64, f64)>::new(), |mut acc, f| {
                if !acc.iter().any(|(x, _)| *x == f.rules as f64) {
                    acc.push((f.rules as f64, f.baseline_ns.median));
                }
                acc
            });
        series.push((format!("empty program ({family})"), v6, base));
    }
    let per_family = cases.len() + 1;
    for (i, (name, dashed, pts)) in series.into_iter().enumerate() {
        let color = Palette99::pick(i % per_family).to_rgba();
        let style = color.stroke_width(2);
        let drawn = if dashed {
            chart.draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style))
        } else {
            chart.draw_series(LineSeries::new(pts.clone(), style))
        }
        .map_err(|e| anyhow!("{e}"))?;
        drawn.label(name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(|e| anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
