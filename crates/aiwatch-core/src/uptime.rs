//! How counted checks become the uptime figure every surface shows, written once.
//!
//! ```text
//! up_ratio      = (up + degraded) / (up + degraded + down)      over known checks only
//! unknown_ratio = (unknown + missing) / (all recorded + missing)
//! ```
//!
//! A check is *up* when the provider answered properly, *degraded* when it answered but slowly
//! or cut off (it still served), *down* when the request failed whatever its status code (5xx,
//! 429 overload, 503, time-outs after connecting). Checks the monitor could not make (its own
//! network, DNS, firewall, proxy; a local runtime not running) are *unknown*: they count in
//! neither direction and are shown beside the figure. So a period in which every check failed is
//! 0 %, a period with a single failure is below 100 %, and a period with nothing known has no
//! figure at all.

/// The share of known checks that were served; `None` when nothing was known.
pub fn up_ratio(up: u64, degraded: u64, down: u64) -> Option<f64> {
    let known = up + degraded + down;
    if known == 0 {
        return None;
    }
    let served = up + degraded;
    let ratio = served as f64 / known as f64;
    // Floating point must never round a failure away.
    Some(if down > 0 {
        ratio.min(1.0 - f64::EPSILON)
    } else {
        ratio
    })
}

/// The share of expected checks whose outcome is unknown (1.0 when nothing was expected).
pub fn unknown_ratio(unknown: u64, missing: u64, recorded: u64) -> f64 {
    let all = recorded + missing;
    if all == 0 {
        return 1.0;
    }
    (unknown + missing) as f64 / all as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_period_where_every_check_failed_is_zero() {
        assert_eq!(up_ratio(0, 0, 8), Some(0.0));
        assert_eq!(up_ratio(0, 0, 0), None);
        assert_eq!(up_ratio(3, 1, 0), Some(1.0));
    }

    proptest! {
        #[test]
        fn any_failure_keeps_the_figure_below_a_hundred(up in 0u64..u64::from(u32::MAX), degraded in 0u64..1000, down in 1u64..1000) {
            let r = up_ratio(up, degraded, down).expect("known checks");
            prop_assert!(r < 1.0);
            prop_assert!(r >= 0.0);
        }
    }
}
