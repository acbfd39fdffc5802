//! The simulator's OAuth and REST endpoints over real HTTP: the dialog, the token exchange (a code works once and a
//! failed exchange burns it), profile, logout, the API faults, and the error envelope of unknown routes.

use std::time::Duration;

use super::super::Faults;
use super::super::testing::{Harness, assert_error};
use super::*;

#[tokio::test]
async fn dialog_redirects_to_the_login_app_with_a_session() {
    let h = Harness::start().await;
    let res = h.get(h.dialog_url(Some("st 1/é"))).await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let location = res.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let url = h.sim.base_url().join(&location).unwrap();
    assert_eq!(url.path(), "/login");
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(pairs.len(), 3, "{location}");
    assert_eq!(pairs[0].0, "user_id");
    assert_eq!(pairs[0].1.len(), 24);
    assert_eq!(pairs[1], ("client_id".into(), h.client().client_id.clone()));
    assert_eq!(pairs[2], ("user_type".into(), "individual".into()));
    assert_eq!(h.sim.journal().states_seen, ["st 1/é"]);
}

#[tokio::test]
async fn dialog_rejects_a_redirect_uri_that_is_not_exactly_the_registered_one() {
    let h = Harness::start().await;
    let redirect = format!("{}/", h.client().redirect_uri);
    let wrong = h.dialog_url_with(&[
        ("response_type", "code"),
        ("client_id", &h.client().client_id),
        ("redirect_uri", &redirect),
        ("state", "s"),
    ]);
    let res = h.get(wrong).await;
    assert_error(res, StatusCode::BAD_REQUEST, "UDAPI100068", KeyCase::Snake).await;

    let unknown_client = h.dialog_url_with(&[
        ("response_type", "code"),
        ("client_id", "nope"),
        ("redirect_uri", &h.client().redirect_uri),
    ]);
    assert_error(h.get(unknown_client).await, StatusCode::BAD_REQUEST, "UDAPI100068", KeyCase::Snake).await;

    let token_flow = h.dialog_url_with(&[
        ("response_type", "token"),
        ("client_id", &h.client().client_id),
        ("redirect_uri", &h.client().redirect_uri),
    ]);
    assert_error(h.get(token_flow).await, StatusCode::BAD_REQUEST, "UDAPI100068", KeyCase::Snake).await;
}

