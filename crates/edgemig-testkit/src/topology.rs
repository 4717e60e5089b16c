//! Testbed configs the black-box tests share.

/// Two sites (`site-a` 10.10.0.0/24, `site-b` 10.20.0.0/24) joined by two
/// paths of `rate` and one-way `delay` each (the second path's delay is
/// `delay2` when given); with `alice`, a client whose access link to site-a
/// is 20 Mbit/s, 10 ms and to site-b 100 Mbit/s, 1 ms.
pub fn two_sites(rate: &str, delay: &str, delay2: Option<&str>, alice: bool) -> String {
    let mut text = format!(
        r#"[[site]]
name = "site-a"
vm_subnet = "10.10.0.0/24"
[[site]]
name = "site-b"
vm_subnet = "10.20.0.0/24"
[[path]]
between = ["site-a", "site-b"]
rate = "{rate}"
delay = "{delay}"
[[path]]
between = ["site-a", "site-b"]
rate = "{rate}"
delay = "{}"
"#,
        delay2.unwrap_or(delay)
    );
    if alice {
        text.push_str(
            r#"[[client]]
name = "alice"
links = [ { site = "site-a", rate = "20mbit", delay = "10ms" },
          { site = "site-b", rate = "100mbit", delay = "1ms" } ]
"#,
        );
    }
    text
}
