-- Profiles, the social graph and the feed (posts, comments and replies, likes).
-- Counts shown to clients (followers, likes, comments) are counted from these rows, so they
-- always equal them; only view counts are accumulated (flushed from Redis in bulk).

alter table users
    add column bio       text not null default '',
    add column link1     text not null default '',
    add column link2     text not null default '',
    add column image_url text not null default '';

-- One row per (follower, followee); nobody follows themself.
create table follows (
    follower_id uuid not null references users (id) on delete cascade,
    followee_id uuid not null references users (id) on delete cascade,
    created_at  timestamptz not null default now(),
    constraint follows_pkey primary key (follower_id, followee_id),
    constraint follows_not_self_check check (follower_id <> followee_id)
);
create index follows_followee_id_idx on follows (followee_id, created_at desc, follower_id desc);
create index follows_follower_id_idx on follows (follower_id, created_at desc, followee_id desc);

-- A post belongs to a community feed (members only) or is public (community_id null).
create table posts (
    id           uuid primary key,
    author_id    uuid not null references users (id) on delete cascade,
    community_id uuid references communities (id) on delete cascade,
    text         text not null,
    tags         text[] not null default '{}',
    image_urls   text[] not null default '{}',
    status       text not null default 'PUBLISHED',
    view_count   bigint not null default 0,
    -- Bumped by every edit; the etag clients send back with UpdatePost.
    version      bigint not null default 1,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    constraint posts_status_check check (status in ('PUBLISHED', 'SUSPENDED'))
);
create index posts_community_id_idx on posts (community_id, created_at desc, id desc) where community_id is not null;
create index posts_public_idx on posts (created_at desc, id desc) where community_id is null;
create index posts_author_id_idx on posts (author_id, created_at desc, id desc);
create index posts_tags_idx on posts using gin (tags);
-- Korean substring search: trigrams serve queries of 3+ characters; shorter ones recheck.
create index posts_text_trgm_idx on posts using gin (text gin_trgm_ops);

-- Comments; a reply has the top-level comment it answers as parent (one level only).
create table post_comments (
    id         uuid primary key,
    post_id    uuid not null references posts (id) on delete cascade,
    parent_id  uuid references post_comments (id) on delete cascade,
    author_id  uuid not null references users (id) on delete cascade,
    text       text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index post_comments_post_id_idx on post_comments (post_id, created_at, id);
create index post_comments_parent_id_idx on post_comments (parent_id) where parent_id is not null;

-- One like per user and target.
create table post_likes (
    post_id    uuid not null references posts (id) on delete cascade,
    user_id    uuid not null references users (id) on delete cascade,
    created_at timestamptz not null default now(),
    constraint post_likes_pkey primary key (post_id, user_id)
);
create index post_likes_post_id_idx on post_likes (post_id, created_at desc, user_id desc);

create table comment_likes (
    comment_id uuid not null references post_comments (id) on delete cascade,
    user_id    uuid not null references users (id) on delete cascade,
    created_at timestamptz not null default now(),
    constraint comment_likes_pkey primary key (comment_id, user_id)
);
create index comment_likes_comment_id_idx on comment_likes (comment_id, created_at desc, user_id desc);

-- View-count flush batches already applied (DOMAIN §2 views): a batch taken again after an
-- interrupted flush is recognised by its id and not applied twice. Swept after 7 days.
create table post_view_flushes (
    batch_id   uuid primary key,
    posts      integer not null,
    views      bigint not null,
    applied_at timestamptz not null default now()
);
