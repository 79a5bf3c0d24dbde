//! A YAML reader that remembers where everything was written.
//!
//! `wh lint` must point every finding at `file:line:col`, including schema
//! errors that are only known as a JSON pointer (`/workers/2/timeout`). This
//! module parses a YAML document (JSON is valid YAML 1.2 and takes the same
//! path) into a [`Node`] tree in which every node and every mapping key
//! carries its [`Span`]; [`Node::to_json`] turns the tree into a
//! `serde_json::Value` for schema validation and serde, and [`Node::span_at`]
//! / [`Node::key_span_at`] map a JSON pointer back to a position.
//!
//! The input is treated as hostile: nothing here panics (a panic inside
//! saphyr-parser would be caught and reported as an error), recurses on the
//! input's nesting while parsing, or takes time worse than linear in the
//! input; memory is bounded by [`Limits`]:
//! - the text is at most [`Limits::max_bytes`] long ([`parse_bytes`] checks
//!   the length before decoding);
//! - collections nest at most [`Limits::max_depth`] deep, counting the levels
//!   an alias brings in;
//! - at most [`Limits::max_nodes`] nodes are made, counting mapping keys and
//!   every node an alias copies. The count is taken *before* copying, so a
//!   "billion laughs" document fails at the first alias over the limit, with
//!   memory to match. Aliases may also copy at most [`Limits::max_bytes`] of
//!   string text in total (one alias of a huge string, repeated, is the same
//!   bomb without many nodes).
//!
//! What is accepted, and how it resolves:
//! - exactly one document per stream; an empty stream, or one with only
//!   comments, is a null at 1:1;
//! - plain scalars resolve with the YAML 1.2 core schema (`~`/`null`/empty,
//!   `true`/`false` in three spellings, decimal/`0o`/`0x` integers, floats
//!   incl. `.inf`/`.nan`); an integer too big for `i64` becomes a float if it
//!   is decimal, else a string. Quoted and block scalars are strings;
//! - the tags `!!str`, `!!int`, `!!float`, `!!bool`, `!!null` (on scalars),
//!   `!!seq` and `!!map` (on collections of that kind) are understood; any
//!   other tag is an error, and so is a value a tag cannot take;
//! - [`Node::quoted`] tells the style (quoted or block), even when a tag
//!   decides the type (`!!int "1"` is an `Int` with `quoted: true`);
//! - mapping keys must be scalars (an alias of a scalar is fine); the key is
//!   the scalar's text as written (`1` stays `"1"`); duplicate keys are
//!   errors;
//! - merge keys (`<<: *base`) are **not** supported: `<<` is an ordinary key;
//! - an alias is replaced by a copy of the anchored node; the copy's root
//!   takes the span of the alias (so a finding about `/workers/2` points at
//!   the `*name` written there), its descendants keep the spans of the
//!   anchored text.
//!
//! Positions: lines and columns are 1-based, columns count characters (not
//! bytes), and line breaks are `\n`, `\r\n` or a lone `\r`. Offsets are byte
//! offsets into the text after its leading byte order mark, if any, is
//! removed ([`parse`] and [`parse_bytes`] both remove it): index the source
//! with them after `trim_start_matches('\u{feff}')`.
//! A node's span runs from its first character (after any anchor and tag) to
//! just past its last: the closing quote of a quoted scalar, the `]`/`}` of a
//! flow collection, the end of the last entry of a block collection. A block
//! scalar (`|`, `>`) starts at its indicator.
//!
//! The parsing is done by `saphyr-parser`'s event API; the tree is built with
//! an explicit stack. [`Node::to_json`], [`Node::at`] and [`Node::walk`]
//! recurse, which is safe because the depth is capped at `max_depth`.
//! Worth knowing about saphyr-parser 0.3.4:
//! - it stops at 255 nested flow collections ("nesting deeper than 255
//!   levels", whatever `max_depth`), and since it reads a flow collection
//!   ahead before emitting its events, a deep `[[[...` may be reported there
//!   rather than at level `max_depth + 1`;
//! - it tokenizes a whole top-level flow collection (a JSON file) before the
//!   first event: memory is linear in the input, and 10 MiB of it takes on
//!   the order of a second;
//! - its markers' character index can drift after some rare constructs with
//!   multi-byte characters, so positions are taken from its line and column;
//!   like it, a byte order mark that starts a line takes no column.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::panic::{AssertUnwindSafe, catch_unwind};

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, ScanError, Tag};

/// A position in the source: 1-based line and column (columns count characters), and the byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// Byte offset into the text (after a leading byte order mark, if any).
    pub offset: usize,
}

/// A span: start and end positions (end exclusive; for a scalar, the end of its text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First character.
    pub start: Pos,
    /// Just past the last character.
    pub end: Pos,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A YAML node and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
    /// The scalar was quoted (`'..'` or `".."`) or a block scalar.
    pub quoted: bool,
}

/// One entry of a mapping, in source order.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key's text as written (unescaped if quoted).
    pub key: String,
    /// Where the key is written.
    pub key_span: Span,
    pub value: Node,
}

/// Why a document could not be loaded, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadError {
    pub message: String,
    pub pos: Option<Pos>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(pos) => write!(f, "line {}, column {}: {}", pos.line, pos.col, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for LoadError {}

impl LoadError {
    fn at(pos: Pos, message: impl Into<String>) -> LoadError {
        LoadError {
            message: message.into(),
            pos: Some(pos),
        }
    }
}

/// Bounds on what a document may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted input, in bytes (default 10 MiB). Also the most string
    /// text alias expansion may copy.
    pub max_bytes: usize,
    /// Deepest nesting of sequences and mappings (default 64).
    pub max_depth: usize,
    /// Most nodes made, counting mapping keys and every node copied by alias
    /// expansion (default 1,000,000).
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: 10 * MIB,
            max_depth: 64,
            max_nodes: 1_000_000,
        }
    }
}

const MIB: usize = 1024 * 1024;
const BOM: &str = "\u{feff}";

/// Parses YAML (a JSON document is valid YAML 1.2 and goes through the same path, so JSON files get
/// positions too). Like [`parse_bytes`], it refuses text over `max_bytes` and NUL characters, and skips
/// a leading byte order mark.
pub fn parse(text: &str, limits: &Limits) -> Result<Node, LoadError> {
    if text.len() > limits.max_bytes {
        return Err(too_big(text.len(), limits.max_bytes));
    }
    let text = text.strip_prefix(BOM).unwrap_or(text);
    if let Some(nul) = text.find('\0') {
        let pos = Locator::new(text).at_byte(nul);
        return Err(LoadError::at(
            pos,
            format!("binary file: NUL byte at line {}", pos.line),
        ));
    }
    Builder::new(text, limits).run()
}

/// Reads raw bytes: rejects more than `max_bytes` before decoding ("file is 101 MiB; the limit is
/// 10 MiB"), invalid UTF-8 at the first bad byte ("not UTF-8 text (binary file?) at byte N", the
/// byte counted in the file) and NUL bytes ("binary file: NUL byte at line L"), strips a leading
/// UTF-8 byte order mark, then calls [`parse`].
pub fn parse_bytes(bytes: &[u8], limits: &Limits) -> Result<Node, LoadError> {
    if bytes.len() > limits.max_bytes {
        return Err(too_big(bytes.len(), limits.max_bytes));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let bad = err.valid_up_to();
            let valid = std::str::from_utf8(&bytes[..bad]).unwrap_or_default();
            let valid = valid.strip_prefix(BOM).unwrap_or(valid);
            let mut locator = Locator::new(valid);
            // A NUL before the bad byte says "binary" more precisely.
            if let Some(nul) = valid.find('\0') {
                let pos = locator.at_byte(nul);
                return Err(LoadError::at(
                    pos,
                    format!("binary file: NUL byte at line {}", pos.line),
                ));
            }
            // The message counts bytes in the file; `pos.offset` (like every offset) is after the BOM.
            let pos = locator.at_byte(valid.len());
            return Err(LoadError::at(
                pos,
                format!("not UTF-8 text (binary file?) at byte {bad}"),
            ));
        }
    };
    parse(text, limits)
}

fn too_big(len: usize, limit: usize) -> LoadError {
    // In MiB to one decimal, unless that would make both sizes look the same.
    let tenths = |n: usize| (n as f64 / MIB as f64 * 10.0).round();
    let (have, max) = if tenths(len) == tenths(limit) {
        (format!("{len} bytes"), format!("{limit} bytes"))
    } else {
        (size_text(len), size_text(limit))
    };
    LoadError {
        message: format!("file is {have}; the limit is {max}"),
        pos: None,
    }
}

fn size_text(n: usize) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else {
        format!("{n} bytes")
    }
}

