//! `signup-storm`: the football team's opening-day load. Every user signs up, logs in and
//! calls `WhoAmI`, all at once. Every fifth user reaches for one of a few shared handles; the
//! losers get ALREADY_EXISTS `HANDLE_TAKEN`, pick their own handle and carry on. After the
//! run the database must hold exactly one account per handle and one per successful SignUp,
//! and no reply may be INTERNAL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use goose::goose::{GooseUser, Scenario, TransactionResult};
use maru::grpc::pb;
use maru::grpc::pb::auth_service_client::AuthServiceClient;
use tonic::Code;

use super::whoami::custom;
use super::{Ctx, Entry, LoadScenario, RunMode, Shape, Think, tx};
use crate::report::{Check, Summary};
use crate::rpc::{GRPC, bearer, record, request};

pub const ENTRY: Entry = Entry {
    name: "signup-storm",
    about: "all users sign up, log in, WhoAmI at once; a share reuse handles → one account per handle",
    full: Shape::new(200, 120, Think::NONE),
    smoke: Shape::new(20, 60, Think::NONE),
    build: |ctx| Box::new(Arc::new(Storm::new(ctx))),
};

/// One user in this many reaches for a shared handle.
const DUP_EVERY: usize = 5;
/// Shared handles: one per this many users (at least one).
const USERS_PER_DUP_HANDLE: usize = 20;

struct Storm {
    ctx: Arc<Ctx>,
    prefix: String,
    dup_handles: usize,
    signed_up: AtomicU64,
    lost_race: AtomicU64,
    completed: AtomicU64,
    wrong_user: AtomicU64,
}

impl Storm {
    fn new(ctx: Arc<Ctx>) -> Self {
        Storm {
            prefix: format!("st{}", ctx.tag),
            dup_handles: (ctx.users / USERS_PER_DUP_HANDLE).max(1),
            ctx,
            signed_up: AtomicU64::new(0),
            lost_race: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            wrong_user: AtomicU64::new(0),
        }
    }

    fn dup_handle(&self, k: usize) -> String {
        format!("{}d{k}", self.prefix)
    }

    fn dup_users(&self) -> usize {
        self.ctx.users.div_ceil(DUP_EVERY)
    }

    async fn journey(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let i = user.weighted_users_index;
        let own = format!("{}u{i}", self.prefix);
        let password = format!("storm password {i}");
        let channel = self.ctx.channel(i).map_err(|e| custom(format!("{e:#}")))?;
        let mut client = AuthServiceClient::new(channel);
        let budget = &self.ctx.budget;
        let signup = |handle: &str| pb::SignUpRequest {
            handle: handle.to_owned(),
            email: format!("{own}@example.com"),
            password: password.clone(),
            display_name: format!("Storm {i}"),
            request_id: String::new(),
        };

        let mut handle =
            if i.is_multiple_of(DUP_EVERY) { self.dup_handle((i / DUP_EVERY) % self.dup_handles) } else { own.clone() };
        let first = client.sign_up(request(signup(&handle), None, None));
        match record(user, budget, GRPC, "SignUp", first).await? {
            Ok(_) => {
                self.signed_up.fetch_add(1, Ordering::Relaxed);
            }
            Err(f) if f.code == Code::AlreadyExists && handle != own => {
                // Taken: like a person would, pick another handle.
                self.lost_race.fetch_add(1, Ordering::Relaxed);
                handle = own.clone();
                let again = client.sign_up(request(signup(&handle), None, None));
                if record(user, budget, GRPC, "SignUp", again).await?.is_err() {
                    return Ok(());
                }
                self.signed_up.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => return Ok(()),
        }

        let login = client.login(request(pb::LoginRequest { login: handle.clone(), password }, None, None));
        let Ok(login) = record(user, budget, GRPC, "Login", login).await? else { return Ok(()) };
        let Ok(token) = bearer(&login.get_ref().access_token) else {
            return Err(custom("unusable access token".into()));
        };

        let who = client.who_am_i(request(pb::WhoAmIRequest {}, Some(&token), None));
        if let Ok(who) = record(user, budget, GRPC, "WhoAmI", who).await? {
            self.completed.fetch_add(1, Ordering::Relaxed);
            if who.get_ref().user.as_ref().map(|u| u.handle.as_str()) != Some(handle.as_str()) {
                self.wrong_user.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl LoadScenario for Arc<Storm> {
    fn mode(&self) -> RunMode {
        RunMode::OnceEach
    }

    async fn prepare(&self) -> anyhow::Result<Vec<Scenario>> {
        Ok(vec![Scenario::new("storm").register_transaction(tx!(self, "journey", journey))])
    }

    async fn verify(&self, s: &Summary) -> anyhow::Result<Vec<Check>> {
        let users = self.ctx.users as u64;
        let signed_up = self.signed_up.load(Ordering::Relaxed);
        let lost = self.lost_race.load(Ordering::Relaxed);
        let completed = self.completed.load(Ordering::Relaxed);
        let wrong = self.wrong_user.load(Ordering::Relaxed);

        let mut db = self.ctx.db().await?;
        let rows: Vec<(String, i64)> =
            sqlx::query_as("select handle, count(*) from users where handle like $1 || '%' group by handle")
                .bind(&self.prefix)
                .fetch_all(&mut db)
                .await?;
        let per_handle: BTreeMap<String, i64> = rows.into_iter().collect();
        let accounts: i64 = per_handle.values().sum();
        let dups: Vec<String> = (0..self.dup_handles).map(|k| self.dup_handle(k)).collect();
        let dup_counts: Vec<i64> = dups.iter().map(|h| per_handle.get(h).copied().unwrap_or(0)).collect();
        let expected_losers = self.dup_users().saturating_sub(self.dup_handles) as u64;

        Ok(vec![
            Check::no_internal(s),
            Check::only_codes("only OK, and ALREADY_EXISTS on SignUp", s, |rpc, code| {
                code == "OK" || (rpc.ends_with(" SignUp") && code == "ALREADY_EXISTS")
            }),
            Check::new(
                "ALREADY_EXISTS only as HANDLE_TAKEN",
                s.errors_matching("ALREADY_EXISTS") == s.errors_matching("ALREADY_EXISTS HANDLE_TAKEN"),
                format!("{} ALREADY_EXISTS", s.errors_matching("ALREADY_EXISTS")),
            ),
            Check::new(
                "exactly one account per shared handle",
                dup_counts.iter().all(|n| *n == 1),
                format!("{} shared handles, accounts each {:?}", dups.len(), dup_counts),
            ),
            Check::new(
                "every other claimant of a shared handle was refused",
                lost == expected_losers,
                format!("{lost} refused, {expected_losers} expected"),
            ),
            Check::new(
                "one account per successful SignUp, one per user",
                accounts as u64 == signed_up && signed_up == users && per_handle.values().all(|n| *n == 1),
                format!("{accounts} accounts, {signed_up} successful SignUps, {users} users"),
            ),
            Check::new(
                "every user finished the journey as themself",
                completed == users && wrong == 0,
                format!("{completed}/{users} completed, {wrong} saw another user"),
            ),
        ])
    }
}
