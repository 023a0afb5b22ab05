//! Which clients of an instance the operator's objects account for. A
//! client is managed when an OAuthClient using the same connection records
//! its id (`status.clientId`) or claims its name (`spec.clientName`: a
//! registration in flight, or a name held by a foreign client that the
//! OAuthClient already reports). Every other client is unmanaged: the
//! audit lists them and the connection's status counts them.

use std::collections::HashSet;

use serde::Serialize;

use super::status::Counts;

/// What one OAuthClient claims in its instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// `spec.clientName`.
    pub client_name: String,
    /// `status.clientId`, once registered.
    pub client_id: Option<String>,
}

/// A client as the instance lists it; never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedClient {
    /// The client's name.
    pub name: String,
    /// The client id.
    pub id: String,
    /// When the id was issued (RFC 3339), when the instance says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<String>,
}

/// The clients no claim accounts for, in the order given.
pub fn unmanaged<'a>(listed: &'a [ListedClient], claims: &[Claim]) -> Vec<&'a ListedClient> {
    let ids: HashSet<&str> = claims
        .iter()
        .filter_map(|c| c.client_id.as_deref())
        .collect();
    let names: HashSet<&str> = claims.iter().map(|c| c.client_name.as_str()).collect();
    listed
        .iter()
        .filter(|c| !ids.contains(c.id.as_str()) && !names.contains(c.name.as_str()))
        .collect()
}

/// Managed and unmanaged counts of `listed`.
pub fn count(listed: &[ListedClient], claims: &[Claim]) -> Counts {
    let unmanaged = unmanaged(listed, claims).len() as u64;
    Counts {
        managed: listed.len() as u64 - unmanaged,
        unmanaged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str, id: &str) -> ListedClient {
        ListedClient {
            name: name.into(),
            id: id.into(),
            issued_at: None,
        }
    }

    fn claim(name: &str, id: Option<&str>) -> Claim {
        Claim {
            client_name: name.into(),
            client_id: id.map(str::to_owned),
        }
    }

    #[test]
    fn ids_and_names_account_for_clients() {
        let listed = vec![
            client("billing", "id-1"),
            client("renamed-in-collibra", "id-2"),
            client("in-flight", "id-3"),
            client("foreign", "id-4"),
            client("legacy", "id-5"),
        ];
        let claims = vec![
            claim("billing", Some("id-1")),
            // Renamed in Collibra by hand: still the object's client.
            claim("catalog", Some("id-2")),
            // Registered, status not yet written.
            claim("in-flight", None),
        ];
        let names: Vec<&str> = unmanaged(&listed, &claims)
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["foreign", "legacy"]);
        assert_eq!(
            count(&listed, &claims),
            Counts {
                managed: 3,
                unmanaged: 2
            }
        );
    }

    #[test]
    fn nothing_listed_nothing_unmanaged() {
        assert_eq!(count(&[], &[claim("a", Some("x"))]), Counts::default());
        let listed = vec![client("a", "x")];
        assert_eq!(count(&listed, &[]).unmanaged, 1);
    }

    #[test]
    fn listed_clients_serialize_without_secrets() {
        let json = serde_json::to_string(&ListedClient {
            name: "a".into(),
            id: "x".into(),
            issued_at: Some("2026-11-30T00:00:00Z".into()),
        })
        .expect("json");
        assert_eq!(
            json,
            r#"{"name":"a","id":"x","issuedAt":"2026-11-30T00:00:00Z"}"#
        );
    }
}
