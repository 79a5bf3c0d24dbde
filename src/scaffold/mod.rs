//! `wh scaffold`: new workers (and a starter host config) from templates embedded in the
//! binary, written safely: names are validated first, the files are rendered into a temporary
//! folder beside the target and moved into place, so a failure leaves nothing half-written.

mod render;
pub mod templates;

use std::path::{Path, PathBuf};

pub use render::Values;
pub use templates::Template;

/// What to scaffold, as the user asked.
#[derive(Debug, Clone)]
pub struct Request {
    pub template: Template,
    /// The worker's name (for `config`: the file name, default `workerhost.yaml`).
    pub name: Option<String>,
    pub dir: Option<PathBuf>,
    pub task_types: Vec<String>,
    pub description: Option<String>,
    pub venv: bool,
    pub force: bool,
    /// Interpreter for `--venv` and the `.python-version` file.
    pub python: std::ffi::OsString,
}

/// What was written.
#[derive(Debug)]
pub struct Created {
    pub template: Template,
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub values: Values,
    pub venv: Option<PathBuf>,
}

/// Why nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("invalid worker name `{name}`: {why}")]
    Name { name: String, why: String },
    #[error("invalid task type `{0}`: use letters, digits, `.`, `_` and `-` (e.g. Acme.Image.Resize)")]
    TaskType(String),
    #[error("`{0}` exists and is not empty")]
    NotEmpty(PathBuf),
    #[error("`{0}` exists")]
    Exists(PathBuf),
    #[error("`{0}` exists and is not a folder")]
    NotADir(PathBuf),
    #[error("cannot write to `{path}`")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Usage(String),
    #[error("failed to set up the virtualenv: {0}")]
    Venv(String),
}

impl ScaffoldError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ScaffoldError::Name { .. } => Some("e.g. `wh scaffold python image-resizer`".into()),
            ScaffoldError::NotEmpty(_) => {
                Some("choose another --dir, or pass --force to write into it".into())
            }
            ScaffoldError::Exists(_) => Some("pass --force to replace it".into()),
            ScaffoldError::Write { .. } => Some("check the folder exists and is writable".into()),
            ScaffoldError::Venv(_) => {
                Some("nothing was kept; run again without --venv to get the files alone".into())
            }
            _ => None,
        }
    }
}

/// Names every template accepts: lowercase letters and digits in dash-separated words,
/// starting with a letter. It is the Python project (and, with `_`, package) name, the npm
/// package name and the Rust crate name.
pub fn validate_name(name: &str, template: Template) -> Result<(), ScaffoldError> {
    let bad = |why: &str| {
        Err(ScaffoldError::Name {
            name: name.to_string(),
            why: why.to_string(),
        })
    };
    if name.is_empty() || name.len() > 64 {
        return bad("use 1 to 64 characters");
    }
    let words_ok = name
        .split('-')
        .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) || !words_ok {
        return bad("use lowercase letters, digits and single dashes, starting with a letter");
    }
    let package = name.replace('-', "_");
    let reserved: &[&str] = match template {
        Template::Python => &[
            "and",
            "as",
            "assert",
            "async",
            "await",
            "break",
            "class",
            "continue",
            "def",
            "del",
            "elif",
            "else",
            "except",
            "finally",
            "for",
            "from",
            "global",
            "if",
            "import",
            "in",
            "is",
            "lambda",
            "nonlocal",
            "not",
            "or",
            "pass",
            "raise",
            "return",
            "try",
            "while",
            "with",
            "yield",
            "json",
            "sys",
            "os",
            "logging",
            "signal",
            "traceback",
            "typing",
            "test",
            "tests",
            "unittest",
            "pytest",
            "setuptools",
            "pip",
        ],
        Template::Rust => &[
            "test",
            "std",
            "core",
            "alloc",
            "proc_macro",
            "self",
            "super",
            "crate",
            "fn",
            "let",
            "mod",
            "use",
            "type",
            "impl",
            "struct",
            "enum",
            "match",
            "loop",
            "while",
            "for",
            "if",
            "else",
            "return",
            "async",
            "await",
            "move",
            "ref",
            "static",
            "const",
            "trait",
            "where",
            "unsafe",
            "extern",
            "dyn",
            "true",
            "false",
        ],
        Template::Node => &["node_modules", "favicon.ico"],
        Template::Config => &[],
    };
    if reserved.contains(&package.as_str()) || reserved.contains(&name) {
        return bad(&format!(
            "`{name}` is reserved for the {} template",
            template.name()
        ));
    }
    Ok(())
}

