//! Whatever the host writes to the QGA port, however it arrives in pieces:
//! decoding never panics, the pieces never change what is decoded, and
//! every answer is one line of valid JSON with the right id and shape
//! (`guestward::protocol::qga::check_stream`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| guestward::protocol::qga::check_stream(data));
