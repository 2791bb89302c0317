-- External identity providers (issue 19): OAuth2 / OpenID Connect sign-in.

-- A started external login: its `state` (stored as SHA-256), bound to the provider and the
-- redirect URI, with the PKCE verifier and the OIDC nonce kept server-side. Single use: the
-- first FinishExternalLogin deletes the row whatever the outcome.
create table external_login_states (
    state_hash    bytea primary key,
    provider      text not null,
    redirect_uri  text not null,
    pkce_verifier text not null,
    nonce         text not null,
    expires_at    timestamptz not null,
    created_at    timestamptz not null
);
create index external_login_states_expires_at_idx on external_login_states (expires_at);

-- Provider identities linked to accounts. One identity per provider per account, and a
-- provider's user belongs to one account.
create table external_identities (
    id            uuid primary key,
    user_id       uuid not null references users (id) on delete cascade,
    provider      text not null,
    subject       text not null,
    -- The provider's address for the user when linked ('' when it gave none).
    email         text not null,
    linked_at     timestamptz not null,
    last_login_at timestamptz not null,
    constraint external_identities_provider_subject_key unique (provider, subject),
    constraint external_identities_user_id_provider_key unique (user_id, provider)
);

-- What FinishExternalLogin learnt about a new identity, for CompleteRegistration
-- (kind 'register') or LinkIdentity (kind 'link', naming the account to prove). Stored as
-- SHA-256 of the ticket; single use (used_at).
create table external_tickets (
    ticket_hash        bytea primary key,
    kind               text not null,
    provider           text not null,
    subject            text not null,
    email              text not null,
    email_verified     boolean not null,
    suggested_handle   text not null,
    suggested_name     text not null,
    user_id            uuid references users (id) on delete cascade,
    attempts           integer not null default 0,
    expires_at         timestamptz not null,
    used_at            timestamptz,
    created_at         timestamptz not null,
    constraint external_tickets_kind_check check (kind in ('register', 'link')),
    constraint external_tickets_link_user_check check ((kind = 'link') = (user_id is not null))
);
create index external_tickets_expires_at_idx on external_tickets (expires_at);
