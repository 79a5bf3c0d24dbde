//! A JSON reader that agrees with CPython 3.11's `json.loads`.
//!
//! The `basic` profile of `wh test-worker` must reach the same verdicts as the
//! reference harness, which judges a worker's stdout with
//! `json.loads(stdout_text)` (default arguments, so `strict=True`) and then
//! inspects the result with Python semantics. This module accepts exactly the
//! documents that call accepts, rejects exactly the ones it rejects (with the
//! same message and position), and keeps just enough of the value to answer
//! Python-style questions: truthiness, `key in dict`, and `type(x).__name__`.
//!
//! What it is not: a general JSON library. It deliberately accepts things
//! RFC 8259 forbids (`NaN`, `Infinity`, `-Infinity`, lone surrogate escapes)
//! and keeps numbers as their source text. Strict RFC 8259 parsing elsewhere
//! in `wh` uses `serde_json`.
//!
//! Known, intentional deviations from CPython, all forced by Rust:
//! - a lone surrogate escape (`"\ud800"`) becomes U+FFFD, because a Rust
//!   `String` cannot hold a surrogate (so two object keys differing only in
//!   their lone surrogates become one key here, last value winning);
//! - nesting deeper than [`MAX_DEPTH`] arrays/objects is an error (CPython
//!   raises `RecursionError` near its recursion limit of 1000).
//!
//! Like CPython (`sys.get_int_max_str_digits()` defaults to 4300), an integer
//! with more than 4300 digits is rejected; CPython raises `ValueError` there,
//! this module returns a [`PyJsonError`] carrying the same message.
//!
//! The parser is iterative (an explicit stack, no recursion), runs in time and
//! memory linear in the input, and uses no `unsafe`.

use std::collections::HashMap;
use std::fmt;

/// Deepest nesting of arrays/objects that is accepted; one more is an error.
pub const MAX_DEPTH: usize = 990;

/// CPython's default `sys.get_int_max_str_digits()`.
const INT_MAX_STR_DIGITS: usize = 4300;

/// A value as Python's `json.loads` would build it (reduced to what we need).
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `null` → `None`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number as written in the document, with its Python truthiness
    /// precomputed. `NaN`, `Infinity` and `-Infinity` land here too
    /// (text as written, `truthy = true`).
    Number { text: String, truthy: bool },
    /// A string; lone surrogate escapes are replaced by U+FFFD.
    Str(String),
    /// An array → `list`.
    List(Vec<PyValue>),
    /// An object → `dict`: unique keys in first-seen order, last value wins.
    Dict(Vec<(String, PyValue)>),
}

impl PyValue {
    /// Python truthiness: `None`, `False`, `0`, `0.0`, `-0.0`, `""`, `[]`, `{}`
    /// are falsy; everything else (including `NaN`) is truthy.
    pub fn truthy(&self) -> bool {
        match self {
            PyValue::Null => false,
            PyValue::Bool(b) => *b,
            PyValue::Number { truthy, .. } => *truthy,
            PyValue::Str(s) => !s.is_empty(),
            PyValue::List(items) => !items.is_empty(),
            PyValue::Dict(entries) => !entries.is_empty(),
        }
    }

    /// `value[key]` when `key in value` for a dict; `None` if the key is
    /// absent or the value is not a dict.
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        match self {
            PyValue::Dict(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Whether this is a JSON object (a Python `dict`).
    pub fn is_dict(&self) -> bool {
        matches!(self, PyValue::Dict(_))
    }

    /// Python's `type(x).__name__`, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            PyValue::Null => "NoneType",
            PyValue::Bool(_) => "bool",
            PyValue::Number { text, .. } if is_int_text(text) => "int",
            PyValue::Number { .. } => "float",
            PyValue::Str(_) => "str",
            PyValue::List(_) => "list",
            PyValue::Dict(_) => "dict",
        }
    }
}

/// True for number text that Python would turn into an `int`.
fn is_int_text(text: &str) -> bool {
    text.bytes().all(|b| b == b'-' || b.is_ascii_digit())
}

/// Why a document was rejected, positioned like Python's `JSONDecodeError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyJsonError {
    /// The message in CPython's wording, e.g. `"Expecting value"`.
    pub message: String,
    /// 1-based line (`lineno`).
    pub line: usize,
    /// 1-based column in characters (`colno`).
    pub column: usize,
    /// 0-based offset in characters (`pos`).
    pub offset: usize,
}

