//! Fuzz target: a URL template and a submit request body, through the handler's parsing and
//! the URL builder. The invariants live in `invariants.rs`, shared with a property test.
#![no_main]

#[path = "../invariants.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = invariants::check(data);
});
