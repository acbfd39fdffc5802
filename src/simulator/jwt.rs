//! Access tokens as Upstox shapes them: a JWT with Upstox's header and a payload naming the user, signed by nothing
//! (256 random bits stand in for the signature). Pure functions: this module keeps no state and logs nothing.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{SimUser, random_alphanumeric};

/// The JWT header Upstox tokens carry (`{"typ":"JWT","key_id":"sk_v1.0","alg":"HS256"}`).
const JWT_HEADER: &str = r#"{"typ":"JWT","key_id":"sk_v1.0","alg":"HS256"}"#;

/// A JWT-shaped random token: Upstox's header, a payload naming the user, and 256 random bits as "signature".
pub(super) fn mint_jwt(user: &SimUser, iat: DateTime<Utc>, exp: DateTime<Utc>, extended: bool) -> String {
    let payload = json!({
        "sub": user.user_id,
        "jti": random_alphanumeric(24),
        "isMultiClient": false,
        "isPlusPlan": false,
        "isExtended": extended,
        "iat": iat.timestamp(),
        "iss": "udapi-gateway-service",
        "exp": exp.timestamp(),
    });
    let mut signature = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut signature);
    format!(
        "{}.{}.{}",
        base64url(JWT_HEADER.as_bytes()),
        base64url(payload.to_string().as_bytes()),
        base64url(&signature)
    )
}

/// Unpadded base64url (RFC 4648 §5).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        let cases = [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE")];
        for (input, expected) in cases {
            assert_eq!(base64url(input.as_bytes()), expected);
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert!(base64url(JWT_HEADER.as_bytes()).starts_with("eyJ"));
    }
}
