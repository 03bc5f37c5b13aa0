//! `--help`, written from the flag table: each flag the binary takes, with its default.

use std::fmt::Write as _;

use super::{FLAGS, Takes, Use};
use crate::config::{Kind, TOKEN_VAR};

/// Where a flag's help starts in `--help`, after its names; lines end by `HELP_WIDTH`.
pub(super) const HELP_COLUMN: usize = 30;
const HELP_WIDTH: usize = 100;

/// A space `wrap` does not break at.
const NO_BREAK: &str = "\u{1}";

/// Appends `words` from column `HELP_COLUMN + 3`, wrapped at `HELP_WIDTH`, then a newline.
fn wrap(text: &mut String, words: &str) {
    let indent = HELP_COLUMN + 3;
    let mut column = indent;
    for (i, word) in words.split(' ').enumerate() {
        if i > 0 && column + 1 + word.len() > HELP_WIDTH {
            let _ = write!(text, "\n{:indent$}", "");
            column = indent;
        } else if i > 0 {
            text.push(' ');
            column += 1;
        }
        text.push_str(&word.replace(NO_BREAK, " "));
        column += word.chars().count();
    }
    text.push('\n');
}

/// The `--help` text: every flag `kind` takes, with its default, from `FLAGS`.
pub fn help(kind: Kind) -> String {
    let mut text = String::from(match kind {
        Kind::Dns => {
            "dns: the seedmesh seed server. Nodes register with it (POST /) and ask it for\n\
             nodes (GET /nodes/); it checks every registered node each round and drops the dead.\n"
        }
        Kind::Node => {
            "node: a seedmesh network node. It serves the node API, keeps its known nodes in\n\
             DIR/nodes.json, and each round checks them, asks them for peers when it knows too\n\
             few, and asks the seed servers as a last resort.\n"
        }
    });
    let _ = write!(text, "\nusage: {} [FLAGS]\n\nflags:\n", kind.name());
    for flag in FLAGS.iter().filter(|f| f.applies(kind)) {
        let names = match flag.short {
            Some(short) => format!("{short}, {}", flag.long),
            None => format!("    {}", flag.long),
        };
        let left = match flag.takes {
            Takes::Value(var, _) => format!("{names} {var}"),
            Takes::Switch(_) => names,
        };
        let mut line = flag.help.to_owned();
        if kind == Kind::Node {
            line.push_str(flag.node_help);
        }
        if flag.repeatable {
            line.push_str("; repeatable");
        }
        match flag.usage(kind) {
            Use::Default(value) | Use::Unset(value) if !value.is_empty() => {
                // Kept on one line by `wrap`.
                let value = value.replace(' ', NO_BREAK);
                let _ = write!(line, " [default:{NO_BREAK}{value}]");
            }
            _ => {}
        }
        let _ = write!(text, "  {left:<HELP_COLUMN$} ");
        wrap(&mut text, &line);
    }
    let _ = write!(
        text,
        "\nenvironment:\n  {TOKEN_VAR:<HELP_COLUMN$}  the admin token, instead of --admin_token (not shown by ps)\n\n\
         The first line on stdout is `listening on IP:PORT`; logs go to stderr. SIGINT or SIGTERM\n\
         stop the process cleanly; SIGHUP is logged and ignored. A bad flag exits with status 2.\n"
    );
    text
}
