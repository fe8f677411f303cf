#![no_main]
//! A queue message body, whatever it is: never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data);
    let notice = drainhook::message::parse(&body);
    let _ = notice.instance_id();
});
