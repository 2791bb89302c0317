-- Reports and moderation (DOMAIN §3 reports, issue 16). One report per reporter and target
-- (unique constraint); a target's reports are resolved together, under the lock of its
-- `report_targets` row, which also counts open reports for the auto-hide threshold.

create table moderation_actions (
    id          uuid primary key,
    -- Null for what the server did by itself (AUTO_HIDE).
    actor_id    uuid references users (id) on delete set null,
    action      text not null,
    target_type text not null,
    target_id   uuid not null,
    -- The account the target belongs to (the user itself for a USER target).
    owner_id    uuid,
    note        text not null default '',
    -- Reports this action resolved.
    reports     integer not null default 0,
    created_at  timestamptz not null default now(),
    constraint moderation_actions_action_check check (action in
        ('DISMISS', 'SUSPEND_TARGET', 'WARN_USER', 'SUSPEND_USER', 'REINSTATE_USER', 'AUTO_HIDE'))
);
create index moderation_actions_created_at_idx on moderation_actions (created_at desc, id desc);

create table reports (
    id          uuid primary key,
    reporter_id uuid not null references users (id) on delete cascade,
    target_type text not null,
    target_id   uuid not null,
    owner_id    uuid,
    reason      text not null,
    details     text not null default '',
    state       text not null default 'OPEN',
    resolution_id uuid references moderation_actions (id),
    created_at  timestamptz not null default now(),
    resolved_at timestamptz,
    constraint reports_reporter_id_target_type_target_id_key unique (reporter_id, target_type, target_id),
    constraint reports_target_type_check check (target_type in ('USER', 'POST', 'COMMENT', 'PRODUCT', 'CHAT_MESSAGE')),
    constraint reports_reason_check check (reason in ('SPAM', 'ABUSE', 'SEXUAL', 'ILLEGAL', 'FRAUD', 'OTHER')),
    constraint reports_state_check check (state in ('OPEN', 'DISMISSED', 'ACTIONED'))
);
-- The queue (oldest first) and its size and age.
create index reports_open_idx on reports (created_at, id) where state = 'OPEN';
create index reports_target_idx on reports (target_type, target_id, state);
create index reports_created_at_idx on reports (created_at);

-- One row per reported target: its open reports (one per distinct reporter) and, when the
-- auto-hide threshold hid it, the status it had before (restored when the reports are
-- dismissed).
create table report_targets (
    target_type  text not null,
    target_id    uuid not null,
    open_reports integer not null default 0,
    hidden_at    timestamptz,
    hidden_from  text,
    constraint report_targets_pkey primary key (target_type, target_id)
);
