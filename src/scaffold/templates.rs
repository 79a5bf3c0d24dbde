//! The templates, embedded in the binary and versioned with it (and so with the protocol).
//!
//! Each file's path may hold the segment `__package__` (the Python package name); files named
//! `gitignore` and `python-version` are written as dotfiles. Contents use `{{placeholder}}`s
//! (see `render.rs`).

use serde::Serialize;

/// The templates `wh scaffold` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Template {
    /// A Python worker: pyproject.toml, src/ layout, pytest tests.
    Python,
    /// A Node.js worker: package.json, worker.js, node --test tests.
    Node,
    /// A Rust worker: a cargo binary with serde_json.
    Rust,
    /// A starter host config (workerhost.yaml) that `wh lint` accepts.
    Config,
}

impl Template {
    pub const ALL: [Template; 4] = [Template::Python, Template::Node, Template::Rust, Template::Config];

    pub fn name(self) -> &'static str {
        match self {
            Template::Python => "python",
            Template::Node => "node",
            Template::Rust => "rust",
            Template::Config => "config",
        }
    }

    /// One line for `wh scaffold --list`.
    pub fn summary(self) -> &'static str {
        match self {
            Template::Python => {
                "Python worker: pyproject.toml (PEP 621), src/ layout, pytest tests, stdlib only"
            }
            Template::Node => "Node.js worker: package.json, worker.js, node --test tests, no dependencies",
            Template::Rust => "Rust worker: cargo binary using serde_json, unit and integration tests",
            Template::Config => {
                "starter host config (workerhost.yaml + its JSON Schema) that wh lint accepts"
            }
        }
    }

    /// The template's files: (path in the template, contents).
    pub fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Template::Python => PYTHON,
            Template::Node => NODE,
            Template::Rust => RUST,
            Template::Config => CONFIG,
        }
    }
}

macro_rules! embed {
    ($($dir:literal / $path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("templates/", $dir, "/", $path)))),*]
    };
}

static PYTHON: &[(&str, &str)] = embed![
    "python" / "pyproject.toml",
    "python" / "README.md",
    "python" / "gitignore",
    "python" / "python-version",
    "python" / "src/__package__/__init__.py",
    "python" / "src/__package__/__main__.py",
    "python" / "src/__package__/worker.py",
    "python" / "tests/test_worker.py",
];

static NODE: &[(&str, &str)] = embed![
    "node" / "package.json",
    "node" / "README.md",
    "node" / "gitignore",
    "node" / "worker.js",
    "node" / "test/worker.test.js",
];

static RUST: &[(&str, &str)] = embed![
    "rust" / "Cargo.toml",
    "rust" / "README.md",
    "rust" / "gitignore",
    "rust" / "src/main.rs",
    "rust" / "tests/protocol.rs",
];

static CONFIG: &[(&str, &str)] = embed!["config" / "workerhost.yaml"];
