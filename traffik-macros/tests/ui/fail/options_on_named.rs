use traffik::prelude::*;

throttle!(ApiLimit = HttpThrottle::new("api", "10/m"));

#[throttled(ApiLimit, uid = "other")]
async fn limited() {}

#[throttled("5/m", uid = "a", uid = "b")]
async fn twice() {}

#[throttled(uid = "no_rate")]
async fn no_rate() {}

#[throttled(5)]
async fn not_a_string() {}

fn main() {}
