//! Configuration files for `boxoffice node` and `boxoffice api`: TOML with the same keys as the
//! flags (`node_id`, `listen`, …). A flag or its environment variable wins over the file; the file
//! wins over the default.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Reads a TOML file into `T`, refusing unknown keys so a typo is not silently ignored.
pub fn load<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, String> {
    let Some(path) = path else { return Ok(T::default()) };
    let text = std::fs::read_to_string(path).map_err(|e| format!("config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    pub node_id: Option<u64>,
    pub listen: Option<String>,
    pub advertise: Option<String>,
    pub data_dir: Option<String>,
    pub cluster_secret: Option<String>,
    pub cache_mb: Option<u64>,
    pub heartbeat_ms: Option<u64>,
    pub election_min_ms: Option<u64>,
    pub election_max_ms: Option<u64>,
    pub snapshot_every_logs: Option<u64>,
    pub max_clock_offset: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFile {
    pub listen: Option<String>,
    pub nodes: Option<Vec<String>>,
    pub cluster_secret: Option<String>,
    pub jwt_secret: Option<String>,
    pub dev_tokens: Option<bool>,
    pub hold_ttl: Option<String>,
    pub body_limit_bytes: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_parse_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "node_id = 3\nlisten = \"0.0.0.0:7003\"\ncluster_secret = \"s3cret-s3cret-s3cret\"\n")
            .unwrap();
        let file: NodeFile = load(Some(&path)).unwrap();
        assert_eq!((file.node_id, file.listen.as_deref()), (Some(3), Some("0.0.0.0:7003")));
        std::fs::write(&path, "node_idd = 3\n").unwrap();
        assert!(load::<NodeFile>(Some(&path)).unwrap_err().contains("node_idd"));
        assert!(load::<NodeFile>(None).unwrap().node_id.is_none());
    }
}