fn validate_task_type(t: &str) -> Result<(), ScaffoldError> {
    let ok =
        !t.is_empty() && t.len() <= 255 && t.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ScaffoldError::TaskType(t.to_string()))
    }
}

/// `image-resizer` → `ImageResizer.Process`, the default task type.
fn default_task_type(name: &str) -> String {
    let pascal: String = name
        .split('-')
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("{pascal}.Process")
}

/// The `major.minor` of an interpreter, for `.python-version`.
fn python_version(python: &std::ffi::OsStr) -> String {
    std::process::Command::new(python)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "3.11".into())
}

/// Validates everything, then writes. Nothing is written when this returns an error.
pub fn scaffold(req: &Request) -> Result<Created, ScaffoldError> {
    let template = req.template;
    if req.venv && template != Template::Python {
        return Err(ScaffoldError::Usage(
            "--venv applies to the python template only".into(),
        ));
    }
    let (name, target) = match template {
        Template::Config => {
            let file = req.name.clone().unwrap_or_else(|| "workerhost.yaml".into());
            if file.contains('/') || !(file.ends_with(".yaml") || file.ends_with(".yml")) {
                return Err(ScaffoldError::Usage(format!(
                    "`{file}`: give a file name ending in .yaml (put the folder in --dir)"
                )));
            }
            (file, req.dir.clone().unwrap_or_else(|| PathBuf::from(".")))
        }
        _ => {
            let Some(name) = req.name.clone() else {
                return Err(ScaffoldError::Usage(format!(
                    "name the worker: `wh scaffold {} NAME`",
                    template.name()
                )));
            };
            validate_name(&name, template)?;
            let dir = req.dir.clone().unwrap_or_else(|| PathBuf::from(&name));
            (name, dir)
        }
    };
    for t in &req.task_types {
        validate_task_type(t)?;
    }
    let task_types = if req.task_types.is_empty() {
        vec![default_task_type(&name)]
    } else {
        req.task_types.clone()
    };
    let values = Values {
        package: name.replace('-', "_"),
        description: req
            .description
            .clone()
            .unwrap_or_else(|| "A WorkerHost worker".into()),
        task_types,
        python_version: if template == Template::Python {
            python_version(&req.python)
        } else {
            String::new()
        },
        file_name: if template == Template::Config {
            name.clone()
        } else {
            "workerhost.yaml".into()
        },
        name,
    };

    // Render everything first: a template problem is found before anything is written.
    let mut rendered: Vec<(PathBuf, String)> = Vec::new();
    for (path, text) in template.files() {
        let path = values.path(path).map_err(ScaffoldError::Usage)?;
        rendered.push((path, values.render(text)));
    }
    if template == Template::Config {
        rendered.push((
            PathBuf::from("workerhost.schema.json"),
            crate::config::model::json_schema_text(),
        ));
    }

    let files: Vec<PathBuf> = rendered.iter().map(|(p, _)| p.clone()).collect();
    let created_dir = write_all(&target, rendered, req.force, template == Template::Config)?;

    let mut venv = None;
    if req.venv {
        match make_venv(&target, &req.python) {
            Ok(path) => venv = Some(path),
            Err(e) => {
                if created_dir {
                    let _ = std::fs::remove_dir_all(&target);
                }
                return Err(e);
            }
        }
    }
    Ok(Created {
        template,
        dir: target,
        files,
        values,
        venv,
    })
}

