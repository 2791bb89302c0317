mod backends_terminated;
mod fuzz_rpcs;
pub mod idle_flood;
mod non_reading;
mod pool_exhausted;
mod postgres_outage;
mod redis_outage;
mod search_flood;
mod sigterm_replica;
