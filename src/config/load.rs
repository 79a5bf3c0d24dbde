//! Loading a config file: bytes → positioned tree → `${VAR}` substitution → `WORKERHOST_*`
//! overrides → schema validation → the typed [`Config`].
//!
//! Every problem keeps the JSON pointer (and so the line) it comes from. `wh lint` turns the
//! problems into findings and adds its own rules; `wh test-worker --config` and the host
//! refuse a config with any of them.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::env::{self, Undefined};
use super::model::{Config, json_schema};
use super::yaml::{self, LoadError, Node};

/// File formats, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// One way a schema check failed.
#[derive(Debug, Clone)]
pub struct SchemaProblem {
    pub pointer: String,
    pub kind: SchemaKind,
    pub message: String,
}

/// The kinds of schema failure lint gives their own rule ids and hints.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaKind {
    /// Keys the schema does not allow; `allowed` are the keys it does.
    UnknownKeys {
        keys: Vec<String>,
        allowed: Vec<String>,
    },
    /// A value outside an enum.
    NotInEnum {
        options: Vec<String>,
    },
    /// A required key is missing.
    Missing {
        key: String,
    },
    /// A value of the wrong type; `expected` in words ("a list").
    WrongType {
        expected: String,
    },
    Other,
}

/// A file that could not become a config, or one with problems.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    /// The file's folder: config paths are relative to it.
    pub dir: PathBuf,
    pub source: String,
    pub tree: Node,
    /// After substitution and overrides.
    pub value: Value,
    pub undefined: Vec<Undefined>,
    pub unknown_overrides: Vec<String>,
    pub schema: Vec<SchemaProblem>,
    /// Present when the schema passed.
    pub config: Option<Config>,
}

/// The file could not be read or parsed at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read `{path}`: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("`{path}` is not a config file: use .yaml, .yml or .json")]
    Extension { path: String },
    #[error("`{path}` is {size}; config files are limited to {limit}")]
    TooLarge {
        path: String,
        size: String,
        limit: String,
    },
    #[error("`{path}` is not text: {what}")]
    Binary { path: String, what: String },
    #[error("{}{message}", line.map(|l| format!("line {l}, column {}: ", col.unwrap_or(1))).unwrap_or_default())]
    Syntax {
        message: String,
        line: Option<usize>,
        col: Option<usize>,
        offset: Option<usize>,
        source_text: Option<String>,
    },
}

/// The environment the loader reads: variables for `${VAR}` and the `WORKERHOST_*` overrides.
pub struct Environment {
    pub vars: Vec<(String, String)>,
}

