//! How stored words and numbers turn back into values, the same for both engines: strictly (a
//! word this version does not know is a decode error that names it, never a silent default).

use aiwatch_core::observation::Component;
use aiwatch_core::ServiceName;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

pub(crate) fn service_name(raw: String) -> Result<ServiceName> {
    ServiceName::parse(&raw).map_err(|reason| Error::Decode {
        what: "service name",
        reason,
    })
}

pub(crate) fn component(raw: String) -> Result<Component> {
    Component::parse(&raw).ok_or_else(|| Error::Decode {
        what: "component",
        reason: format!("`{raw}` is not a component (api, web, official)"),
    })
}

/// A stored word decoded strictly.
pub(crate) fn word<T>(
    raw: String,
    what: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T> {
    parse(&raw).ok_or_else(|| Error::Decode {
        what,
        reason: format!("`{raw}` is not a known value"),
    })
}

/// Unix milliseconds back to a time.
pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| Error::Decode {
        what: "timestamp",
        reason: format!("{ms} ms is out of range"),
    })
}

/// Serializes a unit-like enum to its serde name (`"outage"`, `"resolved"`).
pub(crate) fn serde_name<T: serde::Serialize>(what: &'static str, value: &T) -> Result<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        Ok(other) => Ok(other.to_string()),
        Err(e) => Err(Error::Encode {
            what,
            reason: e.to_string(),
        }),
    }
}

/// The saved assessor state word back to a status.
pub(crate) fn status(raw: String) -> Result<aiwatch_core::Status> {
    serde_json::from_value(serde_json::Value::String(raw)).map_err(|e| Error::Decode {
        what: "state",
        reason: e.to_string(),
    })
}

/// An incident from its stored JSON.
pub(crate) fn incident(body: &str) -> Result<aiwatch_core::assess::Incident> {
    serde_json::from_str(body).map_err(|e| Error::Decode {
        what: "incident",
        reason: e.to_string(),
    })
}

/// Check a range is not backwards.
pub(crate) fn check_range(range: crate::store::TimeRange) -> Result<()> {
    if range.from > range.to {
        return Err(Error::InvalidQuery(format!(
            "`from` ({}) is after `to` ({})",
            range.from, range.to
        )));
    }
    Ok(())
}

/// Refuses quantiles outside `0..=1`.
pub(crate) fn check_quantiles(quantiles: &[f64]) -> Result<()> {
    match quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        Some(q) => Err(Error::InvalidQuery(format!(
            "quantile {q} is outside 0..=1"
        ))),
        None => Ok(()),
    }
}
