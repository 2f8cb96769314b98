//! `user` and `group`: names resolved to ids once, when the run is
//! prepared, so that the child path only makes system calls.
//!
//! A reload resolves the identities of the processes it changes on the
//! supervisor's event loop: NSS look-ups (`getpwnam`, `getgrouplist`),
//! which take microseconds from `/etc/passwd` but a round trip each from a
//! directory service (LDAP, sssd without its cache). [`Resolver`] looks
//! each distinct `user`/`group` pair up once per reload, so a reload of a
//! thousand replicas of one service user costs one look-up, not a
//! thousand.

use std::collections::HashMap;
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

/// [`resolve`] for many processes at once, each distinct pair of `user`
/// and `group` looked up once (module docs). Failures are not kept: the
/// first one ends the caller's work, and names its own instance.
#[derive(Debug, Default)]
pub(crate) struct Resolver {
    known: HashMap<(Option<String>, Option<String>), Identity>,
}

impl Resolver {
    /// [`resolve`], or what an earlier call with the same pair found.
    pub(crate) fn resolve(
        &mut self,
        instance: &str,
        user: Option<&str>,
        group: Option<&str>,
    ) -> Result<Identity, LaunchError> {
        let key = (user.map(str::to_owned), group.map(str::to_owned));
        if let Some(identity) = self.known.get(&key) {
            return Ok(identity.clone());
        }
        let identity = resolve(instance, user, group)?;
        self.known.insert(key, identity.clone());
        Ok(identity)
    }

    /// Distinct pairs looked up so far.
    #[cfg(test)]
    fn looked_up(&self) -> usize {
        self.known.len()
    }
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
    fn a_resolver_looks_each_pair_up_once() {
        let mut resolver = Resolver::default();
        for instance in ["a", "b", "c"] {
            let identity = resolver.resolve(instance, Some("root"), None).unwrap();
            assert_eq!(identity.credentials.uid, Some(0));
        }
        let other = resolver.resolve("d", Some("root"), Some("0")).unwrap();
        assert_eq!(other.credentials.gid, 0);
        assert_eq!(resolver.looked_up(), 2);
        let error = resolver
            .resolve("e", Some("no-such-user-ipc-run"), None)
            .unwrap_err();
        assert!(error.to_string().contains("no user"), "{error}");
        assert_eq!(resolver.looked_up(), 2);
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
