-- Community core.
--
-- Ordered scans by name: the first page of a query that matches many rows (without a kind
-- filter) can walk this index instead of sorting every match.
create index communities_name_id_idx on communities (name, id);

-- Two-character searches ("현대", "주공", "수원" — the shortest allowed, and common in Korean)
-- yield no trigram, so the trigram indexes cannot serve them. These GIN indexes over each
-- value's distinct lower-cased character pairs can: a value containing the query contains its
-- pair, and the ILIKE predicate rechecks.
create function community_bigrams(t text) returns text[]
    language sql immutable strict parallel safe
    return array(select distinct substr(lower(t), i, 2) from generate_series(1, length(t) - 1) as i);
create index communities_name_bigram_idx on communities using gin (community_bigrams(name));
create index communities_address_bigram_idx on communities using gin (community_bigrams(address));
