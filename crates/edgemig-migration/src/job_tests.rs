//! Tests for [`super`]: the source's phases and the fence around the commit.

use std::time::Duration;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn run(events: Vec<SourceEvent>) -> Result<SourcePhase, TransitionError> {
    events
        .into_iter()
        .try_fold(SourcePhase::default(), |p, e| p.step(e))
}

fn to_awaiting() -> Vec<SourceEvent> {
    vec![
        SourceEvent::DestinationReady,
        SourceEvent::DisksReady,
        SourceEvent::SourcePaused { at: ms(1000) },
        SourceEvent::CommitSent,
    ]
}

#[test]
fn a_migration_walks_every_phase_and_measures_the_pause() {
    let mut events = to_awaiting();
    events.extend([
        SourceEvent::DestinationCommitted {
            resumed_at: ms(1040),
        },
        SourceEvent::SourceRemoved,
        SourceEvent::NetworkDone,
    ]);
    let end = run(events).unwrap();
    assert_eq!(
        end,
        SourcePhase::Completed {
            paused_at: ms(1000),
            resumed_at: ms(1040)
        }
    );
    assert_eq!(end.downtime(), Some(ms(40)));
    assert!(end.is_terminal());
}

#[test]
fn before_the_commit_every_failure_rolls_back_from_its_phase() {
    let prefixes = [
        (0, Phase::Prepare),
        (1, Phase::Disk),
        (2, Phase::Memory),
        (3, Phase::Switchover),
    ];
    for (n, phase) in prefixes {
        let mut events: Vec<_> = to_awaiting().into_iter().take(n).collect();
        events.push(SourceEvent::Fail("boom".into()));
        let end = run(events).unwrap();
        assert_eq!(
            end,
            SourcePhase::RolledBack {
                cause: RollbackCause::Failed {
                    reason: "boom".into()
                },
                from: phase
            }
        );
        let mut events: Vec<_> = to_awaiting().into_iter().take(n).collect();
        events.push(SourceEvent::Cancel);
        assert!(matches!(
            run(events).unwrap(),
            SourcePhase::RolledBack {
                cause: RollbackCause::Cancelled,
                ..
            }
        ));
    }
}

#[test]
fn once_the_commit_is_out_only_the_destination_or_the_operator_decides() {
    let awaiting = run(to_awaiting()).unwrap();
    assert!(awaiting.commit_may_be_out());
    assert!(awaiting.source_paused());
    for ev in [SourceEvent::Fail("lost reply".into()), SourceEvent::Cancel] {
        assert!(matches!(
            awaiting.step(ev),
            Err(TransitionError::Fenced { .. })
        ));
    }
    assert!(matches!(
        awaiting.step(SourceEvent::DestinationAborted).unwrap(),
        SourcePhase::RolledBack {
            cause: RollbackCause::DestinationAborted,
            from: Phase::Switchover
        }
    ));
    assert!(matches!(
        awaiting
            .step(SourceEvent::Resolved(Outcome::Aborted))
            .unwrap(),
        SourcePhase::RolledBack {
            cause: RollbackCause::Resolved,
            ..
        }
    ));
    let committed = awaiting
        .step(SourceEvent::Resolved(Outcome::Committed))
        .unwrap();
    assert!(committed.destination_runs());
}

#[test]
fn after_the_commit_nothing_rolls_back() {
    let mut events = to_awaiting();
    events.push(SourceEvent::DestinationCommitted {
        resumed_at: ms(1001),
    });
    let committed = run(events).unwrap();
    assert!(committed.source_paused());
    assert!(committed.step(SourceEvent::Fail("x".into())).is_err());
    assert!(committed.step(SourceEvent::Cancel).is_err());
    assert!(committed.step(SourceEvent::DestinationAborted).is_err());
    let network = committed.step(SourceEvent::SourceRemoved).unwrap();
    assert!(!network.source_paused());
    assert!(network.step(SourceEvent::Fail("x".into())).is_err());
}

#[test]
fn out_of_order_and_terminal_events_are_refused() {
    assert!(matches!(
        SourcePhase::Preparing.step(SourceEvent::CommitSent),
        Err(TransitionError::Invalid { .. })
    ));
    assert!(matches!(
        SourcePhase::Memory.step(SourceEvent::DestinationCommitted { resumed_at: ms(1) }),
        Err(TransitionError::Invalid { .. })
    ));
    let back = run(vec![SourceEvent::Cancel]).unwrap();
    assert!(matches!(
        back.step(SourceEvent::DestinationReady),
        Err(TransitionError::Terminal { .. })
    ));
    let awaiting = run(to_awaiting()).unwrap();
    assert!(matches!(
        awaiting.step(SourceEvent::DestinationCommitted {
            resumed_at: ms(999)
        }),
        Err(TransitionError::TimeWentBackwards { .. })
    ));
}

#[test]
fn phases_persist_as_tagged_json() {
    let p = SourcePhase::AwaitingCommit {
        paused_at: ms(1500),
    };
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["phase"], "awaiting_commit");
    assert_eq!(serde_json::from_value::<SourcePhase>(v).unwrap(), p);
    let back = SourcePhase::RolledBack {
        cause: RollbackCause::Failed { reason: "x".into() },
        from: Phase::Memory,
    };
    let v = serde_json::to_value(&back).unwrap();
    assert_eq!(v["cause"]["kind"], "failed");
    assert_eq!(serde_json::from_value::<SourcePhase>(v).unwrap(), back);
}
