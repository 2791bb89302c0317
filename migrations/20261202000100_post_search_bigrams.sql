-- Post search serves queries of 2+ characters from an index (issue 14 point 3). The trigram
-- index could not: a trigram needs 3 characters, and 2-character Korean words are the most
-- common queries (2 is the shortest allowed), so each one read every post row by row (1.2 s
-- over 132,000 posts, holding a pooled connection). As for community search (migration
-- 20261122000410, docs/communities.md): each post's distinct lower-cased character pairs in a
-- stored generated column (`community_bigrams`, the same function) with a GIN index; a
-- query's pairs select the candidates and ILIKE decides. Stored, so a plan never computes
-- pairs per row. It replaces the trigram index (one GIN index per post write, not two).
alter table posts add column text_bigrams text[] generated always as (community_bigrams(text)) stored;
create index posts_text_bigram_idx on posts using gin (text_bigrams);
drop index posts_text_trgm_idx;
