//! Behaviour of the legacy agent's Python 2 that commands must keep, so
//! that what the hypervisor sends is read exactly as before.

/// Base64 that stops in the middle of a byte (Python's "Incorrect padding").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncorrectPadding;

/// Python 2's `base64.b64decode` (`binascii.a2b_base64`): characters
/// outside the alphabet are skipped; a `=` ends the data only where padding
/// may stand (after two characters of a quad if another `=` follows, or
/// after three); data that stops mid-byte is "Incorrect padding".
pub fn b64decode(text: &str) -> Result<Vec<u8>, IncorrectPadding> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    let (mut quad_pos, mut left_bits, mut left_char) = (0u32, 0u32, 0u32);
    for (index, &byte) in bytes.iter().enumerate() {
        if byte == b'=' {
            let pads_here = quad_pos >= 2 && (quad_pos != 2 || next_valid(&bytes[index + 1..]) == Some(b'='));
            if pads_here {
                left_bits = 0;
                break;
            }
            continue;
        }
        let Some(value) = sextet(byte) else { continue };
        quad_pos = (quad_pos + 1) & 3;
        left_char = (left_char << 6) | value;
        left_bits += 6;
        if left_bits >= 8 {
            left_bits -= 8;
            out.push((left_char >> left_bits) as u8);
            left_char &= (1 << left_bits) - 1;
        }
    }
    if left_bits != 0 { Err(IncorrectPadding) } else { Ok(out) }
}

/// The next character that counts (alphabet or `=`), as binascii looks
/// ahead for a second pad.
fn next_valid(rest: &[u8]) -> Option<u8> {
    rest.iter()
        .copied()
        .find(|&byte| byte == b'=' || sextet(byte).is_some())
}

fn sextet(byte: u8) -> Option<u32> {
    Some(match byte {
        b'A'..=b'Z' => byte - b'A',
        b'a'..=b'z' => byte - b'a' + 26,
        b'0'..=b'9' => byte - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Standard base64 (with padding), for commands that answer in base64.
pub fn b64encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = chunk.iter().enumerate().fold(0u32, |group, (index, &byte)| {
            group | u32::from(byte) << (16 - 8 * index)
        });
        for index in 0..4 {
            if index <= chunk.len() {
                out.push(ALPHABET[(group >> (18 - 6 * index) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_read_as_python_2_did() {
        assert_eq!(b64decode("QUJD").unwrap(), b"ABC");
        assert_eq!(b64decode("QU\nJ D!").unwrap(), b"ABC", "stray characters are skipped");
        assert_eq!(b64decode("!!!").unwrap(), b"", "nothing valid is nothing");
        assert_eq!(b64decode("QQ==").unwrap(), b"A");
        assert_eq!(b64decode("QUI=").unwrap(), b"AB");
        assert_eq!(b64decode("QQ==garbage-after-padding").unwrap(), b"A");
        assert!(b64decode("QQ").is_err(), "incorrect padding");
        assert!(b64decode("kjadfkjaf").is_err());
        assert!(b64decode("Q=Q=").is_err(), "a lone pad too early is skipped");
        let wrapped = "p8OjRMlhH6sp4zli\n8NjwhA==\n";
        assert_eq!(
            b64decode(wrapped).unwrap(),
            b64decode("p8OjRMlhH6sp4zli8NjwhA==").unwrap()
        );
    }

    #[test]
    fn encoding_round_trips() {
        for bytes in [&b""[..], b"A", b"AB", b"ABC", b"\x00\xff binary,with commas"] {
            assert_eq!(b64decode(&b64encode(bytes)).unwrap(), bytes);
        }
        assert_eq!(b64encode(b"/tmp/x"), "L3RtcC94");
    }
}
