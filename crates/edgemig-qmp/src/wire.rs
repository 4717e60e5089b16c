//! Wire format: the greeting and the classification of incoming lines.
//!
//! QMP is one JSON object per line. Incoming objects are either the
//! greeting (`{"QMP": ...}`), a reply (`{"return"|"error": ..., "id": ...}`)
//! or an event (`{"event": ..., "data": ..., "timestamp": ...}`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::QmpError;
use crate::events::Event;

/// QEMU's version triple, from the greeting or `query-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QemuVersion {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

impl QemuVersion {
    /// True if this version is `major.minor` or newer.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl std::fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// What QEMU says when a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub version: QemuVersion,
    /// Distribution package string, e.g. `Debian 1:10.0.2+ds-2...`.
    pub package: String,
    /// Optional protocol capabilities offered (e.g. `oob`); none is enabled.
    pub capabilities: Vec<String>,
}

#[derive(Deserialize)]
struct GreetingWire {
    #[serde(rename = "QMP")]
    qmp: GreetingBody,
}

#[derive(Deserialize)]
struct GreetingBody {
    version: crate::types::VersionInfo,
    #[serde(default)]
    capabilities: Vec<String>,
}

impl Greeting {
    /// Parses the first line QEMU sends.
    pub fn parse(line: &[u8]) -> Result<Self, QmpError> {
        let wire: GreetingWire = serde_json::from_slice(line)
            .map_err(|e| QmpError::Protocol(format!("bad greeting {:?}: {e}", preview(line))))?;
        Ok(Greeting {
            version: wire.qmp.version.qemu,
            package: wire.qmp.version.package,
            capabilities: wire.qmp.capabilities,
        })
    }
}

/// One classified incoming line.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// Reply to the request with this id.
    Reply {
        id: u64,
        reply: Reply,
    },
    Event(Event),
    /// A valid JSON object we have no use for (reply without id, ...).
    Ignored(String),
}

/// Outcome of one command.
#[derive(Debug)]
pub(crate) enum Reply {
    Return(Value),
    Error { class: String, desc: String },
}

/// Classifies one line. `Err` means the line is not usable at all; the
/// caller logs it and carries on.
pub(crate) fn parse_line(line: &[u8]) -> Result<Incoming, String> {
    let value: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(mut obj) = value else {
        return Err("not a JSON object".into());
    };
    if obj.contains_key("event") {
        return Event::from_object(obj).map(Incoming::Event);
    }
    let id = obj.get("id").and_then(Value::as_u64);
    let reply = if let Some(ret) = obj.remove("return") {
        Reply::Return(ret)
    } else if let Some(err) = obj.remove("error") {
        let field = |k: &str| {
            err.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Reply::Error {
            class: field("class"),
            desc: field("desc"),
        }
    } else {
        return Ok(Incoming::Ignored(
            "object is neither reply nor event".into(),
        ));
    };
    match (id, reply) {
        (Some(id), reply) => Ok(Incoming::Reply { id, reply }),
        (None, Reply::Error { class, desc }) => Ok(Incoming::Ignored(format!(
            "error without id: {class}: {desc}"
        ))),
        (None, Reply::Return(_)) => Ok(Incoming::Ignored("reply without id".into())),
    }
}

/// The start of a line, for log messages.
pub(crate) fn preview(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    let s = s.trim_end();
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_parses_real_qemu_line() {
        let line = br#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-2"}, "capabilities": ["oob"]}}"#;
        let g = Greeting::parse(line).unwrap();
        assert_eq!(
            g.version,
            QemuVersion {
                major: 10,
                minor: 0,
                micro: 2
            }
        );
        assert!(g.version.at_least(9, 1));
        assert_eq!(g.capabilities, vec!["oob".to_owned()]);
        assert!(Greeting::parse(b"{\"return\": {}}").is_err());
    }

    #[test]
    fn classify_lines() {
        assert!(matches!(
            parse_line(br#"{"return": {"a": 1}, "id": 7}"#),
            Ok(Incoming::Reply {
                id: 7,
                reply: Reply::Return(_)
            })
        ));
        match parse_line(br#"{"id": 3, "error": {"class": "GenericError", "desc": "no"}}"#) {
            Ok(Incoming::Reply {
                id: 3,
                reply: Reply::Error { class, desc },
            }) => assert_eq!((class.as_str(), desc.as_str()), ("GenericError", "no")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_line(br#"{"error": {"class": "GenericError", "desc": "x"}}"#),
            Ok(Incoming::Ignored(_))
        ));
        assert!(parse_line(b"garbage {").is_err());
        assert!(parse_line(b"[1,2]").is_err());
        assert!(matches!(
            parse_line(br#"{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}"#),
            Ok(Incoming::Event(_))
        ));
    }
}
