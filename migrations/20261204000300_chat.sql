-- Chat (DOMAIN §3, issue 17): rooms (a DM per pair, or a group with an owner), members with
-- their read marks, messages, blocks, and the event log of every room.
--
-- Every change of a room takes the room's next seq with
--   update chat_rooms set last_seq = last_seq + 1 where id = $1 returning last_seq
-- inside its own transaction, and writes a chat_events row with it. The row lock serialises the
-- room's writers, so seqs are 1, 2, 3, … with no gap (a rolled-back change gives its seq back)
-- and commit order is seq order: a reader never sees seq n + 1 before n. Subscribe replays a
-- room from chat_events by (room_id, seq).

create table chat_rooms (
    id              uuid primary key,
    kind            text not null,
    title           text not null default '',
    owner_id        uuid references users (id) on delete set null,
    -- DMs: the two members, the lower id first; null for groups. One DM per pair.
    dm_low          uuid references users (id) on delete cascade,
    dm_high         uuid references users (id) on delete cascade,
    -- The seq of the room's latest event.
    last_seq        bigint not null default 0,
    -- The seq of the latest message (0: none yet).
    last_message_seq bigint not null default 0,
    -- When the room last had a message (its creation until then): ListMyRooms' order.
    active_at       timestamptz not null default now(),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint chat_rooms_kind_check check (kind in ('DIRECT', 'GROUP')),
    constraint chat_rooms_dm_check check (
        (kind = 'DIRECT' and dm_low is not null and dm_high is not null and dm_low < dm_high)
        or (kind = 'GROUP' and dm_low is null and dm_high is null)),
    constraint chat_rooms_title_check check (char_length(title) <= 100),
    constraint chat_rooms_dm_pair_key unique (dm_low, dm_high)
);

create table chat_members (
    room_id    uuid not null references chat_rooms (id) on delete cascade,
    user_id    uuid not null references users (id) on delete cascade,
    -- The seq of the event that added the member (ownership passes in this order).
    joined_seq bigint not null,
    read_seq   bigint not null default 0,
    joined_at  timestamptz not null default now(),
    constraint chat_members_pkey primary key (room_id, user_id)
);
-- A user's rooms (ListMyRooms sorts them by chat_rooms.active_at). active_at, last_seq and
-- last_message_seq change with every message and are deliberately not indexed, so those
-- updates stay HOT.
create index chat_members_user_id_idx on chat_members (user_id, room_id);

create table chat_messages (
    id         uuid primary key,
    room_id    uuid not null references chat_rooms (id) on delete cascade,
    seq        bigint not null,
    author_id  uuid not null references users (id) on delete cascade,
    -- Empty once deleted (the tombstone keeps its place and seq).
    text       text not null,
    created_at timestamptz not null default now(),
    edited_at  timestamptz,
    deleted_at timestamptz,
    constraint chat_messages_room_id_seq_key unique (room_id, seq),
    constraint chat_messages_text_check check (char_length(text) <= 4000)
);

-- The event log: what Subscribe replays. Columns by kind:
--   ROOM_CREATED     actor_id (the creator)
--   MEMBER_JOINED    actor_id (who invited; the creator for the first members), user_id
--   MEMBER_LEFT      actor_id (the member, or the owner who removed them), user_id
--   ROOM_RENAMED     actor_id, title
--   MESSAGE_CREATED, MESSAGE_EDITED, MESSAGE_DELETED   actor_id, message_id
--   READ             actor_id = user_id (the reader), read_seq
create table chat_events (
    room_id    uuid not null references chat_rooms (id) on delete cascade,
    seq        bigint not null,
    kind       text not null,
    actor_id   uuid references users (id) on delete set null,
    user_id    uuid references users (id) on delete set null,
    message_id uuid references chat_messages (id) on delete cascade,
    title      text,
    read_seq   bigint,
    created_at timestamptz not null default now(),
    constraint chat_events_pkey primary key (room_id, seq),
    constraint chat_events_kind_check check (kind in ('ROOM_CREATED', 'MEMBER_JOINED', 'MEMBER_LEFT',
        'ROOM_RENAMED', 'MESSAGE_CREATED', 'MESSAGE_EDITED', 'MESSAGE_DELETED', 'READ'))
);

-- `blocker_id` no longer receives DMs from `blocked_id`.
create table chat_blocks (
    blocker_id uuid not null references users (id) on delete cascade,
    blocked_id uuid not null references users (id) on delete cascade,
    created_at timestamptz not null default now(),
    constraint chat_blocks_pkey primary key (blocker_id, blocked_id),
    constraint chat_blocks_self_check check (blocker_id <> blocked_id)
);
