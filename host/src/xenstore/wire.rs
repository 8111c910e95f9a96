//! The XenStore wire format (`xs_wire.h`): a 16-byte header of four
//! little-endian `u32` (type, request id, transaction id, payload length)
//! followed by the payload. Pure functions over bytes, so that the decoder
//! can be fuzzed without a XenStore.

use super::Errno;

/// Bytes in a message header.
pub const HEADER_LEN: usize = 16;

/// The largest payload xenstored accepts (`XENSTORE_PAYLOAD_MAX`); a longer
/// one makes it drop the connection.
pub const DAEMON_PAYLOAD_MAX: usize = 4096;

/// The largest payload we send. The Linux xenbus device buffers a whole
/// message, header included, in 4096 bytes, so 4080 is what works on every
/// transport.
pub const PAYLOAD_MAX: usize = DAEMON_PAYLOAD_MAX - HEADER_LEN;

/// Message types (`enum xsd_sockmsg_type`) that the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MsgType {
    Directory = 1,
    Read = 2,
    GetPerms = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    Introduce = 8,
    GetDomainPath = 10,
    Write = 11,
    Mkdir = 12,
    Rm = 13,
    SetPerms = 14,
    WatchEvent = 15,
    Error = 16,
    DirectoryPart = 22,
}

impl MsgType {
    /// The type with this wire code, if the client knows it.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => Self::Directory,
            2 => Self::Read,
            3 => Self::GetPerms,
            4 => Self::Watch,
            5 => Self::Unwatch,
            6 => Self::TransactionStart,
            7 => Self::TransactionEnd,
            8 => Self::Introduce,
            10 => Self::GetDomainPath,
            11 => Self::Write,
            12 => Self::Mkdir,
            13 => Self::Rm,
            14 => Self::SetPerms,
            15 => Self::WatchEvent,
            16 => Self::Error,
            22 => Self::DirectoryPart,
            _ => return None,
        })
    }
}

/// One message, either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The raw type code (unknown codes are kept, not rejected, so that a
    /// reply to a request can still be matched and reported).
    pub msg_type: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub payload: Vec<u8>,
}

/// A stream that cannot be XenStore messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("payload of {len} bytes exceeds the XenStore limit of {max} bytes")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("malformed {what} payload")]
    Malformed { what: &'static str },
}

/// Encode one request. Refuses payloads longer than [`PAYLOAD_MAX`].
pub fn encode(msg_type: MsgType, req_id: u32, tx_id: u32, payload: &[u8]) -> Result<Vec<u8>, WireError> {
    if payload.len() > PAYLOAD_MAX {
        return Err(WireError::PayloadTooLarge {
            len: payload.len(),
            max: PAYLOAD_MAX,
        });
    }
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    for field in [msg_type as u32, req_id, tx_id, payload.len() as u32] {
        bytes.extend_from_slice(&field.to_le_bytes());
    }
    bytes.extend_from_slice(payload);
    Ok(bytes)
}

/// Decode the first message of `buf`. `Ok(None)` means more bytes are
/// needed; `Ok(Some((frame, used)))` consumed `used` bytes. A header that
/// announces more than xenstored may send means the stream is corrupt.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, WireError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let field = |index: usize| {
        let mut word = [0u8; 4];
        word.copy_from_slice(&header[index * 4..index * 4 + 4]);
        u32::from_le_bytes(word)
    };
    let len = field(3) as usize;
    if len > DAEMON_PAYLOAD_MAX {
        return Err(WireError::PayloadTooLarge {
            len,
            max: DAEMON_PAYLOAD_MAX,
        });
    }
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    let frame = Frame {
        msg_type: field(0),
        req_id: field(1),
        tx_id: field(2),
        payload: payload.to_vec(),
    };
    Ok(Some((frame, HEADER_LEN + len)))
}

/// What an incoming message means to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// The answer to request `req_id`: its payload, or the error xenstored
    /// named.
    Reply {
        req_id: u32,
        result: Result<Vec<u8>, Errno>,
    },
    /// A watch fired for `path`; `token` names the watch.
    WatchEvent { path: String, token: String },
}

/// Interpret a decoded frame.
pub fn classify(frame: Frame) -> Result<Incoming, WireError> {
    match MsgType::from_code(frame.msg_type) {
        Some(MsgType::WatchEvent) => {
            let mut parts = split_strings(&frame.payload, "watch event")?.into_iter();
            match (parts.next(), parts.next()) {
                (Some(path), Some(token)) => Ok(Incoming::WatchEvent { path, token }),
                _ => Err(WireError::Malformed { what: "watch event" }),
            }
        }
        Some(MsgType::Error) => {
            let name = frame.payload.split(|&b| b == 0).next().unwrap_or_default();
            Ok(Incoming::Reply {
                req_id: frame.req_id,
                result: Err(Errno::from_name(&String::from_utf8_lossy(name))),
            })
        }
        _ => Ok(Incoming::Reply {
            req_id: frame.req_id,
            result: Ok(frame.payload),
        }),
    }
}

/// `a\0b\0` → `["a", "b"]`: the NUL-terminated strings of a payload.
pub fn split_strings(payload: &[u8], what: &'static str) -> Result<Vec<String>, WireError> {
    if payload.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = payload.strip_suffix(&[0]) else {
        return Err(WireError::Malformed { what });
    };
    body.split(|&b| b == 0)
        .map(|part| String::from_utf8(part.to_vec()).map_err(|_| WireError::Malformed { what }))
        .collect()
}

