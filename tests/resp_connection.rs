//! Connection commands: PING, ECHO, AUTH, HELLO (RESP3), SELECT, CLIENT,
//! COMMAND, QUIT, RESET.

mod common;

use bytes::Bytes;
use common::{TestServer, bulk, error, fails, run, simple};
use shoal::resp::codec::Frame;

#[tokio::test]
async fn ping_and_echo() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    assert_eq!(run::<String>(&mut c, &["PING"]).await.unwrap(), "PONG");
    assert_eq!(run::<String>(&mut c, &["PING", "hi"]).await.unwrap(), "hi");
    assert_eq!(
        run::<String>(&mut c, &["ECHO", "hey"]).await.unwrap(),
        "hey"
    );
    assert_eq!(
        fails(&mut c, &["PING", "a", "b"]).await,
        "ERR wrong number of arguments for 'ping' command"
    );
    assert_eq!(
        fails(&mut c, &["ECHO"]).await,
        "ERR wrong number of arguments for 'echo' command"
    );
    s.stop().await;
}

#[tokio::test]
async fn auth_is_required_when_a_password_is_set() {
    let s = TestServer::with(|c| c.requirepass = Some("s3cret".into())).await;
    let mut r = s.raw().await;
    assert_eq!(
        r.call(&[b"GET", b"k"]).await,
        error("NOAUTH Authentication required.")
    );
    assert_eq!(
        r.call(&[b"PING"]).await,
        error("NOAUTH Authentication required.")
    );
    assert_eq!(
        r.call(&[b"AUTH", b"wrong"]).await,
        error("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(
        r.call(&[b"AUTH", b"bob", b"s3cret"]).await,
        error("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(
        r.call(&[b"HELLO", b"3"]).await,
        error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
        )
    );
    assert_eq!(r.call(&[b"AUTH", b"s3cret"]).await, simple("OK"));
    assert_eq!(r.call(&[b"PING"]).await, simple("PONG"));
    // RESET forgets the authentication.
    assert_eq!(r.call(&[b"RESET"]).await, simple("RESET"));
    assert_eq!(
        r.call(&[b"PING"]).await,
        error("NOAUTH Authentication required.")
    );
    assert_eq!(
        r.call(&[b"AUTH", b"default", b"s3cret"]).await,
        simple("OK")
    );
    // The redis crate authenticates from the URL.
    let mut c = s.conn_url(&format!("redis://:s3cret@{}/", s.addr)).await;
    assert_eq!(run::<String>(&mut c, &["PING"]).await.unwrap(), "PONG");
    // HELLO AUTH authenticates and switches protocol at once.
    let mut r3 = s.raw().await;
    let reply = r3
        .call(&[b"HELLO", b"3", b"AUTH", b"default", b"s3cret"])
        .await;
    assert!(matches!(reply, Frame::Map(_)), "{reply:?}");
    s.stop().await;
}

#[tokio::test]
async fn auth_without_a_configured_password_is_explained() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    assert_eq!(
        r.call(&[b"AUTH", b"x"]).await,
        error(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
        )
    );
    assert_eq!(
        r.call(&[b"AUTH", b"default", b"anything"]).await,
        simple("OK")
    );
    s.stop().await;
}

