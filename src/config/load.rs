//! Loading: the figment layers (built-in defaults → TOML file → `UPSTOX_RELOGIN_` environment), with messages a
//! human can act on: a directory or an unreadable file is named as such, a stray `UPSTOX_RELOGIN_*` variable is
//! named with the prefixes that are valid, and unknown keys are reported together with every validation problem
//! instead of hiding them. Warns (never refuses) when the file holds inline secrets other users can read.
//!
//! Reads the config file and the environment; everything else is `validate`'s.

use std::collections::BTreeSet;
use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;
use figment::{Figment, Provider};

use super::secrets::{Exposure, exposure};
use super::{Config, ConfigError, ENV_PREFIX, Problem, RawConfig};

/// Unknown keys reported (and skipped) before giving up on finding the validation problems behind them.
const MAX_UNKNOWN_KEYS: usize = 64;

/// The figment of defaults → `path` → environment (valid `UPSTOX_RELOGIN_` variables only). The file must exist
/// and be readable.
pub fn figment(path: &Path) -> Result<Figment, ConfigError> {
    check_file(path)?;
    let top = top_level_keys();
    Ok(Figment::from(Serialized::defaults(RawConfig::default()))
        .merge(Toml::file_exact(path))
        .merge(Env::prefixed(ENV_PREFIX).filter(move |key| is_config_variable(&top, key.as_str())).split("__")))
}

/// Load and validate a configuration given as TOML text (defaults → `toml`; no file, no environment): for
/// configurations the program writes itself (`demo`).
pub fn load_str(toml: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = Figment::from(Serialized::defaults(RawConfig::default()))
        .merge(Toml::string(toml))
        .extract()
        .map_err(|e| ConfigError::Parse(Box::new(e)))?;
    raw.validate()
}

/// Load and validate the configuration at `path`. Every problem found is reported at once: stray environment
/// variables, unknown keys and validation problems together.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let figment = figment(path)?;
    let mut problems = stray_variables(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()));
    let (raw, unknown) = extract_reporting_unknown(&figment)?;
    problems.extend(unknown);
    let inline = raw.inline_secret_keys();
    let mut config = match raw.validate() {
        Ok(config) => config,
        Err(ConfigError::Invalid(more)) => {
            problems.extend(more);
            return Err(ConfigError::Invalid(problems));
        }
        Err(other) => return Err(other),
    };
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    config.warnings.extend(readable_inline_secrets(path, &inline));
    Ok(config)
}

fn check_file(path: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(ConfigError::IsDirectory(path.to_path_buf())),
        Ok(_) => std::fs::File::open(path).map(drop).map_err(|source| ConfigError::Unreadable {
            path: path.to_path_buf(),
            source,
            // SAFETY: geteuid has no preconditions and cannot fail.
            uid: unsafe { libc::geteuid() },
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ConfigError::Missing(path.to_path_buf())),
        Err(source) => Err(ConfigError::Unreadable {
            path: path.to_path_buf(),
            source,
            // SAFETY: as above.
            uid: unsafe { libc::geteuid() },
        }),
    }
}

