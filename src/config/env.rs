//! `${VAR}` / `${VAR:-default}` substitution in config strings, and the `WORKERHOST_*`
//! environment overrides the design names.
//!
//! Both work on the JSON value of the config, before schema validation, and report problems
//! with the JSON pointer of the string they come from (mapped to a line by the caller).

use serde_json::Value;

/// A `${VAR}` with no default whose variable is not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undefined {
    pub var: String,
    pub pointer: String,
}

/// Where a `${...}` sits in a string, for lint rules that look at the raw text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub var: String,
    pub default: Option<String>,
}

/// The `${...}` references in one string, in order. `$${` is a literal `${`.
pub fn references(text: &str) -> Vec<Reference> {
    let mut found = Vec::new();
    let _ = expand(text, &mut |var, default| {
        found.push(Reference {
            var: var.to_string(),
            default: default.map(str::to_string),
        });
        Some(String::new())
    });
    found
}

/// Expands one string; `lookup` answers a variable (None: unset). Returns the expanded text,
/// or the first variable that is unset and has no default.
pub fn expand(
    text: &str,
    lookup: &mut dyn FnMut(&str, Option<&str>) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            // `$${` → a literal `${`.
            out.push_str("${");
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_start.find('}') else {
            // No closing brace: not a reference; keep the text as written.
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let body = &body_start[..end];
        let (var, default) = match body.split_once(":-") {
            Some((var, default)) => (var, Some(default)),
            None => (body, None),
        };
        if !is_var_name(var) {
            out.push_str(&rest[i..i + 2 + end + 1]);
            rest = &body_start[end + 1..];
            continue;
        }
        // As in the shell, `:-` also applies when the variable is set but empty.
        match (lookup(var, default), default) {
            (Some(value), Some(d)) if value.is_empty() => out.push_str(d),
            (Some(value), _) => out.push_str(&value),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(var.to_string()),
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces `${...}` in every string of `value` (keys untouched), using `env`.
/// An unset variable without default leaves the string as written and is reported.
pub fn substitute(value: &mut Value, env: &dyn Fn(&str) -> Option<String>) -> Vec<Undefined> {
    let mut undefined = Vec::new();
    walk_strings(value, String::new(), &mut |pointer, text| {
        if !text.contains("${") {
            return;
        }
        let mut lookup = |var: &str, _default: Option<&str>| env(var);
        match expand(text, &mut lookup) {
            Ok(expanded) => *text = expanded,
            Err(var) => undefined.push(Undefined {
                var,
                pointer: pointer.to_string(),
            }),
        }
    });
    undefined
}

fn walk_strings(value: &mut Value, pointer: String, f: &mut dyn FnMut(&str, &mut String)) {
    match value {
        Value::String(s) => f(&pointer, s),
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk_strings(item, format!("{pointer}/{i}"), f);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                walk_strings(item, format!("{pointer}/{}", escape(key)), f);
            }
        }
        _ => {}
    }
}

/// Escapes one JSON pointer segment.
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The overrides `wh` knows: variable → the config pointer it sets.
pub const OVERRIDES: &[(&str, &str)] = &[
    ("WORKERHOST_TASKMANAGER_TYPE", "/task_manager/type"),
    ("WORKERHOST_TASKMANAGER_URL", "/task_manager/url"),
    ("WORKERHOST_TASKMANAGER_API_KEY", "/task_manager/api_key"),
    ("WORKERHOST_TASKMANAGER_PATH", "/task_manager/path"),
    (
        "WORKERHOST_TASKMANAGER_POLL_INTERVAL",
        "/task_manager/poll_interval",
    ),
    ("WORKERHOST_TASKMANAGER_TIMEOUT", "/task_manager/timeout"),
    ("WORKERHOST_TASKMANAGER_MAX_RETRIES", "/task_manager/max_retries"),
    (
        "WORKERHOST_TASKMANAGER_RETRY_BACKOFF",
        "/task_manager/retry_backoff",
    ),
    ("WORKERHOST_LOGGING_LEVEL", "/logging/level"),
    ("WORKERHOST_LOGGING_FILE", "/logging/file"),
    ("WORKERHOST_LOGGING_STRUCTURED", "/logging/structured"),
];

/// What applying the overrides did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// (variable, pointer) set from the environment.
    pub set: Vec<(String, String)>,
    /// `WORKERHOST_*` variables that match no override (a typo?).
    pub unknown: Vec<String>,
}

