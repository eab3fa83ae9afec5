//! A connected pair of local stream sockets, one end for a child process to inherit at a
//! descriptor number it is told on its command line (QEMU's `-chardev socket,fd=N`), the
//! other this process's: a private channel to the child that no other process can reach
//! (no path on a disk, no port). Unix only; elsewhere [`ChildSocket::new`] says so.

use std::io;

/// This process's end once the child is started (a tokio stream).
pub use imp::Stream;

/// A socket pair: the child's end until the child is started, then this process's.
pub struct ChildSocket {
    inner: imp::Inner,
}

impl ChildSocket {
    /// A new pair; the child's end stays open across `exec` until [`ChildSocket::started`].
    pub fn new() -> io::Result<ChildSocket> {
        Ok(ChildSocket {
            inner: imp::Inner::new()?,
        })
    }

    /// The descriptor number the child's end has in a child started now.
    pub fn child_fd(&self) -> i64 {
        self.inner.child_fd()
    }

    /// Once the child is started: closes this process's copy of the child's end (so that
    /// this end sees the child go) and returns this end, for the tokio runtime.
    pub fn started(self) -> io::Result<Stream> {
        self.inner.started()
    }
}

#[cfg(unix)]
mod imp {
    use std::io;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    pub type Stream = tokio::net::UnixStream;

    pub struct Inner {
        ours: UnixStream,
        theirs: UnixStream,
    }

    impl Inner {
        pub fn new() -> io::Result<Inner> {
            // Both ends are close-on-exec; the child's is made inheritable.
            let (ours, theirs) = UnixStream::pair()?;
            // SAFETY: F_SETFD on a descriptor this process owns; clearing FD_CLOEXEC only.
            if unsafe { libc::fcntl(theirs.as_raw_fd(), libc::F_SETFD, 0) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Inner { ours, theirs })
        }

        pub fn child_fd(&self) -> i64 {
            i64::from(self.theirs.as_raw_fd())
        }

        pub fn started(self) -> io::Result<Stream> {
            drop(self.theirs);
            self.ours.set_nonblocking(true)?;
            tokio::net::UnixStream::from_std(self.ours)
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use std::io;

    /// Never made: no child socket here.
    pub type Stream = tokio::io::DuplexStream;

    pub enum Inner {}

    impl Inner {
        pub fn new() -> io::Result<Inner> {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a socket a child inherits needs Unix",
            ))
        }

        pub fn child_fd(&self) -> i64 {
            match *self {}
        }

        pub fn started(self) -> io::Result<Stream> {
            match self {}
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_ends_are_connected_and_only_the_childs_is_inherited() {
        let pair = ChildSocket::new().unwrap();
        let fd = pair.child_fd() as i32;
        // SAFETY: F_GETFD on a descriptor the pair holds open.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, 0, "the child's end is inherited");
        // The child's end, as a child would use it.
        // SAFETY: duplicating a descriptor the pair holds open.
        let dup = unsafe { libc::dup(fd) };
        assert!(dup >= 0);
        // SAFETY: `dup` is a fresh descriptor owned by nothing else.
        let child =
            unsafe { <std::os::unix::net::UnixStream as std::os::fd::FromRawFd>::from_raw_fd(dup) };
        child.set_nonblocking(true).unwrap();
        let mut child = tokio::net::UnixStream::from_std(child).unwrap();
        let mut ours = pair.started().unwrap();
        ours.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        child.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        drop(child);
        // The child gone (no other copy of its end), this end reads the end of the stream.
        assert_eq!(ours.read(&mut got).await.unwrap(), 0);
    }
}
