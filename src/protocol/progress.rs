//! Progress reports, an optional extension of the protocol (docs/protocol.md, section 9): a
//! worker may write `@wh:progress <N> [message]` on a line of its stderr, N a whole percent
//! from 0 to 100. This module only reads such a line; no I/O.
//!
//! The grammar, on one stderr line (without its `\n`, a trailing `\r` removed):
//!
//! ```text
//! progress-line = *WSP "@wh:progress" 1*WSP percent [1*WSP message] *WSP
//! percent       = 1*3DIGIT             ; 0 to 100, leading zeros allowed ("007")
//! message       = the rest of the line, its trailing WSP removed
//! WSP           = SP / HTAB
//! ```
//!
//! Anything else (another case, no space after the keyword, `50%`, `50.5`, `-1`, `101`, a
//! prefix such as a logger's `INFO:`) is not a progress report: the line is an ordinary log
//! line. In a message, control characters become spaces and only the first
//! [`PROGRESS_MESSAGE_MAX_CHARS`] characters are kept; an empty message is no message.

/// The keyword that starts a progress line.
pub const PROGRESS_KEYWORD: &str = "@wh:progress";

/// The longest message kept, in characters; the rest is cut off.
pub const PROGRESS_MESSAGE_MAX_CHARS: usize = 500;

/// One progress report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Whole percent, 0 to 100.
    pub percent: u8,
    /// What the worker is doing, if it said.
    pub message: Option<String>,
}

fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The progress report on `line` (one stderr line without its line ending), or `None` when
/// the line is an ordinary log line.
pub fn parse_progress(line: &str) -> Option<Progress> {
    let rest = line.trim_matches(is_wsp).strip_prefix(PROGRESS_KEYWORD)?;
    // At least one space or tab between the keyword and the number.
    let rest = rest.strip_prefix(is_wsp)?.trim_start_matches(is_wsp);
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if !(1..=3).contains(&digits) {
        return None;
    }
    let (number, rest) = rest.split_at(digits);
    let percent: u8 = number.parse().ok().filter(|n| *n <= 100)?;
    // The number ends the line or is followed by whitespace: `50%` and `50.5` are not reports.
    if !rest.is_empty() && !rest.starts_with(is_wsp) {
        return None;
    }
    let message: String = rest
        .trim_start_matches(is_wsp)
        .chars()
        .take(PROGRESS_MESSAGE_MAX_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    // Cutting may leave trailing whitespace (or a control character turned into a space).
    let message = message.trim_end_matches(is_wsp);
    Some(Progress {
        percent,
        message: (!message.is_empty()).then(|| message.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(percent: u8, message: Option<&str>) -> Option<Progress> {
        Some(Progress {
            percent,
            message: message.map(str::to_string),
        })
    }

    #[test]
    fn reports() {
        assert_eq!(parse_progress("@wh:progress 0"), report(0, None));
        assert_eq!(parse_progress("@wh:progress 42"), report(42, None));
        assert_eq!(parse_progress("@wh:progress 100"), report(100, None));
        assert_eq!(
            parse_progress("@wh:progress 40 downloading page 3/7"),
            report(40, Some("downloading page 3/7"))
        );
        assert_eq!(parse_progress("@wh:progress 007"), report(7, None));
        assert_eq!(parse_progress("@wh:progress 050 ok"), report(50, Some("ok")));
    }

    #[test]
    fn whitespace_around_and_between() {
        assert_eq!(
            parse_progress("  \t@wh:progress\t 5  two  spaces kept \t "),
            report(5, Some("two  spaces kept"))
        );
        assert_eq!(parse_progress("@wh:progress 5 \t "), report(5, None));
        assert_eq!(parse_progress("@wh:progress 5\t\tx"), report(5, Some("x")));
    }

    #[test]
    fn ordinary_log_lines() {
        for line in [
            "",
            "@wh:progress",
            "@wh:progress ",
            "@wh:progress50",
            "@wh:progress x",
            "@wh:progress 101",
            "@wh:progress 255",
            "@wh:progress 1000",
            "@wh:progress 0100",
            "@wh:progress -1",
            "@wh:progress +5",
            "@wh:progress 50%",
            "@wh:progress 50.5",
            "@wh:progress 5e1",
            "@wh:progress 50,done",
            "@WH:PROGRESS 50",
            "@wh:Progress 50",
            "@wh:progressbar 50",
            "INFO:worker:@wh:progress 50",
            "progress 50",
            "@wh:progress\u{a0}50",
            "@wh:progress ５０",
        ] {
            assert_eq!(parse_progress(line), None, "{line:?}");
        }
    }

    #[test]
    fn messages_are_one_clean_bounded_line() {
        assert_eq!(
            parse_progress("@wh:progress 1 a\u{7}b\u{1b}[0mc"),
            report(1, Some("a b [0mc"))
        );
        assert_eq!(parse_progress("@wh:progress 1 \u{7}"), report(1, None));
        let long = format!("@wh:progress 99 {}", "é".repeat(PROGRESS_MESSAGE_MAX_CHARS + 50));
        let got = parse_progress(&long).unwrap().message.unwrap();
        assert_eq!(got.chars().count(), PROGRESS_MESSAGE_MAX_CHARS);
        assert!(got.chars().all(|c| c == 'é'));
        // Cut just after a space: the space goes too.
        let edge = format!(
            "@wh:progress 9 {} tail",
            "x".repeat(PROGRESS_MESSAGE_MAX_CHARS - 1)
        );
        let got = parse_progress(&edge).unwrap().message.unwrap();
        assert_eq!(got, "x".repeat(PROGRESS_MESSAGE_MAX_CHARS - 1));
        assert_eq!(
            parse_progress("@wh:progress 3 naïve 日本語 🎉"),
            report(3, Some("naïve 日本語 🎉"))
        );
    }
}
