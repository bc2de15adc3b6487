//! TLS servers for tests: a throw-away certificate authority and certificates made
//! with rcgen, a PostgreSQL (the Debian binaries, as `scripts/test.sh` runs them) and
//! a Redis that accept TLS on free loopback ports. Each is stopped on drop.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The certificate files of one test, in one folder.
pub struct Pki {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// A second CA that signed nothing here: the "wrong CA".
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate whose common name is the user it authenticates.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn new_ca(cn: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let pem = p.self_signed(&key).unwrap().pem();
    (p, key, pem)
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    set_mode(path, 0o600);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

impl Pki {
    /// Writes a CA, a server certificate for `server_names` (DNS names or IP
    /// addresses) and a client certificate for `client_cn` into `dir`.
    pub fn create(dir: &Path, server_names: &[&str], client_cn: &str) -> Pki {
        let (ca_params, ca_key, ca_pem) = new_ca("powertune test CA");
        let (_, _, other_pem) = new_ca("powertune other CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(names).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![usage];
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            let cert = p.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let names: Vec<String> = server_names.iter().map(|s| s.to_string()).collect();
        let (server_pem, server_key) = leaf(
            names,
            server_names.first().copied().unwrap_or("localhost"),
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_pem, client_key) = leaf(vec![], client_cn, ExtendedKeyUsagePurpose::ClientAuth);
        let pki = Pki {
            ca: dir.join("ca.crt"),
            other_ca: dir.join("other-ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        };
        write(&pki.ca, &ca_pem);
        write(&pki.other_ca, &other_pem);
        write(&pki.server_cert, &server_pem);
        write(&pki.server_key, &server_key);
        write(&pki.client_cert, &client_pem);
        write(&pki.client_key, &client_key);
        pki
    }
}

/// A free loopback TCP port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within 30s");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The newest PostgreSQL server binaries installed (`/usr/lib/postgresql/N/bin`).
fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.retain(|d| d.join("initdb").exists());
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().unwrap_or_else(|| {
        panic!("no PostgreSQL server under /usr/lib/postgresql/*/bin (install postgresql)")
    })
}

/// Runs a PostgreSQL server binary, as user `postgres` when this process is root.
fn run_pg(root: bool, bin: &Path, args: &[&str]) {
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}{}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PostgreSQL cluster of its own that accepts only TLS connections on loopback.
/// `pg_hba.conf`: the client-certificate user authenticates with its certificate
/// (`cert`), every other user is trusted over TLS; plain connections are rejected.
pub struct TlsPostgres {
    pub port: u16,
    pub pki: Pki,
    /// The user whose client certificate is `pki.client_cert`.
    pub cert_user: String,
    data: PathBuf,
    bin: PathBuf,
    root: bool,
    _dir: tempfile::TempDir,
}

impl TlsPostgres {
    /// Starts a cluster whose server certificate names `server_names`.
    pub fn start(server_names: &[&str]) -> TlsPostgres {
        let root = is_root();
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("powertune-tls-pg")
            .tempdir()
            .unwrap();
        set_mode(dir.path(), 0o755);
        let pki_dir = dir.path().join("pki");
        std::fs::create_dir(&pki_dir).unwrap();
        let cert_user = "cert_user".to_string();
        let pki = Pki::create(&pki_dir, server_names, &cert_user);
        let data = dir.path().join("data");
        if root {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success(), "chown the test cluster's folder to postgres");
        }
        let data_s = data.to_string_lossy().to_string();
        run_pg(
            root,
            &bin.join("initdb"),
            &[
                "-D",
                &data_s,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let port = free_port();
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n\
             max_connections = 20\nshared_buffers = 16MB\nfsync = off\n\
             ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
            pki.server_cert.display(),
            pki.server_key.display(),
            pki.ca.display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        std::fs::write(&conf_path, text).unwrap();
        let hba = format!(
            "hostssl all {cert_user} 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n"
        );
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        let log = data.join("server.log").to_string_lossy().to_string();
        run_pg(
            root,
            &bin.join("pg_ctl"),
            &["-D", &data_s, "-l", &log, "-w", "-t", "60", "start"],
        );
        let me = TlsPostgres {
            port,
            pki,
            cert_user,
            data,
            bin,
            root,
            _dir: dir,
        };
        wait_listening(port, "the TLS PostgreSQL");
        let psql = me.bin.join("psql");
        let out = Command::new(&psql)
            .arg(format!(
                "host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=require"
            ))
            .args(["-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!("CREATE ROLE {} LOGIN", me.cert_user))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", psql.display()));
        assert!(
            out.status.success(),
            "CREATE ROLE on the TLS PostgreSQL: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        me
    }

    /// A `postgres://` URL to this server as `user`, database `postgres`, with `params`
    /// (e.g. `sslmode=verify-full&sslrootcert=...`) appended.
    pub fn url(&self, host: &str, user: &str, params: &str) -> String {
        format!("postgres://{user}@{host}:{}/postgres?{params}", self.port)
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let data = self.data.to_string_lossy().to_string();
        let mut cmd = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = cmd
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A Redis of its own listening only with TLS on loopback (client certificates
/// optional), with an ACL user `acl_user` / `acl_password` besides the default user.
pub struct TlsRedis {
    pub port: u16,
    pub pki: Pki,
    pub acl_user: String,
    pub acl_password: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    /// Starts `redis-server` with a certificate for `server_names`.
    pub fn start(server_names: &[&str]) -> TlsRedis {
        let dir = tempfile::Builder::new()
            .prefix("powertune-tls-redis")
            .tempdir()
            .unwrap();
        let pki = Pki::create(dir.path(), server_names, "redis-client");
        let port = free_port();
        let (acl_user, acl_password) = ("app_user".to_string(), "acl-s3cret".to_string());
        let conf = format!(
            "bind 127.0.0.1\nport 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
             tls-ca-cert-file {}\ntls-auth-clients optional\nsave \"\"\nappendonly no\n\
             dir {}\ndatabases 4\nuser default off\n\
             user {acl_user} on >{acl_password} ~* &* +@all\n",
            pki.server_cert.display(),
            pki.server_key.display(),
            pki.ca.display(),
            dir.path().display()
        );
        let conf_path = dir.path().join("redis.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("redis-server")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server: {e} (install redis-server)"));
        let me = TlsRedis {
            port,
            pki,
            acl_user,
            acl_password,
            child,
            _dir: dir,
        };
        wait_listening(port, "the TLS Redis");
        me
    }

    /// `rediss://USER:PASSWORD@host:port/0` for the ACL user.
    pub fn url(&self, host: &str) -> String {
        format!(
            "rediss://{}:{}@{host}:{}/0",
            self.acl_user, self.acl_password, self.port
        )
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS front for a plaintext TCP server on loopback: accepts TLS with the server
/// certificate of `pki` (ALPN `h2` and `http/1.1`), then copies bytes both ways to
/// `upstream`. Stops on drop.
pub struct TlsProxy {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsProxy {
    pub async fn start(pki: &Pki, upstream: std::net::SocketAddr) -> TlsProxy {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.server_cert)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client refusing the certificate ends its handshake: nothing to copy.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                    }
                });
            }
        });
        TlsProxy { addr, task }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
