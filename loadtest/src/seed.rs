//! Seeding through the API: accounts with deterministic handles and passwords (from the
//! scenario's prefix and `--seed`), so a rerun with the same seed logs the same accounts in
//! instead of creating new ones. Retryable refusals are retried after their `RetryInfo`.

use std::future::Future;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use maru::grpc::pb;
use maru::grpc::pb::auth_service_client::AuthServiceClient;
use tonic::Code;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

use crate::rpc::{Failed, bearer, request};
use crate::scenarios::Ctx;

/// A logged-in account.
#[derive(Clone)]
pub struct Account {
    pub handle: String,
    pub password: String,
    pub bearer: AsciiMetadataValue,
    /// The client address this account's calls claim through `x-forwarded-for`, if any.
    pub forwarded_for: Option<AsciiMetadataValue>,
}

/// How to seed.
pub struct Seeding<'a> {
    /// Handle prefix, `[a-z0-9._]`, at most 22 characters.
    pub prefix: &'a str,
    pub count: usize,
    /// Give every account its own `x-forwarded-for` address (see [`forwarded_ip`]).
    pub forwarded: bool,
    /// A rate-limit refusal fails the seeding at once instead of waiting it out.
    pub fail_on_rate_limit: bool,
}

pub async fn accounts(ctx: &Ctx, how: &Seeding<'_>) -> anyhow::Result<Vec<Account>> {
    let channel = ctx.channel(0)?;
    futures::stream::iter(0..how.count).map(|i| account(channel.clone(), how, i)).buffered(8).try_collect().await
}

async fn account(channel: Channel, how: &Seeding<'_>, i: usize) -> anyhow::Result<Account> {
    let client = AuthServiceClient::new(channel);
    let handle = format!("{}u{i}", how.prefix);
    let password = format!("load test {}", how.prefix);
    let forwarded_for = if how.forwarded { Some(forwarded_ip(i).parse()?) } else { None };
    let xff = forwarded_for.as_ref();
    let signup = retrying(how.fail_on_rate_limit, || {
        let mut c = client.clone();
        let msg = pb::SignUpRequest {
            handle: handle.clone(),
            email: format!("{handle}@example.com"),
            password: password.clone(),
            display_name: format!("Load {i}"),
            request_id: String::new(),
        };
        async move { c.sign_up(request(msg, None, xff)).await }
    })
    .await;
    match signup {
        // Seeded by an earlier run with the same seed: log in below.
        Ok(_) => {}
        Err(f) if f.code == Code::AlreadyExists => {}
        Err(f) => anyhow::bail!("seeding {handle}: SignUp {}: {}", f.label(), f.message),
    }
    let login = retrying(how.fail_on_rate_limit, || {
        let msg = pb::LoginRequest { login: handle.clone(), password: password.clone() };
        let mut c = client.clone();
        async move { c.login(request(msg, None, xff)).await }
    })
    .await
    .map_err(|f| anyhow::anyhow!("seeding {handle}: Login {}: {}", f.label(), f.message))?
    .into_inner();
    Ok(Account { handle, password, bearer: bearer(&login.access_token)?, forwarded_for })
}

/// A community named after `key` with `members` (account, role `MEMBER` | `MANAGER`), made
/// once per key: a rerun with the same key (the same `--seed`) finds it again. The rows are
/// written directly: granting a community its first manager needs a deployment admin, which a
/// load run does not have. Returns the community id.
pub async fn community(ctx: &Ctx, kind: &str, key: &str, members: &[(&Account, &str)]) -> anyhow::Result<String> {
    let mut db = ctx.db().await?;
    let id: String = sqlx::query_scalar(
        "insert into communities (id, kind, name, address, external_code)
         values (gen_random_uuid(), $1, $2, 'load test', $3)
         on conflict (external_code) where external_code is not null do update set updated_at = now()
         returning id::text",
    )
    .bind(kind)
    .bind(format!("load {key}"))
    .bind(format!("LOAD-{key}"))
    .fetch_one(&mut db)
    .await?;
    for (account, role) in members {
        sqlx::query(
            "insert into community_memberships (id, community_id, user_id, status, role)
             select gen_random_uuid(), $1::uuid, id, 'APPROVED', $3 from users where lower(handle) = lower($2)
             on conflict do nothing",
        )
        .bind(&id)
        .bind(&account.handle)
        .bind(role)
        .execute(&mut db)
        .await?;
    }
    Ok(id)
}

/// Refreshes the planner's statistics of `tables` after seeding: a PostgreSQL without
/// autovacuum (like this repository's CI machine) would otherwise plan the run's queries for
/// the near-empty tables it last analysed — the `feed` journey measured 80× slower list
/// queries that way.
pub async fn analyze(ctx: &Ctx, tables: &[&str]) -> anyhow::Result<()> {
    let mut db = ctx.db().await?;
    for table in tables {
        anyhow::ensure!(table.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "not a table name: {table}");
        sqlx::query(sqlx::AssertSqlSafe(format!("analyze {table}"))).execute(&mut db).await?;
    }
    Ok(())
}

/// Calls `f` until it answers something other than a retryable refusal (at most 10 times).
async fn retrying<T, F, Fut>(fail_on_rate_limit: bool, f: F) -> Result<T, Failed>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(status) => {
                let failed = Failed::from_status(&status);
                let retryable = matches!(failed.code, Code::ResourceExhausted | Code::Unavailable);
                let rate_limited = failed.code == Code::ResourceExhausted;
                if !retryable || attempt >= 10 || (rate_limited && fail_on_rate_limit) {
                    return Err(failed);
                }
                let wait = failed.retry_after.unwrap_or(Duration::from_millis(500)).min(Duration::from_secs(10));
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// A distinct client address per account for `x-forwarded-for`, from 198.18.0.0/15 (the
/// benchmarking range): only ever a header value, never a destination.
pub fn forwarded_ip(i: usize) -> String {
    format!("198.18.{}.{}", (i / 250) % 256, i % 250 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_ips_are_distinct_and_valid() {
        let ips: std::collections::HashSet<String> = (0..1000).map(forwarded_ip).collect();
        assert_eq!(ips.len(), 1000);
        assert!(ips.iter().all(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()));
    }
}
