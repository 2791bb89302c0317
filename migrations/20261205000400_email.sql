-- Email (issue 19): an outbox delivered over SMTP, verification codes, password reset.

-- When the account proved it receives mail at its address (VerifyEmail, or ResetPassword).
alter table users add column email_verified_at timestamptz;

-- Mail to send, written in the transaction of the action that sends it and delivered by the
-- mail job of any replica (`for update skip locked`: one replica per row). The body is erased
-- once the mail is sent (it holds a code or a reset token).
create table email_outbox (
    id              uuid primary key,
    -- verification_code, password_reset (the `kind` label of the email metrics).
    kind            text not null,
    recipient       text not null,
    subject         text not null,
    body            text not null,
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    sent_at         timestamptz,
    -- Given up after `mail.max_attempts` failed deliveries.
    failed_at       timestamptz,
    last_error      text,
    created_at      timestamptz not null default now()
);
create index email_outbox_due_idx on email_outbox (next_attempt_at) where sent_at is null and failed_at is null;

-- The pending email verification code of an account (one at a time: a new code replaces the
-- old one). Only a SHA-256 of the code is stored.
create table email_verification_codes (
    user_id    uuid primary key references users (id) on delete cascade,
    code_hash  bytea not null,
    attempts   integer not null default 0,
    expires_at timestamptz not null,
    created_at timestamptz not null
);

-- Password reset tokens, stored as SHA-256; each usable once.
create table password_reset_tokens (
    token_hash bytea primary key,
    user_id    uuid not null references users (id) on delete cascade,
    expires_at timestamptz not null,
    used_at    timestamptz,
    created_at timestamptz not null
);
create index password_reset_tokens_user_id_idx on password_reset_tokens (user_id) where used_at is null;

-- Fixed-window counters of mails requested per address and per account (the key is
-- `address:<sha256 of the lower-case address>` or `account:<user id>`, never an address).
create table email_send_counts (
    key          text not null,
    window_start timestamptz not null,
    count        integer not null,
    constraint email_send_counts_pkey primary key (key, window_start)
);
