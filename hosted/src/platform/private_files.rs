//! Files only their owner may read: the private key files of a configuration and the
//! provisioning blobs of `dissent qemu`; creating them so, and refusing one that others
//! can read, as ssh refuses such a key.
//!
//! **Unix.** A private file is created with mode 0600 and a public one with 0644, set
//! exactly whatever the umask. A private file is refused when its group or others have
//! any permission bit; the message gives the `chmod` that fixes it.
//!
//! **Windows.** There are no mode bits: a file's access list (DACL) says who may do what.
//! A private file is given, before anything is written to it, a protected access list
//! (nothing inherited from its folder) with a single entry: full access for the current
//! user. A public file keeps the access list it inherits from its folder. As OpenSSH for
//! Windows does for keys, a private file is refused when an entry of its access list
//! allows anything more than reading its attributes or its access list to anyone other
//! than its owner, the current user, SYSTEM or the Administrators group, or when it has
//! no access list at all (which lets everyone in); the message names those it lets in by
//! SID and gives the `icacls` commands that fix it. Deny entries only take access away
//! and are not looked at. The decision ([`acl::judge`]) is plain code, tested on every
//! platform; reading the access list is the Windows security API's.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;

/// Creates a new file (failing if it exists) only its owner can read or write.
pub fn create_private(path: &Path) -> io::Result<File> {
    imp::create_private(path)
}

/// Creates a new file (failing if it exists) anyone may read and only its owner write.
pub fn create_public(path: &Path) -> io::Result<File> {
    imp::create_public(path)
}

/// Checks that the open file `file`, found at `path`, is readable by its owner only.
pub fn check_private(file: &File, path: &Path) -> Result<(), Refused> {
    imp::check_private(file, path)
}

/// Why a private file is refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum Refused {
    /// Its permissions could not be read.
    Unreadable(io::Error),
    /// Someone other than its owner may read or change it.
    TooOpen {
        /// Who may: `permissions 0644 are`, `access for S-1-5-11 is`.
        who: String,
        /// The command that makes the file private.
        fix: String,
    },
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Unreadable(e) => write!(f, "cannot read its permissions: {e}"),
            Refused::TooOpen { who, fix } => write!(
                f,
                "{who} too open: a private key file must be readable by its owner only; \
                 run: {fix}"
            ),
        }
    }
}

impl std::error::Error for Refused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Refused::Unreadable(e) => Some(e),
            Refused::TooOpen { .. } => None,
        }
    }
}

#[cfg(unix)]
mod imp {
    use std::fs::{self, File, OpenOptions};
    use std::io;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::path::Path;

    use super::Refused;

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
            fix: format!("chmod 600 {}", shell_word(&path.display().to_string())),
        })
    }

    /// `word` as one shell word: unchanged when plain, else in single quotes.
    pub(super) fn shell_word(word: &str) -> String {
        let plain = !word.is_empty()
            && word
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%=".contains(&b));
        if plain {
            word.to_string()
        } else {
            format!("'{}'", word.replace('\'', r"'\''"))
        }
    }
}

/// The Windows access-list check, as plain code over what the security API read.
#[cfg_attr(not(windows), allow(dead_code))]
mod acl {
    /// An entry of a file's access list that allows something.
    #[derive(Debug, Clone)]
    pub struct Grant {
        /// To whom.
        pub to: Trustee,
        /// Whether it allows more than reading the file's attributes or access list.
        pub reveals: bool,
        /// Whether it comes from the folder (and goes with `icacls /inheritance:r`).
        pub inherited: bool,
    }

