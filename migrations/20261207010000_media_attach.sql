-- Media attached to posts (issue 18, docs/media.md#attaching): the order among a target's
-- media, the lookup by target, and media released when their post is deleted (by its author,
-- a moderator, or a cascade), so the clean-up collects them.

alter table media add column attached_pos smallint;
create index media_attached on media (attached_kind, attached_id, attached_pos) where attached_id is not null;

create function media_release_post() returns trigger language plpgsql as $$
begin
    update media set attached_kind = null, attached_id = null, attached_pos = null
     where attached_kind = 'post' and attached_id = old.id;
    return null;
end $$;

create trigger posts_release_media after delete on posts
    for each row execute function media_release_post();
