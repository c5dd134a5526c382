//! ACL users from the configuration (`user NAME on >password ~pattern
//! +@read +@write` lines), the permission check run before every command,
//! and the ACL command (WHOAMI, LIST).
//!
//! Owns user rules and their evaluation; must not know how commands run.
//! The `default` user keeps `requirepass` semantics and all permissions; it
//! is not configured here.

use std::sync::Arc;

use bytes::Bytes;

use super::commands::{CmdError, CmdResult, CommandSpec, Flag, Handler, Secret, is};
use super::glob::glob_match;
use super::reply::Reply;
use super::state::{Session, Shared};

/// Redis 7.0's reply to a command the user may not run (`{}` is the name).
fn noperm_command(name: &str) -> CmdError {
    CmdError::Other(format!(
        "NOPERM this user has no permissions to run the '{name}' command"
    ))
}

/// Redis 7.0's reply to a key the user may not touch.
const NOPERM_KEY: &str =
    "NOPERM this user has no permissions to access one of the keys used as arguments";

/// Why a user line was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AclError {
    /// The line does not start with `user NAME`.
    #[error("ACL line must start with 'user NAME': {0:?}")]
    NoName(String),
    /// The `default` user is configured with `requirepass`, not here.
    #[error("the default user is configured with requirepass, not with a user line")]
    DefaultUser,
    /// The same name twice.
    #[error("user {0} is defined twice")]
    Duplicate(String),
    /// A rule this implementation does not know.
    #[error("unknown ACL rule {rule:?} for user {user}")]
    UnknownRule {
        /// The user.
        user: String,
        /// The rule.
        rule: String,
    },
}

/// What a `+`/`-` rule names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// Every command (`+@all`, `allcommands`).
    All,
    /// A category, without `@`.
    Category(String),
    /// A command, lower case.
    Command(String),
}

/// One configured user.
pub struct User {
    /// The user name.
    pub name: String,
    /// `on` (may authenticate) or `off`.
    enabled: bool,
    /// `nopass`: any password is accepted.
    nopass: bool,
    /// Accepted passwords (hashed).
    passwords: Vec<Secret>,
    /// SHA-256 hex of each password, for ACL LIST.
    password_hex: Vec<String>,
    /// Key patterns (`~pattern`); `~*` / `allkeys` is `*`.
    keys: Vec<Vec<u8>>,
    /// Command rules in order: the last one matching a command decides.
    rules: Vec<(bool, Target)>,
}

impl User {
    /// Parse one line: `user NAME rule...`.
    pub fn parse(line: &str) -> Result<User, AclError> {
        let mut words = line.split_whitespace();
        let name = match (words.next(), words.next()) {
            (Some(u), Some(n)) if u.eq_ignore_ascii_case("user") => n.to_string(),
            _ => return Err(AclError::NoName(line.to_string())),
        };
        if name == "default" {
            return Err(AclError::DefaultUser);
        }
        let mut user = User {
            name,
            enabled: false,
            nopass: false,
            passwords: Vec::new(),
            password_hex: Vec::new(),
            keys: Vec::new(),
            rules: Vec::new(),
        };
        for rule in words {
            user.apply(rule)?;
        }
        Ok(user)
    }

    /// Apply one rule.
    fn apply(&mut self, rule: &str) -> Result<(), AclError> {
        let lower = rule.to_ascii_lowercase();
        match lower.as_str() {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
                self.password_hex.clear();
            }
            "allkeys" => self.keys.push(b"*".to_vec()),
            "resetkeys" => self.keys.clear(),
            "allcommands" => self.rules.push((true, Target::All)),
            "nocommands" => self.rules.push((false, Target::All)),
            _ => return self.apply_prefixed(rule, &lower),
        }
        Ok(())
    }

    /// Rules with a prefix: `>pass`, `~pattern`, `+x`, `-x`.
    fn apply_prefixed(&mut self, rule: &str, lower: &str) -> Result<(), AclError> {
        if let Some(pass) = rule.strip_prefix('>') {
            self.passwords.push(Secret::new(pass.as_bytes()));
            self.password_hex.push(sha256_hex(pass.as_bytes()));
            self.nopass = false;
        } else if let Some(pattern) = rule.strip_prefix('~') {
            self.keys.push(pattern.as_bytes().to_vec());
        } else if let Some(what) = lower.strip_prefix('+') {
            self.rules.push((true, target(what)));
        } else if let Some(what) = lower.strip_prefix('-') {
            self.rules.push((false, target(what)));
        } else {
            return Err(AclError::UnknownRule {
                user: self.name.clone(),
                rule: rule.to_string(),
            });
        }
        Ok(())
    }

    /// Whether `password` opens this user (enabled users only).
    pub fn accepts(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        // Check every password so the time does not depend on which matched.
        let matched = self
            .passwords
            .iter()
            .fold(false, |acc, s| s.verify(password) | acc);
        self.nopass || matched
    }

    /// Whether the user may run `spec` (the last matching rule decides;
    /// nothing matching: denied).
    fn may_run(&self, spec: &CommandSpec) -> bool {
        let mut allowed = false;
        for (allow, t) in &self.rules {
            let hit = match t {
                Target::All => true,
                Target::Category(c) => spec.acl.iter().any(|a| a == c),
                Target::Command(n) => n == spec.name,
            };
            if hit {
                allowed = *allow;
            }
        }
        allowed
    }

    /// Whether the user may touch `key`.
    fn may_access(&self, key: &[u8]) -> bool {
        self.keys.iter().any(|p| glob_match(p, key, false))
    }

    /// The user as ACL LIST shows it.
    fn describe(&self) -> String {
        let mut out = format!(
            "user {} {}",
            self.name,
            if self.enabled { "on" } else { "off" }
        );
        if self.nopass {
            out.push_str(" nopass");
        }
        for h in &self.password_hex {
            out.push_str(" #");
            out.push_str(h);
        }
        for k in &self.keys {
            out.push_str(" ~");
            out.push_str(&String::from_utf8_lossy(k));
        }
        out.push_str(" -@all");
        for (allow, t) in &self.rules {
            out.push(' ');
            out.push(if *allow { '+' } else { '-' });
            match t {
                Target::All => out.push_str("@all"),
                Target::Category(c) => {
                    out.push('@');
                    out.push_str(c);
                }
                Target::Command(n) => out.push_str(n),
            }
        }
        out
    }
}

