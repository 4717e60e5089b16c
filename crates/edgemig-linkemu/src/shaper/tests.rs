//! Deterministic unit tests of the direction state machine.

use std::time::{Duration, Instant};

use super::{Direction, LinkParams, Verdict};

fn dir(params: LinkParams) -> Direction<usize> {
    match Direction::new(params, 42) {
        Ok(d) => d,
        Err(e) => panic!("bad params: {e}"),
    }
}

fn mbit(n: u64) -> u64 {
    n * 1_000_000
}

/// Drains everything due up to `until`, stepping 100 µs, returning
/// (release instant, len) pairs.
fn drain(d: &mut Direction<usize>, from: Instant, until: Instant) -> Vec<(Instant, usize)> {
    let mut out = Vec::new();
    let mut t = from;
    while t <= until {
        while let Some(len) = d.pop_ready(t) {
            out.push((t, len));
        }
        t += Duration::from_micros(100);
    }
    out
}

#[test]
fn throughput_equals_rate() {
    let mut d = dir(LinkParams {
        rate_bps: mbit(10),
        queue_limit_bytes: Some(100_000_000),
        ..LinkParams::default()
    });
    let t0 = Instant::now();
    for _ in 0..10_000 {
        assert_eq!(d.enqueue(t0, 1250), Verdict::Queued);
    }
    // 10 000 × 1250 B × 8 = 100 Mbit at 10 Mbit/s = 10 s.
    let last = d.queue.back().map(|h| h.release);
    let expect = t0 + Duration::from_secs(10);
    assert_eq!(last, Some(expect));
    let out = drain(&mut d, t0, t0 + Duration::from_secs(11));
    assert_eq!(out.len(), 10_000);
    let half = out
        .iter()
        .filter(|(t, _)| *t <= t0 + Duration::from_secs(5))
        .count();
    assert!((4990..=5010).contains(&half), "half={half}");
}

#[test]
fn idle_link_does_not_bank_credit() {
    let mut d = dir(LinkParams {
        rate_bps: mbit(8),
        ..LinkParams::default()
    });
    let t0 = Instant::now();
    d.enqueue(t0, 1000);
    let t1 = t0 + Duration::from_secs(1);
    d.enqueue(t1, 1000);
    assert_eq!(d.pop_ready(t0 + Duration::from_millis(1)), Some(1000));
    assert_eq!(d.next_release(t1), Some(t1 + Duration::from_millis(1)));
}

#[test]
fn delay_is_added() {
    let mut d = dir(LinkParams {
        delay: Duration::from_millis(20),
        ..LinkParams::default()
    });
    let t0 = Instant::now();
    d.enqueue(t0, 100);
    assert_eq!(d.next_release(t0), Some(t0 + Duration::from_millis(20)));
    assert_eq!(d.pop_ready(t0 + Duration::from_millis(19)), None);
    assert_eq!(d.pop_ready(t0 + Duration::from_millis(20)), Some(100));
    assert_eq!(d.next_release(t0), None);
}

#[test]
fn queue_limit_drops_tail() {
    let mut d = dir(LinkParams {
        rate_bps: mbit(1),
        queue_limit_bytes: Some(10_000),
        ..LinkParams::default()
    });
    let t0 = Instant::now();
    let verdicts: Vec<Verdict> = (0..20).map(|_| d.enqueue(t0, 1000)).collect();
    assert!(verdicts[..10].iter().all(|v| *v == Verdict::Queued));
    assert!(
        verdicts[10..]
            .iter()
            .all(|v| *v == Verdict::DroppedQueueFull)
    );
    assert_eq!(d.stats().dropped_queue, 10);
    assert_eq!(d.stats().queued_bytes, 10_000);
    // One frame leaves after 8 ms; room for one more.
    assert_eq!(d.pop_ready(t0 + Duration::from_millis(8)), Some(1000));
    assert_eq!(
        d.enqueue(t0 + Duration::from_millis(8), 1000),
        Verdict::Queued
    );
    assert_eq!(
        d.enqueue(t0 + Duration::from_millis(8), 1000),
        Verdict::DroppedQueueFull
    );
}

#[test]
fn loss_ratio_is_close() {
    let mut d = dir(LinkParams {
        loss: 0.1,
        ..LinkParams::default()
    });
    let t0 = Instant::now();
    let n = 100_000;
    let lost = (0..n)
        .filter(|_| {
            let v = d.enqueue(t0, 1);
            while d.pop_ready(t0).is_some() {}
            v == Verdict::DroppedLoss
        })
        .count();
    assert!((9_500..=10_500).contains(&lost), "lost={lost}");
    assert_eq!(d.stats().dropped_loss, lost as u64);
    assert_eq!(d.stats().frames_forwarded, (n - lost) as u64);
}

#[test]
fn jitter_never_reorders() {
    let mut d = Direction::new(
        LinkParams {
            rate_bps: mbit(100),
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(5),
            ..LinkParams::default()
        },
        7,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let t0 = Instant::now();
    for i in 0..500usize {
        let at = t0 + Duration::from_micros(i as u64 * 50);
        assert_eq!(d.offer(at, i).0, Verdict::Queued);
    }
    let releases: Vec<Instant> = d.queue.iter().map(|h| h.release).collect();
    assert!(releases.windows(2).all(|w| w[0] <= w[1]));
    let min = releases.iter().min().copied();
    assert!(min >= Some(t0 + Duration::from_millis(5)));
    let spread = releases
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            **r != t0 + Duration::from_micros(*i as u64 * 50 + 120) + Duration::from_millis(10)
        })
        .count();
    assert!(spread > 400, "jitter had no effect");
    let mut out = Vec::new();
    let mut t = t0;
    while t < t0 + Duration::from_secs(1) {
        while let Some(i) = d.pop_ready(t) {
            out.push(i);
        }
        t += Duration::from_micros(200);
    }
    assert_eq!(out, (0..500).collect::<Vec<_>>());
}

#[test]
fn down_drops_and_up_resumes() {
    let mut d = dir(LinkParams {
        delay: Duration::from_millis(10),
        ..LinkParams::default()
    });
    let t0 = Instant::now();
    d.enqueue(t0, 100);
    d.enqueue(t0, 100);
    let mut p = *d.params();
    p.up = false;
    assert_eq!(d.set_params(p).map(|v| v.len()), Ok(2));
    assert_eq!(d.enqueue(t0, 100), Verdict::DroppedDown);
    assert_eq!(d.next_release(t0), None);
    assert_eq!(d.stats().dropped_down, 3);
    assert_eq!(d.stats().queued_bytes, 0);
    p.up = true;
    assert_eq!(d.set_params(p).map(|v| v.len()), Ok(0));
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(d.enqueue(t1, 100), Verdict::Queued);
    assert_eq!(d.pop_ready(t1 + Duration::from_millis(10)), Some(100));
}

#[test]
fn invalid_params_rejected() {
    let mut d = dir(LinkParams::default());
    let bad = LinkParams {
        loss: -0.1,
        ..LinkParams::default()
    };
    assert!(d.set_params(bad).is_err());
    assert!(Direction::<usize>::new(bad, 1).is_err());
}
