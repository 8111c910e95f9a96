//! JSON text with object members in the order qemu-ga writes them.
//!
//! qemu-ga builds every answer as a QDict (a hash table of 512 buckets,
//! keyed by QEMU's `tdb_hash` of the member name) and writes the members
//! bucket by bucket, so `guest-info` starts with `version` and an
//! interface with `name`, `ip-addresses`, `statistics`,
//! `hardware-address`. Writing the same order makes our answers
//! byte-comparable with qemu-ga's, for clients that (wrongly) depend on it.

use serde_json::Value;

/// The number of buckets of a QDict (`QDICT_BUCKET_MAX`).
const BUCKETS: u32 = 512;

/// The bucket QEMU's QDict puts `name` in.
fn bucket(name: &str) -> u32 {
    let bytes = name.as_bytes();
    let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let mut value = 0x238F_13AF_u32.wrapping_mul(length);
    for (index, &byte) in bytes.iter().enumerate() {
        let shift = u32::try_from(index * 5 % 24).unwrap_or(0);
        value = value.wrapping_add(u32::from(byte) << shift);
    }
    1_103_515_243_u32.wrapping_mul(value).wrapping_add(12345) % BUCKETS
}

/// `value` as compact JSON, each object's members in QDict order (names
/// sharing a bucket in name order).
pub fn to_json(value: &Value) -> String {
    let mut out = String::new();
    write(&mut out, value);
    out
}

fn write(out: &mut String, value: &Value) {
    match value {
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by_key(|(name, _)| (bucket(name), name.as_str()));
            out.push('{');
            for (index, (name, member)) in sorted.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(name.as_str()).to_string());
                out.push(':');
                write(out, member);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write(out, item);
            }
            out.push(']');
        }
        leaf => out.push_str(&leaf.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The orders qemu-ga 7.2 was seen writing (notes/qga-facts.md §4).
    #[test]
    fn members_come_in_the_order_qemu_ga_writes_them() {
        let info = json!({"supported_commands": [{"success-response": true, "name": "guest-ping", "enabled": true}], "version": "7.2.22"});
        assert_eq!(
            to_json(&info),
            r#"{"version":"7.2.22","supported_commands":[{"enabled":true,"name":"guest-ping","success-response":true}]}"#
        );
        let osinfo = json!({"id": "", "machine": "", "kernel-version": "", "version-id": "", "pretty-name": "",
            "version": "", "kernel-release": "", "name": ""});
        let text = to_json(&osinfo);
        let order = [
            "name",
            "kernel-release",
            "version",
            "pretty-name",
            "version-id",
            "kernel-version",
            "machine",
            "id",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|name| text.find(&format!("\"{name}\":")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{text}");
        let statistics = json!({"rx-bytes": 1, "rx-packets": 2, "rx-errs": 3, "rx-dropped": 4,
            "tx-bytes": 5, "tx-packets": 6, "tx-errs": 7, "tx-dropped": 8});
        assert_eq!(
            to_json(&statistics),
            r#"{"tx-packets":6,"tx-errs":7,"rx-bytes":1,"rx-dropped":4,"rx-packets":2,"rx-errs":3,"tx-bytes":5,"tx-dropped":8}"#
        );
        let nic = json!({"hardware-address": "00:00:00:00:00:00", "statistics": {}, "ip-addresses": [
            {"prefix": 8, "ip-address": "127.0.0.1", "ip-address-type": "ipv4"}], "name": "lo"});
        assert_eq!(
            to_json(&nic),
            r#"{"name":"lo","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"127.0.0.1","prefix":8}],"statistics":{},"hardware-address":"00:00:00:00:00:00"}"#
        );
        assert_eq!(
            to_json(&json!({"offset": 0, "zone": "UTC"})),
            r#"{"zone":"UTC","offset":0}"#
        );
        assert_eq!(
            to_json(&json!([{"user": "a", "login-time": 1.5}])),
            r#"[{"login-time":1.5,"user":"a"}]"#
        );
    }

    #[test]
    fn strings_and_numbers_are_plain_json() {
        assert_eq!(to_json(&json!({"a\"b": "\u{e9}\n"})), "{\"a\\\"b\":\"\u{e9}\\n\"}");
        assert_eq!(
            to_json(&json!([-1, 1796151436780271000_i64, null, false])),
            "[-1,1796151436780271000,null,false]"
        );
    }
}
