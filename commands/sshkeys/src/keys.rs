//! The text of `authorized_keys`, as qemu-ga reads and rewrites it: no I/O
//! here.
//!
//! qemu-ga splits the file at `\n` and compares whole lines byte for byte:
//! a key is present when a line is exactly it. `get` lists the lines that
//! are neither blank nor comments, stripped, last line first; `add` appends
//! the keys not present (joined with `\n`, no newline added at the end);
//! `remove` drops the lines equal to a key and keeps every other byte.

/// The longest `authorized_keys` this reads or writes (about 350 RSA-4096
/// keys): its keys always fit in one answer.
pub const MAX_FILE_BYTES: usize = 256 << 10;

/// Why a key is refused, in qemu-ga's words (the key quoted as sent).
pub fn check_key(key: &str) -> Result<(), String> {
    // qemu-ga refuses a comment and a newline; a NUL would cut the key
    // short in qemu-ga's C string and in sshd's line reader alike.
    if key.starts_with('#') || key.contains(['\n', '\0']) {
        return Err(format!(
            "invalid OpenSSH public key: '{}'",
            guestward_sdk::excerpt(key, guestward_sdk::EXCERPT_CHARS)
        ));
    }
    Ok(())
}

/// The file's lines; an empty file has none (glib's `g_strsplit`).
fn lines(contents: &str) -> Vec<&str> {
    if contents.is_empty() {
        Vec::new()
    } else {
        contents.split('\n').collect()
    }
}

/// The keys `get` answers: each line stripped of surrounding whitespace,
/// blank lines and comments left out, in reverse file order (as qemu-ga
/// answers them).
pub fn listed(contents: &str) -> Vec<String> {
    lines(contents)
        .into_iter()
        .rev()
        .map(|line| line.trim_matches(|c: char| c.is_ascii_whitespace()))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// `contents` (nothing, with `reset`) with each of `keys` appended unless a
/// line already is that key; `None` when nothing changes.
pub fn added(contents: &str, keys: &[String], reset: bool) -> Option<String> {
    let mut lines: Vec<&str> = if reset { Vec::new() } else { lines(contents) };
    let before = lines.len();
    for key in keys {
        if !lines.contains(&key.as_str()) {
            lines.push(key);
        }
    }
    (reset || lines.len() > before).then(|| lines.join("\n"))
}

/// `contents` without the lines equal to one of `keys`; `None` when no
/// line is.
pub fn removed(contents: &str, keys: &[String]) -> Option<String> {
    let all = lines(contents);
    let kept: Vec<&str> = all
        .iter()
        .copied()
        .filter(|line| !keys.iter().any(|key| key == line))
        .collect();
    (kept.len() < all.len()).then(|| kept.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# a comment\n\nK1\n   \nK2 \n#x\n";

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|key| (*key).to_owned()).collect()
    }

    #[test]
    fn listed_keys_are_stripped_without_comments_last_first() {
        assert_eq!(listed(FILE), ["K2", "K1"]);
        assert_eq!(listed(""), Vec::<String>::new());
        assert_eq!(listed("\t K \r\n"), ["K"]);
    }

    #[test]
    fn keys_are_appended_once_without_a_final_newline() {
        assert_eq!(added("", &keys(&["K1", "K2"]), false).as_deref(), Some("K1\nK2"));
        assert_eq!(
            added("K1\nK2", &keys(&["K1", "K3", "K3"]), false).as_deref(),
            Some("K1\nK2\nK3")
        );
        // A file ending in a newline gets an empty line first, as qemu-ga writes it.
        assert_eq!(added("#x\n", &keys(&["N"]), false).as_deref(), Some("#x\n\nN"));
        // Whole lines compare exactly: trailing blanks make another key.
        assert_eq!(added("K2 ", &keys(&["K2"]), false).as_deref(), Some("K2 \nK2"));
        assert_eq!(added(FILE, &keys(&["K1"]), false), None, "nothing new");
        assert_eq!(added(FILE, &[], false), None);
    }

    #[test]
    fn reset_replaces_everything() {
        assert_eq!(added(FILE, &keys(&["A", "A", "B"]), true).as_deref(), Some("A\nB"));
        assert_eq!(added(FILE, &[], true).as_deref(), Some(""));
    }

    #[test]
    fn removal_keeps_every_other_byte() {
        assert_eq!(
            removed(FILE, &keys(&["K1"])).as_deref(),
            Some("# a comment\n\n   \nK2 \n#x\n")
        );
        assert_eq!(
            removed(FILE, &keys(&["K2", "garbage"])),
            None,
            "K2 has a trailing blank"
        );
        assert_eq!(removed("K\nK\nL", &keys(&["K"])).as_deref(), Some("L"));
        assert_eq!(removed("", &keys(&["K"])), None);
    }

    #[test]
    fn comments_newlines_and_nuls_are_not_keys() {
        for bad in ["# comment", "#x", "ssh-ed25519 AAAA k1\nssh-rsa AAAA", "a\0b"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_key("# c").unwrap_err(), "invalid OpenSSH public key: '# c'");
        for odd_but_accepted in ["", "not a key", "ssh-rsa", "command=\"x\" ssh-ed25519 AAAA"] {
            assert!(check_key(odd_but_accepted).is_ok(), "{odd_but_accepted:?}");
        }
    }
}
