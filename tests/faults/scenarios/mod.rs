mod backends_terminated;
mod fuzz_rpcs;
mod pool_exhausted;
mod postgres_outage;
mod redis_outage;
