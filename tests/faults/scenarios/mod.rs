mod fuzz_rpcs;
mod redis_outage;
