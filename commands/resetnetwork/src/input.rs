//! What `resetnetwork` reads: the hypervisor's data in XenStore and the
//! machine's network interfaces.

use guestward_sdk::{network, xenstore};
use serde_json::Value;

use crate::config::LocalNic;

const HOSTNAME_KEY: &str = "vm-data/hostname";
const NETWORKING_KEY: &str = "vm-data/networking";

/// `vm-data/hostname`, verbatim, if Nova wrote one.
pub fn hostname() -> Result<Option<String>, String> {
    match xenstore::read(HOSTNAME_KEY) {
        Ok(name) => Ok(Some(name)),
        Err(xenstore::Error::NotFound(_)) => Ok(None),
        Err(error) => Err(format!("cannot read {HOSTNAME_KEY}: {}", error.text())),
    }
}

/// Every `vm-data/networking/<MAC>` entry, JSON-decoded, in key order.
pub fn entries() -> Result<Vec<Value>, String> {
    let keys = match xenstore::directory(NETWORKING_KEY) {
        Ok(keys) => keys,
        Err(xenstore::Error::NotFound(_)) => return Ok(Vec::new()),
        Err(error) => return Err(format!("cannot list {NETWORKING_KEY}: {}", error.text())),
    };
    keys.iter()
        .map(|key| {
            let path = format!("{NETWORKING_KEY}/{key}");
            let text = xenstore::read(&path).map_err(|error| format!("cannot read {path}: {}", error.text()))?;
            serde_json::from_str(&text).map_err(|error| format!("Invalid JSON in {path}: {error}"))
        })
        .collect()
}

/// The machine's interfaces.
pub fn local_nics() -> Result<Vec<LocalNic>, String> {
    let interfaces = network::interfaces().map_err(|error| error.text().to_owned())?;
    Ok(interfaces
        .into_iter()
        .map(|nic| LocalNic {
            name: nic.name,
            mac: nic.mac,
            up: nic.up,
        })
        .collect())
}
