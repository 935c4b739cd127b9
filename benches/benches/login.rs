//! The cost of a password login: core's argon2id verification (what one login costs core's
//! blocking pool), a wrong password (the same work), an unknown user (a dummy hash, the same
//! work again, so timing tells nothing), and hashing a new password.
//!
//! `cargo bench -p tether-benches --bench login`

use criterion::{Criterion, criterion_group, criterion_main};
use tether_core::auth::password::{hash, verify};

fn login(c: &mut Criterion) {
    let stored = hash("correct horse battery staple").expect("hashes");
    let mut group = c.benchmark_group("login argon2id");
    group.sample_size(20);
    group.bench_function("verify, right password", |b| {
        b.iter(|| {
            assert!(verify(
                Some(&stored),
                std::hint::black_box("correct horse battery staple")
            ))
        })
    });
    group.bench_function("verify, wrong password", |b| {
        b.iter(|| {
            assert!(!verify(
                Some(&stored),
                std::hint::black_box("wrong horse battery staple")
            ))
        })
    });
    group.bench_function("verify, unknown user", |b| {
        b.iter(|| {
            assert!(!verify(
                None,
                std::hint::black_box("correct horse battery staple")
            ))
        })
    });
    group.bench_function("hash a new password", |b| {
        b.iter(|| hash(std::hint::black_box("correct horse battery staple")).expect("hashes"))
    });
    group.finish();
}

criterion_group!(benches, login);
criterion_main!(benches);
