//! The text format of `COPY ... FROM STDIN`: tab-separated columns, `\N` for NULL, and backslash
//! escapes for the characters that would end a column or a row.

/// Appends `value` escaped for the COPY text format.
pub fn push_escaped(out: &mut String, value: &str) {
    if !value
        .bytes()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// Appends the NULL marker.
pub fn push_null(out: &mut String) {
    out.push_str("\\N");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_only_what_copy_needs() {
        let mut s = String::new();
        push_escaped(&mut s, "plain 'text' \"ok\"");
        assert_eq!(s, "plain 'text' \"ok\"");
        s.clear();
        push_escaped(&mut s, "a\tb\nc\\d\re");
        assert_eq!(s, "a\\tb\\nc\\\\d\\re");
        s.clear();
        push_null(&mut s);
        assert_eq!(s, "\\N");
    }
}
