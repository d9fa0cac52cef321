//! `shadow-workload`: the real workloads the integration tests run inside
//! their cgroups. Each prints its own ground truth as one JSON line when done.
//!
//! Usage:
//!   shadow-workload burn SECONDS [CPU]      spin; print /proc/self/schedstat
//!   shadow-workload burn-move SECONDS PROCS spin, move into the cgroup whose
//!                                           cgroup.procs is PROCS, spin again
//!   shadow-workload touch PAGES             fault pages in; print getrusage
//!   shadow-workload dio-write DEV BYTES     O_DIRECT writes of 1 MiB
//!   shadow-workload dio-read DEV BYTES      O_DIRECT reads of 1 MiB
//!   shadow-workload tcp-recv                listen on 127.0.0.1:0, print port, count bytes
//!   shadow-workload tcp-send PORT BYTES     send BYTES to 127.0.0.1:PORT
//!   shadow-workload bursts PERIOD_MS BURST_MS THREADS COUNT
//!                                           COUNT bursts of THREADS spinning
//!                                           threads, one every PERIOD_MS, each
//!                                           BURST_MS long, idle between; one
//!                                           JSON line per burst start
//!   shadow-workload hint-relay SOCKET       one connection to a hint socket:
//!                                           each stdin line sent, each reply printed
//!   shadow-workload batch THREADS           a best-effort batch job: THREADS
//!                                           spinning threads counting fixed
//!                                           chunks of work; every 100 ms a
//!                                           JSON line with the chunks done
//!                                           so far and the process's CPU
//!                                           seconds; runs until killed
//!   shadow-workload memory FILE MIB HOLD_MS allocate MIB of anonymous memory,
//!                                           map FILE and read it all, free
//!                                           half the anonymous memory, unmap
//!                                           the file, free the rest; HOLD_MS
//!                                           of rest after each step; one JSON
//!                                           line per step, with its start and
//!                                           end (Unix seconds)
//!   shadow-workload grow MIB STEP_MIB STEP_MS HOLD_MS
//!                                           grow anonymous memory to MIB,
//!                                           STEP_MIB more every STEP_MS,
//!                                           hold it HOLD_MS, print the MiB
//!                                           reached
//!   shadow-workload reread FILE SECONDS     drop FILE from the page cache,
//!                                           then read it again and again
//!   shadow-workload memserve FILE RATE PAGES LOAD_MIBPS PHASES WORKERS
//!                                           the memory benchmark's service:
//!                                           RATE requests/s on a fixed
//!                                           schedule, each reading PAGES
//!                                           random pages of a working set
//!                                           of FILE that follows PHASES
//!                                           (SECONDS:MIB,...), growth read
//!                                           in at LOAD_MIBPS; WORKERS
//!                                           threads; latency summary at end
//!   shadow-workload cache-read FILE         random 64 KiB reads of FILE for
//!                                           ever, counted as the batch job
//!                                           counts its chunks
//!   shadow-workload serve                   a request/response service on
//!                                           127.0.0.1:0 (port printed): each
//!                                           request line is a number of µs of
//!                                           CPU to burn, answered with "ok";
//!                                           a thread per connection; runs
//!                                           until killed

#[path = "workload/memserve.rs"]
mod memserve;

