//! Private files on Windows: a protected access list granting only the current user, and
//! the check of a file's access list through the Windows security API (the decision is
//! [`super::acl::judge`]).

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
    WinCreatorOwnerRightsSid, WinLocalSystemSid, ACCESS_ALLOWED_ACE, ACE_HEADER, ACL, ACL_REVISION,
    ACL_SIZE_INFORMATION, DACL_SECURITY_INFORMATION, INHERITED_ACE, OWNER_SECURITY_INFORMATION,
    PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::Storage::FileSystem::{
    FILE_ALL_ACCESS, FILE_GENERIC_WRITE, FILE_READ_ATTRIBUTES, READ_CONTROL, SYNCHRONIZE, WRITE_DAC,
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

/// Windows has no one command for several files: each file's own fix is given.
pub fn fix_all(_paths: &[&Path]) -> Option<String> {
    None
}

pub fn check_private(file: &File, path: &Path) -> Result<(), Refused> {
    let user = CurrentUser::of_process().map_err(Refused::Unreadable)?;
    let security = Security::of(file).map_err(Refused::Unreadable)?;
    let grants = security.grants(&user).map_err(Refused::Unreadable)?;
    let user_sid = sid_string(user.sid()).map_err(Refused::Unreadable)?;
    match acl::judge(grants.as_deref(), &path.display().to_string(), &user_sid) {
        None => Ok(()),
        Some(v) => Err(Refused::TooOpen {
            label: v.who.trim_end_matches(" is").to_string(),
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
    let acl_len = size_of::<ACL>() + size_of::<ACCESS_ALLOWED_ACE>() - size_of::<u32>() + sid_len;
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
