//! Every public item of the library has rustdoc with an example, and every public
//! function that returns a `Result` says when it fails (issue 13). `cargo doc -D warnings`
//! (in `.ci/run`) checks that items are documented at all; this test checks the content.
//!
//! It reads `src/` as text: an item is a line declaring a `pub` function, struct, enum,
//! trait, type alias or constant (not `pub(crate)`, not inside a `#[cfg(test)]` module,
//! not `#[doc(hidden)]`, not in the hidden `fuzzing` module); its docs are the `///` lines above it (attributes
//! in between are skipped). The docs must hold a code block, and a function whose
//! signature mentions `Result` must have a `# Errors` section.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

const KINDS: [&str; 8] = [
    "fn ",
    "async fn ",
    "const fn ",
    "struct ",
    "enum ",
    "trait ",
    "type ",
    "const ",
];

/// The public item declared on `line`, if any: its kind and name.
fn public_item(line: &str) -> Option<(&'static str, String)> {
    let rest = line.trim_start().strip_prefix("pub ")?;
    let kind = KINDS.iter().find(|k| rest.starts_with(*k))?;
    let name: String = rest[kind.len()..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    Some((kind, name))
}

/// The `///` lines directly above line `i` (skipping attributes), joined.
fn docs_above(lines: &[&str], i: usize) -> String {
    let mut docs = Vec::new();
    let mut j = i;
    let mut in_attribute = false;
    while j > 0 {
        j -= 1;
        let t = lines[j].trim_start();
        if let Some(d) = t.strip_prefix("///") {
            docs.push(d);
        } else if t.starts_with("#[") || t.starts_with("#![") {
            in_attribute = false;
        } else if t.ends_with(")]") || t.ends_with("]") && in_attribute {
            // The last line of a multi-line attribute; its start is above.
            in_attribute = true;
        } else if in_attribute {
            continue;
        } else {
            break;
        }
    }
    docs.reverse();
    docs.join("\n")
}

/// Whether the attributes directly above line `i` include `#[doc(hidden)]`.
fn hidden(lines: &[&str], i: usize) -> bool {
    lines[..i]
        .iter()
        .rev()
        .take_while(|l| l.trim_start().starts_with("#["))
        .any(|l| l.contains("#[doc(hidden)]"))
}

/// The signature of the function declared on line `i`: up to its body or `;`.
fn signature(lines: &[&str], i: usize) -> String {
    let mut sig = String::new();
    for line in &lines[i..] {
        sig.push_str(line);
        sig.push('\n');
        if line.contains('{') || line.trim_end().ends_with(';') {
            break;
        }
    }
    sig.split('{').next().unwrap_or_default().to_owned()
}

#[test]
fn every_public_item_has_an_example_and_errors_where_it_can_fail() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut missing = Vec::new();
    let mut items = 0;
    for file in &files {
        if file.ends_with("src/fuzzing.rs") {
            continue; // #[doc(hidden)], for the fuzz targets only
        }
        let text = fs::read_to_string(file).expect("source file");
        let lines: Vec<&str> = text.lines().collect();
        let shown = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                // Unit tests sit at the end of each file.
                break;
            }
            let Some((kind, name)) = public_item(line) else {
                continue;
            };
            if hidden(&lines, i) {
                continue; // #[doc(hidden)]: not part of the documented API
            }
            items += 1;
            let docs = docs_above(&lines, i);
            let at = format!("{shown}:{} `{name}`", i + 1);
            if !docs.contains("```") {
                missing.push(format!("{at}: no example"));
            }
            if kind.contains("fn ")
                && signature(&lines, i).contains("Result<")
                && !docs.contains("# Errors")
            {
                missing.push(format!(
                    "{at}: returns a Result but has no `# Errors` section"
                ));
            }
        }
    }
    assert!(
        items > 200,
        "found only {items} public items: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "{} of {items} public items lack docs:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn the_scan_sees_items_docs_and_attributes() {
    assert_eq!(
        public_item("    pub fn get(&self)"),
        Some(("fn ", "get".into()))
    );
    assert_eq!(
        public_item("pub async fn resolve("),
        Some(("async fn ", "resolve".into()))
    );
    assert_eq!(public_item("pub(crate) fn hidden()"), None);
    assert_eq!(public_item("    pub ttl: Duration,"), None);
    let src = [
        "/// Does it.",
        "///",
        "/// ```",
        "/// assert!(true);",
        "/// ```",
        "#[must_use]",
        "#[cfg(any(",
        "    feature = \"x\",",
        "))]",
        "pub fn f() -> Result<()> {",
    ];
    let docs = docs_above(&src, 9);
    assert!(
        docs.contains("```") && docs.starts_with(" Does it."),
        "{docs}"
    );
    assert!(signature(&src, 9).contains("Result<"));
    assert!(docs_above(&["let x = 1;", "pub fn g() {}"], 1).is_empty());
    assert!(hidden(
        &["/// x", "#[doc(hidden)]", "#[inline]", "pub fn h() {}"],
        3
    ));
    assert!(!hidden(&["#[doc(hidden)]", "/// x", "pub fn h() {}"], 2));
}

/// A file name inside a relative `include_str!`/`include_bytes!` on a doc-comment line
/// (`///` or `//!`), or on any line of a Markdown file included as docs, if there is one.
fn relative_include(line: &str, markdown: bool) -> Option<&str> {
    let t = line.trim_start();
    if !markdown && !t.starts_with("///") && !t.starts_with("//!") {
        return None;
    }
    ["include_str!(\"", "include_bytes!(\""]
        .iter()
        .find_map(|m| t.split_once(m).map(|(_, rest)| rest))
        .and_then(|rest| rest.split('"').next())
        .filter(|path| !path.starts_with('/'))
}

/// On edition 2024, rustdoc compiles all doctests as one binary from a file in a temporary
/// directory, and falls back to compiling each of them on its own (about 2 s each, five
/// minutes of CI for this crate) if that binary fails to build. A relative
/// `include_str!("../..")` in an example is what made it fail: such paths resolve from the
/// temporary directory. Examples use `concat!(env!("CARGO_MANIFEST_DIR"), "/...")`.
#[test]
fn doc_examples_include_files_by_absolute_path_so_doctests_merge() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    rust_files(&root.join("src"), &mut files);
    let mut relative = Vec::new();
    for file in &files {
        let markdown = file.extension().is_some_and(|x| x == "md");
        let text = fs::read_to_string(file).expect("source file");
        for (i, line) in text.lines().enumerate() {
            if let Some(path) = relative_include(line, markdown) {
                relative.push(format!("{}:{}: {path}", file.display(), i + 1));
            }
        }
    }
    assert!(
        relative.is_empty(),
        "doc examples that include a file by a relative path (use \
         concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/...\")):\n{}",
        relative.join("\n")
    );
    assert_eq!(
        relative_include("/// # let pem = include_str!(\"../../k.pem\");", false),
        Some("../../k.pem")
    );
    assert_eq!(
        relative_include("    //! include_bytes!(\"data.bin\")", false),
        Some("data.bin")
    );
    assert_eq!(
        relative_include("let x = include_str!(\"a\");", false),
        None
    );
    assert_eq!(
        relative_include(
            "/// include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/k.pem\"))",
            false
        ),
        None
    );
}
