//! QMP asynchronous events: `{"event": ..., "data": ..., "timestamp": {...}}`.
//!
//! The crate never reads a clock (on wasm32 `SystemTime::now()` panics): every event is
//! formatted with a [`Timestamp`] the caller takes from the host's wall clock.

use serde_json::{Map, Value};

/// Host wall-clock time of an event: seconds and microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    /// Whole seconds.
    pub seconds: i64,
    /// Microseconds within the second (0..1_000_000).
    pub microseconds: i64,
}

impl Timestamp {
    /// A timestamp from microseconds since the Unix epoch.
    pub fn from_micros(us: i64) -> Timestamp {
        Timestamp {
            seconds: us.div_euclid(1_000_000),
            microseconds: us.rem_euclid(1_000_000),
        }
    }
}

/// An event: a name (`"STOP"`, `"DEVICE_TRAY_MOVED"` ...) and optional data.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event name.
    pub name: String,
    /// Data object, if the event has one.
    pub data: Option<Value>,
}

impl Event {
    /// An event without data.
    pub fn new(name: impl Into<String>) -> Event {
        Event {
            name: name.into(),
            data: None,
        }
    }

    /// An event with data.
    pub fn with_data(name: impl Into<String>, data: Value) -> Event {
        Event {
            name: name.into(),
            data: Some(data),
        }
    }

    /// The event message as sent on the wire (without line ending).
    pub fn to_json(&self, ts: Timestamp) -> Value {
        let mut m = Map::new();
        m.insert("event".into(), Value::String(self.name.clone()));
        if let Some(d) = &self.data {
            m.insert("data".into(), d.clone());
        }
        let mut t = Map::new();
        t.insert("seconds".into(), ts.seconds.into());
        t.insert("microseconds".into(), ts.microseconds.into());
        m.insert("timestamp".into(), Value::Object(t));
        Value::Object(m)
    }

    /// The event as one output line, CRLF included.
    pub fn to_line(&self, ts: Timestamp) -> String {
        crate::json::to_line(&self.to_json(ts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_with_and_without_data() {
        let ts = Timestamp::from_micros(1_267_040_730_682_409);
        assert_eq!(
            ts,
            Timestamp {
                seconds: 1_267_040_730,
                microseconds: 682_409
            }
        );
        assert_eq!(
            Event::new("STOP").to_line(ts),
            "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1267040730, \"microseconds\": 682409}}\r\n"
        );
        let e = Event::with_data(
            "DEVICE_TRAY_MOVED",
            json!({"device": "ide1-cd0", "tray-open": true}),
        );
        assert_eq!(
            e.to_json(ts),
            json!({"event": "DEVICE_TRAY_MOVED", "data": {"device": "ide1-cd0", "tray-open": true},
                   "timestamp": {"seconds": 1267040730, "microseconds": 682409}})
        );
        assert_eq!(
            Timestamp::from_micros(-1),
            Timestamp {
                seconds: -1,
                microseconds: 999_999
            }
        );
    }
}
