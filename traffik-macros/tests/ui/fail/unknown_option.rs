use traffik::prelude::*;

#[throttled("5/m", burst = 10)]
async fn limited() {}

fn main() {}
