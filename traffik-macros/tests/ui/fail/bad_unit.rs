use traffik::prelude::*;

#[throttled("5/mins")]
async fn limited() {}

fn main() {}
