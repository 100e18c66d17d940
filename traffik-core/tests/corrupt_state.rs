//! Corrupt or foreign stored state never panics: the request is judged on fresh state.

use traffik_core::strategy::state_key;
use traffik_core::{
    Algorithm, Backend, FixedWindow, Gcra, InMemoryBackend, LeakyBucket, LeakyBucketWithQueue,
    ManualClock, Rate, SlidingWindowCounter, SlidingWindowLog, TokenBucket, TokenBucketWithDebt,
};

const NOW: u64 = 1_700_000_000_000_000;

fn strategies() -> Vec<Box<dyn Algorithm>> {
    vec![
        Box::new(FixedWindow),
        Box::new(SlidingWindowLog),
        Box::new(SlidingWindowCounter),
        Box::new(TokenBucket::new()),
        Box::new(TokenBucketWithDebt::new()),
        Box::new(LeakyBucket),
        Box::new(LeakyBucketWithQueue::new()),
        Box::new(Gcra::new()),
    ]
}

fn garbage() -> Vec<Vec<u8>> {
    let mut cases = vec![
        vec![],
        vec![0xFF],
        b"not state at all".to_vec(),
        f64::NAN.to_le_bytes().to_vec(),
        [
            &[0xB1][..],
            &f64::NAN.to_le_bytes(),
            &f64::INFINITY.to_le_bytes(),
        ]
        .concat(),
        [&[0xD1][..], &[0xFF; 16]].concat(), // a GCRA TAT at the end of time
        [&[0xB1][..], &[0xFF; 16]].concat(), // a bucket level beyond any capacity
        [&[0xA1][..], &[0xFF; 8]].concat(),  // half a log entry
        [&[0xA1][..], &9u64.to_le_bytes(), &0u64.to_le_bytes()].concat(), // zero-cost entry
        [
            &[0xA1][..],
            &9u64.to_le_bytes(),
            &1u64.to_le_bytes(),
            &1u64.to_le_bytes(),
            &1u64.to_le_bytes(),
        ]
        .concat(), // unsorted
        [&[0xF1][..], &u64::MAX.to_le_bytes()].concat(), // a count at the edge of overflow
        vec![0u8; 10_000],
    ];
    // Every other strategy's valid state is foreign to each strategy.
    for tag in [0xF1u8, 0xA1, 0xA2, 0xB1, 0xB2, 0xC1, 0xC2, 0xD1] {
        cases.push([&[tag][..], &1u64.to_le_bytes()].concat());
        cases.push([&[tag][..], &[0u8; 24]].concat());
    }
    cases
}

#[test]
fn garbage_state_is_reset_not_trusted() {
    let rate: Rate = "5/10s".parse().unwrap();
    for algorithm in strategies() {
        for bytes in garbage() {
            // The pure transition copes on its own...
            let fresh = algorithm.apply(None, NOW, &rate, 1).unwrap();
            let from_garbage = algorithm.apply(Some(&bytes), NOW, &rate, 1).unwrap();
            algorithm.peek(Some(&bytes), NOW, &rate);
            if from_garbage != fresh {
                // ...and a decodable-but-foreign value may only be a legal state of this
                // strategy; it must never deny a first request forever.
                assert!(
                    from_garbage.decision.wait.as_secs() <= 20,
                    "{algorithm:?} on {bytes:?}: {from_garbage:?}"
                );
            }

            // ...and so does a backend holding the bytes.
            let backend = InMemoryBackend::builder("corrupt")
                .clock(ManualClock::new(NOW))
                .build();
            let key = state_key(algorithm.as_ref(), "k", NOW, &rate);
            backend
                .set(&key, &bytes, None)
                .now_or_never()
                .unwrap()
                .unwrap();
            let decision = backend
                .decide("k", algorithm.as_ref(), &rate, 1)
                .now_or_never()
                .unwrap()
                .unwrap();
            assert!(decision.wait.as_secs() <= 20, "{algorithm:?} on {bytes:?}");
        }
    }
}

#[test]
fn unreadable_state_is_judged_fresh() {
    let rate: Rate = "5/10s".parse().unwrap();
    for algorithm in strategies() {
        let fresh = algorithm.apply(None, NOW, &rate, 1).unwrap();
        for bytes in [b"junk".to_vec(), vec![], f64::NAN.to_le_bytes().to_vec()] {
            let t = algorithm.apply(Some(&bytes), NOW, &rate, 1).unwrap();
            assert_eq!(t, fresh, "{algorithm:?} on {bytes:?}");
        }
    }
}
