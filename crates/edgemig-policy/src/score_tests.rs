//! Tests for [`super`]: weighted means, gains, exclusions and ties.

use super::*;
use crate::observation::{ClientSample, CostEstimate};

fn client(name: &str, weight: f64, rtts: &[(&str, f64)]) -> ClientSample {
    ClientSample {
        client: name.into(),
        weight,
        rtt_ms_by_site: rtts.iter().map(|(s, r)| ((*s).to_owned(), *r)).collect(),
    }
}

fn obs(current: &str, clients: Vec<ClientSample>, costs: &[&str]) -> Observation {
    Observation {
        at_ms: 0,
        current_site: current.into(),
        migration_in_progress: false,
        clients,
        migration_cost: costs
            .iter()
            .map(|s| {
                (
                    (*s).to_owned(),
                    CostEstimate {
                        bytes: 125_000_000,
                        path_mbit: 1000.0,
                    },
                )
            })
            .collect(),
    }
}

fn site<'a>(s: &'a Scores, name: &str) -> &'a SiteScore {
    s.sites.iter().find(|x| x.site == name).unwrap()
}

#[test]
fn weighted_mean_and_gain() {
    let o = obs(
        "a",
        vec![
            client("c1", 3.0, &[("a", 40.0), ("b", 10.0)]),
            client("c2", 1.0, &[("a", 40.0), ("b", 50.0)]),
        ],
        &["b"],
    );
    let s = Scores::of(&o);
    assert_eq!(s.weighted_clients, 2);
    assert_eq!(site(&s, "a").mean_rtt_ms, Some(40.0));
    assert_eq!(site(&s, "a").gain, Some(0.0));
    assert!(site(&s, "a").current);
    assert_eq!(site(&s, "b").mean_rtt_ms, Some(20.0));
    assert_eq!(site(&s, "b").gain, Some(0.5));
    assert_eq!(site(&s, "b").transfer_s, Some(1.0));
    assert_eq!(s.best_candidate().map(|b| b.site.as_str()), Some("b"));
}

#[test]
fn missing_sample_excludes_the_site_and_names_clients() {
    let o = obs(
        "a",
        vec![
            client("c1", 1.0, &[("a", 40.0), ("b", 10.0), ("c", 30.0)]),
            client("c5", 1.0, &[("a", 40.0), ("c", 30.0)]),
            client("c2", 1.0, &[("a", 40.0), ("c", 30.0)]),
            client("c4", 1.0, &[("a", 40.0), ("c", 30.0)]),
            client("c3", 1.0, &[("a", 40.0), ("c", 30.0)]),
            client("ignored", 0.0, &[("a", 40.0)]),
        ],
        &["b", "c"],
    );
    let s = Scores::of(&o);
    assert_eq!(s.weighted_clients, 5);
    let b = site(&s, "b");
    assert_eq!(b.mean_rtt_ms, None);
    assert_eq!(b.gain, None);
    assert_eq!(
        b.excluded,
        Some(Exclusion::MissingSamples {
            count: 4,
            clients: vec!["c2".into(), "c3".into(), "c4".into()]
        })
    );
    // The zero-weight client's missing samples do not exclude c.
    assert_eq!(site(&s, "c").excluded, None);
    assert_eq!(s.best_candidate().map(|b| b.site.as_str()), Some("c"));
}

#[test]
fn site_without_cost_is_not_a_candidate() {
    let o = obs(
        "a",
        vec![client("c1", 1.0, &[("a", 40.0), ("b", 10.0)])],
        &[],
    );
    let s = Scores::of(&o);
    assert_eq!(site(&s, "b").excluded, Some(Exclusion::NoCostEstimate));
    assert_eq!(site(&s, "b").mean_rtt_ms, Some(10.0));
    assert_eq!(s.best_candidate(), None);
}

#[test]
fn ties_go_to_the_smaller_name() {
    let o = obs(
        "z",
        vec![client("c1", 1.0, &[("z", 40.0), ("m", 10.0), ("b", 10.0)])],
        &["m", "b"],
    );
    assert_eq!(
        Scores::of(&o).best_candidate().map(|b| b.site.as_str()),
        Some("b")
    );
}

#[test]
fn no_weighted_clients_no_scores() {
    let o = obs(
        "a",
        vec![client("c1", 0.0, &[("a", 4.0), ("b", 1.0)])],
        &["b"],
    );
    let s = Scores::of(&o);
    assert_eq!(s.weighted_clients, 0);
    assert!(s.sites.iter().all(|x| x.mean_rtt_ms.is_none()));
    assert_eq!(s.best_candidate(), None);
}

#[test]
fn zero_current_rtt_has_no_gain() {
    let o = obs(
        "a",
        vec![client("c1", 1.0, &[("a", 0.0), ("b", 0.0)])],
        &["b"],
    );
    let s = Scores::of(&o);
    assert_eq!(site(&s, "b").gain, None);
}
