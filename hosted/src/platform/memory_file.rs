//! A file holding secret bytes for a child process to read by path, kept off disks where
//! the platform allows it: on Linux an anonymous memory file (`memfd_create`) that the
//! child opens at `/proc/self/fd/N` through the descriptor it inherits, gone once every
//! descriptor of it is closed, so a kill leaves nothing behind; elsewhere a file only its
//! owner can read, in a fresh temporary folder removed when this is dropped. A child may
//! also write it at that path, for this process to read back (`dissent qemu` has QEMU save
//! the device's memory into one).

use std::io;
use std::path::PathBuf;

/// Secret bytes a child process reads at [`MemoryFile::path`].
pub struct MemoryFile {
    inner: imp::Inner,
}

impl MemoryFile {
    /// A new file holding `bytes`; `name` names it for debugging.
    pub fn new(name: &str, bytes: &[u8]) -> io::Result<MemoryFile> {
        Ok(MemoryFile {
            inner: imp::Inner::new(name, bytes)?,
        })
    }

    /// The path a child started after this opens it at.
    pub fn path(&self) -> PathBuf {
        self.inner.path()
    }

    /// What the file holds now (a child may have written it at [`MemoryFile::path`]).
    pub fn contents(&self) -> io::Result<Vec<u8>> {
        self.inner.contents()
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::CString;
    use std::fs::File;
    use std::io::{self, Read, Seek, Write};
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::path::PathBuf;

    pub struct Inner {
        file: File,
    }

    impl Inner {
        pub fn new(name: &str, bytes: &[u8]) -> io::Result<Inner> {
            let cname = CString::new(name).map_err(io::Error::other)?;
            // SAFETY: a valid C string; no flags, so the descriptor stays open across exec
            // for the child to read.
            let fd = unsafe { libc::memfd_create(cname.as_ptr(), 0) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` was just created and is owned by nothing else.
            let mut file = unsafe { File::from_raw_fd(fd) };
            file.write_all(bytes)?;
            Ok(Inner { file })
        }

        pub fn path(&self) -> PathBuf {
            PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
        }

        pub fn contents(&self) -> io::Result<Vec<u8>> {
            let mut file = &self.file;
            file.seek(io::SeekFrom::Start(0))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok(bytes)
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io::{self, Write};
    use std::path::PathBuf;

    use super::super::private_files;

    pub struct Inner {
        path: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl Inner {
        pub fn new(name: &str, bytes: &[u8]) -> io::Result<Inner> {
            let dir = tempfile::Builder::new().prefix("dissent-").tempdir()?;
            let path = dir.path().join(name);
            private_files::create_private(&path)?.write_all(bytes)?;
            Ok(Inner { path, _dir: dir })
        }

        pub fn path(&self) -> PathBuf {
            self.path.clone()
        }

        pub fn contents(&self) -> io::Result<Vec<u8>> {
            std::fs::read(&self.path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_file_reads_back_at_its_path() {
        let m = MemoryFile::new("test", b"secret bytes").unwrap();
        assert_eq!(std::fs::read(m.path()).unwrap(), b"secret bytes");
    }

    #[test]
    fn what_a_child_writes_at_its_path_is_read_back() {
        let m = MemoryFile::new("test", b"before").unwrap();
        std::fs::write(m.path(), b"written after").unwrap();
        assert_eq!(m.contents().unwrap(), b"written after");
    }
}
