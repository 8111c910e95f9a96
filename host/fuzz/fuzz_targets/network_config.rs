//! Whatever the hypervisor writes in `vm-data/networking`, resetnetwork's
//! normalisation and every renderer never panic, and nothing it sends can
//! put a control character (a new line in a label, say) into a file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (hostname, entries) = text.split_once('\n').unwrap_or(("example", text));
    let Ok(serde_json::Value::Array(entries)) = serde_json::from_str(entries) else { return };
    resetnetwork::fuzz_render_everything(&entries, hostname);
});
