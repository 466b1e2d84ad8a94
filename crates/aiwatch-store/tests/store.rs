//! Behaviour of the stores through their public API, each test on SQLite and on PostgreSQL
//! (`sqlite::…`, `postgres::…`; the latter skip unless `AIWATCH_TEST_POSTGRES_URL` is set):
//! round-trips, rollup math, uptime with unknown share and gaps, pruning, incidents, states,
//! concurrent reads and leases; and what only one engine has (SQLite files, migrations).

#[macro_use]
mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use aiwatch_core::assess::{IncidentPhase, TimelineEntry, TimelineKind};
use aiwatch_core::observation::Component;
use aiwatch_core::observation::{Health, Observation, PhaseMs, Source};
use aiwatch_core::Cause;
use aiwatch_core::Status;
use aiwatch_store::sqlite::{APPLICATION_ID, SCHEMA_VERSION};
use aiwatch_store::{
    Error, Granularity, IncidentQuery, Pruned, Retention, SavedState, Selector, SqliteStore, Store,
    TimeRange,
};
use chrono::Duration;
use common::{at, component_named, incident, key, name, obs, series, TestDb};

fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aiwatch.db");
    (dir, path)
}

fn all_time() -> TimeRange {
    TimeRange::new(at("2000-01-01T00:00:00Z"), at("2100-01-01T00:00:00Z"))
}

fn openai() -> Selector {
    Selector::service(name("openai-api"))
}

fn varied_observations() -> Vec<Observation> {
    let t0 = at("2025-03-01T10:00:00.123Z");
    let mut out = Vec::new();
    for i in 0..12 {
        let mut o = obs(
            t0 + Duration::seconds(10 * i),
            Health::Up,
            Some(100.0 + i as f32),
        );
        o.region = if i % 2 == 0 { "local" } else { "eu-west" }.into();
        o.component = if i % 3 == 0 {
            Component::Web
        } else {
            Component::Api
        };
        o.source = match i % 4 {
            0 => Source::Probe,
            1 => Source::Canary,
            2 => Source::Official,
            _ => Source::Probe,
        };
        o.phases = PhaseMs {
            dns: Some(1.5),
            connect: if i % 2 == 0 { Some(10.25) } else { None },
            tls: Some(30.125),
            first_byte: Some(80.0),
            total: Some(100.0 + i as f32),
        };
        o.complete = match i % 3 {
            0 => None,
            1 => Some(true),
            _ => Some(false),
        };
        o.cause = Cause::ALL[i as usize % Cause::ALL.len()];
        o.health = [Health::Up, Health::Degraded, Health::Down, Health::Unknown][i as usize % 4];
        o.detail = format!("observation {i}: «unicode» and 'quotes'");
        out.push(o);
    }
    out
}

fn observations_round_trip_newest_first(db: &TestDb) {
    let store = db.open();
    let input = varied_observations();
    store.insert_observations(&input[..5]).unwrap();
    store.insert_observations(&input[5..]).unwrap();

    let mut expected = input.clone();
    expected.reverse();
    let got = store.observations(&openai(), all_time(), 1000).unwrap();
    assert_eq!(got, expected);

    // Filters and limit.
    let eu = store
        .observations(&openai().region("eu-west"), all_time(), 1000)
        .unwrap();
    assert_eq!(eu.len(), 6);
    assert!(eu.iter().all(|o| o.region.as_str() == "eu-west"));
    let web_probe = store
        .observations(
            &openai()
                .component(component_named("web"))
                .source(Source::Probe),
            all_time(),
            1000,
        )
        .unwrap();
    assert!(web_probe
        .iter()
        .all(|o| o.component == Component::Web && o.source == Source::Probe));
    assert_eq!(web_probe.len(), 2); // i = 0 and 3 of 0, 3, 6, 9
    assert_eq!(
        store.observations(&openai(), all_time(), 3).unwrap(),
        expected[..3]
    );
    assert!(store
        .observations(&Selector::service(name("claude")), all_time(), 10)
        .unwrap()
        .is_empty());

    // The range is half-open: `from` included, `to` excluded.
    let range = TimeRange::new(input[2].at, input[4].at);
    let got = store.observations(&openai(), range, 100).unwrap();
    assert_eq!(got, vec![input[3].clone(), input[2].clone()]);

    // The same after a restart.
    drop(store);
    assert_eq!(
        db.open().observations(&openai(), all_time(), 1000).unwrap(),
        expected
    );
}

#[test]
fn an_in_memory_sqlite_store_round_trips_observations() {
    let mem = SqliteStore::open_in_memory().unwrap();
    let input = varied_observations();
    mem.insert_observations(&input).unwrap();
    let mut expected = input.clone();
    expected.reverse();
    assert_eq!(
        mem.observations(&openai(), all_time(), 1000).unwrap(),
        expected
    );
}

fn pragma_i64(path: &Path, pragma: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_query_value(None, pragma, |r| r.get(0)).unwrap()
}

