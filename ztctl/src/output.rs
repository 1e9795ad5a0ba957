//! How ztctl prints data: `-o table` (aligned columns for people, the default), `-o json`
//! and `-o yaml` (for programs; the API's own field names). `-o svg|html|dot` are the
//! pictures of `flows map`. Writes go through `io::Result` so a closed pipe
//! (`ztctl flows | head`) ends the command quietly instead of panicking.

use std::io::{self, Write};

use clap::ValueEnum;
use serde::Serialize;

/// The format of a data command's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// What `-o` may name: a data format, or a picture of `flows map`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
    Svg,
    Html,
    Dot,
}

impl Output {
    pub fn name(self) -> &'static str {
        match self {
            Output::Table => "table",
            Output::Json => "json",
            Output::Yaml => "yaml",
            Output::Svg => "svg",
            Output::Html => "html",
            Output::Dot => "dot",
        }
    }

    /// The data format this names; the picture formats are refused with where they belong.
    pub fn data(self) -> Result<Format, String> {
        match self {
            Output::Table => Ok(Format::Table),
            Output::Json => Ok(Format::Json),
            Output::Yaml => Ok(Format::Yaml),
            picture => Err(format!(
                "-o {} is a picture of `ztctl flows map`; this command prints table, json or yaml",
                picture.name()
            )),
        }
    }
}

/// Columns separated by two spaces, each as wide as its widest cell.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { rows: vec![header.iter().map(|h| h.to_string()).collect()] }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| self.rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Pretty JSON, one document.
pub fn json<T: Serialize + ?Sized>(out: &mut (impl Write + ?Sized), value: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::other)?;
    writeln!(out)
}

/// YAML, one document.
pub fn yaml<T: Serialize + ?Sized>(out: &mut (impl Write + ?Sized), value: &T) -> io::Result<()> {
    out.write_all(serde_norway::to_string(value).map_err(io::Error::other)?.as_bytes())
}

/// Prints `value` as `format` asks; `table` renders the people's view.
pub fn data<T: Serialize + ?Sized>(
    out: &mut (impl Write + ?Sized),
    format: Format,
    value: &T,
    table: impl FnOnce() -> String,
) -> io::Result<()> {
    match format {
        Format::Table => out.write_all(table().as_bytes()),
        Format::Json => json(out, value),
        Format::Yaml => yaml(out, value),
    }
}

/// `app=web,env=prod`, or `-` for no labels.
pub fn labels(labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".into();
    }
    zt_api::labels::text(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_the_last() {
        let mut t = Table::new(&["IP", "EXPIRES"]);
        t.row(vec!["198.18.0.9".into(), "never".into()]);
        t.row(vec!["fd00::1".into(), "5m".into()]);
        assert_eq!(t.render(), "IP          EXPIRES\n198.18.0.9  never\nfd00::1     5m\n");
    }

    #[test]
    fn labels_print_compactly() {
        let l = std::collections::BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("reserved:host".to_string(), String::new()),
        ]);
        assert_eq!(labels(&l), "app=web,reserved:host");
        assert_eq!(labels(&Default::default()), "-");
    }
}