/// Applies `WORKERHOST_*` overrides from `vars` to `value`. Numbers and booleans are typed
/// the way YAML would read them (`30` is a number, `true` a boolean).
pub fn apply_overrides(value: &mut Value, vars: &[(String, String)]) -> Applied {
    let mut applied = Applied::default();
    for (name, text) in vars {
        if !name.starts_with("WORKERHOST_") {
            continue;
        }
        let Some((_, pointer)) = OVERRIDES.iter().find(|(n, _)| n == name) else {
            applied.unknown.push(name.clone());
            continue;
        };
        let typed = typed_scalar(text);
        let (section, key) = pointer[1..]
            .split_once('/')
            .expect("override pointers have two segments");
        if !value.is_object() {
            continue;
        }
        let entry = value
            .as_object_mut()
            .unwrap()
            .entry(section.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(map) = entry {
            map.insert(key.to_string(), typed);
            applied.set.push((name.clone(), pointer.to_string()));
        }
    }
    applied
}

fn typed_scalar(text: &str) -> Value {
    match text {
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(n) = text.parse::<i64>() {
        return Value::from(n);
    }
    if let Ok(f) = text.parse::<f64>()
        && f.is_finite()
        && text.chars().all(|c| c.is_ascii_digit() || ".-+eE".contains(c))
    {
        return Value::from(f);
    }
    Value::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(var: &str) -> Option<String> {
        match var {
            "KEY" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_vars_and_defaults() {
        let mut v =
            json!({"a": "${KEY}", "b": ["x-${MISSING:-dflt}-y"], "c": "$${KEY} and $5", "d": "${EMPTY:-d}"});
        assert!(substitute(&mut v, &env).is_empty());
        assert_eq!(
            v,
            json!({"a": "s3cret", "b": ["x-dflt-y"], "c": "${KEY} and $5", "d": "d"})
        );
    }

    #[test]
    fn an_unset_var_is_reported_with_its_pointer() {
        let mut v = json!({"task_manager": {"api_key": "${NOPE}"}, "workers": [{"env": {"A/B": "${ALSO}"}}]});
        let undefined = substitute(&mut v, &env);
        assert_eq!(
            undefined,
            vec![
                Undefined {
                    var: "NOPE".into(),
                    pointer: "/task_manager/api_key".into()
                },
                Undefined {
                    var: "ALSO".into(),
                    pointer: "/workers/0/env/A~1B".into()
                },
            ]
        );
        assert_eq!(v["task_manager"]["api_key"], "${NOPE}", "left as written");
    }

    #[test]
    fn text_that_is_not_a_reference_stays() {
        let mut v = json!({"a": "${not a var}", "b": "${unclosed", "c": "${}"});
        let before = v.clone();
        assert!(substitute(&mut v, &env).is_empty());
        assert_eq!(v, before);
    }

    #[test]
    fn references_are_listed() {
        assert_eq!(
            references("${A}/${B:-x}"),
            vec![
                Reference {
                    var: "A".into(),
                    default: None
                },
                Reference {
                    var: "B".into(),
                    default: Some("x".into())
                }
            ]
        );
    }

    #[test]
    fn overrides_set_typed_values_and_catch_typos() {
        let mut v = json!({"workers": []});
        let vars = vec![
            (
                "WORKERHOST_TASKMANAGER_URL".to_string(),
                "http://x/api".to_string(),
            ),
            ("WORKERHOST_TASKMANAGER_TIMEOUT".to_string(), "45".to_string()),
            ("WORKERHOST_LOGGING_STRUCTURED".to_string(), "true".to_string()),
            ("WORKERHOST_LOGING_LEVEL".to_string(), "DEBUG".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let applied = apply_overrides(&mut v, &vars);
        assert_eq!(v["task_manager"], json!({"url": "http://x/api", "timeout": 45}));
        assert_eq!(v["logging"]["structured"], true);
        assert_eq!(applied.unknown, vec!["WORKERHOST_LOGING_LEVEL".to_string()]);
    }
}
