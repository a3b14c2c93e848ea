//! Tables as aligned plain text, for a terminal: `limoe compare` and `limoe runs`.

use std::fmt::Write as _;

/// `rows` (the header first) as columns two spaces apart, a line each with its trailing
/// spaces trimmed: the first column left-aligned, the others right-aligned when
/// `numbers_right` (columns of numbers), else left-aligned too.
pub fn plain_table(rows: &[Vec<String>], numbers_right: bool) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            (rows.iter().filter_map(|r| r.get(c)))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = (row.iter().zip(&widths).enumerate())
            .map(|(c, (cell, &w))| match c > 0 && numbers_right {
                true => format!("{cell:>w$}"),
                false => format!("{cell:<w$}"),
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::plain_table;

    #[test]
    fn columns_align_and_lines_end_without_spaces() {
        let rows: Vec<Vec<String>> = [["name", "value"], ["a", "1.5"], ["longer", "10"]]
            .map(|r| r.map(String::from).to_vec())
            .to_vec();
        assert_eq!(
            plain_table(&rows, true),
            "name    value\na         1.5\nlonger     10\n"
        );
        assert_eq!(
            plain_table(&rows, false),
            "name    value\na       1.5\nlonger  10\n"
        );
    }
}
