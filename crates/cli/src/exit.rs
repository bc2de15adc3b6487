//! The one place exit codes are decided: 0 passed (warnings allowed), 99 a target or
//! threshold failed, 1 bad input or an unreachable system (one clear line on stderr).

use powertune_core::ExitCode;

/// Ends the process with the code for `result`.
pub fn finish(result: anyhow::Result<ExitCode>) -> ! {
    match result {
        Ok(code) => std::process::exit(code as i32),
        Err(e) => {
            eprintln!("powertune: {}", one_line(&e));
            std::process::exit(ExitCode::BadInput as i32)
        }
    }
}

/// The error and its causes joined on one line, without repeating a cause that the
/// message already contains.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string().replace('\n', " ");
        let s = s.trim().to_string();
        if s.is_empty() || parts.iter().any(|p| p.contains(&s)) {
            continue;
        }
        parts.push(s);
    }
    parts.join(": ")
}

/// Usage errors from clap: help and version go to stdout with 0; others exit 1.
pub fn clap_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            std::process::exit(
                if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::BadInput as i32
                } else {
                    0
                },
            )
        }
        _ => {
            let first = first_paragraph(&e.render().to_string());
            match suggestion(&e) {
                Some(tip) => eprintln!("powertune: {first}; {tip} (see powertune --help)"),
                None => eprintln!("powertune: {first} (see powertune --help)"),
            }
            std::process::exit(ExitCode::BadInput as i32)
        }
    }
}

/// The first paragraph of clap's message on one line, so that a list under its
/// heading stays: "the following required arguments were not provided: <ROUTE>".
fn first_paragraph(rendered: &str) -> String {
    let text = rendered
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    match text.trim_start_matches("error: ") {
        "" => "bad arguments".to_string(),
        t => t.to_string(),
    }
}

/// clap's "did you mean" for a mistyped subcommand, flag or value, kept on the one
/// error line: `did you mean 'load'?`.
fn suggestion(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let names: Vec<String> = [
        ContextKind::SuggestedSubcommand,
        ContextKind::SuggestedArg,
        ContextKind::SuggestedValue,
    ]
    .into_iter()
    .filter_map(|kind| e.get(kind))
    .flat_map(|v| match v {
        ContextValue::String(s) => vec![s.clone()],
        ContextValue::Strings(v) => v.clone(),
        _ => Vec::new(),
    })
    .collect();
    match names.as_slice() {
        [] => None,
        [one] => Some(format!("did you mean '{one}'?")),
        many => Some(format!(
            "did you mean one of {}?",
            many.iter()
                .map(|n| format!("'{n}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
