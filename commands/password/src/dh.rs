//! The Diffie-Hellman exchange of the Nova agent protocol
//! (legacy-agent.md §3.3): p = 2^107 − 1, g = 5, the agent's private key 16
//! random bytes, and the AES key derived from the decimal shared secret
//! with OpenSSL's `EVP_BytesToKey` (MD5, no salt, one round), as
//! `openssl enc -md md5 -nosalt -pass pass:<secret>` does on the host side.

use md5::{Digest, Md5};
use num_bigint::{BigInt, BigUint, Sign};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The generator.
pub const GENERATOR: u32 = 5;

/// The prime modulus, 2^107 − 1 (the Mersenne prime M107).
pub fn prime() -> BigUint {
    (BigUint::from(1u8) << 107u32) - 1u8
}

/// The agent's private exponent. Shown as `PrivateKey(<redacted>)`.
pub struct PrivateKey(BigUint);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// The private key whose big-endian bytes are `bytes`, as the legacy agent
/// read 16 bytes of `/dev/urandom`.
pub fn private_key_from_bytes(mut bytes: [u8; 16]) -> PrivateKey {
    let key = PrivateKey(BigUint::from_bytes_be(&bytes));
    bytes.zeroize();
    key
}

/// g^b mod p: what `keyinit` answers.
pub fn public_key(private: &PrivateKey) -> BigUint {
    BigUint::from(GENERATOR).modpow(&private.0, &prime())
}

/// The shared secret as the decimal text both sides derive the key from.
/// Shown as `SharedSecret(<redacted>)`.
pub struct SharedSecret(Zeroizing<String>);

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

impl SharedSecret {
    /// The decimal text (for tests against known vectors).
    pub fn decimal(&self) -> &str {
        &self.0
    }
}

/// A^b mod p, for the peer's public key A.
pub fn shared_secret(peer: &BigUint, private: &PrivateKey) -> SharedSecret {
    SharedSecret(Zeroizing::new(peer.modpow(&private.0, &prime()).to_string()))
}

/// The AES-128-CBC key and IV. Wiped when dropped; shown as
/// `AesKey(<redacted>)`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AesKey {
    pub(crate) key: [u8; 16],
    pub(crate) iv: [u8; 16],
}

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesKey(<redacted>)")
    }
}

impl AesKey {
    /// Key then IV, 32 bytes, for the host's state store.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new([self.key, self.iv].concat())
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (key, iv) = bytes.split_at_checked(16)?;
        Some(Self {
            key: key.try_into().ok()?,
            iv: iv.try_into().ok()?,
        })
    }
}

/// `EVP_BytesToKey(AES-128-CBC, MD5, no salt, S, 1 round)`: key = MD5(S),
/// iv = MD5(key ‖ S).
pub fn derive_key(shared: &SharedSecret) -> AesKey {
    let secret = shared.0.as_bytes();
    let key: [u8; 16] = Md5::digest(secret).into();
    let iv: [u8; 16] = Md5::new().chain_update(key).chain_update(secret).finalize().into();
    AesKey { key, iv }
}

/// The peer's public key from the JSON text of the request value, as
/// Python 2's `long(value)` read it: a decimal string (surrounding
/// whitespace, a sign and a trailing `L` allowed), a JSON number (a float
/// is truncated), or a boolean. Errors carry Python's texts. The result is
/// reduced modulo p, as `pow(A, b, p)` does.
pub fn parse_peer_key(raw_json: &str) -> Result<BigUint, String> {
    let value: serde_json::Value = serde_json::from_str(raw_json).map_err(|_| invalid_literal(raw_json))?;
    let number = match &value {
        serde_json::Value::String(text) => {
            parse_python_long(text).ok_or_else(|| invalid_literal(&python_repr(text)))?
        }
        serde_json::Value::Number(_) => parse_json_number(raw_json.trim())?,
        serde_json::Value::Bool(flag) => BigInt::from(u8::from(*flag)),
        serde_json::Value::Null => return Err(not_a_number("NoneType")),
        serde_json::Value::Array(_) => return Err(not_a_number("list")),
        serde_json::Value::Object(_) => return Err(not_a_number("dict")),
    };
    let prime = BigInt::from_biguint(Sign::Plus, prime());
    let reduced = ((number % &prime) + &prime) % &prime;
    Ok(reduced.to_biguint().unwrap_or_default())
}

