//! Tables, YAML and JSON for the plugin's answers, and ages as kubectl prints them.

use std::io::Write;

use clap::ValueEnum;
use jiff::Timestamp;
use serde::Serialize;

use super::Error;

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns, as kubectl prints.
    Table,
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

/// A table under construction.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&'static str]) -> Self {
        Self { header: header.to_vec(), rows: Vec::new() }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the table, columns padded to their widest cell, three spaces apart as kubectl does.
    pub fn write(&self, out: &mut dyn Write) -> Result<(), Error> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut line = |cells: Vec<&str>| -> Result<(), Error> {
            let mut text = String::new();
            for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(c);
                } else {
                    text.push_str(&format!("{c:<w$}   "));
                }
            }
            writeln!(out, "{}", text.trim_end()).map_err(io)
        };
        line(self.header.clone())?;
        for r in &self.rows {
            line(r.iter().map(String::as_str).collect())?;
        }
        Ok(())
    }
}

/// Writes `value` as YAML or JSON.
pub fn write_data<T: Serialize>(value: &T, format: Format, out: &mut dyn Write) -> Result<(), Error> {
    let text = match format {
        Format::Json => {
            serde_json::to_string_pretty(value).map(|s| s + "\n").map_err(|e| Error::Failed(e.to_string()))?
        }
        _ => serde_saphyr::to_string(value).map_err(|e| Error::Failed(e.to_string()))?,
    };
    out.write_all(text.as_bytes()).map_err(io)
}

/// An I/O error writing the answer.
pub fn io(e: std::io::Error) -> Error {
    Error::Failed(format!("writing the output: {e}"))
}

/// Age as kubectl prints it (`45s`, `3m`, `5h`, `12d`), from `then` to `now`.
pub fn age(then: Option<Timestamp>, now: Timestamp) -> String {
    let Some(then) = then else { return "<unknown>".into() };
    let secs = now.as_second().saturating_sub(then.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_like_kubectl_and_ages_read_like_kubectl() {
        let mut t = Table::new(&["NAME", "STATUS", "AGE"]);
        t.row(vec!["nightly".into(), "Ready".into(), "5m".into()]);
        t.row(vec!["a".into(), "Pending".into(), "12s".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME      STATUS    AGE\nnightly   Ready     5m\na         Pending   12s\n"
        );
        let now: Timestamp = "2024-01-10T00:00:00Z".parse().unwrap();
        let ago = |s: i64| Some(Timestamp::from_second(now.as_second() - s).unwrap());
        assert_eq!(
            [age(ago(45), now), age(ago(600), now), age(ago(18_000), now), age(ago(864_000), now)],
            ["45s", "10m", "5h", "10d"]
        );
    }
}
