//! The tasks the compliance cases send, built from the user's task type and params.

use serde::Serialize;
use serde_json::{Map, Value, json};

/// What the success cases send, as the user set it.
#[derive(Debug, Clone)]
pub struct TaskTemplate {
    pub task_type: String,
    pub params: Map<String, Value>,
}

impl Default for TaskTemplate {
    fn default() -> Self {
        let mut params = Map::new();
        params.insert("input_data".into(), json!("hello world"));
        Self {
            task_type: DEFAULT_TASK_TYPE.into(),
            params,
        }
    }
}

/// The example worker's task type, the reference harness's default.
pub const DEFAULT_TASK_TYPE: &str = "PrismQ.Example.ProcessData";
/// The type the reference harness uses for "Unknown Task Type".
pub const UNKNOWN_TASK_TYPE: &str = "PrismQ.Unknown.TaskType";

/// Text with accents, CJK, an emoji outside the BMP and right-to-left script.
pub const UNICODE_SAMPLE: &str = " · héllo wörld · 日本語 · 🎉 · עברית";

/// Size of the padding the large-task case adds.
pub const LARGE_PADDING: usize = 2 * 1024 * 1024;

/// Now, as Python's `datetime.now(timezone.utc).isoformat()` writes it.
pub fn now_iso() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string()
}

impl TaskTemplate {
    /// Case 1 of the reference harness, with the user's type and params.
    pub fn valid(&self) -> Value {
        json!({
            "id": "test-001",
            "type": self.task_type,
            "params": self.params,
            "metadata": {"priority": 5, "created_at": now_iso()},
        })
    }

    /// Case 2: no `id`. The reference sends `{"input_data": "test"}`; with the user's own
    /// params we send those, so the only thing wrong is the missing id.
    pub fn missing_id(&self, user_params: bool) -> Value {
        let params = if user_params {
            Value::Object(self.params.clone())
        } else {
            json!({"input_data": "test"})
        };
        json!({"type": self.task_type, "params": params})
    }

    /// Case 3: a type no worker handles.
    pub fn unknown_type(&self) -> Value {
        json!({"id": "test-003", "type": UNKNOWN_TASK_TYPE, "params": {}})
    }

    /// Case 4: the user's type with empty params.
    pub fn empty_params(&self) -> Value {
        json!({"id": "test-004", "type": self.task_type, "params": {}})
    }

    /// The valid task with Unicode appended to every top-level string param (or, when there
    /// is none, carried in metadata).
    pub fn unicode(&self) -> Value {
        let mut task = self.valid();
        task["id"] = json!("test-unicode-ü");
        let mut touched = false;
        if let Some(params) = task["params"].as_object_mut() {
            for value in params.values_mut() {
                if let Value::String(s) = value {
                    s.push_str(UNICODE_SAMPLE);
                    touched = true;
                }
            }
        }
        if !touched {
            task["metadata"]["note"] = json!(UNICODE_SAMPLE.trim());
        }
        task
    }

    /// The valid task with about 2 MiB of padding in `metadata`, which workers must ignore.
    pub fn large(&self) -> Value {
        let mut task = self.valid();
        task["id"] = json!("test-large");
        let line = "The quick brown fox jumps over the lazy dog. ";
        let padding = line.repeat(LARGE_PADDING / line.len() + 1);
        task["metadata"]["padding"] = json!(padding);
        task
    }
}

/// Serializes like Python's `json.dumps(value)`: `", "` and `": "` separators, non-ASCII
/// escaped as `\uXXXX`. The basic cases send their tasks in the reference harness's bytes.
pub fn python_dumps(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value.serialize(&mut ser).expect("a Value always serializes");
    out
}

/// A task as persistent mode sends it, the way the host writes it: compact JSON (UTF-8, no
/// raw newline) followed by `\n`. Bytes that are not JSON (the invalid-JSON case) go as they
/// are, on one line.
pub fn as_line(input: &[u8]) -> Vec<u8> {
    let mut line = match serde_json::from_slice::<Value>(input) {
        Ok(value) => serde_json::to_vec(&value).expect("a Value always serializes"),
        Err(_) => input.iter().map(|&b| if b == b'\n' { b' ' } else { b }).collect(),
    };
    line.push(b'\n');
    line
}

/// Pretty-printed with two-space indent, as a multi-line task.
pub fn pretty(value: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).expect("a Value always serializes");
    out.push(b'\n');
    out
}

struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for ch in fragment.chars() {
            if ch.is_ascii() {
                w.write_all(&[ch as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_dumps_matches_json_dumps() {
        // python3 -c 'import json; print(json.dumps({"a": [1, "é🎉"], "b": {"c": None}}))'
        let v = json!({"a": [1, "é🎉"], "b": {"c": null}});
        assert_eq!(
            String::from_utf8(python_dumps(&v)).unwrap(),
            r#"{"a": [1, "\u00e9\ud83c\udf89"], "b": {"c": null}}"#
        );
    }

    #[test]
    fn iso_time_looks_like_python() {
        let t = now_iso();
        assert_eq!(t.len(), "2025-11-14T15:30:00.000000+00:00".len(), "{t}");
        assert!(t.ends_with("+00:00"));
    }

    #[test]
    fn unicode_lands_in_string_params_or_metadata() {
        let t = TaskTemplate::default();
        assert!(
            t.unicode()["params"]["input_data"]
                .as_str()
                .unwrap()
                .contains("日本語")
        );
        let numeric = TaskTemplate {
            task_type: "T".into(),
            params: Map::from_iter([("n".into(), json!(1))]),
        };
        assert!(
            numeric.unicode()["metadata"]["note"]
                .as_str()
                .unwrap()
                .contains("🎉")
        );
    }

    #[test]
    fn persistent_lines_are_compact_utf8() {
        let task = python_dumps(&json!({"id": "ü", "params": {"a": "🎉\nx"}}));
        assert_eq!(
            String::from_utf8(as_line(&task)).unwrap(),
            "{\"id\":\"ü\",\"params\":{\"a\":\"🎉\\nx\"}}\n"
        );
        assert_eq!(as_line(b"{\"id\": \n"), b"{\"id\":  \n");
    }

    #[test]
    fn large_task_is_over_two_mib() {
        let bytes = python_dumps(&TaskTemplate::default().large());
        assert!(bytes.len() > LARGE_PADDING);
    }
}
