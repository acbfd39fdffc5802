//! The configuration the config module's unit tests start from (each test adds or overrides keys).

/// One account and one file sink, every key valid.
pub(crate) const VALID: &str = r#"
    state_dir = "/tmp/x"
    [[accounts]]
    name = "primary"
    client_id = "cid"
    redirect_uri = "http://127.0.0.1:5000/cb"
    mobile = "9876543210"
    client_secret = "sec"
    pin = "123456"
    totp_secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    [[sinks]]
    type = "file"
    path = "/tmp/x/{account}.json"
"#;
