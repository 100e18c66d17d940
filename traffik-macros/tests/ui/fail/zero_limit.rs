use traffik::prelude::*;

#[throttled("0/m")]
async fn limited() {}

fn main() {}
