//! `ztctl flows map`: a picture of who talks to whom — identities as boxes, observed edges as
//! arrows coloured (and patterned) by verdict — for those who would rather look than read.
//!
//! The data flow, one file per step: `input` (edges from the agent or a file) → `graph`
//! (identities and arrows) → `layout` (where everything goes) → `svg` (the picture), which
//! `html` wraps with a legend and a table of edges; `dot` writes the graph for Graphviz.

mod dot;
mod graph;
mod html;
mod input;
mod layout;
mod svg;

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use crate::{
    CliError, Ctx,
    duration::{format_duration, parse_duration},
    output::{self, Output},
};

#[derive(clap::Args, Debug)]
pub struct MapArgs {
    /// Only edges whose last flow is at most this old, e.g. 30s, 5m, 1h [default: all the
    /// agent keeps].
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    since: Option<Duration>,
    /// Draw the edges of this file instead of asking the agent: `ztctl flows map -o json`
    /// output, a JSON list of edges, or one edge per line.
    #[arg(long, value_name = "FILE")]
    edges: Option<PathBuf>,
    /// Where to write the map; `-` for standard output [default: zt-map.svg, .html, .dot or
    /// .json in the current directory, by -o].
    #[arg(long, value_name = "FILE")]
    output_file: Option<PathBuf>,
}

/// What `-o` makes of the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Svg,
    Html,
    Dot,
    /// The edges themselves, which `--edges` reads back.
    Json,
}

impl Kind {
    /// From `-o`, else from the output file's extension, else SVG.
    fn choose(output: Option<Output>, file: Option<&Path>) -> Result<Kind, CliError> {
        match output {
            Some(Output::Svg) => Ok(Kind::Svg),
            Some(Output::Html) => Ok(Kind::Html),
            Some(Output::Dot) => Ok(Kind::Dot),
            Some(Output::Json) => Ok(Kind::Json),
            Some(other) => Err(CliError::Usage(format!(
                "flows map draws -o svg, html or dot (or writes its edges with -o json), not -o {}",
                other.name()
            ))),
            None => Ok(match file.and_then(Path::extension).and_then(|e| e.to_str()) {
                Some("html" | "htm") => Kind::Html,
                Some("dot" | "gv") => Kind::Dot,
                Some("json") => Kind::Json,
                _ => Kind::Svg,
            }),
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Kind::Svg => "svg",
            Kind::Html => "html",
            Kind::Dot => "dot",
            Kind::Json => "json",
        }
    }
}

pub fn run(ctx: &mut Ctx, args: MapArgs) -> Result<(), CliError> {
    let kind = Kind::choose(ctx.output, args.output_file.as_deref())?;
    let period = match args.since {
        Some(d) => format!("the last {}", format_duration(d)),
        None => "all kept".to_string(),
    };
    let (edges, subtitle) = match &args.edges {
        Some(path) => {
            let edges = input::from_file(path, args.since, SystemTime::now())?;
            let subtitle = format!("edges of {period}, from {}", path.display());
            (edges, subtitle)
        }
        None => (input::from_agent(ctx, args.since)?, format!("edges of {period}, observed by the agent")),
    };
    let subtitle = if edges.dropped > 0 {
        eprintln!(
            "ztctl: the agent's edge table was full: {} edges were not recorded and are missing from the map; \
             `[flows] edges` in its configuration sizes the table",
            edges.dropped
        );
        format!("{subtitle} ({} more not recorded: the table was full)", edges.dropped)
    } else {
        subtitle
    };

    let graph = graph::Graph::build(&edges.edges);
    let text = match kind {
        Kind::Json => {
            let reply = zt_api::protocol::Reply::Edges { edges: edges.edges, dropped: edges.dropped };
            let mut buffer = Vec::new();
            output::json(&mut buffer, &reply)?;
            String::from_utf8(buffer).expect("JSON is UTF-8")
        }
        Kind::Dot => dot::dot(&graph, &subtitle),
        Kind::Svg | Kind::Html => {
            let picture = svg::svg(&graph, &layout::layout(&graph), &subtitle);
            if kind == Kind::Html { html::html(&graph, &picture, &subtitle) } else { picture }
        }
    };

    let path = args.output_file.unwrap_or_else(|| PathBuf::from(format!("zt-map.{}", kind.extension())));
    if path == Path::new("-") {
        ctx.out.write_all(text.as_bytes())?;
        return Ok(());
    }
    std::fs::write(&path, text)
        .map_err(|e| CliError::failed(format!("cannot write the map to {}: {e}", path.display())))?;
    if kind == Kind::Json {
        writeln!(ctx.out, "edges written to {} ({} edges)", path.display(), graph.edges.len())?;
    } else {
        writeln!(
            ctx.out,
            "map written to {} ({} identities, {} edges)",
            path.display(),
            graph.nodes.len(),
            graph.edges.len()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_comes_from_o_else_the_file_name_else_svg() {
        assert_eq!(Kind::choose(Some(Output::Html), Some(Path::new("m.svg"))).unwrap(), Kind::Html);
        assert_eq!(Kind::choose(None, Some(Path::new("m.html"))).unwrap(), Kind::Html);
        assert_eq!(Kind::choose(None, Some(Path::new("m.gv"))).unwrap(), Kind::Dot);
        assert_eq!(Kind::choose(None, None).unwrap(), Kind::Svg);
        match Kind::choose(Some(Output::Table), None) {
            Err(CliError::Usage(m)) => assert!(m.contains("not -o table"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
