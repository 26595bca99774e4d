//! A real web host for tests: `conclave_host::web::run` on a loopback port,
//! in a thread with its own tokio runtime, over a data directory that
//! outlives it (so tests can stop it, copy or roll back its files, and
//! start it again, as a hostile operator would).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::mpsc,
    thread::JoinHandle,
    time::Duration,
};

use conclave_host::{
    EnclaveHost, HostError, HostService, ServiceConfig,
    store::SqliteStore,
    web::{WebConfig, run},
};

use crate::ProbeEnclave;

/// The store file inside a data directory.
pub const STORE_FILE: &str = "store.db";
/// The platform secret inside a data directory (its sealing root).
pub const SECRET_FILE: &str = "platform.secret";

/// A web host serving in a background thread.
#[derive(Debug)]
pub struct WebHost {
    url: String,
    dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), HostError>>>,
}

/// The platform secret of `dir`, made on first use: the same directory
/// always unseals the same state.
pub fn platform_secret(dir: &Path) -> [u8; 32] {
    let path = dir.join(SECRET_FILE);
    if let Ok(bytes) = std::fs::read(&path)
        && let Ok(secret) = bytes.try_into()
    {
        return secret;
    }
    let mut secret = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
    std::fs::create_dir_all(dir).expect("create the data directory");
    std::fs::write(&path, secret).expect("write the platform secret");
    secret
}

/// A service around `host` on the store and secret of `dir`.
pub fn service(dir: &Path, host: EnclaveHost) -> Result<HostService, HostError> {
    std::fs::create_dir_all(dir).expect("create the data directory");
    let store = SqliteStore::open(&dir.join(STORE_FILE))?;
    HostService::new(host, store, ServiceConfig::new(platform_secret(dir)))
}

impl WebHost {
    /// The probe enclave (mock mode, restartable) on `dir`.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, EnclaveHost::load_mock_restartable::<ProbeEnclave>(), WebConfig::default())
            .expect("the web host starts")
    }

    /// `host` on `dir`, with `config`.
    pub fn start_with(dir: &Path, host: EnclaveHost, config: WebConfig) -> Result<Self, HostError> {
        let service = service(dir, host)?;
        Ok(Self::serve(dir, service, config))
    }

    /// Serves an already built service.
    pub fn serve(dir: &Path, service: HostService, config: WebConfig) -> Self {
        let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
                addr_tx.send(listener.local_addr().expect("a local address")).expect("report the address");
                run(listener, service, config, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(20)).expect("the web host did not bind");
        Self { url: format!("http://{addr}"), dir: dir.to_owned(), stop: Some(stop), thread: Some(thread) }
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the host and waits until its store is closed.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WebHost {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Copies the files of a stopped host's data directory: what an operator
/// does to keep an old state, or to start a second copy of the enclave.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the data directory") {
        let entry = entry.expect("a directory entry");
        if entry.file_type().expect("a file type").is_file() {
            let name = entry.file_name();
            // The lock file belongs to whoever has the store open.
            if name.to_string_lossy().ends_with(".lock") {
                continue;
            }
            std::fs::copy(entry.path(), to.join(&name)).expect("copy a file");
        }
    }
}

/// Replaces `dir`'s files with those of `snapshot` (a rollback of a stopped host).
pub fn restore_dir(snapshot: &Path, dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read the data directory") {
        let entry = entry.expect("a directory entry");
        if entry.file_type().expect("a file type").is_file() {
            std::fs::remove_file(entry.path()).expect("remove a file");
        }
    }
    copy_dir(snapshot, dir);
}