#[tokio::test]
async fn hello_3_switches_to_resp3_frames() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    let reply = r.call(&[b"HELLO", b"3", b"SETNAME", b"me"]).await;
    let Frame::Map(pairs) = reply else {
        panic!("HELLO 3 replies a map, got {reply:?}");
    };
    let keys: Vec<Frame> = pairs.iter().map(|(k, _)| k.clone()).collect();
    let want: Vec<Frame> = [
        "server", "version", "proto", "id", "mode", "role", "modules",
    ]
    .iter()
    .map(|k| bulk(k))
    .collect();
    assert_eq!(keys, want);
    assert_eq!(pairs[2].1, Frame::Integer(3));
    // Raw bytes: nulls are `_`, maps are `%`.
    r.send(&[b"GET", b"missing"]).await;
    let mut buf = [0u8; 3];
    tokio::io::AsyncReadExt::read_exact(&mut r.stream, &mut buf)
        .await
        .unwrap();
    assert_eq!(&buf, b"_\r\n");
    assert_eq!(
        r.call(&[b"CONFIG", b"GET", b"maxmemory"]).await,
        Frame::Map(vec![(bulk("maxmemory"), bulk("0"))])
    );
    assert_eq!(r.call(&[b"CLIENT", b"GETNAME"]).await, bulk("me"));
    let info = r.call(&[b"INFO", b"server"]).await;
    assert!(
        matches!(
            info,
            Frame::Verbatim {
                format: [b't', b'x', b't'],
                ..
            }
        ),
        "{info:?}"
    );
    // HELLO 2 goes back.
    let back = r.call(&[b"HELLO", b"2"]).await;
    assert!(
        matches!(back, Frame::Array(ref v) if v.len() == 14),
        "{back:?}"
    );
    r.send(&[b"GET", b"missing"]).await;
    let mut buf = [0u8; 5];
    tokio::io::AsyncReadExt::read_exact(&mut r.stream, &mut buf)
        .await
        .unwrap();
    assert_eq!(&buf, b"$-1\r\n");
    assert_eq!(
        r.call(&[b"HELLO", b"4"]).await,
        error("NOPROTO unsupported protocol version")
    );
    assert_eq!(
        r.call(&[b"HELLO", b"x"]).await,
        error("ERR Protocol version is not an integer or out of range")
    );
    assert_eq!(
        r.call(&[b"HELLO", b"3", b"FOO"]).await,
        error("ERR Syntax error in HELLO option 'FOO'")
    );
    s.stop().await;
}

#[tokio::test]
async fn redis_crate_speaks_resp3() {
    let s = TestServer::start().await;
    let mut c = s
        .conn_url(&format!("redis://{}/?protocol=resp3", s.addr))
        .await;
    assert_eq!(
        run::<String>(&mut c, &["SET", "k", "v"]).await.unwrap(),
        "OK"
    );
    assert_eq!(
        run::<Option<String>>(&mut c, &["GET", "missing"])
            .await
            .unwrap(),
        None
    );
    let cfg: std::collections::HashMap<String, String> =
        run(&mut c, &["CONFIG", "GET", "maxmemory*"]).await.unwrap();
    assert_eq!(
        cfg.get("maxmemory-policy").map(String::as_str),
        Some("s3-fifo")
    );
    s.stop().await;
}

#[tokio::test]
async fn select_only_accepts_database_zero() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    assert_eq!(run::<String>(&mut c, &["SELECT", "0"]).await.unwrap(), "OK");
    assert_eq!(
        fails(&mut c, &["SELECT", "1"]).await,
        "ERR DB index is out of range"
    );
    assert_eq!(
        fails(&mut c, &["SELECT", "x"]).await,
        "ERR value is not an integer or out of range"
    );
    s.stop().await;
}

#[tokio::test]
async fn client_subcommands_name_and_describe_the_connection() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    let Frame::Integer(id) = r.call(&[b"CLIENT", b"ID"]).await else {
        panic!("CLIENT ID is an integer");
    };
    assert!(id > 0);
    assert_eq!(r.call(&[b"CLIENT", b"GETNAME"]).await, Frame::Null);
    assert_eq!(
        r.call(&[b"CLIENT", b"SETNAME", b"worker"]).await,
        simple("OK")
    );
    assert_eq!(r.call(&[b"CLIENT", b"GETNAME"]).await, bulk("worker"));
    assert_eq!(
        r.call(&[b"CLIENT", b"SETNAME", b"a b"]).await,
        error("ERR Client names cannot contain spaces, newlines or special characters.")
    );
    assert_eq!(
        r.call(&[b"CLIENT", b"SETINFO", b"LIB-NAME", b"mylib"])
            .await,
        simple("OK")
    );
    assert_eq!(
        r.call(&[b"CLIENT", b"SETINFO", b"lib-ver", b"1.2"]).await,
        simple("OK")
    );
    assert_eq!(
        r.call(&[b"CLIENT", b"SETINFO", b"foo", b"1"]).await,
        error("ERR Unrecognized option 'foo'")
    );
    let Frame::Bulk(info) = r.call(&[b"CLIENT", b"INFO"]).await else {
        panic!("CLIENT INFO is a bulk string");
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    assert!(
        info.starts_with(&format!("id={id} addr=127.0.0.1:")),
        "{info}"
    );
    assert!(
        info.contains(" name=worker ") && info.contains("lib-name=mylib lib-ver=1.2"),
        "{info}"
    );
    assert!(info.contains("cmd=client"), "{info}");
    let _other = s.raw().await;
    let mut c = s.conn().await;
    let list: String = run(&mut c, &["CLIENT", "LIST"]).await.unwrap();
    assert!(list.lines().count() >= 3, "{list}");
    assert!(list.contains("name=worker"));
    let only: String = run(&mut c, &["CLIENT", "LIST", "ID", &id.to_string()])
        .await
        .unwrap();
    assert_eq!(only.lines().count(), 1);
    assert_eq!(
        r.call(&[b"CLIENT", b"FOO"]).await,
        error("ERR unknown subcommand 'FOO'. Try CLIENT HELP.")
    );
    assert_eq!(
        r.call(&[b"CLIENT", b"SETNAME"]).await,
        error("ERR wrong number of arguments for 'client|setname' command")
    );
    assert!(matches!(
        r.call(&[b"CLIENT", b"HELP"]).await,
        Frame::Array(_)
    ));
    s.stop().await;
}

