//! Text for a POSIX shell: what limoe prints or writes for a person or a script to run.

/// `text` quoted for a POSIX shell: inside single quotes, each `'` as `'\''`.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_for_a_shell() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's $x"), r"'it'\''s $x'");
    }
}
