#![no_main]
//! A duration as flags and the config file give it: never a panic; what parses, formats.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(d) = drainhook::duration::parse(s) {
            let _ = drainhook::duration::format(d);
        }
        let _ = drainhook::duration::arg(s);
    }
});
