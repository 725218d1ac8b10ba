use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::config::{Config, PathRule};
use crate::media::{CodecParams, Frame};

fn params() -> Vec<CodecParams> {
    crate::media::testing::av()
}

fn spec(path: &str) -> SessionSpec {
    SessionSpec {
        protocol: Protocol::Rtmp,
        role: Role::Publisher,
        path: path.into(),
        remote: None,
        query: String::new(),
        token: None,
    }
}

fn reader_spec(path: &str) -> SessionSpec {
    SessionSpec {
        role: Role::Reader,
        ..spec(path)
    }
}

fn hub_with(grace: Duration, takeover: bool) -> Hub {
    let c = Config {
        path_defaults: PathRule {
            publisher_grace: Some(grace),
            takeover: Some(takeover),
            ..Default::default()
        },
        ..Default::default()
    };
    Hub::new(Arc::new(c))
}

fn video(p: &Publisher, dts: i64, key: bool) -> Frame {
    Frame::new(p.track(0).unwrap(), dts, dts, key, Bytes::from_static(b"v"))
}

#[tokio::test]
async fn second_publisher_is_refused_and_first_undisturbed() {
    let hub = hub_with(Duration::ZERO, false);
    let mut first = hub.publish(spec("live/a")).unwrap();
    first.start(params()).unwrap();
    let err = hub.publish(spec("live/a")).err().unwrap();
    assert!(matches!(err, PublishError::Busy { .. }), "{err}");
    assert!(!first.session().is_cancelled());
    let mut r = hub
        .read(reader_spec("live/a"), StartAt::Live)
        .await
        .unwrap();
    let f = video(&first, 0, true);
    first.write(f);
    assert!(r.reader.recv().await.is_some());
}

#[tokio::test]
async fn takeover_kicks_the_first_publisher_and_continues_the_stream() {
    let hub = hub_with(Duration::ZERO, true);
    let mut first = hub.publish(spec("live/a")).unwrap();
    first.start(params()).unwrap();
    let stream = hub.stream("live/a").unwrap();
    let second = hub.publish(spec("live/a")).unwrap();
    assert!(first.session().is_cancelled());
    drop(first); // its unpublish must not release the new publisher's slot
    let mut second = second;
    second.start(params()).unwrap();
    assert!(Arc::ptr_eq(&stream, &hub.stream("live/a").unwrap()));
}

#[tokio::test(start_paused = true)]
async fn a_publisher_that_returns_within_grace_continues_with_rebased_timestamps() {
    let hub = hub_with(Duration::from_secs(5), false);
    let mut p = hub.publish(spec("live/a")).unwrap();
    p.start(params()).unwrap();
    let mut r = hub
        .read(reader_spec("live/a"), StartAt::Live)
        .await
        .unwrap();
    for i in 0..10 {
        let f = video(&p, i * 3000, i == 0);
        p.write(f);
    }
    drop(p);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        hub.path_snapshot("live/a").unwrap().state,
        "waiting_for_publisher"
    );
    let mut p = hub.publish(spec("live/a")).unwrap();
    p.start(params()).unwrap();
    // The new session's clock starts at 0 again.
    let f = video(&p, 0, true);
    p.write(f);
    let mut last = None;
    for _ in 0..11 {
        last = r.reader.recv().await;
    }
    assert_eq!(
        last.unwrap().dts,
        10 * 3000,
        "continues right after the last frame"
    );
}

#[tokio::test(start_paused = true)]
async fn readers_are_told_when_the_grace_period_ends() {
    let hub = hub_with(Duration::from_secs(1), false);
    let mut p = hub.publish(spec("live/a")).unwrap();
    p.start(params()).unwrap();
    let mut r = hub
        .read(reader_spec("live/a"), StartAt::Live)
        .await
        .unwrap();
    drop(p);
    assert!(r.reader.recv().await.is_none());
    assert!(hub.stream("live/a").is_none());
    assert!(
        hub.path_snapshot("live/a").is_none(),
        "idle path is forgotten"
    );
}

#[tokio::test]
async fn reading_a_missing_path_is_not_found() {
    let hub = hub_with(Duration::ZERO, false);
    assert!(matches!(
        hub.read(reader_spec("live/none"), StartAt::Live).await,
        Err(ReadError::NotFound { .. })
    ));
    assert!(matches!(
        hub.read(reader_spec("../x"), StartAt::Live).await,
        Err(ReadError::InvalidPath { .. })
    ));
}

#[tokio::test]
async fn kick_cancels_a_session_and_sessions_are_listed() {
    let hub = hub_with(Duration::ZERO, false);
    let p = hub.publish(spec("live/a")).unwrap();
    let id = p.session().id;
    assert_eq!(hub.sessions().len(), 1);
    assert!(hub.kick(id));
    assert!(p.session().is_cancelled());
    assert!(!hub.kick(9999));
    drop(p);
    assert!(hub.sessions().is_empty());
}

#[tokio::test]
async fn a_publish_that_would_open_one_path_too_many_is_refused_until_one_closes() {
    let mut c = Config {
        path_defaults: PathRule {
            publisher_grace: Some(Duration::ZERO),
            ..Default::default()
        },
        ..Default::default()
    };
    c.limits.max_paths = 2;
    let hub = Hub::new(Arc::new(c));
    let mut a = hub.publish(spec("live/a")).unwrap();
    a.start(params()).unwrap();
    let b = hub.publish(spec("live/b")).unwrap();
    let err = hub.publish(spec("live/c")).err().unwrap();
    assert!(
        matches!(err, PublishError::TooManyPaths { limit: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("limits.max_paths"), "{err}");
    // An existing path is not one more: its own limits apply (busy here).
    let err = hub.publish(spec("live/a")).err().unwrap();
    assert!(matches!(err, PublishError::Busy { .. }), "{err}");
    // A path that closes makes room.
    drop(b);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(hub.publish(spec("live/c")).is_ok());
    assert!(!a.session().is_cancelled());
}

/// A defect that panics inside one session's task: tokio ends that task,
/// and unwinding drops its publisher and reader, so the session leaves the
/// registry, its path is freed for the next publisher at once, and every
/// other session goes on.
#[tokio::test]
async fn a_panicking_session_task_ends_only_that_session() {
    let hub = hub_with(Duration::ZERO, false);
    let mut good = hub.publish(spec("live/good")).unwrap();
    good.start(params()).unwrap();
    let mut good_reader = hub
        .read(reader_spec("live/good"), StartAt::Live)
        .await
        .unwrap();
    let h = hub.clone();
    let task = tokio::spawn(async move {
        let mut p = h.publish(spec("live/bad")).unwrap();
        p.start(params()).unwrap();
        let _r = h
            .read(reader_spec("live/bad"), StartAt::Live)
            .await
            .unwrap();
        assert_eq!(h.sessions().len(), 4);
        panic!("a defect in one session");
    });
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(hub.sessions().len(), 2, "the good publisher and reader");
    assert!(hub.stream("live/bad").is_none());
    let mut again = hub.publish(spec("live/bad")).expect("the path is free");
    again.start(params()).unwrap();
    let f = video(&good, 0, true);
    good.write(f);
    assert!(good_reader.reader.recv().await.is_some());
}
