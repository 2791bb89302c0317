-- Media (issue 18, docs/media.md): uploads, their variants and the durable processing queue.

create table media (
    id               uuid primary key,
    owner_id         uuid not null references users (id) on delete cascade,
    purpose          text not null,
    state            text not null default 'UPLOADING'
                     check (state in ('UPLOADING', 'PROCESSING', 'READY', 'FAILED')),
    -- What the client declared at CreateUpload.
    declared_type    text not null,
    size_bytes       bigint not null check (size_bytes > 0),
    sha256           bytea,
    -- Key of the original in the object store.
    object_key       text not null,
    -- The type sniffed from the stored bytes at CompleteUpload.
    content_type     text,
    failure_reason   text,
    upload_expires_at timestamptz not null,
    -- Set once by the first PUT with the upload token: the token is single-use.
    upload_started_at timestamptz,
    -- What the media is attached to (e.g. 'post'), once.
    attached_kind    text,
    attached_id      uuid,
    created_at       timestamptz not null default now(),
    completed_at     timestamptz,
    finished_at      timestamptz,
    check ((attached_kind is null) = (attached_id is null))
);
create index media_owner_created on media (owner_id, created_at);
-- The clean-up job's scan: unattached media by age.
create index media_unattached_created on media (created_at) where attached_id is null;

create table media_variants (
    media_id     uuid not null references media (id) on delete cascade,
    name         text not null,
    object_key   text not null,
    content_type text not null,
    width        int not null,
    height       int not null,
    size_bytes   bigint not null,
    primary key (media_id, name)
);

-- One processing job per media. A worker claims a due job with FOR UPDATE SKIP LOCKED and
-- holds a lease (`lease_until`), renewed by heartbeats; a job whose lease ran out (its worker
-- died) is due again. `attempts` counts claims; past the limit the job is dead.
create table media_jobs (
    media_id     uuid primary key references media (id) on delete cascade,
    state        text not null default 'queued' check (state in ('queued', 'running', 'done', 'dead')),
    attempts     int not null default 0,
    run_at       timestamptz not null default now(),
    lease_until  timestamptz,
    worker       text,
    last_error   text,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);
create index media_jobs_due on media_jobs (run_at) where state in ('queued', 'running');
