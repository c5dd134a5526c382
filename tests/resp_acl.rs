//! ACL users from the configuration: a read-only user may GET but gets
//! Redis's -NOPERM on SET, a key pattern limits which keys a user touches,
//! AUTH / HELLO 3 AUTH switch users, ACL WHOAMI and ACL LIST answer, and
//! the default user keeps `requirepass` semantics.

mod common;

use common::{TestServer, bulk, error, simple};
use shoal::resp::codec::Frame;

const SET_DENIED: &str = "NOPERM this user has no permissions to run the 'set' command";
const KEY_DENIED: &str =
    "NOPERM this user has no permissions to access one of the keys used as arguments";

async fn server() -> TestServer {
    TestServer::with(|c| {
        c.requirepass = Some("adminpw".into());
        c.users = vec![
            "user reader on >rpw ~* +@read".into(),
            "user app on >apw ~app:* +@read +@write +@connection".into(),
            "user boss on >bpw allkeys +@all".into(),
            "user gone off >gpw ~* +@all".into(),
        ];
    })
    .await
}

#[tokio::test]
async fn a_read_only_user_gets_noperm_on_set_and_can_get() {
    let s = server().await;
    let mut admin = s.raw().await;
    assert_eq!(admin.call(&[b"AUTH", b"adminpw"]).await, simple("OK"));
    assert_eq!(admin.call(&[b"SET", b"k", b"v"]).await, simple("OK"));
    let mut r = s.raw().await;
    assert_eq!(r.call(&[b"AUTH", b"reader", b"rpw"]).await, simple("OK"));
    assert_eq!(r.call(&[b"GET", b"k"]).await, bulk("v"));
    assert_eq!(r.call(&[b"SET", b"k", b"w"]).await, error(SET_DENIED));
    assert_eq!(r.call(&[b"GET", b"k"]).await, bulk("v"));
    s.stop().await;
}

#[tokio::test]
async fn a_key_pattern_limits_the_keys_a_user_touches() {
    let s = server().await;
    let mut a = s.raw().await;
    assert_eq!(a.call(&[b"AUTH", b"app", b"apw"]).await, simple("OK"));
    assert_eq!(a.call(&[b"SET", b"app:1", b"x"]).await, simple("OK"));
    assert_eq!(a.call(&[b"GET", b"app:1"]).await, bulk("x"));
    assert_eq!(a.call(&[b"SET", b"other", b"x"]).await, error(KEY_DENIED));
    // One key outside the pattern refuses the whole command.
    assert_eq!(
        a.call(&[b"MSET", b"app:2", b"y", b"other", b"y"]).await,
        error(KEY_DENIED)
    );
    assert_eq!(a.call(&[b"GET", b"app:2"]).await, Frame::Null);
    s.stop().await;
}

#[tokio::test]
async fn hello_auth_switches_user_and_acl_whoami_and_list_answer() {
    let s = server().await;
    let mut b = s.raw().await;
    let hello = b.call(&[b"HELLO", b"3", b"AUTH", b"boss", b"bpw"]).await;
    assert!(matches!(hello, Frame::Map(_)), "{hello:?}");
    assert_eq!(b.call(&[b"ACL", b"WHOAMI"]).await, bulk("boss"));
    let Frame::Array(list) = b.call(&[b"ACL", b"LIST"]).await else {
        panic!("ACL LIST is an array");
    };
    assert_eq!(list.len(), 5);
    assert_eq!(list[0], bulk("user default on #<hidden> ~* &* +@all"));
    assert!(matches!(&list[1], Frame::Bulk(l) if l.starts_with(b"user reader on #")));
    // A user without @slow may not run ACL (as Redis).
    let mut r = s.raw().await;
    assert_eq!(r.call(&[b"AUTH", b"reader", b"rpw"]).await, simple("OK"));
    assert_eq!(
        r.call(&[b"ACL", b"WHOAMI"]).await,
        error("NOPERM this user has no permissions to run the 'acl' command")
    );
    s.stop().await;
}

#[tokio::test]
async fn wrong_passwords_and_disabled_users_are_refused_and_default_keeps_requirepass() {
    let s = server().await;
    let mut c = s.raw().await;
    let wrongpass = error("WRONGPASS invalid username-password pair or user is disabled.");
    assert_eq!(c.call(&[b"AUTH", b"reader", b"nope"]).await, wrongpass);
    assert_eq!(c.call(&[b"AUTH", b"gone", b"gpw"]).await, wrongpass);
    assert_eq!(c.call(&[b"AUTH", b"nobody", b"x"]).await, wrongpass);
    assert_eq!(
        c.call(&[b"GET", b"k"]).await,
        error("NOAUTH Authentication required.")
    );
    assert_eq!(
        c.call(&[b"AUTH", b"default", b"adminpw"]).await,
        simple("OK")
    );
    assert_eq!(c.call(&[b"ACL", b"WHOAMI"]).await, bulk("default"));
    assert_eq!(c.call(&[b"SET", b"any", b"1"]).await, simple("OK"));
    s.stop().await;
}

#[test]
fn users_tls_and_limits_load_from_a_toml_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("shoal.toml");
    let text = r#"
users = ["user ro on >pw ~app:* +@read", "user rw on >pw2 allkeys +@all"]
timeout = 30
client-output-buffer-limit = "1mb"
client-rate-limit = 1000
tls-listen = "127.0.0.1:6380"
tls-cert = "server.crt"
tls-key = "server.key"
"#;
    std::fs::write(&path, text).expect("write");
    let cfg = shoal::config::Config::from_file(&path).expect("valid config");
    assert_eq!(cfg.users.len(), 2);
    let limits = cfg.client_limits();
    assert_eq!(
        limits.idle_timeout,
        Some(std::time::Duration::from_secs(30))
    );
    assert_eq!(limits.output_buffer, 1024 * 1024);
    assert_eq!(limits.ops_per_sec, 1000);
    assert!(cfg.client_tls().is_some_and(|t| t.client_ca.is_none()));
    // tls-listen without a certificate is refused.
    std::fs::write(&path, "tls-listen = \"127.0.0.1:6380\"\n").expect("write");
    assert!(shoal::config::Config::from_file(&path).is_err());
}
