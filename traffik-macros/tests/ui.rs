//! Compile-time behaviour of `#[throttled]`: what compiles (every option, stacking, named
//! throttles, WebSocket message handlers, `debug_handler`), and the errors for what does
//! not, with the messages in `ui/fail/*.stderr`.
//!
//! Regenerate the expected errors with `TRYBUILD=overwrite cargo test -p traffik-macros
//! --test ui`, then review them.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
