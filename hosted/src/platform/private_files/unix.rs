//! Private files on Unix: modes 0600 and 0644, set exactly; a private file with any
//! group or other bit is refused with the `chmod` that fixes it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::Refused;
use crate::console::shell_word;

const PRIVATE_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

pub fn create_private(path: &Path) -> io::Result<File> {
    create(path, PRIVATE_MODE)
}

pub fn create_public(path: &Path) -> io::Result<File> {
    create(path, PUBLIC_MODE)
}

fn create(path: &Path, mode: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // `mode` above is filtered by the umask; set it exactly, so private files are the
    // owner's alone and public ones can be handed around whatever the umask.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(file)
}

pub fn check_private(file: &File, path: &Path) -> Result<(), Refused> {
    let mode = file
        .metadata()
        .map_err(Refused::Unreadable)?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    Err(Refused::TooOpen {
        who: format!("permissions {mode:04o} are"),
        label: format!("{mode:04o}"),
        fix: format!("chmod 600 {}", shell_word(&path.display().to_string())),
    })
}

/// One command that makes every one of `paths` private.
pub fn fix_all(paths: &[&Path]) -> Option<String> {
    let words: Vec<String> = paths
        .iter()
        .map(|p| shell_word(&p.display().to_string()))
        .collect();
    Some(format!("chmod 600 {}", words.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::super::{check_private, create_private, create_public};
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn modes_are_exact_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: umask only changes this process's file-creation mask; the old one is
        // put back below.
        let old = unsafe { libc::umask(0o077) };
        let (private, public) = (dir.path().join("a"), dir.path().join("b"));
        let created = create_private(&private).and_then(|_| create_public(&public));
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        created.unwrap();
        assert_eq!(mode(&private), 0o600);
        assert_eq!(mode(&public), 0o644);
    }

    #[test]
    fn a_file_others_can_read_or_write_is_refused_with_the_chmod_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.json");
        drop(create_private(&path).unwrap());
        for bad in [0o640, 0o604, 0o660, 0o644, 0o602, 0o610, 0o601] {
            fs::set_permissions(&path, fs::Permissions::from_mode(bad)).unwrap();
            let e = check_private(&File::open(&path).unwrap(), &path).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(&format!("permissions {bad:04o} are too open")));
            assert!(text.ends_with(&format!("run: chmod 600 {}", path.display())));
        }
        for good in [0o600, 0o400, 0o700] {
            fs::set_permissions(&path, fs::Permissions::from_mode(good)).unwrap();
            check_private(&File::open(&path).unwrap(), &path).unwrap();
        }
    }

    #[test]
    fn one_chmod_fixes_them_all_with_paths_quoted_for_the_shell() {
        let (a, b) = (
            Path::new("/tmp/a b/x.json"),
            Path::new("/tmp/dc/relay.json"),
        );
        assert_eq!(
            fix_all(&[a, b]).unwrap(),
            "chmod 600 '/tmp/a b/x.json' /tmp/dc/relay.json"
        );
    }
}