#[test]
fn an_empty_file_is_migrated_and_reopens_with_its_data() {
    let file = tempfile::NamedTempFile::new().unwrap();
    assert_eq!(std::fs::metadata(file.path()).unwrap().len(), 0);
    {
        let store = SqliteStore::open(file.path()).unwrap();
        store.insert_observations(&varied_observations()).unwrap();
        assert!(store.healthy());
    }
    assert_eq!(pragma_i64(file.path(), "user_version"), SCHEMA_VERSION);
    assert_eq!(pragma_i64(file.path(), "application_id"), APPLICATION_ID);
    let conn = rusqlite::Connection::open(file.path()).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(conn);

    for _ in 0..2 {
        let store = SqliteStore::open(file.path()).unwrap();
        assert_eq!(
            store
                .observations(&openai(), all_time(), 1000)
                .unwrap()
                .len(),
            12
        );
        assert_eq!(store.integrity_check().unwrap(), ["ok"]);
    }
    assert_eq!(pragma_i64(file.path(), "user_version"), SCHEMA_VERSION);
}

#[test]
fn a_database_from_a_newer_aiwatch_is_refused() {
    let (_dir, path) = temp_db();
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = SqliteStore::open(&path).err().expect("must refuse");
    assert!(
        matches!(err, Error::TooNew { found, supported, .. }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade aiwatch"), "{err}");
}

#[test]
fn a_foreign_sqlite_file_is_refused_and_left_alone() {
    let (_dir, path) = temp_db();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).err().expect("must refuse");
    assert!(matches!(err, Error::Foreign { .. }), "{err}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1);
}

fn rollups_count_by_health_per_minute_and_per_day(db: &TestDb) {
    let store = db.open();
    // Every 20 s for 2 days: the health cycles up, up, degraded, down, unknown.
    let t0 = at("2025-03-01T00:00:00Z");
    let health = |i: usize| match i % 5 {
        0 | 1 => Health::Up,
        2 => Health::Degraded,
        3 => Health::Down,
        _ => Health::Unknown,
    };
    let input = series(t0, Duration::seconds(20), 2 * 4320, |i| {
        (health(i), Some(50.0 + (i % 7) as f32 * 10.0))
    });
    // Batches that split minutes, so buckets are completed by later UPSERTs.
    for chunk in input.chunks(1000) {
        store.insert_observations(chunk).unwrap();
    }

    let day = store
        .rollups(&openai(), all_time(), Granularity::Day)
        .unwrap();
    assert_eq!(day.len(), 2);
    for (d, rollup) in day.iter().enumerate() {
        assert_eq!(rollup.start, t0 + Duration::days(d as i64));
        assert_eq!(rollup.key, key("openai-api", "api", "local"));
        let obs: Vec<_> = input
            .iter()
            .filter(|o| o.at.date_naive() == rollup.start.date_naive())
            .collect();
        let count = |h: Health| obs.iter().filter(|o| o.health == h).count() as u64;
        assert_eq!(rollup.counts.up, count(Health::Up));
        assert_eq!(rollup.counts.degraded, count(Health::Degraded));
        assert_eq!(rollup.counts.down, count(Health::Down));
        assert_eq!(rollup.counts.unknown, count(Health::Unknown));
        // Latency counts only the up and degraded observations.
        let lat: Vec<f64> = obs
            .iter()
            .filter(|o| matches!(o.health, Health::Up | Health::Degraded))
            .map(|o| f64::from(o.phases.total.unwrap()))
            .collect();
        assert_eq!(rollup.latency.count, lat.len() as u64);
        assert!((rollup.latency.sum_ms - lat.iter().sum::<f64>()).abs() < 1e-6);
        assert_eq!(rollup.latency.max_ms, Some(110.0));
        assert_eq!(rollup.latency.min_ms, Some(50.0));
        assert_eq!(rollup.latency.buckets.iter().sum::<u64>(), lat.len() as u64);
    }

    let minutes = store
        .rollups(
            &openai(),
            TimeRange::new(t0 + Duration::seconds(90), t0 + Duration::minutes(10)),
            Granularity::Minute,
        )
        .unwrap();
    // The range start is rounded down to its minute: minutes 1..=9.
    assert_eq!(minutes.len(), 9);
    assert_eq!(minutes[0].start, t0 + Duration::minutes(1));
    assert!(minutes.iter().all(|m| m.counts.total() == 3));
    let total: u64 = minutes.iter().map(|m| m.counts.total()).sum();
    assert_eq!(total, 27);
}

fn rollups_are_per_key_and_merge_sources_unless_selected(db: &TestDb) {
    let store = db.open();
    let t0 = at("2025-03-01T12:00:00Z");
    let mut batch = Vec::new();
    for (region, source) in [
        ("local", Source::Probe),
        ("local", Source::Canary),
        ("eu-west", Source::Probe),
    ] {
        let mut o = obs(t0, Health::Up, Some(100.0));
        o.region = region.into();
        o.source = source;
        batch.push(o);
    }
    store.insert_observations(&batch).unwrap();
    let all = store
        .rollups(&openai(), all_time(), Granularity::Minute)
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].key.region.as_str(), "eu-west");
    assert_eq!(all[0].counts.up, 1);
    assert_eq!(all[1].key.region.as_str(), "local");
    assert_eq!(all[1].counts.up, 2);
    let canary = store
        .rollups(
            &openai().source(Source::Canary),
            all_time(),
            Granularity::Minute,
        )
        .unwrap();
    assert_eq!(canary.len(), 1);
    assert_eq!(canary[0].counts.up, 1);
}

