//! The Redis sink against a real `redis-server`: the exact bytes, EXAT, PUBLISH, Redis down, and re-publishing.

mod support;

use redis::Commands;
use support::{RedisServer, Rig};

fn redis_tables(url: &str) -> String {
    format!(
        "\n[[sinks]]\ntype = \"redis\"\nurl = \"{url}\"\nkey = \"upstox:token:{{account}}\"\nchannel = \"upstox:token\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_the_same_bytes_as_the_file_with_exat_and_a_publish() {
    let redis = RedisServer::start();
    let rig = Rig::start().await;
    let config = rig.write_config(&rig.config_toml("", &redis_tables(&redis.url())));

    // Subscribe before the login so the PUBLISH is seen.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut sub_conn = client.get_connection().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let subscriber = std::thread::spawn(move || {
        let mut pubsub = sub_conn.as_pubsub();
        pubsub.subscribe("upstox:token").unwrap();
        ready_tx.send(()).unwrap();
        let msg = pubsub.get_message().unwrap();
        tx.send(msg.get_payload_bytes().to_vec()).unwrap();
    });
    ready_rx.recv().unwrap();

    rig.cli(&config, &["login"]).await.assert_code(0);

    let file_bytes = std::fs::read(rig.token_path()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let stored: Vec<u8> = conn.get("upstox:token:primary").unwrap();
    assert_eq!(stored, file_bytes, "Redis and the file hold byte-identical documents");
    let expire_at: i64 = redis::cmd("EXPIRETIME").arg("upstox:token:primary").query(&mut conn).unwrap();
    let doc = rig.read_token();
    let expires = chrono::DateTime::parse_from_rfc3339(doc["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expire_at, expires.timestamp(), "EXAT equals expires_at");
    let published = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("a message on the channel");
    assert_eq!(published, file_bytes);
    subscriber.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_still_writes_the_file_and_exits_1_naming_redis() {
    let rig = Rig::start().await;
    let dead = format!("redis://127.0.0.1:{}/0", support::free_port());
    let config = rig.write_config(&rig.config_toml("", &redis_tables(&dead)));
    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(1);
    let stderr = run.stderr();
    assert!(stderr.contains("redis:upstox:token:{account}") && stderr.contains("did not reach every sink"), "{stderr}");
    assert_eq!(rig.read_token()["generation"], 1, "the file sink got the document anyway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_missing_from_redis_is_copied_there_without_a_new_login() {
    let mut redis = RedisServer::start();
    let rig = Rig::start().await;
    let config = rig.write_config(&rig.config_toml("", &redis_tables(&redis.url())));
    rig.cli(&config, &["login"]).await.assert_code(0);
    // Redis restarts empty (no persistence): the token is gone from it but still valid.
    redis.stop();
    let redis = RedisServer::start_on(redis.port);
    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(0);
    assert!(run.stderr().contains("copied to"), "{}", run.stderr());
    assert_eq!(rig.sim.journal().token_posts.len(), 1, "no second login");
    let mut conn = redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
    let stored: Vec<u8> = conn.get("upstox:token:primary").unwrap();
    assert_eq!(stored, std::fs::read(rig.token_path()).unwrap());
}
