//! The `password` value: base64 as Python 2 read it, AES-128-CBC, the
//! padding check and the legacy texts (legacy-agent.md §3.4).
//!
//! One deliberate difference: the legacy agent checked only the last
//! padding byte (at most 16), so a ciphertext made with the wrong key passed
//! one time in fifteen and set a garbage password nobody knew, and a last
//! byte of 0 set an *empty* password. We check the whole PKCS#7 padding, as
//! OpenSSL writes it; every ciphertext Nova sends passes both checks.

use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::NoPadding};
use zeroize::Zeroizing;

pub use guestward_sdk::legacy::{IncorrectPadding, b64decode as decode_base64_lenient};

use crate::dh::AesKey;

/// The decrypted password: bytes (not necessarily UTF-8), wiped when
/// dropped, shown as `Password(<redacted>)`.
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Decrypt and check, with the legacy texts, in the legacy order.
pub fn decrypt_password(key: &AesKey, ciphertext: &[u8]) -> Result<Password, String> {
    if ciphertext.is_empty() {
        // Python indexed the last byte of an empty string.
        return Err("string index out of range".to_owned());
    }
    if !ciphertext.len().is_multiple_of(16) {
        return Err("Input strings must be a multiple of 16 in length".to_owned());
    }
    let mut plaintext = Zeroizing::new(ciphertext.to_vec());
    cbc::Decryptor::<aes::Aes128>::new(&key.key.into(), &key.iv.into())
        .decrypt_padded_mut::<NoPadding>(&mut plaintext)
        .map_err(|_| "Invalid password data received".to_owned())?;
    let pad = usize::from(plaintext[plaintext.len() - 1]);
    let padding_ok = (1..=16).contains(&pad)
        && plaintext[plaintext.len() - pad..]
            .iter()
            .all(|&byte| usize::from(byte) == pad);
    if !padding_ok {
        return Err("Invalid password data received".to_owned());
    }
    let password = &plaintext[..plaintext.len() - pad];
    let start = password.iter().position(|&b| b != b'\n').unwrap_or(password.len());
    let end = password
        .iter()
        .rposition(|&b| b != b'\n')
        .map_or(start, |last| last + 1);
    Ok(Password(Zeroizing::new(password[start..end].to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dh;

    fn key(hex_key: &str, hex_iv: &str) -> AesKey {
        let decode = |text: &str| -> [u8; 16] {
            (0..16)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
                .collect::<Vec<_>>()
                .try_into()
                .unwrap()
        };
        AesKey {
            key: decode(hex_key),
            iv: decode(hex_iv),
        }
    }

    fn decrypt(key: &AesKey, base64: &str) -> Result<Vec<u8>, String> {
        let ciphertext = decode_base64_lenient(base64).map_err(|_| "Couldn't decode base64 data".to_owned())?;
        decrypt_password(key, &ciphertext).map(|password| password.as_bytes().to_vec())
    }

    #[test]
    fn the_legacy_vectors_decrypt() {
        let v1 = key("84d3a6e9e224da5710dab5b26a0f91e8", "d6085eacfae73900f1b100805e6eb9ac");
        assert_eq!(decrypt(&v1, "p8OjRMlhH6sp4zli8NjwhA==").unwrap(), b"TeStPaSsWoRd");
        let v2 = key("3d6c16661eab8f62dc7d0dd42d61eddc", "df4d9ece3f7d6cf4ac922acab057749a");
        assert_eq!(decrypt(&v2, "fhOFx5hYrvBBJOPw4j3Hng==").unwrap(), b"mEoW4567");
        let v3 = key("b59c786326899a4d25ae781531218b5b", "b3e6b0132089263b817318e57e034648");
        assert_eq!(
            decrypt(&v3, "p0A1emr7ijTBN6Wt6RydX3qo8la+MuXfM4lOhhfouhY=").unwrap(),
            b"exactly16bytes!"
        );
        // What OpenSSL 3 gives without `-md md5`: rejected, not garbage.
        assert!(decrypt(&v1, "/42GmeUoef8o0UDT7JXNbg==").is_err());
    }

    #[test]
    fn the_successors_invalid_data_vector_is_refused() {
        let key = key("f80598bb2027ee4d3c3de28e55f645a1", "3bd1ac527c3ac2dd23741831ad11640b");
        assert_eq!(
            decrypt(&key, "6E6haX/YGRSEcR9X9+3nLOgD+ItDTv9/uOHms02Cos0sqI/k1uFIC3V/YNydHJOk").unwrap_err(),
            "Invalid password data received"
        );
    }

    #[test]
    fn legacy_error_texts() {
        let key = key("84d3a6e9e224da5710dab5b26a0f91e8", "d6085eacfae73900f1b100805e6eb9ac");
        assert_eq!(decrypt(&key, "kjadfkjaf").unwrap_err(), "Couldn't decode base64 data");
        assert_eq!(decrypt(&key, "").unwrap_err(), "string index out of range");
        assert_eq!(
            decrypt(&key, "QUJD").unwrap_err(),
            "Input strings must be a multiple of 16 in length"
        );
    }

    #[test]
    fn padding_is_checked_as_the_legacy_agent_did() {
        use aes::cipher::BlockEncryptMut;
        let key = dh::derive_key(&dh::shared_secret(&42u8.into(), &dh::private_key_from_bytes([1; 16])));
        let encrypt = |plain: &[u8]| {
            let mut buffer = plain.to_vec();
            let len = buffer.len();
            cbc::Encryptor::<aes::Aes128>::new(&key.key.into(), &key.iv.into())
                .encrypt_padded_mut::<NoPadding>(&mut buffer, len)
                .unwrap()
                .to_vec()
        };
        let with_last = |last: u8| {
            let mut block = *b"\npass\n\n\n\n\n\n\n\n\n\n ";
            block[15] = last;
            block
        };
        assert_eq!(
            decrypt_password(&key, &encrypt(&with_last(1))).unwrap().as_bytes(),
            b"pass"
        );
        // Unlike the legacy agent: a zero byte (an empty password), bytes
        // over 16, and padding bytes that disagree are all refused.
        for bad in [with_last(0), with_last(17), with_last(2)] {
            assert_eq!(
                decrypt_password(&key, &encrypt(&bad)).unwrap_err(),
                "Invalid password data received"
            );
        }
        // Only '\n' is stripped, from both ends.
        let mut block = *b"\r pw \r\n\n\x08\x08\x08\x08\x08\x08\x08\x08";
        block[7] = b'\n';
        assert_eq!(
            decrypt_password(&key, &encrypt(&block)).unwrap().as_bytes(),
            b"\r pw \r"
        );
    }

    #[test]
    fn a_round_trip_with_the_real_openssl() {
        let shared = dh::shared_secret(&99u8.into(), &dh::private_key_from_bytes([3; 16]));
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg("printf 'real pw\\n' | openssl enc -aes-128-cbc -md md5 -nosalt -a -A -pass \"pass:$1\"")
            .arg("sh")
            .arg(shared.decimal())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let base64 = String::from_utf8(output.stdout).unwrap();
        let key = dh::derive_key(&shared);
        assert_eq!(decrypt(&key, &base64).unwrap(), b"real pw");
    }

    #[test]
    fn passwords_are_redacted_in_debug_output() {
        let password = Password(Zeroizing::new(b"hunter2".to_vec()));
        assert_eq!(format!("{password:?}"), "Password(<redacted>)");
    }
}
