//! The error `wh` prints before it exits non-zero: a message, its causes, and a hint.

use std::fmt::Write as _;

/// A failure of `wh` itself (not of a worker), with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub causes: Vec<String>,
    pub hint: Option<String>,
    pub code: u8,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            causes: Vec::new(),
            hint: None,
            code,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn maybe_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    pub fn cause(mut self, cause: impl std::fmt::Display) -> Self {
        self.causes.push(cause.to_string());
        self
    }

    /// `error: ...` / `  caused by: ...` / `hint: ...`, coloured when stderr is a terminal.
    pub fn render(&self) -> String {
        let red = console::Style::new().red().bold().for_stderr();
        let cyan = console::Style::new().cyan().bold().for_stderr();
        let mut out = format!("{} {}\n", red.apply_to("error:"), self.message);
        for cause in &self.causes {
            let _ = writeln!(out, "  caused by: {cause}");
        }
        if let Some(hint) = &self.hint {
            let _ = writeln!(out, "{} {hint}", cyan.apply_to("hint:"));
        }
        out
    }
}