impl Environment {
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

/// Reads and checks a config file.
pub fn load(path: &Path, env: &Environment) -> Result<Loaded, ReadError> {
    let shown = path.display().to_string();
    let format = Format::from_path(path).ok_or_else(|| ReadError::Extension { path: shown.clone() })?;
    let limits = yaml::Limits::default();
    // Refuse an oversized file by its metadata, before reading it.
    if let Ok(meta) = std::fs::metadata(path)
        && meta.len() as usize > limits.max_bytes
    {
        return Err(ReadError::TooLarge {
            path: shown,
            size: crate::protocol::human_bytes(meta.len()),
            limit: crate::protocol::human_bytes(limits.max_bytes as u64),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| ReadError::Io {
        path: shown.clone(),
        source,
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    load_bytes(path, &dir, &bytes, format, env)
}

/// The same, from bytes already read.
pub fn load_bytes(
    path: &Path,
    dir: &Path,
    bytes: &[u8],
    format: Format,
    env: &Environment,
) -> Result<Loaded, ReadError> {
    let limits = yaml::Limits::default();
    let shown = path.display().to_string();
    if bytes.len() > limits.max_bytes {
        return Err(ReadError::TooLarge {
            path: shown,
            size: crate::protocol::human_bytes(bytes.len() as u64),
            limit: crate::protocol::human_bytes(limits.max_bytes as u64),
        });
    }
    match std::str::from_utf8(bytes) {
        Err(e) => {
            let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
            return Err(ReadError::Binary {
                path: shown,
                what: format!("invalid UTF-8 at byte {} (line {line})", e.valid_up_to()),
            });
        }
        Ok(text) => {
            if let Some(i) = text.find('\0') {
                let line = text[..i].matches('\n').count() + 1;
                return Err(ReadError::Binary {
                    path: shown,
                    what: format!("a NUL byte at line {line}"),
                });
            }
        }
    }
    let syntax = |e: LoadError, text: Option<String>| ReadError::Syntax {
        message: e.message.clone(),
        line: e.pos.map(|p| p.line),
        col: e.pos.map(|p| p.col),
        offset: e.pos.map(|p| p.offset),
        source_text: text,
    };
    let tree = yaml::parse_bytes(bytes, &limits).map_err(|e| syntax(e, None))?;
    let source = String::from_utf8_lossy(bytes)
        .trim_start_matches('\u{feff}')
        .to_string();
    if format == Format::Json
        && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&source)
    {
        let offset = offset_of(&source, e.line(), e.column());
        return Err(ReadError::Syntax {
            message: format!("invalid JSON: {}", strip_position(&e)),
            line: Some(e.line()),
            col: Some(e.column()),
            offset: Some(offset),
            source_text: Some(source),
        });
    }

    let mut value = tree.to_json();
    let allow_env =
        value.pointer("/advanced/security/allow_environment_variables") != Some(&Value::Bool(false));
    let mut undefined = Vec::new();
    if allow_env {
        let typed = plain_single_references(&tree);
        undefined = env::substitute(&mut value, &|var| env.get(var));
        // `timeout: ${TIMEOUT:-30}` reads as YAML would read `timeout: 30`.
        for pointer in typed {
            if let Some(slot) = value.pointer_mut(&pointer)
                && let Value::String(text) = slot
                && let Ok(node) = yaml::parse(text, &limits)
            {
                let typed = node.to_json();
                if !typed.is_object() && !typed.is_array() {
                    *slot = typed;
                }
            }
        }
    }
    let applied = env::apply_overrides(&mut value, &env.vars);

    let schema = schema_problems(&value);
    let config = if schema.is_empty() {
        serde_json::from_value::<Config>(value.clone()).ok()
    } else {
        None
    };
    Ok(Loaded {
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
        source,
        tree,
        value,
        undefined,
        unknown_overrides: applied.unknown,
        schema,
        config,
    })
}

/// Pointers of plain (unquoted) scalars that are exactly one `${...}` reference.
fn plain_single_references(tree: &Node) -> Vec<String> {
    let mut found = Vec::new();
    tree.walk(&mut |pointer, node| {
        if let yaml::NodeKind::Str(text) = &node.kind
            && !node.quoted
            && text.starts_with("${")
            && text.ends_with('}')
            && env::references(text).len() == 1
            && text.matches("${").count() == 1
        {
            found.push(pointer.to_string());
        }
    });
    found
}

fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Byte offset of a 1-based line and column (in characters).
pub fn offset_of(source: &str, line: usize, col: usize) -> usize {
    let mut offset = 0;
    for (i, l) in source.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return offset
                + l.char_indices()
                    .nth(col.saturating_sub(1))
                    .map_or(l.len(), |(b, _)| b);
        }
        offset += l.len();
    }
    source.len()
}

/// Validates against the config schema, keeping what lint needs to explain each error.
pub fn schema_problems(value: &Value) -> Vec<SchemaProblem> {
    use jsonschema::error::ValidationErrorKind as K;
    let schema = json_schema();
    let validator = compiled();
    validator
        .iter_errors(value)
        .map(|e| {
            let pointer = e.instance_path().to_string();
            let kind = match e.kind() {
                K::AdditionalProperties { unexpected } => SchemaKind::UnknownKeys {
                    keys: unexpected.clone(),
                    allowed: allowed_keys(&schema, &pointer),
                },
                K::Enum { options } => SchemaKind::NotInEnum {
                    options: options
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                },
                K::Required { property } => SchemaKind::Missing {
                    key: property.as_str().unwrap_or_default().to_string(),
                },
                K::Type { kind } => SchemaKind::WrongType {
                    expected: type_names(kind),
                },
                _ => SchemaKind::Other,
            };
            SchemaProblem {
                pointer,
                kind,
                message: e.to_string(),
            }
        })
        .collect()
}

fn compiled() -> &'static jsonschema::Validator {
    static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    VALIDATOR
        .get_or_init(|| jsonschema::draft202012::new(&json_schema()).expect("the config schema compiles"))
}

/// The property names the schema allows for the object at `pointer` in a config.
pub fn allowed_keys(schema: &Value, pointer: &str) -> Vec<String> {
    let mut node = resolve_ref(schema, schema);
    for segment in pointer.split('/').skip(1) {
        let next = if segment.chars().all(|c| c.is_ascii_digit()) && node.get("items").is_some() {
            node.get("items")
        } else {
            node.get("properties")
                .and_then(|p| p.get(segment.replace("~1", "/").replace("~0", "~")))
        };
        match next {
            Some(n) => node = resolve_ref(schema, n),
            None => return Vec::new(),
        }
    }
    node.get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn resolve_ref<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    // `Option<T>` fields are `anyOf: [T, null]`: follow the non-null branch.
    if let Some(branch) = node.get("anyOf").and_then(Value::as_array).and_then(|branches| {
        branches
            .iter()
            .find(|b| b.get("type") != Some(&Value::from("null")))
    }) {
        return resolve_ref(root, branch);
    }
    match node
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
    {
        Some(pointer) => root.pointer(pointer).unwrap_or(node),
        None => node,
    }
}

/// "a list", "a number or nothing": the expected JSON types in words (null left out).
fn type_names(kind: &jsonschema::error::TypeKind) -> String {
    use jsonschema::JsonType;
    use jsonschema::error::TypeKind;
    let word = |t: JsonType| match t {
        JsonType::Array => "a list",
        JsonType::Boolean => "true or false",
        JsonType::Integer => "a whole number",
        JsonType::Null => "nothing",
        JsonType::Number => "a number",
        JsonType::Object => "a mapping",
        JsonType::String => "a string",
    };
    let words: Vec<&str> = match kind {
        TypeKind::Single(t) => vec![word(*t)],
        TypeKind::Multiple(set) => set.iter().filter(|t| *t != JsonType::Null).map(word).collect(),
    };
    words.join(" or ")
}

/// "a string", "a list": what a JSON value is, in words.
pub fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "a whole number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
