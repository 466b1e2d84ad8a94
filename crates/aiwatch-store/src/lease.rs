//! Leases: which `serve` instance runs which check. Each claim renews the caller's leases,
//! takes free or expired ones up to a fair share (the keys divided by the live instances,
//! rounded up) and gives back what it holds beyond that share, so a new instance gets work
//! within a claim or two and a silent one's checks move once its leases expire. Pure: the
//! engines read the current leases, ask [`plan`], and write its answer in one transaction.

use std::collections::BTreeSet;

/// A lease as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    pub key: String,
    pub holder: String,
    pub expires_at_ms: i64,
}

/// What one claim changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Keys the caller holds after the claim (renewed or newly taken), sorted.
    pub hold: Vec<String>,
    /// The caller's keys it gives back.
    pub release: Vec<String>,
}

/// The claim of `me` over `keys`, given their current leases and how many instances are alive
/// (the caller included).
pub(crate) fn plan(me: &str, keys: &[String], current: &[Lease], live: usize, now_ms: i64) -> Plan {
    let keys: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
    let share = keys.len().div_ceil(live.max(1));
    let holder = |key: &str| current.iter().find(|l| l.key == key);
    let mut mine = Vec::new();
    let mut free = Vec::new();
    for &key in &keys {
        match holder(key) {
            Some(l) if l.holder == me => mine.push(key),
            Some(l) if l.expires_at_ms > now_ms => {}
            _ => free.push(key),
        }
    }
    let mut plan = Plan::default();
    if mine.len() > share {
        plan.release = mine
            .split_off(share)
            .into_iter()
            .map(String::from)
            .collect();
    }
    let room = share - mine.len();
    mine.extend(free.into_iter().take(room));
    mine.sort_unstable();
    plan.hold = mine.into_iter().map(String::from).collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("k{i}")).collect()
    }

    fn lease(key: &str, holder: &str, expires_at_ms: i64) -> Lease {
        Lease {
            key: key.into(),
            holder: holder.into(),
            expires_at_ms,
        }
    }

    #[test]
    fn a_lone_instance_takes_every_key() {
        let p = plan("a", &keys(10), &[], 1, 0);
        assert_eq!(p.hold.len(), 10);
        assert!(p.release.is_empty());
    }

    #[test]
    fn a_second_instance_makes_the_first_give_back_half() {
        let held: Vec<Lease> = keys(10).iter().map(|k| lease(k, "a", 100)).collect();
        let b = plan("b", &keys(10), &held, 2, 50);
        assert!(b.hold.is_empty(), "nothing is free yet");
        let a = plan("a", &keys(10), &held, 2, 50);
        assert_eq!((a.hold.len(), a.release.len()), (5, 5));
    }

    #[test]
    fn expired_leases_of_others_are_free() {
        let held: Vec<Lease> = keys(4).iter().map(|k| lease(k, "a", 100)).collect();
        assert_eq!(plan("b", &keys(4), &held, 1, 100).hold.len(), 4);
        assert!(plan("b", &keys(4), &held, 1, 99).hold.is_empty());
    }
}
