-- Community core: ordered scans by name (search pages without a kind filter, when the
-- query matches many rows) and the per-user home screen.
create index communities_name_id_idx on communities (name, id);
