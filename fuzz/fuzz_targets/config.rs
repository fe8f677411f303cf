#![no_main]
//! The agent's config file, as `drainhook agent --config FILE` reads it: an error or a
//! configuration, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = toml::from_str::<drainhook::config::FileConfig>(s);
    }
    let path = std::env::temp_dir().join(format!("drainhook-fuzz-{}.toml", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        let _ = drainhook::config::AgentArgs {
            config: Some(path),
            ..Default::default()
        }
        .resolve();
    }
});
