-- Hidden comments (issue 16): ResolveReport SUSPEND_TARGET and the auto-hide threshold on a
-- comment set `suspended_at`; a hidden comment is seen by its author and admins only, its
-- replies with it, and comment counts leave both out. DISMISS of an auto-hidden comment clears it.
alter table post_comments add column suspended_at timestamptz;
