//! The host's secrets on disk: the data directory and the key files in it
//! must belong to the user running the host and be closed to everyone else.
//!
//! The simulated attestation key vouches for any code, the platform secret
//! opens every sealed state, a signing key signs enclaves: a file that
//! another user can read gives that user all of it, and a data directory
//! that another user can write lets them swap any of those files. So an
//! existing file is checked when it is opened, and new ones are created
//! with `create_new` and mode 0600 (0700 for directories).

use std::{
    io::{Read, Write},
    path::Path,
};

use super::SimulationError;

/// What a refused path was meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrivatePath {
    /// The host's data directory: no one else may write to it.
    DataDirectory,
    /// A key or secret: no one else may read it.
    SecretFile,
}

impl PrivatePath {
    fn name(self) -> &'static str {
        match self {
            Self::DataDirectory => "data directory",
            Self::SecretFile => "secret file",
        }
    }

    /// The mode bits that must be clear: group and others may not write a
    /// data directory, nor have any access at all to a secret.
    fn forbidden_bits(self) -> u32 {
        match self {
            Self::DataDirectory => 0o022,
            Self::SecretFile => 0o077,
        }
    }
}

/// The message of [`SimulationError::UnsafePermissions`]: what is wrong and the fix.
pub(super) fn describe(kind: PrivatePath, path: &Path, owner: u32, user: u32, mode: u32) -> String {
    let name = kind.name();
    let path = path.display();
    if owner != user {
        let fix = match kind {
            PrivatePath::DataDirectory => "use a data directory of your own".to_owned(),
            PrivatePath::SecretFile => format!("run the host as its owner, or `chown {user} {path}`"),
        };
        return format!("{name} {path} is owned by uid {owner}, not by this user (uid {user}): {fix}");
    }
    let (open_to, chmod) = match kind {
        PrivatePath::DataDirectory => ("lets group or others change it", "700"),
        PrivatePath::SecretFile => ("lets group or others read it", "600"),
    };
    format!("{name} {path} has mode {mode:04o}, which {open_to}: run `chmod {chmod} {path}`")
}

/// Refuses `metadata` unless it belongs to this user and has none of `kind`'s forbidden mode bits.
fn check(kind: PrivatePath, path: &Path, metadata: &std::fs::Metadata) -> Result<(), SimulationError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (owner, user, mode) = (metadata.uid(), super::sys::effective_uid(), metadata.mode() & 0o7777);
        if owner != user || mode & kind.forbidden_bits() != 0 {
            return Err(SimulationError::UnsafePermissions { kind, path: path.to_owned(), owner, user, mode });
        }
    }
    #[cfg(not(unix))]
    let _ = (kind, path, metadata);
    Ok(())
}

/// Checks that `dir` is a directory owned by this user that group and
/// others cannot write to.
pub fn check_data_dir(dir: &Path) -> Result<(), SimulationError> {
    let io = |error| SimulationError::DataDir { action: "use data directory", path: dir.to_owned(), error };
    let metadata = std::fs::metadata(dir).map_err(io)?;
    if !metadata.is_dir() {
        return Err(io(std::io::Error::from(std::io::ErrorKind::NotADirectory)));
    }
    check(PrivatePath::DataDirectory, dir, &metadata)
}

/// Reads a secret file after checking, on the opened file, that it is a
/// regular file owned by this user with no permission for group or others.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, SimulationError> {
    let io = |error| SimulationError::DataDir { action: "read", path: path.to_owned(), error };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if !metadata.is_file() {
        return Err(io(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file")));
    }
    check(PrivatePath::SecretFile, path, &metadata)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

/// Reads a secret file (checked as [`read_secret_file`] does), or creates it
/// with `create_new` and mode 0600 holding `make()` on first use.
pub fn load_or_create_secret(path: &Path, make: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>, SimulationError> {
    match read_secret_file(path) {
        Err(SimulationError::DataDir { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {}
        other => return other,
    }
    let bytes = make();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let io = |error| SimulationError::DataDir { action: "create", path: path.to_owned(), error };
    let mut file = options.open(path).map_err(io)?;
    file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(io)?;
    Ok(bytes)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::{PermissionsExt, chown};

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// A file or directory owned by someone else: as root, give it away; as
    /// anyone else, a root-owned path that already exists.
    fn foreign(dir: &Path, make_dir: bool) -> std::path::PathBuf {
        if super::super::sys::effective_uid() == 0 {
            let path = dir.join("foreign");
            if make_dir {
                std::fs::create_dir(&path).unwrap();
                chmod(&path, 0o700);
            } else {
                std::fs::write(&path, b"secret").unwrap();
                chmod(&path, 0o600);
            }
            chown(&path, Some(65534), Some(65534)).unwrap();
            path
        } else if make_dir {
            "/".into()
        } else {
            "/etc/hostname".into()
        }
    }

    #[test]
    fn a_new_secret_is_created_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.secret");
        assert_eq!(load_or_create_secret(&path, || b"fresh".to_vec()).unwrap(), b"fresh");
        assert_eq!(mode_of(&path), 0o600);
        // The second time it is read, not made again.
        assert_eq!(load_or_create_secret(&path, || b"other".to_vec()).unwrap(), b"fresh");
    }

    #[test]
    fn a_secret_readable_by_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("simulated-attestation.key");
        std::fs::write(&path, b"key").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620] {
            chmod(&path, mode);
            let err = load_or_create_secret(&path, Vec::new).unwrap_err();
            assert!(
                matches!(err, SimulationError::UnsafePermissions { kind: PrivatePath::SecretFile, mode: m, .. } if m == mode),
                "{err:?}"
            );
            let message = err.to_string();
            assert!(message.contains(&format!("has mode {mode:04o}")), "{message}");
            assert!(message.contains(&format!("chmod 600 {}", path.display())), "{message}");
            assert_eq!(std::fs::read(&path).unwrap(), b"key", "a refused secret is left alone");
        }
        chmod(&path, 0o400);
        assert_eq!(read_secret_file(&path).unwrap(), b"key");
    }

    #[test]
    fn a_secret_owned_by_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = foreign(dir.path(), false);
        let err = read_secret_file(&path).unwrap_err();
        let SimulationError::UnsafePermissions { owner, user, .. } = err else { panic!("{err:?}") };
        assert_ne!(owner, user);
        let message = err.to_string();
        assert!(message.contains(&format!("is owned by uid {owner}, not by this user (uid {user})")), "{message}");
    }

    #[test]
    fn a_data_directory_others_can_write_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        check_data_dir(dir.path()).unwrap();
        chmod(dir.path(), 0o755);
        check_data_dir(dir.path()).unwrap();
        for mode in [0o777, 0o775, 0o757] {
            chmod(dir.path(), mode);
            let err = check_data_dir(dir.path()).unwrap_err();
            let message = err.to_string();
            assert!(message.starts_with(&format!("data directory {} has mode {mode:04o}", dir.path().display())));
            assert!(message.contains(&format!("chmod 700 {}", dir.path().display())), "{message}");
        }
        chmod(dir.path(), 0o700);
    }

    #[test]
    fn a_data_directory_of_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = foreign(dir.path(), true);
        let err = check_data_dir(&path).unwrap_err();
        assert!(matches!(err, SimulationError::UnsafePermissions { kind: PrivatePath::DataDirectory, .. }), "{err:?}");
        assert!(err.to_string().contains("use a data directory of your own"), "{err}");
    }

    #[test]
    fn a_data_directory_that_is_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = check_data_dir(&file).unwrap_err();
        assert!(err.to_string().starts_with("cannot use data directory"), "{err}");
    }
}