/// Writes the rendered files into `target`. A new target is filled in a temporary folder
/// beside it and renamed into place. An existing folder must be empty unless `force` (or
/// `allow_non_empty`, for the config template); no existing file is replaced unless `force`.
/// Each file is staged, then renamed in. Returns whether `target` was created.
fn write_all(
    target: &Path,
    files: Vec<(PathBuf, String)>,
    force: bool,
    allow_non_empty: bool,
) -> Result<bool, ScaffoldError> {
    let write_err = |path: &Path, source| ScaffoldError::Write {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::metadata(target) {
        Ok(m) if !m.is_dir() => Err(ScaffoldError::NotADir(target.to_path_buf())),
        Ok(_) => {
            let empty = std::fs::read_dir(target)
                .map_err(|e| write_err(target, e))?
                .next()
                .is_none();
            if !empty && !force && !allow_non_empty {
                return Err(ScaffoldError::NotEmpty(target.to_path_buf()));
            }
            if !force && let Some((path, _)) = files.iter().find(|(p, _)| target.join(p).exists()) {
                return Err(ScaffoldError::Exists(target.join(path)));
            }
            let staging = staging_dir(target)?;
            for (path, text) in &files {
                write_file(staging.path(), path, text)?;
            }
            for (path, _) in &files {
                let dest = target.join(path);
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| write_err(parent, e))?;
                }
                std::fs::rename(staging.path().join(path), &dest).map_err(|e| write_err(&dest, e))?;
            }
            Ok(false)
        }
        Err(_) => {
            let staging = staging_dir(target)?;
            for (path, text) in &files {
                write_file(staging.path(), path, text)?;
            }
            let staged = staging.keep();
            std::fs::rename(&staged, target).map_err(|e| {
                let _ = std::fs::remove_dir_all(&staged);
                write_err(target, e)
            })?;
            Ok(true)
        }
    }
}

/// A temporary folder on the same filesystem as `target` (beside it), so a rename moves it.
fn staging_dir(target: &Path) -> Result<tempfile::TempDir, ScaffoldError> {
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".wh-scaffold-");
    // The staging folder becomes the project: the usual folder mode (less the umask), not
    // tempfile's private 0700.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o777));
    }
    builder
        .tempdir_in(&parent)
        .map_err(|source| ScaffoldError::Write { path: parent, source })
}

fn write_file(root: &Path, path: &Path, text: &str) -> Result<(), ScaffoldError> {
    if !render::stays_inside(root, path) {
        return Err(ScaffoldError::Usage(format!(
            "refusing to write outside the target: {}",
            path.display()
        )));
    }
    let dest = root.join(path);
    let write_err = |p: &Path, source| ScaffoldError::Write {
        path: p.to_path_buf(),
        source,
    };
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| write_err(parent, e))?;
    }
    std::fs::write(&dest, text).map_err(|e| write_err(&dest, e))?;
    #[cfg(unix)]
    if text.starts_with("#!") {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755));
    }
    Ok(())
}