/// The top-level keys of the configuration (`state_dir`, `server`, …), whatever `RawConfig` holds today.
fn top_level_keys() -> BTreeSet<String> {
    match Serialized::defaults(RawConfig::default()).data() {
        Ok(profiles) => profiles.into_values().flat_map(|dict| dict.into_keys()).collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// `key` is an environment variable's name without the prefix (`BROWSER__HEADLESS`): does it name a config key?
fn is_config_variable(top: &BTreeSet<String>, key: &str) -> bool {
    let first = key.split("__").next().unwrap_or_default().to_ascii_lowercase();
    top.contains(&first)
}

/// A problem for every `UPSTOX_RELOGIN_*` variable among `names` that sets no config key (`UPSTOX_RELOGIN_LOG`):
/// figment would only say "unknown field `log`".
pub(super) fn stray_variables(names: impl Iterator<Item = String>) -> Vec<Problem> {
    let top = top_level_keys();
    let config_var = format!("{ENV_PREFIX}CONFIG");
    let mut stray: Vec<String> = names
        .filter(|name| name.len() > ENV_PREFIX.len() && name[..ENV_PREFIX.len()].eq_ignore_ascii_case(ENV_PREFIX))
        .filter(|name| !name.eq_ignore_ascii_case(&config_var))
        .filter(|name| !is_config_variable(&top, &name[ENV_PREFIX.len()..]))
        .collect();
    stray.sort();
    let valid: Vec<String> = top.iter().map(|k| format!("{ENV_PREFIX}{}", k.to_ascii_uppercase())).collect();
    stray
        .into_iter()
        .map(|name| Problem {
            key: name,
            message: format!(
                "environment variable with the `{ENV_PREFIX}` prefix that names no config key; valid prefixes: {} \
                 (`__` separates nesting, e.g. {ENV_PREFIX}BROWSER__HEADLESS), and {config_var} for the file; \
                 fix: unset it (log levels come from RUST_LOG)",
                valid.join(", ")
            ),
        })
        .collect()
}

/// Extract `RawConfig`; when keys are unknown, report each, drop it and extract again, so that the validation
/// problems behind them are found too. Other extraction errors (a wrong type, TOML syntax) stop here.
fn extract_reporting_unknown(figment: &Figment) -> Result<(RawConfig, Vec<Problem>), ConfigError> {
    let mut error = match figment.extract::<RawConfig>() {
        Ok(raw) => return Ok((raw, Vec::new())),
        Err(e) => e,
    };
    if !only_unknown_fields(&error) {
        return Err(ConfigError::Parse(Box::new(error)));
    }
    let mut value: Value = figment.extract().map_err(|e| ConfigError::Parse(Box::new(e)))?;
    let mut unknown = Vec::new();
    for _ in 0..MAX_UNKNOWN_KEYS {
        for e in error.clone() {
            unknown.push(problem_of(&e));
            remove_path(&mut value, &e.path);
        }
        match Figment::from(Serialized::defaults(&value)).extract::<RawConfig>() {
            Ok(raw) => return Ok((raw, unknown)),
            Err(e) if only_unknown_fields(&e) => error = e,
            Err(e) => {
                unknown.extend(e.into_iter().map(|e| problem_of(&e)));
                return Err(ConfigError::Invalid(unknown));
            }
        }
    }
    Err(ConfigError::Parse(Box::new(error)))
}

fn only_unknown_fields(error: &figment::Error) -> bool {
    error.clone().into_iter().all(|e| matches!(e.kind, figment::error::Kind::UnknownField(..)) && !e.path.is_empty())
}

/// Remove the key at `path` (`["accounts", "0", "pinn"]`) from `value`.
fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut at = value;
    for part in parents {
        at = match at {
            Value::Dict(_, dict) => match dict.get_mut(part) {
                Some(v) => v,
                None => return,
            },
            Value::Array(_, items) => match part.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(v) => v,
                None => return,
            },
            _ => return,
        };
    }
    if let Value::Dict(_, dict) = at {
        dict.remove(last);
    }
}

