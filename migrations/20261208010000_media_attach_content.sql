-- Media attached to notices, complaints, teams and profiles (issue 18, docs/media.md#attaching):
-- released when their notice, complaint or team is deleted (by its writer, or a cascade from
-- its community), so the clean-up collects them like media never attached. A profile's
-- picture (attached_kind 'profile', attached_id = the user) follows its account's deletion
-- instead (see the owner-deleted clean-up).

create function media_release_target() returns trigger language plpgsql as $$
begin
    update media set attached_kind = null, attached_id = null, attached_pos = null
     where attached_kind = tg_argv[0] and attached_id = old.id;
    return null;
end $$;

create trigger community_notices_release_media after delete on community_notices
    for each row execute function media_release_target('notice');
create trigger community_complaints_release_media after delete on community_complaints
    for each row execute function media_release_target('complaint');
create trigger teams_release_media after delete on teams
    for each row execute function media_release_target('team');
