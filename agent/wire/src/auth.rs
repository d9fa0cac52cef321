//! Authenticating remote agents: a key per agent, shared with the
//! orchestrator, proves the agent's identity with an HMAC-SHA256 challenge
//! and response during the handshake (docs/protocol.md, "Authentication",
//! says why HMAC and not mutual TLS, and gives the bytes).
//!
//! The orchestrator sends a fresh random nonce; the agent answers
//! `HMAC-SHA256(key, DOMAIN ‖ nonce ‖ hello)`, where `hello` is the payload
//! of the Hello it sent (the bytes after the frame's flags). The
//! orchestrator verifies it in constant time with the key its
//! configuration names for `Hello.key`. The key never travels.

use std::{collections::HashMap, fmt, io, os::unix::fs::MetadataExt as _, path::Path};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// Bytes of a challenge's nonce and of a proof.
pub const LEN: usize = 32;

/// Shortest key accepted, in bytes (128 bits).
pub const KEY_MIN: usize = 16;

/// Longest key accepted, in bytes (one SHA-256 block).
pub const KEY_MAX: usize = 64;

/// Binds a proof to this protocol and its purpose.
pub const DOMAIN: &[u8] = b"shadow-wire 2 agent proof\0";

/// A key file larger than this is not a key.
const FILE_MAX: u64 = 1024;

/// A secret key. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} bytes)", self.0.len())
    }
}

/// The keys of the agents an orchestrator accepts, by name: the name is the
/// identity an authenticated agent's reservations are kept under.
pub type Keys = HashMap<String, Key>;

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be opened or read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Others could read or change the key.
    #[error(
        "key file {path} must be owned by uid {euid} and readable by no one else (mode {mode:04o}, owner {owner}): chown and chmod 0600 it"
    )]
    Exposed {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        owner: u32,
        /// Ours.
        euid: u32,
    },
    /// Not hex, or a length outside `KEY_MIN..=KEY_MAX` bytes.
    #[error(
        "{path}: a key is {KEY_MIN} to {KEY_MAX} bytes written as hex on one line (e.g. `openssl rand -hex 32`)"
    )]
    Format {
        /// The file (or "key" for text).
        path: String,
    },
}

impl Key {
    /// A key from its hex text (surrounding whitespace ignored).
    pub fn from_hex(text: &str, path: &str) -> Result<Self, KeyError> {
        let bad = || KeyError::Format {
            path: path.to_owned(),
        };
        let text = text.trim();
        if !text.len().is_multiple_of(2) || !(KEY_MIN * 2..=KEY_MAX * 2).contains(&text.len()) {
            return Err(bad());
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad)?;
        Ok(Self(bytes))
    }

    /// A random key nobody holds (a decoy for unknown names).
    pub fn from_random() -> io::Result<Self> {
        Ok(Self(nonce()?.to_vec()))
    }

    /// Reads a key file: hex on one line, owned by this process's user and
    /// readable by no one else (mode 0600 or 0400).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let name = path.display().to_string();
        let read_err = |source| KeyError::Read {
            path: name.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid || meta.mode() & 0o077 != 0 {
            return Err(KeyError::Exposed {
                path: name,
                mode: meta.mode() & 0o7777,
                owner: meta.uid(),
                euid,
            });
        }
        let mut text = String::new();
        io::Read::read_to_string(&mut io::Read::take(file, FILE_MAX), &mut text)
            .map_err(read_err)?;
        Self::from_hex(&text, &name)
    }
}

/// The agent's proof for `nonce`, having sent the Hello payload `hello`.
pub fn proof(key: &Key, nonce: &[u8; LEN], hello: &[u8]) -> [u8; LEN] {
    mac(key, nonce, hello).finalize().into_bytes().into()
}

/// Whether `proof` is right, compared in constant time.
pub fn verify(key: &Key, nonce: &[u8; LEN], hello: &[u8], proof: &[u8; LEN]) -> bool {
    mac(key, nonce, hello).verify_slice(proof).is_ok()
}

fn mac(key: &Key, nonce: &[u8; LEN], hello: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; ours are 16..=64 bytes.
    let mut mac = <Hmac<Sha256>>::new_from_slice(&key.0).expect("HMAC accepts any key length");
    mac.update(DOMAIN);
    mac.update(nonce);
    mac.update(hello);
    mac
}

/// A fresh random nonce from the kernel.
pub fn nonce() -> io::Result<[u8; LEN]> {
    let mut buf = [0u8; LEN];
    let mut got = 0;
    while got < LEN {
        // SAFETY: the kernel writes at most `LEN - got` bytes into our
        // buffer from `got` on.
        let n = unsafe { libc::getrandom(buf[got..].as_mut_ptr().cast(), LEN - got, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        got += n as usize;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_proof_verifies_only_with_its_key_nonce_and_hello() {
        let key = Key::from_hex(HEX, "k").unwrap();
        let other = Key::from_hex(&HEX.replace("1f", "ff"), "k").unwrap();
        let n = [7; LEN];
        let p = proof(&key, &n, b"hello");
        assert!(verify(&key, &n, b"hello", &p));
        assert!(!verify(&other, &n, b"hello", &p));
        assert!(!verify(&key, &[8; LEN], b"hello", &p));
        assert!(!verify(&key, &n, b"hellO", &p));
        assert_ne!(nonce().unwrap(), nonce().unwrap());
    }

    #[test]
    fn keys_must_be_hex_of_a_sane_length_and_private_files() {
        for bad in [
            "",
            "abc",
            "zz0102030405060708090a0b0c0d0e0f",
            &"00".repeat(65),
        ] {
            assert!(Key::from_hex(bad, "k").is_err(), "{bad:?}");
        }
        assert_eq!(
            format!("{:?}", Key::from_hex(HEX, "k").unwrap()),
            "Key(32 bytes)"
        );
        let dir = std::env::temp_dir().join(format!("shadow-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.key");
        std::fs::write(&path, format!("{HEX}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Key::load(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 0600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Key::load(&path).unwrap(), Key::from_hex(HEX, "k").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
