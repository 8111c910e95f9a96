//! Whatever an operator writes in a policy file, parsing never panics: it
//! gives a policy or an error naming a line inside the file.
#![no_main]

use guestward::capability::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(error) = Policy::parse(text, "fuzz") {
            assert!(error.line >= 1 && error.line <= text.lines().count().max(1) + 1);
        }
    }
});
