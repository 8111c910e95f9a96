//! Host bindings of the `guestward:command` WIT world (`wit/command.wit`):
//! the bottom of the crate, importing nothing from it.
//!
//! The interfaces that do I/O (`files`, `xenstore`, `programs`, `hostname`,
//! `network`, `download`, `update`, `freeze`) have async host functions, so they never
//! block the thread driving other components; `log`, `state` and `agent`
//! answer from memory. Exports are called asynchronously so that a component
//! yields to other work at every epoch tick.

wasmtime::component::bindgen!({
    world: "command",
    path: "../guest-sdk/wit",
    imports: {
        "guestward:command/files": async,
        "guestward:command/xenstore": async,
        "guestward:command/programs": async,
        "guestward:command/hostname": async,
        "guestward:command/network": async,
        "guestward:command/download": async,
        "guestward:command/update": async,
        "guestward:command/freeze": async,
    },
    exports: { default: async },
});

pub use self::guestward::command::*;
