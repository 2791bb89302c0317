-- Community content (DOMAIN §1): notices, complaints, contacts, schedules and polls.
-- Every row belongs to one community and goes with it (on delete cascade). Authors are kept
-- as ids; a deleted account leaves its content behind without an author.

create table community_notices (
    id            uuid primary key,
    community_id  uuid not null references communities (id) on delete cascade,
    title         text not null,
    body          text not null,
    pinned        boolean not null default false,
    author_id     uuid references users (id) on delete set null,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint community_notices_title_check check (length(btrim(title)) between 1 and 200)
);
-- ListNotices: pinned first, newest first.
create index community_notices_list_idx on community_notices (community_id, pinned desc, created_at desc, id desc);

create table community_complaints (
    id            uuid primary key,
    community_id  uuid not null references communities (id) on delete cascade,
    filed_by      uuid references users (id) on delete set null,
    title         text not null,
    body          text not null,
    category      text not null default '',
    status        text not null default 'RECEIVED',
    reply         text not null default '',
    replied_by    uuid references users (id) on delete set null,
    replied_at    timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint community_complaints_status_check
        check (status in ('RECEIVED', 'IN_PROGRESS', 'RESOLVED', 'REJECTED', 'WITHDRAWN'))
);
create index community_complaints_list_idx on community_complaints (community_id, created_at desc, id desc);
create index community_complaints_filer_idx on community_complaints (community_id, filed_by, created_at desc, id desc);

create table community_contacts (
    id            uuid primary key,
    community_id  uuid not null references communities (id) on delete cascade,
    name          text not null,
    phone         text not null,
    category      text not null default '',
    description   text not null default '',
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
create index community_contacts_list_idx on community_contacts (community_id, category, name, id);

create table community_schedules (
    id            uuid primary key,
    community_id  uuid not null references communities (id) on delete cascade,
    title         text not null,
    starts_at     timestamptz not null,
    ends_at       timestamptz not null,
    location      text not null default '',
    description   text not null default '',
    created_by    uuid references users (id) on delete set null,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint community_schedules_range_check check (ends_at >= starts_at)
);
create index community_schedules_range_idx on community_schedules (community_id, starts_at, id);

create table community_polls (
    id            uuid primary key,
    community_id  uuid not null references communities (id) on delete cascade,
    question      text not null,
    -- Optional deadline; voting stops at closes_at or when a manager closes the poll.
    closes_at     timestamptz,
    closed_at     timestamptz,
    created_by    uuid references users (id) on delete set null,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
create index community_polls_list_idx on community_polls (community_id, created_at desc, id desc);

create table community_poll_options (
    id            uuid primary key,
    poll_id       uuid not null references community_polls (id) on delete cascade,
    position      int not null,
    text          text not null,
    constraint community_poll_options_poll_id_position_key unique (poll_id, position),
    -- Target of the votes' composite key, so a vote can only name an option of its own poll.
    constraint community_poll_options_id_poll_id_key unique (id, poll_id)
);

-- One vote per member per poll: the unique constraint is the rule (concurrent votes included).
-- Results are counted from these rows, so they always equal them.
create table community_poll_votes (
    poll_id       uuid not null references community_polls (id) on delete cascade,
    option_id     uuid not null,
    user_id       uuid not null references users (id) on delete cascade,
    created_at    timestamptz not null default now(),
    constraint community_poll_votes_poll_id_user_id_key unique (poll_id, user_id),
    constraint community_poll_votes_option_fkey
        foreign key (option_id, poll_id) references community_poll_options (id, poll_id) on delete cascade
);
create index community_poll_votes_option_idx on community_poll_votes (poll_id, option_id);
