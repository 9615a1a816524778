//! Human tables, or JSON for scripts (`--output json`).

use serde_json::Value;

use super::Format;

pub struct Output {
    format: Format,
}

/// `a.b` looks into nested objects; arrays are joined with ", ".
fn field(v: &Value, path: &str) -> String {
    let mut cur = v;
    for part in path.split('.') {
        cur = &cur[part];
    }
    match cur {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

impl Output {
    pub fn new(format: Format) -> Output {
        Output { format }
    }

    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    pub fn print_json(&self, v: &Value) {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }

    pub fn message(&self, text: &str) {
        if self.json() {
            println!("{}", serde_json::json!({ "message": text }));
        } else {
            println!("{text}");
        }
    }

    /// One object as `label  value` lines.
    pub fn record(&self, v: &Value, fields: &[(&str, &str)]) {
        if self.json() {
            return self.print_json(v);
        }
        for (label, path) in fields {
            let value = field(v, path);
            if !value.is_empty() {
                println!("{label:<16} {value}");
            }
        }
    }

    /// An array of objects as aligned columns.
    pub fn table(&self, rows: &Value, columns: &[(&str, &str)]) {
        if self.json() {
            return self.print_json(rows);
        }
        let rows = rows.as_array().cloned().unwrap_or_default();
        if rows.is_empty() {
            println!("(none)");
            return;
        }
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| columns.iter().map(|(_, p)| field(r, p)).collect())
            .collect();
        let widths: Vec<usize> = columns
            .iter()
            .enumerate()
            .map(|(i, (h, _))| {
                cells
                    .iter()
                    .map(|c| c[i].chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(h.len())
            })
            .collect();
        let line = |vals: Vec<String>| {
            vals.iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        println!(
            "{}",
            line(columns.iter().map(|(h, _)| h.to_string()).collect())
        );
        for c in cells {
            println!("{}", line(c));
        }
    }
}