impl Node {
    /// The tree as a `serde_json::Value`; mappings keep their key order. A
    /// non-finite float becomes the string `".inf"`, `"-.inf"` or `".nan"`,
    /// so that schema validation reports a type error on it.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Bool(b) => Value::Bool(*b),
            NodeKind::Int(i) => Value::from(*i),
            NodeKind::Float(x) => match serde_json::Number::from_f64(*x) {
                Some(n) => Value::Number(n),
                None if x.is_nan() => Value::from(".nan"),
                None if *x > 0.0 => Value::from(".inf"),
                None => Value::from("-.inf"),
            },
            NodeKind::Str(s) => Value::String(s.clone()),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => {
                let mut map = serde_json::Map::with_capacity(entries.len());
                for entry in entries {
                    map.insert(entry.key.clone(), entry.value.to_json());
                }
                Value::Object(map)
            }
        }
    }

    /// The node at a JSON pointer (`""` = root, `"/workers/0/name"`, with `~1`
    /// and `~0` unescaping), or `None`.
    pub fn at(&self, pointer: &str) -> Option<&Node> {
        let mut node = self;
        for token in pointer_tokens(pointer)? {
            node = node.child(&token)?;
        }
        Some(node)
    }

    /// Best span for a JSON pointer: the node's span if it exists; for a
    /// pointer to a missing child (or a malformed pointer), the span of the
    /// deepest existing ancestor. For where a mapping key is written, see
    /// [`Node::key_span_at`].
    pub fn span_at(&self, pointer: &str) -> Span {
        let mut node = self;
        for token in pointer_tokens(pointer).into_iter().flatten() {
            match node.child(&token) {
                Some(child) => node = child,
                None => break,
            }
        }
        node.span
    }

    /// The span of the KEY of the entry a pointer names (e.g.
    /// `"/workers/0/timout"` → where `timout:` is written), if that entry
    /// exists. `None` for the root and for sequence items.
    pub fn key_span_at(&self, pointer: &str) -> Option<Span> {
        let cut = pointer.rfind('/')?;
        let key = unescape(&pointer[cut + 1..]);
        match &self.at(&pointer[..cut])?.kind {
            NodeKind::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| e.key_span),
            _ => None,
        }
    }

    /// Visits every node with its JSON pointer, in pre-order (a collection
    /// before its children, children in source order).
    pub fn walk(&self, f: &mut dyn FnMut(&str, &Node)) {
        let mut pointer = String::new();
        self.walk_inner(&mut pointer, f);
    }

    fn walk_inner(&self, pointer: &mut String, f: &mut dyn FnMut(&str, &Node)) {
        f(pointer, self);
        let len = pointer.len();
        match &self.kind {
            NodeKind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let _ = write!(pointer, "/{i}");
                    item.walk_inner(pointer, f);
                    pointer.truncate(len);
                }
            }
            NodeKind::Map(entries) => {
                for entry in entries {
                    pointer.push('/');
                    for c in entry.key.chars() {
                        match c {
                            '~' => pointer.push_str("~0"),
                            '/' => pointer.push_str("~1"),
                            c => pointer.push(c),
                        }
                    }
                    entry.value.walk_inner(pointer, f);
                    pointer.truncate(len);
                }
            }
            _ => {}
        }
    }

    fn child(&self, token: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Seq(items) => {
                let index_ok = token == "0" || (!token.starts_with('0') && !token.is_empty());
                if !index_ok || !token.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                items.get(token.parse::<usize>().ok()?)
            }
            NodeKind::Map(entries) => entries.iter().find(|e| e.key == token).map(|e| &e.value),
            _ => None,
        }
    }
}

/// The unescaped reference tokens of a JSON pointer, or `None` if it is malformed.
fn pointer_tokens(pointer: &str) -> Option<impl Iterator<Item = Cow<'_, str>>> {
    let rest = if pointer.is_empty() {
        None
    } else {
        Some(pointer.strip_prefix('/')?)
    };
    Some(rest.into_iter().flat_map(|rest| rest.split('/')).map(unescape))
}

fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

// ---------------------------------------------------------------------------
// Positions

/// Turns saphyr's markers (and our byte offsets) into [`Pos`]es by moving a
/// cursor through the text. Queries arrive almost in order, so the total
/// walking is linear in the text.
///
/// A marker is located by its line and column, not by its character index:
/// saphyr-parser 0.3.4 miscounts the index after some constructs with
/// multi-byte characters (e.g. a reserved directive `%x é`), and an index
/// error would shift every later position, while a column error cannot
/// leave its line.
struct Locator<'t> {
    text: &'t str,
    byte: usize,
    line: usize,
    col: usize,
}

impl<'t> Locator<'t> {
    fn new(text: &'t str) -> Locator<'t> {
        Locator {
            text,
            byte: 0,
            line: 1,
            col: 1,
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
            offset: self.byte,
        }
    }

    /// Whether the character ending at byte `end` ends a line (`\n`, or a `\r` not before `\n`).
    fn ends_line(&self, c: char, end: usize) -> bool {
        c == '\n' || (c == '\r' && self.text.as_bytes().get(end) != Some(&b'\n'))
    }

    fn forward(&mut self) -> bool {
        let Some(c) = self.text[self.byte..].chars().next() else {
            return false;
        };
        self.byte += c.len_utf8();
        if self.ends_line(c, self.byte) {
            self.line += 1;
            self.col = 1;
        } else if !(c == '\u{feff}' && self.col == 1) {
            // Like saphyr, a byte order mark starting a line takes no column.
            self.col += 1;
        }
        true
    }

    /// Steps back one character; returns whether the column must be recomputed.
    fn backward(&mut self) -> bool {
        let Some(c) = self.text[..self.byte].chars().next_back() else {
            return false;
        };
        let crossed = self.ends_line(c, self.byte);
        self.byte -= c.len_utf8();
        if crossed {
            self.line -= 1;
        } else {
            self.col = self.col.saturating_sub(1).max(1);
        }
        crossed || c == '\u{feff}'
    }

    fn recompute_col(&mut self) {
        let bytes = self.text.as_bytes();
        let mut start = self.byte;
        while start > 0 {
            let b = bytes[start - 1];
            if b == b'\n' || (b == b'\r' && bytes.get(start) != Some(&b'\n')) {
                break;
            }
            start -= 1;
        }
        let line = self.text[start..self.byte].trim_start_matches('\u{feff}');
        self.col = line.chars().count() + 1;
    }

    fn seek(&mut self, before: impl Fn(&Self) -> bool, after: impl Fn(&Self) -> bool) -> Pos {
        while before(self) && self.forward() {}
        let mut stale = false;
        while after(self) && self.byte > 0 {
            stale |= self.backward();
        }
        if stale {
            self.recompute_col();
        }
        self.pos()
    }

    /// The position of a saphyr marker (1-based line, 0-based column in
    /// characters), clamped to the text and to the end of the marker's line.
    fn at_mark(&mut self, mark: &Marker) -> Pos {
        let (line, col) = (mark.line().max(1), mark.col() + 1);
        if line > self.line {
            while self.line < line && self.forward() {}
        } else if line < self.line {
            let mut stale = false;
            while self.line > line && self.byte > 0 {
                stale |= self.backward();
            }
            if stale {
                self.recompute_col();
            }
        }
        if self.line == line {
            while self.col < col && !matches!(self.text.as_bytes().get(self.byte), Some(b'\n' | b'\r')) {
                if !self.forward() {
                    break;
                }
            }
            while self.col > col && self.byte > 0 {
                self.backward();
            }
            // Column 1 is after any byte order marks that start the line.
            while self.col == 1 && self.text[self.byte..].starts_with('\u{feff}') {
                self.forward();
            }
        }
        self.pos()
    }

    /// The position of byte offset `byte` in the text (a char boundary).
    fn at_byte(&mut self, byte: usize) -> Pos {
        self.seek(|l| l.byte < byte, |l| l.byte > byte)
    }
}

fn is_blank_or_break(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn skip_comment(bytes: &[u8], mut i: usize, limit: usize) -> usize {
    let limit = limit.min(bytes.len());
    while i < limit && bytes[i] != b'\n' && bytes[i] != b'\r' {
        i += 1;
    }
    i
}

/// Skips node properties (anchor, tag), blanks and comments from `i`, never past `limit`.
fn skip_properties(bytes: &[u8], mut i: usize, limit: usize) -> usize {
    let limit = limit.min(bytes.len());
    while i < limit {
        match bytes[i] {
            b if is_blank_or_break(b) => i += 1,
            b'#' => i = skip_comment(bytes, i, limit),
            b'!' if bytes.get(i + 1) == Some(&b'<') => {
                while i < limit && bytes[i] != b'>' {
                    i += 1;
                }
                i += 1;
            }
            b'&' | b'!' => {
                i += 1;
                while i < limit && !is_blank_or_break(bytes[i]) && !b",[]{}".contains(&bytes[i]) {
                    i += 1;
                }
            }
            _ => return i,
        }
    }
    limit
}

/// Finds the `|` or `>` of a block scalar between the end of what came before
/// (`from`) and the scalar's first content character (`limit`).
fn find_block_indicator(bytes: &[u8], mut i: usize, limit: usize) -> Option<usize> {
    while i <= limit && i < bytes.len() {
        match bytes[i] {
            b if is_blank_or_break(b) => i += 1,
            b'#' => i = skip_comment(bytes, i, limit + 1),
            b'-' | b'?' | b':' | b'.' => i += 1,
            _ if bytes[i..].starts_with(BOM.as_bytes()) => i += BOM.len(),
            b'|' | b'>' => return Some(i),
            _ => return None,
        }
    }
    None
}

/// The byte just past the closing quote of the quoted scalar opening at `start`.
fn quoted_end(bytes: &[u8], start: usize) -> Option<usize> {
    let quote = *bytes.get(start).filter(|&&q| q == b'"' || q == b'\'')?;
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b if b == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Scalars and tags

/// The core-schema tags this module understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CoreTag {
    Str,
    Int,
    Float,
    Bool,
    Null,
    Seq,
    Map,
}

fn core_tag(tag: &Tag) -> Result<CoreTag, String> {
    let full = format!("{}{}", tag.handle, tag.suffix);
    let shown = if let Some(name) = full.strip_prefix("tag:yaml.org,2002:") {
        format!("!!{name}")
    } else if tag.handle == "!" {
        format!("!{}", tag.suffix)
    } else if full == "!" {
        "!".to_owned()
    } else {
        format!("!<{full}>")
    };
    match full.strip_prefix("tag:yaml.org,2002:") {
        Some("str") => Ok(CoreTag::Str),
        Some("int") => Ok(CoreTag::Int),
        Some("float") => Ok(CoreTag::Float),
        Some("bool") => Ok(CoreTag::Bool),
        Some("null") => Ok(CoreTag::Null),
        Some("seq") => Ok(CoreTag::Seq),
        Some("map") => Ok(CoreTag::Map),
        _ => Err(format!("unsupported tag {shown}")),
    }
}

fn resolve_null(s: &str) -> Option<NodeKind> {
    matches!(s, "" | "~" | "null" | "Null" | "NULL").then_some(NodeKind::Null)
}

fn resolve_bool(s: &str) -> Option<NodeKind> {
    match s {
        "true" | "True" | "TRUE" => Some(NodeKind::Bool(true)),
        "false" | "False" | "FALSE" => Some(NodeKind::Bool(false)),
        _ => None,
    }
}

fn all_digits(s: &str, radix: u32) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_digit(radix))
}

