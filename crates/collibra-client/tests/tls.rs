//! The CA file is honoured and TLS verification cannot be bypassed: a tiny
//! rustls proxy (certificate from rcgen) in front of the simulator.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use collibra_client::{Auth, Error, Operation};
use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` and its key.
    fn leaf(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(strings(names)).expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

/// Terminates TLS on 127.0.0.1 and forwards the bytes to `backend`.
async fn tls_proxy(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    backend: SocketAddr,
) -> SocketAddr {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that rejects the certificate ends the handshake.
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                if let Ok(mut plain) = TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    addr
}

fn bearer() -> Auth {
    Auth::Bearer {
        token: value("static-admin-token"),
    }
}

fn write_pem(dir: &tempfile::TempDir, name: &str, pem: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, pem).expect("write");
    path
}

#[tokio::test]
async fn ca_file_is_trusted_and_other_cas_are_not() {
    let sim = sim().await;
    let ca = Ca::new("test CA");
    let (cert, key) = ca.leaf(&["127.0.0.1", "localhost"]);
    let proxy = tls_proxy(cert, key, sim.addr()).await;
    let url = format!("https://127.0.0.1:{}", proxy.port());
    let dir = tempfile::tempdir().expect("tempdir");

    // The right CA, in a bundle with an unrelated one.
    let bundle = format!("{}{}", Ca::new("unrelated").pem(), ca.pem());
    let mut config = config_for(&url, bearer());
    config.ca_file = Some(write_pem(&dir, "bundle.pem", &bundle));
    let (client, _) = client_with(config);
    client.list_clients().await.expect("list over TLS");
    assert_eq!(sim.handle().stats().requests_for("list"), 1);

    // Another CA, and no CA file at all (system roots): both refused, at
    // once, since repeating cannot help.
    let mut wrong = config_for(&url, bearer());
    wrong.ca_file = Some(write_pem(&dir, "other.pem", &Ca::new("other CA").pem()));
    for config in [wrong, config_for(&url, bearer())] {
        let (client, recorder) = client_with(config);
        let err = client.list_clients().await.expect_err("untrusted");
        let Error::Unavailable { message, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(message.contains("certificate is not trusted"), "{message}");
        assert_eq!(recorder.outcomes(Operation::List), ["error"]);
    }
    assert_eq!(sim.handle().stats().requests_for("list"), 1);
}

#[tokio::test]
async fn certificate_for_another_name_is_refused() {
    let sim = sim().await;
    let ca = Ca::new("test CA");
    let (cert, key) = ca.leaf(&["collibra.example"]);
    let proxy = tls_proxy(cert, key, sim.addr()).await;
    let dir = tempfile::tempdir().expect("tempdir");

    let mut config = config_for(&format!("https://127.0.0.1:{}", proxy.port()), bearer());
    config.ca_file = Some(write_pem(&dir, "ca.pem", &ca.pem()));
    let (client, _) = client_with(config);
    let err = client.list_clients().await.expect_err("name mismatch");
    assert!(err.to_string().contains("not trusted"), "{err}");
    assert_eq!(sim.handle().stats().requests_for("list"), 0);
}
