//! The documents against the code. Generated reference pages
//! (docs/src/reference/{api,flags,helm-values}.md) must equal what the code
//! renders now; every condition reason and Event reason must have an entry
//! on the troubleshooting page; every relative link and anchor must point
//! somewhere. A stale page is regenerated with `make docs-gen`
//! (`UPDATE_DOCS=1 cargo test -p collibra-oauth-operator --test docs`).

mod links;
mod reference;
mod troubleshooting;

use std::path::{Path, PathBuf};

/// The repository's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The command that regenerates the generated pages.
const REGENERATE: &str = "make docs-gen";

/// Compares a generated page with the committed one, or writes it when
/// UPDATE_DOCS=1.
fn check_generated(page: &str, rendered: &str) {
    let path = root().join(page);
    if std::env::var("UPDATE_DOCS").as_deref() == Ok("1") {
        std::fs::write(&path, rendered).unwrap_or_else(|e| panic!("writing {page}: {e}"));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != rendered {
        let line = committed
            .lines()
            .zip(rendered.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(rendered.lines().count()));
        panic!(
            "{page} is stale (first difference at line {}); regenerate it with `{REGENERATE}`",
            line + 1
        );
    }
}

/// The header every generated page starts with.
fn generated_header(source: &str) -> String {
    format!(
        "<!-- Generated from {source} by tests/docs; do not edit: `{REGENERATE}` regenerates it. -->\n\n"
    )
}

/// Markdown table cell text: one line, pipes escaped, and `<` outside code
/// spans escaped so that `<fullname>` is text, not an HTML tag.
fn cell(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        match c {
            '`' => {
                in_code = !in_code;
                out.push(c);
            }
            '|' => out.push_str("\\|"),
            '<' if !in_code => out.push_str("&lt;"),
            _ => out.push(c),
        }
    }
    out
}

/// Every Markdown file the link check covers, relative to the root.
fn markdown_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        "README.md",
        "CONTRIBUTING.md",
        "BENCHMARKS.md",
        "RELIABILITY.md",
        "CHANGELOG.md",
        "SECURITY.md",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    for dir in ["docs", "bench-results"] {
        collect_markdown(&root(), Path::new(dir), &mut files);
    }
    files.sort();
    files
}

fn collect_markdown(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let rel = dir.join(entry.file_name());
        // docs/book is mdBook's output, not a source.
        if rel == Path::new("docs/book") {
            continue;
        }
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect_markdown(root, &rel, out);
        } else if rel.extension().is_some_and(|e| e == "md") {
            out.push(rel);
        }
    }
}

/// The README's install blocks, which the node tests run, are there and
/// hold what those tests expect (they fail only on a real node, so a
/// mistake shows here first).
#[test]
fn readme_install_blocks_are_what_the_node_tests_run() {
    use test_support::readme;
    let helm = readme::command(
        "install-helm",
        &["helm", "install", "collibra-oauth-operator"],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    for example in [
        readme::EXAMPLE_URL,
        readme::EXAMPLE_REPOSITORY,
        readme::EXAMPLE_NAMESPACE,
    ] {
        assert!(
            helm.iter().any(|w| w.contains(example)),
            "README's helm install does not show {example}: {helm:?}"
        );
    }
    let kustomization = readme::block("kustomization").unwrap_or_else(|e| panic!("{e:#}"));
    for example in [readme::EXAMPLE_URL, readme::EXAMPLE_REPOSITORY, "../deploy"] {
        assert!(
            kustomization.contains(example),
            "README's overlay does not show {example}"
        );
    }
    let apply = readme::command("install-kustomize", &["kubectl", "apply"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        apply
            .iter()
            .any(|w| w.trim_end_matches('/') == "my-install"),
        "README's kubectl apply does not apply my-install/: {apply:?}"
    );
}
