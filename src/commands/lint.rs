//! `wh lint`: lint each file, print in the chosen format, exit 0/1/2.

use std::path::PathBuf;

use super::{color_for, print_stdout};
use crate::cli::LintArgs;
use crate::config::load::Environment;
use crate::config::model::json_schema_text;
use crate::error::Failure;
use crate::exit;
use crate::lint::render::{self, LintFormat};
use crate::lint::{Severity, lint_file, rules};

const DEFAULT_FILES: [&str; 3] = ["workerhost.yaml", "workerhost.yml", "workerhost.json"];

pub fn run(args: LintArgs) -> Result<u8, Failure> {
    if args.print_schema {
        print_stdout(json_schema_text().as_bytes())?;
        return Ok(exit::OK);
    }
    if args.list_rules {
        let mut text = String::new();
        for rule in rules::ALL {
            let severity = match rule.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            text.push_str(&format!("{:<26} {:<8} {}\n", rule.id, severity, rule.summary));
        }
        print_stdout(text.as_bytes())?;
        return Ok(exit::OK);
    }
    let files: Vec<PathBuf> = if args.files.is_empty() {
        match DEFAULT_FILES.iter().map(PathBuf::from).find(|p| p.is_file()) {
            Some(found) => vec![found],
            None => {
                return Err(
                    Failure::new(exit::USAGE, "no config file given, and no workerhost.yaml here")
                        .hint("wh lint path/to/config.yaml"),
                );
            }
        }
    } else {
        args.files.clone()
    };

    let env = Environment::from_process();
    let mut reports = Vec::new();
    let mut unreadable = Vec::new();
    for file in &files {
        match lint_file(file, &env) {
            Ok(report) => reports.push(report),
            Err(e) => unreadable.push(Failure::new(exit::USAGE, e.to_string())),
        }
    }

    let color = color_for(&console::Term::stdout());
    let text = match args.format {
        LintFormat::Human => {
            let mut text: String = reports.iter().map(|r| render::human::render(r, color)).collect();
            text.push_str(&render::human::summary(&reports, unreadable.len()));
            text
        }
        LintFormat::Json => render::json::render(&reports),
        LintFormat::Sarif => render::sarif::render(&reports),
        LintFormat::Github => render::github::render(&reports),
    };
    for failure in &unreadable {
        eprint!("{}", failure.render());
    }
    print_stdout(text.as_bytes())?;

    let errors: usize = reports.iter().map(|r| r.count(Severity::Error)).sum();
    let warnings: usize = reports.iter().map(|r| r.count(Severity::Warning)).sum();
    Ok(if !unreadable.is_empty() {
        exit::USAGE
    } else if errors > 0 || (args.deny_warnings && warnings > 0) {
        exit::FINDINGS
    } else {
        exit::OK
    })
}
