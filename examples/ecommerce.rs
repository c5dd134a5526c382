//! The seed use case: a shop's service with a real SQLite database
//! (`rusqlite`, bundled) and Shoal embedded in-process.
//!
//! - **Products**: read-through (`get_or_load`, single-flight, TTL); the
//!   loader is registered on the node, so misses load there once.
//! - **Inventory**: write-behind to SQLite (batched, coalesced per product).
//! - **Prices**: an update in SQLite invalidates the cached product.
//! - **Sessions**: cache-only entries with a TTL.
//! - **Load mode**: Zipf-distributed product reads from many tasks, first
//!   straight from SQLite, then through the cache; prints database queries
//!   avoided, hit ratio, and p50/p99 latency of both.
//!
//! ```text
//! cargo run --release --example ecommerce                 # demo + load
//! cargo run --release --example ecommerce -- --reads 200000 --tasks 64 --zipf 1.1
//! cargo run --release --example ecommerce -- --db-latency-us 0   # SQLite alone, no network delay
//! ```
//! Every database query also waits `--db-latency-us` (default 200 µs), a
//! stand-in for the network round trip to a database server (Tokio's timer
//! rounds it up to about 1 ms); with 0 the comparison is against a local
//! SQLite file in the page cache, behind one connection. The embedded node
//! is standalone here; `embedded` and `peer_with_seeds` show clusters.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use shoal::api::{Backend, BackendError, WritePolicy};
use shoal::transport::BoxFuture;
use shoal::{Cache, Node};

/// A product row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    /// Primary key.
    id: u64,
    /// Display name.
    name: String,
    /// Price in cents.
    price_cents: i64,
}

/// A shopper's session (cache only).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    /// Who.
    user: String,
    /// Product ids in the cart.
    cart: Vec<u64>,
}

/// The database: one SQLite connection, a query counter, a simulated delay.
#[derive(Clone)]
struct Db {
    /// The connection (SQLite connections are not `Sync`).
    conn: Arc<Mutex<Connection>>,
    /// Queries run (reads and writes).
    queries: Arc<AtomicU64>,
    /// Extra wait per query (network stand-in).
    latency: Duration,
}

