//! `guest-get-users`: who is logged in, from utmp as qemu-ga reads it
//! (`getutxent`): every `USER_PROCESS` record, one entry per user with
//! the earliest login time, in the order users first appear.

use guestward_sdk::{Reply, files, qga};
use serde_json::{Number, Value, json};

/// glibc's `_PATH_UTMP` (a link to `/run/utmp` on most systems).
const UTMP: &str = "/var/run/utmp";

/// `struct utmp` of glibc on 64-bit Linux (x86-64, arm64): 384 bytes.
const RECORD: usize = 384;
const TYPE: usize = 0;
const USER: std::ops::Range<usize> = 44..76;
const SECONDS: usize = 340;
const MICROSECONDS: usize = 344;
/// `ut_type` of a login session.
const USER_PROCESS: i16 = 7;

pub fn guest_users() -> Result<Value, Reply> {
    let utmp = match files::read(UTMP) {
        Ok(utmp) => utmp,
        // No utmp: nobody has logged in (qemu-ga answers `[]` too).
        Err(files::Error::NotFound(_)) => return Ok(json!([])),
        Err(error) => return Err(qga::generic_error(format!("cannot read {UTMP}: {}", error.text()))),
    };
    let users = logins(&utmp).map_err(|why| qga::generic_error(format!("{UTMP} is not a utmp file: {why}")))?;
    Ok(Value::Array(
        users
            .into_iter()
            .map(|(user, login_time)| json!({ "user": user, "login-time": seconds(login_time) }))
            .collect(),
    ))
}

/// Each logged-in user and the earliest login time (microseconds since
/// the epoch), in first-appearance order.
pub fn logins(utmp: &[u8]) -> Result<Vec<(String, i64)>, String> {
    if !utmp.len().is_multiple_of(RECORD) {
        return Err(format!(
            "{} bytes is not a whole number of {RECORD}-byte records",
            utmp.len()
        ));
    }
    let mut users: Vec<(String, i64)> = Vec::new();
    for record in utmp.chunks_exact(RECORD) {
        let int = |at: usize| i32::from_ne_bytes([record[at], record[at + 1], record[at + 2], record[at + 3]]);
        if i16::from_ne_bytes([record[TYPE], record[TYPE + 1]]) != USER_PROCESS {
            continue;
        }
        let name = &record[USER];
        let name = name.split(|&b| b == 0).next().unwrap_or(name);
        let user = String::from_utf8_lossy(name).into_owned();
        let login = i64::from(int(SECONDS)) * 1_000_000 + i64::from(int(MICROSECONDS));
        match users.iter_mut().find(|(known, _)| *known == user) {
            Some((_, earliest)) => *earliest = (*earliest).min(login),
            None => users.push((user, login)),
        }
    }
    Ok(users)
}

/// Seconds as qemu-ga writes a login time (a double): whole seconds
/// without a fraction, else the shortest decimal form.
fn seconds(microseconds: i64) -> Value {
    if microseconds % 1_000_000 == 0 {
        return json!(microseconds / 1_000_000);
    }
    // The same double qemu-ga computes: seconds + microseconds / 1e6.
    let whole = microseconds.div_euclid(1_000_000);
    let fraction = microseconds.rem_euclid(1_000_000);
    #[allow(clippy::cast_precision_loss)]
    let value = whole as f64 + fraction as f64 / 1e6;
    Number::from_f64(value).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A utmp record of `kind` for `user`, logged in at `seconds`.`micros`.
    pub fn record(kind: i16, user: &str, seconds: i32, micros: i32) -> Vec<u8> {
        let mut record = vec![0; RECORD];
        record[TYPE..TYPE + 2].copy_from_slice(&kind.to_ne_bytes());
        record[4..8].copy_from_slice(&1234_i32.to_ne_bytes());
        record[8..13].copy_from_slice(b"pts/0");
        record[USER.start..USER.start + user.len()].copy_from_slice(user.as_bytes());
        record[SECONDS..SECONDS + 4].copy_from_slice(&seconds.to_ne_bytes());
        record[MICROSECONDS..MICROSECONDS + 4].copy_from_slice(&micros.to_ne_bytes());
        record
    }

    #[test]
    fn one_entry_per_user_with_the_earliest_login() {
        // The records the research notes wrote with utmpdump (§4).
        let utmp = [
            record(7, "alice", 1_796_148_000, 123_456),
            record(7, "alice", 1_796_144_400, 500_000),
            record(7, "bob", 1_796_149_800, 0),
            record(8, "carol", 1_796_149_830, 0),
            record(2, "reboot", 1_796_140_000, 0),
            record(7, "dave", 1_796_149_860, 0),
        ]
        .concat();
        let users = logins(&utmp).unwrap();
        let answer: Vec<Value> = users
            .into_iter()
            .map(|(user, time)| json!({"user": user, "login-time": seconds(time)}))
            .collect();
        assert_eq!(
            crate::order::to_json(&Value::Array(answer)),
            r#"[{"login-time":1796144400.5,"user":"alice"},{"login-time":1796149800,"user":"bob"},{"login-time":1796149860,"user":"dave"}]"#
        );
    }

    #[test]
    fn login_times_print_as_qemu_ga_prints_them() {
        assert_eq!(seconds(1_796_148_000_123_456).to_string(), "1796148000.123456");
        assert_eq!(seconds(1_796_148_000_000_001).to_string(), "1796148000.000001");
        assert_eq!(seconds(1_796_148_000_000_000).to_string(), "1796148000");
        assert_eq!(seconds(-1_500_000).to_string(), "-1.5");
    }

    #[test]
    fn a_full_user_field_and_odd_bytes_are_kept_without_panicking() {
        let long = "u".repeat(32);
        let mut odd = record(7, "x", 0, 0);
        odd[USER].copy_from_slice(&[0xff; 32]);
        let users = logins(&[record(7, &long, 1, 0), odd].concat()).unwrap();
        assert_eq!(users[0].0, long);
        assert_eq!(users[1].0, "\u{fffd}".repeat(32));
    }

    #[test]
    fn a_truncated_file_is_an_error_and_garbage_is_skipped() {
        let utmp = record(7, "alice", 1, 0);
        for length in 1..RECORD {
            assert!(logins(&utmp[..length]).unwrap_err().contains("384-byte records"));
        }
        assert_eq!(logins(&[]).unwrap(), []);
        let garbage: Vec<u8> = (0..RECORD * 4).map(|i| u8::try_from(i * 37 % 251).unwrap()).collect();
        assert!(logins(&garbage).is_ok());
    }
}
