//! RESP hot-path micro-benchmarks: parsing a pipeline of SET requests,
//! executing GET/SET as a connection does (lookup + handler + reply), and
//! writing replies. Single-threaded, no sockets.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shoal::resp::codec::{Limits, Proto, parse_request};
use shoal::resp::commands::execute_data;
use shoal::resp::reply::Reply;
use shoal::store::{Store, StoreConfig, UnixMillis};

const NOW: UnixMillis = UnixMillis(1_700_000_000_000);
const BATCH: usize = 16;

fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

fn pipeline(cmd: &[u8], with_value: bool) -> Vec<u8> {
    let value = [b'v'; 100];
    (0..BATCH)
        .flat_map(|i| {
            let key = format!("key:{i:012}");
            if with_value {
                request(&[cmd, key.as_bytes(), &value])
            } else {
                request(&[cmd, key.as_bytes()])
            }
        })
        .collect()
}

fn parse(c: &mut Criterion) {
    let bytes = pipeline(b"SET", true);
    let mut g = c.benchmark_group("resp_parse");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("set_pipeline_16", |b| {
        let mut args = Vec::new();
        let limits = Limits::default();
        b.iter(|| {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(true) = parse_request(&mut buf, &mut args, &limits) {
                black_box(&args);
            }
        })
    });
    g.finish();
}

fn execute(c: &mut Criterion) {
    let store = Store::new(StoreConfig::default());
    for i in 0..BATCH {
        let key = format!("key:{i:012}");
        let _ = store.set(key.as_bytes(), Bytes::from_static(&[b'v'; 100]), None, NOW);
    }
    let mut g = c.benchmark_group("resp_execute");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, bytes) in [
        ("get_pipeline_16", pipeline(b"GET", false)),
        ("set_pipeline_16", pipeline(b"SET", true)),
    ] {
        g.bench_function(name, |b| {
            let mut args = Vec::new();
            let mut out = BytesMut::with_capacity(64 * 1024);
            let limits = Limits::default();
            b.iter(|| {
                let mut buf = BytesMut::from(&bytes[..]);
                out.clear();
                while let Ok(true) = parse_request(&mut buf, &mut args, &limits) {
                    let mut reply = Reply::new(&mut out, Proto::Resp2);
                    execute_data(&store, NOW, &args, &mut reply);
                }
                black_box(out.len());
            })
        });
    }
    g.finish();
}

fn replies(c: &mut Criterion) {
    let value = [b'v'; 100];
    c.bench_function("resp_reply/bulk_100b_x16", |b| {
        let mut out = BytesMut::with_capacity(64 * 1024);
        b.iter(|| {
            out.clear();
            let mut r = Reply::new(&mut out, Proto::Resp2);
            for _ in 0..BATCH {
                r.bulk(black_box(&value));
            }
            black_box(out.len());
        })
    });
}

criterion_group!(benches, parse, execute, replies);
criterion_main!(benches);
