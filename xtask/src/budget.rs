//! `cargo xtask budget`: the size rules of #13, measured and enforced — `crates/byok-cli/src` at most 2,600 lines,
//! and no function longer than 80 lines in the CLI and the transfer engine (`crates/byok-cli/src`,
//! `crates/byok-transfer/src`); longer functions elsewhere in `crates/` are listed, not enforced. A function's
//! length is counted from its `fn` line to its closing brace, inclusive, by brace matching that skips strings, chars
//! and comments.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// #13's figure (2,300, held with #14's `attest` included), grown by #16's `rotate` and `status` — their flags and
/// rendering; the work is `byok_transfer::{rotate, inventory}` — and by #15's fan-out flags and per-destination
/// rendering on `full-transfer` and `batch`; the work is `byok_transfer::{fan_out, batch::run_fan_out}`
/// (docs/decisions.md).
const CLI_LINES: usize = 2750;
const FN_LINES: usize = 80;
/// Where the function limit is enforced.
const ENFORCED: [&str; 2] = ["crates/byok-cli/src/", "crates/byok-transfer/src/"];

pub(crate) fn run() -> Result<()> {
    let root = crate::util::root();
    let cli: usize = rust_files(&root.join("crates/byok-cli/src"))?
        .iter()
        .map(|f| std::fs::read_to_string(f).map(|t| t.lines().count()))
        .sum::<std::io::Result<usize>>()?;
    println!("crates/byok-cli/src: {cli} lines (budget {CLI_LINES})");
    let (mut long, mut elsewhere) = (Vec::new(), Vec::new());
    let mut longest = (0, String::new());
    for file in rust_files(&root.join("crates"))? {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let shown = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
        let enforced = ENFORCED.iter().any(|p| shown.starts_with(p));
        for (line, name, len) in functions(&text) {
            if enforced && len > longest.0 {
                longest = (len, format!("{shown}:{line} {name}"));
            }
            if len > FN_LINES {
                let list = if enforced { &mut long } else { &mut elsewhere };
                list.push(format!("{shown}:{line} fn {name}: {len} lines"));
            }
        }
    }
    println!(
        "longest function in the CLI and the engine: {} lines ({}); limit {FN_LINES}",
        longest.0, longest.1
    );
    for l in &long {
        println!("  over the limit: {l}");
    }
    for l in &elsewhere {
        println!("  long (not enforced here): {l}");
    }
    if cli > CLI_LINES || !long.is_empty() {
        bail!("over budget: see above");
    }
    Ok(())
}

/// The `.rs` files under `dir` (sources, tests, benches and examples alike).
fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Each function with a body: (1-based line of its `fn`, name, lines).
fn functions(text: &str) -> Vec<(usize, String, usize)> {
    let code = blank_out(text);
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        let mut depth = 0usize;
        let mut opened = false;
        'scan: for (j, l) in lines.iter().enumerate().skip(i) {
            let start = if j == i { line.find("fn ").unwrap_or(0) } else { 0 };
            for c in l[start..].chars() {
                match c {
                    ';' if !opened => break 'scan,
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' if opened => {
                        depth -= 1;
                        if depth == 0 {
                            out.push((i + 1, name.clone(), j - i + 1));
                            break 'scan;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// The name if `line` starts a function: `fn`, after any of `pub(..)`, `const`, `async`, `unsafe`.
fn fn_name(line: &str) -> Option<String> {
    let mut rest = line.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("fn ") {
            let name: String = r.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            return (!name.is_empty()).then_some(name);
        }
        let word = [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "const ",
            "async ",
            "unsafe ",
            "extern \"C\" ",
        ]
        .iter()
        .find(|w| rest.starts_with(*w))?;
        rest = &rest[word.len()..];
    }
}

/// The text with string, char and comment contents replaced by spaces (newlines kept), so braces in them do not count.
fn blank_out(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                out.push(keep(chars[i]));
                i += 1;
            }
            out.push_str("  ");
            i += 2;
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            let hashes = chars[i + 1..].iter().take_while(|h| **h == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            i += 2 + hashes;
            out.push_str(&" ".repeat(2 + hashes));
            while i < chars.len()
                && !(chars[i] == '"' && chars[i + 1..].iter().take(hashes).filter(|h| **h == '#').count() == hashes)
            {
                out.push(keep(chars[i]));
                i += 1;
            }
            out.push_str(&" ".repeat(1 + hashes));
            i += 1 + hashes;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    out.push(keep(ch));
                }
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A char literal ('{', '\n', '\''); a lifetime ('a) has no closing quote two places on.
            let end = (i + 1..chars.len())
                .skip(1)
                .find(|&k| chars[k] == '\'')
                .unwrap_or(i + 2);
            out.push_str(&" ".repeat(end - i + 1));
            i = end + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_in_strings_chars_and_comments_do_not_count() {
        let text = "fn a() {\n    let s = \"}}\"; // }\n    let c = '}';\n    let r = r#\"}\"#;\n}\nfn b<'x>(v: &'x str) -> &'x str {\n    v\n}\nfn decl();\n";
        let found = functions(text);
        assert_eq!(found, vec![(1, "a".to_owned(), 5), (6, "b".to_owned(), 3)]);
    }
}
