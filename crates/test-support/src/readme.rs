//! The install commands of README.md, as the tests run them. The README
//! marks each block with `<!-- readme:NAME:begin -->` and
//! `<!-- readme:NAME:end -->`; the node tests run what is between them (with
//! the example values replaced by the test's own), so the README cannot show
//! a command that was not tested.

use anyhow::{Context, bail, ensure};

/// The placeholders the README's install blocks use, which a test replaces.
pub const EXAMPLE_URL: &str = "https://acme.collibra.com";
/// The image repository the README tells users to push to.
pub const EXAMPLE_REPOSITORY: &str = "registry.example.com/collibra-oauth-operator";
/// The image tag the README tells users to push.
pub const EXAMPLE_TAG: &str = "0.1.0";
/// The namespace the README installs into.
pub const EXAMPLE_NAMESPACE: &str = "collibra-oauth-operator";

/// The fenced code block of README.md between the markers of `name`.
pub fn block(name: &str) -> anyhow::Result<String> {
    let readme = std::fs::read_to_string(crate::repo("README.md")).context("reading README.md")?;
    block_in(&readme, name)
}

/// As [`block`], from the given text.
pub fn block_in(text: &str, name: &str) -> anyhow::Result<String> {
    let begin = format!("<!-- readme:{name}:begin -->");
    let end = format!("<!-- readme:{name}:end -->");
    let start = text
        .find(&begin)
        .with_context(|| format!("README.md has no {begin}"))?
        + begin.len();
    let len = text[start..]
        .find(&end)
        .with_context(|| format!("README.md has no {end} after {begin}"))?;
    let inner = text[start..start + len].trim();
    let body = inner
        .strip_prefix("```")
        .and_then(|rest| rest.split_once('\n'))
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.strip_suffix("```"))
        .with_context(|| format!("README.md's {name} block is not one fenced code block"))?;
    Ok(body.to_owned())
}

/// The commands of a shell block: continuation lines joined, each command
/// split into words as the shell would (no expansions are allowed, so the
/// words are exactly what the README shows).
pub fn commands(block: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let joined = block.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains('$') || line.contains('`') || line.contains('|') {
            bail!(
                "README command {line:?} uses shell expansion or a pipe; the tests run commands as words"
            );
        }
        let words = shlex::split(line)
            .with_context(|| format!("README command {line:?} does not parse"))?;
        out.push(words);
    }
    ensure!(!out.is_empty(), "README block has no command");
    Ok(out)
}

/// The one command of a shell block, whose first words must be `prefix`.
pub fn command(name: &str, prefix: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut commands = commands(&block(name)?)?;
    ensure!(
        commands.len() == 1,
        "README.md's {name} block holds {} commands, the tests expect one",
        commands.len()
    );
    let command = commands.remove(0);
    ensure!(
        command
            .iter()
            .map(String::as_str)
            .take(prefix.len())
            .eq(prefix.iter().copied()),
        "README.md's {name} block does not start with {prefix:?}: {command:?}"
    );
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_found_and_split_into_words() -> anyhow::Result<()> {
        let text = "x\n<!-- readme:a:begin -->\n```sh\nhelm install r c \\\n  --set k=v\n```\n<!-- readme:a:end -->\n";
        let block = block_in(text, "a")?;
        assert_eq!(
            commands(&block)?,
            vec![vec!["helm", "install", "r", "c", "--set", "k=v"]]
        );
        assert!(block_in(text, "b").is_err());
        assert!(commands("echo $HOME\n").is_err());
        Ok(())
    }
}
