-- Communities (apartment complexes, clubs, sports clubs) and their memberships.
-- Content tables (notices, complaints, contacts, schedules, polls) come in later migrations.

create extension if not exists pg_trgm;

create table communities (
    id             uuid primary key,
    kind           text not null,
    name           text not null,
    address        text not null default '',
    -- The public registry's code (kaptCode) of an apartment complex; null for clubs.
    external_code  text,
    -- Registry data kept as delivered (sido, sigungu, bjdCode, ...), for display and re-import.
    registry       jsonb not null default '{}'::jsonb,
    -- The code a SPORTS_CLUB member types to join at once; null for other kinds.
    join_code      text,
    created_by     uuid references users (id) on delete set null,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    constraint communities_kind_check check (kind in ('APARTMENT', 'CLUB', 'SPORTS_CLUB')),
    constraint communities_name_check check (length(btrim(name)) between 1 and 100)
);
create unique index communities_external_code_key on communities (external_code) where external_code is not null;
-- Substring search over name and address (Korean included): trigram GIN indexes.
create index communities_name_trgm_idx on communities using gin (name gin_trgm_ops);
create index communities_address_trgm_idx on communities using gin (address gin_trgm_ops);
create index communities_kind_name_idx on communities (kind, name, id);

-- One active (PENDING or APPROVED) membership per user and community. Rejected requests stay
-- for history; leaving or being removed deletes the row.
create table community_memberships (
    id            uuid primary key,
    community_id  uuid not null references communities (id) on delete cascade,
    user_id       uuid not null references users (id) on delete cascade,
    status        text not null,
    role          text not null default 'MEMBER',
    building      text,
    unit          text,
    note          text,
    decided_by    uuid references users (id) on delete set null,
    decided_at    timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint community_memberships_status_check check (status in ('PENDING', 'APPROVED', 'REJECTED')),
    constraint community_memberships_role_check check (role in ('MEMBER', 'MANAGER'))
);
create unique index community_memberships_active_key
    on community_memberships (community_id, user_id) where status in ('PENDING', 'APPROVED');
create index community_memberships_user_idx on community_memberships (user_id, status);
create index community_memberships_community_idx on community_memberships (community_id, status, created_at, id);