#[tokio::test]
async fn command_introspection_answers_from_the_table() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    let Frame::Integer(n) = r.call(&[b"COMMAND", b"COUNT"]).await else {
        panic!("COMMAND COUNT is an integer");
    };
    assert!(n >= 50, "{n} commands");
    let Frame::Array(all) = r.call(&[b"COMMAND"]).await else {
        panic!("COMMAND is an array");
    };
    assert_eq!(all.len() as i64, n);
    let info = r.call(&[b"COMMAND", b"INFO", b"get", b"nosuch"]).await;
    let Frame::Array(items) = info else {
        panic!("array")
    };
    let Frame::Array(get) = &items[0] else {
        panic!("GET info is an array")
    };
    assert_eq!(get[0], bulk("get"));
    assert_eq!(get[1], Frame::Integer(2));
    assert_eq!(
        get[2],
        Frame::Array(vec![simple("readonly"), simple("fast")])
    );
    assert_eq!(
        &get[3..6],
        &[Frame::Integer(1), Frame::Integer(1), Frame::Integer(1)]
    );
    assert_eq!(items[1], Frame::Null);
    let Frame::Array(docs) = r.call(&[b"COMMAND", b"DOCS", b"set"]).await else {
        panic!("DOCS is a map (flat in RESP2)")
    };
    assert_eq!(docs[0], bulk("set"));
    assert_eq!(
        r.call(&[b"COMMAND", b"GETKEYS", b"MSET", b"a", b"1", b"b", b"2"])
            .await,
        Frame::Array(vec![bulk("a"), bulk("b")])
    );
    // A container command whose subcommand names a key.
    assert_eq!(
        r.call(&[b"COMMAND", b"GETKEYS", b"MEMORY", b"USAGE", b"k"])
            .await,
        Frame::Array(vec![bulk("k")])
    );
    let Frame::Array(list) = r.call(&[b"COMMAND", b"LIST"]).await else {
        panic!("array")
    };
    assert!(list.contains(&Frame::Bulk(Bytes::from("incrbyfloat"))));
    s.stop().await;
}

#[tokio::test]
async fn quit_replies_ok_then_closes() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    r.send_raw(&common::encode_request(&[b"QUIT"])).await;
    assert_eq!(r.read_to_close().await, b"+OK\r\n");
    s.stop().await;
}

#[tokio::test]
async fn unauthenticated_clients_cannot_send_large_requests() {
    let s = TestServer::with(|c| c.requirepass = Some("pw".into())).await;
    let mut r = s.raw().await;
    let many: Vec<&[u8]> = vec![b"x"; 11];
    r.send(&many).await;
    assert_eq!(
        r.recv().await,
        Some(error(
            "ERR Protocol error: unauthenticated multibulk length"
        ))
    );
    assert_eq!(r.read_to_close().await, b"");
    let mut r = s.raw().await;
    let big = vec![b'p'; 20_000];
    r.send(&[b"AUTH", &big]).await;
    assert_eq!(
        r.recv().await,
        Some(error("ERR Protocol error: unauthenticated bulk length"))
    );
    // After AUTH the normal limits apply.
    let mut r = s.raw().await;
    assert_eq!(r.call(&[b"AUTH", b"pw"]).await, simple("OK"));
    assert_eq!(r.call(&[b"SET", b"k", &big]).await, simple("OK"));
    s.stop().await;
}
