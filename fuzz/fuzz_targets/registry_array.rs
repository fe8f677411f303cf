#![no_main]
//! A 5.x/6.x registry file (a JSON array) and the same as a 7.0-7.8 data.json.
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let d = common::scratch();
    let _ = std::fs::remove_dir_all(d.join("registry"));
    if std::fs::write(d.join("registry"), data).is_ok() {
        common::open_and_measure(&d);
    }
    let _ = std::fs::remove_file(d.join("registry"));
    let seven = d.join("registry/filebeat");
    if std::fs::create_dir_all(&seven).is_ok() && std::fs::write(seven.join("data.json"), data).is_ok() {
        common::open_and_measure(&d);
    }
});
