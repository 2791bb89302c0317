-- Guest visits (issue 19): one-day accounts with a generated handle and no email or password.
-- A guest is role GUEST with an expiry; ConvertGuest makes it a USER (same id) and records when.
alter table users drop constraint users_role_check;
alter table users add constraint users_role_check check (role in ('USER', 'ADMIN', 'GUEST'));

alter table users
    add column guest_expires_at   timestamptz,
    add column guest_converted_at timestamptz;
alter table users add constraint users_guest_expiry_check
    check ((role = 'GUEST') = (guest_expires_at is not null));

-- Guests have no email (''): the unique index covers real addresses only. Same name, so a
-- violation still maps to EMAIL_TAKEN.
drop index users_email_key;
create unique index users_email_key on users (lower(email)) where email <> '';

-- The nightly clean-up and the active-guest gauge.
create index users_guest_expires_idx on users (guest_expires_at) where role = 'GUEST';

-- One row per nightly clean-up slot (00:00 Asia/Seoul): the replica that inserts it runs the
-- clean-up in the same transaction; the others find it and skip.
create table guest_cleanup_runs (
    slot       timestamptz primary key,
    ran_at     timestamptz not null default now(),
    deleted    bigint not null
);
