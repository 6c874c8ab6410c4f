//! The `[api]` section: who may read the query API and the wall, and who may act on them.
//!
//! Two roles. A **viewer** (a wall display, a dashboard) may read everything the API serves;
//! an **operator** may also act: acknowledge alerts, silence them, change alert rules. Each
//! token names where its secret is (an environment variable or a file), never the secret itself.
//!
//! ```toml
//! [[api.tokens]]
//! name = "wall-room-2"
//! role = "viewer"
//! token_env = "VIGIE_WALL_TOKEN"
//!
//! [[api.tokens]]
//! name = "duty-officer"
//! role = "operator"
//! token_file = "secrets/operator.token"
//! ```
//!
//! With no tokens configured, reads are open (as on a loopback demo) and nobody may act.

use serde::Deserialize;
use std::path::PathBuf;

/// `[api]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// `[[api.tokens]]`: the bearer tokens the API accepts and the role of each.
    #[serde(default)]
    pub tokens: Vec<ApiToken>,
}

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads only.
    Viewer,
    /// Reads, acknowledges and silences alerts, changes alert rules.
    Operator,
}

impl Role {
    /// The role's name, as in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// One `[[api.tokens]]` entry.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Who holds it: shown in acknowledgements and logs (the token never is).
    pub name: String,
    pub role: Role,
    /// Environment variable holding the token…
    #[serde(default)]
    pub token_env: Option<String>,
    /// …or file holding it (relative to the configuration file once loaded).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl ApiConfig {
    /// Checks the values; the error names the key (under `api.`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let mut names = std::collections::BTreeSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let key = |k: &str| format!("tokens[{i}].{k}");
            if t.name.trim().is_empty() {
                return Err((key("name"), "must not be empty".into()));
            }
            if !names.insert(t.name.as_str()) {
                return Err((key("name"), format!("`{}` is given twice", t.name)));
            }
            match (&t.token_env, &t.token_file) {
                (Some(_), Some(_)) => {
                    return Err((
                        key("token_env"),
                        "give token_env or token_file, not both".into(),
                    ))
                }
                (None, None) => {
                    return Err((key("token_env"), "give token_env or token_file".into()))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl ApiToken {
    /// Reads the token from the environment or the file (trimmed; never logged).
    pub fn read_token(&self) -> Result<String, String> {
        crate::ingest::read_token(&self.token_env, &self.token_file, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_errors_name_the_key() {
        let c: ApiConfig = toml::from_str(
            "[[tokens]]\nname = \"wall\"\nrole = \"viewer\"\ntoken_env = \"W\"\n\
             [[tokens]]\nname = \"duty\"\nrole = \"operator\"\ntoken_file = \"t\"\n",
        )
        .unwrap();
        assert_eq!(c.tokens[0].role, Role::Viewer);
        assert_eq!(c.tokens[1].role, Role::Operator);
        assert!(Role::Operator > Role::Viewer);
        c.validate().unwrap();
        let twice: ApiConfig = toml::from_str(
            "[[tokens]]\nname = \"a\"\nrole = \"viewer\"\ntoken_env = \"W\"\n\
             [[tokens]]\nname = \"a\"\nrole = \"viewer\"\ntoken_env = \"V\"\n",
        )
        .unwrap();
        assert_eq!(twice.validate().unwrap_err().0, "tokens[1].name");
        let none: ApiConfig =
            toml::from_str("[[tokens]]\nname = \"a\"\nrole = \"viewer\"\n").unwrap();
        assert_eq!(none.validate().unwrap_err().0, "tokens[0].token_env");
        assert!(toml::from_str::<ApiConfig>(
            "[[tokens]]\nname = \"a\"\nrole = \"admin\"\ntoken_env = \"W\"\n"
        )
        .is_err());
    }
}
