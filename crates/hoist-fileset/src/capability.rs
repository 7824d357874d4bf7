//! File capabilities (`setcap cap_net_bind_service=+ep server`): the one extended
//! attribute Docker keeps when it puts a file into a layer, so a non-root process can
//! still bind port 80 in the container. The layer build writes it, the content tag hashes
//! it, and the embedded cluster's unpacker sets it again.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The extended attribute's name.
pub const CAPABILITY_XATTR: &str = "security.capability";

/// The PAX record that carries it in a tar (as Docker, containerd and GNU tar write it).
pub const CAPABILITY_PAX_RECORD: &str = "SCHILY.xattr.security.capability";

/// `path`'s file capabilities (the raw `vfs_cap_data`), following symlinks; `None` for a
/// file without any, or on a file system without extended attributes.
pub fn file_capability(path: &Path) -> Option<Vec<u8>> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = CString::new(CAPABILITY_XATTR).ok()?;
    // vfs_cap_data is 20 (v2) or 24 (v3) bytes.
    let mut buf = [0u8; 64];
    // SAFETY: both strings are NUL-terminated and live across the call; the kernel writes
    // at most `buf.len()` bytes into `buf`.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n > 0).then(|| buf[..n as usize].to_vec())
}

/// Gives `path` the capabilities `value` (as read by [`file_capability`]).
pub fn set_file_capability(path: &Path, value: &[u8]) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let name = CString::new(CAPABILITY_XATTR)?;
    // SAFETY: as above; the kernel reads `value.len()` bytes from `value`.
    let rc = unsafe {
        libc::setxattr(
            c.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_capabilities_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        assert_eq!(file_capability(&f), None);
        assert_eq!(file_capability(&dir.path().join("missing")), None);
    }
}
