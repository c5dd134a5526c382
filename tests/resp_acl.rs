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
