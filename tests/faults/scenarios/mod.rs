mod backends_terminated;
mod fuzz_rpcs;
mod idle_flood;
mod pool_exhausted;
mod postgres_outage;
mod redis_outage;
mod sigterm_replica;
