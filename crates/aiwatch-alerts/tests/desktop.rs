//! The desktop channel end to end on a private D-Bus session bus: a `dbus-daemon` started for
//! this test, a fake `org.freedesktop.Notifications` served on it with zbus, and notify-rust (the
//! channel's real client) talking to it through `DBUS_SESSION_BUS_ADDRESS`. Nothing reaches the
//! desktop of whoever runs the tests.
//!
//! This is its own test binary with one test, so changing the process environment is safe here.

#![cfg(all(feature = "desktop", unix, not(target_os = "macos")))]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use aiwatch_alerts::send::attempt;
use aiwatch_alerts::Answer;
use aiwatch_core::alert::AlertEvent;
use aiwatch_testkit::World;
use common::{channel, context, message};

/// What each step may take; the whole test is bounded by [`WHOLE_TEST`].
const STEP: Duration = Duration::from_secs(5);
const WHOLE_TEST: Duration = Duration::from_secs(20);

const NAME: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";

/// A session bus of its own: everything allowed, listening on a socket in a temporary directory,
/// and no service directories, so that nothing installed on this machine is ever auto-started
/// for a name nobody owns.
const BUS_CONFIG: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir=@DIR@</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#;

/// A running `dbus-daemon`, killed (and reaped) on drop.
struct PrivateBus {
    child: Child,
    address: String,
    /// Holds the config and the socket; removed after the daemon is gone.
    dir: tempfile::TempDir,
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a spawned daemon if starting it goes wrong before a [`PrivateBus`] owns it.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a private bus; `None` when `dbus-daemon` is not installed.
fn start_bus() -> Option<PrivateBus> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("bus.conf");
    let socket_dir = dir.path().to_str().expect("a UTF-8 temporary path");
    std::fs::write(&config, BUS_CONFIG.replace("@DIR@", socket_dir)).expect("the bus config");
    // Its warnings (e.g. it may not raise its fd limit in a container) stay out of the test
    // output unless it fails to start.
    let log = dir.path().join("dbus-daemon.log");
    let stderr = std::fs::File::create(&log).expect("the daemon's log");
    let spawned = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config.display()))
        .args(["--nofork", "--print-address=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("dbus-daemon does not start: {e}"),
    };
    let stdout = child.stdout.take().expect("piped stdout");
    let mut reaper = Reaper(Some(child));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
    });
    let read = rx.recv_timeout(STEP);
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    let address = match read {
        Ok(Ok(line)) => line.trim().to_owned(),
        Ok(Err(e)) => panic!(
            "cannot read the address dbus-daemon prints: {e}; it said: {}",
            said()
        ),
        Err(_) => panic!(
            "dbus-daemon printed no address within {STEP:?}; it said: {}",
            said()
        ),
    };
    assert!(
        address.starts_with("unix:"),
        "dbus-daemon printed no bus address: {address:?}; it said: {}",
        said()
    );
    Some(PrivateBus {
        child: reaper.0.take().expect("the child"),
        address,
        dir,
    })
}

/// One call of `Notify`: (app_name, summary, body).
type Shown = (String, String, String);

/// The fake notification server: records every notification and numbers it.
struct FakeNotifications {
    shown: Arc<Mutex<Vec<Shown>>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl FakeNotifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        _hints: HashMap<String, zbus::OwnedVariant>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut shown = self.shown.lock().unwrap();
        shown.push((app_name, summary, body));
        u32::try_from(shown.len()).unwrap()
    }

    #[zbus(out_args("name", "vendor", "version", "spec_version"))]
    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "aiwatch-test".into(),
            "aiwatch".into(),
            "0".into(),
            "1.2".into(),
        )
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into()]
    }
}

async fn send_desktop(world: &World) -> Answer {
    let channel = channel(world, "[[alert]]\nname = \"me\"\nkind = \"desktop\"\n", &[]);
    let msg = message(AlertEvent::Opened);
    tokio::time::timeout(
        STEP + Duration::from_secs(1),
        attempt(&context(world), &channel, channel.outbound(&msg), STEP),
    )
    .await
    .expect("attempt keeps to its own timeout")
}

fn assert_no_service(answer: &Answer, case: &str) {
    assert!(!answer.accepted, "{case}: {answer:?}");
    assert!(answer.transient, "{case}: worth retrying: {answer:?}");
    assert!(
        answer
            .detail
            .starts_with("no desktop notification service answered"),
        "{case}: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desktop_channel_notifies_through_the_session_bus_and_fails_softly_without_one() {
    let Some(bus) = start_bus() else {
        println!("skipped: dbus-daemon not installed (Debian package dbus-daemon)");
        return;
    };
    tokio::time::timeout(WHOLE_TEST, run(&bus))
        .await
        .expect("the desktop test finishes within 20 s");
}

async fn run(bus: &PrivateBus) {
    // Before anything connects: notify-rust opens a new session connection per notification.
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    let world = World::start().await;

    let shown = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::time::timeout(
        STEP,
        zbus::connection::Builder::address(bus.address.as_str())
            .serve_at(
                PATH,
                FakeNotifications {
                    shown: shown.clone(),
                },
            )
            .name(NAME)
            .build(),
    )
    .await
    .expect("the fake server connects in time")
    .expect("the fake server connects and owns org.freedesktop.Notifications");

    // Shown: one notification, from aiwatch, titled and with the summary and the link.
    let answer = send_desktop(&world).await;
    assert!(answer.accepted, "{answer:?}");
    assert_eq!(answer.detail, "shown on the desktop");
    let msg = message(AlertEvent::Opened);
    {
        let seen = shown.lock().unwrap();
        assert_eq!(seen.len(), 1, "exactly one notification: {seen:?}");
        let (app_name, summary, body) = &seen[0];
        assert_eq!(app_name, "aiwatch");
        assert_eq!(summary, &msg.title);
        assert!(body.contains(&msg.summary), "the summary in {body:?}");
        assert!(body.contains(&msg.dashboard_url), "the link in {body:?}");
    }

    // Nobody owns the name any more (and nothing can be activated): a soft, retried failure.
    let released = tokio::time::timeout(STEP, server.release_name(NAME))
        .await
        .expect("the name is released in time")
        .expect("the name is released");
    assert!(released, "the fake server owned the name");
    let answer = send_desktop(&world).await;
    assert_no_service(&answer, "no notification service on the bus");
    assert_eq!(shown.lock().unwrap().len(), 1, "nothing more was shown");
    println!("no service on the bus: {}", answer.detail);

    // No session bus at all (a headless machine): the same soft failure.
    let nowhere = bus.dir.path().join("no-bus-here");
    std::env::set_var(
        "DBUS_SESSION_BUS_ADDRESS",
        format!("unix:path={}", nowhere.display()),
    );
    let answer = send_desktop(&world).await;
    assert_no_service(&answer, "no session bus");
    println!("no session bus: {}", answer.detail);

    drop(server);
}
