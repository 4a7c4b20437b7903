//! Rendering answers for people (`-o table`, the default) or programs (`-o json`).
//!
//! Tables show the main fields in aligned columns; `-o json` prints the API's own JSON, pretty, so
//! scripts see exactly what the controller said. Text that came from the server is stripped of
//! control characters before it reaches a terminal.

use std::io::Write;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::Reply;
use crate::error::CliError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns of the main fields.
    Table,
    /// The API's JSON, pretty-printed.
    Json,
}

/// A resource that can be shown as a table row and as a detail view.
pub trait View {
    fn headers() -> &'static [&'static str];
    fn row(&self) -> Vec<String>;
    /// `show`'s vertical view; defaults to the row's fields.
    fn details(&self) -> Vec<(&'static str, String)> {
        Self::headers().iter().copied().zip(self.row()).collect()
    }
}

/// Columns aligned on the widest cell; the last column is not padded.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Table { headers: headers.iter().map(|h| (*h).to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| clean(c)).collect());
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).chain([self.headers.len()]).max().unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, cell) in line.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                if i + 1 < line.len() {
                    let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count());
                    text.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key: value` lines with the values aligned.
pub fn details(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.chars().count() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let label = format!("{}:", key.to_ascii_lowercase());
        out.push_str(format!("{label:<width$}  {}", clean(value)).trim_end());
        out.push('\n');
    }
    out
}

/// A cell's text: control characters escaped (a description's newline must not break the table, an
/// escape sequence must not reach the terminal), an empty value shown as `-`.
pub fn clean(text: &str) -> String {
    if text.is_empty() {
        return "-".to_string();
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// `-` for nothing.
pub fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A JSON scalar as plain text, anything else as compact JSON.
pub fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Where results go, and in which format.
pub struct Output<'a> {
    pub format: Format,
    w: &'a mut dyn Write,
}

impl<'a> Output<'a> {
    pub fn new(format: Format, w: &'a mut dyn Write) -> Self {
        Output { format, w }
    }

    pub fn text(&mut self, text: &str) -> Result<(), CliError> {
        self.w.write_all(text.as_bytes())?;
        Ok(())
    }

    pub fn line(&mut self, text: &str) -> Result<(), CliError> {
        writeln!(self.w, "{text}")?;
        Ok(())
    }

    pub fn json(&mut self, value: &Value) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
        writeln!(self.w, "{text}")?;
        Ok(())
    }

    /// One resource: the raw JSON, or the detail view (`detail`) or a one-row table.
    pub fn one<T: View + DeserializeOwned>(&mut self, reply: &Reply, detail: bool) -> Result<(), CliError> {
        if self.format == Format::Json {
            return self.json(&reply.value()?);
        }
        let item: T = reply.decode()?;
        if detail {
            self.text(&details(&item.details()))
        } else {
            let mut table = Table::new(T::headers());
            table.row(item.row());
            self.text(&table.render())
        }
    }

    /// A `{"items": [...]}` answer, keeping only the items `keep` accepts.
    pub fn list<T: View + DeserializeOwned>(
        &mut self,
        reply: &Reply,
        keep: &dyn Fn(&Value) -> bool,
    ) -> Result<(), CliError> {
        let mut value = reply.value()?;
        let Some(items) = value.get_mut("items").and_then(Value::as_array_mut) else {
            return Err(CliError::BadResponse { url: reply.url.clone(), why: "no \"items\" list".into() });
        };
        items.retain(|item| keep(item));
        if self.format == Format::Json {
            return self.json(&value);
        }
        let mut table = Table::new(T::headers());
        for item in items.iter() {
            let item: T = serde_json::from_value(item.clone()).map_err(|e| CliError::BadResponse {
                url: reply.url.clone(),
                why: format!("an item does not match the API: {e}"),
            })?;
            table.row(item.row());
        }
        self.text(&table.render())
    }

    /// An answer with no shared type yet (DR): raw JSON, or its top-level fields.
    pub fn generic(&mut self, reply: &Reply) -> Result<(), CliError> {
        let value = reply.value()?;
        match (&value, self.format) {
            (_, Format::Json) => self.json(&value),
            (Value::Object(map), Format::Table) => {
                let pairs: Vec<(&str, String)> = map.iter().map(|(k, v)| (k.as_str(), scalar(v))).collect();
                self.text(&details(&pairs))
            }
            (Value::Null, Format::Table) => Ok(()),
            (other, Format::Table) => self.line(&clean(&scalar(other))),
        }
    }

    /// A confirmation for answers without a body (DELETE → 204); nothing in JSON mode.
    pub fn done(&mut self, message: &str) -> Result<(), CliError> {
        if self.format == Format::Json {
            return Ok(());
        }
        self.line(&clean(message))
    }
}

/// Keeps every item.
pub fn all(_: &Value) -> bool {
    true
}

/// Keeps the items of `tenant` (all items when `None`).
pub fn of_tenant(tenant: Option<&str>) -> impl Fn(&Value) -> bool + '_ {
    move |item| match tenant {
        None => true,
        Some(t) => item.get("tenant").and_then(Value::as_str) == Some(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["NAME", "VCPUS", "DESCRIPTION"]);
        t.row(vec!["finance".into(), "16".into(), "money\nand more".into()]);
        t.row(vec!["hr".into(), "4".into(), String::new()]);
        assert_eq!(
            t.render(),
            "NAME     VCPUS  DESCRIPTION\n\
             finance  16     money\\nand more\n\
             hr       4      -\n"
        );
        assert_eq!(Table::new(&["A", "B"]).render(), "A  B\n");
    }

    #[test]
    fn detail_view_and_cleaning() {
        let text = details(&[("NAME", "web".into()), ("ANTI_AFFINITY", String::new())]);
        assert_eq!(text, "name:           web\nanti_affinity:  -\n");
        assert_eq!(clean("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(opt(None::<u32>), "-");
        assert_eq!(opt(Some(3)), "3");
        assert_eq!(scalar(&serde_json::json!("x")), "x");
        assert_eq!(scalar(&serde_json::json!([1, 2])), "[1,2]");
    }

    #[test]
    fn tenant_filter() {
        let keep = of_tenant(Some("a"));
        assert!(keep(&serde_json::json!({"tenant": "a"})));
        assert!(!keep(&serde_json::json!({"tenant": "b"})));
        assert!(of_tenant(None)(&serde_json::json!({})));
    }
}
