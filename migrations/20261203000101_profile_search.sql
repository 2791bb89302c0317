-- People search (issue 16 "People", ProfileService.SearchProfiles): Korean substring search over
-- handle, display name, bio (the self-introduction) and tech tags, served by an index like post
-- search (migration 20261202000100): each account's distinct lower-cased character pairs of its
-- searchable text in a stored generated column with a GIN index; a query's pairs select the
-- candidates and ILIKE over the same text decides. The fields are joined by line breaks, which
-- no query may contain, so a match never spans two fields.
--
-- array_to_string is only STABLE in general, but for text[] its output depends on nothing but
-- the input, so this wrapper may be declared IMMUTABLE (a generated column requires it).
create function profile_search_text(handle text, display_name text, bio text, tags text[]) returns text
    language sql immutable strict parallel safe
    return handle || E'\n' || display_name || E'\n' || bio || E'\n' || array_to_string(tags, E'\n');
alter table users
    add column search_bigrams text[]
        generated always as (community_bigrams(profile_search_text(handle, display_name, bio, tech_tags))) stored;
create index users_search_bigram_idx on users using gin (search_bigrams);
-- The tech_tag filter (`tech_tags @> array[tag]`).
create index users_tech_tags_idx on users using gin (tech_tags);
