//! Host bindings of the `guestward:command` WIT world.
//!
//! `files`, `xenstore` and `system` do I/O, so their host functions are async; the
//! others answer from memory. Exports are called asynchronously so that a
//! component yields to other work at every epoch tick.

wasmtime::component::bindgen!({
    world: "command",
    path: "../wit",
    imports: {
        "guestward:command/files": async,
        "guestward:command/xenstore": async,
        "guestward:command/system": async,
        "guestward:command/download": async,
        "guestward:command/update": async,
    },
    exports: { default: async },
});
