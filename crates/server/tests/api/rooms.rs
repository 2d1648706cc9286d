//! Waiting rooms over HTTP, on both deployments: the guard on a coupon and a product, joining,
//! the shuffle recomputed from the published seed, strict admission at the set rate, pause,
//! the place stream with `Last-Event-ID`, abandonment and sold-out closing.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{
    assert_problem, share, shared_services, spawn_with, sse_events, unique, Deployment, SseEvent,
    TestApp,
};

async fn place(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/api/room-places/{id}"), None).await
}

/// Reads the place until `status` (or 15 s pass, which fails the test).
async fn wait_for(app: &TestApp, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let place = place(app, id).await;
        if place["status"] == status {
            return place;
        }
        assert!(Instant::now() < deadline, "never {status}: {place}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the room until `done` holds of it (or 15 s pass, which fails the test); the room.
async fn wait_for_room(app: &TestApp, room: i64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let shown = app.get_json(&format!("/api/rooms/{room}"), None).await;
        if done(&shown) {
            return shown;
        }
        assert!(Instant::now() < deadline, "never there: {shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The events of a place's stream until it ends (or `within` passes).
async fn follow(
    app: &TestApp,
    id: &str,
    last_event_id: Option<&str>,
    within: Duration,
) -> Vec<SseEvent> {
    let mut request = app.request(Method::GET, &format!("/api/room-places/{id}/events"), None);
    if let Some(last) = last_event_id {
        request = request.header("last-event-id", last);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let _ = tokio::time::timeout(within, async {
        while let Some(chunk) = body.next().await {
            text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
    })
    .await;
    sse_events(&text)
}

fn data(event: &SseEvent) -> Value {
    serde_json::from_str(&event.data).unwrap()
}

async fn a_coupon_behind_a_room_needs_an_admission_and_an_accepted_request_spends_it(app: TestApp) {
    let admin = app.new_admin().await;
    let coupon = app.new_coupon(&admin, 10, Duration::from_secs(3600)).await;
    let room = app
        .new_room(
            &admin,
            json!({"couponId": coupon}),
            chrono::Duration::zero(),
            50,
        )
        .await;
    let room_id = room["id"].as_i64().unwrap();
    assert_eq!(room["status"], "OPEN");
    assert_eq!(room["admissionSecs"], 300);

    let user = app.new_user().await;
    let refused = assert_problem(
        app.issue(&user.token, coupon).await,
        403,
        "ADMISSION_REQUIRED",
    )
    .await;
    assert_eq!(refused["roomId"], room_id);

    let (status, first) = app.join_room(&user.token, room_id).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = app.join_room(&user.token, room_id).await;
    assert_eq!(status, 200);
    assert_eq!(again["placeId"], first["placeId"], "joining is idempotent");
    let id = first["placeId"].as_str().unwrap();
    let admitted = wait_for(&app, id, "ADMITTED").await;
    assert!(admitted["admissionExpiresAt"].is_string(), "{admitted}");
    let mine = app
        .get_json(
            &format!("/api/rooms/{room_id}/places/me"),
            Some(&user.token),
        )
        .await;
    assert_eq!(mine["placeId"], id);

    assert_eq!(app.issue(&user.token, coupon).await.status(), 202);
    assert_eq!(place(&app, id).await["status"], "USED");
    let (status, kept) = app.join_room(&user.token, room_id).await;
    assert_eq!(
        (status, &kept["placeId"]),
        (200, &first["placeId"]),
        "one purchase per person"
    );
    assert_problem(
        app.issue(&user.token, coupon).await,
        403,
        "ADMISSION_REQUIRED",
    )
    .await;

    // Admins are not guarded; closing the room lifts the guard for everyone.
    assert_ne!(app.issue(&admin.token, coupon).await.status(), 403);
    let other = app.new_user().await;
    let closed = app
        .request(
            Method::POST,
            &format!("/api/admin/rooms/{room_id}/close"),
            Some(&admin.token),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 200);
    let closed: Value = closed.json().await.unwrap();
    assert_eq!(
        (&closed["status"], &closed["closedReason"]),
        (&json!("CLOSED"), &json!("CLOSED_BY_ADMIN"))
    );
    assert_eq!(app.issue(&other.token, coupon).await.status(), 202);
    let (status, body) = app.join_room(&other.token, room_id).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("ROOM_CLOSED")),
        "{body}"
    );
}

/// A refused request keeps the admission; an unknown place id is a 404.
async fn a_refused_guarded_request_keeps_the_admission(app: TestApp) {
    let admin = app.new_admin().await;
    let (product, options) = app.new_product(&admin, &[(1_000, 5)]).await;
    let room = app
        .new_room(
            &admin,
            json!({"productId": product}),
            chrono::Duration::zero(),
            100,
        )
        .await;
    let room_id = room["id"].as_i64().unwrap();
    let user = app.new_user().await;
    let order = json!({"items": [{"productOptionId": options[0], "quantity": 1}]});
    let refused = app
        .request(Method::POST, "/api/orders", Some(&user.token))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_problem(refused, 403, "ADMISSION_REQUIRED").await;
    let (_, joined) = app.join_room(&user.token, room_id).await;
    let id = joined["placeId"].as_str().unwrap();
    wait_for(&app, id, "ADMITTED").await;
    // Refused (quantity out of range, then an unknown coupon): the admission stays.
    let too_many = json!({"items": [{"productOptionId": options[0], "quantity": 5_000}]});
    let response = app
        .request(Method::POST, "/api/orders", Some(&user.token))
        .json(&too_many)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(place(&app, id).await["status"], "ADMITTED");
    let response = app
        .request(Method::POST, "/api/orders", Some(&user.token))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(place(&app, id).await["status"], "USED");

    let forged = format!("{room_id}-{}-1-{}", user.id + 1, "0".repeat(32));
    assert_problem(
        app.get(&format!("/api/room-places/{forged}")).await,
        404,
        "NOT_FOUND",
    )
    .await;
    let stranger = app.new_user().await;
    let missing = app
        .request(
            Method::GET,
            &format!("/api/rooms/{room_id}/places/me"),
            Some(&stranger.token),
        )
        .send()
        .await
        .unwrap();
    assert_problem(missing, 404, "NOT_FOUND").await;
}

/// SHA-256(seed bytes ‖ user id in decimal), as anyone can compute it.
fn shuffle_key(seed: &str, user: i64) -> Vec<u8> {
    let bytes: Vec<u8> = (0..seed.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&seed[i..i + 2], 16).unwrap())
        .collect();
    let mut hash = Sha256::new();
    hash.update(&bytes);
    hash.update(user.to_string().as_bytes());
    hash.finalize().to_vec()
}

async fn places_taken_before_opening_follow_the_published_seed_and_are_admitted_in_order(
    app: TestApp,
) {
    let admin = app.new_admin().await;
    let coupon = app.new_coupon(&admin, 100, Duration::from_secs(3600)).await;
    let room = app
        .new_room(
            &admin,
            json!({"couponId": coupon}),
            chrono::Duration::seconds(2),
            4,
        )
        .await;
    let room_id = room["id"].as_i64().unwrap();
    assert_eq!(room["status"], "SCHEDULED");
    assert!(
        room.get("shuffleSeed").is_none(),
        "the seed is secret until opening: {room}"
    );
    let mut places = Vec::new();
    for user in 0..12 {
        let token = app.token_for(1_000_000 + user);
        let (status, place) = app.join_room(&token, room_id).await;
        assert_eq!(status, 201);
        assert!(place.get("number").is_none(), "{place}");
        places.push((
            1_000_000 + user,
            place["placeId"].as_str().unwrap().to_owned(),
        ));
    }
    // Waits for the opening to admit a few: by then the seed is out and every place numbered.
    let room = wait_for_room(&app, room_id, |room| room["admitted"].as_u64() >= Some(2)).await;
    let seed = room["shuffleSeed"]
        .as_str()
        .expect("published once open")
        .to_owned();
    let mut expected: Vec<i64> = places.iter().map(|(user, _)| *user).collect();
    expected.sort_by_key(|user| shuffle_key(&seed, *user));
    // Numbers follow the seed; admissions follow the numbers, a few a second.
    let mut seen = Vec::new();
    for (user, id) in &places {
        let place = place(&app, id).await;
        seen.push((
            place["number"].as_u64().unwrap(),
            *user,
            place["status"].as_str().unwrap().to_owned(),
        ));
    }
    seen.sort();
    let users: Vec<i64> = seen.iter().map(|(_, user, _)| *user).collect();
    assert_eq!(users, expected);
    let admitted = seen
        .iter()
        .take_while(|(_, _, status)| status == "ADMITTED")
        .count();
    assert!(
        seen[admitted..]
            .iter()
            .all(|(_, _, status)| status == "WAITING"),
        "strictly in order: {seen:?}"
    );
    assert!(
        (2..12).contains(&admitted),
        "a few admitted, some still waiting: {admitted} of {seen:?}"
    );
    let waiting = &seen[admitted];
    let first_waiting = place(
        &app,
        &places.iter().find(|(u, _)| *u == waiting.1).unwrap().1,
    )
    .await;
    assert_eq!(first_waiting["position"], 1, "{first_waiting}");
    assert!(
        first_waiting["etaSeconds"].as_u64().is_some(),
        "{first_waiting}"
    );
}

async fn a_place_stream_sends_each_change_and_resumes_after_the_last_event_id(app: TestApp) {
    let admin = app.new_admin().await;
    // Paused at once: line up three, and follow the third.
    let room_id = app.paused_room(&admin, 100).await;
    let mut ids = Vec::new();
    for user in 0..3 {
        let (_, place) = app
            .join_room(&app.token_for(2_000_000 + user), room_id)
            .await;
        ids.push(place["placeId"].as_str().unwrap().to_owned());
    }
    let events = follow(&app, &ids[2], None, Duration::from_millis(1_500)).await;
    let [first] = events.as_slice() else {
        panic!("one event while paused: {events:?}")
    };
    assert_eq!(first.event, "place");
    assert_eq!(data(first)["position"], 3);
    assert!(
        data(first).get("etaSeconds").is_none(),
        "no ETA while paused: {}",
        first.data
    );
    // Resumed quickly: the stream says 2, 1, then ADMITTED, and ends.
    let resumed = app
        .change_room(
            &admin,
            room_id,
            json!({"paused": false, "admitPerSecond": 2}),
        )
        .await;
    assert_eq!(resumed.0, 200, "{}", resumed.1);
    let events = follow(&app, &ids[2], Some(&first.id), Duration::from_secs(15)).await;
    let statuses: Vec<(String, Value)> = events
        .iter()
        .map(|event| {
            (
                data(event)["status"].as_str().unwrap().to_owned(),
                data(event)["position"].clone(),
            )
        })
        .collect();
    assert_eq!(
        statuses.last().map(|(s, _)| s.as_str()),
        Some("ADMITTED"),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|(_, position)| position != 3),
        "the state named by Last-Event-ID is not sent again: {statuses:?}"
    );
    let positions: Vec<u64> = statuses.iter().filter_map(|(_, p)| p.as_u64()).collect();
    assert!(positions.windows(2).all(|w| w[0] > w[1]), "{positions:?}");
    // A stream of a place no longer waiting sends it once and ends.
    let events = follow(&app, &ids[2], None, Duration::from_secs(5)).await;
    assert_eq!(events.len(), 1);
    assert_eq!(data(&events[0])["status"], "ADMITTED");
}

async fn a_sold_out_coupon_closes_its_room_and_every_waiting_stream(app: TestApp) {
    let admin = app.new_admin().await;
    let coupon = app.new_coupon(&admin, 1, Duration::from_secs(3600)).await;
    let room = app
        .new_room(
            &admin,
            json!({"couponId": coupon}),
            chrono::Duration::zero(),
            1,
        )
        .await;
    let room_id = room["id"].as_i64().unwrap();
    let buyer = app.new_user().await;
    let (_, bought) = app.join_room(&buyer.token, room_id).await;
    let waiter = app.new_user().await;
    let (_, waiting) = app.join_room(&waiter.token, room_id).await;
    wait_for(&app, bought["placeId"].as_str().unwrap(), "ADMITTED").await;
    // Nobody else is let in: the waiter waits until the sale sells out.
    let paused = app
        .change_room(&admin, room_id, json!({"paused": true}))
        .await;
    assert_eq!(paused.0, 200, "{}", paused.1);
    let stream = {
        let id = waiting["placeId"].as_str().unwrap().to_owned();
        let address = app.address.clone();
        tokio::spawn(async move {
            let response = reqwest::get(format!("{address}/api/room-places/{id}/events"))
                .await
                .unwrap();
            let text = response.text().await.unwrap();
            sse_events(&text).iter().map(data).collect::<Vec<Value>>()
        })
    };
    assert_eq!(app.issue(&buyer.token, coupon).await.status(), 202);
    let events = tokio::time::timeout(Duration::from_secs(30), stream)
        .await
        .expect("the stream ends")
        .unwrap();
    assert_eq!(events.last().unwrap()["status"], "CLOSED", "{events:?}");
    let room = app.get_json(&format!("/api/rooms/{room_id}"), None).await;
    assert_eq!(
        (&room["status"], &room["closedReason"]),
        (&json!("CLOSED"), &json!("SOLD_OUT"))
    );
    assert_eq!(room["waiting"], 0);
}

/// A product sells out through an admitted order's saga: its room closes by itself.
async fn a_product_whose_every_option_sells_out_closes_its_room(app: TestApp) {
    let admin = app.new_admin().await;
    let (product, options) = app.new_product(&admin, &[(1_000, 1)]).await;
    let room = app
        .new_room(
            &admin,
            json!({"productId": product}),
            chrono::Duration::zero(),
            20,
        )
        .await;
    let room_id = room["id"].as_i64().unwrap();
    let buyer = app.new_user().await;
    let (_, place) = app.join_room(&buyer.token, room_id).await;
    wait_for(&app, place["placeId"].as_str().unwrap(), "ADMITTED").await;
    let order = json!({"items": [{"productOptionId": options[0], "quantity": 1}]});
    app.place_order(&buyer, &order).await;
    app.drain_events().await;
    let room = wait_for_room(&app, room_id, |room| room["status"] == "CLOSED").await;
    assert_eq!(room["closedReason"], "SOLD_OUT", "{room}");
}

/// A crowd's worth of waiting people, each holding a stream from before the room opens until
/// their admission: every stream is accepted and every one gets its place and its admission.
async fn two_thousand_waiting_streams_each_get_their_place_and_their_admission(app: TestApp) {
    const CROWD: i64 = 2_000;
    let admin = app.new_admin().await;
    let coupon = app.new_coupon(&admin, 10, Duration::from_secs(3600)).await;
    let opens_in = chrono::Duration::seconds(8);
    let room = app
        .new_room(&admin, json!({"couponId": coupon}), opens_in, 1_000)
        .await;
    let room_id = room["id"].as_i64().unwrap();
    let app = &app;
    let places: Vec<String> = futures::stream::iter(0..CROWD)
        .map(|i| {
            let token = app.token_for(5_000_000 + i);
            async move {
                let (status, place) = app.join_room(&token, room_id).await;
                assert_eq!(status, 201, "{place}");
                place["placeId"].as_str().unwrap().to_owned()
            }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    let streams = futures::future::join_all(
        places
            .iter()
            .map(|id| follow(app, id, None, Duration::from_secs(60))),
    )
    .await;
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for events in streams {
        let events: Vec<Value> = events.iter().map(data).collect();
        // Each stream's first event came before the room opened: a place has no number yet.
        assert_eq!(events[0]["status"], "WAITING", "{events:?}");
        assert!(events[0]["number"].is_null(), "{events:?}");
        *statuses
            .entry(
                events.last().unwrap()["status"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
            .or_default() += 1;
    }
    assert_eq!(statuses, [("ADMITTED".to_owned(), CROWD as usize)].into());
}

/// What a raw connection reads until `until` appears in it (15 s at most, which fails).
async fn read_until(connection: &mut tokio::net::TcpStream, until: &str) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut read = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), async {
        while !String::from_utf8_lossy(&read).contains(until) {
            let mut buffer = [0; 4096];
            let n = connection.read(&mut buffer).await.unwrap();
            assert!(
                n > 0,
                "closed before {until:?}: {}",
                String::from_utf8_lossy(&read)
            );
            read.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never {until:?}: {}", String::from_utf8_lossy(&read)));
    String::from_utf8(read).unwrap()
}

/// A place stream is served by a lean loop when its request arrives whole and by hyper when it
/// does not (`http/place_streams.rs`): the client cannot tell them apart, byte for byte, and
/// once the place stops waiting the same connection answers the client's next request.
async fn a_place_stream_is_the_same_bytes_whole_or_in_pieces_and_its_connection_serves_on(
    app: TestApp,
) {
    use tokio::io::AsyncWriteExt as _;
    let admin = app.new_admin().await;
    let room_id = app.paused_room(&admin, 10).await;
    let (_, place) = app.join_room(&app.token_for(6_000_001), room_id).await;
    let id = place["placeId"].as_str().unwrap();
    let host = app.address.strip_prefix("http://").unwrap();
    let head = format!(
        "GET /api/room-places/{id}/events HTTP/1.1\r\nHost: x\r\nX-Request-Id: same-1\r\n\r\n"
    );
    let mut whole = tokio::net::TcpStream::connect(host).await.unwrap();
    whole.write_all(head.as_bytes()).await.unwrap();
    let mut pieces = tokio::net::TcpStream::connect(host).await.unwrap();
    for piece in [&head[..7], &head[7..40], &head[40..]] {
        pieces.write_all(piece.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first_event = "\n\n\r\n";
    let without_date = |text: String| -> String {
        text.lines()
            .filter(|line| !line.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let whole_read = without_date(read_until(&mut whole, first_event).await);
    let pieces_read = without_date(read_until(&mut pieces, first_event).await);
    assert_eq!(whole_read, pieces_read);
    assert!(whole_read.starts_with("HTTP/1.1 200 OK"), "{whole_read}");
    assert!(whole_read.contains("x-request-id: same-1"), "{whole_read}");
    assert!(
        whole_read.contains("\"status\":\"WAITING\""),
        "{whole_read}"
    );

    let resumed = app
        .change_room(&admin, room_id, json!({"paused": false}))
        .await;
    assert_eq!(resumed.0, 200, "{}", resumed.1);
    for connection in [&mut whole, &mut pieces] {
        let rest = read_until(connection, "0\r\n\r\n").await;
        assert!(rest.contains("\"status\":\"ADMITTED\""), "{rest}");
        connection
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let next = read_until(connection, "\r\n\r\n").await;
        assert!(next.starts_with("HTTP/1.1 200 OK"), "{next}");
    }
}

async fn a_place_nobody_watches_is_dropped_and_skipped(deployment: Deployment) {
    let Some(app) = spawn_with(deployment, |settings| settings.room.abandon_secs = 5).await else {
        return;
    };
    let admin = app.new_admin().await;
    let room_id = app.paused_room(&admin, 10).await;
    let (_, gone) = app.join_room(&app.token_for(3_000_001), room_id).await;
    let (_, kept) = app.join_room(&app.token_for(3_000_002), room_id).await;
    let kept_id = kept["placeId"].as_str().unwrap().to_owned();
    let reader = {
        let address = app.address.clone();
        tokio::spawn(async move {
            // Followed on a stream, so seen.
            let _ = tokio::time::timeout(Duration::from_secs(8), async {
                let response = reqwest::get(format!("{address}/api/room-places/{kept_id}/events"))
                    .await
                    .unwrap();
                let _ = response.text().await;
            })
            .await;
        })
    };
    reader.await.unwrap();
    let gone = place(&app, gone["placeId"].as_str().unwrap()).await;
    assert_eq!(gone["status"], "LEFT", "{gone}");
    assert_eq!(
        place(&app, kept["placeId"].as_str().unwrap()).await["position"],
        1
    );
    app.stop().await.unwrap();
}

/// Two instances share one Redis: together they admit at the set rate, not one rate each, and
/// never more than `maxActive` unspent at once.
async fn instances_sharing_a_line_admit_at_the_rate_of_the_room() {
    let Some(services) = shared_services() else {
        return;
    };
    let namespace = format!("t_{}", unique());
    let mut apps = Vec::new();
    for _ in 0..2 {
        let app = spawn_with(Deployment::Production, |settings| {
            share(settings, &services, &namespace);
            settings.bus.partitions = 4;
        })
        .await
        .unwrap();
        apps.push(app);
    }
    let admin = apps[0].new_admin().await;
    let coupon = apps[0]
        .new_coupon(&admin, 1_000, Duration::from_secs(3600))
        .await;
    let room = apps[0]
        .new_room(
            &admin,
            json!({"couponId": coupon}),
            chrono::Duration::seconds(1),
            20,
        )
        .await;
    let room_id = room["id"].as_i64().unwrap();
    for user in 0..200 {
        let app = &apps[user as usize % 2];
        app.join_room(&app.token_for(4_000_000 + user), room_id)
            .await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let room = apps[1]
        .get_json(&format!("/api/rooms/{room_id}"), None)
        .await;
    let admitted = room["admitted"].as_u64().unwrap();
    let opened_for = (Utc::now()
        - chrono::DateTime::parse_from_rfc3339(room["opensAt"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc))
    .num_milliseconds() as f64
        / 1000.0;
    let expected = 20.0 * opened_for;
    assert!(
        (admitted as f64) <= expected + 2.0 && (admitted as f64) >= expected - 25.0,
        "{admitted} admitted in {opened_for:.1} s at 20/s"
    );
    assert_eq!(room["waiting"].as_u64().unwrap() + admitted, 200);

    // A cap of five unspent admissions holds across both instances, however fast the rate.
    let capped_coupon = apps[0]
        .new_coupon(&admin, 1_000, Duration::from_secs(3600))
        .await;
    let capped = apps[1]
        .request(Method::POST, "/api/admin/rooms", Some(&admin.token))
        .json(&json!({"name": "Capped drop", "couponId": capped_coupon,
            "opensAt": Utc::now().to_rfc3339(), "admitPerSecond": 1_000, "maxActive": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(capped.status(), 201);
    let capped = capped.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    for user in 0..50 {
        let app = &apps[user as usize % 2];
        app.join_room(&app.token_for(4_100_000 + user), capped)
            .await;
    }
    // The cap fills at once at 1,000 a second; a second more of ticks on both instances must
    // not add a sixth.
    wait_for_room(&apps[0], capped, |room| {
        room["admitted"].as_u64() >= Some(5)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let room = apps[0]
        .get_json(&format!("/api/rooms/{capped}"), None)
        .await;
    assert_eq!(
        (room["admitted"].as_u64(), room["waiting"].as_u64()),
        (Some(5), Some(45)),
        "{room}"
    );
    for app in apps {
        app.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_line_admit_at_the_rate_of_the_room_on_production() {
    instances_sharing_a_line_admit_at_the_rate_of_the_room().await;
}

crate::on_both_deployments!(
    a_coupon_behind_a_room_needs_an_admission_and_an_accepted_request_spends_it,
    a_refused_guarded_request_keeps_the_admission,
    places_taken_before_opening_follow_the_published_seed_and_are_admitted_in_order,
    a_place_stream_sends_each_change_and_resumes_after_the_last_event_id,
    a_sold_out_coupon_closes_its_room_and_every_waiting_stream,
    a_product_whose_every_option_sells_out_closes_its_room,
    two_thousand_waiting_streams_each_get_their_place_and_their_admission,
    a_place_stream_is_the_same_bytes_whole_or_in_pieces_and_its_connection_serves_on;
    deployment: a_place_nobody_watches_is_dropped_and_skipped,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_list_and_show_print_each_room_and_its_rate_history() {
    let app = crate::helpers::spawn_app().await;
    let admin = app.new_admin().await;
    let coupon = app.new_coupon(&admin, 10, Duration::from_secs(3600)).await;
    let room = app
        .new_room(
            &admin,
            json!({"couponId": coupon}),
            chrono::Duration::zero(),
            25,
        )
        .await;
    let id = room["id"].as_i64().unwrap();
    let changed = app
        .change_room(&admin, id, json!({"admitPerSecond": 40}))
        .await;
    assert_eq!(changed.0, 200, "{}", changed.1);
    let dir = app.state.settings.data_dir.clone();
    let run = |args: &[&str]| {
        let out = crate::cli::stampede(&dir)
            .arg("rooms")
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap();
        (out.status.success(), text)
    };
    let (ok, listed) = run(&["list"]);
    assert!(ok, "{listed}");
    let row = listed
        .lines()
        .find(|line| line.trim_start().starts_with(&id.to_string()))
        .expect(&listed);
    assert!(
        row.contains("OPEN") && row.contains(&format!("coupon {coupon}")) && row.contains("40"),
        "{row}"
    );
    let (ok, shown) = run(&["show", &id.to_string()]);
    assert!(ok, "{shown}");
    assert!(shown.contains("25/s") && shown.contains("40/s"), "{shown}");
    assert!(
        shown.contains("memory://"),
        "says where the figures are: {shown}"
    );
    let (ok, missing) = run(&["show", "999999"]);
    assert!(!ok && missing.contains("no such room"), "{missing}");
}
