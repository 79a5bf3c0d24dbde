//! The lint rules beyond the schema, one per file. Each file's doc comment says what the rule
//! finds and why it matters; docs/config.md lists them all.

mod duplicate_worker_name;
mod endpoint_conflict;
mod executable_missing;
mod literal_secret;
mod module_not_found;
mod negative_retries;
mod not_enforced;
mod project_path_missing;
mod source_fields;
mod task_type_shadowed;
mod timeout_range;
mod undefined_env_var;
mod unknown_override;
mod windows_venv_path;
mod worker_start_form;

use super::Rule;

/// Every rule, in the order `wh lint --help` and the docs list them.
pub static ALL: &[&Rule] = &[
    &undefined_env_var::RULE,
    &unknown_override::RULE,
    &duplicate_worker_name::RULE,
    &task_type_shadowed::RULE,
    &worker_start_form::RULE,
    &executable_missing::RULE,
    &project_path_missing::RULE,
    &module_not_found::RULE,
    &windows_venv_path::RULE,
    &literal_secret::RULE,
    &timeout_range::RULE,
    &negative_retries::RULE,
    &endpoint_conflict::RULE,
    &not_enforced::RULE,
    &source_fields::RULE,
];