    /// Whom an entry lets in.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Trustee {
        /// The owner, the current user, SYSTEM or the Administrators group.
        Trusted,
        /// Anyone else, by SID (`S-1-5-11`).
        Sid(String),
        /// An entry of a kind the check does not read (object or compound entries).
        Unknown,
    }

    /// Why a file is too open: whom it lets in, and the commands that fix it.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Verdict {
        pub who: String,
        pub fix: String,
    }

    /// Judges the access list `dacl` (`None`: the file has none) of the file at `path`
    /// for the user `user` (a SID); `None` when only trusted trustees may read it.
    pub fn judge(dacl: Option<&[Grant]>, path: &str, user: &str) -> Option<Verdict> {
        let reset = format!("icacls \"{path}\" /inheritance:r /grant:r *{user}:F");
        let Some(grants) = dacl else {
            return Some(Verdict {
                who: "no access list (which lets everyone in) is".to_string(),
                fix: reset,
            });
        };
        let mut sids: Vec<&str> = Vec::new();
        let mut explicit: Vec<&str> = Vec::new();
        let mut unknown = false;
        for g in grants.iter().filter(|g| g.reveals) {
            match &g.to {
                Trustee::Trusted => {}
                Trustee::Unknown => unknown = true,
                Trustee::Sid(sid) => {
                    if !sids.contains(&sid.as_str()) {
                        sids.push(sid);
                    }
                    if !g.inherited && !explicit.contains(&sid.as_str()) {
                        explicit.push(sid);
                    }
                }
            }
        }
        if sids.is_empty() && !unknown {
            return None;
        }
        let mut whom = sids.join(", ");
        if unknown {
            if !whom.is_empty() {
                whom.push_str(" and ");
            }
            whom.push_str("an entry of another kind");
        }
        let mut fix = reset;
        if !explicit.is_empty() {
            let listed: Vec<String> = explicit.iter().map(|s| format!("*{s}")).collect();
            fix.push_str(&format!(
                ", then: icacls \"{path}\" /remove:g {}",
                listed.join(" ")
            ));
        }
        Some(Verdict {
            who: format!("access for {whom} is"),
            fix,
        })
    }
}

#[cfg(windows)]
mod imp {
    use std::fs::{File, OpenOptions};
    use std::io;
    use std::mem::size_of;
    use std::os::windows::fs::OpenOptionsExt;
    use std::os::windows::io::AsRawHandle;
    use std::path::Path;
    use std::ptr::{addr_of, null, null_mut};

