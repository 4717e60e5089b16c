//! Tests for [`super`]: CLI strings and the JSON shape of the options.

use super::*;

#[test]
fn transport_parses_cli_strings() {
    assert_eq!("mptcp".parse::<Transport>(), Ok(Transport::Mptcp));
    assert_eq!("TCP".parse::<Transport>(), Ok(Transport::Tcp));
    assert!("udp".parse::<Transport>().is_err());
}

#[test]
fn compression_parses_cli_strings() {
    assert_eq!("auto".parse(), Ok(Compression::Auto));
    assert_eq!("none".parse(), Ok(Compression::None));
    assert_eq!("zstd".parse(), Ok(Compression::Zstd { level: None }));
    assert_eq!("zstd:5".parse(), Ok(Compression::Zstd { level: Some(5) }));
    assert_eq!(
        "zstd:0".parse::<Compression>(),
        Err(OptionsError::ZstdLevel(0))
    );
    assert_eq!(
        "zstd:21".parse::<Compression>(),
        Err(OptionsError::ZstdLevel(21))
    );
    assert!("zstd:x".parse::<Compression>().is_err());
    assert!("zlib".parse::<Compression>().is_err());
    for s in ["auto", "none", "zstd", "zstd:7"] {
        assert_eq!(
            s.parse::<Compression>().map(|c| c.to_string()),
            Ok(s.into())
        );
    }
}

#[test]
fn postcopy_policy_parses() {
    assert_eq!("fallback".parse(), Ok(PostcopyPolicy::Fallback));
    assert_eq!("never".parse(), Ok(PostcopyPolicy::Never));
    assert!("always".parse::<PostcopyPolicy>().is_err());
}

#[test]
fn defaults() {
    let o = MigrateOptions::default();
    assert_eq!(o.transport, Transport::Mptcp);
    assert_eq!(o.compression, Compression::Auto);
    assert_eq!(o.max_downtime, DEFAULT_MAX_DOWNTIME);
    assert_eq!(o.max_downtime, Duration::from_millis(100));
    assert_eq!(o.bandwidth_limit_bps, None);
    assert!(!o.insecure);
    assert_eq!(o.postcopy, PostcopyPolicy::Never);
    assert_eq!(o.multifd, None);
    assert_eq!(o.validate(), Ok(()));
}

#[test]
fn json_round_trip_and_shape() {
    let o = MigrateOptions {
        transport: Transport::Tcp,
        compression: Compression::Zstd { level: Some(3) },
        max_downtime: Duration::from_millis(500),
        bandwidth_limit_bps: Some(50_000_000),
        insecure: true,
        postcopy: PostcopyPolicy::Fallback,
        handoff: false,
        multifd: None,
    };
    let v = serde_json::to_value(&o).unwrap();
    // Without multifd_channels the field is left out (older agents, which
    // reject unknown fields, still accept the request).
    assert_eq!(
        v,
        serde_json::json!({
            "transport": "tcp", "compression": "zstd:3", "max_downtime_ms": 500,
            "bandwidth_limit_bps": 50_000_000u64, "insecure": true, "postcopy": "fallback",
            "handoff": false
        })
    );
    let back: MigrateOptions = serde_json::from_value(v).unwrap();
    assert_eq!(back, o);
    let o = MigrateOptions {
        multifd: Some(4),
        postcopy: PostcopyPolicy::Never,
        ..o
    };
    let v = serde_json::to_value(&o).unwrap();
    assert_eq!(v["multifd_channels"], 4);
    let back: MigrateOptions = serde_json::from_value(v).unwrap();
    assert_eq!(back, o);
}

#[test]
fn json_defaults_and_unknown_fields() {
    let o: MigrateOptions = serde_json::from_str("{}").unwrap();
    assert_eq!(o, MigrateOptions::default());
    let o: MigrateOptions = serde_json::from_str(r#"{"compression":"none"}"#).unwrap();
    assert_eq!(o.compression, Compression::None);
    assert!(serde_json::from_str::<MigrateOptions>(r#"{"speed":1}"#).is_err());
    assert!(serde_json::from_str::<MigrateOptions>(r#"{"compression":"lz4"}"#).is_err());
    assert!(serde_json::from_str::<MigrateOptions>(r#"{"transport":"quic"}"#).is_err());
}

#[test]
fn validate_rejects_bad_ranges() {
    let mut o = MigrateOptions {
        max_downtime: Duration::ZERO,
        ..Default::default()
    };
    assert!(matches!(o.validate(), Err(OptionsError::Downtime(_))));
    o.max_downtime = Duration::from_secs(2001);
    assert!(matches!(o.validate(), Err(OptionsError::Downtime(_))));
    o.max_downtime = Duration::from_millis(300);
    o.bandwidth_limit_bps = Some(0);
    assert_eq!(o.validate(), Err(OptionsError::BandwidthLimit));
    o.bandwidth_limit_bps = None;
    o.compression = Compression::Zstd { level: Some(30) };
    assert_eq!(o.validate(), Err(OptionsError::ZstdLevel(30)));
    o.compression = Compression::Auto;
    for (n, ok) in [(0u8, false), (1, true), (16, true), (17, false)] {
        o.multifd = Some(n);
        assert_eq!(o.validate().is_ok(), ok, "{n}");
    }
    o.multifd = Some(4);
    o.postcopy = PostcopyPolicy::Fallback;
    assert_eq!(o.validate(), Err(OptionsError::MultifdWithPostcopy));
}
