-- Shared by many.lua and hot.lua: after the run, one machine-readable line on stdout.
-- summary.errors.status counts responses with a status of 400 or more (here: 429s).
function done(summary, latency, requests)
   local secs = summary.duration / 1e6
   io.write(string.format(
      "BENCH_RESULT requests=%d rps=%.1f non2xx=%d socket_errors=%d p50_us=%d p99_us=%d mean_us=%.1f\n",
      summary.requests, summary.requests / secs, summary.errors.status,
      summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
      latency:percentile(50), latency:percentile(99), latency.mean))
end
