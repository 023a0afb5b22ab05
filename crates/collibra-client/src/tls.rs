//! TLS settings: rustls with the ring provider, the system trust roots (or
//! Mozilla's, bundled, where the system has none), plus an optional CA file.
//!
//! The configuration is built here rather than by reqwest so that the crypto
//! provider is chosen explicitly (no process-wide default to install, no
//! aws-lc) and so that a bad CA file fails at start-up with a clear message.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::Error;

/// A rustls client configuration that always verifies the server; the CAs
/// of `ca_file` and `ca_pem` (in-memory PEM) are trusted besides the system roots.
pub(crate) fn client_config(
    ca_file: Option<&Path>,
    ca_pem: Option<&[u8]>,
) -> Result<rustls::ClientConfig, Error> {
    let mut extra = Vec::new();
    if let Some(path) = ca_file {
        let origin = format!("CA file {}", path.display());
        extra.push((read_ca_file(path)?, origin));
    }
    if let Some(pem) = ca_pem {
        extra.push((parse_pem(pem, "the CA bundle")?, "the CA bundle".to_owned()));
    }
    // Without a CA of its own a client shares the process's roots and TLS
    // session cache: with a hundred Collibra connections, a copy each was
    // about 8 MiB. A client that trusts more keeps its own session cache: a
    // session it established must not be resumed by a client that would
    // not have trusted the server.
    let shared = extra.is_empty();
    let roots = if shared {
        system_roots()
    } else {
        let mut roots = (*system_roots()).clone();
        for (certs, origin) in extra {
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    Error::Config(format!(
                        "{origin} holds a certificate rustls cannot use: {e}"
                    ))
                })?;
            }
        }
        Arc::new(roots)
    };

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // reqwest leaves ALPN to whoever builds the configuration.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if shared {
        static SESSIONS: OnceLock<rustls::client::Resumption> = OnceLock::new();
        config.resumption = SESSIONS.get_or_init(Default::default).clone();
    }
    Ok(config)
}

/// The system's trust roots, read once per process. Unreadable system
/// certificates are skipped, as every TLS client does; only a system with
/// no usable roots at all falls back to Mozilla's, bundled.
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                tracing::debug!(
                    "no system CA certificates found; trusting the bundled Mozilla roots"
                );
                roots.add_parsable_certificates(
                    webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned(),
                );
            }
            Arc::new(roots)
        })
        .clone()
}

/// Every certificate in a PEM file (a bundle may hold several).
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = std::fs::read(path)
        .map_err(|e| Error::Config(format!("cannot read CA file {}: {e}", path.display())))?;
    parse_pem(&pem, &format!("CA file {}", path.display()))
}

/// Every certificate in a PEM bundle; `origin` names it in errors.
fn parse_pem(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("{origin} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Config(format!("{origin} holds no PEM certificate")));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_system_roots_are_read_once_and_shared() {
        assert!(super::client_config(None, None).is_ok());
        assert!(super::client_config(None, Some(ca_pem().as_bytes())).is_ok());
        let roots = super::system_roots();
        assert!(!roots.is_empty(), "system or bundled roots");
        assert!(std::sync::Arc::ptr_eq(&roots, &super::system_roots()));
    }

    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).expect("cert").pem()
    }

    #[test]
    fn bundle_with_several_certificates_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, format!("{}\n{}", ca_pem(), ca_pem())).expect("write");
        assert_eq!(read_ca_file(&path).expect("read").len(), 2);
        assert!(client_config(Some(&path), None).is_ok());
    }

    #[test]
    fn file_without_certificates_is_a_config_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let err = client_config(Some(&path), None).expect_err("must fail");
        assert!(
            matches!(&err, Error::Config(m) if m.contains("no PEM certificate")),
            "{err}"
        );
    }

    #[test]
    fn in_memory_bundle_is_read_and_checked() {
        assert!(client_config(None, Some(ca_pem().as_bytes())).is_ok());
        let err = client_config(None, Some(b"junk".as_slice())).expect_err("must fail");
        assert!(
            matches!(&err, Error::Config(m) if m.contains("the CA bundle holds no PEM certificate")),
            "{err}"
        );
    }

    #[test]
    fn missing_file_is_a_config_error() {
        let err =
            client_config(Some(Path::new("/nonexistent/ca.pem")), None).expect_err("must fail");
        assert!(
            matches!(&err, Error::Config(m) if m.contains("/nonexistent/ca.pem")),
            "{err}"
        );
    }
}
