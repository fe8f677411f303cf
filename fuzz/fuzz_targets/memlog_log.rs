#![no_main]
//! A 7.9-9.x memlog `log.json` line stream, with no checkpoint and after one.
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let d = common::scratch();
    let m = d.join("registry/filebeat");
    let _ = std::fs::write(m.join("meta.json"), r#"{"version":"1"}"#);
    if std::fs::write(m.join("log.json"), data).is_ok() {
        common::open_and_measure(&d);
        let _ = std::fs::write(
            m.join("3.json"),
            r#"[{"_key":"filestream::a::native::1-2","cursor":{"offset":5},"meta":{"source":"/nonexistent/a.log"},"ttl":-1,"updated":[1,2]}]"#,
        );
        common::open_and_measure(&d);
    }
});
