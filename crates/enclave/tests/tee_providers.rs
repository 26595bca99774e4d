//! The TEE evidence providers against fake directories that serve recorded real
//! quotes (from `crates/attestation/tests/data`), the way Gramine's
//! `/dev/attestation` and the kernel's configfs-tsm serve them.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use conclave_enclave::tee::{AttestationProvider, ConfigfsTsmProvider, GramineProvider};

fn recorded(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../attestation/tests/data").join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A fresh directory under the system temp dir, removed on drop.
struct FakeDir(PathBuf);

impl FakeDir {
    fn new(test: &str) -> Self {
        let path = std::env::temp_dir().join(format!("conclave-tee-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        FakeDir(path)
    }
}

impl Drop for FakeDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn report_data() -> [u8; 64] {
    std::array::from_fn(|i| i as u8 ^ 0x5A)
}

#[test]
fn gramine_writes_report_data_and_returns_the_quote() {
    let fake = FakeDir::new("gramine");
    fs::write(fake.0.join("attestation_type"), "dcap\n").unwrap();
    let quote = recorded("sgx_quote");
    fs::write(fake.0.join("quote"), &quote).unwrap();

    let provider = GramineProvider::new(&fake.0);
    assert_eq!(provider.attestation_type().unwrap(), "dcap");
    let evidence = provider.evidence(&report_data()).unwrap();
    assert_eq!(evidence, quote);
    assert_eq!(fs::read(fake.0.join("user_report_data")).unwrap(), report_data());
}

#[test]
fn gramine_without_dcap_says_what_to_configure() {
    let fake = FakeDir::new("gramine-none");
    fs::write(fake.0.join("attestation_type"), "none").unwrap();
    let err = GramineProvider::new(&fake.0).evidence(&report_data()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("sgx.remote_attestation"), "{err}");
    assert!(!fake.0.join("user_report_data").exists(), "nothing written before the check");
}

#[test]
fn gramine_outside_an_enclave_names_the_missing_file() {
    let fake = FakeDir::new("gramine-missing");
    let err = GramineProvider::new(fake.0.join("attestation")).evidence(&report_data()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("attestation_type"), "{err}");
}

/// A pre-placed configfs-tsm entry: the kernel's outblob for a TDX guest.
fn place_tdx_entry(root: &Path, name: &str) -> Vec<u8> {
    let entry = root.join(name);
    fs::create_dir(&entry).unwrap();
    let quote = recorded("tdx_quote");
    fs::write(entry.join("outblob"), &quote).unwrap();
    fs::write(entry.join("provider"), "tdx_guest\n").unwrap();
    fs::write(entry.join("generation"), "1\n").unwrap();
    quote
}

#[test]
fn configfs_tsm_writes_inblob_and_reads_outblob_and_provider() {
    let fake = FakeDir::new("tsm");
    let quote = place_tdx_entry(&fake.0, "conclave");
    let provider = ConfigfsTsmProvider::new(&fake.0).with_entry_name("conclave");
    let report = provider.report(&report_data()).unwrap();
    assert_eq!(report.provider, "tdx_guest");
    assert_eq!(report.outblob, quote);
    assert_eq!(report.auxblob, None);
    assert_eq!(fs::read(fake.0.join("conclave/inblob")).unwrap(), report_data());
    // An entry that existed before is left for its owner.
    assert!(fake.0.join("conclave").is_dir());
    // The trait returns the outblob.
    assert_eq!(provider.evidence(&report_data()).unwrap(), quote);
}

#[test]
fn configfs_tsm_outblob_appears_only_after_inblob_is_written() {
    // Emulate the kernel more closely: a thread stands in for the TSM driver and
    // produces outblob only once inblob holds 64 bytes; the provider is started after
    // the entry's attributes exist, as they do right after mkdir on configfs.
    let fake = FakeDir::new("tsm-thread");
    let entry = fake.0.join("conclave");
    fs::create_dir(&entry).unwrap();
    fs::write(entry.join("provider"), "sev_guest").unwrap();
    fs::write(entry.join("inblob"), b"").unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let driver = {
        let entry = entry.clone();
        std::thread::spawn(move || {
            let report = recorded("report_milan.hex");
            ready_tx.send(()).unwrap();
            for _ in 0..5000 {
                if fs::read(entry.join("inblob")).map(|b| b.len() == 64).unwrap_or(false) {
                    let tmp = entry.join(".outblob.tmp");
                    fs::write(&tmp, &report).unwrap();
                    fs::rename(&tmp, entry.join("outblob")).unwrap();
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            false
        })
    };
    ready_rx.recv().unwrap();
    let provider = ConfigfsTsmProvider::new(&fake.0).with_entry_name("conclave");
    // Before inblob is written there is nothing to read.
    assert!(!entry.join("outblob").exists());
    // The provider reads outblob right after writing inblob, as the kernel answers
    // synchronously; the fake answers asynchronously, so retry the whole request a
    // bounded number of times until the fake driver has caught up.
    let mut result = provider.report(&report_data());
    for _ in 0..200 {
        match &result {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                std::thread::sleep(std::time::Duration::from_millis(5));
                result = provider.report(&report_data());
            }
            _ => break,
        }
    }
    assert!(driver.join().unwrap(), "fake driver saw inblob");
    let report = result.unwrap();
    assert_eq!(report.provider, "sev_guest");
    assert_eq!(report.outblob, recorded("report_milan.hex"));
}

#[test]
fn configfs_tsm_removes_the_entry_it_created_even_on_failure() {
    // A plain directory is not configfs: no driver answers, so outblob never
    // appears. The provider must fail naming outblob and clean up its entry.
    let fake = FakeDir::new("tsm-empty");
    let err = ConfigfsTsmProvider::new(&fake.0).evidence(&report_data()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("outblob"), "{err}");
    assert_eq!(fs::read_dir(&fake.0).unwrap().count(), 0, "entry removed");
}

#[test]
fn configfs_tsm_without_the_interface_names_the_path() {
    // Not a confidential VM, or configfs not mounted.
    let fake = FakeDir::new("tsm-missing");
    let err = ConfigfsTsmProvider::new(fake.0.join("no-tsm")).evidence(&report_data()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("creating report entry"), "{err}");
    assert!(err.to_string().contains("no-tsm"), "{err}");
}
