//! `user` and `group`: names resolved to ids once, when the run is
//! prepared, so that the child path only makes system calls.

use std::ffi::CString;

use nix::unistd::{Gid, Group, Uid, User, getgrouplist};

use super::LaunchError;
use crate::sys::spawn::Credentials;

/// The identity a process runs as, and what its environment says of it.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// Ids for the child path.
    pub credentials: Credentials,
    /// `USER`/`LOGNAME` and `HOME` from the passwd entry, when there is one.
    pub account: Option<(String, String)>,
}

fn fail(instance: &str, what: String) -> LaunchError {
    LaunchError::Identity {
        instance: instance.to_owned(),
        reason: what,
    }
}

/// Resolves a process's `user` and `group` (names or numbers).
pub(crate) fn resolve(
    instance: &str,
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Identity, LaunchError> {
    let passwd = match user {
        None => None,
        Some(text) => {
            let found = match text.parse::<u32>() {
                Ok(uid) => User::from_uid(Uid::from_raw(uid)),
                Err(_) => User::from_name(text),
            }
            .map_err(|errno| fail(instance, format!("look up user `{text}`: {errno}")))?;
            match (found, text.parse::<u32>()) {
                (Some(entry), _) => Some(Ok(entry)),
                // A bare uid without a passwd entry is allowed with `group`.
                (None, Ok(uid)) => Some(Err(uid)),
                (None, Err(_)) => return Err(fail(instance, format!("no user `{text}`"))),
            }
        }
    };
    let gid = match group {
        Some(text) => match text.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => Group::from_name(text)
                .map_err(|errno| fail(instance, format!("look up group `{text}`: {errno}")))?
                .ok_or_else(|| fail(instance, format!("no group `{text}`")))?
                .gid
                .as_raw(),
        },
        None => match &passwd {
            Some(Ok(entry)) => entry.gid.as_raw(),
            Some(Err(uid)) => {
                return Err(fail(
                    instance,
                    format!("uid {uid} has no passwd entry: set `group` too"),
                ));
            }
            None => unreachable!("resolve is called with a user or a group"),
        },
    };
    let (uid, groups, account) = match passwd {
        Some(Ok(entry)) => {
            let name = CString::new(entry.name.as_bytes())
                .map_err(|_| fail(instance, "user name with a NUL byte".into()))?;
            let groups = getgrouplist(&name, Gid::from_raw(gid)).map_err(|errno| {
                fail(
                    instance,
                    format!("list the groups of `{}`: {errno}", entry.name),
                )
            })?;
            (
                Some(entry.uid.as_raw()),
                Some(groups.into_iter().map(Gid::as_raw).collect()),
                Some((entry.name, entry.dir.to_string_lossy().into_owned())),
            )
        }
        // No passwd entry: no supplementary groups but the primary one.
        Some(Err(uid)) => (Some(uid), Some(vec![gid]), None),
        // Only `group`: keep the user and its supplementary groups.
        None => (None, None, None),
    };
    Ok(Identity {
        credentials: Credentials { uid, gid, groups },
        account,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_by_name_and_by_number() {
        for text in ["root", "0"] {
            let identity = resolve("p", Some(text), None).unwrap();
            assert_eq!(identity.credentials.uid, Some(0));
            assert_eq!(identity.credentials.gid, 0);
            assert!(identity.credentials.groups.as_ref().unwrap().contains(&0));
            assert_eq!(identity.account.as_ref().unwrap().0, "root");
        }
    }

    #[test]
    fn unknown_names_are_errors() {
        let error = resolve("p", Some("no-such-user-ipc-run"), None).unwrap_err();
        assert!(
            error.to_string().contains("no user `no-such-user-ipc-run`"),
            "{error}"
        );
        let error = resolve("p", None, Some("no-such-group-ipc-run")).unwrap_err();
        assert!(error.to_string().contains("no group"), "{error}");
    }

    #[test]
    fn a_bare_uid_needs_a_group() {
        let uid = "4000000001";
        assert!(resolve("p", Some(uid), None).is_err());
        let identity = resolve("p", Some(uid), Some("4000000002")).unwrap();
        assert_eq!(identity.credentials.uid, Some(4_000_000_001));
        assert_eq!(identity.credentials.groups, Some(vec![4_000_000_002]));
    }
}
