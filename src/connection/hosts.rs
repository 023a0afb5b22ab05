//! The cluster admin's control over namespaced connections: whoever may
//! create a CollibraConnection could otherwise make the operator send its
//! requests (and the credentials of that namespace) to any host. Only hosts
//! on the `--namespaced-connection-hosts` list are used; the default list is
//! empty, so namespaced connections stay unused until an admin names hosts.
//! ClusterCollibraConnections are not checked: creating one already takes
//! cluster-wide rights.

use std::fmt;

/// Host patterns a namespaced connection may point at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    patterns: Vec<Pattern>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// Any host (`*`): the admin trusts everyone who can create a connection.
    Any,
    /// This host exactly.
    Exact(String),
    /// Any host below this domain (`*.example.com` matches
    /// `a.example.com` and `a.b.example.com`, not `example.com`).
    Subdomain(String),
}

impl AllowedHosts {
    /// Parses the flag's values: host names, `*.domain`, or `*`.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<AllowedHosts, String> {
        let mut patterns = Vec::new();
        for raw in values {
            let v = raw.as_ref().trim().to_ascii_lowercase();
            if v.is_empty() {
                continue;
            }
            let pattern = if v == "*" {
                Pattern::Any
            } else if let Some(domain) = v.strip_prefix("*.") {
                check_host(domain, raw.as_ref())?;
                Pattern::Subdomain(domain.to_owned())
            } else {
                check_host(&v, raw.as_ref())?;
                Pattern::Exact(v)
            };
            patterns.push(pattern);
        }
        Ok(AllowedHosts { patterns })
    }

    /// Whether a namespaced connection may use `host`.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.patterns.iter().any(|p| match p {
            Pattern::Any => true,
            Pattern::Exact(h) => *h == host,
            Pattern::Subdomain(d) => host
                .strip_suffix(d.as_str())
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
        })
    }

    /// Whether no host at all is allowed (the default).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

impl fmt::Display for AllowedHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .patterns
            .iter()
            .map(|p| match p {
                Pattern::Any => "*".to_owned(),
                Pattern::Exact(h) => h.clone(),
                Pattern::Subdomain(d) => format!("*.{d}"),
            })
            .collect();
        f.write_str(&names.join(","))
    }
}

fn check_host(host: &str, raw: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && !host.contains('*')
        && url::Host::parse(host).is_ok()
        && !host.contains(['/', ':', '@']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--namespaced-connection-hosts: {raw:?} is not a host name, *.domain or *"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_allows_nothing() {
        let none = AllowedHosts::parse::<&str>(&[]).expect("empty");
        assert!(none.is_empty());
        assert!(!none.allows("acme.collibra.com"));
        assert!(!none.allows("127.0.0.1"));
    }

    #[test]
    fn exact_wildcard_and_any() {
        let a = AllowedHosts::parse(&["acme.collibra.com", "*.Collibra.EU", " ", "127.0.0.1"])
            .expect("valid");
        assert!(a.allows("acme.collibra.com"));
        assert!(a.allows("ACME.collibra.com."));
        assert!(!a.allows("evil.com"));
        assert!(!a.allows("acme.collibra.com.evil.com"));
        assert!(a.allows("x.collibra.eu"));
        assert!(a.allows("x.y.collibra.eu"));
        assert!(!a.allows("collibra.eu"));
        assert!(!a.allows("evilcollibra.eu"));
        assert!(a.allows("127.0.0.1"));
        assert_eq!(a.to_string(), "acme.collibra.com,*.collibra.eu,127.0.0.1");
        assert!(AllowedHosts::parse(&["*"]).expect("any").allows("anything"));
    }

    #[test]
    fn bad_patterns_name_the_flag() {
        for bad in ["https://x.com", "a*.b", "x.com:443", "*."] {
            let err = AllowedHosts::parse(&[bad]).expect_err(bad);
            assert!(err.contains("--namespaced-connection-hosts"), "{err}");
        }
    }
}
