-- Runs once, when the compose postgres volume is initialised (docker-entrypoint-initdb.d),
-- in the `maru` database. pg_stat_statements must also be in shared_preload_libraries
-- (docker-compose.yml passes it on the command line); postgres_exporter reads it with
-- --collector.stat_statements.
create extension if not exists pg_stat_statements;