/// A deterministic spread of latencies from ~5 ms to ~5 s.
fn latency(i: usize) -> f32 {
    let x = ((i as u64).wrapping_mul(2_654_435_761) % 10_000) as f32 / 10_000.0;
    5.0 * 1000f32.powf(x)
}

fn percentiles_from_merged_rollups_are_within_bucket_error(db: &TestDb) {
    let store = db.open();
    let t0 = at("2025-03-01T06:00:00Z");
    // Three days every 30 s, partly in another region.
    let mut input = series(t0, Duration::seconds(30), 3 * 2880, |i| {
        (Health::Up, Some(latency(i)))
    });
    for (i, o) in input.iter_mut().enumerate() {
        if i % 3 == 0 {
            o.region = "us-east".into();
        }
    }
    for chunk in input.chunks(2000) {
        store.insert_observations(chunk).unwrap();
    }
    // A range with partial days at both ends (minute rollups) and whole days (day rollups).
    let range = TimeRange::new(t0 + Duration::hours(7), t0 + Duration::hours(60));
    let mut truth: Vec<f32> = input
        .iter()
        .filter(|o| o.at >= range.from && o.at < range.to)
        .map(|o| o.phases.total.unwrap())
        .collect();
    truth.sort_by(f32::total_cmp);
    let qs = [0.5, 0.9, 0.95, 0.99];
    let got = store.latency_percentiles(&openai(), range, &qs).unwrap();
    for (q, est) in qs.iter().zip(&got) {
        let exact = truth[((q * truth.len() as f64).ceil() as usize).max(1) - 1];
        let est = est.expect("has latencies");
        let err = (est / f64::from(exact) - 1.0).abs();
        assert!(err < 0.44, "q={q}: estimated {est}, exact {exact}");
    }
    // Narrowed to one region; nothing at all for an unknown one.
    let one = store
        .latency_percentiles(&openai().region("us-east"), range, &[0.5])
        .unwrap();
    assert!(one[0].is_some());
    let none = store
        .latency_percentiles(&openai().region("mars"), range, &[0.5])
        .unwrap();
    assert_eq!(none, vec![None]);
}

fn uptime_is_over_known_observations_with_the_unknown_share_beside_it(db: &TestDb) {
    let store = db.open();
    let t0 = at("2025-03-01T10:00:00Z");
    // 100 observations, 30 s apart: 80 up, 5 degraded, 10 down, 5 unknown.
    let input = series(t0, Duration::seconds(30), 100, |i| {
        let h = match i {
            0..80 => Health::Up,
            80..85 => Health::Degraded,
            85..95 => Health::Down,
            _ => Health::Unknown,
        };
        (h, Some(120.0))
    });
    store.insert_observations(&input).unwrap();
    let range = TimeRange::new(t0, t0 + Duration::seconds(30 * 100));
    let up = store.uptime(&openai(), range, None).unwrap();
    assert_eq!(up.counts.total(), 100);
    assert_eq!(up.series, 1);
    assert_eq!(up.missing, 0);
    assert_eq!(up.expected, None);
    assert!((up.up_ratio.unwrap() - 85.0 / 95.0).abs() < 1e-9);
    assert!((up.degraded_ratio.unwrap() - 5.0 / 95.0).abs() < 1e-9);
    assert!((up.unknown_ratio - 0.05).abs() < 1e-9);
    assert_eq!(up.first_seen, Some(t0));

    // With the interval known, the same figures: nothing is missing.
    let up = store
        .uptime(&openai(), range, Some(StdDuration::from_secs(30)))
        .unwrap();
    assert_eq!(up.expected, Some(100));
    assert_eq!(up.missing, 0);
    assert!((up.unknown_ratio - 0.05).abs() < 1e-9);
}

