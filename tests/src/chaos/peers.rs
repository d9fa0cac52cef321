//! Phase 4: misbehaving peers while a good local agent is served.
//!
//! Over TCP (keys configured as docs/protocol.md says): an impostor with a
//! valid key that claims the good agent's host name, an unauthenticated
//! peer (a wrong key), slowloris handshakes (a Hello a byte every 250 ms)
//! and idle connections that never say anything; over the Unix socket, a
//! peer flooding Usage frames. Meanwhile the good agent reports once a
//! tick and times the reservation state that comes back.

use std::{
    io::{ErrorKind, Write as _},
    net::{SocketAddr, TcpStream},
    os::unix::net::UnixStream,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use shadow_wire::{Compression, Message, Resource, auth::Key};

use super::{
    Outcome,
    daemon::Daemon,
    feed::{hello, report},
    phases::{Ctx, panics},
    sub,
};

/// The good agent's report's band at tick `k`: a ramp from 0.3 to 1.5
/// cores, so while it rises each report needs its own decision.
fn upper(k: usize) -> f32 {
    0.3 + 1.2 * (k % 30) as f32 / 30.0
}

fn key_file(dir: &Path, name: &str, hex: &str) -> anyhow::Result<String> {
    let path = dir.join(format!("{name}.key"));
    std::fs::write(&path, hex)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(format!(
        "[[peer]]\nname = \"{name}\"\nkey_file = \"{}\"\n",
        path.display()
    ))
}

/// True once the orchestrator refused or cut `s` (an Error frame or the
/// end is waiting to be read), false while it is still open.
fn refused(s: &TcpStream) -> bool {
    let _ = s.set_nonblocking(true);
    let mut byte = [0u8; 1];
    match s.peek(&mut byte) {
        Ok(_) => true,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

/// Runs phase 4 and adds its refusals and late ticks to `outcome`.
pub(crate) fn attack(ctx: &Ctx, outcome: &mut Outcome) -> anyhow::Result<()> {
    let opts = ctx.options;
    let dir = sub(&ctx.dir, "peers")?;
    let (hex1, hex2) = ("5a".repeat(32), "a5".repeat(32));
    let peers = key_file(&dir, "guest-1", &hex1)? + &key_file(&dir, "guest-2", &hex2)?;
    let cfg = super::daemon::config(&dir, "shadow.toml", ctx.fleet, &peers)?;
    let (socket, log) = (dir.join("o.sock"), dir.join("orchestrator.log"));
    let cfg_s = cfg.to_str().context("configuration path")?;
    let mut daemon = Daemon::spawn(
        &socket,
        &dir.join("state"),
        opts.tick,
        &["--config", cfg_s, "--tcp", "127.0.0.1:0"],
        &log,
    )?;
    let started = daemon.wait_for("remote agents on tcp ", Duration::from_secs(30))?;
    daemon.ready()?;
    let addr: SocketAddr = started
        .lines()
        .find_map(|l| l.split("remote agents on tcp ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .context("no TCP address in the log")?
        .parse()?;
    let connect = || TcpStream::connect_timeout(&addr, Duration::from_secs(2));
    let stop = Arc::new(AtomicBool::new(false));
    let mut refusals = 0u64;

    // The good agent: local, reporting on the first managed cgroup.
    let (path, id) = ctx.paths()[0].clone();
    let mut good = UnixStream::connect(&socket)?;
    good.set_write_timeout(Some(Duration::from_secs(5)))?;
    shadow_wire::connect(&mut good, hello("chaos-good", opts.tick))?;
    let answers: Arc<Mutex<Vec<(Instant, f32)>>> = Arc::default();
    let reader = {
        let (mut r, answers, path) = (good.try_clone()?, answers.clone(), path.clone());
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            while let Ok(m) = shadow_wire::read_message(&mut r, &mut buf) {
                if let Message::Reservations(b) = m
                    && let Some(x) = b
                        .reservations
                        .iter()
                        .find(|x| x.path == path && x.resource == Resource::Cpu && x.managed)
                {
                    answers
                        .lock()
                        .expect("lock")
                        .push((Instant::now(), x.reserved));
                }
            }
        })
    };

    // The impostor: a valid key (guest-2), the good agent's host name.
    let mut impostor = connect()?;
    let mut h = hello("chaos-impostor", opts.tick);
    h.key = "guest-2".into();
    let key2 = Key::from_hex(&hex2, "guest-2")?;
    shadow_wire::connect_with(&mut impostor, h, Some(&key2))
        .context("the impostor's handshake (a valid key) failed")?;
    let stolen = Arc::new(AtomicU64::new(0));
    let impostor_thread = {
        let (stop, stolen, path) = (stop.clone(), stolen.clone(), path.clone());
        let mut r = impostor.try_clone()?;
        r.set_read_timeout(Some(Duration::from_millis(200)))?;
        let tick = opts.tick;
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for m in report(&[(path.clone(), id)], &[0.01], &[0.02], tick) {
                    let _ = shadow_wire::write_message(&mut impostor, &m, Compression::Auto);
                }
                if let Ok(Message::Reservations(b)) = shadow_wire::read_message(&mut r, &mut buf)
                    && b.reservations.iter().any(|x| x.managed)
                {
                    stolen.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // An unauthenticated peer: guest-1's name, a wrong key.
    let mut unauth = connect()?;
    let mut h = hello("chaos-unauth", opts.tick);
    h.key = "guest-1".into();
    let wrong = Key::from_hex(&"00".repeat(32), "wrong")?;
    match shadow_wire::connect_with(&mut unauth, h, Some(&wrong)) {
        Err(shadow_wire::Error::Refused {
            code: shadow_wire::Code::Unauthenticated,
            ..
        }) => {
            refusals += 1;
        }
        other => outcome.failures.push(format!(
            "a wrong key was not refused as Unauthenticated: {other:?}"
        )),
    }

    // Slowloris: a Hello trickled a byte at a time.
    let frame = shadow_wire::encode(&Message::Hello(hello("slow", opts.tick)), Compression::Off)?;
    let slow: Vec<TcpStream> = (0..opts.slowloris).filter_map(|_| connect().ok()).collect();
    let slow_thread = {
        let stop = stop.clone();
        let mut socks: Vec<TcpStream> = slow.iter().filter_map(|s| s.try_clone().ok()).collect();
        std::thread::spawn(move || {
            for byte in frame.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for s in &mut socks {
                    let _ = s.write(&[*byte]);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };

    // Idle connections that never send a byte.
    let idle: Vec<TcpStream> = (0..opts.idle).filter_map(|_| connect().ok()).collect();
    eprintln!(
        "chaos: peers: {} idle and {} slowloris connections open",
        idle.len(),
        slow.len()
    );

    // A local peer flooding Usage frames.
    let flooded = Arc::new(AtomicU64::new(0));
    let flood_thread = {
        let mut s = UnixStream::connect(&socket)?;
        shadow_wire::connect(&mut s, hello("chaos-flood", opts.tick))?;
        s.set_write_timeout(Some(Duration::from_millis(100)))?;
        let (stop, flooded, tick) = (stop.clone(), flooded.clone(), opts.tick);
        let paths = [("/shadow-chaos-flood".to_owned(), 1)];
        std::thread::spawn(move || {
            let [usage, _] = report(&paths, &[0.1], &[0.2], tick);
            let frame = shadow_wire::encode(&usage, Compression::Off).unwrap_or_default();
            while !stop.load(Ordering::Relaxed) {
                match s.write_all(&frame) {
                    Ok(()) => {
                        flooded.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e)
                        if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    }
                    Err(_) => return true,
                }
            }
            false
        })
    };

    // The good agent reports every tick while all of that goes on.
    let ticks = (opts.attack.as_millis() / opts.tick.as_millis().max(1)) as usize;
    let mut sent = Vec::with_capacity(ticks);
    for k in 0..ticks {
        let at = Instant::now();
        for m in report(&[(path.clone(), id)], &[0.1], &[upper(k)], opts.tick) {
            shadow_wire::write_message(&mut good, &m, Compression::Auto)
                .context("the good agent's report")?;
        }
        sent.push(at);
        std::thread::sleep(opts.tick.saturating_sub(at.elapsed()));
    }
    std::thread::sleep(opts.deadline);
    stop.store(true, Ordering::Relaxed);

    let answers = answers.lock().expect("lock").clone();
    let mut latencies = Vec::new();
    let mut late = 0;
    for (k, at) in sent.iter().enumerate() {
        // Covered: by this report's band or a later report's that was
        // sent by then (the orchestrator holds an agent's latest forecast
        // only, so a report superseded before a cycle took it is answered
        // by its successor's state).
        let covered = |t: &Instant, r: f32| {
            sent.iter()
                .enumerate()
                .skip(k)
                .take_while(|(_, s)| *s <= t)
                .any(|(j, _)| r >= upper(j) * 0.999)
        };
        match answers
            .iter()
            .find(|(t, r)| t >= at && covered(t, *r))
            .map(|(t, _)| *t - *at)
        {
            Some(l) if l <= opts.deadline => latencies.push(l),
            _ => {
                late += 1;
                let next: Vec<_> = answers
                    .iter()
                    .filter(|(t, _)| t >= at)
                    .take(3)
                    .map(|(t, r)| (*t - *at, *r))
                    .collect();
                eprintln!(
                    "chaos: peers: report {k} (band {:.3}) late; the next answers: {next:.3?}",
                    upper(k)
                );
            }
        }
    }
    latencies.sort();
    outcome.summary.good_agent_late_ticks += late;

    let slow_refused = slow.iter().filter(|s| refused(s)).count() as u64;
    let idle_refused = idle.iter().filter(|s| refused(s)).count() as u64;
    let flood_cut = flood_thread.join().unwrap_or(false);
    let _ = slow_thread.join();
    let _ = impostor_thread.join();
    refusals += slow_refused + idle_refused + u64::from(flood_cut);
    outcome.summary.peers_refused += refusals;
    eprintln!(
        "chaos: peers: good agent {} reports, {late} late (deadline {:?}; latency median {:?}, max {:?}); \
         refused: {idle_refused}/{} idle, {slow_refused}/{} slowloris, the wrong key; \
         flood: {} frames sent, cut {flood_cut}; impostor got {} managed states",
        sent.len(),
        opts.deadline,
        latencies.get(latencies.len() / 2),
        latencies.last(),
        idle.len(),
        slow.len(),
        flooded.load(Ordering::Relaxed),
        stolen.load(Ordering::Relaxed),
    );
    if stolen.load(Ordering::Relaxed) > 0 {
        outcome
            .failures
            .push("the impostor was sent managed reservation state (another host's)".into());
    }
    // Shut, not just dropped: the reader's clone would keep it open until
    // the orchestrator's idle timeout.
    let _ = good.shutdown(std::net::Shutdown::Both);
    let _ = reader.join();
    drop((idle, slow, unauth));
    daemon.stop()?;
    panics(&log, outcome);
    Ok(())
}
