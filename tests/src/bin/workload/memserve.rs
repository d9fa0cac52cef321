//! The memory benchmark's two workloads: a service whose working set (the
//! pages of a dataset file it serves from) grows and shrinks in phases, and
//! a neighbour that reads a large file at random, whose page cache is what
//! a larger reservation beside it takes away.
//!
//! The working set is file pages on purpose: without swap (these hosts
//! have none) anonymous memory cannot be reclaimed, so a limit below it
//! kills instead of slowing down; file pages are reclaimed and read again,
//! which is the stall the benchmark measures.

use std::{
    fs::File,
    io::Write as _,
    os::{fd::AsRawFd as _, unix::fs::FileExt as _},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::{process_cpu, unix_now};

const PAGE: u64 = 4096;

/// A small, fast generator (splitmix64): request `i`'s pages are the same
/// in every run.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The service: `rate` requests per second on a fixed schedule, each
/// reading `pages` random pages of the working set through a shared
/// mapping of `file`; the working set follows `phases` (growing: the new
/// part is read in order at `load_mibps`, as a dataset is loaded, and
/// served from once loaded; shrinking: the dropped
/// part is unmapped and dropped from the page cache). Latency is from
/// each request's scheduled time, so a stalled request delays the ones
/// queued behind it as in a real server. Prints a JSON line per phase and
/// a summary at the end.
pub fn serve(file: &str, rate: f64, pages: u64, load_mibps: f64, schedule: &str, workers: usize) {
    let phases = shadow_tests::phases::parse(schedule).expect("the phases");
    let f = File::open(file).expect("open the dataset");
    let len = f.metadata().expect("stat").len();
    let bytes = |mib: f64| (mib * f64::from(1 << 20)) as u64;
    let most = phases.iter().map(|p| bytes(p.mib)).max().unwrap_or(0);
    assert!(most <= len, "the dataset is smaller than the largest phase");
    // Out of the page cache first, so that reading it charges this cgroup.
    // SAFETY: advice on an open descriptor; no memory is handed over.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    // SAFETY: a fresh read-only shared mapping of the whole file.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert!(base != libc::MAP_FAILED, "mmap failed");
    let base = base as usize;
    let total_s: f64 = phases.iter().map(|p| p.seconds).sum();
    let requests = (total_s * rate) as u64;
    let ws = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let start_unix = unix_now();
    println!(r#"{{"start":{start_unix:.6},"requests":{requests}}}"#);
    let handles: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let (ws, next) = (Arc::clone(&ws), Arc::clone(&next));
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        return lat;
                    }
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    let n = (ws.load(Ordering::Relaxed) / PAGE).max(1);
                    let mut sum = 0u64;
                    for k in 0..pages {
                        let page = mix(i.wrapping_mul(1 << 20) ^ k) % n;
                        // SAFETY: within the mapping (the working set
                        // never exceeds the file's length).
                        sum += u64::from(unsafe {
                            ((base + (page * PAGE) as usize) as *const u8).read_volatile()
                        });
                    }
                    std::hint::black_box(sum);
                    lat.push((i, due.elapsed().as_secs_f64()));
                }
            })
        })
        .collect();
    let mut at = 0.0;
    for (k, p) in phases.iter().enumerate() {
        let now = ws.load(Ordering::Relaxed);
        let want = bytes(p.mib);
        println!(r#"{{"phase":{k},"mib":{},"at":{:.6}}}"#, p.mib, unix_now());
        let _ = std::io::stdout().flush();
        if want > now {
            let loading = Instant::now();
            let mut sum = 0u64;
            for off in (now..want).step_by(PAGE as usize) {
                // SAFETY: within the mapping.
                sum += u64::from(unsafe { ((base + off as usize) as *const u8).read_volatile() });
                if (off - now).is_multiple_of(1 << 20) && load_mibps > 0.0 {
                    let due = loading
                        + Duration::from_secs_f64(
                            (off - now) as f64 / (1 << 20) as f64 / load_mibps,
                        );
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
            }
            std::hint::black_box(sum);
            ws.store(want, Ordering::Relaxed);
        } else if want < now {
            ws.store(want, Ordering::Relaxed);
            // SAFETY: a range of this process's own mapping, no longer
            // read (the working set was shrunk first); DONTNEED on a
            // shared file mapping only drops this process's page tables.
            unsafe {
                libc::madvise(
                    (base + want as usize) as *mut _,
                    (now - want) as usize,
                    libc::MADV_DONTNEED,
                );
                libc::posix_fadvise(
                    f.as_raw_fd(),
                    want as i64,
                    (now - want) as i64,
                    libc::POSIX_FADV_DONTNEED,
                );
            }
        }
        at += p.seconds;
        let end = start + Duration::from_secs_f64(at);
        std::thread::sleep(end.saturating_duration_since(Instant::now()));
    }
    let mut lat: Vec<(u64, f64)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("worker"))
        .collect();
    lat.sort_by_key(|l| l.0);
    summary(&lat, rate, start_unix);
}

/// The latencies' quantiles, overall and per scheduled second.
fn summary(lat: &[(u64, f64)], rate: f64, start_unix: f64) {
    let quantile = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0)
    };
    let mut all: Vec<f64> = lat.iter().map(|l| l.1).collect();
    let (p50, p99, p999) = (
        quantile(&mut all, 0.5),
        quantile(&mut all, 0.99),
        quantile(&mut all, 0.999),
    );
    let per_s = rate.ceil().max(1.0) as usize;
    let seconds: Vec<String> = lat
        .chunks(per_s)
        .map(|c| {
            let mut v: Vec<f64> = c.iter().map(|l| l.1).collect();
            format!("{:.3}", quantile(&mut v, 0.99) * 1e3)
        })
        .collect();
    println!(
        r#"{{"done":true,"start":{start_unix:.6},"requests":{},"p50_ms":{:.4},"p99_ms":{:.4},"p999_ms":{:.4},"max_ms":{:.4},"p99_ms_per_s":[{}]}}"#,
        lat.len(),
        p50 * 1e3,
        p99 * 1e3,
        p999 * 1e3,
        all.last().copied().unwrap_or(0.0) * 1e3,
        seconds.join(",")
    );
}

/// The neighbour: reads 64 KiB blocks of `file` at random offsets for
/// ever, after dropping it from the page cache (so its pages are charged
/// to its own cgroup); every 100 ms a line with the blocks read so far and
/// its CPU seconds, in the batch job's form. Ends when its output closes.
pub fn cache_read(file: &str) {
    const BLOCK: u64 = 64 << 10;
    let f = File::open(file).expect("open the file");
    let blocks = (f.metadata().expect("stat").len() / BLOCK).max(1);
    // SAFETY: advice on an open descriptor; no memory is handed over.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; BLOCK as usize];
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let block = mix(i) % blocks;
                if f.read_exact_at(&mut buf, block * BLOCK).is_err() {
                    return;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut out = std::io::stdout().lock();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let line = format!(
            r#"{{"t":{:.3},"units":{},"cpu_s":{:.6}}}"#,
            unix_now(),
            done.load(Ordering::Relaxed),
            process_cpu().as_secs_f64()
        );
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            stop.store(true, Ordering::Relaxed);
            let _ = reader.join();
            return;
        }
    }
}