impl PyJsonError {
    /// Build an error at byte offset `byte_pos` of `text`, converting to
    /// character-based line/column/offset the way `JSONDecodeError` does.
    fn at(text: &str, byte_pos: usize, message: impl Into<String>) -> Self {
        let mut byte_pos = byte_pos.min(text.len());
        while !text.is_char_boundary(byte_pos) {
            byte_pos -= 1;
        }
        let before = &text[..byte_pos];
        let (line, line_start) = match before.rfind('\n') {
            Some(nl) => (before.matches('\n').count() + 1, nl + 1),
            None => (1, 0),
        };
        PyJsonError {
            message: message.into(),
            line,
            column: before[line_start..].chars().count() + 1,
            offset: before.chars().count(),
        }
    }
}

impl fmt::Display for PyJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: line {} column {} (char {})",
            self.message, self.line, self.column, self.offset
        )
    }
}

impl std::error::Error for PyJsonError {}

/// Parse `text` exactly like CPython 3.11's `json.loads(text)`.
pub fn loads(text: &str) -> Result<PyValue, PyJsonError> {
    if text.starts_with('\u{feff}') {
        return Err(PyJsonError::at(
            text,
            0,
            "Unexpected UTF-8 BOM (decode using utf-8-sig)",
        ));
    }
    let parser = Parser {
        bytes: text.as_bytes(),
        text,
    };
    let start = parser.skip_ws(0);
    let (value, end) = parser
        .parse_document(start)
        .map_err(|e| PyJsonError::at(text, e.pos, e.message))?;
    let end = parser.skip_ws(end);
    if end != text.len() {
        return Err(PyJsonError::at(text, end, "Extra data"));
    }
    Ok(value)
}

/// An error at a byte offset, converted to a [`PyJsonError`] at the end.
struct RawError {
    pos: usize,
    message: String,
}

type Parsed<T> = Result<(T, usize), RawError>;

fn raw(pos: usize, message: &str) -> RawError {
    RawError {
        pos,
        message: message.to_owned(),
    }
}

/// A container whose elements are still being read.
enum Frame {
    List(Vec<PyValue>),
    Dict {
        entries: Vec<(String, PyValue)>,
        index: HashMap<String, usize>,
        /// The key whose value is being read.
        key: String,
    },
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
}

