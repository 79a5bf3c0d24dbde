//! `wh scaffold`: validate, write, and say what to do next.

use super::print_stdout;
use crate::cli::ScaffoldArgs;
use crate::error::Failure;
use crate::exit;
use crate::runner::python_interpreter;
use crate::scaffold::{self, Request, Template};

pub fn run(args: ScaffoldArgs) -> Result<u8, Failure> {
    if args.list {
        let text: String = Template::ALL
            .iter()
            .map(|t| format!("{:<8} {}\n", t.name(), t.summary()))
            .collect();
        print_stdout(text.as_bytes())?;
        return Ok(exit::OK);
    }
    let template = args.template.expect("clap requires a template unless --list");
    let request = Request {
        template,
        name: args.name,
        dir: args.dir,
        task_types: args.task_types,
        description: args.description,
        venv: args.venv,
        force: args.force,
        python: python_interpreter(args.python.as_deref()),
    };
    let created = scaffold::scaffold(&request)
        .map_err(|e| Failure::new(exit::USAGE, e.to_string()).maybe_hint(e.hint()))?;

    let mut out = String::new();
    let what = match template {
        Template::Config => "host config".to_string(),
        t => format!("{} worker `{}`", t.name(), created.values.name),
    };
    out.push_str(&format!(
        "Created {what} in {} ({} files{}).\n\n",
        created.dir.display(),
        created.files.len(),
        if created.venv.is_some() {
            ", plus .venv with the worker and pytest installed"
        } else {
            ""
        }
    ));
    if template == Template::Config {
        out.push_str(&format!(
            "Check it:\n\n    {}\n",
            scaffold::test_command(&created)
        ));
    } else {
        out.push_str(&format!(
            "Check it against the protocol:\n\n    {}\n\nAdd it to a host config (`wh lint` checks it):\n\n{}",
            scaffold::test_command(&created),
            indent(&scaffold::config_snippet(&created))
        ));
        out.push_str(&format!(
            "\nThe business logic goes in one function; see {}/README.md.\n",
            created.dir.display()
        ));
    }
    print_stdout(out.as_bytes())?;
    Ok(exit::OK)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}