fn time_without_observations_counts_as_unknown_never_as_up(db: &TestDb) {
    let store = db.open();
    let t0 = at("2025-03-01T10:00:00Z");
    // One hour at a 30 s interval, but the monitor was off for the second half.
    store
        .insert_observations(&series(t0, Duration::seconds(30), 60, |_| {
            (Health::Up, Some(80.0))
        }))
        .unwrap();
    let hour = TimeRange::new(t0, t0 + Duration::hours(1));
    let up = store
        .uptime(&openai(), hour, Some(StdDuration::from_secs(30)))
        .unwrap();
    assert_eq!(up.expected, Some(120));
    assert_eq!(up.missing, 60);
    assert_eq!(up.up_ratio, Some(1.0));
    assert!((up.unknown_ratio - 0.5).abs() < 1e-9);

    // A range in which the monitor was off entirely: not 100 %, all unknown.
    let later = TimeRange::new(t0 + Duration::days(1), t0 + Duration::days(2));
    let off = store
        .uptime(&openai(), later, Some(StdDuration::from_secs(30)))
        .unwrap();
    assert_eq!(off.up_ratio, None);
    assert_eq!(off.unknown_ratio, 1.0);
    assert_eq!(off.missing, 2880);
    // Without an interval the gap cannot be sized, but it is still not "up".
    let off = store.uptime(&openai(), later, None).unwrap();
    assert_eq!(off.up_ratio, None);
    assert_eq!(off.unknown_ratio, 1.0);
    // A service never observed at all.
    let never = store
        .uptime(&Selector::service(name("mistral")), later, None)
        .unwrap();
    assert_eq!(
        (never.series, never.up_ratio, never.unknown_ratio),
        (0, None, 1.0)
    );
}

fn uptime_over_90_days_matches_the_raw_counts(db: &TestDb) {
    let store = db.open();
    let t0 = at("2025-01-01T00:00:00Z");
    // Every 10 minutes for 95 days; down one observation in seven.
    let input = series(t0, Duration::minutes(10), 95 * 144, |i| {
        (
            if i % 7 == 0 { Health::Down } else { Health::Up },
            Some(200.0),
        )
    });
    for chunk in input.chunks(5000) {
        store.insert_observations(chunk).unwrap();
    }
    let to = at("2025-04-02T13:37:00Z");
    let range = TimeRange::last(Duration::days(90), to);
    let up = store
        .uptime(&openai(), range, Some(StdDuration::from_secs(600)))
        .unwrap();
    let inside: Vec<_> = input
        .iter()
        .filter(|o| o.at >= range.from && o.at < range.to)
        .collect();
    let down = inside.iter().filter(|o| o.health == Health::Down).count() as u64;
    assert_eq!(up.counts.total(), inside.len() as u64);
    assert_eq!(up.counts.down, down);
    assert_eq!(up.missing, 0);
    assert_eq!(up.unknown_ratio, 0.0);
    assert!((up.up_ratio.unwrap() - (1.0 - down as f64 / inside.len() as f64)).abs() < 1e-12);
}

fn pruning_raw_observations_keeps_rollups(db: &TestDb) {
    let store = db.open();
    let t0 = at("2025-03-01T00:00:00Z");
    let input = series(t0, Duration::minutes(1), 2 * 1440, |i| {
        (
            if i % 10 == 0 {
                Health::Down
            } else {
                Health::Up
            },
            Some(90.0),
        )
    });
    store.insert_observations(&input).unwrap();
    let day1 = TimeRange::new(t0, t0 + Duration::days(1));
    let before = store.uptime(&openai(), day1, None).unwrap();
    let rollups_before = store
        .rollups(&openai(), all_time(), Granularity::Minute)
        .unwrap();

    let deleted = store.prune_raw(t0 + Duration::days(1)).unwrap();
    assert_eq!(deleted, 1440);
    assert!(store.observations(&openai(), day1, 10).unwrap().is_empty());
    assert_eq!(
        store
            .observations(&openai(), all_time(), 10_000)
            .unwrap()
            .len(),
        1440
    );
    assert_eq!(store.uptime(&openai(), day1, None).unwrap(), before);
    assert_eq!(
        store
            .rollups(&openai(), all_time(), Granularity::Minute)
            .unwrap(),
        rollups_before
    );
    assert_eq!(store.prune_raw(t0 + Duration::days(1)).unwrap(), 0);
    // Schedules still resume from the last observation, and baselines from what is left.
    let api = key("openai-api", "api", "local");
    assert_eq!(
        store.last_observation_at(&api).unwrap(),
        Some(t0 + Duration::minutes(2 * 1440 - 1))
    );
    assert_eq!(
        store
            .recent_latencies(&api, Source::Probe, 5)
            .unwrap()
            .len(),
        5
    );
    // Everything raw goes, in several bounded transactions; the day rollups still know the key.
    assert_eq!(store.prune_raw(t0 + Duration::days(3)).unwrap(), 1440);
    assert!(store
        .recent_latencies(&api, Source::Probe, 5)
        .unwrap()
        .is_empty());
    assert_eq!(
        store.last_observation_at(&api).unwrap(),
        Some(t0 + Duration::minutes(2 * 1440 - 1))
    );
}

