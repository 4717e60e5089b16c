//! Tests for [`super`]: valid and invalid lifecycle transitions.

use super::*;
use MigrationEvent as E;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn run(events: Vec<MigrationEvent>) -> Result<MigrationState, TransitionError> {
    events
        .into_iter()
        .try_fold(MigrationState::default(), |s, e| s.step(e))
}

fn happy() -> Vec<MigrationEvent> {
    vec![
        E::DestinationReady,
        E::MirrorReady,
        E::MemoryStarted,
        E::SwitchoverStarted { at: ms(20_000) },
        E::DestinationRunning { at: ms(20_150) },
        E::NetworkDone,
    ]
}

#[test]
fn happy_path_completes_with_downtime() {
    let s = run(happy()).unwrap();
    assert_eq!(
        s,
        MigrationState::Completed {
            switchover_at: ms(20_000),
            running_at: ms(20_150)
        }
    );
    assert!(s.is_terminal());
    assert_eq!(s.phase(), None);
    assert_eq!(s.downtime(), Some(ms(150)));
}

#[test]
fn phases_in_order() {
    let mut s = MigrationState::default();
    let mut names = vec![s.phase().unwrap().as_str()];
    for e in happy() {
        s = s.step(e).unwrap();
        if let Some(p) = s.phase()
            && names.last() != Some(&p.as_str())
        {
            names.push(p.as_str());
        }
    }
    assert_eq!(
        names,
        ["prepare", "disk", "memory", "switchover", "network"]
    );
}

#[test]
fn failure_before_switchover_leaves_source_running() {
    for n in 0..3 {
        let mut ev: Vec<_> = happy().into_iter().take(n + 1).collect();
        ev.push(E::Error("nbd: connection reset".into()));
        let MigrationState::Failed {
            reason,
            phase,
            source_stopped,
        } = run(ev).unwrap()
        else {
            panic!("not failed");
        };
        assert_eq!(reason, "nbd: connection reset");
        assert!(phase < Phase::Switchover, "{phase}");
        assert!(!source_stopped);
    }
    let s = MigrationState::Preparing
        .step(E::Error("no space".into()))
        .unwrap();
    assert!(matches!(
        s,
        MigrationState::Failed {
            phase: Phase::Prepare,
            source_stopped: false,
            ..
        }
    ));
}

#[test]
fn failure_after_switchover_marks_source_stopped() {
    let mut ev: Vec<_> = happy().into_iter().take(4).collect();
    ev.push(E::Error("destination crashed".into()));
    assert!(matches!(
        run(ev).unwrap(),
        MigrationState::Failed {
            phase: Phase::Switchover,
            source_stopped: true,
            ..
        }
    ));
    let mut ev: Vec<_> = happy().into_iter().take(5).collect();
    ev.push(E::Error("guest agent timeout".into()));
    assert!(matches!(
        run(ev).unwrap(),
        MigrationState::Failed {
            phase: Phase::Network,
            source_stopped: true,
            ..
        }
    ));
}

#[test]
fn cancel_from_every_non_terminal_state() {
    for n in 0..=5 {
        let mut ev: Vec<_> = happy().into_iter().take(n).collect();
        ev.push(E::Cancel);
        let s = run(ev).unwrap();
        let MigrationState::Cancelled {
            phase,
            source_stopped,
        } = s
        else {
            panic!("{s:?}");
        };
        assert_eq!(source_stopped, phase >= Phase::Switchover);
    }
}

#[test]
fn terminal_states_reject_everything() {
    let done = run(happy()).unwrap();
    assert_eq!(
        done.step(E::Cancel),
        Err(TransitionError::Terminal {
            state: "completed",
            event: "cancel"
        })
    );
    assert!(done.step(E::Error("late".into())).is_err());
    let failed = MigrationState::Memory.step(E::Error("x".into())).unwrap();
    assert!(failed.step(E::Cancel).is_err());
    let cancelled = MigrationState::Memory.step(E::Cancel).unwrap();
    assert!(cancelled.step(E::MemoryStarted).is_err());
    assert!(cancelled.step(E::Cancel).is_err());
}

#[test]
fn out_of_order_events_are_invalid() {
    let cases: Vec<(MigrationState, MigrationEvent)> = vec![
        (MigrationState::Preparing, E::MemoryStarted),
        (MigrationState::Preparing, E::NetworkDone),
        (
            MigrationState::DiskSync {
                mirror_ready: false,
            },
            E::MemoryStarted,
        ),
        (MigrationState::Memory, E::DestinationReady),
        (MigrationState::Memory, E::DestinationRunning { at: ms(1) }),
        (MigrationState::Switchover { at: ms(5) }, E::NetworkDone),
        (
            MigrationState::Network {
                switchover_at: ms(1),
                running_at: ms(2),
            },
            E::SwitchoverStarted { at: ms(3) },
        ),
    ];
    for (s, e) in cases {
        let name = e.name();
        assert!(
            matches!(s.step(e), Err(TransitionError::Invalid { .. })),
            "{} + {name}",
            s.name()
        );
    }
}

#[test]
fn running_before_switchover_is_rejected() {
    let s = MigrationState::Switchover { at: ms(100) };
    assert!(matches!(
        s.step(E::DestinationRunning { at: ms(99) }),
        Err(TransitionError::TimeWentBackwards { .. })
    ));
}

#[test]
fn step_does_not_mutate() {
    let s = MigrationState::Memory;
    let _ = s.step(E::Cancel);
    assert_eq!(s, MigrationState::Memory);
}
