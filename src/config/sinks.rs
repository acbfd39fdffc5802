//! `sinks[i]`: what a sink entry must say to work at 08:30, checked now. A file sink's path is absolute, its only
//! placeholder `{account}`, its `mode` never readable by others and its `group` known; a Redis sink's URL has a host
//! and a numeric database, its key is not empty. Resolving a group name reads the group database; no other I/O.

use std::ffi::CString;

use url::Url;

use super::raw::RawSink;
use super::validate::{Problems, resolve_secret};
use super::{FileAccess, SinkConfig};
use crate::secret::ClientSecret;

/// The one placeholder sink templates know.
const PLACEHOLDER: &str = "{account}";

pub(super) fn validate_sinks(p: &mut Problems, raw: &[RawSink], account_count: usize) -> Vec<SinkConfig> {
    if raw.is_empty() {
        p.add("sinks", "at least one [[sinks]] entry is required (type = \"file\" or \"redis\")");
    }
    let mut out = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let key = |field: &str| format!("sinks[{i}].{field}");
        match s {
            RawSink::File { path, mode, group, include_extended_token } => {
                let mut ok = template(p, &key("path"), path, account_count);
                if ok && !path.starts_with('/') {
                    p.add(key("path"), format!("must be an absolute path, got \"{path}\""));
                    ok = false;
                }
                let mode = match mode.as_deref().map(parse_mode) {
                    None => Some(FileAccess::PRIVATE.mode),
                    Some(Ok(mode)) => Some(mode),
                    Some(Err(message)) => {
                        p.add(key("mode"), message);
                        None
                    }
                };
                let gid = match group.as_deref().map(resolve_group) {
                    None => Some(None),
                    Some(Ok(gid)) => Some(Some(gid)),
                    Some(Err(message)) => {
                        p.add(key("group"), message);
                        None
                    }
                };
                if let (true, Some(mode), Some(gid)) = (ok, mode, gid) {
                    out.push(SinkConfig::File {
                        path: path.clone(),
                        access: FileAccess { mode, gid },
                        include_extended_token: *include_extended_token,
                    });
                }
            }
            RawSink::Redis { url, key: redis_key, channel, password_env, password_file, include_extended_token } => {
                let url_ok = match check_redis_url(url) {
                    Ok(()) => true,
                    Err(message) => {
                        p.add(key("url"), message);
                        false
                    }
                };
                let key_ok = template(p, &key("key"), redis_key, account_count);
                let password = if password_env.is_some() || password_file.is_some() {
                    resolve_secret(p, &format!("sinks[{i}].password"), &None, password_env, password_file)
                        .map(ClientSecret::new)
                } else {
                    None
                };
                if url_ok && key_ok {
                    out.push(SinkConfig::Redis {
                        url: url.clone(),
                        key: redis_key.clone(),
                        channel: channel.clone(),
                        password,
                        include_extended_token: *include_extended_token,
                    });
                }
            }
        }
    }
    out
}

/// A path or key template: not empty, no placeholder but `{account}`, and `{account}` when accounts share the sink.
fn template(p: &mut Problems, key: &str, value: &str, account_count: usize) -> bool {
    if value.trim().is_empty() {
        p.add(key, "must not be empty");
        return false;
    }
    let unknown: Vec<&str> = placeholders(value).filter(|ph| *ph != PLACEHOLDER).collect();
    if !unknown.is_empty() {
        p.add(key, format!("unknown placeholder {} (only `{PLACEHOLDER}` is known)", quoted(&unknown)));
        return false;
    }
    if account_count > 1 && !value.contains(PLACEHOLDER) {
        p.add(key, format!("must contain `{PLACEHOLDER}` when there are several accounts"));
        return false;
    }
    true
}

/// Every `{…}` in `value`.
fn placeholders(value: &str) -> impl Iterator<Item = &str> {
    value.match_indices('{').filter_map(|(at, _)| value[at..].find('}').map(|end| &value[at..=at + end]))
}

