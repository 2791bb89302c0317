-- Deleted (and suspended) accounts are few: ranking queries leave their likes and products out
-- with an anti-join on this small index instead of reading every liker's and seller's row
-- (issue 16, docs/market.md#recommendations).
create index users_deleted_idx on users (id) where deleted_at is not null;