#[tokio::test]
async fn token_exchange_answers_the_flat_twelve_field_body() {
    let h = Harness::start().await;
    let code = h.login(0).await;
    let before = Utc::now();
    let res = h.exchange(&code, &h.client().client_secret).await;
    let after = Utc::now();
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    let mut keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = [
        "email",
        "exchanges",
        "products",
        "broker",
        "user_id",
        "user_name",
        "order_types",
        "user_type",
        "poa",
        "is_active",
        "access_token",
        "extended_token",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(body["user_id"], h.user().user_id.as_str());
    assert_eq!(body["email"], h.user().email.as_str());
    assert_eq!(body["broker"], "UPSTOX");
    assert_eq!(body["exchanges"], json!(EXCHANGES));
    assert_eq!(body["products"], json!(PRODUCTS));
    assert_eq!(body["order_types"], json!(ORDER_TYPES));
    assert_eq!(
        (body["user_type"].as_str(), body["poa"].as_bool(), body["is_active"].as_bool()),
        (Some("individual"), Some(false), Some(true))
    );
    for key in ["access_token", "extended_token"] {
        let token = body[key].as_str().unwrap();
        assert!(token.starts_with("eyJ") && token.len() >= 100, "{key} has a JWT shape");
    }
    assert_ne!(body["access_token"], body["extended_token"]);
    let journal = h.sim.journal();
    assert_eq!(journal.token_posts, [code]);
    assert_eq!(journal.access_tokens_issued, 1);
    let expires_at = h.sim.shared.lock().tokens[body["access_token"].as_str().unwrap()].expires_at;
    let expected_expiry = [expiry_for(before), expiry_for(after)].map(|e| e.with_timezone(&Utc));
    assert!(expected_expiry.contains(&expires_at), "{expires_at}");
}

#[tokio::test]
async fn a_code_works_once() {
    let h = Harness::start().await;
    let code = h.login(0).await;
    assert_eq!(h.exchange(&code, &h.client().client_secret).await.status(), StatusCode::OK);
    let again = h.exchange(&code, &h.client().client_secret).await;
    assert_error(again, StatusCode::BAD_REQUEST, "UDAPI100057", KeyCase::Camel).await;
    assert_eq!(h.sim.journal().token_posts, [code.clone(), code]);
    assert_eq!(h.sim.journal().access_tokens_issued, 1);
}

#[tokio::test]
async fn a_failed_exchange_burns_the_code() {
    let h = Harness::start().await;
    let code = h.login(0).await;
    let wrong = h.exchange(&code, "not-the-secret").await;
    assert_error(wrong, StatusCode::UNAUTHORIZED, "UDAPI100069", KeyCase::Camel).await;
    let right = h.exchange(&code, &h.client().client_secret).await;
    assert_error(right, StatusCode::BAD_REQUEST, "UDAPI100057", KeyCase::Camel).await;
}

#[tokio::test]
async fn token_5xx_fault_answers_503_and_still_burns_the_code() {
    let h = Harness::start_with(Faults { token_5xx_first: 1, ..Faults::default() }).await;
    let code = h.login(0).await;
    let first = h.exchange(&code, &h.client().client_secret).await;
    assert_error(first, StatusCode::SERVICE_UNAVAILABLE, "UDAPI100500", KeyCase::Camel).await;
    let retry = h.exchange(&code, &h.client().client_secret).await;
    assert_error(retry, StatusCode::BAD_REQUEST, "UDAPI100057", KeyCase::Camel).await;
    let fresh = h.login(1).await;
    assert_eq!(h.exchange(&fresh, &h.client().client_secret).await.status(), StatusCode::OK);
}

fn token_form<'a>(h: &'a Harness, code: &'a str) -> Vec<(&'static str, &'a str)> {
    let c = h.client();
    vec![
        ("code", code),
        ("client_id", &c.client_id),
        ("client_secret", &c.client_secret),
        ("redirect_uri", &c.redirect_uri),
        ("grant_type", "authorization_code"),
    ]
}

#[tokio::test]
async fn token_rejects_a_redirect_uri_other_than_the_codes() {
    let h = Harness::start().await;
    let code = h.login(0).await;
    let mut form = token_form(&h, &code);
    form[3].1 = "http://127.0.0.1:9/other";
    assert_error(h.post_token(&form).await, StatusCode::BAD_REQUEST, "UDAPI100068", KeyCase::Camel).await;
    let again = h.exchange(&code, &h.client().client_secret).await;
    assert_error(again, StatusCode::BAD_REQUEST, "UDAPI100057", KeyCase::Camel).await;
}

#[tokio::test]
async fn token_rejects_other_grant_types() {
    let h = Harness::start().await;
    let code = h.login(0).await;
    let mut form = token_form(&h, &code);
    form[4].1 = "client_credentials";
    assert_error(h.post_token(&form).await, StatusCode::BAD_REQUEST, "UDAPI100036", KeyCase::Camel).await;
}

#[tokio::test]
async fn token_rejects_an_expired_or_unknown_code() {
    let h = Harness::start().await;
    let code = h.login(0).await;
    let backdated = Instant::now().checked_sub(CODE_TTL + Duration::from_secs(1)).unwrap();
    h.sim.shared.lock().codes.get_mut(&code).unwrap().issued = backdated;
    let expired = h.exchange(&code, &h.client().client_secret).await;
    assert_error(expired, StatusCode::BAD_REQUEST, "UDAPI100057", KeyCase::Camel).await;
    let unknown = h.exchange("AbC123", &h.client().client_secret).await;
    assert_error(unknown, StatusCode::BAD_REQUEST, "UDAPI100057", KeyCase::Camel).await;
    assert_eq!(h.sim.journal().token_posts, [code.as_str(), "AbC123"]);
}