/// Core-schema integers; `Err(())` for an integer that does not fit an `i64`.
fn resolve_int(s: &str) -> Option<Result<i64, ()>> {
    let (digits, radix) = if let Some(oct) = s.strip_prefix("0o") {
        (oct, 8)
    } else if let Some(hex) = s.strip_prefix("0x") {
        (hex, 16)
    } else {
        let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
        if !all_digits(unsigned, 10) {
            return None;
        }
        return Some(s.parse::<i64>().map_err(|_| ()));
    };
    if !all_digits(digits, radix) {
        return None;
    }
    Some(i64::from_str_radix(digits, radix).map_err(|_| ()))
}

/// Core-schema floats (not integers): `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, infinities, NaN.
fn resolve_float(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let negative = s.starts_with('-');
    match unsigned {
        ".inf" | ".Inf" | ".INF" => {
            return Some(if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        ".nan" | ".NaN" | ".NAN" if unsigned.len() == s.len() => return Some(f64::NAN),
        _ => {}
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => all_digits(frac, 10),
        Some((int, frac)) => all_digits(int, 10) && (frac.is_empty() || all_digits(frac, 10)),
        None => all_digits(mantissa, 10),
    };
    let exponent_ok = exponent.is_none_or(|e| all_digits(e.strip_prefix(['-', '+']).unwrap_or(e), 10));
    if mantissa_ok && exponent_ok {
        s.parse::<f64>().ok()
    } else {
        None
    }
}

/// Resolves a plain scalar with the YAML 1.2 core schema; `None` for a string.
fn resolve_plain(s: &str) -> Option<NodeKind> {
    if let Some(kind) = resolve_null(s).or_else(|| resolve_bool(s)) {
        return Some(kind);
    }
    match resolve_int(s) {
        Some(Ok(i)) => Some(NodeKind::Int(i)),
        // Too big for an i64: a float if decimal, else a string.
        Some(Err(())) | None => resolve_float(s).map(NodeKind::Float),
    }
}

/// Resolves a scalar given its style and tag; `Ok(None)` for a string (its text).
fn resolve_scalar(value: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Option<NodeKind>, String> {
    let Some(tag) = tag else {
        return Ok(if style == ScalarStyle::Plain {
            resolve_plain(value)
        } else {
            None
        });
    };
    let invalid = |name: &str| format!("invalid !!{name} value `{value}`");
    let kind = match core_tag(tag)? {
        CoreTag::Str => return Ok(None),
        CoreTag::Null => resolve_null(value).ok_or_else(|| invalid("null"))?,
        CoreTag::Bool => resolve_bool(value).ok_or_else(|| invalid("bool"))?,
        CoreTag::Int => match resolve_int(value) {
            Some(Ok(i)) => NodeKind::Int(i),
            Some(Err(())) => return Err(format!("!!int value `{value}` does not fit in 64 bits")),
            None => return Err(invalid("int")),
        },
        CoreTag::Float => match (resolve_float(value), resolve_int(value)) {
            (Some(x), _) => NodeKind::Float(x),
            (None, Some(Ok(i))) => NodeKind::Float(i as f64),
            _ => return Err(invalid("float")),
        },
        CoreTag::Seq | CoreTag::Map => return Err(format!("unsupported tag !!{} on a scalar", tag.suffix)),
    };
    Ok(Some(kind))
}

// ---------------------------------------------------------------------------
// The tree builder

/// A node under construction. Anchored nodes live in the anchor table and are
/// only referred to, so that defining and aliasing them copies nothing until
/// the final tree is made (with every copy already counted).
struct INode {
    kind: IKind,
    span: Span,
    quoted: bool,
}

enum IKind {
    Leaf(NodeKind),
    Seq(Vec<INode>),
    Map(Vec<IEntry>),
    /// Where the anchored node `id` is written.
    Anchored(usize),
    /// A copy of the anchored node `id`; its root takes this node's span.
    Alias(usize),
}

struct IEntry {
    key: String,
    key_span: Span,
    value: INode,
}

/// What a (sub)tree costs once aliases are expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    /// Nodes, keys included.
    nodes: usize,
    /// Collection levels (0 for a scalar).
    height: usize,
    /// Bytes of string text (strings and keys).
    bytes: usize,
}

struct Anchor {
    node: INode,
    cost: Cost,
    /// The text of an anchored scalar, for an alias used as a mapping key.
    key_text: Option<String>,
}

enum FrameKind {
    Seq(Vec<INode>),
    Map {
        entries: Vec<IEntry>,
        /// The key waiting for its value.
        key: Option<(String, Span)>,
        /// Key → line of its first use, once the mapping is big.
        index: Option<HashMap<String, usize>>,
    },
}

struct Frame {
    kind: FrameKind,
    start: Pos,
    anchor: usize,
    /// `[..]` or `{..}` (ends at its closing bracket), rather than block.
    flow: bool,
    last_end: Pos,
    cost: Cost,
}

struct Builder<'t, 'l> {
    text: &'t str,
    loc: Locator<'t>,
    limits: &'l Limits,
    stack: Vec<Frame>,
    root: Option<INode>,
    anchors: HashMap<usize, Anchor>,
    /// Nodes made so far, alias copies included.
    nodes: usize,
    /// String bytes copied by aliases so far.
    copied_bytes: usize,
    /// Byte offset just past the last thing built (to find block scalar indicators).
    prev_end: usize,
}

impl<'t, 'l> Builder<'t, 'l> {
    fn new(text: &'t str, limits: &'l Limits) -> Self {
        Builder {
            text,
            loc: Locator::new(text),
            limits,
            stack: Vec::new(),
            root: None,
            anchors: HashMap::new(),
            nodes: 0,
            copied_bytes: 0,
            prev_end: 0,
        }
    }

    fn run(mut self) -> Result<Node, LoadError> {
        let mut parser = Parser::new_from_str(self.text);
        let mut documents = 0;
        loop {
            // saphyr-parser is not known to panic, but the input is hostile: a
            // panic in it must become an error, not a crash of `wh`.
            let next = catch_unwind(AssertUnwindSafe(|| parser.next_event()));
            let (event, span) = match next {
                Err(_) => {
                    return Err(LoadError {
                        message: "internal error in the YAML parser".into(),
                        pos: None,
                    });
                }
                Ok(None) => break,
                Ok(Some(Err(err))) => return Err(self.scan_error(&err)),
                Ok(Some(Ok(event))) => event,
            };
            let (start, end) = (&span.start, &span.end);
            match event {
                Event::StreamEnd => break,
                Event::DocumentStart(explicit) => {
                    documents += 1;
                    let pos = self.loc.at_mark(start);
                    if documents > 1 {
                        return Err(LoadError::at(pos, "expected one YAML document, found several"));
                    }
                    if explicit {
                        self.prev_end = pos.offset;
                    }
                }
                Event::Scalar(value, style, anchor, tag) => {
                    self.scalar(value, style, anchor, tag.as_deref(), start, end)?;
                }
                Event::Alias(id) => self.alias(id, start, end)?,
                Event::SequenceStart(anchor, tag) => self.start(false, anchor, tag.as_deref(), start, end)?,
                Event::MappingStart(anchor, tag) => self.start(true, anchor, tag.as_deref(), start, end)?,
                Event::SequenceEnd | Event::MappingEnd => self.end(start)?,
                Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
            }
        }
        let origin = Pos {
            line: 1,
            col: 1,
            offset: 0,
        };
        let root = match self.root.take() {
            Some(root) => root,
            None => INode {
                kind: IKind::Leaf(NodeKind::Null),
                span: Span {
                    start: origin,
                    end: origin,
                },
                quoted: false,
            },
        };
        Ok(materialize(root, &self.anchors))
    }

    fn scan_error(&mut self, err: &ScanError) -> LoadError {
        let pos = self.loc.at_mark(err.marker());
        let mut message = err.info().to_owned();
        if message == "while parsing node, found unknown anchor" {
            message = format!("undefined alias {}", self.alias_name(pos.offset));
        } else if message == "recursion limit exceeded" {
            // saphyr's scanner counts flow levels in a u8 and may look ahead
            // of the events we check the depth on.
            message = format!("nesting deeper than {} levels", self.limits.max_depth.min(255));
        }
        LoadError::at(pos, message)
    }

    /// `*name` as written at byte `at`.
    fn alias_name(&self, at: usize) -> String {
        let rest = self.text.get(at..).unwrap_or_default();
        let end = rest
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c.is_whitespace() || ",[]{}".contains(c))
            .map_or(rest.len(), |(i, _)| i);
        rest[..end].chars().take(100).collect()
    }

    fn expecting_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame {
                kind: FrameKind::Map { key: None, .. },
                ..
            })
        )
    }

    fn count_node(&mut self, pos: Pos) -> Result<(), LoadError> {
        self.nodes += 1;
        if self.nodes > self.limits.max_nodes {
            return Err(LoadError::at(
                pos,
                format!("document has over {} nodes", self.limits.max_nodes),
            ));
        }
        Ok(())
    }

    fn scalar(
        &mut self,
        value: Cow<'_, str>,
        style: ScalarStyle,
        anchor: usize,
        tag: Option<&Tag>,
        start: &Marker,
        end: &Marker,
    ) -> Result<(), LoadError> {
        let event_start = self.loc.at_mark(start);
        let start_byte = event_start.offset;
        let bytes = self.text.as_bytes();
        let has_properties = anchor > 0 || tag.is_some();
        let quoted = matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted);
        // saphyr's span of a quoted scalar runs on over trailing blanks and a
        // comment: end at the closing quote instead.
        let quick = if quoted && !has_properties {
            quoted_end(bytes, start_byte)
        } else {
            None
        };
        let (content, stop) = match quick {
            Some(stop) => (start_byte, stop),
            None => {
                let end_byte = self.loc.at_mark(end).offset;
                let block = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded);
                let content = if has_properties {
                    skip_properties(bytes, start_byte, end_byte)
                } else if block && self.prev_end <= start_byte {
                    // saphyr starts a block scalar at its first content line.
                    find_block_indicator(bytes, self.prev_end, start_byte).unwrap_or(start_byte)
                } else {
                    start_byte
                };
                let stop = match quoted {
                    true => quoted_end(bytes, content)
                        .filter(|&e| e <= end_byte)
                        .unwrap_or(end_byte),
                    false => end_byte,
                };
                (content, stop.max(content))
            }
        };
        let span = Span {
            start: self.loc.at_byte(content),
            end: self.loc.at_byte(stop),
        };
        self.prev_end = stop;

        let kind = resolve_scalar(&value, style, tag).map_err(|msg| LoadError::at(event_start, msg))?;
        self.count_node(span.start)?;
        let is_string = kind.is_none();
        let key_text = (anchor > 0).then(|| value.to_string());
        let text_len = value.len();
        let quoted = style != ScalarStyle::Plain;

        if self.expecting_key() {
            let text = value.into_owned();
            if let Some(key_text) = key_text {
                let kind = kind.unwrap_or_else(|| NodeKind::Str(text.clone()));
                let cost = Cost {
                    nodes: 1,
                    height: 0,
                    bytes: text.len(),
                };
                let node = INode {
                    kind: IKind::Leaf(kind),
                    span,
                    quoted,
                };
                self.anchors.insert(
                    anchor,
                    Anchor {
                        node,
                        cost,
                        key_text: Some(key_text),
                    },
                );
            }
            return self.key(text, span);
        }

        let is_root_empty = self.stack.is_empty() && text_len == 0 && !quoted && !has_properties;
        let span = if is_root_empty {
            let origin = Pos {
                line: 1,
                col: 1,
                offset: 0,
            };
            Span {
                start: origin,
                end: origin,
            }
        } else {
            span
        };
        let kind = kind.unwrap_or_else(|| NodeKind::Str(value.into_owned()));
        let cost = Cost {
            nodes: 1,
            height: 0,
            bytes: if is_string { text_len } else { 0 },
        };
        let mut node = INode {
            kind: IKind::Leaf(kind),
            span,
            quoted,
        };
        if anchor > 0 {
            self.anchors.insert(anchor, Anchor { node, cost, key_text });
            node = INode {
                kind: IKind::Anchored(anchor),
                span,
                quoted: false,
            };
        }
        self.add(node, cost)
    }

    /// Records a mapping key (the top frame expects one).
    fn key(&mut self, text: String, span: Span) -> Result<(), LoadError> {
        let Some(Frame {
            kind: FrameKind::Map { entries, key, index },
            cost,
            last_end,
            ..
        }) = self.stack.last_mut()
        else {
            return Ok(());
        };
        // Small mappings are searched; big ones get an index.
        if index.is_none() && entries.len() >= 16 {
            *index = Some(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.key_span.start.line))
                    .collect(),
            );
        }
        let first = match index {
            Some(index) => index.get(&text).copied(),
            None => entries
                .iter()
                .find(|e| e.key == text)
                .map(|e| e.key_span.start.line),
        };
        if let Some(first_line) = first {
            return Err(LoadError::at(
                span.start,
                format!("duplicate key `{text}` (first at line {first_line})"),
            ));
        }
        if let Some(index) = index {
            index.insert(text.clone(), span.start.line);
        }
        cost.nodes += 1;
        cost.bytes += text.len();
        *last_end = span.end;
        *key = Some((text, span));
        Ok(())
    }

    fn alias(&mut self, id: usize, start: &Marker, end: &Marker) -> Result<(), LoadError> {
        let span = Span {
            start: self.loc.at_mark(start),
            end: self.loc.at_mark(end),
        };
        self.prev_end = span.end.offset;
        let Some(anchor) = self.anchors.get(&id) else {
            let name = self.alias_name(span.start.offset);
            return Err(LoadError::at(
                span.start,
                format!("alias {name} refers to a node that contains it"),
            ));
        };
        let cost = anchor.cost;
        if self.expecting_key() {
            let Some(text) = anchor.key_text.clone() else {
                return Err(LoadError::at(span.start, "mapping keys must be scalars"));
            };
            self.charge_alias(
                Cost {
                    nodes: 1,
                    height: 0,
                    bytes: text.len(),
                },
                span.start,
            )?;
            return self.key(text, span);
        }
        if self.stack.len() + cost.height > self.limits.max_depth {
            return Err(self.too_deep(span.start));
        }
        self.charge_alias(cost, span.start)?;
        self.add(
            INode {
                kind: IKind::Alias(id),
                span,
                quoted: false,
            },
            cost,
        )
    }

    /// Counts what an alias copies, before anything is copied.
    fn charge_alias(&mut self, cost: Cost, pos: Pos) -> Result<(), LoadError> {
        let max = self.limits.max_nodes;
        if cost.nodes > max.saturating_sub(self.nodes) {
            return Err(LoadError::at(
                pos,
                format!("alias expansion makes over {max} nodes (a YAML alias bomb?)"),
            ));
        }
        self.nodes += cost.nodes;
        self.copied_bytes = self.copied_bytes.saturating_add(cost.bytes);
        if self.copied_bytes > self.limits.max_bytes {
            let max = size_text(self.limits.max_bytes);
            return Err(LoadError::at(
                pos,
                format!("alias expansion copies over {max} of text (a YAML alias bomb?)"),
            ));
        }
        Ok(())
    }

    fn too_deep(&self, pos: Pos) -> LoadError {
        LoadError::at(
            pos,
            format!("nesting deeper than {} levels", self.limits.max_depth),
        )
    }

    fn start(
        &mut self,
        map: bool,
        anchor: usize,
        tag: Option<&Tag>,
        start: &Marker,
        end: &Marker,
    ) -> Result<(), LoadError> {
        let event_start = self.loc.at_mark(start);
        let event_end = self.loc.at_mark(end);
        let bytes = self.text.as_bytes();
        let (start_byte, end_byte) = (event_start.offset, event_end.offset);
        let content = if anchor > 0 || tag.is_some() {
            skip_properties(bytes, start_byte, end_byte)
        } else {
            start_byte
        };
        let content_pos = self.loc.at_byte(content);
        if self.expecting_key() {
            return Err(LoadError::at(content_pos, "mapping keys must be scalars"));
        }
        if let Some(tag) = tag {
            let core = core_tag(tag).map_err(|msg| LoadError::at(event_start, msg))?;
            let want = if map { CoreTag::Map } else { CoreTag::Seq };
            if core != want {
                let what = if map { "mapping" } else { "sequence" };
                return Err(LoadError::at(
                    event_start,
                    format!("unsupported tag !!{} on a {what}", tag.suffix),
                ));
            }
        }
        if self.stack.len() >= self.limits.max_depth {
            return Err(self.too_deep(content_pos));
        }
        self.count_node(content_pos)?;
        let flow = matches!(bytes.get(content), Some(b'[' | b'{'));
        self.prev_end = if flow { content + 1 } else { content };
        let kind = if map {
            FrameKind::Map {
                entries: Vec::new(),
                key: None,
                index: None,
            }
        } else {
            FrameKind::Seq(Vec::new())
        };
        let cost = Cost {
            nodes: 1,
            height: 0,
            bytes: 0,
        };
        self.stack.push(Frame {
            kind,
            start: content_pos,
            anchor,
            flow,
            last_end: content_pos,
            cost,
        });
        Ok(())
    }

    fn end(&mut self, start: &Marker) -> Result<(), LoadError> {
        let Some(frame) = self.stack.pop() else {
            return Ok(());
        };
        let end = if frame.flow {
            // The closing bracket is one (ASCII) character; saphyr's span may run on over blanks and a comment.
            let at = self.loc.at_mark(start);
            let after = at.offset + 1;
            self.loc.at_byte(after.min(self.text.len()))
        } else {
            frame.last_end
        };
        self.prev_end = self.prev_end.max(end.offset);
        let span = Span {
            start: frame.start,
            end,
        };
        let kind = match frame.kind {
            FrameKind::Seq(items) => IKind::Seq(items),
            FrameKind::Map { entries, .. } => IKind::Map(entries),
        };
        let cost = Cost {
            height: frame.cost.height + 1,
            ..frame.cost
        };
        let mut node = INode {
            kind,
            span,
            quoted: false,
        };
        if frame.anchor > 0 {
            self.anchors.insert(
                frame.anchor,
                Anchor {
                    node,
                    cost,
                    key_text: None,
                },
            );
            node = INode {
                kind: IKind::Anchored(frame.anchor),
                span,
                quoted: false,
            };
        }
        self.add(node, cost)
    }

    /// Adds a finished node to the collection being built (or makes it the root).
    fn add(&mut self, node: INode, cost: Cost) -> Result<(), LoadError> {
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        frame.cost.nodes += cost.nodes;
        frame.cost.bytes += cost.bytes;
        frame.cost.height = frame.cost.height.max(cost.height);
        frame.last_end = node.span.end;
        match &mut frame.kind {
            FrameKind::Seq(items) => items.push(node),
            FrameKind::Map { entries, key, .. } => {
                let Some((key, key_span)) = key.take() else {
                    return Err(LoadError::at(node.span.start, "mapping value without a key"));
                };
                entries.push(IEntry {
                    key,
                    key_span,
                    value: node,
                });
            }
        }
        Ok(())
    }
}

