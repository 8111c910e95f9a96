//! crypt(3)-compatible password hashes, computed inside the component.
//!
//! The account keeps its scheme and its parameters: yescrypt `$y$` (and its
//! parameter string), SHA-512 `$6$` and SHA-256 `$5$` (with `rounds=` as
//! written), bcrypt `$2a$`/`$2b$`/`$2y$` (with its cost), MD5 `$1$`. The new
//! salt is random and as long as the old one. A locked, empty or non-`$`
//! hash gets the system's default scheme from `/etc/login.defs`; never MD5
//! or DES (legacy-agent.md §3.4.1 describes what the legacy agent did
//! instead: MD5 for all of those).

use md5::{Digest, Md5};

/// The crypt alphabet, in the order of its base-64 encoding.
const CRYPT_ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// libxcrypt's default yescrypt parameters (cost factor 5).
const YESCRYPT_DEFAULT_PARAMS: &str = "j9T";

/// A hash scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    Yescrypt { params: String },
    Sha512 { rounds: Option<u32> },
    Sha256 { rounds: Option<u32> },
    Bcrypt { variant: String, cost: u32 },
    Md5,
}

/// The scheme of an existing hash and the length of its salt, or `None`
/// when the hash names no usable scheme (locked, empty, DES, unknown).
pub fn existing_scheme(hash: &str) -> Option<(Scheme, usize)> {
    let fields: Vec<&str> = hash.split('$').collect();
    match fields.as_slice() {
        ["", "y", params, salt, _] if !params.is_empty() && !salt.is_empty() => Some((
            Scheme::Yescrypt {
                params: (*params).to_owned(),
            },
            salt.len(),
        )),
        ["", id @ ("6" | "5"), rest @ ..] => {
            let (rounds, salt) = match rest {
                [rounds, salt, _] => (Some(rounds.strip_prefix("rounds=")?.parse().ok()?), *salt),
                [salt, _] => (None, *salt),
                _ => return None,
            };
            let scheme = if *id == "6" {
                Scheme::Sha512 { rounds }
            } else {
                Scheme::Sha256 { rounds }
            };
            Some((scheme, salt.len()))
        }
        ["", variant @ ("2a" | "2b" | "2y"), cost, salt_and_hash] if salt_and_hash.len() >= 22 => Some((
            Scheme::Bcrypt {
                variant: (*variant).to_owned(),
                cost: cost.parse().ok()?,
            },
            22,
        )),
        ["", "1", salt, _] => Some((Scheme::Md5, salt.len())),
        _ => None,
    }
}

/// The system's default scheme, from the text of `/etc/login.defs`:
/// `ENCRYPT_METHOD` YESCRYPT (with `YESCRYPT_COST_FACTOR`), SHA512 or
/// SHA256 (with `SHA_CRYPT_MAX_ROUNDS`, else `SHA_CRYPT_MIN_ROUNDS`), BCRYPT
/// (with `BCRYPT_MAX_ROUNDS`, else `BCRYPT_MIN_ROUNDS`). Anything else (MD5,
/// DES, missing) is SHA-512: never a weak scheme.
pub fn default_scheme(login_defs: Option<&str>) -> Scheme {
    let setting = |key: &str| -> Option<String> {
        login_defs?.lines().rev().find_map(|line| {
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            (words.next() == Some(key))
                .then(|| words.next().map(str::to_owned))
                .flatten()
        })
    };
    let number = |key: &str| setting(key).and_then(|value| value.parse::<u32>().ok());
    match setting("ENCRYPT_METHOD")
        .map(|method| method.to_ascii_uppercase())
        .as_deref()
    {
        Some("YESCRYPT") => Scheme::Yescrypt {
            params: number("YESCRYPT_COST_FACTOR")
                .and_then(yescrypt_params_for_cost)
                .unwrap_or_else(|| YESCRYPT_DEFAULT_PARAMS.to_owned()),
        },
        Some("SHA256") => Scheme::Sha256 {
            rounds: number("SHA_CRYPT_MAX_ROUNDS").or_else(|| number("SHA_CRYPT_MIN_ROUNDS")),
        },
        Some("BCRYPT") => Scheme::Bcrypt {
            variant: "2b".to_owned(),
            cost: number("BCRYPT_MAX_ROUNDS")
                .or_else(|| number("BCRYPT_MIN_ROUNDS"))
                .unwrap_or(12)
                .clamp(4, 31),
        },
        _ => Scheme::Sha512 {
            rounds: number("SHA_CRYPT_MAX_ROUNDS").or_else(|| number("SHA_CRYPT_MIN_ROUNDS")),
        },
    }
}

