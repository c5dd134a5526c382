//! Ring build and rebalance-plan cost: the DESIGN asks for single-digit
//! milliseconds at 100 members x 4096 partitions; a view change updates
//! the previous ring instead (`Ring::with_members`).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use shoal::ring::{Ring, plan};
use shoal::transport::NodeName;

fn members(n: usize) -> Vec<NodeName> {
    (0..n)
        .map(|i| NodeName::new(format!("node-{i}.shoal.internal")))
        .collect()
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_build");
    for (n, r) in [(10, 3), (100, 2), (100, 3)] {
        let m = members(n);
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{n}x4096_r{r}")),
            &m,
            |b, m| b.iter(|| Ring::new(black_box(m.iter().cloned()), 4096, r)),
        );
    }
    group.finish();
}

/// Deriving the next ring from the previous one (what a node does on each
/// view change): one join and one departure at 100 members.
fn update(c: &mut Criterion) {
    let m = members(101);
    let (Ok(hundred), Ok(hundred_one)) = (
        Ring::new(m[..100].to_vec(), 4096, 2),
        Ring::new(m.clone(), 4096, 2),
    ) else {
        return;
    };
    let mut group = c.benchmark_group("ring_update");
    group.bench_function("join_100_to_101_r2", |b| {
        b.iter(|| black_box(&hundred).with_members(black_box(m.iter().cloned())))
    });
    group.bench_function("leave_101_to_100_r2", |b| {
        b.iter(|| black_box(&hundred_one).with_members(black_box(m[..100].iter().cloned())))
    });
    group.finish();
}

fn rebalance_plan(c: &mut Criterion) {
    let m = members(101);
    let (Ok(old), Ok(new)) = (
        Ring::new(m[..100].to_vec(), 4096, 3),
        Ring::new(m.clone(), 4096, 3),
    ) else {
        return;
    };
    c.bench_function("plan_join_100_to_101", |b| {
        b.iter(|| plan(black_box(&old), black_box(&new), &m[100]))
    });
}

criterion_group!(benches, build, update, rebalance_plan);
criterion_main!(benches);