fn a_large_prune_is_split_into_chunks_and_cuts_exactly(db: &TestDb) {
    let store = db.open();
    let t0 = at("2025-03-01T00:00:00Z");
    // 50,000 observations 1 s apart (more than two prune chunks).
    let input = series(t0, Duration::seconds(1), 50_000, |_| {
        (Health::Up, Some(10.0))
    });
    for chunk in input.chunks(10_000) {
        store.insert_observations(chunk).unwrap();
    }
    // A cut-off in the middle of a minute keeps that minute's later half.
    let cut = t0 + Duration::seconds(45_030);
    assert_eq!(store.prune_raw(cut).unwrap(), 45_030);
    let left = store.observations(&openai(), all_time(), 100_000).unwrap();
    assert_eq!(left.len(), 50_000 - 45_030);
    assert_eq!(left.last().unwrap().at, cut);
    // Rollup buckets go when they *start* before the cut-off: minutes 0..=750.
    assert_eq!(store.prune_rollups(Granularity::Minute, cut).unwrap(), 751);
}

fn late_observations_land_in_their_own_buckets(db: &TestDb) {
    let store = db.open();
    let t0 = at("2025-03-01T10:00:00Z");
    let api = key("openai-api", "api", "local");
    store
        .insert_observations(&[obs(t0 + Duration::hours(1), Health::Up, Some(100.0))])
        .unwrap();
    // An agent pushes an older observation afterwards.
    store
        .insert_observations(&[obs(t0, Health::Down, None)])
        .unwrap();
    let got = store.observations(&openai(), all_time(), 10).unwrap();
    assert_eq!(
        got.iter().map(|o| o.at).collect::<Vec<_>>(),
        [t0 + Duration::hours(1), t0]
    );
    let minutes = store
        .rollups(&openai(), all_time(), Granularity::Minute)
        .unwrap();
    assert_eq!(minutes.len(), 2);
    assert_eq!((minutes[0].start, minutes[0].counts.down), (t0, 1));
    assert_eq!(minutes[1].counts.up, 1);
    assert_eq!(
        store.last_observation_at(&api).unwrap(),
        Some(t0 + Duration::hours(1))
    );
}

fn pruned_tiers_fall_back_to_coarser_rollups(db: &TestDb) {
    let store = db.open();
    let t0 = at("2025-03-01T00:00:00Z");
    store
        .insert_observations(&series(t0, Duration::minutes(1), 3 * 1440, |_| {
            (Health::Up, Some(90.0))
        }))
        .unwrap();
    let total = |store: &dyn Store| {
        let range = TimeRange::new(
            t0 + Duration::minutes(12 * 60 + 30),
            t0 + Duration::hours(60),
        );
        store.uptime(&openai(), range, None).unwrap().counts.total()
    };
    // 12:30 on day 1 to 12:00 on day 3, one observation a minute.
    assert_eq!(total(&*store), 2850);
    assert_eq!(
        store
            .rollups(&openai(), all_time(), Granularity::Hour)
            .unwrap()
            .len(),
        72
    );

    // Minutes of day 1 gone: the head's partial hour (12:30–13:00) is read whole from its hour.
    assert_eq!(
        store
            .prune_rollups(Granularity::Minute, t0 + Duration::days(1))
            .unwrap(),
        1440
    );
    assert_eq!(total(&*store), 2850 + 30);
    // Hours of day 1 gone too: day 1 is read whole from its day rollup.
    assert_eq!(
        store
            .prune_rollups(Granularity::Hour, t0 + Duration::days(1))
            .unwrap(),
        24
    );
    assert_eq!(total(&*store), 3 * 1440 - 720);
    // Day rollups go by their own cut-off.
    assert_eq!(
        store
            .prune_rollups(Granularity::Day, t0 + Duration::days(2))
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .rollups(&openai(), all_time(), Granularity::Day)
            .unwrap()
            .len(),
        1
    );
}

fn a_retention_policy_prunes_every_tier(db: &TestDb) {
    let store = db.open();
    let t0 = at("2025-01-01T00:00:00Z");
    store
        .insert_observations(&series(t0, Duration::hours(1), 100 * 24, |_| {
            (Health::Up, Some(90.0))
        }))
        .unwrap();
    let now = t0 + Duration::days(100);
    let pruned = store.prune(&Retention::default(), now).unwrap();
    // Raw 14 days, minute 8 days, hour 95 days, day 400 days; one observation an hour.
    assert_eq!(
        pruned,
        Pruned {
            raw: 86 * 24,
            minute: 92 * 24,
            hour: 5 * 24,
            day: 0,
            deliveries: 0,
            reports: 0,
        }
    );
    // 90-day uptime still counts every hour of the 90 days.
    let up = store
        .uptime(&openai(), TimeRange::last(Duration::days(90), now), None)
        .unwrap();
    assert_eq!(up.counts.total(), 90 * 24);
}

