//! Medians and a plain-text table.

pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Rows of cells, with section headings, rendered with aligned columns.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Option<Vec<String>>>,
    sections: Vec<(usize, String)>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
            sections: Vec::new(),
        }
    }

    pub fn section(&mut self, title: &str) {
        self.sections.push((self.rows.len(), title.to_string()));
        self.rows.push(None);
    }

    pub fn row(&mut self, cells: &[&str]) {
        self.rows
            .push(Some(cells.iter().map(|s| s.to_string()).collect()));
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for row in self.rows.iter().flatten() {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                if i == 1 {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    if i + 1 < cells.len() {
                        out.push_str(&" ".repeat(pad));
                    }
                }
                out.push_str("  ");
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = line(&self.header);
        out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * widths.len()));
        out.push('\n');
        for (i, row) in self.rows.iter().enumerate() {
            match row {
                Some(cells) => out.push_str(&line(cells)),
                None => {
                    let title = &self.sections.iter().find(|(at, _)| *at == i).unwrap().1;
                    out.push_str(&format!("[{title}]\n"));
                }
            }
        }
        out
    }
}