/// `accounts.0.pin` → `accounts[0].pin`, as validation messages spell keys.
fn key_of(path: &[String]) -> String {
    path.iter().fold(String::new(), |mut key, part| {
        if part.parse::<usize>().is_ok() {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
        key
    })
}

fn problem_of(e: &figment::Error) -> Problem {
    let mut key = key_of(&e.path);
    // Inside a `type = "…"` table (a sink, `[coordination]`) the path stops at the table: name the field (a key the
    // user wrote, never a value) and say that the table's `type` decides which fields it takes.
    if let figment::error::Kind::UnknownField(field, expected) = &e.kind
        && e.path.last().is_none_or(|last| last != field)
    {
        let takes = if expected.is_empty() {
            "no other field (is `type` right?)".to_owned()
        } else {
            format!("one of {}", backticked(expected))
        };
        let message = format!("unknown field; with this `type` the table takes {takes}{}", source_of(e));
        if !key.is_empty() {
            key = format!("{key}.{field}");
        }
        return Problem { key, message };
    }
    Problem { key, message: format!("{}{}", describe_kind(&e.kind), source_of(e)) }
}

/// ` (in /etc/upstox-relogin/config.toml)`: where the value came from, when figment knows.
fn source_of(e: &figment::Error) -> String {
    let Some(meta) = e.metadata.as_ref() else { return String::new() };
    match &meta.source {
        Some(figment::Source::File(path)) => format!(" (in {})", path.display()),
        // A value figment re-read from another (a sink's table): its name is a Rust type, no help to a person.
        _ if meta.name.contains("::") => String::new(),
        _ => format!(" (in {})", meta.name),
    }
}

pub(super) fn format_figment_error(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|e| {
            let p = problem_of(&e);
            if p.key.is_empty() { p.message } else { p.to_string() }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `` `a`, `b` `` for the keys or values serde expected.
fn backticked(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// figment's message for one error, minus anything that could repeat a value from the file: a PIN written as a
/// number (`pin = 123456`) must not come back on stderr, nor a line of TOML quoted by a syntax error.
fn describe_kind(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
            let hint = if expected.contains("string") { " (quote the value)" } else { "" };
            format!("invalid value: expected {expected}{hint}")
        }
        Kind::UnknownVariant(found, expected) => {
            format!("unknown value `{found}`; expected one of {}", backticked(expected))
        }
        Kind::UnknownField(_, expected) => format!("unknown field; expected one of {}", backticked(expected)),
        Kind::Message(message) => {
            // TOML syntax errors quote the offending line (`3 | pin = …`): keep only the prose.
            let prose: Vec<&str> = message
                .lines()
                .filter(|l| {
                    let t = l.trim_start();
                    !(t.starts_with('|') || t.split_once('|').is_some_and(|(n, _)| n.trim().parse::<u32>().is_ok()))
                })
                .filter(|l| !l.trim().is_empty())
                .collect();
            prose.join(" ")
        }
        other => other.to_string(),
    }
}

/// A warning when the config file holds inline secrets (`inline`: their keys) and users other than this one can
/// read it.
fn readable_inline_secrets(path: &Path, inline: &[String]) -> Option<Problem> {
    if inline.is_empty() {
        return None;
    }
    let meta = std::fs::metadata(path).ok()?;
    let who = match exposure(&meta)? {
        Exposure::Everyone => "every user on this machine".to_owned(),
        Exposure::Group(gid) => format!("group {gid}"),
    };
    let keys: Vec<String> = inline.iter().map(|k| format!("`{k}`")).collect();
    Some(Problem {
        key: path.display().to_string(),
        message: format!(
            "holds inline secrets ({}) and is readable by {who} (mode {:04o}); fix: chmod 0600 {}, or give the \
             secrets as `*_file` (mode 0600) or `*_env`",
            keys.join(", "),
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
            path.display()
        ),
    })
}

impl RawConfig {
    /// The keys whose secret is written in the configuration itself (`accounts[0].pin`, a Redis URL's password).
    fn inline_secret_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for (i, a) in self.accounts.iter().enumerate() {
            for (name, value) in [("client_secret", &a.client_secret), ("pin", &a.pin), ("totp_secret", &a.totp_secret)]
            {
                if value.is_some() {
                    keys.push(format!("accounts[{i}].{name}"));
                }
            }
        }
        for (i, s) in self.sinks.iter().enumerate() {
            if let super::raw::RawSink::Redis { url, .. } = s
                && url::Url::parse(url).is_ok_and(|u| u.password().is_some())
            {
                keys.push(format!("sinks[{i}].url"));
            }
        }
        keys
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests {
    use super::*;
    use crate::config::fixtures::VALID;
    use figment::Jail;

    fn problems(toml: &str, env: &[(&str, &str)]) -> String {
        let mut out = String::new();
        Jail::expect_with(|jail| {
            jail.create_file("config.toml", toml)?;
            for (k, v) in env {
                jail.set_env(k, v);
            }
            out = load(Path::new("config.toml")).unwrap_err().to_string();
            Ok(())
        });
        out
    }

    #[test]
    fn unknown_keys_and_validation_problems_are_reported_together() {
        let toml =
            format!("{}\n[browser]\nheadles = true\n", VALID.replace("mobile = \"9876543210\"", "mobile = \"1\""))
                .replace("pin = \"123456\"", "pin = \"123456\"\npinn = \"x\"");
        let msg = problems(&toml, &[]);
        for key in ["`browser.headles`: unknown field", "`accounts[0].pinn`: unknown field", "`accounts[0].mobile`"] {
            assert!(msg.contains(key), "{key} missing from:\n{msg}");
        }
    }

    #[test]
    fn a_stray_prefixed_variable_is_named_with_the_valid_prefixes() {
        let msg = problems(VALID, &[("UPSTOX_RELOGIN_LOG", "debug")]);
        assert!(msg.contains("`UPSTOX_RELOGIN_LOG`"), "{msg}");
        assert!(msg.contains("UPSTOX_RELOGIN_BROWSER") && msg.contains("UPSTOX_RELOGIN_STATE_DIR"), "{msg}");
        assert!(msg.contains("RUST_LOG"), "{msg}");
        assert!(!msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn valid_variables_still_override() {
        Jail::expect_with(|jail| {
            jail.create_file("config.toml", VALID)?;
            jail.set_env("UPSTOX_RELOGIN_SCHEDULE__TIMEZONE", "UTC");
            jail.set_env("UPSTOX_RELOGIN_CONFIG", "config.toml");
            let c = load(Path::new("config.toml")).unwrap();
            assert_eq!(c.schedule.timezone, chrono_tz::UTC);
            Ok(())
        });
    }

    #[test]
    fn a_directory_is_called_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let msg = load(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("is a directory") && msg.contains("config.toml"), "{msg}");
    }

    #[test]
    fn world_readable_inline_secrets_warn_naming_the_keys() {
        use std::os::unix::fs::PermissionsExt;
        Jail::expect_with(|jail| {
            jail.create_file("config.toml", VALID)?;
            let path = jail.directory().join("config.toml");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let c = load(Path::new("config.toml")).unwrap();
            let w: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(w[0].contains("`accounts[0].pin`") && w[0].contains("every user"), "{w:?}");
            assert!(w[0].contains("chmod 0600"), "{w:?}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert!(load(Path::new("config.toml")).unwrap().warnings.is_empty());
            Ok(())
        });
    }
}
