-- Developer profiles (issue 15 slice 4, DOMAIN §2): a position, up to 20 normalised tech tags
-- and up to 5 links on the account's profile, next to the SNS profile's bio (the
-- self-introduction, ≤ 500 characters), link1/link2 and image. `profile_version` is bumped by
-- every UpdateProfile: the profile's etag ("v<version>"), so an edit made from a stale read is
-- refused instead of silently overwriting another one.
alter table users
    add column dev_position    text not null default '',
    add column tech_tags       text[] not null default '{}',
    add column links           text[] not null default '{}',
    add column profile_version bigint not null default 1,
    add constraint users_dev_position_check check (dev_position in
        ('', 'BACKEND', 'FRONTEND', 'FULLSTACK', 'DESIGN', 'PLANNING', 'AI', 'MOBILE', 'DEVOPS', 'DATA', 'OTHER')),
    add constraint users_tech_tags_check check (cardinality(tech_tags) <= 20),
    add constraint users_links_check check (cardinality(links) <= 5);
