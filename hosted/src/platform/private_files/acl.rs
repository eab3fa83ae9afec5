//! The Windows access-list check, as plain code over what the security API read, so it
//! is tested on every platform.

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

#[cfg(test)]
mod tests {
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
}
