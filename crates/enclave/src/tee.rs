//! Getting hardware evidence from inside a TEE, through the file interfaces the
//! runtimes expose.
//!
//! ```text
//!  enclave code ── report_data (64 bytes) ──> AttestationProvider ──> evidence bytes
//!                                              │
//!            GramineProvider ──────────────────┤  /dev/attestation/{user_report_data, quote}
//!            ConfigfsTsmProvider ──────────────┘  /sys/kernel/config/tsm/report/<entry>/{inblob, outblob}
//! ```
//!
//! The bytes returned are what the vendor verifiers in `conclave-attestation` take: an
//! SGX DCAP quote under Gramine, a TDX quote or an SEV-SNP report under configfs-tsm
//! (the collateral, VCEK and chain are fetched separately, outside the enclave).
//!
//! Both interfaces are plain files, so tests run against a fake directory; the paths
//! are fields so nothing here is tied to `/dev` or `/sys`.

use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Something that turns 64 bytes of report data into signed hardware evidence.
pub trait AttestationProvider {
    /// Asks the TEE for evidence binding `report_data`.
    fn evidence(&self, report_data: &[u8; 64]) -> io::Result<Vec<u8>>;
}

/// The Gramine SGX attestation pseudo-filesystem (`/dev/attestation`).
///
/// Writing `user_report_data` sets the REPORTDATA of the next quote; reading `quote`
/// makes the quoting enclave produce it. `attestation_type` says whether the manifest
/// enabled DCAP (`sgx.remote_attestation = "dcap"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GramineProvider {
    /// The pseudo-filesystem's directory, normally `/dev/attestation`.
    pub root: PathBuf,
}

impl GramineProvider {
    /// The directory Gramine mounts inside the enclave.
    pub const DEFAULT_ROOT: &'static str = "/dev/attestation";

    /// A provider for the given directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        GramineProvider { root: root.into() }
    }

    /// Gramine's `attestation_type`: "dcap", "epid" or "none".
    pub fn attestation_type(&self) -> io::Result<String> {
        let path = self.root.join("attestation_type");
        let text = fs::read_to_string(&path).map_err(|e| annotate(e, "reading", &path))?;
        Ok(text.trim().to_owned())
    }
}

impl AttestationProvider for GramineProvider {
    fn evidence(&self, report_data: &[u8; 64]) -> io::Result<Vec<u8>> {
        // Only DCAP quotes can be verified by conclave-attestation; EPID is retired
        // and "none" means the manifest did not enable attestation at all.
        let kind = self.attestation_type()?;
        if kind != "dcap" {
            return Err(io::Error::new(
                ErrorKind::Unsupported,
                format!(
                    "gramine attestation type is {kind:?}, need \"dcap\": set sgx.remote_attestation = \"dcap\" in the manifest"
                ),
            ));
        }
        let data_path = self.root.join("user_report_data");
        write_all(&data_path, report_data)?;
        let quote_path = self.root.join("quote");
        let quote = fs::read(&quote_path).map_err(|e| annotate(e, "reading", &quote_path))?;
        if quote.is_empty() {
            return Err(io::Error::new(ErrorKind::UnexpectedEof, format!("{} is empty", quote_path.display())));
        }
        Ok(quote)
    }
}

/// The Linux configfs-tsm report interface (`/sys/kernel/config/tsm/report`), which
/// TDX and SEV-SNP guests use since Linux 6.7.
///
/// For each request the provider creates a fresh entry directory, writes `inblob`,
/// reads `outblob` (the TDX quote or the SNP report) and `provider`, then removes the
/// entry. The kernel bumps `generation` on every write to `inblob`; when that file
/// exists the provider checks that no other writer changed the entry in between.
///
/// With [`with_entry_name`](Self::with_entry_name) the provider uses one named entry
/// instead: it creates it if missing (and then removes it), or reuses an entry that
/// already exists (and leaves it), which the kernel allows. An operator can so
/// pre-create the entry with the right permissions, and tests can pre-place a fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigfsTsmProvider {
    /// The report directory, normally `/sys/kernel/config/tsm/report`.
    pub root: PathBuf,
    /// A fixed entry name, or `None` for a fresh unique entry per request.
    entry_name: Option<String>,
}

/// One answer of configfs-tsm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsmReport {
    /// Who produced it, as the kernel names it: "tdx_guest", "sev_guest", ...
    pub provider: String,
    /// The evidence: a TDX quote or an SEV-SNP report.
    pub outblob: Vec<u8>,
    /// Auxiliary data, when the provider has any (the SNP certificate table).
    pub auxblob: Option<Vec<u8>>,
}

/// Makes entry names unique within the process; the pid makes them unique across.
static NEXT_ENTRY: AtomicU64 = AtomicU64::new(0);

impl ConfigfsTsmProvider {
    /// The directory the kernel exposes.
    pub const DEFAULT_ROOT: &'static str = "/sys/kernel/config/tsm/report";

