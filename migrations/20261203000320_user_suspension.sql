-- SUSPEND_USER (issue 16): a suspended account is hidden exactly like a deleted one (every read
-- joins live users: `deleted_at is null`), its sessions are revoked and sign-in finds no
-- account; `suspended_at` tells a suspension from a deletion, so ReinstateUser can undo only
-- suspensions.
alter table users add column suspended_at timestamptz;
alter table users add constraint users_suspended_is_hidden_check check (suspended_at is null or deleted_at is not null);