impl Db {
    fn open(path: &Path, products: u64, latency: Duration) -> anyhow::Result<Db> {
        let mut conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL);
             CREATE TABLE inventory (product_id INTEGER PRIMARY KEY, qty INTEGER NOT NULL);",
        )?;
        let tx = conn.transaction()?;
        for id in 1..=products {
            tx.execute(
                "INSERT INTO products (id, name, price_cents) VALUES (?1, ?2, ?3)",
                params![
                    id as i64,
                    format!("product #{id}"),
                    100 + (id as i64 * 37) % 10_000
                ],
            )?;
            tx.execute(
                "INSERT INTO inventory (product_id, qty) VALUES (?1, 1000)",
                params![id as i64],
            )?;
        }
        tx.commit()?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            queries: Arc::new(AtomicU64::new(0)),
            latency,
        })
    }

    /// Run `f` on the connection off the async threads, after the delay.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .map_err(|_| "connection lock poisoned".to_string())?;
            f(&conn).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    async fn product(&self, id: u64) -> Result<Option<Product>, String> {
        self.with(move |c| {
            c.query_row(
                "SELECT id, name, price_cents FROM products WHERE id = ?1",
                params![id as i64],
                |r| {
                    Ok(Product {
                        id: r.get::<_, i64>(0)? as u64,
                        name: r.get(1)?,
                        price_cents: r.get(2)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    async fn set_price(&self, id: u64, cents: i64) -> Result<(), String> {
        self.with(move |c| {
            c.execute(
                "UPDATE products SET price_cents = ?2 WHERE id = ?1",
                params![id as i64, cents],
            )
            .map(|_| ())
        })
        .await
    }

    async fn stock(&self, id: u64) -> Result<Option<i64>, String> {
        self.with(move |c| {
            c.query_row(
                "SELECT qty FROM inventory WHERE product_id = ?1",
                params![id as i64],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }
}

/// Inventory writes go to SQLite through write-behind.
struct InventoryBackend(Db);

impl Backend<u64, i64> for InventoryBackend {
    fn load<'a>(&'a self, key: &'a u64) -> BoxFuture<'a, Result<Option<i64>, BackendError>> {
        Box::pin(async move { self.0.stock(*key).await.map_err(BackendError) })
    }

    fn store<'a>(
        &'a self,
        key: &'a u64,
        value: &'a i64,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        let (id, qty) = (*key as i64, *value);
        Box::pin(async move {
            self.0
                .with(move |c| {
                    c.execute(
                        "INSERT INTO inventory (product_id, qty) VALUES (?1, ?2)
                         ON CONFLICT(product_id) DO UPDATE SET qty = excluded.qty",
                        params![id, qty],
                    )
                    .map(|_| ())
                })
                .await
                .map_err(BackendError)
        })
    }

    fn remove<'a>(&'a self, key: &'a u64) -> BoxFuture<'a, Result<(), BackendError>> {
        let id = *key as i64;
        Box::pin(async move {
            self.0
                .with(move |c| {
                    c.execute("DELETE FROM inventory WHERE product_id = ?1", params![id])
                        .map(|_| ())
                })
                .await
                .map_err(BackendError)
        })
    }
}

/// Command-line options.
struct Opts {
    /// Products in the catalogue.
    products: u64,
    /// Reads per load run.
    reads: u64,
    /// Concurrent reader tasks.
    tasks: u64,
    /// Zipf exponent.
    zipf: f64,
    /// Simulated database round trip.
    db_latency: Duration,
    /// Skip the demo, run only the load comparison.
    load_only: bool,
}

fn parse_opts() -> anyhow::Result<Opts> {
    let mut o = Opts {
        products: 10_000,
        reads: 50_000,
        tasks: 32,
        zipf: 1.0,
        db_latency: Duration::from_micros(200),
        load_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--load-only" {
            o.load_only = true;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--products" => o.products = value.parse()?,
            "--reads" => o.reads = value.parse()?,
            "--tasks" => o.tasks = value.parse()?,
            "--zipf" => o.zipf = value.parse()?,
            "--db-latency-us" => o.db_latency = Duration::from_micros(value.parse()?),
            _ => anyhow::bail!(
                "unknown flag {flag} (use --products --reads --tasks --zipf --db-latency-us --load-only)"
            ),
        }
    }
    anyhow::ensure!(
        o.products > 0 && o.tasks > 0,
        "--products and --tasks must be > 0"
    );
    Ok(o)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = parse_opts()?;
    let dir = tempfile::tempdir()?;
    let db = Db::open(&dir.path().join("shop.db"), opts.products, opts.db_latency)?;
    println!(
        "SQLite catalogue: {} products at {} (simulated DB round trip {:?})",
        opts.products,
        dir.path().join("shop.db").display(),
        opts.db_latency
    );
    let node = Node::builder().maxmemory(256 << 20).start().await?;
    let products = node
        .cache::<u64, Product>("products")?
        .with_ttl(Duration::from_secs(300))
        .with_negative_ttl(Duration::from_secs(5));
    let loader_db = db.clone();
    node.register_loader(&products, move |id: u64| {
        let db = loader_db.clone();
        async move { db.product(id).await }
    });
    if !opts.load_only {
        demo(&node, &db, &products).await?;
    }
    load(&opts, &db, &products).await?;
    node.shutdown().await;
    Ok(())
}

async fn demo(node: &Node, db: &Db, products: &Cache<u64, Product>) -> anyhow::Result<()> {
    println!("\n== products: read-through");
    let before = db.queries.load(Ordering::Relaxed);
    let first = products.get_or_load(&42, || db_loader(db, 42)).await?;
    let second = products.get_or_load(&42, || db_loader(db, 42)).await?;
    println!("  product 42: {first:?}");
    println!(
        "  two reads, {} database query (the second was a cache hit: {})",
        db.queries.load(Ordering::Relaxed) - before,
        first == second
    );
    let missing = products
        .get_or_load(&(u64::MAX / 2), || db_loader(db, u64::MAX / 2))
        .await?;
    println!("  missing product -> {missing:?} (cached as a negative entry for 5 s)");

    println!("\n== prices: update SQLite, invalidate the cache");
    db.set_price(42, 999).await.map_err(anyhow::Error::msg)?;
    let stale = products.get(&42).await?;
    products.invalidate(&42).await?;
    let fresh = products.get_or_load(&42, || db_loader(db, 42)).await?;
    println!(
        "  before invalidate: {} cents; after: {} cents",
        stale.map_or(-1, |p| p.price_cents),
        fresh.map_or(-1, |p| p.price_cents)
    );

    println!("\n== inventory: write-behind");
    let inventory = node.cache::<u64, i64>("inventory")?.with_backend(
        InventoryBackend(db.clone()),
        WritePolicy::Behind {
            max_batch: 500,
            max_delay: Duration::from_millis(200),
        },
    );
    let before = db.queries.load(Ordering::Relaxed);
    for sale in 0..5_000u64 {
        let id = 1 + sale % 50;
        let qty = inventory.load(&id).await?.unwrap_or(0);
        inventory.set(&id, &(qty - 1)).await?;
    }
    inventory.flush().await;
    let stats = inventory.write_behind_stats().unwrap_or_default();
    println!(
        "  5000 sales over 50 products: {} database queries (50 first loads + coalesced writes), \
         {} backend writes in {} flushes, {} coalesced",
        db.queries.load(Ordering::Relaxed) - before,
        stats.written,
        stats.flushes,
        stats.coalesced
    );
    println!(
        "  SQLite now says product 1 has {:?} in stock",
        db.stock(1).await.map_err(anyhow::Error::msg)?
    );

    println!("\n== sessions: cache only, with a TTL");
    let sessions = node
        .cache::<String, Session>("sessions")?
        .with_ttl(Duration::from_millis(500));
    let sid = "s-7f3a".to_string();
    sessions
        .set(
            &sid,
            &Session {
                user: "ada".into(),
                cart: vec![42, 7],
            },
        )
        .await?;
    println!("  session now: {:?}", sessions.get(&sid).await?);
    tokio::time::sleep(Duration::from_millis(600)).await;
    println!("  after its 500 ms TTL: {:?}", sessions.get(&sid).await?);
    Ok(())
}

/// A caller-side loader (the registered one runs first; this one only runs
/// on a node without it).
fn db_loader(
    db: &Db,
    id: u64,
) -> impl std::future::Future<Output = Result<Option<Product>, String>> + Send + 'static {
    let db = db.clone();
    async move { db.product(id).await }
}

/// Zipf sampler over ranks 1..=n (inverse CDF by binary search).
struct Zipf {
    /// Cumulative probabilities.
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    fn sample(&self, u: f64) -> u64 {
        self.cdf.partition_point(|&c| c < u) as u64 + 1
    }
}

/// xorshift64*: a small, seeded generator for the read mix.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Latencies (µs) and wall time of one run.
struct RunResult {
    /// One per read.
    micros: Vec<u64>,
    /// Whole run.
    wall: Duration,
    /// Database queries during the run.
    queries: u64,
}

async fn run_reads(
    opts: &Opts,
    db: &Db,
    cache: Option<&Cache<u64, Product>>,
    zipf: &Arc<Zipf>,
) -> anyhow::Result<RunResult> {
    let before = db.queries.load(Ordering::Relaxed);
    let start = Instant::now();
    let per_task = opts.reads / opts.tasks;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..opts.tasks {
        let db = db.clone();
        let cache = cache.cloned();
        let zipf = zipf.clone();
        tasks.spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1));
            let mut micros = Vec::with_capacity(per_task as usize);
            for _ in 0..per_task {
                let id = zipf.sample(rng.unit());
                let began = Instant::now();
                let got = match &cache {
                    Some(c) => c
                        .get_or_load(&id, || db_loader(&db, id))
                        .await
                        .map_err(|e| e.to_string()),
                    None => db.product(id).await,
                };
                got?;
                micros.push(began.elapsed().as_micros() as u64);
            }
            Ok::<_, String>(micros)
        });
    }
    let mut micros = Vec::with_capacity(opts.reads as usize);
    while let Some(r) = tasks.join_next().await {
        micros.extend(r?.map_err(anyhow::Error::msg)?);
    }
    micros.sort_unstable();
    Ok(RunResult {
        micros,
        wall: start.elapsed(),
        queries: db.queries.load(Ordering::Relaxed) - before,
    })
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn load(opts: &Opts, db: &Db, products: &Cache<u64, Product>) -> anyhow::Result<()> {
    println!(
        "\n== load: {} Zipf(s={}) reads over {} products from {} tasks",
        opts.reads, opts.zipf, opts.products, opts.tasks
    );
    let zipf = Arc::new(Zipf::new(opts.products, opts.zipf));
    let without = run_reads(opts, db, None, &zipf).await?;
    // Start the cached run cold: drop what the demo loaded.
    for id in 1..=opts.products.min(100) {
        products.invalidate(&id).await?;
    }
    let with = run_reads(opts, db, Some(products), &zipf).await?;
    let reads = with.micros.len() as u64;
    println!(
        "  {:<14} {:>10} {:>10} {:>10} {:>12}",
        "", "DB queries", "p50 µs", "p99 µs", "reads/s"
    );
    for (label, r) in [("without cache", &without), ("with cache", &with)] {
        println!(
            "  {:<14} {:>10} {:>10} {:>10} {:>12.0}",
            label,
            r.queries,
            pct(&r.micros, 0.50),
            pct(&r.micros, 0.99),
            r.micros.len() as f64 / r.wall.as_secs_f64()
        );
    }
    let avoided = without.queries.saturating_sub(with.queries);
    println!(
        "  database queries avoided: {avoided} of {}; cache hit ratio {:.1}%",
        without.queries,
        100.0 * (reads.saturating_sub(with.queries)) as f64 / reads.max(1) as f64
    );
    Ok(())
}