fn incidents_are_upserted_listed_and_resolved(db: &TestDb) {
    let store = db.open();
    let t0 = at("2025-03-01T10:00:00Z");
    let a = incident("inc-a", key("openai-api", "api", "local"), t0);
    let mut b = incident(
        "inc-b",
        key("claude", "web", "local"),
        t0 + Duration::hours(1),
    );
    let c = incident(
        "inc-c",
        key("openai-api", "api", "eu-west"),
        t0 + Duration::hours(2),
    );
    for i in [&a, &b, &c] {
        store.upsert_incident(i).unwrap();
    }
    assert_eq!(store.incident("inc-b").unwrap(), Some(b.clone()));
    assert_eq!(store.incident("nope").unwrap(), None);
    let open: Vec<_> = store
        .open_incidents()
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(open, ["inc-a", "inc-b", "inc-c"]);

    // b validates and resolves; the whole incident is replaced.
    b.phase = IncidentPhase::Resolved;
    b.resolved_at = Some(t0 + Duration::hours(3));
    b.updated_at = t0 + Duration::hours(3);
    b.confirmed = true;
    b.timeline.push(TimelineEntry {
        at: t0 + Duration::hours(3),
        kind: TimelineKind::Resolved,
        text: "2 canaries passed".into(),
    });
    store.upsert_incident(&b).unwrap();
    assert_eq!(store.incident("inc-b").unwrap(), Some(b.clone()));
    let open: Vec<_> = store
        .open_incidents()
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(open, ["inc-a", "inc-c"]);

    let ids = |q: IncidentQuery| -> Vec<String> {
        store
            .incidents(&q)
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect()
    };
    assert_eq!(ids(IncidentQuery::default()), ["inc-c", "inc-b", "inc-a"]);
    assert_eq!(
        ids(IncidentQuery {
            service: Some(name("openai-api")),
            ..IncidentQuery::default()
        }),
        ["inc-c", "inc-a"]
    );
    assert_eq!(
        ids(IncidentQuery {
            open_only: true,
            limit: 1,
            ..IncidentQuery::default()
        }),
        ["inc-c"]
    );
    // Overlapping a window after b was resolved: only the still-open ones.
    assert_eq!(
        ids(IncidentQuery {
            from: Some(t0 + Duration::hours(4)),
            ..IncidentQuery::default()
        }),
        ["inc-c", "inc-a"]
    );
    // Opened before 01:30: a and b (resolved ones included).
    assert_eq!(
        ids(IncidentQuery {
            to: Some(t0 + Duration::minutes(90)),
            ..IncidentQuery::default()
        }),
        ["inc-b", "inc-a"]
    );
}

fn states_and_last_observations_survive_a_restart(db: &TestDb) {
    let t0 = at("2025-03-01T10:00:00Z");
    let api = key("openai-api", "api", "local");
    let web = key("openai-api", "web", "local");
    {
        let store = db.open();
        store
            .save_states(&[
                SavedState {
                    key: api.clone(),
                    state: Status::Operational,
                    since: Some(t0),
                },
                SavedState {
                    key: web.clone(),
                    state: Status::Unknown,
                    since: None,
                },
            ])
            .unwrap();
        store
            .save_states(&[SavedState {
                key: api.clone(),
                state: Status::Outage,
                since: Some(t0 + Duration::minutes(5)),
            }])
            .unwrap();
        let mut batch = series(t0, Duration::seconds(30), 10, |i| {
            (
                if i == 8 { Health::Down } else { Health::Up },
                Some(100.0 + i as f32),
            )
        });
        let mut canary = obs(t0 + Duration::minutes(20), Health::Up, Some(42.5));
        canary.source = Source::Canary;
        batch.push(canary);
        store.insert_observations(&batch).unwrap();
        store
            .upsert_incident(&incident("inc-1", api.clone(), t0))
            .unwrap();
        store.flush().unwrap();
    }
    let store = db.open();
    let states = store.load_states().unwrap();
    assert_eq!(
        states,
        vec![
            SavedState {
                key: api.clone(),
                state: Status::Outage,
                since: Some(t0 + Duration::minutes(5)),
            },
            SavedState {
                key: web.clone(),
                state: Status::Unknown,
                since: None,
            },
        ]
    );
    assert_eq!(store.open_incidents().unwrap().len(), 1);
    assert_eq!(
        store.last_observation_at(&api).unwrap(),
        Some(t0 + Duration::minutes(20))
    );
    assert_eq!(store.last_observation_at(&web).unwrap(), None);
    assert_eq!(
        store.last_observation_times().unwrap(),
        vec![(api.clone(), t0 + Duration::minutes(20))]
    );
    // Baseline seed: the last up probe latencies, oldest first, skipping the down one.
    assert_eq!(
        store.recent_latencies(&api, Source::Probe, 3).unwrap(),
        [106.0, 107.0, 109.0]
    );
    assert_eq!(
        store.recent_latencies(&api, Source::Canary, 10).unwrap(),
        [42.5]
    );
}

