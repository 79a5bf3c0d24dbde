//! The protocol's JSON Schemas, embedded from `schemas/` and compiled once.

use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::Value;

/// `schemas/task.schema.json`, as published for worker authors.
pub const TASK_SCHEMA: &str = include_str!("../../schemas/task.schema.json");
/// `schemas/result.schema.json`, as published for worker authors.
pub const RESULT_SCHEMA: &str = include_str!("../../schemas/result.schema.json");

/// One way a document breaks a schema: where (a JSON pointer) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "at {at}: {}", self.message)
    }
}

/// The compiled task and result schemas.
pub struct Schemas {
    task: Validator,
    result: Validator,
}

impl Schemas {
    /// The process-wide compiled schemas (compiled on first use).
    pub fn get() -> &'static Schemas {
        static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
        SCHEMAS.get_or_init(|| Schemas {
            task: compile(TASK_SCHEMA),
            result: compile(RESULT_SCHEMA),
        })
    }

    /// Compiles the schemas on a background thread, so a one-shot command pays for it while
    /// its worker starts rather than after it exits.
    pub fn warm_up() {
        std::thread::spawn(|| {
            Schemas::get();
        });
    }

    /// Every way `task` breaks the task schema (empty when it is a valid task).
    pub fn task_errors(&self, task: &Value) -> Vec<SchemaError> {
        errors(&self.task, task)
    }

    /// Every way `output` breaks the result schema (empty when it is a valid result).
    pub fn result_errors(&self, output: &Value) -> Vec<SchemaError> {
        errors(&self.result, output)
    }
}

fn compile(text: &str) -> Validator {
    let schema: Value = serde_json::from_str(text).expect("embedded schema is valid JSON");
    jsonschema::draft202012::new(&schema).expect("embedded schema compiles")
}

fn errors(validator: &Validator, instance: &Value) -> Vec<SchemaError> {
    validator
        .iter_errors(instance)
        .map(|e| SchemaError {
            pointer: e.instance_path().to_string(),
            message: e.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_success_needs_a_result_object() {
        let s = Schemas::get();
        assert!(
            s.result_errors(&json!({"success": true, "result": {}}))
                .is_empty()
        );
        assert!(!s.result_errors(&json!({"success": true})).is_empty());
        let errs = s.result_errors(&json!({"success": true, "result": "done"}));
        assert_eq!(errs[0].pointer, "/result");
    }

    #[test]
    fn a_failure_needs_a_typed_error() {
        let s = Schemas::get();
        let ok = json!({"success": false, "error": {"type": "E", "message": "m", "retry_possible": false, "traceback": null}});
        assert!(s.result_errors(&ok).is_empty());
        assert!(!s.result_errors(&json!({"success": false})).is_empty());
        let empty_type = json!({"success": false, "error": {"type": "", "message": "m"}});
        assert_eq!(s.result_errors(&empty_type)[0].pointer, "/error/type");
    }

    #[test]
    fn logs_are_level_message_objects() {
        let s = Schemas::get();
        let good = json!({"success": true, "result": {}, "logs": [{"level": "INFO", "message": "x"}]});
        assert!(s.result_errors(&good).is_empty());
        let bad = json!({"success": true, "result": {}, "logs": ["just a string"]});
        assert_eq!(s.result_errors(&bad)[0].pointer, "/logs/0");
        let level = json!({"success": true, "result": {}, "logs": [{"level": "WARN", "message": "x"}]});
        assert!(!s.result_errors(&level).is_empty());
    }

    #[test]
    fn success_must_be_a_boolean() {
        let s = Schemas::get();
        assert!(!s.result_errors(&json!({"success": 1, "result": {}})).is_empty());
    }

    #[test]
    fn task_schema_requires_id_type_params() {
        let s = Schemas::get();
        assert!(
            s.task_errors(&json!({"id": "1", "type": "T", "params": {}}))
                .is_empty()
        );
        assert!(!s.task_errors(&json!({"type": "T", "params": {}})).is_empty());
        assert!(
            !s.task_errors(&json!({"id": 1, "type": "T", "params": {}}))
                .is_empty()
        );
    }
}
