//! Text that came from a request, made safe to repeat: clipped before it is copied into a
//! response, an Event or a log line, and escaped before it is logged.
//!
//! A claim or pod name in a request can be megabytes long and hold newlines. Copied once per
//! node into a filter answer it multiplies the response (one 105 KiB request answered with
//! 100 MB); written raw into a log it forges log lines.

use std::{borrow::Cow, fmt};

/// Longest reason stork writes per node into an extender answer, and longest Event message or
/// webhook warning built from request values. A Kubernetes object name is at most 253 bytes,
/// so a real claim name survives whole in a reason; a hostile one is cut.
pub const MAX_REASON_BYTES: usize = 200;

/// Longest request value written into one log field.
pub const MAX_LOG_VALUE_BYTES: usize = 256;

/// `text` cut to at most `max` bytes on a character boundary, with `…` marking the cut.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    const MARK: &str = "…";
    let mut end = max.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{MARK}", &text[..end]))
}

/// [`clip`] to [`MAX_REASON_BYTES`], with control characters escaped: reasons and warnings
/// reach `kubectl describe` and a terminal's `Warning:` line, where an escape sequence from a
/// claim name would be interpreted.
pub fn clip_reason(text: String) -> String {
    let text = if text.contains(char::is_control) {
        let mut escaped = String::with_capacity(text.len() + 8);
        let _ = write_escaped(&mut escaped, &text);
        escaped
    } else {
        text
    };
    match clip(&text, MAX_REASON_BYTES) {
        Cow::Borrowed(_) => text,
        Cow::Owned(cut) => cut,
    }
}

/// A request value as a log field: control characters escaped (`\n`, `\u{1b}`), at most
/// [`MAX_LOG_VALUE_BYTES`] of it, and its full length when it was cut.
#[derive(Clone, Copy)]
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = clip(self.0, MAX_LOG_VALUE_BYTES);
        write_escaped(f, shown.trim_end_matches('…'))?;
        if shown.len() < self.0.len() {
            write!(f, "…({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Writes `text` with every control character escaped as Rust escapes it.
pub fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = rest.find(char::is_control) {
        out.write_str(&rest[..at])?;
        let c = rest[at..].chars().next().unwrap_or_default();
        write!(out, "{}", c.escape_default())?;
        rest = &rest[at + c.len_utf8()..];
    }
    out.write_str(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_is_cut_on_a_char_boundary_with_a_mark() {
        assert!(matches!(clip("pvc-1", 200), Cow::Borrowed("pvc-1")));
        let long = "é".repeat(300);
        let cut = clip(&long, 200);
        assert!(cut.len() <= 200, "{} bytes", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(clip_reason("x".repeat(10_000)).len(), MAX_REASON_BYTES);
        assert_eq!(clip_reason("pvc x\u{1b}[2J".into()), "pvc x\\u{1b}[2J");
    }

    #[test]
    fn untrusted_values_log_without_raw_newlines_and_say_how_long_they_were() {
        let forged = "a\nFORGED-LOG-LINE level=ERROR\r\u{1b}[31m";
        let shown = Untrusted(forged).to_string();
        assert!(!shown.contains(['\n', '\r', '\u{1b}']), "{shown}");
        assert!(shown.contains("a\\nFORGED-LOG-LINE"), "{shown}");
        let huge = "x".repeat(1 << 20);
        let shown = Untrusted(&huge).to_string();
        assert!(shown.len() < 300 && shown.ends_with("…(1048576 bytes)"), "{}", &shown[shown.len() - 30..]);
    }
}