/// Makes the final tree, expanding anchors and aliases (their cost was
/// checked as they were read). Recursion is bounded by `max_depth`.
fn materialize(node: INode, anchors: &HashMap<usize, Anchor>) -> Node {
    let kind = match node.kind {
        IKind::Leaf(kind) => kind,
        IKind::Seq(items) => NodeKind::Seq(items.into_iter().map(|n| materialize(n, anchors)).collect()),
        IKind::Map(entries) => NodeKind::Map(
            entries
                .into_iter()
                .map(|e| Entry {
                    key: e.key,
                    key_span: e.key_span,
                    value: materialize(e.value, anchors),
                })
                .collect(),
        ),
        IKind::Anchored(id) => return expand(id, None, anchors),
        IKind::Alias(id) => return expand(id, Some(node.span), anchors),
    };
    Node {
        kind,
        span: node.span,
        quoted: node.quoted,
    }
}

/// [`materialize`] for a node of the anchor table, which may be needed again.
fn copy_anchored(node: &INode, anchors: &HashMap<usize, Anchor>) -> Node {
    let kind = match &node.kind {
        IKind::Leaf(kind) => kind.clone(),
        IKind::Seq(items) => NodeKind::Seq(items.iter().map(|n| copy_anchored(n, anchors)).collect()),
        IKind::Map(entries) => NodeKind::Map(
            entries
                .iter()
                .map(|e| Entry {
                    key: e.key.clone(),
                    key_span: e.key_span,
                    value: copy_anchored(&e.value, anchors),
                })
                .collect(),
        ),
        IKind::Anchored(id) => return expand(*id, None, anchors),
        IKind::Alias(id) => return expand(*id, Some(node.span), anchors),
    };
    Node {
        kind,
        span: node.span,
        quoted: node.quoted,
    }
}

