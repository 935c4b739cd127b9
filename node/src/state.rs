//! The node's state directory (0700): who it is, and what it was given.
//!
//! ```text
//! STATE/
//!   lock           held while the agent runs: one agent per state directory
//!   node.id        the node's UUID, made on first start
//!   node.key       0600  RSA-2048 private key, made on first start
//!   agent.secret   0600  the agent secret core sent on approval
//!   core.toml      core's address and CA fingerprint, recorded at approval
//! ```

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tether_certs::files;
use tether_certs::node_key::NodeKey;
use tether_wire::NodeId;
use tether_wire::token::Fingerprint;

use crate::NodeError;

/// What the node recorded about its core when it was approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreRecord {
    /// Core's address.
    pub core_addr: String,
    /// Fingerprint of core's CA, `sha256:...`.
    pub ca_fingerprint: String,
}

/// The opened (and locked) state directory.
#[derive(Debug)]
pub struct NodeState {
    dir: PathBuf,
    lock: File,
    /// The node's id.
    pub node_id: NodeId,
    /// The node's key.
    pub key: NodeKey,
    secret: Option<[u8; 32]>,
    /// Core as recorded at approval.
    pub core: Option<CoreRecord>,
}

fn state_err(path: &Path, e: impl std::fmt::Display) -> NodeError {
    NodeError::State(format!("{}: {e}", path.display()))
}

impl NodeState {
    /// Opens `dir`, creating the directory, id and key on first start, and locks it.
    pub fn open(dir: &Path) -> Result<Self, NodeError> {
        files::create_private_dir(dir).map_err(|e| NodeError::State(e.to_string()))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| state_err(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(NodeError::State(format!(
                "another tether-node is running with the state directory {}",
                dir.display()
            )));
        }

        let id_path = dir.join("node.id");
        let node_id = if id_path.exists() {
            let text = std::fs::read_to_string(&id_path).map_err(|e| state_err(&id_path, e))?;
            text.trim()
                .parse()
                .map_err(|e| state_err(&id_path, format!("not a UUID: {e}")))?
        } else {
            let id = NodeId::random();
            files::write_public_file(&id_path, format!("{id}\n").as_bytes())
                .map_err(|e| NodeError::State(e.to_string()))?;
            id
        };

        let key_path = dir.join("node.key");
        let key = if key_path.exists() {
            let pem =
                files::read_private_text(&key_path).map_err(|e| NodeError::State(e.to_string()))?;
            NodeKey::from_pem(&pem).map_err(|e| state_err(&key_path, e))?
        } else {
            let key = NodeKey::generate().map_err(|e| NodeError::State(e.to_string()))?;
            files::write_private_file(&key_path, key.to_pem().as_bytes())
                .map_err(|e| NodeError::State(e.to_string()))?;
            key
        };

        let secret_path = dir.join("agent.secret");
        let secret = if secret_path.exists() {
            let text = files::read_private_text(&secret_path)
                .map_err(|e| NodeError::State(e.to_string()))?;
            let bytes = hex::decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| state_err(&secret_path, "not 32 bytes of hex"))?;
            Some(bytes)
        } else {
            None
        };

        let core_path = dir.join("core.toml");
        let core = if core_path.exists() {
            let text = std::fs::read_to_string(&core_path).map_err(|e| state_err(&core_path, e))?;
            Some(toml::from_str(&text).map_err(|e| state_err(&core_path, e))?)
        } else {
            None
        };

        Ok(Self {
            dir: dir.to_path_buf(),
            lock,
            node_id,
            key,
            secret,
            core,
        })
    }

    /// Lets go of the directory's lock just before this process runs another agent (an update).
    /// Closing the file on exec is not enough: the watchdog, spawned a moment before, shares the
    /// lock's open file until its own exec has closed it, and the kernel resumes a `vfork`
    /// parent before that; the new agent, taking the lock at once, found it held
    /// ("another tether-node is running") when the machine was busy. Unlocking releases it
    /// for every copy.
    pub(crate) fn unlock_for_exec(&self) {
        let _ = self.lock.unlock();
    }

    /// Takes the lock again after an exec that did not happen; false if another agent took the
    /// directory meanwhile.
    pub(crate) fn relock(&self) -> bool {
        self.lock.try_lock().is_ok()
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The agent secret, once approved.
    pub fn secret(&self) -> Option<&[u8; 32]> {
        self.secret.as_ref()
    }

    /// Stores the agent secret (0600) and what the node knows of core.
    pub fn save_approval(
        &mut self,
        secret: [u8; 32],
        core_addr: &str,
        ca: Fingerprint,
    ) -> Result<(), NodeError> {
        let core = CoreRecord {
            core_addr: core_addr.to_string(),
            ca_fingerprint: ca.to_string(),
        };
        let text = toml::to_string(&core).map_err(|e| NodeError::State(e.to_string()))?;
        files::write_public_file(&self.dir.join("core.toml"), text.as_bytes())
            .map_err(|e| NodeError::State(e.to_string()))?;
        files::write_private_file(
            &self.dir.join("agent.secret"),
            format!("{}\n", hex::encode(secret)).as_bytes(),
        )
        .map_err(|e| NodeError::State(e.to_string()))?;
        self.secret = Some(secret);
        self.core = Some(core);
        Ok(())
    }

    /// Forgets the agent secret (core no longer accepts it) so the node enrolls again.
    pub fn forget_secret(&mut self) -> Result<(), NodeError> {
        let path = self.dir.join("agent.secret");
        if path.exists() {
            std::fs::remove_file(&path).map_err(|e| state_err(&path, e))?;
        }
        self.secret = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_start_creates_identity_and_later_starts_keep_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let (id, key_pem) = {
            let mut state = NodeState::open(&dir).unwrap();
            assert!(state.secret().is_none());
            state
                .save_approval([9; 32], "127.0.0.1:1", Fingerprint([1; 32]))
                .unwrap();
            (state.node_id, state.key.to_pem())
        };
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("node.key")), 0o600);
        assert_eq!(mode(&dir.join("agent.secret")), 0o600);

        let mut state = NodeState::open(&dir).unwrap();
        assert_eq!(state.node_id, id);
        assert_eq!(state.key.to_pem(), key_pem);
        assert_eq!(state.secret(), Some(&[9; 32]));
        assert_eq!(state.core.as_ref().unwrap().core_addr, "127.0.0.1:1");
        state.forget_secret().unwrap();
        assert!(state.secret().is_none());
    }

    #[test]
    fn one_agent_per_state_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let _first = NodeState::open(tmp.path()).unwrap();
        let err = NodeState::open(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("another tether-node"), "{err}");
    }

    /// A copy of the lock's open file (what a just-spawned child holds until its exec closes
    /// it) keeps the directory locked; unlocking before the exec lets the next agent in.
    #[test]
    fn an_agent_about_to_exec_lets_the_next_one_in() {
        let tmp = tempfile::tempdir().unwrap();
        let first = NodeState::open(tmp.path()).unwrap();
        let child_copy = first.lock.try_clone().unwrap();
        drop(first);
        assert!(
            NodeState::open(tmp.path()).is_err(),
            "the copy holds the lock"
        );
        drop(child_copy);

        let first = NodeState::open(tmp.path()).unwrap();
        let child_copy = first.lock.try_clone().unwrap();
        first.unlock_for_exec();
        let next = NodeState::open(tmp.path()).expect("unlocked for the next agent");
        assert!(!first.relock(), "the next agent has it");
        drop((next, child_copy));
    }
}
