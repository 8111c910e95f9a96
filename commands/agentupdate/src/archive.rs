//! Reading the downloaded tarball: gzip-compressed or plain, as the legacy
//! agent's `tarfile.open` accepted, into memory with a size cap (the
//! component's memory is bounded anyway; the cap gives a clear error
//! instead of a trap).

use std::io::Read;

/// One regular file or directory of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The path with leading `/`, `./` and `../` stripped (as the legacy
    /// agent matched `installer.sh`).
    pub path: String,
    pub kind: Kind,
    /// Permission bits from the header.
    pub mode: u32,
    pub contents: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    /// A symlink, hard link or device: never installed.
    Other,
}

/// What the unpacked archive may total.
pub const MAX_UNPACKED_BYTES: u64 = 96 << 20;

/// Every member of the tarball `bytes`.
pub fn members(bytes: &[u8]) -> Result<Vec<Member>, String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        read_tar(flate2::read::GzDecoder::new(bytes))
    } else if bytes.starts_with(b"BZh") || bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Err("compressed with bzip2 or xz: updates are plain or gzip-compressed tarballs".to_owned())
    } else {
        read_tar(bytes)
    }
}

fn read_tar(reader: impl Read) -> Result<Vec<Member>, String> {
    let mut capped = reader.take(MAX_UNPACKED_BYTES + 1);
    let members = read_members(&mut capped);
    if capped.limit() == 0 {
        return Err(format!("unpacks to more than {} MiB", MAX_UNPACKED_BYTES >> 20));
    }
    let members = members?;
    if members.is_empty() {
        return Err("empty archive".to_owned());
    }
    Ok(members)
}

fn read_members(reader: &mut impl Read) -> Result<Vec<Member>, String> {
    let mut archive = tar::Archive::new(&mut *reader);
    let mut members = Vec::new();
    for entry in archive.entries().map_err(|error| error.to_string())? {
        let mut entry = entry.map_err(|error| error.to_string())?;
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Directory,
            _ => Kind::Other,
        };
        let mode = header.mode().map_err(|error| error.to_string())? & 0o7777;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).map_err(|error| error.to_string())?;
        members.push(Member {
            path: strip_leading(&path).trim_end_matches('/').to_owned(),
            kind,
            mode,
            contents,
        });
    }
    // Read to the end: the tar ends before gzip's trailer, whose checksum
    // is what tells a truncated download from a whole one.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(|error| error.to_string())?;
    Ok(members)
}

/// Strip leading `/`, `./` and `../` one character at a time, as the legacy
/// agent did before looking for `installer.sh`.
fn strip_leading(mut path: &str) -> &str {
    while path.starts_with('/') || path.starts_with("./") || path.starts_with("../") {
        path = &path[1..];
    }
    path
}

/// How deep a member is: `a` is 0, `dir/a` is 1.
pub fn depth(path: &str) -> usize {
    path.matches('/').count()
}

/// The last segment of a path.
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
pub mod tests {
    use std::io::Write;

    use super::{Kind, MAX_UNPACKED_BYTES, members, strip_leading};

    /// A tarball of `(path, contents)` files.
    pub fn tarball(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, contents) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(0o755);
            header.set_entry_type(tar::EntryType::Regular);
            // Raw, so that tests can build the hostile paths `set_path` refuses.
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *contents).unwrap();
        }
        builder.into_inner().unwrap()
    }

    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn plain_and_gzip_tarballs_read_alike() {
        let tar = tarball(&[("./dir/a.wasm", b"wasm"), ("dir/a.wasm.sig", b"sig")]);
        for bytes in [tar.clone(), gzip(&tar)] {
            let members = members(&bytes).unwrap();
            assert_eq!(members.len(), 2);
            assert_eq!(members[0].path, "dir/a.wasm");
            assert_eq!(members[0].kind, Kind::File);
            assert_eq!(members[0].mode, 0o755);
            assert_eq!(members[1].contents, b"sig");
        }
    }

    #[test]
    fn broken_archives_are_errors_not_panics() {
        let tar = gzip(&tarball(&[("a.wasm", &[7u8; 5000])]));
        for cut in [1, 10, tar.len() / 2, tar.len() - 4] {
            assert!(members(&tar[..cut]).is_err(), "cut at {cut}");
        }
        assert!(members(b"").is_err());
        assert!(members(b"BZh91AY&SY").unwrap_err().contains("bzip2"));
    }

    #[test]
    fn a_decompression_bomb_is_stopped() {
        let big = vec![0u8; (MAX_UNPACKED_BYTES + 1024) as usize];
        let bomb = gzip(&tarball(&[("a.wasm", &big)]));
        assert!(bomb.len() < 1 << 20);
        assert!(members(&bomb).unwrap_err().contains("unpacks to more than"));
    }

    #[test]
    fn leading_dots_and_slashes_go_one_character_at_a_time() {
        assert_eq!(strip_leading("/./../a/installer.sh"), "a/installer.sh");
        assert_eq!(strip_leading(".hidden"), ".hidden");
        assert_eq!(strip_leading("../../x"), "x");
    }
}