/// `python -m venv DIR/.venv`, then installs the worker (editable) and its dev group (pytest).
fn make_venv(dir: &Path, python: &std::ffi::OsStr) -> Result<PathBuf, ScaffoldError> {
    // Absolute: the commands below run inside `dir`.
    let dir = &std::path::absolute(dir).map_err(|e| ScaffoldError::Venv(e.to_string()))?;
    let venv = dir.join(".venv");
    let run =
        |program: &std::ffi::OsStr, args: &[&std::ffi::OsStr], what: &str| -> Result<(), ScaffoldError> {
            let out = std::process::Command::new(program)
                .args(args)
                .current_dir(dir)
                .output()
                .map_err(|e| ScaffoldError::Venv(format!("{what}: {e}")))?;
            if out.status.success() {
                Ok(())
            } else {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
                Err(ScaffoldError::Venv(format!(
                    "{what} failed: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                )))
            }
        };
    run(
        python,
        &["-m".as_ref(), "venv".as_ref(), ".venv".as_ref()],
        "python -m venv .venv",
    )?;
    let venv_python = venv.join("bin").join("python");
    let pip = |args: &[&str], what: &str| {
        let mut all: Vec<&std::ffi::OsStr> = vec![
            "-m".as_ref(),
            "pip".as_ref(),
            "--disable-pip-version-check".as_ref(),
        ];
        all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
        run(venv_python.as_os_str(), &all, what)
    };
    pip(
        &["install", "--quiet", "--editable", "."],
        "pip install --editable .",
    )?;
    // pip learned dependency groups in 25.1; older pips get the group's one entry by name.
    if pip(
        &["install", "--quiet", "--group", "dev"],
        "pip install --group dev",
    )
    .is_err()
    {
        pip(&["install", "--quiet", "pytest>=7"], "pip install pytest")?;
    }
    Ok(venv)
}

/// The host-config entry for a scaffolded worker, with paths as seen from the current folder
/// (where a config next to it would live).
pub fn config_snippet(created: &Created) -> String {
    let v = &created.values;
    let dir = display_rel(&created.dir);
    let types = serde_json::to_string(&v.task_types).expect("strings serialize");
    let start = match created.template {
        Template::Python if created.venv.is_some() => format!(
            "    venv_python: {dir}/.venv/bin/python\n    module: {}.worker\n    function: main\n",
            v.package
        ),
        Template::Python => format!("    script: src/{}/worker.py\n", v.package),
        Template::Node => "    command: [\"node\", \"worker.js\"]\n".to_string(),
        Template::Rust => format!("    command: [\"./target/release/{}\"]\n", v.name),
        Template::Config => String::new(),
    };
    format!(
        "workers:\n  - name: {}\n    description: {}\n    project_path: {dir}\n{start}    task_types: {types}\n    timeout: 300\n    max_retries: 3\n    # mode: persistent   # it also serves warm processes: check with wh test-worker --mode persistent\n",
        v.name,
        serde_json::to_string(&v.description).expect("a string serializes"),
    )
}

/// The command that checks the new worker against the protocol.
pub fn test_command(created: &Created) -> String {
    use crate::runner::shell_quote;
    let dir = display_rel(&created.dir);
    let v = &created.values;
    let task_type = format!("--task-type {}", shell_quote(&v.task_types[0]));
    match created.template {
        Template::Python if created.venv.is_some() => format!(
            "wh test-worker {task_type} --python {dir}/.venv/bin/python {dir}/src/{}/worker.py",
            v.package
        ),
        Template::Python => format!("wh test-worker {task_type} {dir}/src/{}/worker.py", v.package),
        Template::Node => format!("wh test-worker {task_type} -- node {dir}/worker.js"),
        Template::Rust => format!(
            "cargo build --release --manifest-path {dir}/Cargo.toml && wh test-worker {task_type} {dir}/target/release/{}",
            v.name
        ),
        Template::Config => format!("wh lint {dir}/{}", v.file_name),
    }
}

fn display_rel(path: &Path) -> String {
    let text = path.display().to_string();
    if path.is_absolute() || text.starts_with("./") || text.starts_with("../") || text == "." {
        text
    } else {
        format!("./{text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_per_template() {
        assert!(validate_name("image-resizer", Template::Python).is_ok());
        for bad in [
            "",
            "Image",
            "1st",
            "a--b",
            "a b",
            "trailing-",
            "a_b",
            &"x".repeat(65),
        ] {
            assert!(validate_name(bad, Template::Python).is_err(), "{bad}");
        }
        assert!(validate_name("json", Template::Python).is_err());
        assert!(validate_name("class", Template::Python).is_err());
        assert!(validate_name("test", Template::Rust).is_err());
        assert!(validate_name("json", Template::Rust).is_ok());
    }

    #[test]
    fn default_task_type_reads_well() {
        assert_eq!(default_task_type("image-resizer"), "ImageResizer.Process");
    }

    #[test]
    fn task_types_must_be_url_safe() {
        assert!(validate_task_type("Acme.Image-Resize_2").is_ok());
        assert!(validate_task_type("has space").is_err());
        assert!(validate_task_type("a/b").is_err());
    }

    #[test]
    fn every_template_renders_inside_its_folder() {
        let values = Values {
            name: "demo".into(),
            package: "demo".into(),
            description: "d".into(),
            task_types: vec!["T".into()],
            python_version: "3.11".into(),
            file_name: "workerhost.yaml".into(),
        };
        for t in Template::ALL {
            for (path, text) in t.files() {
                let p = values.path(path).unwrap();
                assert!(render::stays_inside(Path::new("/x"), &p));
                assert!(
                    !values.render(text).contains("{{"),
                    "{} {path}: a placeholder is left",
                    t.name()
                );
            }
        }
    }
}
