-- Settlement notices for a Slack/Discord-compatible webhook, written in the settlement's
-- transaction (so exactly one per settled event) and delivered with retries by the job.
create table event_webhook_outbox (
    id               uuid primary key,
    -- No foreign key: a notice outlives the deletion of its event.
    event_id         uuid not null,
    payload          jsonb not null,
    attempts         integer not null default 0,
    next_attempt_at  timestamptz not null default now(),
    delivered_at     timestamptz,
    last_error       text,
    created_at       timestamptz not null default now(),
    constraint event_webhook_outbox_event_id_key unique (event_id)
);
create index event_webhook_outbox_due_idx on event_webhook_outbox (next_attempt_at) where delivered_at is null;
