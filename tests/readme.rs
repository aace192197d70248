//! The README stays true: it starts with the two commands a newcomer runs, lists every
//! example in `examples/` (and no other), and CI runs every example that needs no cloud.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

#[test]
fn readme_starts_with_the_two_commands() {
    let readme = read("README.md");
    let first_block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    let commands: Vec<&str> = first_block
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .collect();
    assert_eq!(
        commands,
        [
            "cargo run --release -p always-encrypted-cli -- demo",
            "cargo test --workspace --all-features"
        ]
    );
    // Nothing but the title comes before them.
    let before = &readme[..readme.find("```sh").unwrap()];
    assert_eq!(before.trim(), "# always-encrypted");
    // And CI runs that very test command.
    assert!(read(".ci/run").contains("cargo test --workspace --all-features"));
}

#[test]
fn readme_lists_every_example_and_ci_runs_the_local_ones() {
    let readme = read("README.md");
    let ci = read(".ci/run");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    let section = readme
        .split("\n## Examples\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap();
    let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| `")).collect();
    let run_loop = ci
        .lines()
        .find(|l| l.trim_start().starts_with("for example in"))
        .expect("the CI loop that runs the examples");
    for name in &names {
        let row = rows
            .iter()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("README's examples table lacks {name}"));
        let needs_cloud = row.trim_end().ends_with("| yes |");
        assert_eq!(
            run_loop
                .split_whitespace()
                .any(|w| w.trim_end_matches(';') == name.as_str()),
            !needs_cloud,
            "CI must run {name} unless it needs the cloud, and never when it does"
        );
    }
    assert_eq!(
        rows.len(),
        names.len(),
        "README lists an example that does not exist"
    );
}
