#![no_main]
//! A 7.9-9.x memlog checkpoint (`<txid>.json`), alone and with a log after it.
use libfuzzer_sys::fuzz_target;
#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let d = common::scratch();
    let m = d.join("registry/filebeat");
    let _ = std::fs::write(m.join("meta.json"), r#"{"version":"1"}"#);
    if std::fs::write(m.join("7.json"), data).is_ok() {
        let _ = std::fs::write(m.join("log.json"), b"");
        common::open_and_measure(&d);
        let _ = std::fs::write(
            m.join("log.json"),
            b"{\"op\":\"set\",\"id\":8}\n{\"k\":\"filestream::a::native::1-2\",\"v\":{\"cursor\":{\"offset\":9},\"meta\":{\"source\":\"/nonexistent/a.log\"},\"ttl\":-1}}\n",
        );
        common::open_and_measure(&d);
    }
});
