//! Every relative link and anchor in the project's Markdown points at a file
//! that exists and, for an anchor, at a heading of that file. External links
//! (with a scheme) are not fetched: the tests run without network.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Component, Path, PathBuf},
};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use super::{markdown_files, root};

fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_FOOTNOTES | Options::ENABLE_STRIKETHROUGH
}

/// The anchor ids of a document's headings, as GitHub and mdBook make them:
/// lower case, letters, digits, `-` and `_` kept, white space turned into
/// `-`, everything else dropped; a repeated id gets `-1`, `-2`, ...
pub fn heading_ids(markdown: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut text: Option<String> = None;
    for event in Parser::new_ext(markdown, options()) {
        match event {
            Event::Start(Tag::Heading { .. }) => text = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(text) = text.as_mut() {
                    text.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let Some(heading) = text.take() else { continue };
                let id = slug(&heading);
                let n = seen.entry(id.clone()).or_insert(0);
                ids.insert(if *n == 0 {
                    id.clone()
                } else {
                    format!("{id}-{n}")
                });
                *n += 1;
            }
            _ => {}
        }
    }
    ids
}

fn slug(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                Some(c.to_lowercase().next().unwrap_or(c))
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// The link and image destinations of a document.
fn destinations(markdown: &str) -> Vec<String> {
    Parser::new_ext(markdown, options())
        .filter_map(|event| match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                Some(dest_url.to_string())
            }
            _ => None,
        })
        .collect()
}

/// `a/b/../c` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// What is wrong with one destination, if anything.
fn problem(from: &Path, dest: &str) -> Option<String> {
    if dest.contains("://") || dest.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = match dest.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (dest, None),
    };
    let target = if path.is_empty() {
        from.to_path_buf()
    } else {
        let base = from.parent().unwrap_or(Path::new(""));
        normalize(&base.join(path))
    };
    if target.starts_with("..") {
        return Some(format!("{dest}: outside the repository"));
    }
    let full = root().join(&target);
    if !full.exists() {
        return Some(format!("{dest}: {} does not exist", target.display()));
    }
    let anchor = anchor.filter(|a| !a.is_empty())?;
    if target.extension().is_none_or(|e| e != "md") {
        // Line anchors (#L10) and the like on other files are not checked.
        return None;
    }
    let text = std::fs::read_to_string(&full).ok()?;
    if heading_ids(&text).contains(anchor) {
        None
    } else {
        Some(format!(
            "{dest}: {} has no heading #{anchor}",
            target.display()
        ))
    }
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let files = markdown_files();
    assert!(
        files.iter().any(|f| f.starts_with("docs/src")),
        "no Markdown found under docs/src"
    );
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(root().join(file))
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        for dest in destinations(&text) {
            if let Some(p) = problem(file, &dest) {
                broken.push(format!("{}: {p}", file.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "{} broken links:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn the_checker_finds_what_is_broken() {
    let ids =
        heading_ids("# A title\n## `CollibraRejected`\n## Again\n## Again\n###### What's new?\n");
    for id in [
        "a-title",
        "collibrarejected",
        "again",
        "again-1",
        "whats-new",
    ] {
        assert!(ids.contains(id), "{id} missing in {ids:?}");
    }
    let readme = Path::new("README.md");
    assert_eq!(problem(readme, "https://example.com/x"), None);
    assert_eq!(
        problem(readme, "docs/src/troubleshooting.md#how-to-look"),
        None
    );
    assert!(problem(readme, "docs/src/troubleshooting.md#no-such-heading").is_some());
    assert!(problem(readme, "docs/no-such-page.md").is_some());
    assert!(problem(readme, "../outside.md").is_some());
    assert!(problem(readme, "#no-such-heading").is_some());
    assert_eq!(
        destinations("[a](b.md) ![i](c.png) <https://x.y>"),
        vec!["b.md", "c.png", "https://x.y"]
    );
}
