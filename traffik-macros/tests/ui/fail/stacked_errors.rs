//! Every stacked attribute is checked, and all errors are reported at once.
use traffik::prelude::*;

#[throttled("5/s")]
#[throttled("10/fortnight")]
#[throttled]
async fn limited() {}

fn main() {}