/// `@cat` or a command name.
fn target(what: &str) -> Target {
    match what.strip_prefix('@') {
        Some("all") => Target::All,
        Some(cat) => Target::Category(cat.to_string()),
        None => Target::Command(what.to_string()),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Every configured user (besides `default`).
#[derive(Default)]
pub struct Acl {
    /// The users, by configuration order.
    users: Vec<Arc<User>>,
}

impl Acl {
    /// Parse the `users` lines of the configuration.
    pub fn parse(lines: &[String]) -> Result<Acl, AclError> {
        let mut users: Vec<Arc<User>> = Vec::new();
        for line in lines {
            let user = User::parse(line)?;
            if users.iter().any(|u| u.name == user.name) {
                return Err(AclError::Duplicate(user.name));
            }
            users.push(Arc::new(user));
        }
        Ok(Acl { users })
    }

    /// Whether any user is configured.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The user `name` if `password` opens it.
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Option<Arc<User>> {
        let user = self.users.iter().find(|u| u.name.as_bytes() == name)?;
        user.accepts(password).then(|| user.clone())
    }
}

/// The check `execute` runs before a command: the session's user (none:
/// `default`, every permission) may run `spec` on the keys of `args`.
pub fn check(session: &Session, spec: &CommandSpec, args: &[Bytes]) -> CmdResult {
    let Some(user) = &session.user else {
        return Ok(());
    };
    if spec.has(Flag::NoAuth) {
        return Ok(());
    }
    if !user.may_run(spec) {
        return Err(noperm_command(spec.name));
    }
    if spec.keys(args).any(|k| !user.may_access(k)) {
        return Err(CmdError::Other(NOPERM_KEY.into()));
    }
    Ok(())
}

/// The ACL command's row of the command table.
pub(crate) const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "acl",
    arity: -2,
    flags: &[Flag::Loading, Flag::Stale],
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: &["slow"],
    summary: "Shows the current user (WHOAMI) and the configured users (LIST).",
    group: "server",
    since: "6.0.0",
    handler: Handler::Conn(acl_command),
}];

fn acl_command(
    session: &mut Session,
    shared: &Shared,
    args: &[Bytes],
    reply: &mut Reply<'_>,
) -> CmdResult {
    let sub = &args[1];
    if is(sub, "WHOAMI") && args.len() == 2 {
        let name = session.user.as_ref().map_or("default", |u| u.name.as_str());
        reply.bulk(name.as_bytes());
    } else if is(sub, "LIST") && args.len() == 2 {
        let default = match &shared.secret {
            Some(_) => "user default on #<hidden> ~* &* +@all",
            None => "user default on nopass ~* &* +@all",
        };
        reply.array(1 + shared.acl.users.len());
        reply.bulk(default.as_bytes());
        for u in &shared.acl.users {
            reply.bulk(u.describe().as_bytes());
        }
    } else {
        return Err(CmdError::Other(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try ACL HELP.",
            String::from_utf8_lossy(sub)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_line_parses_passwords_patterns_and_categories() {
        let u = User::parse("user ro on >pw ~app:* +@read").unwrap();
        assert!(u.accepts(b"pw"));
        assert!(!u.accepts(b"nope"));
        assert!(u.may_access(b"app:1"));
        assert!(!u.may_access(b"other"));
        assert_eq!(
            u.describe(),
            format!("user ro on #{} ~app:* -@all +@read", sha256_hex(b"pw"))
        );
    }

    #[test]
    fn disabled_users_cannot_authenticate() {
        let u = User::parse("user x off >pw ~*").unwrap();
        assert!(!u.accepts(b"pw"));
    }

    #[test]
    fn bad_lines_are_refused_with_a_reason() {
        assert!(matches!(User::parse("ro on"), Err(AclError::NoName(_))));
        assert_eq!(
            User::parse("user default on").err(),
            Some(AclError::DefaultUser)
        );
        assert!(matches!(
            User::parse("user a on %R~x"),
            Err(AclError::UnknownRule { .. })
        ));
        let twice = vec!["user a on".to_string(), "user a off".to_string()];
        assert_eq!(
            Acl::parse(&twice).err(),
            Some(AclError::Duplicate("a".into()))
        );
    }
}