use std::{
    fs::OpenOptions,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::unix::fs::OpenOptionsExt as _,
    time::{Duration, Instant},
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| usage());
    let num = |i: usize| arg(i).parse::<u64>().unwrap_or_else(|_| usage());
    match arg(0) {
        "burn" => burn(
            num(1),
            args.get(2).map(|c| c.parse().unwrap_or_else(|_| usage())),
        ),
        "burn-move" => {
            spin(num(1));
            std::fs::write(arg(2), "0").expect("move to the second cgroup");
            burn(num(1), None);
        }
        "touch" => touch(num(1)),
        "dio-write" => direct_io(arg(1), num(2), true),
        "dio-read" => direct_io(arg(1), num(2), false),
        "tcp-recv" => tcp_recv(),
        "tcp-send" => tcp_send(num(1), num(2)),
        "bursts" => bursts(num(1), num(2), num(3), num(4)),
        "hint-relay" => hint_relay(arg(1)),
        "serve" => serve(),
        "batch" => batch(num(1)),
        "memory" => memory(arg(1), num(2), num(3)),
        "reread" => reread(arg(1), num(2)),
        "grow" => grow(num(1), num(2), num(3), num(4)),
        "memserve" => memserve::serve(
            arg(1),
            arg(2).parse().unwrap_or_else(|_| usage()),
            num(3),
            arg(4).parse().unwrap_or_else(|_| usage()),
            arg(5),
            num(6) as usize,
        ),
        "cache-read" => memserve::cache_read(arg(1)),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: shadow-workload burn SECONDS [CPU] | touch PAGES | dio-write DEV BYTES | dio-read DEV BYTES | tcp-recv | tcp-send PORT BYTES | bursts PERIOD_MS BURST_MS THREADS COUNT | serve | batch THREADS | memory FILE MIB HOLD_MS | reread FILE SECONDS | grow MIB STEP_MIB STEP_MS HOLD_MS | memserve FILE RATE PAGES LOAD_MIBPS PHASES WORKERS | cache-read FILE"
    );
    std::process::exit(2)
}

/// Periodic CPU bursts on a fixed schedule (the first after one period),
/// so a forecaster can learn the period; prints each burst's start time
/// (Unix seconds) as it begins, which the tests compare reservations with.
fn bursts(period_ms: u64, burst_ms: u64, threads: u64, count: u64) {
    let start = Instant::now();
    for k in 1..=count {
        let at = start + Duration::from_millis(period_ms * k);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        println!(r#"{{"burst":{k},"start":{unix:.3}}}"#);
        let until = Instant::now() + Duration::from_millis(burst_ms);
        let workers: Vec<_> = (0..threads)
            .map(|_| std::thread::spawn(move || while Instant::now() < until {}))
            .collect();
        for w in workers {
            let _ = w.join();
        }
    }
}

/// Now, Unix seconds.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Steps of memory use with rests between, each announced with its start
/// and end, so a test compares readings taken while the level holds.
fn memory(file: &str, mib: u64, hold_ms: u64) {
    const PAGE: usize = 4096;
    let len = usize::try_from(mib << 20).expect("size");
    let step = |name: &str, f: &mut dyn FnMut()| {
        let start = unix_now();
        f();
        println!(
            r#"{{"step":"{name}","start":{start:.6},"end":{:.6}}}"#,
            unix_now()
        );
        std::io::stdout().flush().expect("flush");
        std::thread::sleep(Duration::from_millis(hold_ms));
    };
    let map = |len: usize, fd: i32, flags: i32| {
        // SAFETY: a fresh mapping of `len` bytes; the kernel picks where.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap failed");
        p.cast::<u8>()
    };
    let anon = map(len, -1, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS);
    step("anon", &mut || {
        for off in (0..len).step_by(PAGE) {
            // SAFETY: within the mapping just made.
            unsafe { anon.add(off).write_volatile(1) };
        }
    });
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .expect("open file");
    let flen = usize::try_from(f.metadata().expect("stat").len()).expect("size");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    // Out of the page cache first, so that reading it charges this cgroup.
    // SAFETY: advice on an open descriptor; no memory is handed over.
    unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mapped = map(flen, fd, libc::MAP_SHARED);
    let mut sum = 0u64;
    step("file", &mut || {
        for off in (0..flen).step_by(PAGE) {
            // SAFETY: within the file mapping just made.
            sum += u64::from(unsafe { mapped.add(off).read_volatile() });
        }
    });
    step("free-half", &mut || {
        // SAFETY: the second half of the anonymous mapping, not used again.
        unsafe { libc::munmap(anon.add(len / 2).cast(), len - len / 2) };
    });
    step("unmap-file", &mut || {
        // SAFETY: the whole file mapping, not used again.
        unsafe { libc::munmap(mapped.cast(), flen) };
    });
    step("free-rest", &mut || {
        // SAFETY: the first half, not used again.
        unsafe { libc::munmap(anon.cast(), len / 2) };
    });
    println!(r#"{{"done":true,"sum":{sum}}}"#);
}

/// Anonymous memory growing in steps (each touched at once, so it is
/// charged at once), then held: the fast grower of the OOM safety test.
fn grow(mib: u64, step_mib: u64, step_ms: u64, hold_ms: u64) {
    let step = usize::try_from(step_mib.max(1) << 20).expect("size");
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut reached = 0;
    while reached < mib {
        let mut chunk = vec![0u8; step];
        for off in (0..step).step_by(4096) {
            chunk[off] = 1;
        }
        held.push(chunk);
        reached += step_mib.max(1);
        println!(r#"{{"mib":{reached},"at":{:.3}}}"#, unix_now());
        std::io::stdout().flush().expect("flush");
        std::thread::sleep(Duration::from_millis(step_ms));
    }
    std::thread::sleep(Duration::from_millis(hold_ms));
    let touched: u64 = held.iter().map(|c| u64::from(c[0])).sum();
    println!(r#"{{"reached":{reached},"chunks":{touched}}}"#);
}

/// Reads FILE over and over for SECONDS, after dropping it from the page
/// cache so that its pages are charged to this process's cgroup.
fn reread(file: &str, seconds: u64) {
    let mut f = std::fs::File::open(file).expect("open file");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    // SAFETY: advice on an open descriptor; no memory is handed over.
    unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) };
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut buf = vec![0u8; 1 << 20];
    let (mut bytes, mut passes) = (0u64, 0u64);
    while Instant::now() < until {
        std::io::Seek::rewind(&mut f).expect("rewind");
        loop {
            let n = f.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            bytes += n as u64;
        }
        passes += 1;
    }
    println!(r#"{{"bytes":{bytes},"passes":{passes}}}"#);
}

/// The service of the end-to-end benchmark: each request line asks for a
/// number of microseconds of this thread's own CPU time (so a throttled
/// request does the same work, only later), the reply says "ok".
fn serve() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    println!(
        r#"{{"port":{}}}"#,
        listener.local_addr().expect("addr").port()
    );
    std::io::stdout().flush().expect("flush");
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        std::thread::spawn(move || {
            let _ = conn.set_nodelay(true);
            let mut reader = std::io::BufReader::new(&conn);
            let mut writer = &conn;
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut reader, &mut line).is_ok_and(|n| n > 0) {
                let cost_us: u64 = line.trim().parse().unwrap_or(0);
                burn_thread_cpu(Duration::from_micros(cost_us));
                if writer.write_all(b"ok\n").is_err() {
                    break;
                }
                line.clear();
            }
        });
    }
}

