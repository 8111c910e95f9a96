//! FIFREEZE and FITHAW: the only kernel calls of the daemon without a safe
//! wrapper. Neither rustix nor nix offers one, and running util-linux's
//! `fsfreeze` instead would cost a process per filesystem and leave the
//! daemon guessing errno from translated text (qemu-ga's rules depend on
//! it: EOPNOTSUPP and EBUSY are skipped, any other error thaws).
//!
//! Both requests act on the filesystem of an open descriptor and read or
//! write no user memory: the kernel's handlers (`ioctl_fsfreeze`,
//! `ioctl_fsthaw`) ignore the argument, which `NoArg` passes as null.
#![allow(unsafe_code)]

use std::os::fd::BorrowedFd;

use rustix::ioctl::{NoArg, Opcode, ioctl, opcode};

/// `_IOWR('X', 119, int)`, as linux/fs.h defines it.
const FIFREEZE: Opcode = opcode::read_write::<core::ffi::c_int>(b'X', 119);
/// `_IOWR('X', 120, int)`.
const FITHAW: Opcode = opcode::read_write::<core::ffi::c_int>(b'X', 120);

/// Freeze the filesystem `fd` is on.
pub fn freeze(fd: BorrowedFd<'_>) -> rustix::io::Result<()> {
    // SAFETY: FIFREEZE's opcode is the kernel's (tested below against the
    // header's value); the kernel neither reads nor writes the argument,
    // which is null; `fd` is a live descriptor borrowed for the call.
    unsafe { ioctl(fd, NoArg::<FIFREEZE>::new()) }
}

/// Thaw the filesystem `fd` is on (EINVAL when it is not frozen).
pub fn thaw(fd: BorrowedFd<'_>) -> rustix::io::Result<()> {
    // SAFETY: as for `freeze`, with FITHAW.
    unsafe { ioctl(fd, NoArg::<FITHAW>::new()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opcodes_are_the_kernels() {
        // linux/fs.h on x86_64, aarch64 and the other common targets.
        assert_eq!(FIFREEZE as u64, 0xC004_5877);
        assert_eq!(FITHAW as u64, 0xC004_5878);
    }

    #[test]
    fn thawing_what_is_not_frozen_is_refused_not_harmful() {
        let dir = tempfile::tempdir().unwrap();
        let fd = rustix::fs::open(
            dir.path(),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        use std::os::fd::AsFd;
        // EINVAL (not frozen), EPERM (not root) or EOPNOTSUPP (tmpfs):
        // never success.
        assert!(thaw(fd.as_fd()).is_err());
    }
}