impl Parser<'_> {
    /// Skip JSON whitespace (`' '`, `'\t'`, `'\n'`, `'\r'` only).
    fn skip_ws(&self, mut pos: usize) -> usize {
        while matches!(self.bytes.get(pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            pos += 1;
        }
        pos
    }

    /// Read one value starting at `pos` (whitespace already skipped), in the
    /// same order CPython's recursive scanner would, but with an explicit
    /// stack. Returns the value and the byte offset just after it.
    fn parse_document(&self, mut pos: usize) -> Parsed<PyValue> {
        let mut stack: Vec<Frame> = Vec::new();
        'value: loop {
            // A value is expected at `pos`.
            let mut value = match self.bytes.get(pos) {
                Some(&open @ (b'[' | b'{')) => {
                    if stack.len() >= MAX_DEPTH {
                        let kind = if open == b'[' { "array" } else { "object" };
                        return Err(RawError {
                            pos,
                            message: format!(
                                "maximum recursion depth exceeded while decoding \
                                 a JSON {kind} from a unicode string"
                            ),
                        });
                    }
                    pos = self.skip_ws(pos + 1);
                    if open == b'[' {
                        if self.bytes.get(pos) == Some(&b']') {
                            pos += 1;
                            PyValue::List(Vec::new())
                        } else {
                            stack.push(Frame::List(Vec::new()));
                            continue 'value;
                        }
                    } else if self.bytes.get(pos) == Some(&b'}') {
                        pos += 1;
                        PyValue::Dict(Vec::new())
                    } else {
                        let (key, next) = self.parse_key(pos)?;
                        pos = next;
                        stack.push(Frame::Dict {
                            entries: Vec::new(),
                            index: HashMap::new(),
                            key,
                        });
                        continue 'value;
                    }
                }
                _ => {
                    let (value, next) = self.parse_scalar(pos)?;
                    pos = next;
                    value
                }
            };

            // `value` is complete: hand it to the enclosing containers,
            // closing as many of them as the input closes.
            loop {
                let Some(frame) = stack.pop() else {
                    return Ok((value, pos));
                };
                pos = self.skip_ws(pos);
                let next = self.bytes.get(pos).copied();
                match frame {
                    Frame::List(mut items) => {
                        items.push(value);
                        match next {
                            Some(b']') => {
                                pos += 1;
                                value = PyValue::List(items);
                            }
                            Some(b',') => {
                                pos = self.skip_ws(pos + 1);
                                stack.push(Frame::List(items));
                                continue 'value;
                            }
                            _ => return Err(raw(pos, "Expecting ',' delimiter")),
                        }
                    }
                    Frame::Dict {
                        mut entries,
                        mut index,
                        key,
                    } => {
                        match index.get(&key) {
                            Some(&i) => entries[i].1 = value,
                            None => {
                                index.insert(key.clone(), entries.len());
                                entries.push((key, value));
                            }
                        }
                        match next {
                            Some(b'}') => {
                                pos += 1;
                                value = PyValue::Dict(entries);
                            }
                            Some(b',') => {
                                let (key, after) = self.parse_key(self.skip_ws(pos + 1))?;
                                pos = after;
                                stack.push(Frame::Dict { entries, index, key });
                                continue 'value;
                            }
                            _ => return Err(raw(pos, "Expecting ',' delimiter")),
                        }
                    }
                }
            }
        }
    }

    /// Read `"key" ws : ws` at `pos`; returns the key and the offset where
    /// its value should start.
    fn parse_key(&self, pos: usize) -> Parsed<String> {
        if self.bytes.get(pos) != Some(&b'"') {
            return Err(raw(pos, "Expecting property name enclosed in double quotes"));
        }
        let (key, after) = self.parse_string(pos + 1)?;
        let colon = self.skip_ws(after);
        if self.bytes.get(colon) != Some(&b':') {
            return Err(raw(colon, "Expecting ':' delimiter"));
        }
        Ok((key, self.skip_ws(colon + 1)))
    }

    /// Read a string, literal or number at `pos`.
    fn parse_scalar(&self, pos: usize) -> Parsed<PyValue> {
        let rest = &self.bytes[pos.min(self.bytes.len())..];
        let constant = |text: &str, value: PyValue| -> Option<Parsed<PyValue>> {
            rest.starts_with(text.as_bytes())
                .then(|| Ok((value, pos + text.len())))
        };
        let special = |text: &str| PyValue::Number {
            text: text.to_owned(),
            truthy: true,
        };
        let found = match rest.first() {
            None => return Err(raw(pos, "Expecting value")),
            Some(b'"') => {
                let (s, next) = self.parse_string(pos + 1)?;
                return Ok((PyValue::Str(s), next));
            }
            Some(b'n') => constant("null", PyValue::Null),
            Some(b't') => constant("true", PyValue::Bool(true)),
            Some(b'f') => constant("false", PyValue::Bool(false)),
            Some(b'N') => constant("NaN", special("NaN")),
            Some(b'I') => constant("Infinity", special("Infinity")),
            Some(b'-') => constant("-Infinity", special("-Infinity")),
            Some(_) => None,
        };
        match found {
            Some(result) => result,
            None => self.parse_number(pos),
        }
    }

    /// Match `-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?` greedily at `pos`.
    fn parse_number(&self, start: usize) -> Parsed<PyValue> {
        let digits_from = |mut i: usize| {
            while self.bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut pos = start;
        if self.bytes.get(pos) == Some(&b'-') {
            pos += 1;
        }
        let int_start = pos;
        pos = match self.bytes.get(pos) {
            Some(b'0') => pos + 1,
            Some(b'1'..=b'9') => digits_from(pos + 1),
            _ => return Err(raw(start, "Expecting value")),
        };
        let int_end = pos;
        let mut is_float = false;
        if self.bytes.get(pos) == Some(&b'.') && self.bytes.get(pos + 1).is_some_and(u8::is_ascii_digit) {
            is_float = true;
            pos = digits_from(pos + 2);
        }
        if matches!(self.bytes.get(pos), Some(b'e' | b'E')) {
            let mut exp = pos + 1;
            if matches!(self.bytes.get(exp), Some(b'+' | b'-')) {
                exp += 1;
            }
            let exp_end = digits_from(exp);
            if exp_end > exp {
                is_float = true;
                pos = exp_end;
            }
        }
        let text = &self.text[start..pos];
        let truthy = if is_float {
            // Rust's parser rounds correctly: 1e400 → inf, 1e-400 → 0.0;
            // and -0.0 == 0.0.
            text.parse::<f64>() != Ok(0.0)
        } else {
            let digits = int_end - int_start;
            if digits > INT_MAX_STR_DIGITS {
                return Err(RawError {
                    pos: start,
                    message: format!(
                        "Exceeds the limit ({INT_MAX_STR_DIGITS} digits) for integer \
                         string conversion: value has {digits} digits; use \
                         sys.set_int_max_str_digits() to increase the limit"
                    ),
                });
            }
            self.bytes[int_start..int_end].iter().any(|&b| b != b'0')
        };
        Ok((
            PyValue::Number {
                text: text.to_owned(),
                truthy,
            },
            pos,
        ))
    }

    /// Read the rest of a string whose opening quote is at `start - 1`.
    /// Returns the decoded string and the offset after the closing quote.
    fn parse_string(&self, start: usize) -> Parsed<String> {
        let bytes = self.bytes;
        let quote = start - 1;
        let unterminated = || raw(quote, "Unterminated string starting at");
        let mut out = String::new();
        let mut pos = start;
        loop {
            // Copy the run up to the next quote or backslash. Multi-byte
            // UTF-8 sequences never contain bytes below 0x80, so scanning
            // bytes is exact.
            let mut end = pos;
            loop {
                match bytes.get(end) {
                    None => return Err(unterminated()),
                    Some(b'"' | b'\\') => break,
                    Some(&b) if b < 0x20 => {
                        return Err(raw(end, "Invalid control character at"));
                    }
                    Some(_) => end += 1,
                }
            }
            out.push_str(&self.text[pos..end]);
            if bytes[end] == b'"' {
                return Ok((out, end + 1));
            }
            // A backslash at `end`.
            let escaped = match bytes.get(end + 1) {
                None => return Err(unterminated()),
                Some(b'u') => None,
                Some(b'"') => Some('"'),
                Some(b'\\') => Some('\\'),
                Some(b'/') => Some('/'),
                Some(b'b') => Some('\u{8}'),
                Some(b'f') => Some('\u{c}'),
                Some(b'n') => Some('\n'),
                Some(b'r') => Some('\r'),
                Some(b't') => Some('\t'),
                Some(_) => return Err(raw(end, "Invalid \\escape")),
            };
            if let Some(c) = escaped {
                out.push(c);
                pos = end + 2;
                continue;
            }
            let (unit, after) = self.unicode_escape(end)?;
            pos = after;
            let c = if (0xD800..0xDC00).contains(&unit) {
                // A high surrogate combines with an immediately following
                // low-surrogate escape; CPython only looks for the pair when
                // at least one more character follows it.
                match self.peek_unicode_escape(pos) {
                    Some(low) if (0xDC00..0xE000).contains(&low) && pos + 6 < bytes.len() => {
                        pos += 6;
                        char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                    }
                    _ => None,
                }
            } else {
                char::from_u32(unit)
            };
            // Lone surrogates cannot live in a Rust string.
            out.push(c.unwrap_or('\u{FFFD}'));
        }
    }

    /// Decode the `\uXXXX` escape whose backslash is at `backslash`. Like
    /// CPython, it is an error if the four hex digits are missing or invalid,
    /// or if nothing at all follows them (the string would be unterminated).
    fn unicode_escape(&self, backslash: usize) -> Parsed<u32> {
        let end = backslash + 6;
        match self.hex4(backslash + 2) {
            Some(unit) if end < self.bytes.len() => Ok((unit, end)),
            _ => Err(raw(backslash + 1, "Invalid \\uXXXX escape")),
        }
    }

    /// The code unit of a well-formed `\uXXXX` at `pos`, if there is one.
    fn peek_unicode_escape(&self, pos: usize) -> Option<u32> {
        if self.bytes.get(pos..pos + 2)? == b"\\u" {
            self.hex4(pos + 2)
        } else {
            None
        }
    }

    /// Four ASCII hex digits (either case) at `pos`.
    fn hex4(&self, pos: usize) -> Option<u32> {
        let digits = self.bytes.get(pos..pos + 4)?;
        digits.iter().try_fold(0u32, |acc, &b| {
            let d = (b as char).to_digit(16)?;
            Some(acc << 4 | d)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str, truthy: bool) -> PyValue {
        PyValue::Number {
            text: text.to_owned(),
            truthy,
        }
    }

    fn s(text: &str) -> PyValue {
        PyValue::Str(text.to_owned())
    }

    /// The error for `input`, as Python's `str(JSONDecodeError)`.
    fn err(input: &str) -> String {
        match loads(input) {
            Ok(v) => panic!("{input:?} unexpectedly parsed as {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn ok(input: &str) -> PyValue {
        loads(input).unwrap_or_else(|e| panic!("{input:?} failed: {e}"))
    }

    #[test]
    fn literals() {
        assert_eq!(ok("null"), PyValue::Null);
        assert_eq!(ok("true"), PyValue::Bool(true));
        assert_eq!(ok("false"), PyValue::Bool(false));
        assert_eq!(ok("NaN"), num("NaN", true));
        assert_eq!(ok("Infinity"), num("Infinity", true));
        assert_eq!(ok("-Infinity"), num("-Infinity", true));
        assert_eq!(ok("[NaN,-Infinity]").type_name(), "list");
        assert_eq!(ok("NaN").type_name(), "float");
        assert_eq!(ok("-Infinity").type_name(), "float");
        // Case-sensitive, no prefixes.
        assert_eq!(err("nan"), "Expecting value: line 1 column 1 (char 0)");
        assert_eq!(err("infinity"), "Expecting value: line 1 column 1 (char 0)");
        assert_eq!(err("-infinity"), "Expecting value: line 1 column 1 (char 0)");
        assert_eq!(err("None"), "Expecting value: line 1 column 1 (char 0)");
        assert_eq!(err("True"), "Expecting value: line 1 column 1 (char 0)");
        assert_eq!(err("nul"), "Expecting value: line 1 column 1 (char 0)");
        assert_eq!(err("truex"), "Extra data: line 1 column 5 (char 4)");
        assert_eq!(err("nulll"), "Extra data: line 1 column 5 (char 4)");
    }

    #[test]
    fn numbers() {
        assert_eq!(ok("0"), num("0", false));
        assert_eq!(ok("-0"), num("-0", false));
        assert_eq!(ok("-0").type_name(), "int");
        assert_eq!(ok("0.0"), num("0.0", false));
        assert_eq!(ok("-0.0"), num("-0.0", false));
        assert_eq!(ok("0.0").type_name(), "float");
        assert_eq!(ok("0e5"), num("0e5", false));
        assert_eq!(ok("0e5").type_name(), "float");
        assert_eq!(ok("1E+2"), num("1E+2", true));
        assert_eq!(ok("1e-400"), num("1e-400", false));
        assert_eq!(ok("1e400"), num("1e400", true));
        assert_eq!(ok("-1e400"), num("-1e400", true));
        assert_eq!(ok("5e-324"), num("5e-324", true));
        assert_eq!(ok("2e-324"), num("2e-324", false));
        assert_eq!(ok("0.000001"), num("0.000001", true));
        assert_eq!(ok("12"), num("12", true));
        assert_eq!(ok("12").type_name(), "int");
        assert_eq!(ok("-12.5e3").type_name(), "float");
        let big = "123456789".repeat(40);
        assert_eq!(ok(&big), num(&big, true));
        assert_eq!(ok(&big).type_name(), "int");
        assert_eq!(ok(&"1".repeat(4300)).type_name(), "int");
        assert_eq!(ok(&format!("-{}", "1".repeat(4300))).type_name(), "int");
        assert!(err(&"1".repeat(4301)).starts_with(
            "Exceeds the limit (4300 digits) for integer string conversion: \
                 value has 4301 digits"
        ));
        // Long mantissas: 0.000…01e5000 is 1.0 (truthy); 1e-5011 underflows.
        let long_float = format!("0.{}1e5000", "0".repeat(4999));
        assert!(ok(&long_float).truthy());
        let tiny = format!("0.{}1e-10", "0".repeat(5000));
        assert!(!ok(&tiny).truthy());
        assert_eq!(
            ok("[1e99999999999999999999]"),
            PyValue::List(vec![num("1e99999999999999999999", true)])
        );
    }

    #[test]
    fn malformed_numbers() {
        assert_eq!(err("01"), "Extra data: line 1 column 2 (char 1)");
        assert_eq!(err("-01"), "Extra data: line 1 column 3 (char 2)");
        assert_eq!(err("1."), "Extra data: line 1 column 2 (char 1)");
        assert_eq!(err("1.e5"), "Extra data: line 1 column 2 (char 1)");
        assert_eq!(err("1e"), "Extra data: line 1 column 2 (char 1)");
        assert_eq!(err("1e+"), "Extra data: line 1 column 2 (char 1)");
        assert_eq!(err("1.5e-"), "Extra data: line 1 column 4 (char 3)");
        assert_eq!(err("-"), "Expecting value: line 1 column 1 (char 0)");
        assert_eq!(err("-a"), "Expecting value: line 1 column 1 (char 0)");
        assert_eq!(err("+1"), "Expecting value: line 1 column 1 (char 0)");
        assert_eq!(err(".5"), "Expecting value: line 1 column 1 (char 0)");
        assert_eq!(err("[1.]"), "Expecting ',' delimiter: line 1 column 3 (char 2)");
        assert_eq!(err("[-]"), "Expecting value: line 1 column 2 (char 1)");
        assert_eq!(err("[01]"), "Expecting ',' delimiter: line 1 column 3 (char 2)");
        assert_eq!(err("0x10"), "Extra data: line 1 column 2 (char 1)");
    }

    #[test]
    fn strings() {
        assert_eq!(ok(r#""""#), s(""));
        assert_eq!(ok(r#""a\"b\\c\/d\b\f\n\r\t""#), s("a\"b\\c/d\u{8}\u{c}\n\r\t"));
        assert_eq!(ok(r#""\u00e9\u00E9""#), s("éé"));
        assert_eq!(ok("\"é😀\u{7f}\""), s("é😀\u{7f}"));
        // Surrogate pair, lone surrogates.
        assert_eq!(ok(r#""\ud83d\ude00""#), s("😀"));
        assert_eq!(ok(r#""\uD83D\uDE00""#), s("😀"));
        assert_eq!(ok(r#""\ud800""#), s("\u{FFFD}"));
        assert_eq!(ok(r#""\udc00""#), s("\u{FFFD}"));
        assert_eq!(ok(r#""\udc00\ud800""#), s("\u{FFFD}\u{FFFD}"));
        assert_eq!(ok(r#""\ud800x""#), s("\u{FFFD}x"));
        assert_eq!(ok(r#""\ud800\n""#), s("\u{FFFD}\n"));
        assert_eq!(ok(r#""\ud800\u0041""#), s("\u{FFFD}A"));
        assert_eq!(ok(r#""\ud800\ud83d\ude00""#), s("\u{FFFD}😀"));
        assert_eq!(ok(r#""\u0000""#), s("\0"));
        assert!(ok(r#""x""#).truthy());
        assert!(!ok(r#""""#).truthy());
    }

    #[test]
    fn string_errors() {
        assert_eq!(
            err("\"a\u{1}\""),
            "Invalid control character at: line 1 column 3 (char 2)"
        );
        assert_eq!(
            err("\"a\tb\""),
            "Invalid control character at: line 1 column 3 (char 2)"
        );
        assert_eq!(
            err("\"a\nb\""),
            "Invalid control character at: line 1 column 3 (char 2)"
        );
        assert_eq!(
            err("\"\u{1}"),
            "Invalid control character at: line 1 column 2 (char 1)"
        );
        assert_eq!(err(r#""\x""#), "Invalid \\escape: line 1 column 2 (char 1)");
        assert_eq!(err(r#""\'""#), "Invalid \\escape: line 1 column 2 (char 1)");
        assert_eq!(err(r#""\U0041""#), "Invalid \\escape: line 1 column 2 (char 1)");
        assert_eq!(
            err(r#""\u12""#),
            "Invalid \\uXXXX escape: line 1 column 3 (char 2)"
        );
        assert_eq!(
            err(r#""\uZZZZ""#),
            "Invalid \\uXXXX escape: line 1 column 3 (char 2)"
        );
        assert_eq!(
            err(r#""\u1234"#),
            "Invalid \\uXXXX escape: line 1 column 3 (char 2)"
        );
        assert_eq!(
            err(r#""\ud800\u12""#),
            "Invalid \\uXXXX escape: line 1 column 9 (char 8)"
        );
        assert_eq!(
            err(r#""\ud800\udc00"#),
            "Invalid \\uXXXX escape: line 1 column 9 (char 8)"
        );
        assert_eq!(
            err(r#""abc"#),
            "Unterminated string starting at: line 1 column 1 (char 0)"
        );
        assert_eq!(
            err(r#""abc\"#),
            "Unterminated string starting at: line 1 column 1 (char 0)"
        );
        assert_eq!(
            err(r#"["é", "abc"#),
            "Unterminated string starting at: line 1 column 7 (char 6)"
        );
        assert_eq!(err("'a'"), "Expecting value: line 1 column 1 (char 0)");
    }

    #[test]
    fn containers() {
        assert_eq!(ok("[]"), PyValue::List(vec![]));
        assert_eq!(ok("{}"), PyValue::Dict(vec![]));
        assert!(!ok("[]").truthy());
        assert!(!ok("{}").truthy());
        assert!(ok("[0]").truthy());
        assert_eq!(
            ok(r#" { "a" : [ 1 , { } ] , "b":null } "#),
            PyValue::Dict(vec![
                (
                    "a".into(),
                    PyValue::List(vec![num("1", true), PyValue::Dict(vec![])])
                ),
                ("b".into(), PyValue::Null),
            ])
        );
        let v = ok(r#"{"a": 1, "b": 2, "a": 3}"#);
        assert_eq!(
            v,
            PyValue::Dict(vec![("a".into(), num("3", true)), ("b".into(), num("2", true))])
        );
        assert_eq!(v.get("a"), Some(&num("3", true)));
        assert_eq!(v.get("c"), None);
        assert!(v.is_dict());
        assert!(!ok("[]").is_dict());
        assert_eq!(ok(r#"[{"a":1}]"#).get("a"), None);
        // Keys are compared after unescaping.
        assert_eq!(
            ok(r#"{"a":1,"\u0061":2}"#),
            PyValue::Dict(vec![("a".into(), num("2", true))])
        );
        assert_eq!(ok(r#"{"":0}"#).get(""), Some(&num("0", false)));
    }

    #[test]
    fn container_errors() {
        assert_eq!(err("[1,]"), "Expecting value: line 1 column 4 (char 3)");
        assert_eq!(err("[,]"), "Expecting value: line 1 column 2 (char 1)");
        assert_eq!(
            err(r#"{"a":1,}"#),
            "Expecting property name enclosed in double quotes: line 1 column 8 (char 7)"
        );
        assert_eq!(
            err("{"),
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
        );
        assert_eq!(
            err("{1:2}"),
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
        );
        assert_eq!(
            err("{'a':2}"),
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
        );
        assert_eq!(
            err(r#"{"a" 1}"#),
            "Expecting ':' delimiter: line 1 column 6 (char 5)"
        );
        assert_eq!(
            err(r#"{"a""#),
            "Expecting ':' delimiter: line 1 column 5 (char 4)"
        );
        assert_eq!(err(r#"{"a":}"#), "Expecting value: line 1 column 6 (char 5)");
        assert_eq!(
            err(r#"{"a":1"#),
            "Expecting ',' delimiter: line 1 column 7 (char 6)"
        );
        assert_eq!(
            err(r#"{"a":1 "b":2}"#),
            "Expecting ',' delimiter: line 1 column 8 (char 7)"
        );
        assert_eq!(err("[1 2]"), "Expecting ',' delimiter: line 1 column 4 (char 3)");
        assert_eq!(err("["), "Expecting value: line 1 column 2 (char 1)");
        assert_eq!(err("[  "), "Expecting value: line 1 column 4 (char 3)");
        assert_eq!(err("[1"), "Expecting ',' delimiter: line 1 column 3 (char 2)");
        assert_eq!(err("[1}"), "Expecting ',' delimiter: line 1 column 3 (char 2)");
        assert_eq!(err("]"), "Expecting value: line 1 column 1 (char 0)");
        assert_eq!(err("[]]"), "Extra data: line 1 column 3 (char 2)");
    }

    #[test]
    fn whitespace_bom_and_extra_data() {
        assert_eq!(ok(" \t\r\n1 \t\r\n"), num("1", true));
        assert_eq!(
            ok("\r\n{\r\n\"a\"\r\n:\r\n1\r\n}\r\n").get("a"),
            Some(&num("1", true))
        );
        assert_eq!(err(""), "Expecting value: line 1 column 1 (char 0)");
        assert_eq!(err("  "), "Expecting value: line 1 column 3 (char 2)");
        assert_eq!(err("\n\n"), "Expecting value: line 3 column 1 (char 2)");
        assert_eq!(
            err("\u{feff}{}"),
            "Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)"
        );
        assert_eq!(ok("[\"\u{feff}\"]"), PyValue::List(vec![s("\u{feff}")]));
        assert_eq!(err(" \u{feff}1"), "Expecting value: line 1 column 2 (char 1)");
        // Only the four JSON whitespace characters count.
        assert_eq!(err("\u{a0}1"), "Expecting value: line 1 column 1 (char 0)");
        assert_eq!(err("1\u{c}"), "Extra data: line 1 column 2 (char 1)");
        assert_eq!(err("[1,\u{b}2]"), "Expecting value: line 1 column 4 (char 3)");
        assert_eq!(err("{} {}"), "Extra data: line 1 column 4 (char 3)");
        assert_eq!(err("1 2"), "Extra data: line 1 column 3 (char 2)");
        assert_eq!(err("{}\n\0"), "Extra data: line 2 column 1 (char 3)");
        assert_eq!(err("\"é\"é"), "Extra data: line 1 column 4 (char 3)");
    }

    #[test]
    fn multi_line_positions_count_characters() {
        // Checked against CPython 3.11:
        // json.loads('{\n  "é😀": [1,\n   2 3]\n}')
        let e = loads("{\n  \"é😀\": [1,\n   2 3]\n}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Expecting ',' delimiter: line 3 column 6 (char 19)"
        );
        assert_eq!((e.line, e.column, e.offset), (3, 6, 19));
        assert_eq!(e.message, "Expecting ',' delimiter");
        let e = loads("[\"ü\",\r\n \"ß\",\n\n  tru]").unwrap_err();
        assert_eq!(e.to_string(), "Expecting value: line 4 column 3 (char 16)");
        let e = loads("{\"a\":\n\"x\ny\"}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid control character at: line 2 column 3 (char 8)"
        );
    }

    #[test]
    fn nesting_depth() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(loads(&deep(900)).is_ok());
        assert!(loads(&deep(MAX_DEPTH)).is_ok());
        let e = loads(&deep(MAX_DEPTH + 1)).unwrap_err();
        assert!(e.message.starts_with("maximum recursion depth exceeded"));
        assert_eq!(e.offset, MAX_DEPTH);
        assert!(loads(&deep(5000)).is_err());
        assert!(loads(&"[".repeat(1_000_000)).is_err());
        let objects = format!("{}1{}", "{\"a\":".repeat(5000), "}".repeat(5000));
        let e = loads(&objects).unwrap_err();
        assert!(e.message.contains("JSON object"), "{e}");
        let objects = format!("{}1{}", "{\"a\":[".repeat(450), "]}".repeat(450));
        assert!(loads(&objects).is_ok());
        // Wide documents are fine.
        let wide = format!("[{}0]", "[],".repeat(100_000));
        assert_eq!(ok(&wide).type_name(), "list");
    }

    #[test]
    fn truthiness_and_type_names() {
        let cases = [
            ("null", false, "NoneType"),
            ("false", false, "bool"),
            ("true", true, "bool"),
            ("0", false, "int"),
            ("-0", false, "int"),
            ("7", true, "int"),
            ("0.0", false, "float"),
            ("-0.0", false, "float"),
            ("0e-5", false, "float"),
            ("1e-400", false, "float"),
            ("0.5", true, "float"),
            ("NaN", true, "float"),
            ("\"\"", false, "str"),
            ("\"0\"", true, "str"),
            ("[]", false, "list"),
            ("[[]]", true, "list"),
            ("{}", false, "dict"),
            ("{\"\":null}", true, "dict"),
        ];
        for (input, truthy, name) in cases {
            let v = ok(input);
            assert_eq!(v.truthy(), truthy, "{input}");
            assert_eq!(v.type_name(), name, "{input}");
            assert_eq!(v.get("x"), None, "{input}");
        }
    }
}
