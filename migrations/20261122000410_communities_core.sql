-- Community core.
--
-- Ordered scans by name: the first page of a query that matches many rows (without a kind
-- filter) can walk this index instead of sorting every match.
create index communities_name_id_idx on communities (name, id);

-- Two-character searches ("현대", "주공", "수원" — the shortest allowed, and common in Korean)
-- yield no trigram, so the trigram indexes cannot serve them. Each value's distinct
-- lower-cased character pairs are kept in a generated column with a GIN index: a value
-- contains a two-character query exactly when its pairs contain the query's pair (the ILIKE
-- predicate still decides). Stored, so searching computes nothing per row.
create function community_bigrams(t text) returns text[]
    language sql immutable strict parallel safe
    return array(select distinct substr(lower(t), i, 2) from generate_series(1, length(t) - 1) as i);
alter table communities
    add column name_bigrams text[] generated always as (community_bigrams(name)) stored,
    add column address_bigrams text[] generated always as (community_bigrams(address)) stored;
create index communities_name_bigram_idx on communities using gin (name_bigrams);
create index communities_address_bigram_idx on communities using gin (address_bigrams);