fn bad_queries_are_refused_not_guessed(db: &TestDb) {
    let store = db.open();
    let t0 = at("2025-03-01T10:00:00Z");
    let backwards = TimeRange::new(t0, t0 - Duration::hours(1));
    assert!(matches!(
        store.observations(&openai(), backwards, 10),
        Err(Error::InvalidQuery(_))
    ));
    assert!(matches!(
        store.uptime(&openai(), backwards, None),
        Err(Error::InvalidQuery(_))
    ));
    assert!(matches!(
        store.latency_percentiles(&openai(), TimeRange::new(t0, t0), &[1.5]),
        Err(Error::InvalidQuery(_))
    ));
    assert!(store.insert_observations(&[]).is_ok());
}

fn readers_run_alongside_the_writer(db: &TestDb) {
    // Shared the way the daemon shares it.
    let store: Arc<dyn Store> = db.open();
    let t0 = at("2025-03-01T00:00:00Z");
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            for b in 0..40 {
                let batch = series(
                    t0 + Duration::minutes(b * 100),
                    Duration::minutes(1),
                    100,
                    |_| (Health::Up, Some(50.0)),
                );
                store.insert_observations(&batch).unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut seen = HashSet::new();
                for _ in 0..40 {
                    let up = store.uptime(&openai(), all_time(), None).unwrap();
                    // Batches are atomic: readers see whole batches only.
                    assert_eq!(up.counts.total() % 100, 0);
                    seen.insert(up.counts.total());
                    store.observations(&openai(), all_time(), 50).unwrap();
                    assert!(store.healthy());
                }
                seen
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(
        store
            .uptime(&openai(), all_time(), None)
            .unwrap()
            .counts
            .total(),
        4000
    );
}

/// A pushed batch and the agent's sequence cursor are saved together; the cursor never goes down.
fn a_pushed_batch_and_its_cursor_are_saved_together(db: &TestDb) {
    let store = db.open();
    assert_eq!(store.cursor("agent_seq:eu-west").unwrap(), 0);
    let batch = varied_observations();
    store
        .insert_pushed(&batch, "agent_seq:eu-west", 12)
        .unwrap();
    // A lower number never lowers the cursor.
    store.insert_pushed(&[], "agent_seq:eu-west", 3).unwrap();
    drop(store);
    let store = db.open();
    assert_eq!(store.cursor("agent_seq:eu-west").unwrap(), 12);
    assert_eq!(store.cursor("agent_seq:us-east").unwrap(), 0);
    let stored = store.observations(&openai(), all_time(), 100).unwrap();
    assert_eq!(stored.len(), batch.len());
    // A push whose observations were all skipped as stale still moves the cursor on.
    store.insert_pushed(&[], "agent_seq:eu-west", 15).unwrap();
    assert_eq!(store.cursor("agent_seq:eu-west").unwrap(), 15);
    assert_eq!(
        store
            .observations(&openai(), all_time(), 100)
            .unwrap()
            .len(),
        batch.len()
    );
}

#[test]
fn a_postgres_database_from_a_newer_aiwatch_is_refused() {
    let Some(db) = common::postgres_db("newer_schema") else {
        return;
    };
    drop(db.open());
    let common::TestDb::Postgres(pg) = &db else {
        unreachable!("a PostgreSQL database")
    };
    let mut client = pg.url.connect_admin(StdDuration::from_secs(10)).unwrap();
    client
        .execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(aiwatch_store::postgres::SCHEMA_VERSION + 1)],
        )
        .unwrap();
    let err = aiwatch_store::PostgresStore::open(&pg.url, Default::default())
        .err()
        .expect("must refuse");
    assert!(matches!(err, Error::PostgresTooNew { .. }), "{err}");
    assert!(err.to_string().contains("upgrade aiwatch"), "{err}");
}

#[test]
fn an_unreachable_postgres_fails_fast_naming_the_host_but_not_the_password() {
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = aiwatch_store::PostgresUrl::parse(&format!(
        "postgres://aiwatch:hunter2secret@127.0.0.1:{port}/aiwatch"
    ))
    .unwrap();
    let started = std::time::Instant::now();
    let err = aiwatch_store::PostgresStore::open(
        &url,
        aiwatch_store::PostgresOptions {
            connect_timeout: StdDuration::from_secs(2),
            ..Default::default()
        },
    )
    .err()
    .expect("nothing listens there");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("hunter2secret"), "{text}");
    assert!(started.elapsed() < StdDuration::from_secs(5));
}

