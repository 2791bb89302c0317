-- Clinical-trial open data (KDCA dataset 3074271 on the odcloud gateway): trials normalised
-- into lookup tables, their change history, and one record per ingest run.
-- Source values are trimmed and "" is stored as NULL, never as an empty string.

create table trial_scopes (
    id         bigint generated always as identity,
    name       text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint trial_scopes_pkey primary key (id),
    constraint trial_scopes_name_key unique (name),
    constraint trial_scopes_name_check check (name <> '')
);

create table trial_types (
    id         bigint generated always as identity,
    name       text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint trial_types_pkey primary key (id),
    constraint trial_types_name_key unique (name),
    constraint trial_types_name_check check (name <> '')
);

create table trial_institutions (
    id         bigint generated always as identity,
    name       text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint trial_institutions_pkey primary key (id),
    constraint trial_institutions_name_key unique (name),
    constraint trial_institutions_name_check check (name <> '')
);

create table trial_phases (
    id         bigint generated always as identity,
    name       text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint trial_phases_pkey primary key (id),
    constraint trial_phases_name_key unique (name),
    constraint trial_phases_name_check check (name <> '')
);

create table trial_departments (
    id         bigint generated always as identity,
    name       text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint trial_departments_pkey primary key (id),
    constraint trial_departments_name_key unique (name),
    constraint trial_departments_name_check check (name <> '')
);

-- One row per ingest run. A run is RUNNING until it finishes; the final update of a
-- successful run commits in the same transaction as the data it wrote.
create table ingest_runs (
    id            uuid not null,
    source        text not null,
    origin        text not null,
    trigger       text not null,
    triggered_by  uuid,
    -- The cron slot of a scheduled run: unique, so replicas run each slot once.
    scheduled_for timestamptz,
    result        text not null default 'RUNNING',
    started_at    timestamptz not null default now(),
    finished_at   timestamptz,
    fetched       integer not null default 0,
    created       integer not null default 0,
    updated       integer not null default 0,
    unchanged     integer not null default 0,
    failed        integer not null default 0,
    error         text,
    -- [{"row": 3, "trial_id": "C1", "reason": "..."}], the rows skipped as invalid.
    row_errors    jsonb not null default '[]',
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint ingest_runs_pkey primary key (id),
    constraint ingest_runs_triggered_by_fkey foreign key (triggered_by) references users (id) on delete set null,
    constraint ingest_runs_origin_check check (origin in ('GATEWAY', 'FILE')),
    constraint ingest_runs_trigger_check check (trigger in ('SCHEDULE', 'ADMIN', 'CLI')),
    constraint ingest_runs_result_check check (result in ('RUNNING', 'SUCCEEDED', 'FAILED')),
    constraint ingest_runs_finished_check check ((result = 'RUNNING') = (finished_at is null)),
    constraint ingest_runs_counts_check check (
        fetched >= 0 and created >= 0 and updated >= 0 and unchanged >= 0 and failed >= 0)
);
create unique index ingest_runs_source_scheduled_for_key on ingest_runs (source, scheduled_for)
    where scheduled_for is not null;
create index ingest_runs_source_started_at_idx on ingest_runs (source, started_at desc, id desc);
create index ingest_runs_last_success_idx on ingest_runs (source, finished_at desc) where result = 'SUCCEEDED';

create table trials (
    trial_id          text not null,
    title             text not null,
    period            text,
    scope_id          bigint,
    type_id           bigint,
    institution_id    bigint,
    phase_id          bigint,
    department_id     bigint,
    target_enrollment integer,
    created_at        timestamptz not null default now(),
    -- Changes only when a published value changed (not on every ingest).
    updated_at        timestamptz not null default now(),
    constraint trials_pkey primary key (trial_id),
    constraint trials_scope_id_fkey foreign key (scope_id) references trial_scopes (id),
    constraint trials_type_id_fkey foreign key (type_id) references trial_types (id),
    constraint trials_institution_id_fkey foreign key (institution_id) references trial_institutions (id),
    constraint trials_phase_id_fkey foreign key (phase_id) references trial_phases (id),
    constraint trials_department_id_fkey foreign key (department_id) references trial_departments (id),
    constraint trials_trial_id_check check (trial_id ~ '^[A-Za-z0-9_-]{1,32}$'),
    constraint trials_title_check check (title <> ''),
    constraint trials_period_check check (period <> ''),
    constraint trials_target_enrollment_check check (target_enrollment >= 0)
);
-- Serves the default listing (recently updated first) and its keyset pagination.
create index trials_updated_at_idx on trials (updated_at desc, trial_id);
create index trials_scope_id_idx on trials (scope_id);
create index trials_type_id_idx on trials (type_id);
create index trials_institution_id_idx on trials (institution_id);
create index trials_phase_id_idx on trials (phase_id);
create index trials_department_id_idx on trials (department_id);

-- One row per update of a trial: the changed fields with their old and new values.
create table trial_revisions (
    id         bigint generated always as identity,
    trial_id   text not null,
    run_id     uuid not null,
    -- [{"field": "department", "old": "Cardiology", "new": "Neurology"}]
    changes    jsonb not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint trial_revisions_pkey primary key (id),
    constraint trial_revisions_trial_id_fkey foreign key (trial_id) references trials (trial_id) on delete cascade,
    constraint trial_revisions_run_id_fkey foreign key (run_id) references ingest_runs (id),
    constraint trial_revisions_changes_check check (jsonb_typeof(changes) = 'array' and jsonb_array_length(changes) > 0)
);
create index trial_revisions_trial_id_idx on trial_revisions (trial_id, id desc);
create index trial_revisions_run_id_idx on trial_revisions (run_id);