/// Python's text for a value that is not a number. The value is cut
/// short: a requester can send megabytes, and the whole reply must fit the
/// command's reply limit (16 KiB by default), or it gets no text at all.
fn invalid_literal(shown: &str) -> String {
    format!(
        "invalid literal for long() with base 10: {}",
        guestward_sdk::excerpt(shown, guestward_sdk::EXCERPT_CHARS)
    )
}

fn not_a_number(type_name: &str) -> String {
    format!("long() argument must be a string or a number, not '{type_name}'")
}

/// Python 2 `long(text)`: whitespace around, an optional sign, decimal
/// digits, an optional `l`/`L` suffix.
fn parse_python_long(text: &str) -> Option<BigInt> {
    let trimmed = text.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'));
    let (negative, unsigned) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let digits = unsigned.strip_suffix(['l', 'L']).unwrap_or(unsigned);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude: BigInt = digits.parse().ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// A JSON number's exact integer, or a float's truncation (`long(1.5) == 1`).
fn parse_json_number(text: &str) -> Result<BigInt, String> {
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return text.parse().map_err(|_| invalid_literal(text));
    }
    let float: f64 = text.parse().map_err(|_| invalid_literal(text))?;
    if !float.is_finite() {
        return Err("cannot convert float infinity to integer".to_owned());
    }
    format!("{:.0}", float.trunc())
        .parse()
        .map_err(|_| invalid_literal(text))
}

/// Python 2's `repr()` of a short text, as its error messages show it.
fn python_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut repr = String::from(quote);
    for ch in text.chars() {
        match ch {
            '\\' => repr.push_str("\\\\"),
            '\n' => repr.push_str("\\n"),
            '\r' => repr.push_str("\\r"),
            '\t' => repr.push_str("\\t"),
            c if c == quote => {
                repr.push('\\');
                repr.push(c);
            }
            c if (' '..='~').contains(&c) => repr.push(c),
            c if (c as u32) < 0x100 => repr.push_str(&format!("\\x{:02x}", c as u32)),
            c => repr.push_str(&format!("\\u{:04x}", c as u32)),
        }
    }
    repr.push(quote);
    repr
}

#[cfg(test)]
mod tests {
    use super::*;

    /// legacy-agent.md §8.1: (host private a, agent private b, A, B, shared, key, iv).
    const VECTORS: [(&str, u128, &str, &str, &str, &str, &str); 3] = [
        (
            "5373003642731685151011",
            0x0011_2233_4455_6677_8899_aabb_ccdd_eeff,
            "128492706489454800633959484585958",
            "10213771857304028832860390748511",
            "42212498014643735436438456950707",
            "84d3a6e9e224da5710dab5b26a0f91e8",
            "d6085eacfae73900f1b100805e6eb9ac",
        ),
        (
            "1051570404360395033547316",
            0xffee_ddcc_bbaa_9988_7766_5544_3322_1100,
            "128699840231422895998131997610661",
            "78400764032904431491788621707084",
            "51126414905552970805483593463763",
            "3d6c16661eab8f62dc7d0dd42d61eddc",
            "df4d9ece3f7d6cf4ac922acab057749a",
        ),
        (
            "42",
            43,
            "227373675443232059478759765625",
            "1136868377216160297393798828125",
            "160205215526405740649699415683499",
            "b59c786326899a4d25ae781531218b5b",
            "b3e6b0132089263b817318e57e034648",
        ),
    ];

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_legacy_vectors_hold() {
        for (host_private, agent_private, host_public, agent_public, shared, key, iv) in VECTORS {
            let host_private: BigUint = host_private.parse().unwrap();
            assert_eq!(
                BigUint::from(5u8).modpow(&host_private, &prime()).to_string(),
                host_public
            );
            let private = private_key_from_bytes(agent_private.to_be_bytes());
            assert_eq!(public_key(&private).to_string(), agent_public);
            let peer = parse_peer_key(&format!("\"{host_public}\"")).unwrap();
            let secret = shared_secret(&peer, &private);
            assert_eq!(secret.decimal(), shared);
            let aes = derive_key(&secret);
            assert_eq!((hex(&aes.key), hex(&aes.iv)), (key.to_owned(), iv.to_owned()));
        }
    }

