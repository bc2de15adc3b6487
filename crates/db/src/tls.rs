//! TLS to PostgreSQL with libpq's `sslmode` meanings, through rustls (no OpenSSL):
//!
//! | sslmode | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | no | — |
//! | `prefer` (default) | when the server offers TLS | no |
//! | `require` | yes | no; with an explicit `sslrootcert`, as `verify-ca` |
//! | `verify-ca` | yes | signed by `sslrootcert` |
//! | `verify-full` | yes | signed by `sslrootcert` and naming the host |
//!
//! `sslrootcert=system` trusts the operating system's store. `sslcert` + `sslkey`
//! present a client certificate. Files are read when the settings are validated,
//! before any socket opens.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// libpq's `sslmode`, less `allow` (plain first, TLS as a fallback), which the
/// driver cannot do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// The mode named `text`, or why it is not one.
    pub fn parse(text: &str) -> Result<SslMode, String> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => return Err("sslmode=allow (plain first, TLS as a fallback) is not supported; use prefer or disable".into()),
            other => return Err(format!(
                "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
            )),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What the driver is told: whether to try TLS and whether it must succeed.
    pub fn driver(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }
}

/// Where the trusted CAs come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    /// `sslrootcert=system`: the operating system's store.
    System,
}

impl RootCert {
    pub fn parse(text: &str) -> RootCert {
        if text == "system" {
            RootCert::System
        } else {
            RootCert::File(PathBuf::from(text))
        }
    }

    pub fn describe(&self) -> String {
        match self {
            RootCert::File(p) => p.display().to_string(),
            RootCert::System => "system".into(),
        }
    }
}

/// The TLS parameters of a connection string (and `PGSSL*` variables).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<RootCert>,
    /// Client certificate (`sslcert`) and its key (`sslkey`): both or neither.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// How the server's certificate is checked, after libpq's rules are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    None,
    Chain,
    ChainAndHost,
}

impl TlsSettings {
    /// What is checked: `require` with an explicit root certificate checks the chain,
    /// as libpq does.
    pub fn verification(&self) -> Verification {
        match self.mode {
            SslMode::Disable | SslMode::Prefer => Verification::None,
            SslMode::Require if self.root_cert.is_some() => Verification::Chain,
            SslMode::Require => Verification::None,
            SslMode::VerifyCa => Verification::Chain,
            SslMode::VerifyFull => Verification::ChainAndHost,
        }
    }

    /// The rustls configuration these settings ask for; reads the certificate files.
    /// Errors are one line naming the parameter and the file.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?;
        let verification = self.verification();
        let verifier: Arc<dyn ServerCertVerifier> = if verification == Verification::None {
            Arc::new(NoVerification(provider.clone()))
        } else {
            let Some(root) = &self.root_cert else {
                return Err(format!(
                    "sslmode={} needs sslrootcert=FILE (the CA certificate that signed the server's, e.g. the provider's bundle) or sslrootcert=system",
                    self.mode.as_str()
                ));
            };
            let roots = Arc::new(root_store(root)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| format!("sslrootcert={}: {e}", root.describe()))?;
            if verification == Verification::Chain {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        };
        let b = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        match (&self.cert, &self.key) {
            (None, None) => Ok(b.with_no_client_auth()),
            (Some(c), Some(k)) => {
                let certs = read_certs(c, "sslcert")?;
                let key = PrivateKeyDer::from_pem_file(k)
                    .map_err(|e| format!("sslkey={}: no private key read: {e}", k.display()))?;
                b.with_client_auth_cert(certs, key).map_err(|e| {
                    format!(
                        "sslcert={} / sslkey={}: {e}",
                        c.display(),
                        k.display()
                    )
                })
            }
            (Some(_), None) => Err("sslcert is given without sslkey (give both, e.g. sslcert=client.crt&sslkey=client.key)".into()),
            (None, Some(_)) => Err("sslkey is given without sslcert (give both, e.g. sslcert=client.crt&sslkey=client.key)".into()),
        }
    }
}

fn read_certs(path: &Path, param: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{param}={}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{param}={}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

fn root_store(root: &RootCert) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match root {
        RootCert::File(path) => {
            for c in read_certs(path, "sslrootcert")? {
                store
                    .add(c)
                    .map_err(|e| format!("sslrootcert={}: {e}", path.display()))?;
            }
        }
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("sslrootcert=system: the system's certificate store has no usable CA certificate (install ca-certificates or give sslrootcert=FILE)".into());
            }
        }
    }
    Ok(store)
}

/// `prefer` and `require`: encrypted, the certificate is not checked (libpq's
/// meaning); handshake signatures are still verified.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the host name is not compared.
/// The web PKI verifier checks the chain before the name, so a name mismatch means
/// the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The rustls error inside an error chain (tokio-postgres wraps it in an I/O error).
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(r);
            }
        }
        cur = c.source();
    }
    None
}

/// What a failed certificate check means for the user, in words, or `None` when
/// the error is not one.
pub fn explain_failure(
    e: &(dyn std::error::Error + 'static),
    settings: &TlsSettings,
) -> Option<String> {
    let root = settings
        .root_cert
        .as_ref()
        .map_or_else(|| "(none)".to_string(), RootCert::describe);
    let rustls::Error::InvalidCertificate(ce) = rustls_error(e)? else {
        return None;
    };
    Some(match ce {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "the server's certificate does not name the host connected to (sslmode=verify-full compares them: connect by a name the certificate lists, or use sslmode=verify-ca to check only the CA)".to_string()
        }
        CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
            "the server's certificate is not signed by a CA in sslrootcert={root} (give the CA bundle of the server's provider)"
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired".to_string()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet (is this machine's clock right?)".to_string()
        }
        other => format!("the server's certificate was refused: {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_follow_libpq() {
        assert_eq!(SslMode::parse("verify-full"), Ok(SslMode::VerifyFull));
        assert!(SslMode::parse("allow").unwrap_err().contains("prefer"));
        assert!(SslMode::parse("on").unwrap_err().contains("verify-ca"));
        let mut t = TlsSettings {
            mode: SslMode::Require,
            ..TlsSettings::default()
        };
        assert_eq!(t.verification(), Verification::None);
        t.root_cert = Some(RootCert::File("ca.crt".into()));
        assert_eq!(t.verification(), Verification::Chain);
        t.mode = SslMode::VerifyFull;
        assert_eq!(t.verification(), Verification::ChainAndHost);
        t.mode = SslMode::Prefer;
        assert_eq!(t.verification(), Verification::None);
    }

    #[test]
    fn verification_needs_a_root_certificate_and_both_client_files() {
        let t = TlsSettings {
            mode: SslMode::VerifyCa,
            ..TlsSettings::default()
        };
        assert!(t.client_config().unwrap_err().contains("needs sslrootcert"));
        let t = TlsSettings {
            mode: SslMode::Require,
            cert: Some("c.crt".into()),
            ..TlsSettings::default()
        };
        assert!(t.client_config().unwrap_err().contains("without sslkey"));
        let t = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some(RootCert::File("/nonexistent/ca.crt".into())),
            ..TlsSettings::default()
        };
        let e = t.client_config().unwrap_err();
        assert!(e.starts_with("sslrootcert=/nonexistent/ca.crt"), "{e}");
        assert!(TlsSettings::default().client_config().is_ok());
    }
}
