use traffik::prelude::*;

#[throttled("5")]
async fn limited() {}

fn main() {}
