//! Agent definitions, as they come from the config file.

use serde::{Deserialize, Serialize};

/// One agent. `id` is the SIP user part agents register with (To user) and
/// the digest username.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentDef {
    pub id: String,
    pub password: String,
    #[serde(default = "default_max_calls")]
    pub max_calls: u32,
    /// Queues the agent serves; stored for the router, unused by the registrar.
    #[serde(default)]
    pub queues: Vec<String>,
    #[serde(default)]
    pub skills: Vec<String>,
}

fn default_max_calls() -> u32 {
    1
}

impl AgentDef {
    pub fn new(id: impl Into<String>, password: impl Into<String>) -> Self {
        AgentDef {
            id: id.into(),
            password: password.into(),
            max_calls: 1,
            queues: Vec::new(),
            skills: Vec::new(),
        }
    }
}

// Hand-written so the password never reaches a log line.
impl std::fmt::Debug for AgentDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentDef")
            .field("id", &self.id)
            .field("password", &"<redacted>")
            .field("max_calls", &self.max_calls)
            .field("queues", &self.queues)
            .field("skills", &self.skills)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_password() {
        let a = AgentDef::new("1001", "hunter2");
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
