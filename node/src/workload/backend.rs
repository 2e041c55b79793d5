//! Where config bytes live, behind one interface: the replicated state (the
//! default: the bytes are in the entry that put the config) or a `file://`
//! URI, read on delivery. Whatever the backend, the bytes served are checked
//! against the digest an admin signed, so a backend is never trusted.

use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::state::namespace::{Config, ConfigSource};

/// Why config bytes could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("config backend {uri}: {problem}")]
    Unavailable { uri: String, problem: String },
    #[error("config backend {uri} returned content whose SHA-256 is not the one recorded: the file changed since it was put")]
    DigestMismatch { uri: String },
}

/// Check a backend URI's form (on apply, so every node agrees): `file://`
/// with an absolute path and no `.`/`..` segments.
pub fn check_uri(uri: &str) -> Result<(), String> {
    let path = uri.strip_prefix("file://").ok_or_else(|| format!("backend URI {uri:?}: only file:// is supported"))?;
    let p = Path::new(path);
    if uri.len() > 1024
        || !p.is_absolute()
        || p.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(format!("backend URI {uri:?}: use file:///absolute/path without . or .. segments"));
    }
    Ok(())
}

/// Reads config bytes; one implementation per URI scheme.
pub trait ConfigBackend: Send + Sync {
    fn read(&self, uri: &str) -> Result<Vec<u8>, BackendError>;
}

/// `file://` configs, confined to the directories the node's configuration names.
pub struct FileBackend {
    pub roots: Vec<PathBuf>,
}

impl ConfigBackend for FileBackend {
    fn read(&self, uri: &str) -> Result<Vec<u8>, BackendError> {
        let unavailable = |problem: String| BackendError::Unavailable { uri: uri.to_string(), problem };
        check_uri(uri).map_err(unavailable)?;
        let path = Path::new(uri.trim_start_matches("file://"));
        if !self.roots.iter().any(|r| path.starts_with(r)) {
            return Err(unavailable(
                "outside this node's config directories (workload.config_dirs in its configuration)".into(),
            ));
        }
        let meta = std::fs::metadata(path).map_err(|e| unavailable(e.to_string()))?;
        if meta.len() > crate::state::namespace::MAX_INLINE_CONFIG as u64 * 16 {
            return Err(unavailable("file too large".into()));
        }
        std::fs::read(path).map_err(|e| unavailable(e.to_string()))
    }
}

/// The bytes of `config`, from wherever they live, checked against its digest.
pub fn content(config: &Config, files: &dyn ConfigBackend) -> Result<Vec<u8>, BackendError> {
    match &config.source {
        ConfigSource::Inline(bytes) => Ok(bytes.clone()),
        ConfigSource::Uri(uri) => {
            let bytes = files.read(uri)?;
            if <[u8; 32]>::from(Sha256::digest(&bytes)) != config.digest {
                return Err(BackendError::DigestMismatch { uri: uri.clone() });
            }
            Ok(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_configs_are_confined_and_checked_against_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.toml");
        std::fs::write(&path, b"a = 1\n").unwrap();
        let uri = format!("file://{}", path.display());
        let config = |digest: [u8; 32]| Config {
            digest,
            media_type: "application/toml".into(),
            source: ConfigSource::Uri(uri.clone()),
            written_at: 0,
        };
        let files = FileBackend { roots: vec![dir.path().to_path_buf()] };
        let good = config(Sha256::digest(b"a = 1\n").into());
        assert_eq!(content(&good, &files).unwrap(), b"a = 1\n");
        assert!(matches!(content(&config([0; 32]), &files), Err(BackendError::DigestMismatch { .. })));
        let elsewhere = FileBackend { roots: vec!["/nonexistent".into()] };
        assert!(matches!(content(&good, &elsewhere), Err(BackendError::Unavailable { .. })));
        for bad in ["http://x/y", "file://relative", "file:///a/../etc/passwd"] {
            assert!(check_uri(bad).is_err(), "{bad}");
        }
    }
}
