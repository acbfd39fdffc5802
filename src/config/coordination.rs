//! Validation of `[coordination]`: `type = "local"` (the default) needs nothing; `type = "redis"` needs a
//! `redis://`/`rediss://` URL, a lease TTL within bounds and at most one password source. No I/O beyond reading the
//! password file or variable it is pointed at.

use std::time::Duration;

use url::Url;

use super::raw::RawCoordination;
use super::validate::{Problems, resolve_secret};
use super::{CoordinationConfig, RedisCoordination};
use crate::secret::ClientSecret;

/// Lease TTLs accepted (`coordination.lease_ttl_secs`): renewed every third, so one second is the floor.
const LEASE_TTL_SECS: std::ops::RangeInclusive<u64> = 1..=3600;

pub(super) fn validate(p: &mut Problems, raw: &RawCoordination) -> CoordinationConfig {
    let RawCoordination::Redis { url, key_prefix, password_env, password_file, lease_ttl_secs } = raw else {
        return CoordinationConfig::Local;
    };
    if !matches!(Url::parse(url), Ok(u) if matches!(u.scheme(), "redis" | "rediss")) {
        p.add("coordination.url", "expected redis://HOST:PORT/DB or rediss://… ");
    }
    if !LEASE_TTL_SECS.contains(lease_ttl_secs) {
        p.add(
            "coordination.lease_ttl_secs",
            format!("expected {}..={} seconds, got {lease_ttl_secs}", LEASE_TTL_SECS.start(), LEASE_TTL_SECS.end()),
        );
    }
    let password = if password_env.is_some() || password_file.is_some() {
        resolve_secret(p, "coordination.password", &None, password_env, password_file).map(ClientSecret::new)
    } else {
        None
    };
    CoordinationConfig::Redis(RedisCoordination {
        url: url.clone(),
        key_prefix: key_prefix.clone(),
        password,
        lease_ttl: Duration::from_secs(*lease_ttl_secs),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::fixtures::VALID;
    use crate::config::{CoordinationConfig, load_str};

    #[test]
    fn local_is_the_default_and_redis_takes_its_defaults() {
        assert!(matches!(load_str(VALID).unwrap().coordination, CoordinationConfig::Local));
        let c = load_str(&format!("{VALID}\n[coordination]\ntype = \"redis\"\nurl = \"rediss://r.example:6380/2\""));
        let CoordinationConfig::Redis(r) = c.unwrap().coordination else { panic!("expected redis") };
        assert_eq!(
            (r.url.as_str(), r.key_prefix.as_str(), r.lease_ttl.as_secs()),
            ("rediss://r.example:6380/2", "upstox-relogin:", 30)
        );
        assert!(r.password.is_none());
    }

    #[test]
    fn redis_problems_name_their_keys() {
        let msg = load_str(&format!(
            "{VALID}\n[coordination]\ntype = \"redis\"\nurl = \"http://r:6379\"\nlease_ttl_secs = 0\npassword_env = \"UPSTOX_RELOGIN_TEST_UNSET_REDIS_PW\""
        ))
        .unwrap_err()
        .to_string();
        for key in ["`coordination.url`", "`coordination.lease_ttl_secs`", "`coordination.password_env`"] {
            assert!(msg.contains(key), "{key} missing from {msg}");
        }
    }

    #[test]
    fn the_example_file_documents_every_coordination_key() {
        use figment::providers::{Format, Toml};
        let example = include_str!("../../config.toml.example");
        let raw: crate::config::RawConfig = figment::Figment::from(Toml::string(example)).extract().unwrap();
        assert!(matches!(raw.coordination, crate::config::raw::RawCoordination::Local {}));
        // Uncommenting the redis lines gives a valid redis coordinator.
        let section = &example[example.find("[coordination]").unwrap()..];
        let redis: String = section
            .lines()
            .map(|l| l.strip_prefix("# ").filter(|l| !l.starts_with(' ')).unwrap_or(l))
            .map(|l| if l.starts_with("type = ") { "type = \"redis\"" } else { l })
            .filter(|l| !l.starts_with("password_env"))
            .collect::<Vec<_>>()
            .join("\n");
        let c = load_str(&format!("{VALID}\n{redis}")).unwrap();
        let CoordinationConfig::Redis(r) = c.coordination else { panic!("expected redis from:\n{redis}") };
        assert_eq!((r.key_prefix.as_str(), r.lease_ttl.as_secs()), ("upstox-relogin:", 30));
    }

    #[test]
    fn a_local_coordinator_takes_no_redis_keys() {
        let msg = load_str(&format!("{VALID}\n[coordination]\ntype = \"local\"\nurl = \"redis://r\"")).unwrap_err();
        let msg = msg.to_string();
        assert!(msg.contains("`coordination.url`: unknown field") && msg.contains("is `type` right?"), "{msg}");
        let msg = load_str(&format!("{VALID}\n[coordination]\ntype = \"Redis\"")).unwrap_err().to_string();
        assert!(msg.contains("`coordination.type`: unknown value `Redis`; expected one of `local`, `redis`"), "{msg}");
    }
}
