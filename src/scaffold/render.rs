//! Placeholder substitution and safe paths.
//!
//! Placeholders are plain `{{name}}` replacements, not a template language: the values are
//! validated names, or JSON literals (`{{description_json}}`, `{{task_types_json}}`) that are
//! valid as strings and lists in JSON, TOML, Python, JavaScript and Rust alike.

use std::path::{Component, Path, PathBuf};

/// The values a template is rendered with.
#[derive(Debug, Clone)]
pub struct Values {
    pub name: String,
    pub package: String,
    pub description: String,
    pub task_types: Vec<String>,
    pub python_version: String,
    pub file_name: String,
}

impl Values {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("{{name}}", self.name.clone()),
            ("{{package}}", self.package.clone()),
            (
                "{{description_json}}",
                serde_json::to_string(&self.description).expect("a string serializes"),
            ),
            ("{{description}}", self.description.clone()),
            (
                "{{task_types_json}}",
                serde_json::to_string(&self.task_types).expect("strings serialize"),
            ),
            (
                "{{first_task_type}}",
                self.task_types.first().cloned().unwrap_or_default(),
            ),
            ("{{python_version}}", self.python_version.clone()),
            ("{{wh_version}}", env!("CARGO_PKG_VERSION").to_string()),
            (
                "{{protocol_version}}",
                crate::protocol::PROTOCOL_VERSION.to_string(),
            ),
            ("{{file_name}}", self.file_name.clone()),
        ]
    }

    /// The file's contents with every placeholder replaced.
    pub fn render(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (key, value) in self.pairs() {
            out = out.replace(key, &value);
        }
        out
    }

    /// Where a template file goes, relative to the target folder. Refuses anything that could
    /// leave it (absolute paths, `..`), whatever a template or a value holds.
    pub fn path(&self, template_path: &str) -> Result<PathBuf, String> {
        let mut out = PathBuf::new();
        for part in template_path.split('/') {
            if part.is_empty() {
                return Err(format!(
                    "template path `{template_path}` is not a plain relative path"
                ));
            }
            let part = match part {
                "__package__" => self.package.as_str(),
                "gitignore" => ".gitignore",
                "python-version" => ".python-version",
                "workerhost.yaml" => self.file_name.as_str(),
                other => other,
            };
            out.push(part);
        }
        let safe = out.components().all(|c| matches!(c, Component::Normal(_)));
        if !safe || out.as_os_str().is_empty() {
            return Err(format!(
                "template path `{template_path}` would leave the target folder"
            ));
        }
        Ok(out)
    }
}

/// Whether `path` lies inside `root` once joined (lexically; `path` is relative).
pub fn stays_inside(root: &Path, path: &Path) -> bool {
    root.join(path).starts_with(root) && path.components().all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values {
            name: "img-resize".into(),
            package: "img_resize".into(),
            description: "Resizes \"images\"\n".into(),
            task_types: vec!["Acme.Resize".into()],
            python_version: "3.11".into(),
            file_name: "workerhost.yaml".into(),
        }
    }

    #[test]
    fn placeholders_are_replaced_with_literals_valid_everywhere() {
        let v = values();
        assert_eq!(
            v.render("d = {{description_json}}"),
            r#"d = "Resizes \"images\"\n""#
        );
        assert_eq!(v.render("t = {{task_types_json}}"), r#"t = ["Acme.Resize"]"#);
    }

    #[test]
    fn paths_map_and_never_escape() {
        let v = values();
        assert_eq!(
            v.path("src/__package__/worker.py").unwrap(),
            PathBuf::from("src/img_resize/worker.py")
        );
        assert_eq!(v.path("gitignore").unwrap(), PathBuf::from(".gitignore"));
        assert!(v.path("../evil").is_err());
        assert!(v.path("/etc/passwd").is_err());
        let mut bad = values();
        bad.package = "..".into();
        assert!(bad.path("src/__package__/x").is_err());
        assert!(stays_inside(Path::new("/t"), Path::new("a/b")));
        assert!(!stays_inside(Path::new("/t"), Path::new("../b")));
    }
}
