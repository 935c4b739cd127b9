//! Core's per-enrollment RSA work with a node's 2,048-bit key: the signature check and the
//! OAEP encryption of the agent secret, beside the `rsa` crate's own OAEP encryption (what
//! core used before; see docs/benchmarks.md, "Enrollment rate").
//!
//! `cargo bench -p tether-benches --bench enrollment`

use criterion::{Criterion, criterion_group, criterion_main};
use rsa::pkcs8::DecodePublicKey;
use tether_certs::node_key::NodeKey;

fn rsa_work(c: &mut Criterion) {
    let key = NodeKey::generate().expect("key");
    let public = key.public();
    let message = b"an enrollment request";
    let signature = key.sign(message);
    let secret = [7u8; 32];
    let reference = rsa::RsaPublicKey::from_public_key_pem(&public.to_pem()).expect("parses");

    let mut group = c.benchmark_group("enrollment rsa-2048");
    group.bench_function("verify signature (ring)", |b| {
        b.iter(|| assert!(public.verify(message, std::hint::black_box(&signature))))
    });
    group.bench_function("encrypt secret (core)", |b| {
        b.iter(|| public.encrypt(std::hint::black_box(&secret)).expect("fits"))
    });
    group.bench_function("encrypt secret (rsa crate)", |b| {
        b.iter(|| {
            reference
                .encrypt(
                    &mut rand::rngs::OsRng,
                    rsa::Oaep::new::<rsa::sha2::Sha256>(),
                    std::hint::black_box(&secret),
                )
                .expect("fits")
        })
    });
    group.finish();
}

criterion_group!(benches, rsa_work);
criterion_main!(benches);