fn quoted(items: &[&str]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

/// `"0640"` → 0o640: octal, owner may read, the group may read (and write), others nothing, no special bits.
fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.trim().trim_start_matches("0o");
    let mode = match u32::from_str_radix(digits, 8) {
        Ok(mode) if !digits.is_empty() && digits.len() <= 4 => mode,
        _ => return Err(format!("expected octal permission bits such as \"0600\" or \"0640\", got \"{text}\"")),
    };
    if mode & 0o007 != 0 {
        return Err(format!("{mode:04o} lets every user read the token; fix: \"0640\" with `group`, or \"0600\""));
    }
    if mode & !0o660 != 0 || mode & 0o400 == 0 {
        return Err(format!(
            "{mode:04o} is not a token file's mode: the owner reads (and writes), the group at most reads and \
             writes, nothing is executable; e.g. \"0600\" or \"0640\""
        ));
    }
    Ok(mode)
}

/// A group name or numeric id → its gid (a name is looked up in the group database).
fn resolve_group(name: &str) -> Result<u32, String> {
    if let Ok(gid) = name.trim().parse::<u32>() {
        return Ok(gid);
    }
    let unknown = || format!("no group named \"{name}\" on this machine (see `getent group`)");
    let c_name = CString::new(name).map_err(|_| unknown())?;
    let mut group = std::mem::MaybeUninit::<libc::group>::uninit();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: a NUL-terminated name, an out struct, a buffer of the given
    // length and an out pointer; getgrnam_r writes only within them.
    let rc = unsafe { libc::getgrnam_r(c_name.as_ptr(), group.as_mut_ptr(), buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        return Err(unknown());
    }
    // SAFETY: getgrnam_r returned 0 with a non-null result, so it initialised `group`.
    Ok(unsafe { group.assume_init() }.gr_gid)
}

/// `redis://[user:password@]HOST[:PORT][/DB]` or `rediss://…`: a host, a numeric database, and what the Redis
/// client itself accepts.
fn check_redis_url(url: &str) -> Result<(), String> {
    let expected = "expected redis://HOST:PORT/DB or rediss://… (e.g. redis://127.0.0.1:6379/0)";
    let parsed = match Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "redis" | "rediss") => u,
        _ => return Err(expected.to_owned()),
    };
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("has no host; {expected}"));
    }
    let db = parsed.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<i64>().is_err() {
        return Err(format!("database `{db}` is not a number; {expected}"));
    }
    redis::IntoConnectionInfo::into_connection_info(url).map(drop).map_err(|e| format!("{e}; {expected}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_never_let_others_read() {
        assert_eq!(parse_mode("0640"), Ok(0o640));
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0o440"), Ok(0o440));
        for bad in ["0644", "0604", "0777", "0740", "0200", "1640", "abc", "", "08"] {
            assert!(parse_mode(bad).is_err(), "{bad} accepted");
        }
        assert!(parse_mode("0644").unwrap_err().contains("every user"));
    }

    #[test]
    fn groups_by_name_or_number() {
        assert_eq!(resolve_group("0"), Ok(0));
        assert_eq!(resolve_group("root"), Ok(0));
        assert!(resolve_group("no-such-group-here").unwrap_err().contains("no group named"));
    }

    #[test]
    fn redis_urls_need_a_host_and_a_numeric_db() {
        assert!(check_redis_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_redis_url("rediss://user:pw@redis.example:6380").is_ok());
        assert!(check_redis_url("redis://").unwrap_err().contains("no host"));
        assert!(check_redis_url("redis://localhost/zero").unwrap_err().contains("`zero` is not a number"));
        assert!(check_redis_url("http://localhost/0").is_err());
    }

    #[test]
    fn placeholders_are_found() {
        let found: Vec<&str> = placeholders("/srv/{acount}/{account}.json").collect();
        assert_eq!(found, ["{acount}", "{account}"]);
    }
}
