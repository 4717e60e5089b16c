//! Tests for [`super`]: validation and the JSON shape.

use super::*;

fn obs() -> Observation {
    Observation {
        at_ms: 1000,
        current_site: "a".into(),
        migration_in_progress: false,
        clients: vec![ClientSample {
            client: "10.0.0.1".into(),
            weight: 1.0,
            rtt_ms_by_site: [("a".to_string(), 20.0), ("b".to_string(), 5.0)].into(),
        }],
        migration_cost: [(
            "b".to_string(),
            CostEstimate {
                bytes: 1 << 30,
                path_mbit: 100.0,
            },
        )]
        .into(),
    }
}

#[test]
fn valid_observation_and_sites() {
    let o = obs();
    assert_eq!(o.validate(), Ok(()));
    assert_eq!(o.sites().into_iter().collect::<Vec<_>>(), vec!["a", "b"]);
}

#[test]
fn transfer_time_is_bits_over_bandwidth() {
    let c = CostEstimate {
        bytes: 125_000_000,
        path_mbit: 100.0,
    };
    assert_eq!(c.transfer_s(), 10.0);
}

#[test]
fn rejects_bad_numbers_and_bounds() {
    let mut o = obs();
    o.current_site.clear();
    assert_eq!(o.validate(), Err(ObservationError::NoCurrentSite));

    let mut o = obs();
    o.clients[0].weight = -1.0;
    assert!(matches!(o.validate(), Err(ObservationError::Weight { .. })));

    let mut o = obs();
    o.clients[0].rtt_ms_by_site.insert("c".into(), f64::NAN);
    assert!(matches!(
        o.validate(),
        Err(ObservationError::Rtt { ref site, .. }) if site == "c"
    ));

    let mut o = obs();
    o.clients.push(o.clients[0].clone());
    assert_eq!(
        o.validate(),
        Err(ObservationError::DuplicateClient("10.0.0.1".into()))
    );

    let mut o = obs();
    o.migration_cost.insert(
        "c".into(),
        CostEstimate {
            bytes: 1,
            path_mbit: 0.0,
        },
    );
    assert!(matches!(
        o.validate(),
        Err(ObservationError::PathBandwidth { .. })
    ));

    let mut o = obs();
    o.clients = (0..=MAX_CLIENTS)
        .map(|i| ClientSample {
            client: format!("c{i}"),
            weight: 1.0,
            rtt_ms_by_site: BTreeMap::new(),
        })
        .collect();
    assert_eq!(
        o.validate(),
        Err(ObservationError::TooManyClients(MAX_CLIENTS + 1))
    );

    let mut o = obs();
    for i in 0..MAX_SITES {
        o.clients[0].rtt_ms_by_site.insert(format!("s{i:02}"), 1.0);
    }
    assert_eq!(
        o.validate(),
        Err(ObservationError::TooManySites(MAX_SITES + 2))
    );
}

#[test]
fn json_shape_with_defaults() {
    let o: Observation = serde_json::from_str(
        r#"{"at_ms": 5, "current_site": "a",
            "clients": [{"client": "c1", "rtt_ms_by_site": {"a": 3.5}}]}"#,
    )
    .unwrap();
    assert_eq!(o.clients[0].weight, 1.0);
    assert!(!o.migration_in_progress);
    assert!(o.migration_cost.is_empty());
    let back: Observation = serde_json::from_value(serde_json::to_value(obs()).unwrap()).unwrap();
    assert_eq!(back, obs());
    assert!(
        serde_json::from_str::<Observation>(r#"{"at_ms":1,"current_site":"a","clients":[],"x":1}"#)
            .is_err()
    );
}
