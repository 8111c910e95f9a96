//! An account's ids and home directory, from `/etc/passwd` as `getpwnam(3)`
//! finds them in the files database.

use guestward_sdk::files;

pub const PASSWD: &str = "/etc/passwd";

/// What the keys of one account need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The home directory, without a trailing `/`.
    pub home: String,
}

impl Account {
    pub fn owner(&self) -> files::Owner {
        files::Owner {
            uid: self.uid,
            gid: self.gid,
        }
    }

    pub fn ssh_dir(&self) -> String {
        format!("{}/.ssh", self.home)
    }

    pub fn authorized_keys(&self) -> String {
        format!("{}/.ssh/authorized_keys", self.home)
    }
}

/// The account `name`, or qemu-ga's words when there is none (its
/// `strerror(errno)` is "Success": getpwnam finds nothing without error).
pub fn lookup(name: &str) -> Result<Account, String> {
    let failed = |why: &str| {
        format!(
            "failed to lookup user '{}': {why}",
            guestward_sdk::excerpt(name, guestward_sdk::EXCERPT_CHARS)
        )
    };
    let passwd = files::read(PASSWD).map_err(|error| failed(error.text()))?;
    find(&String::from_utf8_lossy(&passwd), name).ok_or_else(|| failed("Success"))
}

/// The first well-formed line of `name` in the text of `/etc/passwd`.
/// NIS markers (`+`, `-`) and comments are nobody's; a line without
/// numeric ids or with a relative home is not used.
pub fn find(passwd: &str, name: &str) -> Option<Account> {
    if name.is_empty() || name.starts_with(['+', '-']) {
        return None;
    }
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let [user, _, uid, gid, _, home, ..] = fields.as_slice() else {
            return None;
        };
        if *user != name || !home.starts_with('/') {
            return None;
        }
        let home = home.trim_end_matches('/');
        Some(Account {
            name: name.to_owned(),
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
            home: home.to_owned(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "# users\nroot:x:0:0:root:/root:/bin/bash\n+nis::::::\nalice:x:1000:1001:Alice:/home/alice/:/bin/sh\nbroken:x:a:b::/home/b:/bin/sh\nrel:x:5:5::home/rel:/bin/sh\nslash:x:6:6::/:/bin/sh\n";

    #[test]
    fn accounts_are_found_by_exact_name() {
        assert_eq!(
            find(PASSWD_TEXT, "alice"),
            Some(Account {
                name: "alice".into(),
                uid: 1000,
                gid: 1001,
                home: "/home/alice".into()
            })
        );
        assert_eq!(
            find(PASSWD_TEXT, "root").map(|a| a.authorized_keys()).as_deref(),
            Some("/root/.ssh/authorized_keys")
        );
        for absent in ["ali", "alice:x", "+nis", "broken", "rel", "", "# users"] {
            assert_eq!(find(PASSWD_TEXT, absent), None, "{absent:?}");
        }
        // A home of `/` keeps its keys in /.ssh (outside every grant).
        assert_eq!(
            find(PASSWD_TEXT, "slash").map(|a| a.ssh_dir()).as_deref(),
            Some("/.ssh")
        );
    }
}