#[tokio::test]
async fn profile_accepts_the_issued_token_only() {
    let h = Harness::start().await;
    let token = h.access_token().await;
    let res = h.profile(Some(&token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"].as_object().unwrap().len(), 11);
    assert_eq!(body["data"]["user_id"], h.user().user_id.as_str());
    assert_eq!(body["data"]["email"], h.user().email.as_str());
    assert_eq!(body["data"]["ddpi"], false);

    let forged = format!("{}x", token);
    assert_error(h.profile(Some(&forged)).await, StatusCode::UNAUTHORIZED, "UDAPI100050", KeyCase::Snake).await;
    assert_error(h.profile(None).await, StatusCode::UNAUTHORIZED, "UDAPI100050", KeyCase::Snake).await;

    h.sim.shared.lock().tokens.get_mut(&token).unwrap().expires_at = Utc::now() - chrono::Duration::seconds(1);
    assert_error(h.profile(Some(&token)).await, StatusCode::UNAUTHORIZED, "UDAPI100050", KeyCase::Snake).await;
}

#[tokio::test]
async fn logout_revokes_the_token() {
    let h = Harness::start().await;
    let token = h.access_token().await;
    let res = h.logout(&token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap(), json!({"status": "success", "data": true}));
    assert_error(h.profile(Some(&token)).await, StatusCode::UNAUTHORIZED, "UDAPI100050", KeyCase::Snake).await;
    assert_error(h.logout(&token).await, StatusCode::UNAUTHORIZED, "UDAPI100050", KeyCase::Snake).await;
}

#[tokio::test]
async fn profile_429_refuses_even_a_valid_token() {
    let h = Harness::start().await;
    let token = h.access_token().await;
    h.sim.set_faults(Faults { profile_429: true, ..Faults::default() });
    assert_error(h.profile(Some(&token)).await, StatusCode::TOO_MANY_REQUESTS, "UDAPI10005", KeyCase::Snake).await;
    h.sim.set_faults(Faults::default());
    assert_eq!(h.profile(Some(&token)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_null_user_name_keeps_the_twelve_fields() {
    let h = Harness::start_with(Faults { token_null_user_name: true, ..Faults::default() }).await;
    let code = h.login(0).await;
    let body: serde_json::Value = h.exchange(&code, &h.client().client_secret).await.json().await.unwrap();
    assert_eq!(body.as_object().unwrap().len(), 12);
    assert!(body["user_name"].is_null(), "{body}");
    assert_eq!(h.profile(body["access_token"].as_str()).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_403_html_is_the_same_page_every_time_and_spends_the_code() {
    let h = Harness::start_with(Faults { token_403_html: true, ..Faults::default() }).await;
    let code = h.login(0).await;
    let mut pages = Vec::new();
    for attempt in [code.clone(), h.login(1).await] {
        let res = h.exchange(&attempt, &h.client().client_secret).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(res.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        pages.push(res.text().await.unwrap());
    }
    assert_eq!(pages[0], pages[1]);
    assert!(pages[0].contains("403 Forbidden"));
    h.sim.set_faults(Faults::default());
    let again = h.exchange(&code, &h.client().client_secret).await;
    assert_error(again, StatusCode::BAD_REQUEST, "UDAPI100057", KeyCase::Camel).await;
    assert_eq!(h.sim.journal().access_tokens_issued, 0);
}

#[tokio::test]
async fn profile_rejects_new_tokens_only_those_issued_under_the_fault() {
    let h = Harness::start().await;
    let old = h.access_token().await;
    h.sim.set_faults(Faults { profile_rejects_new_tokens: true, ..Faults::default() });
    let code = h.login(1).await;
    let res = h.exchange(&code, &h.client().client_secret).await;
    assert_eq!(res.status(), StatusCode::OK, "the exchange itself succeeds");
    let fresh = res.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    assert_error(h.profile(Some(&fresh)).await, StatusCode::UNAUTHORIZED, "UDAPI100050", KeyCase::Snake).await;
    assert_eq!(h.profile(Some(&old)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_the_envelope() {
    let h = Harness::start().await;
    let res = h.get(h.sim.base_url().join("v2/nothing?x=1").unwrap()).await;
    assert_error(res, StatusCode::NOT_FOUND, "UDAPI100404", KeyCase::Snake).await;
    let res = h.http.post(h.sim.base_url().join("v2/user/profile").unwrap()).send().await.unwrap();
    assert_error(res, StatusCode::METHOD_NOT_ALLOWED, "UDAPI100405", KeyCase::Snake).await;
}
