-- Sports-club events (matches): participants, check-ins, fees and durable penalty settlement.

-- A member's gender category inside a club, set by managers; decides which events they see.
alter table community_memberships add column gender text;
alter table community_memberships add constraint community_memberships_gender_check
    check (gender is null or gender in ('MALE', 'FEMALE'));

create table events (
    id               uuid primary key,
    community_id     uuid not null references communities (id) on delete cascade,
    title            text not null,
    address          text not null,
    latitude         double precision not null,
    longitude        double precision not null,
    gender_category  text not null,
    fee              bigint not null default 0,
    starts_at        timestamptz not null,
    ends_at          timestamptz not null,
    description      text not null default '',
    created_by       uuid references users (id) on delete set null,
    -- Set, in the transaction that writes the event's penalties, when the event is settled.
    settled_at       timestamptz,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    constraint events_gender_category_check check (gender_category in ('ALL', 'MALE', 'FEMALE')),
    constraint events_fee_check check (fee >= 0),
    constraint events_time_check check (ends_at > starts_at),
    constraint events_latitude_check check (latitude between -90 and 90),
    constraint events_longitude_check check (longitude between -180 and 180)
);
create index events_community_starts_idx on events (community_id, starts_at, id);
-- The settlement job's queue: ended, unsettled events.
create index events_unsettled_idx on events (ends_at) where settled_at is null;

create table event_participants (
    event_id     uuid not null references events (id) on delete cascade,
    user_id      uuid not null references users (id) on delete cascade,
    attendance   text not null default 'ABSENT',
    fee_status   text not null default 'NOT_PAID',
    added_by     uuid references users (id) on delete set null,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    constraint event_participants_pkey primary key (event_id, user_id),
    constraint event_participants_attendance_check check (attendance in ('ABSENT', 'ATTEND', 'LATE')),
    constraint event_participants_fee_status_check check (fee_status in ('NOT_PAID', 'PENDING', 'PAID'))
);
create index event_participants_user_idx on event_participants (user_id);

-- One check-in per participant and event: the unique key decides concurrent check-ins.
create table event_check_ins (
    event_id       uuid not null,
    user_id        uuid not null,
    result         text not null,
    distance_m     double precision,
    forced_by      uuid references users (id) on delete set null,
    checked_in_at  timestamptz not null,
    constraint event_check_ins_event_id_user_id_key unique (event_id, user_id),
    constraint event_check_ins_participant_fkey foreign key (event_id, user_id)
        references event_participants (event_id, user_id) on delete cascade,
    constraint event_check_ins_result_check check (result in ('ATTEND', 'LATE'))
);

-- Penalty points, written only by settlement (one row per member, event and reason).
create table event_penalties (
    id            uuid primary key,
    community_id  uuid not null references communities (id) on delete cascade,
    event_id      uuid not null references events (id) on delete cascade,
    user_id       uuid not null references users (id) on delete cascade,
    reason        text not null,
    points        integer not null,
    created_at    timestamptz not null default now(),
    constraint event_penalties_event_id_user_id_reason_key unique (event_id, user_id, reason),
    constraint event_penalties_reason_check check (reason in ('ABSENT', 'LATE', 'NOT_PAID'))
);
create index event_penalties_community_user_idx on event_penalties (community_id, user_id, created_at, id);
