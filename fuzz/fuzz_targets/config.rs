//! The TOML config file (`serve`, `validate`, SIGHUP reload): any text must load or be
//! refused with errors that each name a field, never panic.
#![no_main]

use std::path::Path;

use flowgate::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(errors) = Config::from_toml(Path::new("/nonexistent/fuzz.toml"), text) {
        assert!(!errors.to_string().trim().is_empty(), "a refused config must say why");
    }
});