    #[test]
    fn the_extra_kdf_vectors_hold() {
        let key = derive_key(&SharedSecret(Zeroizing::new("123456789".into())));
        assert_eq!(hex(&key.key), "25f9e794323b453885f5181f1b624d0b");
        assert_eq!(hex(&key.iv), "d3297e4e62ab02719b8d7c5f981f3a31");
        let none = derive_key(&SharedSecret(Zeroizing::new("None".into())));
        assert_eq!(hex(&none.key), "6adf97f83acf6453d4a6a4b1070f3754");
    }

    #[test]
    fn the_successors_dh_vector_holds() {
        let private: BigUint = "2311212056221575424181384077217018408327386330309836681185200335772446841869122972713534217535689064137278608958579090107008875567526954383165078584702603331246342023613076766721726".parse().unwrap();
        let peer = parse_peer_key("\"29146890515040234272807524713655\"").unwrap();
        let shared = shared_secret(&peer, &PrivateKey(private));
        assert_eq!(shared.decimal(), "27234591073885988013566387861589");
    }

    #[test]
    fn peer_keys_are_read_as_python_2_long_did() {
        for (raw, expected) in [
            ("\"123\"", 123u32),
            ("\"  123 \\n\"", 123),
            ("\"+7\"", 7),
            ("\"7L\"", 7),
            ("123", 123),
            ("1.9", 1),
            ("true", 1),
            ("false", 0),
        ] {
            assert_eq!(parse_peer_key(raw).unwrap(), BigUint::from(expected), "{raw}");
        }
        let big = "162259276829213363391578010288128"; // p + 1, as a JSON number
        assert_eq!(parse_peer_key(big).unwrap(), BigUint::from(1u8));
        assert_eq!(parse_peer_key("\"-1\"").unwrap(), prime() - 1u8);
    }

    #[test]
    fn bad_peer_keys_get_pythons_texts() {
        let cases = [
            ("\"abc\"", "invalid literal for long() with base 10: 'abc'"),
            ("\"1 2\"", "invalid literal for long() with base 10: '1 2'"),
            ("\"\"", "invalid literal for long() with base 10: ''"),
            ("\"it's\"", "invalid literal for long() with base 10: \"it's\""),
            ("null", "long() argument must be a string or a number, not 'NoneType'"),
            ("[1]", "long() argument must be a string or a number, not 'list'"),
            ("{}", "long() argument must be a string or a number, not 'dict'"),
        ];
        for (raw, text) in cases {
            assert_eq!(parse_peer_key(raw).unwrap_err(), text, "{raw}");
        }
    }

    #[test]
    fn a_huge_bad_peer_key_gets_a_short_text() {
        // Found by `guestward fuzz`: the whole value was echoed, and a
        // 250 KB value made a reply over the 16 KiB limit.
        for raw in [
            format!("\"{}\"", "AAAA====".repeat(30_000)),
            format!("[{}", "1,".repeat(30_000)),
        ] {
            let text = parse_peer_key(&raw).unwrap_err();
            assert!(text.starts_with("invalid literal for long() with base 10: "), "{text}");
            assert!(text.len() < 300 && text.ends_with("..."), "{} bytes", text.len());
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let private = private_key_from_bytes([7; 16]);
        let shared = shared_secret(&BigUint::from(12345u32), &private);
        let key = derive_key(&shared);
        for shown in [format!("{private:?}"), format!("{shared:?}"), format!("{key:?}")] {
            assert!(
                shown.contains("<redacted>") && !shown.contains(shared.decimal()),
                "{shown}"
            );
        }
    }

    #[test]
    fn keys_survive_the_state_store_round_trip() {
        let key = derive_key(&SharedSecret(Zeroizing::new("42".into())));
        let back = AesKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!((back.key, back.iv), (key.key, key.iv));
        assert!(AesKey::from_bytes(&[0; 31]).is_none());
    }
}
