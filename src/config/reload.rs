//! A reload: the config file read again and split into what applies live
//! (agents, queues and feature codes) and what needs a restart (everything else: listen
//! addresses, shards, state dir, RTP range, registrar and management
//! settings, hold audio files), which is reported and left unchanged.

use std::path::Path;

use super::{Config, ConfigError};

/// A config ready to apply live, and what it could not change.
#[derive(Debug, Clone)]
pub struct Reload {
    /// The running config with the file's agents and queues.
    pub config: Config,
    /// Keys whose new values take effect only after a restart.
    pub needs_restart: Vec<String>,
}

impl Reload {
    /// Reads `file` (refused whole on any error, naming file, key and
    /// reason) and compares it with `running`.
    pub fn read(file: &Path, running: &Config) -> Result<Reload, ConfigError> {
        let new = Config::load(file)?;
        Ok(Reload::compare(new, running))
    }

    pub fn compare(mut new: Config, running: &Config) -> Reload {
        // The command line may override these, and it wins over the file
        // until the next start either way.
        new.sip.listen = running.sip.listen;
        new.engine.state_dir = running.engine.state_dir.clone();
        new.engine.shards = running.engine.shards;
        new.mgmt.listen = running.mgmt.listen;
        let mut needs_restart = Vec::new();
        let mut differs = |key: &str, a: String, b: String| {
            if a != b {
                needs_restart.push(key.to_string());
            }
        };
        // Sections compared whole: none of their keys can change live.
        differs("engine", format!("{:?}", new.engine), format!("{:?}", running.engine));
        differs("sip", format!("{:?}", new.sip), format!("{:?}", running.sip));
        differs("registrar", format!("{:?}", new.registrar), format!("{:?}", running.registrar));
        differs("mgmt", format!("{:?}", new.mgmt), format!("{:?}", running.mgmt));
        differs("media", format!("{:?}", new.media), format!("{:?}", running.media));
        // Hold audio is decoded once at start, for every shard's relay.
        for q in &new.queues {
            let before = running.queues.iter().find(|r| r.name == q.name).and_then(|r| r.hold_audio.clone());
            if q.hold_audio.is_some() && q.hold_audio != before {
                needs_restart.push(format!("queue.{}.hold_audio", q.name));
            }
        }
        let config = Config { agents: new.agents, queues: new.queues, features: new.features, ..running.clone() };
        Reload { config, needs_restart }
    }
}
