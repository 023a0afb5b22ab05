//! What ends a reconcile early. Each error names the call that failed and
//! keeps its source; the controller retries with the object's backoff.

use std::time::Duration;

use kube::runtime::finalizer;

/// The Kubernetes API call that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::Display)]
pub enum KubeCall {
    /// GET of the Secret's metadata (is it ours?).
    #[strum(to_string = "reading the Secret's metadata")]
    GetSecretMetadata,
    /// GET of a Secret that carries the managed-by label.
    #[strum(to_string = "reading the Secret")]
    GetSecret,
    /// POST of the claim when no Secret exists yet.
    #[strum(to_string = "creating the Secret")]
    CreateSecret,
    /// Merge patch of the Secret (claim, release, orphan, refresh).
    #[strum(to_string = "patching the Secret")]
    PatchSecret,
    /// DELETE of the Secret, to change its type (rule 13).
    #[strum(to_string = "deleting the Secret to change its type")]
    DeleteSecret,
    /// GET of the backup Secret of a type change.
    #[strum(to_string = "reading the backup Secret")]
    GetBackup,
    /// POST (or merge patch) of the backup Secret of a type change.
    #[strum(to_string = "writing the backup Secret")]
    WriteBackup,
    /// DELETE of the backup Secret once the type change is done.
    #[strum(to_string = "deleting the backup Secret")]
    DeleteBackup,
    /// Server-side apply of the OAuthClient's status.
    #[strum(to_string = "writing the OAuthClient's status")]
    PatchStatus,
}

/// Errors that end a reconcile early; the controller retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API, {call}: {source}")]
    Kube {
        /// Which call.
        call: KubeCall,
        /// What the API server or the connection said.
        #[source]
        source: kube::Error,
    },
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    /// Cleanup must wait (Collibra unavailable); retried after `delay`.
    #[error("cleanup waits {delay:?}: {source}")]
    CleanupPending {
        /// The wait before the next attempt.
        delay: Duration,
        /// Why Collibra could not delete the client.
        #[source]
        source: collibra_client::Error,
    },
    /// Credentials were issued but could not be written yet; kept in memory.
    #[error(
        "credentials for {client_id} are held in memory until the Secret can be written: {source}"
    )]
    Unsaved {
        /// The new client's id (never its secret).
        client_id: String,
        /// Why the Secret write failed.
        #[source]
        source: kube::Error,
    },
    /// The reconcile panicked (a bug); tried again after a minute.
    #[error("the reconcile panicked: {message}")]
    Panicked {
        /// The panic's message.
        message: String,
    },
}

impl Error {
    /// Wraps the failure of `call`, for `map_err`.
    pub fn kube(call: KubeCall) -> impl FnOnce(kube::Error) -> Error {
        move |source| Error::Kube { call, source }
    }

    /// A short label for metrics: the kind of error.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "KubernetesApi",
            Error::Finalizer(_) => "Finalizer",
            Error::CleanupPending { .. } => "CleanupPending",
            Error::Unsaved { .. } => "CredentialsUnsaved",
            Error::Panicked { .. } => "Panic",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubernetes_error_names_the_call_and_keeps_its_source() {
        let source = kube::Error::Api(
            kube::core::Status::failure("secrets \"s\" is forbidden", "Forbidden")
                .with_code(403)
                .boxed(),
        );
        let e = Error::kube(KubeCall::PatchSecret)(source);
        assert_eq!(e.metric_label(), "KubernetesApi");
        let text = e.to_string();
        assert!(
            text.starts_with("Kubernetes API, patching the Secret: "),
            "{text}"
        );
        assert!(text.contains("forbidden"), "{text}");
        let inner = std::error::Error::source(&e).expect("source kept");
        assert!(inner.to_string().contains("forbidden"));
        assert!(matches!(
            e,
            Error::Kube {
                call: KubeCall::PatchSecret,
                ..
            }
        ));
    }
}