    use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, ERROR_SUCCESS, HANDLE};
    use windows_sys::Win32::Security::Authorization::{
        ConvertSidToStringSidW, GetSecurityInfo, SetSecurityInfo, SE_FILE_OBJECT,
    };
    use windows_sys::Win32::Security::{
        AclSizeInformation, AddAccessAllowedAce, EqualSid, GetAce, GetAclInformation, GetLengthSid,
        GetTokenInformation, InitializeAcl, IsWellKnownSid, TokenUser, WinBuiltinAdministratorsSid,
        WinCreatorOwnerRightsSid, WinLocalSystemSid, ACCESS_ALLOWED_ACE, ACE_HEADER, ACL,
        ACL_REVISION, ACL_SIZE_INFORMATION, DACL_SECURITY_INFORMATION, INHERITED_ACE,
        OWNER_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
        PSID, TOKEN_QUERY, TOKEN_USER,
    };
    use windows_sys::Win32::Storage::FileSystem::{
        FILE_ALL_ACCESS, FILE_GENERIC_WRITE, FILE_READ_ATTRIBUTES, READ_CONTROL, SYNCHRONIZE,
        WRITE_DAC,
    };
    use windows_sys::Win32::System::SystemServices::{
        ACCESS_ALLOWED_ACE_TYPE, ACCESS_ALLOWED_CALLBACK_ACE_TYPE,
        ACCESS_ALLOWED_CALLBACK_OBJECT_ACE_TYPE, ACCESS_ALLOWED_COMPOUND_ACE_TYPE,
        ACCESS_ALLOWED_OBJECT_ACE_TYPE,
    };
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    use super::acl::{self, Grant, Trustee};
    use super::Refused;

    /// Rights that reveal nothing of a file's contents and change nothing.
    const HARMLESS: u32 = FILE_READ_ATTRIBUTES | READ_CONTROL | SYNCHRONIZE;

    pub fn create_private(path: &Path) -> io::Result<File> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            // Writing the access list needs WRITE_DAC on the handle.
            .access_mode(FILE_GENERIC_WRITE | WRITE_DAC)
            .open(path)?;
        let user = CurrentUser::of_process()?;
        owner_only(&file, &user)?;
        Ok(file)
    }

    pub fn create_public(path: &Path) -> io::Result<File> {
        OpenOptions::new().write(true).create_new(true).open(path)
    }

    pub fn check_private(file: &File, path: &Path) -> Result<(), Refused> {
        let user = CurrentUser::of_process().map_err(Refused::Unreadable)?;
        let security = Security::of(file).map_err(Refused::Unreadable)?;
        let grants = security.grants(&user).map_err(Refused::Unreadable)?;
        let user_sid = sid_string(user.sid()).map_err(Refused::Unreadable)?;
        match acl::judge(grants.as_deref(), &path.display().to_string(), &user_sid) {
            None => Ok(()),
            Some(v) => Err(Refused::TooOpen {
                who: v.who,
                fix: v.fix,
            }),
        }
    }

    /// Replaces the access list of `file` with one entry: full access for `user`.
    fn owner_only(file: &File, user: &CurrentUser) -> io::Result<()> {
        let sid = user.sid();
        // SAFETY: `sid` is a valid SID owned by `user` for this call.
        let sid_len = unsafe { GetLengthSid(sid) } as usize;
        let acl_len =
            size_of::<ACL>() + size_of::<ACCESS_ALLOWED_ACE>() - size_of::<u32>() + sid_len;
        // An ACL is aligned to 4 bytes.
        let mut buf = vec![0u32; acl_len.div_ceil(4)];
        let acl = buf.as_mut_ptr().cast::<ACL>();
        let acl_len = u32::try_from(acl_len).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: `acl` points to `acl_len` writable bytes, enough for the header and
        // one entry for `sid` (computed as the API documents).
        unsafe {
            if InitializeAcl(acl, acl_len, ACL_REVISION) == 0
                || AddAccessAllowedAce(acl, ACL_REVISION, FILE_ALL_ACCESS, sid) == 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: the handle is open with WRITE_DAC; `acl` is a valid ACL alive for the
        // call; the owner, group and SACL are not changed (null).
        let rc = unsafe {
            SetSecurityInfo(
                file.as_raw_handle() as HANDLE,
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                null_mut(),
                null_mut(),
                acl,
                null(),
            )
        };
        win32(rc)
    }

    /// A Win32 error code as a result.
    fn win32(rc: u32) -> io::Result<()> {
        if rc == ERROR_SUCCESS {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc as i32))
        }
    }

    /// The token information of this process's user, which holds its SID.
    struct CurrentUser {
        /// A `TOKEN_USER` and the SID it points into, 8-byte aligned.
        buf: Vec<u64>,
    }

    impl CurrentUser {
        fn of_process() -> io::Result<CurrentUser> {
            let mut token: HANDLE = null_mut();
            // SAFETY: the pseudo-handle of this process needs no closing; `token` receives
            // a handle we close below.
            if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
                return Err(io::Error::last_os_error());
            }
            let mut len = 0u32;
            // SAFETY: a size query: no buffer, the needed length goes into `len`.
            unsafe { GetTokenInformation(token, TokenUser, null_mut(), 0, &mut len) };
            let mut buf = vec![0u64; (len as usize).div_ceil(8).max(1)];
            let capacity = u32::try_from(buf.len() * 8).unwrap_or(u32::MAX);
            // SAFETY: `buf` has `capacity` writable bytes, aligned for TOKEN_USER.
            let ok = unsafe {
                GetTokenInformation(
                    token,
                    TokenUser,
                    buf.as_mut_ptr().cast(),
                    capacity,
                    &mut len,
                )
            };
            let err = io::Error::last_os_error();
            // SAFETY: `token` was opened above and is closed once.
            unsafe { CloseHandle(token) };
            if ok == 0 {
                return Err(err);
            }
            Ok(CurrentUser { buf })
        }

        /// The user's SID, valid while `self` is.
        fn sid(&self) -> PSID {
            // SAFETY: GetTokenInformation filled `buf` with a TOKEN_USER whose SID points
            // into `buf` itself.
            unsafe { (*self.buf.as_ptr().cast::<TOKEN_USER>()).User.Sid }
        }
    }

    /// A file's owner and access list, in a security descriptor the system allocated.
    struct Security {
        descriptor: PSECURITY_DESCRIPTOR,
        owner: PSID,
        dacl: *mut ACL,
    }

    impl Security {
        fn of(file: &File) -> io::Result<Security> {
            let mut s = Security {
                descriptor: null_mut(),
                owner: null_mut(),
                dacl: null_mut(),
            };
            // SAFETY: the handle is open for reading (which includes READ_CONTROL); the
            // out-pointers are valid; the descriptor is freed in Drop.
            let rc = unsafe {
                GetSecurityInfo(
                    file.as_raw_handle() as HANDLE,
                    SE_FILE_OBJECT,
                    OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
                    &mut s.owner,
                    null_mut(),
                    &mut s.dacl,
                    null_mut(),
                    &mut s.descriptor,
                )
            };
            win32(rc)?;
            Ok(s)
        }

        /// The allowing entries of the access list; `None` if the file has none.
        fn grants(&self, user: &CurrentUser) -> io::Result<Option<Vec<Grant>>> {
            if self.dacl.is_null() {
                return Ok(None);
            }
            let mut info = ACL_SIZE_INFORMATION {
                AceCount: 0,
                AclBytesInUse: 0,
                AclBytesFree: 0,
            };
            // SAFETY: `dacl` points into our descriptor; `info` is the size asked for.
            let ok = unsafe {
                GetAclInformation(
                    self.dacl,
                    (&mut info as *mut ACL_SIZE_INFORMATION).cast(),
                    size_of::<ACL_SIZE_INFORMATION>() as u32,
                    AclSizeInformation,
                )
            };
            if ok == 0 {
                return Err(io::Error::last_os_error());
            }
            let mut grants = Vec::new();
            for i in 0..info.AceCount {
                let mut ace = null_mut();
                // SAFETY: `i` is below the entry count; `ace` receives a pointer into the ACL.
                if unsafe { GetAce(self.dacl, i, &mut ace) } == 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: every entry starts with an ACE_HEADER.
                let header = unsafe { &*ace.cast::<ACE_HEADER>() };
                let inherited = u32::from(header.AceFlags) & INHERITED_ACE != 0;
                let grant = match u32::from(header.AceType) {
                    ACCESS_ALLOWED_ACE_TYPE | ACCESS_ALLOWED_CALLBACK_ACE_TYPE => {
                        // Both are a header, a mask and the SID (callback data after it).
                        let entry = ace.cast::<ACCESS_ALLOWED_ACE>();
                        // SAFETY: the entry is of this layout; the SID starts at SidStart.
                        let (mask, sid) =
                            unsafe { ((*entry).Mask, addr_of!((*entry).SidStart) as PSID) };
                        Grant {
                            to: self.trustee(sid, user)?,
                            reveals: mask & !HARMLESS != 0,
                            inherited,
                        }
                    }
                    ACCESS_ALLOWED_OBJECT_ACE_TYPE
                    | ACCESS_ALLOWED_CALLBACK_OBJECT_ACE_TYPE
                    | ACCESS_ALLOWED_COMPOUND_ACE_TYPE => Grant {
                        to: Trustee::Unknown,
                        reveals: true,
                        inherited,
                    },
                    // Deny, audit and label entries let nobody in.
                    _ => continue,
                };
                grants.push(grant);
            }
            Ok(Some(grants))
        }

        /// Whom `sid` names: a trusted trustee, or another SID.
        fn trustee(&self, sid: PSID, user: &CurrentUser) -> io::Result<Trustee> {
            // SAFETY: all SIDs are valid for the call (ours, or inside the descriptor).
            let trusted = unsafe {
                (!self.owner.is_null() && EqualSid(sid, self.owner) != 0)
                    || EqualSid(sid, user.sid()) != 0
                    || IsWellKnownSid(sid, WinLocalSystemSid) != 0
                    || IsWellKnownSid(sid, WinBuiltinAdministratorsSid) != 0
                    || IsWellKnownSid(sid, WinCreatorOwnerRightsSid) != 0
            };
            if trusted {
                Ok(Trustee::Trusted)
            } else {
                Ok(Trustee::Sid(sid_string(sid)?))
            }
        }
    }

    impl Drop for Security {
        fn drop(&mut self) {
            // SAFETY: the descriptor was allocated by GetSecurityInfo and is freed once.
            unsafe { LocalFree(self.descriptor) };
        }
    }

    /// `sid` as text: `S-1-5-21-...`.
    fn sid_string(sid: PSID) -> io::Result<String> {
        let mut text = null_mut();
        // SAFETY: `sid` is valid; `text` receives a string we free below.
        if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the system wrote a NUL-terminated UTF-16 string at `text`.
        let s = unsafe {
            let len = (0..).take_while(|&i| *text.add(i) != 0).count();
            String::from_utf16_lossy(std::slice::from_raw_parts(text, len))
        };
        // SAFETY: allocated by ConvertSidToStringSidW, freed once.
        unsafe { LocalFree(text.cast()) };
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::acl::{judge, Grant, Trustee};
    use super::*;

    const USER: &str = "S-1-5-21-1-2-3-1001";

    fn grant(to: Trustee, reveals: bool, inherited: bool) -> Grant {
        Grant {
            to,
            reveals,
            inherited,
        }
    }

    fn sid(s: &str) -> Trustee {
        Trustee::Sid(s.to_string())
    }

    #[test]
    fn an_access_list_of_trusted_trustees_only_passes() {
        let grants = [
            grant(Trustee::Trusted, true, true),
            grant(Trustee::Trusted, true, false),
            // Others may read the attributes and the access list: nothing of the key.
            grant(sid("S-1-1-0"), false, true),
        ];
        assert_eq!(judge(Some(&grants), r"C:\dc\client-0.json", USER), None);
        assert_eq!(judge(Some(&[]), r"C:\dc\client-0.json", USER), None);
    }

    #[test]
    fn inherited_access_for_others_is_refused_with_the_icacls_fix() {
        let grants = [
            grant(Trustee::Trusted, true, true),
            grant(sid("S-1-5-32-545"), true, true),
            grant(sid("S-1-5-11"), true, true),
            grant(sid("S-1-5-32-545"), true, true),
        ];
        let v = judge(Some(&grants), r"C:\dc\client-0.json", USER).unwrap();
        assert_eq!(v.who, "access for S-1-5-32-545, S-1-5-11 is");
        assert_eq!(
            v.fix,
            format!(r#"icacls "C:\dc\client-0.json" /inheritance:r /grant:r *{USER}:F"#)
        );
    }

    #[test]
    fn explicit_access_for_others_is_removed_by_the_fix() {
        let grants = [
            grant(sid("S-1-1-0"), true, false),
            grant(sid("S-1-5-11"), true, true),
            grant(Trustee::Unknown, true, false),
        ];
        let v = judge(Some(&grants), r"C:\a b\x.json", USER).unwrap();
        assert_eq!(
            v.who,
            "access for S-1-1-0, S-1-5-11 and an entry of another kind is"
        );
        assert_eq!(
            v.fix,
            format!(
                r#"icacls "C:\a b\x.json" /inheritance:r /grant:r *{USER}:F, then: icacls "C:\a b\x.json" /remove:g *S-1-1-0"#
            )
        );
    }

    #[test]
    fn a_file_without_an_access_list_is_refused() {
        let v = judge(None, r"C:\x.json", USER).unwrap();
        assert!(v.who.starts_with("no access list"), "{}", v.who);
        assert!(v.fix.contains("/inheritance:r /grant:r"), "{}", v.fix);
    }

    #[test]
    fn a_refusal_says_who_and_how_to_fix_it() {
        let e = Refused::TooOpen {
            who: "permissions 0644 are".to_string(),
            fix: "chmod 600 /tmp/dc/relay.json".to_string(),
        };
        assert_eq!(
            e.to_string(),
            "permissions 0644 are too open: a private key file must be readable by its \
             owner only; run: chmod 600 /tmp/dc/relay.json"
        );
    }

    #[test]
    fn a_new_private_file_passes_and_a_public_one_does_not_need_to() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("key.json");
        drop(create_private(&private).unwrap());
        check_private(&File::open(&private).unwrap(), &private).unwrap();
        assert_eq!(
            create_private(&private).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        let public = dir.path().join("system.json");
        drop(create_public(&public).unwrap());
        assert_eq!(
            create_public(&public).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }

    #[cfg(unix)]
    mod unix {
        use super::super::imp::shell_word;
        use super::super::*;
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
        fn the_fix_quotes_paths_for_the_shell() {
            assert_eq!(shell_word("/tmp/a b/x.json"), "'/tmp/a b/x.json'");
            assert_eq!(shell_word("it's"), r"'it'\''s'");
            assert_eq!(shell_word("/tmp/dc/relay.json"), "/tmp/dc/relay.json");
        }
    }
}
