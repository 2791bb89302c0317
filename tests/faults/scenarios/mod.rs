mod fuzz_rpcs;
pub mod idle_flood;
mod non_reading;
mod redis_outage;
mod search_flood;
mod sigterm_replica;