/// One reply to `DIRECTORY_PART`: the directory's generation count, and the
/// next stretch of its children's names (each NUL-terminated), starting at
/// the byte offset asked for. The last stretch ends with an empty name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryPart<'a> {
    pub generation: &'a [u8],
    pub names: &'a [u8],
}

impl<'a> DirectoryPart<'a> {
    /// Split a `DIRECTORY_PART` reply payload (`gen\0name\0…`).
    pub fn parse(payload: &'a [u8]) -> Result<Self, WireError> {
        let malformed = WireError::Malformed { what: "directory part" };
        let end = payload.iter().position(|&b| b == 0).ok_or(malformed.clone())?;
        let names = &payload[end + 1..];
        if names.last() != Some(&0) {
            return Err(malformed);
        }
        Ok(Self {
            generation: &payload[..end],
            names,
        })
    }
}

/// True when `names`, the stretches of a listing gathered so far, hold the
/// whole list: it ends with the empty name (`…\0\0`, or just `\0`).
pub fn directory_parts_complete(names: &[u8]) -> bool {
    names.len() <= 1 || names.ends_with(&[0, 0])
}

/// The names of a complete listing gathered from parts.
pub fn directory_part_names(names: &[u8]) -> Result<Vec<String>, WireError> {
    let body = names.strip_suffix(&[0]).unwrap_or(names);
    split_strings(body, "directory part")
}

/// The payload of a request made of strings: each one NUL-terminated.
pub fn join_strings<'a>(parts: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut payload = Vec::new();
    for part in parts {
        payload.extend_from_slice(part.as_bytes());
        payload.push(0);
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_round_trips() {
        let bytes = encode(MsgType::Write, 7, 3, b"data/guest/1\0{}").unwrap();
        let (frame, used) = decode(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!((frame.msg_type, frame.req_id, frame.tx_id), (11, 7, 3));
        assert_eq!(frame.payload, b"data/guest/1\0{}");
    }

    #[test]
    fn header_is_four_little_endian_words() {
        let bytes = encode(MsgType::Read, 0x0102_0304, 0, b"x\0").unwrap();
        assert_eq!(&bytes[..16], &[2, 0, 0, 0, 4, 3, 2, 1, 0, 0, 0, 0, 2, 0, 0, 0]);
    }

    #[test]
    fn partial_input_asks_for_more() {
        let bytes = encode(MsgType::Read, 1, 0, b"data/host\0").unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn payload_over_the_device_limit_is_refused_before_sending() {
        assert!(encode(MsgType::Write, 1, 0, &[b'a'; PAYLOAD_MAX]).is_ok());
        assert_eq!(
            encode(MsgType::Write, 1, 0, &[b'a'; PAYLOAD_MAX + 1]),
            Err(WireError::PayloadTooLarge {
                len: PAYLOAD_MAX + 1,
                max: PAYLOAD_MAX
            })
        );
    }

    #[test]
    fn a_header_announcing_too_much_is_corrupt() {
        let mut bytes = vec![0u8; 16];
        bytes[12..16].copy_from_slice(&4097u32.to_le_bytes());
        assert!(decode(&bytes).is_err());
    }

    #[test]
    fn error_replies_carry_the_errno_name() {
        let frame = Frame {
            msg_type: 16,
            req_id: 9,
            tx_id: 0,
            payload: b"ENOENT\0".to_vec(),
        };
        assert_eq!(
            classify(frame).unwrap(),
            Incoming::Reply {
                req_id: 9,
                result: Err(Errno::ENOENT)
            }
        );
    }

    #[test]
    fn watch_events_name_path_and_token() {
        let frame = Frame {
            msg_type: 15,
            req_id: 0,
            tx_id: 0,
            payload: b"data/host/42\0tok\0".to_vec(),
        };
        assert_eq!(
            classify(frame).unwrap(),
            Incoming::WatchEvent {
                path: "data/host/42".into(),
                token: "tok".into()
            }
        );
    }

    #[test]
    fn directory_payloads_split_into_names() {
        assert_eq!(split_strings(b"a\0bc\0", "directory").unwrap(), ["a", "bc"]);
        assert!(split_strings(b"", "directory").unwrap().is_empty());
        assert!(split_strings(b"a", "directory").is_err());
    }

    #[test]
    fn directory_parts_are_split_and_joined() {
        let first = DirectoryPart::parse(b"1a\0one\0two\0").unwrap();
        assert_eq!(first.generation, b"1a");
        assert!(!directory_parts_complete(first.names));
        let last = DirectoryPart::parse(b"1a\0three\0\0").unwrap();
        let mut names = first.names.to_vec();
        names.extend_from_slice(last.names);
        assert!(directory_parts_complete(&names));
        assert_eq!(directory_part_names(&names).unwrap(), ["one", "two", "three"]);
        let empty = DirectoryPart::parse(b"7\0\0").unwrap();
        assert!(directory_parts_complete(empty.names));
        assert!(directory_part_names(empty.names).unwrap().is_empty());
        for bad in [&b""[..], b"7", b"7\0", b"7\0name"] {
            assert!(DirectoryPart::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        // A small deterministic generator: the fuzz target does the same at scale.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if bytes.len() >= 16 && next() % 2 == 0 {
                let announced = (next() % 80) as u32;
                bytes[12..16].copy_from_slice(&announced.to_le_bytes());
            }
            if let Ok(Some((frame, used))) = decode(&bytes) {
                assert!(used <= bytes.len());
                let _ = classify(frame);
            }
        }
    }
}
