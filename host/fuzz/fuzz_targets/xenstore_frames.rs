//! Whatever bytes xenstored (or a hostile kernel) sends, the frame decoder
//! never panics, never claims more bytes than it was given, and re-encoding
//! a decoded request gives the same bytes.
#![no_main]

use guestward::xenstore::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = wire::decode(rest) {
        assert!(used <= rest.len() && used >= wire::HEADER_LEN);
        if let Some(msg_type) = wire::MsgType::from_code(frame.msg_type) {
            if frame.payload.len() <= wire::PAYLOAD_MAX {
                let encoded = wire::encode(msg_type, frame.req_id, frame.tx_id, &frame.payload).unwrap();
                assert_eq!(encoded, &rest[..used]);
            }
        }
        let _ = wire::classify(frame);
        rest = &rest[used..];
    }
});
