-- Accounts, sessions (refresh-token families) and request_id idempotency.

create table users (
    id            uuid primary key,
    handle        text not null,
    email         text not null,
    password_hash text not null,
    display_name  text not null,
    role          text not null default 'USER',
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    deleted_at    timestamptz,
    constraint users_role_check check (role in ('USER', 'ADMIN')),
    constraint users_handle_format_check check (handle ~ '^[a-z0-9._]{3,30}$')
);
-- Case-insensitive uniqueness; the index names are what AppError maps to reasons.
create unique index users_handle_key on users (lower(handle));
create unique index users_email_key on users (lower(email));
create index users_created_at_idx on users (created_at desc, id desc);

-- One row per login: a refresh-token family. Revoking it ends every token of the family.
create table sessions (
    id             uuid primary key,
    user_id        uuid not null references users (id) on delete cascade,
    created_at     timestamptz not null default now(),
    last_used_at   timestamptz not null default now(),
    revoked_at     timestamptz,
    revoked_reason text
);
create index sessions_user_id_idx on sessions (user_id) where revoked_at is null;

-- Refresh tokens are stored as SHA-256 of the opaque token; each is usable once.
create table refresh_tokens (
    token_hash bytea primary key,
    session_id uuid not null references sessions (id) on delete cascade,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    used_at    timestamptz
);
create index refresh_tokens_session_id_idx on refresh_tokens (session_id);
create index refresh_tokens_expires_at_idx on refresh_tokens (expires_at);

-- request_id idempotency for creates: the first result is stored and replayed.
create table idempotency_keys (
    scope       text not null,
    request_id  text not null,
    fingerprint bytea not null,
    response    jsonb,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    constraint idempotency_keys_pkey primary key (scope, request_id)
);
create index idempotency_keys_expires_at_idx on idempotency_keys (expires_at);