/// Iterations in one chunk of batch work (about 0.1 ms of CPU here).
const BATCH_CHUNK: u64 = 100_000;

/// The benchmark's neighbour: work done is counted in chunks (the same
/// arithmetic each time), so what it got done is known whatever its CPU
/// accounting says; its own CPU time is printed beside it, so a chunk's cost
/// can be calibrated.
fn batch(threads: u64) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static DONE: AtomicU64 = AtomicU64::new(0);
    for _ in 0..threads.max(1) {
        std::thread::spawn(|| {
            let mut x = 0u64;
            loop {
                for i in 0..BATCH_CHUNK {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
                }
                std::hint::black_box(x);
                DONE.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut out = std::io::stdout().lock();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let cpu = process_cpu().as_secs_f64();
        let units = DONE.load(Ordering::Relaxed);
        if writeln!(out, r#"{{"t":{unix:.3},"units":{units},"cpu_s":{cpu:.6}}}"#)
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}

fn process_cpu() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn thread_cpu() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock(id: libc::clockid_t) -> Duration {
    // SAFETY: clock_gettime fills the timespec.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(id, &mut ts);
        ts
    };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Spins until this thread has run for `cost` on a CPU.
fn burn_thread_cpu(cost: Duration) {
    let end = thread_cpu() + cost;
    let mut x = 0u64;
    while thread_cpu() < end {
        // About 20 µs between clock reads (each is a system call).
        for i in 0..20_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
}

fn burn(seconds: u64, cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays within it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            assert_eq!(
                libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
                0,
                "sched_setaffinity"
            );
        }
    }
    spin(seconds);
    let stat = std::fs::read_to_string("/proc/self/schedstat").expect("schedstat");
    let fields: Vec<u64> = stat
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    println!(
        r#"{{"run_ns":{},"run_delay_ns":{},"timeslices":{}}}"#,
        fields[0], fields[1], fields[2]
    );
}

fn spin(seconds: u64) {
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut x = 0u64;
    while Instant::now() < end {
        for i in 0..10_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
}

fn touch(pages: u64) {
    let page = 4096usize;
    let len = pages as usize * page;
    // SAFETY: anonymous private mapping, checked for failure, unmapped below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED, "mmap");
    // One fault per page whatever the host's transparent huge page setting
    // (with THP "always", as in the guest tier, a fault maps 2 MiB).
    // SAFETY: advice on the mapping made above.
    let advised = unsafe { libc::madvise(base, len, libc::MADV_NOHUGEPAGE) };
    assert_eq!(advised, 0, "madvise(MADV_NOHUGEPAGE)");
    for i in 0..pages as usize {
        // SAFETY: within the mapping.
        unsafe { (base as *mut u8).add(i * page).write_volatile(1) };
    }
    // SAFETY: same mapping.
    unsafe { libc::munmap(base, len) };
    print_rusage();
}

fn print_rusage() {
    // SAFETY: getrusage fills the struct.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    println!(
        r#"{{"minflt":{},"majflt":{}}}"#,
        usage.ru_minflt, usage.ru_majflt
    );
}

fn direct_io(dev: &str, bytes: u64, write: bool) {
    const CHUNK: usize = 1 << 20;
    let mut file = OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .unwrap_or_else(|e| panic!("open {dev}: {e}"));
    let layout = std::alloc::Layout::from_size_align(CHUNK, 4096).expect("layout");
    // SAFETY: non-zero size; freed below.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    // SAFETY: ptr is valid for CHUNK bytes.
    let buf = unsafe { std::slice::from_raw_parts_mut(ptr, CHUNK) };
    let mut done = 0u64;
    while done < bytes {
        let n = if write {
            file.write(buf)
        } else {
            file.read(buf)
        }
        .expect("direct I/O");
        assert!(n > 0, "device too small");
        done += n as u64;
    }
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(ptr, layout) };
    println!(r#"{{"bytes":{done}}}"#);
}

fn tcp_recv() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    println!(
        r#"{{"port":{}}}"#,
        listener.local_addr().expect("addr").port()
    );
    std::io::stdout().flush().expect("flush");
    let (mut conn, _) = listener.accept().expect("accept");
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        match conn.read(&mut buf).expect("read") {
            0 => break,
            n => total += n as u64,
        }
    }
    println!(r#"{{"bytes":{total}}}"#);
}

fn tcp_send(port: u64, bytes: u64) {
    let mut conn = TcpStream::connect(("127.0.0.1", port as u16)).expect("connect");
    let buf = vec![7u8; 1 << 16];
    let mut sent = 0u64;
    while sent < bytes {
        let n = buf.len().min((bytes - sent) as usize);
        conn.write_all(&buf[..n]).expect("write");
        sent += n as u64;
    }
    conn.shutdown(std::net::Shutdown::Write).expect("shutdown");
    // Wait for the receiver to close, so every byte has crossed.
    let _ = conn.read(&mut [0u8; 1]);
    println!(r#"{{"bytes":{sent}}}"#);
}

/// Relays stdin lines to a hint socket over one connection, printing each
/// reply line, so a test can hold a client inside a cgroup.
fn hint_relay(socket: &str) {
    use std::io::BufRead as _;
    let stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    let mut replies = std::io::BufReader::new(stream.try_clone().expect("clone"));
    let mut stream = stream;
    let mut stdout = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
        let mut reply = String::new();
        if replies.read_line(&mut reply).expect("reply") == 0 {
            return;
        }
        stdout.write_all(reply.as_bytes()).expect("stdout");
        stdout.flush().expect("flush");
    }
}
