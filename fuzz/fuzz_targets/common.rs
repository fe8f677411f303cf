//! Shared by the registry targets: a scratch data dir in /dev/shm (or the temp dir), one per
//! fuzzing process, written with the input, then opened and measured as the agent would.

use drainhook::backlog::{self, ProcScan};
use drainhook::registry::Registry;
use std::path::PathBuf;

pub fn scratch() -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let d = base.join(format!("drainhook-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("registry/filebeat")).expect("scratch dir");
    d
}

/// Opens the registry and computes the backlog: neither may panic, whatever is on disk.
pub fn open_and_measure(dir: &std::path::Path) {
    if let Ok(mut reg) = Registry::open(dir) {
        let _ = reg.refresh();
        let b = backlog::compute(
            &reg,
            &ProcScan {
                proc_root: dir.join("no-proc"),
                process_name: "filebeat".into(),
            },
        );
        let _ = b.to_table();
    }
}