    /// A provider for the given directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ConfigfsTsmProvider { root: root.into(), entry_name: None }
    }

    /// Uses the entry `<root>/<name>` for every request (see the type's docs).
    pub fn with_entry_name(mut self, name: impl Into<String>) -> Self {
        self.entry_name = Some(name.into());
        self
    }

    /// Requests a report and returns everything the entry says about it.
    pub fn report(&self, report_data: &[u8; 64]) -> io::Result<TsmReport> {
        let entry = match &self.entry_name {
            Some(name) => Entry::open_or_create(self.root.join(name))?,
            None => {
                let n = NEXT_ENTRY.fetch_add(1, Ordering::Relaxed);
                Entry::create(self.root.join(format!("conclave-{}-{n}", std::process::id())))?
            }
        };
        let dir = entry.path();

        write_all(&dir.join("inblob"), report_data)?;
        let generation_before = read_generation(dir)?;
        let outblob = read(&dir.join("outblob"))?;
        let provider = String::from_utf8_lossy(&read(&dir.join("provider"))?).trim().to_owned();
        let auxblob = match fs::read(dir.join("auxblob")) {
            Ok(bytes) if !bytes.is_empty() => Some(bytes),
            Ok(_) => None,
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(annotate(e, "reading", &dir.join("auxblob"))),
        };
        let generation_after = read_generation(dir)?;
        if generation_before != generation_after {
            return Err(io::Error::other(format!(
                "{} changed while being read (generation {generation_before:?} -> {generation_after:?}): another process wrote inblob",
                dir.display()
            )));
        }
        if outblob.is_empty() {
            return Err(io::Error::new(ErrorKind::UnexpectedEof, format!("{}/outblob is empty", dir.display())));
        }
        entry.remove()?;
        Ok(TsmReport { provider, outblob, auxblob })
    }
}

impl AttestationProvider for ConfigfsTsmProvider {
    fn evidence(&self, report_data: &[u8; 64]) -> io::Result<Vec<u8>> {
        Ok(self.report(report_data)?.outblob)
    }
}

/// A configfs-tsm entry directory. One this provider created is removed when done,
/// also on error paths; one that existed before is left alone.
struct Entry {
    path: PathBuf,
    /// Created by us and not removed yet.
    owned: bool,
}

impl Entry {
    fn create(path: PathBuf) -> io::Result<Self> {
        fs::create_dir(&path).map_err(|e| annotate(e, "creating report entry", &path))?;
        Ok(Entry { path, owned: true })
    }

    fn open_or_create(path: PathBuf) -> io::Result<Self> {
        match fs::create_dir(&path) {
            Ok(()) => Ok(Entry { path, owned: true }),
            // Someone else owns it: nothing for us to remove.
            Err(e) if e.kind() == ErrorKind::AlreadyExists && path.is_dir() => Ok(Entry { path, owned: false }),
            Err(e) => Err(annotate(e, "creating report entry", &path)),
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn remove(mut self) -> io::Result<()> {
        if !self.owned {
            return Ok(());
        }
        self.owned = false;
        remove_entry(&self.path)
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if self.owned {
            // Best effort on an error path; the original error is what matters.
            let _ = remove_entry(&self.path);
        }
    }
}

/// On configfs, `rmdir` removes an entry together with its attribute files (which
/// cannot be unlinked one by one). On an ordinary directory, as in tests, the files
/// are real and must go first.
fn remove_entry(path: &Path) -> io::Result<()> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => {
            fs::remove_dir_all(path).map_err(|e| annotate(e, "removing report entry", path))
        }
        Err(e) => Err(annotate(e, "removing report entry", path)),
    }
}

fn read_generation(dir: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(dir.join("generation")) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        // Older kernels and fakes have no generation attribute.
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(annotate(e, "reading", &dir.join("generation"))),
    }
}

/// Writes the whole buffer in one `write` call: sysfs/configfs attributes take a
/// value per write, so a short write would be a different value, not half of one.
/// No `O_TRUNC`: pseudo-files have no length to cut; `O_CREAT` is harmless on an
/// existing attribute and lets a plain directory stand in for one.
fn write_all(path: &Path, bytes: &[u8]) -> io::Result<()> {
    #[allow(clippy::suspicious_open_options)] // no truncate on purpose, see above
    let mut file =
        fs::OpenOptions::new().write(true).create(true).open(path).map_err(|e| annotate(e, "opening", path))?;
    let written = file.write(bytes).map_err(|e| annotate(e, "writing", path))?;
    if written != bytes.len() {
        return Err(io::Error::new(
            ErrorKind::WriteZero,
            format!("{}: wrote {written} of {} bytes", path.display(), bytes.len()),
        ));
    }
    Ok(())
}

fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = fs::File::open(path).map_err(|e| annotate(e, "opening", path))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| annotate(e, "reading", path))?;
    Ok(bytes)
}

/// Keeps the error kind and adds what was being done to which file.
fn annotate(e: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{action} {}: {e}", path.display()))
}
