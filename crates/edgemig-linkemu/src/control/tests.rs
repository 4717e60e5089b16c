//! Tests of the control protocol without devices or sockets.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::Controller;
use crate::forward::DirShared;
use crate::shaper::LinkParams;

fn ctl() -> Controller {
    let mk = |name| match DirShared::new(name, LinkParams::default(), 1) {
        Ok(d) => Arc::new(d),
        Err(e) => panic!("{e}"),
    };
    Controller::new(mk("a_to_b"), mk("b_to_a"))
}

fn ask(c: &Controller, line: &str) -> Value {
    c.handle_line(line)
}

#[test]
fn sets_params_on_both_directions() {
    let c = ctl();
    let v = ask(
        &c,
        r#"{"rate":"50mbit","delay":"10ms","jitter":"1ms","loss":"0.1%","up":true}"#,
    );
    assert_eq!(v["ok"], true, "{v}");
    for d in ["a_to_b", "b_to_a"] {
        let p = &v["params"][d];
        assert_eq!(p["rate_bps"], 50_000_000);
        assert_eq!(p["delay_us"], 10_000);
        assert_eq!(p["jitter_us"], 1_000);
        assert_eq!(p["loss"], 0.001);
        assert_eq!(p["up"], true);
        assert_eq!(p["queue_auto"], true);
    }
    assert_eq!(c.dirs[0].lock().params().delay, Duration::from_millis(10));
}

#[test]
fn one_direction_and_queue() {
    let c = ctl();
    let v = ask(&c, r#"{"direction":"b_to_a","up":false,"queue":100000}"#);
    assert_eq!(v["params"]["b_to_a"]["up"], false, "{v}");
    assert_eq!(v["params"]["b_to_a"]["queue_limit_bytes"], 100_000);
    assert_eq!(v["params"]["a_to_b"]["up"], true);
    let v = ask(&c, r#"{"queue":"auto"}"#);
    assert_eq!(v["params"]["b_to_a"]["queue_auto"], true, "{v}");
}

#[test]
fn stats() {
    let c = ctl();
    let v = ask(&c, r#"{"stats":true}"#);
    assert_eq!(v["ok"], true);
    assert_eq!(v["stats"]["a_to_b"]["frames_forwarded"], 0, "{v}");
    assert_eq!(v["stats"]["b_to_a"]["write_errors"], 0, "{v}");
    assert!(v.get("params").is_none());
}

#[test]
fn errors() {
    let c = ctl();
    for bad in [
        r#"{"rate":"fast"}"#,
        r#"{"loss":"150%"}"#,
        r#"{"delay":10}"#,
        r#"{"colour":"red"}"#,
        r#"{"direction":"sideways"}"#,
        "not json",
    ] {
        let v = ask(&c, bad);
        assert_eq!(v["ok"], false, "{bad} -> {v}");
        assert!(v["error"].as_str().is_some_and(|s| !s.is_empty()));
    }
    // A rejected request changes nothing.
    assert_eq!(c.dirs[0].lock().params().rate_bps, 0);
}
