mod fuzz_rpcs;
mod idle_flood;
mod redis_outage;
mod sigterm_replica;
