//! Network bytes against what the test counted at the socket.

use std::{io::BufRead as _, time::Duration};

use shadow_tests::{Agent, TestCgroup, finish, ratio, total, workload};

const BYTES: u64 = 128 << 20;

/// A 128 MiB loopback TCP transfer from cgroup A to cgroup B: A's tx and B's
/// rx within 1% of the payload. The agent counts IP bytes (headers
/// included); with 64 KiB segments on loopback, headers add about 0.1%.
#[test]
fn loopback_tcp_bytes_match_the_socket() {
    let sender = TestCgroup::new("net-tx", &[]);
    let receiver = TestCgroup::new("net-rx", &[]);
    let parent = "/";
    let agent = Agent::start(parent, "200ms");
    let mut rx = receiver.spawn(&mut workload(&["tcp-recv"]));
    let mut first = String::new();
    std::io::BufReader::new(rx.stdout.as_mut().expect("stdout"))
        .read_line(&mut first)
        .expect("port line");
    let port: serde_json::Value = serde_json::from_str(&first).expect("port JSON");
    let tx = sender.spawn(&mut workload(&[
        "tcp-send",
        &port["port"].to_string(),
        &BYTES.to_string(),
    ]));
    let sent = finish(tx)["bytes"].as_u64().unwrap();
    let received = finish(rx)["bytes"].as_u64().unwrap();
    assert_eq!(sent, received);
    let samples = agent.stop(Duration::from_millis(600));
    let t = ratio(
        "net_tx_bytes",
        total(&samples, &sender.path, "net_tx_bytes"),
        sent,
    );
    let r = ratio(
        "net_rx_bytes",
        total(&samples, &receiver.path, "net_rx_bytes"),
        received,
    );
    assert!((1.0..=1.01).contains(&t), "tx ratio {t}");
    assert!((1.0..=1.01).contains(&r), "rx ratio {r}");
    assert!(total(&samples, &sender.path, "net_tx_packets") > 0);
    assert!(total(&samples, &receiver.path, "net_rx_packets") > 0);
    // The receiver's ACKs are its tx, not the sender's.
    assert!(total(&samples, &receiver.path, "net_tx_bytes") < sent / 20);
}
