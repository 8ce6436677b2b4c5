use super::*;

fn table(version: u64) -> Table {
    let mut t = Table::local_only();
    t.version = version;
    t
}

fn on_disk(dir: &Path) -> u64 {
    let bytes = std::fs::read(dir.join("table.json")).unwrap();
    Table::parse(&bytes).unwrap().version
}

#[test]
fn a_saved_table_is_on_disk_when_save_returns() {
    let dir = tempfile::tempdir().unwrap();
    let w = PersistWriter::every(Duration::from_secs(3600));
    w.save(dir.path(), &table(7)).unwrap();
    assert_eq!(on_disk(dir.path()), 7);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(names, ["table.json"], "no temporary file");
}

#[test]
fn a_burst_of_saves_costs_a_bounded_number_of_syncs_and_the_last_wins() {
    let dir = tempfile::tempdir().unwrap();
    let interval = Duration::from_millis(100);
    let w = PersistWriter::every(interval);
    let started = Instant::now();
    for v in 1..=200 {
        w.save(dir.path(), &table(v)).unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(on_disk(dir.path()), 200);
    // One sync at once, then at most one per interval: the saves never queue.
    let bound = 2 + (elapsed.as_millis() / interval.as_millis()) as u64;
    assert!(w.syncs() <= bound, "{} syncs for 200 saves in {elapsed:?}", w.syncs());
}

#[test]
fn dropping_the_writer_syncs_what_is_pending() {
    let dir = tempfile::tempdir().unwrap();
    let w = PersistWriter::every(Duration::from_secs(3600));
    w.save(dir.path(), &table(1)).unwrap();
    // The first sync starts the hour's rest; the second save waits for the drop.
    while w.syncs() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    w.save(dir.path(), &table(2)).unwrap();
    let inner = w.inner.clone();
    let started = Instant::now();
    drop(w);
    assert!(started.elapsed() < Duration::from_secs(60), "the stop cuts the rest short");
    assert_eq!(inner.syncs.load(Ordering::SeqCst), 2, "the pending table was synced at the stop");
    assert_eq!(on_disk(dir.path()), 2);
}

#[test]
fn a_failed_sync_is_retried_with_a_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(Inner { state: Mutex::default(), wake: Condvar::new(), syncs: AtomicU64::new(0) });
    // A file that is not there cannot be synced: the job comes back as a rewrite.
    let path = dir.path().join("table.json");
    inner.lock().pending = Some(Pending { path: path.clone(), bytes: b"{}".to_vec(), rewrite: false });
    let worker = inner.clone();
    let t = std::thread::spawn(move || run(&worker, Duration::from_millis(10)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    inner.lock().stopping = true;
    inner.wake.notify_all();
    t.join().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"{}", "rewritten whole after the failed sync");
    assert!(inner.syncs.load(Ordering::SeqCst) >= 2);
}

#[test]
fn pushes_during_a_rest_wake_the_thread_once_per_batch_and_every_file_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let w = PersistWriter::every(Duration::from_secs(3600));
    w.save(dir.path(), &table(1)).unwrap();
    while w.syncs() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Resting now: a wake-up per push would be 100 context switches for nothing.
    let woken = w.inner.lock().wakes;
    for v in 2..=101 {
        w.save(dir.path(), &table(v)).unwrap();
    }
    // The thread closes a full batch when it gets the core: on a loaded machine, later.
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.inner.lock().retired.len() >= RETIRED_BATCH && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (wakes, open) = {
        let st = w.inner.lock();
        (st.wakes - woken, st.retired.len())
    };
    assert!(open < RETIRED_BATCH, "every full batch of replaced files was closed: {open} open");
    // One per batch, and a spare for a spurious one.
    assert!(wakes <= (100 / RETIRED_BATCH) as u64 + 2, "{wakes} wake-ups for 100 pushes");
    assert_eq!(w.syncs(), 1, "the rest is not cut short");
    assert_eq!(on_disk(dir.path()), 101);
}
