-- Session management (issue 19): what a user sees of each signed-in device, and when the
-- session's refresh token runs out (a session whose last refresh token expired is over even
-- though nobody revoked it).
alter table sessions
    add column user_agent text not null default '',
    add column address    text not null default '',
    add column expires_at timestamptz;

update sessions s
   set expires_at = coalesce((select max(r.expires_at) from refresh_tokens r where r.session_id = s.id), s.last_used_at);

alter table sessions alter column expires_at set not null;
alter table sessions alter column expires_at set default now();

-- ListSessions and the per-user session limit: a user's live sessions, newest first.
create index sessions_user_live_idx on sessions (user_id, created_at desc, id desc) where revoked_at is null;