/// libxcrypt's yescrypt parameters for a cost factor (1–11): N = 2^(cost+7),
/// r = 32, p = 1 (cost 5 is its default, `j9T`).
fn yescrypt_params_for_cost(cost: u32) -> Option<String> {
    if !(1..=11).contains(&cost) {
        return None;
    }
    let params = yescrypt::Params::new(yescrypt::Mode::default(), 1 << (cost + 7), 32, 1).ok()?;
    Some(params.to_string())
}

/// Hash `password` with `scheme`, a new random salt of `salt_len`
/// characters (or the scheme's usual length), and the scheme's parameters
/// as given.
pub fn hash_password(
    password: &[u8],
    scheme: &Scheme,
    salt_len: Option<usize>,
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<String, String> {
    match scheme {
        Scheme::Yescrypt { params } => yescrypt_hash(password, params, salt_len.unwrap_or(22), random),
        Scheme::Sha512 { rounds } => sha_crypt_hash(password, "6", *rounds, salt_len, random),
        Scheme::Sha256 { rounds } => sha_crypt_hash(password, "5", *rounds, salt_len, random),
        Scheme::Bcrypt { variant, cost } => {
            let mut salt = [0u8; 16];
            random(&mut salt);
            let version = match variant.as_str() {
                "2a" => bcrypt::Version::TwoA,
                "2y" => bcrypt::Version::TwoY,
                _ => bcrypt::Version::TwoB,
            };
            // Like libxcrypt, bcrypt uses the first 72 bytes of a password.
            let parts = bcrypt::hash_with_salt(password, *cost, salt).map_err(|error| error.to_string())?;
            Ok(parts.format_for_version(version))
        }
        Scheme::Md5 => {
            let salt = crypt_salt(salt_len.unwrap_or(8).clamp(1, 8), random);
            Ok(format!("$1${salt}${}", md5_crypt(password, salt.as_bytes())))
        }
    }
}

/// SHA-512 (`id` 6) or SHA-256 (`id` 5) crypt, with `rounds=` written back
/// exactly when it was given.
fn sha_crypt_hash(
    password: &[u8],
    id: &str,
    rounds: Option<u32>,
    salt_len: Option<usize>,
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<String, String> {
    let salt = crypt_salt(salt_len.unwrap_or(16).clamp(1, 16), random);
    let count = rounds.unwrap_or(5000) as usize;
    let hash = if id == "6" {
        sha_crypt::Sha512Params::new(count)
            .and_then(|params| sha_crypt::sha512_crypt_b64(password, salt.as_bytes(), &params))
    } else {
        sha_crypt::Sha256Params::new(count)
            .and_then(|params| sha_crypt::sha256_crypt_b64(password, salt.as_bytes(), &params))
    }
    .map_err(|error| format!("{error:?}"))?;
    let rounds = rounds.map(|rounds| format!("rounds={rounds}$")).unwrap_or_default();
    Ok(format!("${id}${rounds}{salt}${hash}"))
}

/// `len` random characters of the crypt alphabet (uniform: 256 is a
/// multiple of 64).
fn crypt_salt(len: usize, random: &mut dyn FnMut(&mut [u8])) -> String {
    let mut bytes = vec![0u8; len];
    random(&mut bytes);
    bytes
        .iter()
        .map(|byte| CRYPT_ALPHABET[usize::from(byte % 64)] as char)
        .collect()
}

fn yescrypt_hash(
    password: &[u8],
    params: &str,
    salt_chars: usize,
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<String, String> {
    use yescrypt::CustomizedPasswordHasher;
    let params: yescrypt::Params = params
        .parse()
        .map_err(|error| format!("yescrypt parameters {params:?}: {error}"))?;
    // The salt field encodes bytes six bits to a character.
    let mut salt = vec![0u8; (salt_chars * 6 / 8).clamp(8, 64)];
    random(&mut salt);
    yescrypt::Yescrypt::from(params)
        .hash_password_customized(password, &salt, None, None, params)
        .map(|hash| hash.as_str().to_owned())
        .map_err(|error| format!("yescrypt: {error}"))
}

/// The FreeBSD/Linux MD5-crypt algorithm (`$1$`), for accounts that still
/// use it; salts are at most 8 characters.
fn md5_crypt(password: &[u8], salt: &[u8]) -> String {
    const MAGIC: &[u8] = b"$1$";
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut context = Md5::new().chain_update(password).chain_update(MAGIC).chain_update(salt);
    let mut remaining = password.len();
    while remaining > 0 {
        let take = remaining.min(16);
        context.update(&alternate[..take]);
        remaining -= take;
    }
    let mut length = password.len();
    while length > 0 {
        context.update(if length & 1 == 1 { &[0u8][..] } else { &password[..1] });
        length >>= 1;
    }
    let mut digest = context.finalize();
    for round in 0..1000 {
        let mut step = Md5::new();
        if round & 1 == 1 {
            step.update(password)
        } else {
            step.update(digest)
        }
        if round % 3 != 0 {
            step.update(salt);
        }
        if round % 7 != 0 {
            step.update(password);
        }
        if round & 1 == 1 {
            step.update(digest)
        } else {
            step.update(password)
        }
        digest = step.finalize();
    }
    let groups = [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)];
    let mut out = String::with_capacity(22);
    for (a, b, c) in groups {
        push_crypt64(
            &mut out,
            (u32::from(digest[a]) << 16) | (u32::from(digest[b]) << 8) | u32::from(digest[c]),
            4,
        );
    }
    push_crypt64(&mut out, u32::from(digest[11]), 2);
    out
}

fn push_crypt64(out: &mut String, mut value: u32, count: usize) {
    for _ in 0..count {
        out.push(CRYPT_ALPHABET[(value & 0x3f) as usize] as char);
        value >>= 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// crypt(3) of libxcrypt, through Debian's Python: does it verify?
    fn libxcrypt_verifies(password: &str, hash: &str) -> bool {
        std::process::Command::new("/usr/bin/python3")
            .args([
                "-W",
                "ignore",
                "-c",
                "import crypt,sys; sys.exit(0 if crypt.crypt(sys.argv[1], sys.argv[2]) == sys.argv[2] else 1)",
            ])
            .args([password, hash])
            .status()
            .expect("Debian's /usr/bin/python3")
            .success()
    }

    fn counting_random() -> impl FnMut(&mut [u8]) {
        let mut next = 0u8;
        move |buffer: &mut [u8]| {
            for byte in buffer {
                *byte = next;
                next = next.wrapping_add(1);
            }
        }
    }

    #[test]
    fn the_legacy_crypt_vectors_hold() {
        // legacy-agent.md §8.2: salt "abcdefgh", password "S3cret!".
        let params = sha_crypt::Sha512Params::new(5000).unwrap();
        assert_eq!(
            format!(
                "$6$abcdefgh${}",
                sha_crypt::sha512_crypt_b64(b"S3cret!", b"abcdefgh", &params).unwrap()
            ),
            "$6$abcdefgh$N0v5eprOrPGdoyXDOIoz40jJlrUYMDTy0uqSaoQwOFKjmFmYIlNmQB45TrJBBlT7RMSBAajgBTfLbWof6NGji."
        );
        assert_eq!(
            format!("$1$abcdefgh${}", md5_crypt(b"S3cret!", b"abcdefgh")),
            "$1$abcdefgh$DM4eXpMifQyxoCZ9V1u3w0"
        );
    }

    #[test]
    fn every_scheme_verifies_with_libxcrypt_and_keeps_its_parameters() {
        let cases = [
            ("$y$j9T$abcdefghijklmnopqrstu.$x", "$y$j9T$"),
            ("$6$rounds=10000$abcdefghijklmnop$x", "$6$rounds=10000$"),
            ("$6$saltsalt$x", "$6$"),
            ("$5$rounds=6000$abcdefghijk$x", "$5$rounds=6000$"),
            (
                "$2b$05$abcdefghijklmnopqrstuuXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
                "$2b$05$",
            ),
            (
                "$2y$04$abcdefghijklmnopqrstuuXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
                "$2y$04$",
            ),
            (
                "$2a$04$abcdefghijklmnopqrstuuXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
                "$2a$04$",
            ),
            ("$1$abcd$x", "$1$"),
        ];
        let mut random = counting_random();
        for (old, prefix) in cases {
            let (scheme, salt_len) = existing_scheme(old).unwrap_or_else(|| panic!("{old}"));
            let hash = hash_password("pass wörd".as_bytes(), &scheme, Some(salt_len), &mut random).unwrap();
            assert!(hash.starts_with(prefix), "{old} → {hash}");
            assert_eq!(
                existing_scheme(&hash).map(|(_, len)| len),
                Some(salt_len),
                "same salt length: {hash}"
            );
            assert!(libxcrypt_verifies("pass wörd", &hash), "{hash}");
            assert!(!libxcrypt_verifies("other", &hash), "{hash}");
        }
    }

    #[test]
    fn salts_are_random_each_time() {
        let mut random = |buffer: &mut [u8]| getrandom::fill(buffer).unwrap();
        let scheme = Scheme::Sha512 { rounds: None };
        let first = hash_password(b"pw", &scheme, Some(16), &mut random).unwrap();
        let second = hash_password(b"pw", &scheme, Some(16), &mut random).unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn unusable_hashes_name_no_scheme() {
        for hash in [
            "",
            "!",
            "!!",
            "*",
            "x",
            "!$6$salt$hash",
            "abJnggxhB/yWI",
            "$3$abc",
            "$6$",
        ] {
            assert_eq!(existing_scheme(hash), None, "{hash:?}");
        }
    }

    #[test]
    fn the_default_scheme_comes_from_login_defs_and_is_never_weak() {
        let debian12 = "# /etc/login.defs\nUMASK 022\nENCRYPT_METHOD YESCRYPT\n";
        assert_eq!(
            default_scheme(Some(debian12)),
            Scheme::Yescrypt { params: "j9T".into() }
        );
        assert_eq!(
            default_scheme(Some(
                "ENCRYPT_METHOD SHA512\nSHA_CRYPT_MIN_ROUNDS 5000\nSHA_CRYPT_MAX_ROUNDS 20000 # more\n"
            )),
            Scheme::Sha512 { rounds: Some(20000) }
        );
        assert_eq!(
            default_scheme(Some("ENCRYPT_METHOD sha256\n")),
            Scheme::Sha256 { rounds: None }
        );
        assert_eq!(
            default_scheme(Some("ENCRYPT_METHOD BCRYPT\nBCRYPT_MIN_ROUNDS 10\n")),
            Scheme::Bcrypt {
                variant: "2b".into(),
                cost: 10
            }
        );
        for weak in [
            "ENCRYPT_METHOD MD5\n",
            "ENCRYPT_METHOD DES\n",
            "#ENCRYPT_METHOD YESCRYPT\n",
            "",
        ] {
            assert_eq!(default_scheme(Some(weak)), Scheme::Sha512 { rounds: None }, "{weak:?}");
        }
        assert_eq!(default_scheme(None), Scheme::Sha512 { rounds: None });
    }

    #[test]
    fn yescrypt_cost_factors_map_as_libxcrypt_does() {
        assert_eq!(yescrypt_params_for_cost(5).as_deref(), Some("j9T"));
        let hash = hash_password(
            b"pw",
            &default_scheme(Some("ENCRYPT_METHOD YESCRYPT\nYESCRYPT_COST_FACTOR 4\n")),
            None,
            &mut counting_random(),
        )
        .unwrap();
        assert!(libxcrypt_verifies("pw", &hash), "{hash}");
    }
}
