//! Conditions (Ready, Reconciling, Stalled, kstatus style) and the status
//! body the operator writes. Pure: `reconcile/report.rs` sends it.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

use super::reasons::Reason;
use crate::api::{OAuthClient, OAuthClientStatus, Replacement};

/// The Ready state the operator wants to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// Ready's reason.
    pub reason: Reason,
    /// Ready's message: what happened and what to do.
    pub message: String,
}

impl Readiness {
    /// Builds a readiness.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Readiness {
            reason,
            message: message.into(),
        }
    }
}

/// Fields of status besides the conditions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// See [`OAuthClientStatus::client_id`].
    pub client_id: Option<String>,
    /// See [`OAuthClientStatus::client_id_issued_at`].
    pub client_id_issued_at: Option<String>,
    /// See [`OAuthClientStatus::grant_types`].
    pub grant_types: Vec<String>,
    /// See [`OAuthClientStatus::redirect_uris`].
    pub redirect_uris: Vec<String>,
    /// See [`OAuthClientStatus::last_rotation`].
    pub last_rotation: Option<String>,
    /// See [`OAuthClientStatus::credentials_issued_at`].
    pub credentials_issued_at: Option<String>,
    /// See [`OAuthClientStatus::last_replacement`].
    pub last_replacement: Option<Replacement>,
}

impl Facts {
    /// The facts already recorded in status.
    pub fn from_status(obj: &OAuthClient) -> Facts {
        let s = obj.status.clone().unwrap_or_default();
        Facts {
            client_id: s.client_id,
            client_id_issued_at: s.client_id_issued_at,
            grant_types: s.grant_types,
            redirect_uris: s.redirect_uris,
            last_rotation: s.last_rotation,
            credentials_issued_at: s.credentials_issued_at,
            last_replacement: s.last_replacement.map(|r| *r),
        }
    }
}

/// Seconds since the epoch as RFC 3339.
pub fn rfc3339(secs: i64) -> Option<String> {
    Timestamp::from_second(secs).ok().map(|t| t.to_string())
}

/// Where an object stands, in kstatus terms (at most one of the three holds).
pub struct KStatus<'a> {
    /// Ready's reason.
    pub reason: &'a str,
    /// What happened and what to do.
    pub message: &'a str,
    /// Ready=True.
    pub ready: bool,
    /// Reconciling=True: work towards Ready is under way.
    pub reconciling: bool,
    /// Stalled=True: a person must act.
    pub stalled: bool,
}

/// Ready, Reconciling and Stalled for `state` (OAuthClients and
/// connections alike); a condition keeps its `lastTransitionTime` while its
/// status does not change.
pub fn kstatus_conditions(
    previous: &[Condition],
    generation: Option<i64>,
    state: &KStatus<'_>,
    now: Timestamp,
) -> Vec<Condition> {
    let cond = |type_: &str, on: bool, otherwise: &str| {
        let status = if on { "True" } else { "False" };
        let since = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        // Ready always carries the reason; the others only while they hold.
        let (reason, message) = if on || type_ == "Ready" {
            (state.reason, state.message)
        } else {
            (otherwise, "")
        };
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            observed_generation: generation,
            last_transition_time: since,
        }
    };
    vec![
        cond("Ready", state.ready, ""),
        cond("Reconciling", state.reconciling, "Idle"),
        cond("Stalled", state.stalled, "Progressing"),
    ]
}

/// The complete status: conditions keep their `lastTransitionTime` when
/// their status does not change.
pub fn build(
    obj: &OAuthClient,
    ready: &Readiness,
    facts: Facts,
    now: Timestamp,
) -> OAuthClientStatus {
    let generation = obj.metadata.generation;
    let previous = obj
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let r = ready.reason;
    let conditions = kstatus_conditions(
        previous,
        generation,
        &KStatus {
            reason: r.as_str(),
            message: &ready.message,
            ready: r == Reason::Registered,
            reconciling: r.is_reconciling(),
            stalled: r.is_stalled(),
        },
        now,
    );
    OAuthClientStatus {
        client_id: facts.client_id,
        client_id_issued_at: facts.client_id_issued_at,
        secret_name: Some(obj.secret_name()),
        grant_types: facts.grant_types,
        redirect_uris: facts.redirect_uris,
        last_rotation: facts.last_rotation,
        credentials_issued_at: facts.credentials_issued_at,
        // This reconcile saw that request and acted on it (a fresh list).
        last_handled_reconcile_at: obj
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::api::RECONCILE_REQUESTED_ANNOTATION))
            .cloned(),
        last_replacement: facts.last_replacement.map(Box::new),
        observed_generation: generation,
        conditions,
    }
}

/// Whether writing `next` would change what is stored (timestamps aside).
pub fn differs(obj: &OAuthClient, next: &OAuthClientStatus) -> bool {
    obj.status.as_ref() != Some(next)
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use super::*;

    fn obj() -> OAuthClient {
        let mut o = OAuthClient::new(
            "a",
            serde_json::from_str(r#"{"clientName":"a"}"#).expect("spec"),
        );
        o.metadata.generation = Some(3);
        o
    }

    fn find<'a>(s: &'a OAuthClientStatus, t: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition present")
    }

    #[test]
    fn ready_reconciling_stalled_follow_kstatus() {
        let now = Timestamp::from_second(100).expect("ts");
        for &reason in Reason::VARIANTS {
            let s = build(&obj(), &Readiness::new(reason, "m"), Facts::default(), now);
            assert_eq!(
                find(&s, "Ready").status == "True",
                reason == Reason::Registered,
                "{reason:?}"
            );
            assert_eq!(find(&s, "Ready").reason, reason.as_str());
            assert_eq!(
                find(&s, "Reconciling").status == "True",
                reason.is_reconciling()
            );
            assert_eq!(find(&s, "Stalled").status == "True", reason.is_stalled());
            assert!(!(reason.is_stalled() && reason.is_reconciling()));
            assert_eq!(s.observed_generation, Some(3));
            assert!(
                s.conditions
                    .iter()
                    .all(|c| c.observed_generation == Some(3))
            );
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut o = obj();
        let t1 = Timestamp::from_second(100).expect("ts");
        let t2 = Timestamp::from_second(200).expect("ts");
        let first = build(
            &o,
            &Readiness::new(Reason::Registering, "a"),
            Facts::default(),
            t1,
        );
        o.status = Some(first.clone());
        let same = build(
            &o,
            &Readiness::new(Reason::CollibraUnavailable, "b"),
            Facts::default(),
            t2,
        );
        assert_eq!(find(&same, "Ready").last_transition_time, Time(t1));
        let done = build(
            &o,
            &Readiness::new(Reason::Registered, "c"),
            Facts::default(),
            t2,
        );
        assert_eq!(find(&done, "Ready").last_transition_time, Time(t2));
        o.status = Some(done.clone());
        assert!(!differs(&o, &done));
        assert!(differs(&o, &first));
    }
}