/// A copy of anchored node `id`; an alias's copy takes the alias's span.
fn expand(id: usize, alias_span: Option<Span>, anchors: &HashMap<usize, Anchor>) -> Node {
    let mut copy = match anchors.get(&id) {
        Some(anchor) => copy_anchored(&anchor.node, anchors),
        None => Node {
            kind: NodeKind::Null,
            span: Span::default(),
            quoted: false,
        }, // unreachable: checked when read
    };
    if let Some(span) = alias_span {
        copy.span = span;
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn load(text: &str) -> Node {
        match parse(text, &Limits::default()) {
            Ok(node) => node,
            Err(err) => panic!("unexpected error: {err}"),
        }
    }

    fn load_err(text: &str) -> LoadError {
        match parse(text, &Limits::default()) {
            Ok(node) => panic!("expected an error, got {:?}", node.to_json()),
            Err(err) => err,
        }
    }

    /// (line, col) of a span's start and end.
    fn lc(span: Span) -> ((usize, usize), (usize, usize)) {
        ((span.start.line, span.start.col), (span.end.line, span.end.col))
    }

    fn start(span: Span) -> (usize, usize) {
        (span.start.line, span.start.col)
    }

    fn err_lc(err: &LoadError) -> (usize, usize) {
        let pos = err.pos.expect("error has a position");
        (pos.line, pos.col)
    }

    const CONFIG: &str = "\
# coordinator
name: main
workers:
  - name: fetch
    command: [python, fetch.py]
    timeout: 30
  - name: \"parse\"
    env:
      TOKEN: ${TOKEN}
retries: 3
";

    #[test]
    fn small_config_values_and_positions() {
        let root = load(CONFIG);
        assert_eq!(
            root.to_json(),
            serde_json::json!({
                "name": "main",
                "workers": [
                    {"name": "fetch", "command": ["python", "fetch.py"], "timeout": 30},
                    {"name": "parse", "env": {"TOKEN": "${TOKEN}"}},
                ],
                "retries": 3,
            })
        );
        // Key order is kept.
        let keys: Vec<_> = root.to_json().as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["name", "workers", "retries"]);

        assert_eq!(lc(root.span_at("/name")), ((2, 7), (2, 11)));
        assert_eq!(lc(root.span_at("/workers/0/name")), ((4, 11), (4, 16)));
        assert_eq!(lc(root.span_at("/workers/0/command")), ((5, 14), (5, 32)));
        assert_eq!(lc(root.span_at("/workers/0/command/1")), ((5, 23), (5, 31)));
        assert_eq!(lc(root.span_at("/workers/0/timeout")), ((6, 14), (6, 16)));
        // A quoted scalar spans its quotes.
        assert_eq!(lc(root.span_at("/workers/1/name")), ((7, 11), (7, 18)));
        assert!(root.at("/workers/1/name").unwrap().quoted);
        assert!(!root.at("/workers/0/name").unwrap().quoted);
        // Block collections: from the first entry to the end of the last one.
        assert_eq!(lc(root.span_at("/workers")), ((4, 3), (9, 22)));
        assert_eq!(lc(root.span_at("/workers/1")), ((7, 5), (9, 22)));
        assert_eq!(lc(root.span), ((2, 1), (10, 11)));
        // Byte offsets.
        assert_eq!(root.span_at("/name").start.offset, CONFIG.find("main").unwrap());
        assert_eq!(root.span_at("/retries").start.offset, CONFIG.find("3\n").unwrap());

        assert_eq!(root.key_span_at("/workers").map(lc), Some(((3, 1), (3, 8))));
        assert_eq!(
            root.key_span_at("/workers/0/timeout").map(lc),
            Some(((6, 5), (6, 12)))
        );
        assert_eq!(
            root.key_span_at("/workers/1/env/TOKEN").map(lc),
            Some(((9, 7), (9, 12)))
        );
    }

    #[test]
    fn span_at_missing_pointers_falls_back_to_the_deepest_ancestor() {
        let root = load(CONFIG);
        assert_eq!(root.span_at("/workers/0/timout"), root.span_at("/workers/0"));
        assert_eq!(root.span_at("/workers/7/name"), root.span_at("/workers"));
        assert_eq!(root.span_at("/workers/01"), root.span_at("/workers"));
        assert_eq!(root.span_at("/workers/-"), root.span_at("/workers"));
        assert_eq!(root.span_at("/name/deeper"), root.span_at("/name"));
        assert_eq!(root.span_at(""), root.span);
        assert_eq!(root.span_at("no-slash"), root.span);
        assert!(root.at("/workers/0/timout").is_none());
        assert!(root.at("no-slash").is_none());
        assert_eq!(root.at("").unwrap(), &root);
    }

    #[test]
    fn key_span_at_only_for_existing_entries() {
        let root = load(CONFIG);
        assert_eq!(root.key_span_at(""), None);
        assert_eq!(root.key_span_at("/workers/0/timout"), None);
        assert_eq!(root.key_span_at("/workers/0"), None); // a sequence item has no key
        assert_eq!(root.key_span_at("/nope/name"), None);
    }

    #[test]
    fn pointer_escaping() {
        let root = load("a/b: 1\nm~n: 2\n\"~1\": 3\n'': 4\n");
        assert_eq!(root.at("/a~1b").unwrap().kind, NodeKind::Int(1));
        assert_eq!(root.at("/m~0n").unwrap().kind, NodeKind::Int(2));
        assert_eq!(root.at("/~01").unwrap().kind, NodeKind::Int(3));
        assert_eq!(root.at("/").unwrap().kind, NodeKind::Int(4));
        assert_eq!(root.key_span_at("/a~1b").map(lc), Some(((1, 1), (1, 4))));
        assert_eq!(root.key_span_at("/~01").map(start), Some((3, 1)));
        assert!(root.at("/a/b").is_none());
        let mut pointers = Vec::new();
        root.walk(&mut |p, _| pointers.push(p.to_owned()));
        assert_eq!(pointers, ["", "/a~1b", "/m~0n", "/~01", "/"]);
    }

    #[test]
    fn walk_visits_every_node_in_pre_order() {
        let root = load(CONFIG);
        let mut seen = Vec::new();
        root.walk(&mut |p, n| {
            if let NodeKind::Str(s) = &n.kind
                && s.contains("${")
            {
                seen.push((p.to_owned(), start(n.span)));
            }
        });
        assert_eq!(seen, [("/workers/1/env/TOKEN".to_owned(), (9, 14))]);
        let mut count = 0;
        root.walk(&mut |_, _| count += 1);
        assert_eq!(count, 14);
    }

    #[test]
    fn core_schema_scalars() {
        use NodeKind::*;
        let cases: &[(&str, NodeKind)] = &[
            ("~", Null),
            ("null", Null),
            ("Null", Null),
            ("NULL", Null),
            ("", Null),
            ("true", Bool(true)),
            ("True", Bool(true)),
            ("TRUE", Bool(true)),
            ("false", Bool(false)),
            ("FALSE", Bool(false)),
            ("yes", Str("yes".into())),
            ("on", Str("on".into())),
            ("nULL", Str("nULL".into())),
            ("0", Int(0)),
            ("-17", Int(-17)),
            ("+17", Int(17)),
            ("007", Int(7)),
            ("0o17", Int(15)),
            ("0x1F", Int(31)),
            ("0x", Str("0x".into())),
            ("0o8", Str("0o8".into())),
            ("1_000", Str("1_000".into())),
            ("9223372036854775807", Int(i64::MAX)),
            ("-9223372036854775808", Int(i64::MIN)),
            ("9223372036854775808", Float(9_223_372_036_854_775_808.0)),
            ("0x10000000000000000", Str("0x10000000000000000".into())),
            ("1.5", Float(1.5)),
            ("-.5", Float(-0.5)),
            ("1.", Float(1.0)),
            ("1e3", Float(1000.0)),
            ("2.5E-1", Float(0.25)),
            ("+1.e2", Float(100.0)),
            (".", Str(".".into())),
            ("1e", Str("1e".into())),
            ("e3", Str("e3".into())),
            (".inf", Float(f64::INFINITY)),
            ("-.Inf", Float(f64::NEG_INFINITY)),
            ("+.INF", Float(f64::INFINITY)),
            ("inf", Str("inf".into())),
            ("nan", Str("nan".into())),
            ("1.2.3", Str("1.2.3".into())),
            ("12:30", Str("12:30".into())),
            ("${VAR}", Str("${VAR}".into())),
            ("${A:-x} and $B", Str("${A:-x} and $B".into())),
            ("hello world", Str("hello world".into())),
        ];
        for (text, want) in cases {
            let root = load(&format!("v: {text}\n"));
            assert_eq!(&root.at("/v").unwrap().kind, want, "for {text:?}");
            assert!(!root.at("/v").unwrap().quoted);
        }
        let nan = load("v: .NaN").at("/v").unwrap().kind.clone();
        assert!(matches!(nan, Float(x) if x.is_nan()));
        assert_eq!(resolve_plain("-.nan"), None);
    }

    #[test]
    fn quoted_and_block_scalars_stay_strings() {
        let root = load(
            "a: \"true\"\nb: '42'\nc: \"\"\nd: |\n  null\ne: >-\n  1.5\nf: 'it''s'\ng: \"tab\\t\\\"q\\\"\"\n",
        );
        let json = root.to_json();
        assert_eq!(
            json,
            serde_json::json!({"a": "true", "b": "42", "c": "", "d": "null\n", "e": "1.5", "f": "it's", "g": "tab\t\"q\""})
        );
        for key in ["a", "b", "c", "d", "e", "f", "g"] {
            assert!(root.at(&format!("/{key}")).unwrap().quoted, "{key}");
        }
        assert_eq!(lc(root.span_at("/a")), ((1, 4), (1, 10)));
        assert_eq!(lc(root.span_at("/f")), ((8, 4), (8, 11)));
        assert_eq!(lc(root.span_at("/g")), ((9, 4), (9, 16)));
        // A block scalar starts at its indicator.
        assert_eq!(start(root.span_at("/d")), (4, 4));
        assert_eq!(start(root.span_at("/e")), (6, 4));
    }

    #[test]
    fn non_finite_floats_become_marker_strings_in_json() {
        let root = load("a: .inf\nb: -.inf\nc: .nan\nd: 1e999\ne: 2.5\n");
        assert_eq!(
            root.to_json(),
            serde_json::json!({"a": ".inf", "b": "-.inf", "c": ".nan", "d": ".inf", "e": 2.5})
        );
    }

    #[test]
    fn keys_are_their_text() {
        let root = load("1: a\ntrue: b\nnull: c\n~: d\n\"q\": e\n1.0: f\n");
        let keys: Vec<_> = match &root.kind {
            NodeKind::Map(entries) => entries.iter().map(|e| e.key.as_str()).collect(),
            _ => panic!(),
        };
        assert_eq!(keys, ["1", "true", "null", "~", "q", "1.0"]);
        assert_eq!(root.key_span_at("/q").map(lc), Some(((5, 1), (5, 4))));
    }

    #[test]
    fn merge_keys_are_plain_keys() {
        let root = load("base: &b {x: 1}\nitem:\n  <<: *b\n  y: 2\n");
        assert_eq!(
            root.to_json(),
            serde_json::json!({"base": {"x": 1}, "item": {"<<": {"x": 1}, "y": 2}})
        );
    }

    #[test]
    fn json_input_gets_positions() {
        let text = "{\n  \"name\": \"x\",\n  \"workers\": [\n    {\"timeout\": 1.5, \"tags\": [\"a\", null, true]}\n  ]\n}\n";
        let root = load(text);
        assert_eq!(
            root.to_json(),
            serde_json::json!({"name": "x", "workers": [{"timeout": 1.5, "tags": ["a", null, true]}]})
        );
        assert_eq!(lc(root.span), ((1, 1), (6, 2)));
        assert_eq!(lc(root.span_at("/name")), ((2, 11), (2, 14)));
        assert_eq!(lc(root.span_at("/workers")), ((3, 14), (5, 4)));
        assert_eq!(lc(root.span_at("/workers/0")), ((4, 5), (4, 48)));
        assert_eq!(lc(root.span_at("/workers/0/timeout")), ((4, 17), (4, 20)));
        assert_eq!(lc(root.span_at("/workers/0/tags/1")), ((4, 36), (4, 40)));
        assert_eq!(
            root.key_span_at("/workers/0/timeout").map(lc),
            Some(((4, 6), (4, 15)))
        );
        // Minified JSON on one line.
        let root = load(r#"{"a":[1,2,{"b":"c"}],"d":"e"}"#);
        assert_eq!(lc(root.span_at("/a/2/b")), ((1, 16), (1, 19)));
        assert_eq!(lc(root.span_at("/a")), ((1, 6), (1, 21)));
    }

    #[test]
    fn columns_count_characters() {
        let text = "ключ: «значение» # коммент\nx: [é, 😀, ü]\n";
        let root = load(text);
        assert_eq!(lc(root.span_at("/ключ")), ((1, 7), (1, 17)));
        assert_eq!(root.span_at("/ключ").start.offset, text.find('«').unwrap());
        assert_eq!(lc(root.span_at("/x/1")), ((2, 8), (2, 9)));
        assert_eq!(lc(root.span_at("/x/2")), ((2, 11), (2, 12)));
        assert_eq!(root.span_at("/x/2").start.offset, text.find('ü').unwrap());
        assert_eq!(lc(root.span_at("/x")), ((2, 4), (2, 13)));
        let err = load_err("é: ü: [");
        assert_eq!(err_lc(&err).0, 1);
    }

    #[test]
    fn crlf_and_comments_and_trailing_blanks() {
        let root = load("a: 1\r\nb:   \"x\"   # note \"y\"\r\nc: [1, 2]  # c\r\nd: {k: v}   \r\n");
        assert_eq!(lc(root.span_at("/b")), ((2, 6), (2, 9)));
        assert_eq!(lc(root.span_at("/c")), ((3, 4), (3, 10)));
        assert_eq!(lc(root.span_at("/d")), ((4, 4), (4, 10)));
        assert_eq!(lc(root.span), ((1, 1), (4, 10)));
    }

    #[test]
    fn anchors_and_aliases() {
        let text = "defaults: &d\n  timeout: 5\n  retries: 2\nworkers:\n  - *d\n  - &n name\n  - *n\n*n : key-from-alias\n";
        let root = load(text);
        assert_eq!(
            root.to_json(),
            serde_json::json!({
                "defaults": {"timeout": 5, "retries": 2},
                "workers": [{"timeout": 5, "retries": 2}, "name", "name"],
                "name": "key-from-alias",
            })
        );
        // The copy's root is where the alias is written; its insides point at the anchored text.
        assert_eq!(lc(root.span_at("/workers/0")), ((5, 5), (5, 7)));
        assert_eq!(start(root.span_at("/workers/0/timeout")), (2, 12));
        assert_eq!(lc(root.span_at("/defaults")), ((2, 3), (3, 13)));
        assert_eq!(lc(root.span_at("/workers/1")), ((6, 8), (6, 12)));
        assert_eq!(root.key_span_at("/name").map(start), Some((8, 1)));
        // An anchored scalar keeps its resolution.
        let root = load("a: &x 12\nb: *x\n");
        assert_eq!(root.at("/b").unwrap().kind, NodeKind::Int(12));
        assert_eq!(lc(root.span_at("/a")), ((1, 7), (1, 9)));
    }

    #[test]
    fn alias_errors() {
        let err = load_err("a: *nope\n");
        assert_eq!(err.message, "undefined alias *nope");
        assert_eq!(err_lc(&err), (1, 4));
        let err = load_err("a: &x [1, *x]\n");
        assert_eq!(err.message, "alias *x refers to a node that contains it");
        assert_eq!(err_lc(&err), (1, 11));
        let err = load_err("a: &x [1]\n*x : 2\n");
        assert_eq!(err.message, "mapping keys must be scalars");
        assert_eq!(err_lc(&err), (2, 1));
    }

    #[test]
    fn duplicate_keys() {
        let err = load_err("name: a\nother: b\nname: c\n");
        assert_eq!(err.message, "duplicate key `name` (first at line 1)");
        assert_eq!(err_lc(&err), (3, 1));
        let err = load_err("x:\n  - {a: 1, b: 2, a: 3}\n");
        assert_eq!(err.message, "duplicate key `a` (first at line 2)");
        assert_eq!(err_lc(&err), (2, 18));
        // Same text, different quoting: still the same key.
        assert_eq!(
            load_err("'a': 1\na: 2").message,
            "duplicate key `a` (first at line 1)"
        );
        // The same key in different mappings is fine.
        load("a: {x: 1}\nb: {x: 2}\n");
    }

    #[test]
    fn non_scalar_keys() {
        let err = load_err("? [a, b]\n: c\n");
        assert_eq!(err.message, "mapping keys must be scalars");
        assert_eq!(err_lc(&err), (1, 3));
        let err = load_err("{[a]: 1}");
        assert_eq!(err.message, "mapping keys must be scalars");
        assert_eq!(err_lc(&err), (1, 2));
        let err = load_err("a:\n  ? {x: 1}\n  : 2\n");
        assert_eq!(err.message, "mapping keys must be scalars");
        assert_eq!(err_lc(&err), (2, 5));
    }

    #[test]
    fn tags() {
        let root = load(
            "a: !!str 1\nb: !!int \"12\"\nc: !!float 3\nd: !!bool true\ne: !!null ~\nf: !!seq [1]\ng: !!map {}\nh: !!str\n",
        );
        assert_eq!(
            root.to_json(),
            serde_json::json!({"a": "1", "b": 12, "c": 3.0, "d": true, "e": null, "f": [1], "g": {}, "h": ""})
        );
        assert_eq!(lc(root.span_at("/a")), ((1, 10), (1, 11)));
        assert_eq!(lc(root.span_at("/f")), ((6, 10), (6, 13)));
        // `quoted` tells the style, whatever the tag made of it.
        assert!(root.at("/b").unwrap().quoted);
        assert!(!root.at("/a").unwrap().quoted);

        let err = load_err("a: 1\nb: !foo x\n");
        assert_eq!(err.message, "unsupported tag !foo");
        assert_eq!(err_lc(&err), (2, 4));
        assert_eq!(load_err("a: !!binary aGk=").message, "unsupported tag !!binary");
        assert_eq!(load_err("a: ! x").message, "unsupported tag !");
        assert_eq!(
            load_err("a: !<tag:example.com:x> x").message,
            "unsupported tag !<tag:example.com:x>"
        );
        assert_eq!(load_err("a: !foo [1]").message, "unsupported tag !foo");
        assert_eq!(
            load_err("a: !!map [1]").message,
            "unsupported tag !!map on a sequence"
        );
        assert_eq!(
            load_err("a: !!str {}").message,
            "unsupported tag !!str on a mapping"
        );
        assert_eq!(
            load_err("a: !!seq x").message,
            "unsupported tag !!seq on a scalar"
        );
        assert_eq!(load_err("a: !!int x").message, "invalid !!int value `x`");
        assert_eq!(load_err("a: !!int 1.5").message, "invalid !!int value `1.5`");
        assert_eq!(
            load_err("a: !!int 99999999999999999999").message,
            "!!int value `99999999999999999999` does not fit in 64 bits"
        );
        assert_eq!(load_err("a: !!bool yes").message, "invalid !!bool value `yes`");
        assert_eq!(load_err("a: !!null 0").message, "invalid !!null value `0`");
        assert_eq!(load_err("a: !!float x").message, "invalid !!float value `x`");
        assert_eq!(load_err("!foo a: 1").message, "unsupported tag !foo");
        // Verbatim core tags are the core tags.
        assert_eq!(
            load("a: !<tag:yaml.org,2002:str> 5").to_json(),
            serde_json::json!({"a": "5"})
        );
    }

    #[test]
    fn multiple_documents() {
        let err = load_err("a: 1\n---\nb: 2\n");
        assert_eq!(err.message, "expected one YAML document, found several");
        assert_eq!(err_lc(&err), (2, 1));
        let err = load_err("--- 1\n--- 2\n");
        assert_eq!(err.message, "expected one YAML document, found several");
        assert_eq!(err_lc(&err), (2, 1));
        // One explicit document, with or without an end marker, is fine.
        assert_eq!(load("---\na: 1\n...\n").to_json(), serde_json::json!({"a": 1}));
        assert_eq!(load("# c\n---\na: 1\n").to_json(), serde_json::json!({"a": 1}));
    }

    #[test]
    fn empty_documents_are_null_at_1_1() {
        for text in [
            "",
            "# only a comment\n",
            "\n\n   \n",
            "---\n",
            "---\n# c\n...\n",
            "\u{feff}",
        ] {
            let root = load(text);
            assert_eq!(root.kind, NodeKind::Null, "{text:?}");
            assert_eq!(lc(root.span), ((1, 1), (1, 1)), "{text:?}");
        }
    }

    fn billion_laughs() -> String {
        let mut text =
            String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for (prev, name) in ('a'..='h').zip('b'..='i') {
            let items = vec![format!("*{prev}"); 9].join(",");
            text.push_str(&format!("{name}: &{name} [{items}]\n"));
        }
        text
    }

    #[test]
    fn alias_bomb_fails_fast() {
        let text = billion_laughs();
        let t = Instant::now();
        let err = load_err(&text);
        assert!(t.elapsed() < Duration::from_secs(1), "took {:?}", t.elapsed());
        assert_eq!(
            err.message,
            "alias expansion makes over 1000000 nodes (a YAML alias bomb?)"
        );
        assert_eq!(err.pos.unwrap().line, 7);
        // With a bigger budget the same document still fails at its limit.
        let limits = Limits {
            max_nodes: 10_000,
            ..Limits::default()
        };
        let err = parse(&text, &limits).unwrap_err();
        assert_eq!(
            err.message,
            "alias expansion makes over 10000 nodes (a YAML alias bomb?)"
        );
        assert_eq!(err.pos.unwrap().line, 5);
    }

    #[test]
    fn alias_bomb_of_long_strings_fails_fast() {
        let big = "x".repeat(1 << 20);
        let mut text = format!("a: &a \"{big}\"\nb: [");
        text.push_str(&"*a,".repeat(20));
        text.push_str("]\n");
        let err = load_err(&text);
        assert_eq!(
            err.message,
            "alias expansion copies over 10 MiB of text (a YAML alias bomb?)"
        );
        assert_eq!(err_lc(&err), (2, 5 + 3 * 10)); // the 11th copy is over 10 MiB
    }

    #[test]
    fn alias_expansion_counts_toward_depth() {
        let limits = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        assert!(parse("a: &a [[1]]\nb: *a\n", &limits).is_ok());
        let err = parse("a: &a [[1]]\nb: [*a]\n", &limits).unwrap_err();
        assert_eq!(err.message, "nesting deeper than 3 levels");
        assert_eq!(err.pos.map(|p| (p.line, p.col)), Some((2, 5)));
    }

    #[test]
    fn node_limit_without_aliases() {
        let limits = Limits {
            max_nodes: 10,
            ..Limits::default()
        };
        let err = parse("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]", &limits).unwrap_err();
        assert_eq!(err.message, "document has over 10 nodes");
        assert!(parse("[1, 2, 3, 4, 5, 6, 7, 8, 9]", &limits).is_ok());
    }

    #[test]
    fn nesting_limit() {
        let text = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let err = load_err(&text);
        assert_eq!(err.message, "nesting deeper than 64 levels");
        assert_eq!(err_lc(&err), (1, 65));
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(load(&ok).at(&"/0".repeat(63)).is_some());
        // Much deeper input fails the same way without recursing.
        let text = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert_eq!(load_err(&text).message, "nesting deeper than 64 levels");
        let text = format!("{}{}", "{a: ".repeat(1000), "}".repeat(1000));
        assert_eq!(load_err(&text).message, "nesting deeper than 64 levels");
        let mut block = String::new();
        for i in 0..1000 {
            block.push_str(&" ".repeat(i));
            block.push_str("- \n");
        }
        assert_eq!(load_err(&block).message, "nesting deeper than 64 levels");
        // saphyr-parser stops at 255 flow levels whatever the limit, without overflowing.
        let limits = Limits {
            max_depth: 100_000,
            ..Limits::default()
        };
        let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse(&text, &limits).unwrap_err();
        assert_eq!(err.message, "nesting deeper than 255 levels");
        assert_eq!(err_lc(&err), (1, 256));
    }

    #[test]
    fn parse_bytes_rejects_nul() {
        let err = parse_bytes(b"a: 1\nb: x\0y\n", &Limits::default()).unwrap_err();
        assert_eq!(err.message, "binary file: NUL byte at line 2");
        assert_eq!(
            err.pos,
            Some(Pos {
                line: 2,
                col: 5,
                offset: 9
            })
        );
        // parse() checks too (saphyr would stop at a NUL).
        assert_eq!(load_err("a: 1\0").message, "binary file: NUL byte at line 1");
    }

    #[test]
    fn parse_bytes_rejects_invalid_utf8() {
        let err = parse_bytes(b"a: 1\nbb: \xc3\x28\n", &Limits::default()).unwrap_err();
        assert_eq!(err.message, "not UTF-8 text (binary file?) at byte 9");
        assert_eq!(
            err.pos,
            Some(Pos {
                line: 2,
                col: 5,
                offset: 9
            })
        );
        assert_eq!(
            err.to_string(),
            "line 2, column 5: not UTF-8 text (binary file?) at byte 9"
        );
        let err = parse_bytes(b"\xff\xfea\x00", &Limits::default()).unwrap_err();
        assert_eq!(err.message, "not UTF-8 text (binary file?) at byte 0");
    }

    #[test]
    fn parse_bytes_strips_a_bom() {
        let root = parse_bytes(b"\xef\xbb\xbfa: 1\nb: [x]\n", &Limits::default()).unwrap();
        assert_eq!(root.to_json(), serde_json::json!({"a": 1, "b": ["x"]}));
        // Positions are in the text after the BOM.
        assert_eq!(
            root.span_at("/a").start,
            Pos {
                line: 1,
                col: 4,
                offset: 3
            }
        );
        assert_eq!(
            root.key_span_at("/a").unwrap().start,
            Pos {
                line: 1,
                col: 1,
                offset: 0
            }
        );
        assert_eq!(
            root.span_at("/b/0").start,
            Pos {
                line: 2,
                col: 5,
                offset: 9
            }
        );
        assert_eq!(
            parse("\u{feff}a: 1", &Limits::default()).unwrap(),
            parse("a: 1", &Limits::default()).unwrap()
        );
        let err = parse_bytes(b"\xef\xbb\xbfa: \xff", &Limits::default()).unwrap_err();
        assert_eq!(err.message, "not UTF-8 text (binary file?) at byte 6");
        assert_eq!(
            err.pos,
            Some(Pos {
                line: 1,
                col: 4,
                offset: 3
            })
        );
    }

    #[test]
    fn parse_bytes_rejects_huge_input_before_decoding() {
        let bytes = vec![b' '; 101 * MIB];
        let t = Instant::now();
        let err = parse_bytes(&bytes, &Limits::default()).unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(50), "took {:?}", t.elapsed());
        assert_eq!(err.message, "file is 101 MiB; the limit is 10 MiB");
        assert_eq!(err.pos, None);
        assert_eq!(err.to_string(), "file is 101 MiB; the limit is 10 MiB");
        let err = parse_bytes(&bytes[..10 * MIB + 1], &Limits::default()).unwrap_err();
        assert_eq!(err.message, "file is 10485761 bytes; the limit is 10485760 bytes");
        let err = parse_bytes(
            &bytes[..15 * MIB / 2],
            &Limits {
                max_bytes: 10,
                ..Limits::default()
            },
        )
        .unwrap_err();
        assert_eq!(err.message, "file is 7.5 MiB; the limit is 10 bytes");
        assert_eq!(
            load_err(&"a".repeat(10 * MIB + 1)).message,
            "file is 10485761 bytes; the limit is 10485760 bytes"
        );
    }

    /// xorshift64*: a fixed pseudo-random sequence.
    fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn random_garbage_is_an_error_not_a_panic() {
        let bytes = random_bytes(0x9E37_79B9_7F4A_7C15, 100_000);
        assert!(parse_bytes(&bytes, &Limits::default()).is_err());
        // Garbage that is valid UTF-8 (high bytes and NULs dropped) reaches the parser.
        let ascii: Vec<u8> = bytes.iter().map(|b| b & 0x7f).filter(|&b| b != 0).collect();
        assert!(parse_bytes(&ascii, &Limits::default()).is_err());
    }

    #[test]
    fn random_yaml_like_text_never_panics() {
        let alphabet: Vec<char> = "-:[]{},&*!|>'\"#?%@`~. \n\n\n  \ta1xé😀\r0e+".chars().collect();
        let noise = random_bytes(42, 200_000);
        for (i, chunk) in noise.chunks(40).enumerate() {
            let text: String = chunk
                .iter()
                .map(|&b| alphabet[b as usize % alphabet.len()])
                .collect();
            let limits = Limits {
                max_depth: 8,
                max_nodes: 200,
                ..Limits::default()
            };
            if let Ok(root) = parse(&text, &limits) {
                // Every span must be a real position in the text.
                root.walk(&mut |_, n| {
                    for pos in [n.span.start, n.span.end] {
                        assert!(text.is_char_boundary(pos.offset), "case {i}: {text:?} {pos:?}");
                    }
                });
                let _ = root.to_json();
            }
        }
    }

    #[test]
    fn syntax_errors_have_lines() {
        let err = load_err("a: 1\nb: \"unterminated\nc: 3\n");
        assert_eq!(err.pos.unwrap().line, 2, "{err}");
        let err = load_err("a:\n  b: 1\n c: 2\n");
        assert_eq!(err.pos.unwrap().line, 3, "{err}");
        let err = load_err("a: [1, 2\nb: 3\n");
        assert!(err.pos.unwrap().line >= 2, "{err}");
        let err = load_err("a: b: c\n");
        assert_eq!(err_lc(&err), (1, 5), "{err}");
    }

    #[test]
    fn display() {
        let err = LoadError {
            message: "boom".into(),
            pos: Some(Pos {
                line: 3,
                col: 7,
                offset: 20,
            }),
        };
        assert_eq!(err.to_string(), "line 3, column 7: boom");
        let err: Box<dyn std::error::Error> = Box::new(err);
        assert_eq!(err.to_string(), "line 3, column 7: boom");
    }

    #[test]
    fn large_documents_parse_in_linear_time() {
        let mut text = String::new();
        for i in 0..1000 {
            text.push_str(&format!("w{i}:\n"));
            for k in 0..10 {
                text.push_str(&format!("  k{k}: \"value {i} {k}\"\n"));
            }
        }
        let t = Instant::now();
        let root = load(&text);
        let elapsed = t.elapsed();
        assert_eq!(
            root.at("/w999/k9").unwrap().kind,
            NodeKind::Str("value 999 9".into())
        );
        assert_eq!(start(root.span_at("/w999/k9")), (11_000, 7));
        // Generous: a few ms in release, much more in an unoptimized test build.
        assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    }
}
