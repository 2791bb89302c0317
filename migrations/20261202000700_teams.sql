-- Club team building (DOMAIN §2): teams, the roles they recruit with their seats, members,
-- applications and likes. Seats are decided here: `team_roles.filled` only moves by a
-- conditional update (`filled < capacity`) in the transaction that adds the member, and a
-- check keeps it within 0..capacity whatever the code does.

create table teams (
    id             uuid primary key,
    community_id   uuid not null references communities (id) on delete cascade,
    leader_id      uuid not null references users (id) on delete cascade,
    title          text not null,
    genre          text not null,
    description    text not null default '',
    links          text[] not null default '{}',
    image_url      text not null default '',
    state          text not null default 'PENDING_APPROVAL',
    decision_note  text not null default '',
    decided_by     uuid references users (id) on delete set null,
    decided_at     timestamptz,
    -- Accumulated by the view flush (views are counted in Redis, once per viewer and day).
    view_count     bigint not null default 0,
    -- Bumped by every edit; the etag clients send back with UpdateTeam.
    version        bigint not null default 1,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    constraint teams_genre_check check (genre in ('WEB', 'APP', 'GAME', 'AI', 'OTHER')),
    constraint teams_state_check check (state in
        ('PENDING_APPROVAL', 'REJECTED', 'RECRUITING', 'IN_PROGRESS', 'ACCOMPLISHED')),
    constraint teams_title_check check (length(btrim(title)) between 1 and 100)
);
-- Titles are unique per club, case-insensitively (source error 0201).
create unique index teams_community_id_title_key on teams (community_id, lower(title));
create index teams_community_id_idx on teams (community_id, state, created_at desc, id desc);
create index teams_leader_id_idx on teams (leader_id);
create index teams_title_trgm_idx on teams using gin (title gin_trgm_ops);

create table team_roles (
    team_id   uuid not null references teams (id) on delete cascade,
    role      text not null,
    capacity  integer not null,
    filled    integer not null default 0,
    constraint team_roles_pkey primary key (team_id, role),
    constraint team_roles_role_check check (role in
        ('BACKEND', 'FRONTEND', 'DESIGN', 'PLANNING', 'AI', 'MOBILE', 'DEVOPS', 'OTHER')),
    constraint team_roles_capacity_check check (capacity between 1 and 10),
    constraint team_roles_filled_check check (filled between 0 and capacity)
);

-- One seat per member and team; the seat is of one of the team's roles.
create table team_members (
    team_id    uuid not null,
    user_id    uuid not null references users (id) on delete cascade,
    role       text not null,
    joined_at  timestamptz not null default now(),
    constraint team_members_pkey primary key (team_id, user_id),
    constraint team_members_role_fkey foreign key (team_id, role)
        references team_roles (team_id, role) on delete cascade
);
create index team_members_user_id_idx on team_members (user_id, joined_at desc);

-- One application per (user, team, role) (source error 0501). Withdrawing deletes it.
create table team_applications (
    id          uuid primary key,
    team_id     uuid not null,
    user_id     uuid not null references users (id) on delete cascade,
    role        text not null,
    message     text not null default '',
    state       text not null default 'PENDING',
    note        text not null default '',
    decided_at  timestamptz,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    constraint team_applications_team_id_user_id_role_key unique (team_id, user_id, role),
    constraint team_applications_role_fkey foreign key (team_id, role)
        references team_roles (team_id, role) on delete cascade,
    constraint team_applications_state_check check (state in ('PENDING', 'APPROVED', 'REJECTED'))
);
create index team_applications_team_id_idx on team_applications (team_id, created_at desc, id desc);
create index team_applications_user_id_idx on team_applications (user_id, created_at desc, id desc);

-- One like per user and team; counts are the rows.
create table team_likes (
    team_id     uuid not null references teams (id) on delete cascade,
    user_id     uuid not null references users (id) on delete cascade,
    created_at  timestamptz not null default now(),
    constraint team_likes_pkey primary key (team_id, user_id)
);
create index team_likes_user_id_idx on team_likes (user_id, created_at desc, team_id desc);
