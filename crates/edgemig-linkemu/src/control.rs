//! Run-time control over a Unix socket speaking JSON lines.
//!
//! Requests (any subset of fields): `{"rate":"50mbit","delay":"10ms",
//! "jitter":"1ms","loss":"0.1%","queue":65536|"auto","up":true,
//! "direction":"both"|"a_to_b"|"b_to_a"}` answer
//! `{"ok":true,"params":{"a_to_b":{..},"b_to_a":{..}}}`; `{"stats":true}`
//! answers `{"ok":true,"stats":{"a_to_b":{..},"b_to_a":{..}}}`; errors
//! answer `{"ok":false,"error":"..."}`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::forward::DirShared;
use crate::shaper::{LinkParams, ParamsError};
use crate::units::{UnitsError, parse_duration, parse_loss, parse_rate};

/// Longest accepted request line.
const MAX_LINE: usize = 64 * 1024;

/// Errors of a control request.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("bad request: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{field}: {source}")]
    Unit {
        field: &'static str,
        #[source]
        source: UnitsError,
    },
    #[error("{0} must be a string or a number")]
    Type(&'static str),
    #[error("direction must be \"both\", \"a_to_b\" or \"b_to_a\", got {0:?}")]
    Direction(String),
    #[error(transparent)]
    Params(#[from] ParamsError),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    rate: Option<Value>,
    delay: Option<Value>,
    jitter: Option<Value>,
    loss: Option<Value>,
    queue: Option<Value>,
    up: Option<bool>,
    stats: Option<bool>,
    direction: Option<String>,
}

fn text<'a>(field: &'static str, v: &'a Value) -> Result<&'a str, ControlError> {
    v.as_str().ok_or(ControlError::Type(field))
}

fn unit<T>(field: &'static str, r: Result<T, UnitsError>) -> Result<T, ControlError> {
    r.map_err(|source| ControlError::Unit { field, source })
}

impl Request {
    /// Applies the requested changes to `p`.
    fn apply(&self, p: &mut LinkParams) -> Result<(), ControlError> {
        if let Some(v) = &self.rate {
            p.rate_bps = match v.as_u64() {
                Some(n) => n,
                None => unit("rate", parse_rate(text("rate", v)?))?,
            };
        }
        if let Some(v) = &self.delay {
            p.delay = unit("delay", parse_duration(text("delay", v)?))?;
        }
        if let Some(v) = &self.jitter {
            p.jitter = unit("jitter", parse_duration(text("jitter", v)?))?;
        }
        if let Some(v) = &self.loss {
            p.loss = match v.as_f64() {
                Some(f) => f,
                None => unit("loss", parse_loss(text("loss", v)?))?,
            };
        }
        if let Some(v) = &self.queue {
            p.queue_limit_bytes = match (v.as_u64(), v.as_str()) {
                (Some(n), _) => Some(n),
                (None, Some("auto")) => None,
                _ => return Err(ControlError::Type("queue")),
            };
        }
        if let Some(up) = self.up {
            p.up = up;
        }
        p.validate()?;
        Ok(())
    }

    fn changes_params(&self) -> bool {
        self.rate.is_some()
            || self.delay.is_some()
            || self.jitter.is_some()
            || self.loss.is_some()
            || self.queue.is_some()
            || self.up.is_some()
    }
}

/// Applies control requests to the two directions.
pub struct Controller {
    dirs: [Arc<DirShared>; 2],
}

impl Controller {
    pub fn new(a_to_b: Arc<DirShared>, b_to_a: Arc<DirShared>) -> Self {
        Self {
            dirs: [a_to_b, b_to_a],
        }
    }

    /// Handles one request line and returns the JSON answer.
    pub fn handle_line(&self, line: &str) -> Value {
        match self.handle(line) {
            Ok(v) => v,
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        }
    }

    fn handle(&self, line: &str) -> Result<Value, ControlError> {
        let req: Request = serde_json::from_str(line)?;
        let targets: Vec<&Arc<DirShared>> = match req.direction.as_deref() {
            None | Some("both") => self.dirs.iter().collect(),
            Some(name @ ("a_to_b" | "b_to_a")) => {
                self.dirs.iter().filter(|d| d.name() == name).collect()
            }
            Some(other) => return Err(ControlError::Direction(other.to_string())),
        };
        if req.changes_params() {
            // Validate everything before touching any direction.
            let mut new = Vec::with_capacity(targets.len());
            for d in &targets {
                let mut p = *d.lock().params();
                req.apply(&mut p)?;
                new.push(p);
            }
            for (d, p) in targets.iter().zip(new) {
                let dropped = d.lock().set_params(p)?;
                drop(dropped);
                d.wake();
            }
        }
        let mut out = Map::new();
        out.insert("ok".into(), Value::Bool(true));
        let mut params = Map::new();
        let mut stats = Map::new();
        for d in &self.dirs {
            let g = d.lock();
            params.insert(d.name().into(), json!(g.params().view()));
            let mut s = json!(g.stats());
            if let Some(obj) = s.as_object_mut() {
                obj.insert("write_errors".into(), json!(d.write_errors()));
            }
            stats.insert(d.name().into(), s);
        }
        if req.stats == Some(true) {
            out.insert("stats".into(), Value::Object(stats));
        }
        if req.stats != Some(true) || req.changes_params() {
            out.insert("params".into(), Value::Object(params));
        }
        Ok(Value::Object(out))
    }
}

/// Accepts connections forever, one thread per client.
pub fn serve(listener: UnixListener, ctl: Arc<Controller>) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let ctl = Arc::clone(&ctl);
        let spawned = std::thread::Builder::new()
            .name("linkemu-ctl".into())
            .spawn(move || {
                if let Err(e) = client(stream, &ctl) {
                    eprintln!("edgemig-linkemu: control client: {e}");
                }
            });
        if let Err(e) = spawned {
            eprintln!("edgemig-linkemu: cannot spawn control thread: {e}");
        }
    }
}

fn client(stream: UnixStream, ctl: &Controller) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut reader).take(MAX_LINE as u64).read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let answer = ctl.handle_line(line.trim());
        writeln!(writer, "{answer}")?;
        writer.flush()?;
    }
}

#[cfg(test)]
mod tests;