/// Two instances claiming the same checks split them; when one stops renewing, the other has
/// them all once the lease time has passed.
fn two_instances_split_the_checks_and_take_over_a_silent_ones(db: &TestDb) {
    let a = db.open();
    let b = db.open();
    let keys: Vec<String> = (0..10)
        .map(|i| format!("openai-api/api/check-{i}"))
        .collect();
    let ttl = StdDuration::from_secs(30);
    let t0 = at("2026-12-07T01:00:00Z");
    let mut now = t0;
    let (mut held_a, mut held_b) = (Vec::new(), Vec::new());
    // Claims every 10 s (a third of the lease), in turn, as the two daemons would.
    for _ in 0..4 {
        held_a = a.claim_checks("a", &keys, ttl, now).unwrap();
        let set_a: HashSet<_> = held_a.iter().collect();
        assert!(
            held_b.iter().all(|k| !set_a.contains(k)),
            "{held_a:?} {held_b:?}"
        );
        now += Duration::seconds(5);
        held_b = b.claim_checks("b", &keys, ttl, now).unwrap();
        let set_b: HashSet<_> = held_b.iter().collect();
        assert!(
            held_a.iter().all(|k| !set_b.contains(k)),
            "{held_a:?} {held_b:?}"
        );
        now += Duration::seconds(5);
    }
    assert_eq!((held_a.len(), held_b.len()), (5, 5));
    let all: HashSet<_> = held_a.iter().chain(&held_b).collect();
    assert_eq!(all.len(), 10);

    // `a` stops claiming. Until its leases run out, `b` keeps its own half only.
    let a_last = now - Duration::seconds(10);
    let before_expiry = a_last + Duration::seconds(29);
    assert_eq!(
        b.claim_checks("b", &keys, ttl, before_expiry).unwrap(),
        held_b
    );
    let after_expiry = a_last + Duration::seconds(30);
    assert_eq!(
        b.claim_checks("b", &keys, ttl, after_expiry).unwrap(),
        keys_sorted(&keys)
    );

    // A job for one instance only, claimed as a key of its own: one of the two gets it.
    let job = ["outbox".to_string()];
    let a_job = a.claim_checks("a", &job, ttl, after_expiry).unwrap();
    let b_job = b.claim_checks("b", &job, ttl, after_expiry).unwrap();
    assert_eq!(a_job.len() + b_job.len(), 1, "{a_job:?} {b_job:?}");

    // A clean stop hands everything over at once.
    b.release_checks("b").unwrap();
    assert_eq!(
        a.claim_checks("a", &keys, ttl, after_expiry).unwrap(),
        keys_sorted(&keys)
    );
}

fn keys_sorted(keys: &[String]) -> Vec<String> {
    let mut keys = keys.to_vec();
    keys.sort();
    keys
}

/// Two instances recording the same incident change and notification (as two daemons that
/// both saw the outage would) store one incident and one notification.
fn the_same_incident_recorded_by_two_instances_is_stored_once(db: &TestDb) {
    use aiwatch_core::alert::AlertEvent;
    use aiwatch_core::alert_rules::{AlertMessage, Notification, MESSAGE_VERSION};
    let a = db.open();
    let b = db.open();
    let t0 = at("2026-12-07T01:00:00Z");
    let inc = incident("inc-shared", key("openai-api", "api", "local"), t0);
    let n = Notification {
        alert: "ops".into(),
        message: AlertMessage {
            version: MESSAGE_VERSION,
            event: AlertEvent::Opened,
            service: Some("openai-api".into()),
            service_title: None,
            component: Some("api".into()),
            region: Some("local".into()),
            status: Status::Outage,
            scope: aiwatch_core::Scope::Global,
            cause: Cause::ProviderError,
            title: "down".into(),
            summary: "down".into(),
            advice: vec![],
            official: None,
            dashboard_url: "http://localhost:8080".into(),
            incident_id: "inc-shared".into(),
            idempotency_key: "inc-shared:opened".into(),
            at: t0,
            since: t0,
        },
    };
    let threads: Vec<_> = [a, b]
        .into_iter()
        .map(|store| {
            let (inc, n) = (inc.clone(), n.clone());
            std::thread::spawn(move || store.record(&[inc], &[n]).unwrap())
        })
        .collect();
    let new: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(new, 1);
    let store = db.open();
    assert_eq!(store.open_incidents().unwrap(), vec![inc]);
    assert_eq!(store.due_deliveries(t0, 10).unwrap().len(), 1);
}

on_both_engines!(
    observations_round_trip_newest_first,
    rollups_count_by_health_per_minute_and_per_day,
    rollups_are_per_key_and_merge_sources_unless_selected,
    percentiles_from_merged_rollups_are_within_bucket_error,
    uptime_is_over_known_observations_with_the_unknown_share_beside_it,
    time_without_observations_counts_as_unknown_never_as_up,
    uptime_over_90_days_matches_the_raw_counts,
    pruning_raw_observations_keeps_rollups,
    a_large_prune_is_split_into_chunks_and_cuts_exactly,
    late_observations_land_in_their_own_buckets,
    pruned_tiers_fall_back_to_coarser_rollups,
    a_retention_policy_prunes_every_tier,
    incidents_are_upserted_listed_and_resolved,
    states_and_last_observations_survive_a_restart,
    bad_queries_are_refused_not_guessed,
    readers_run_alongside_the_writer,
    two_instances_split_the_checks_and_take_over_a_silent_ones,
    the_same_incident_recorded_by_two_instances_is_stored_once,
    a_pushed_batch_and_its_cursor_are_saved_together,
);
