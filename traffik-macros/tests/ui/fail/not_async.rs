use traffik::prelude::*;

#[throttled("5/m")]
fn limited() -> &'static str {
    "sync handlers are not throttled"
}

fn main() {}
