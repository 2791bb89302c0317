//! `contention`: many clients racing one unique key. The run is cut into rounds; every user
//! sleeps until the round's start instant and then claims that round's key, so the claims land
//! together. Afterwards the database must hold exactly one row per raced key, the replies
//! must say the same (one winner where the operation is exclusive), and none may be INTERNAL.
//!
//! Races (`--race`): `signup` (one handle per round), `vote` (one member casting the round's
//! poll vote from every client at once), `like` (one member liking the round's post), `follow`
//! (one account following the round's target user) and `check-in` (one participant checking in
//! to the round's event). SignUp, CastVote and CheckIn refuse the losers with ALREADY_EXISTS;
//! Like and Follow are idempotent, so everyone gets OK and exactly one reply says
//! `created = true`. `seat` races for the last seats of a role instead of one key: each round is a
//! team whose FRONTEND role has [`SEAT_CAPACITY`] seats and one pending application per user; the
//! leader's approvals of all of them land together, and exactly the capacity must be approved,
//! every other approval FAILED_PRECONDITION `ROLE_FULL`, and team_members, the approved
//! applications and team_roles.filled must all say the capacity (the source over-filled roles:
//! it checked `current < capacity` without a lock).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use goose::goose::{GooseUser, Scenario, TransactionResult};
use maru::grpc::pb;
use maru::grpc::pb::auth_service_client::AuthServiceClient;
use maru::grpc::pb::event_service_client::EventServiceClient;
use maru::grpc::pb::feed_service_client::FeedServiceClient;
use maru::grpc::pb::poll_service_client::PollServiceClient;
use maru::grpc::pb::social_service_client::SocialServiceClient;
use maru::grpc::pb::team_service_client::TeamServiceClient;
use tokio::time::Instant;
use tonic::Code;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

use super::whoami::custom;
use super::{Ctx, Entry, LoadScenario, Shape, Think, session, tx};
use crate::report::{Check, Summary};
use crate::rpc::{Failed, GRPC, TxResult, record, request};
use crate::seed::{self, Account, Seeding};

pub const ENTRY: Entry = Entry {
    name: "contention",
    about: "all users race one unique key per round (--race signup|vote|like|follow|check-in), or the last seats of a role (--race seat); exact counts read back",
    full: Shape::new(100, 30, Think::NONE),
    smoke: Shape::new(10, 5, Think::NONE),
    build: |ctx| Box::new(Arc::new(Contention::new(ctx))),
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RaceKind {
    /// SignUp with the round's handle: one account, one OK, the rest ALREADY_EXISTS.
    Signup,
    /// One member's CastVote in the round's poll from every client: one vote row, one OK, the
    /// rest ALREADY_EXISTS `ALREADY_VOTED`.
    Vote,
    /// One member's Like of the round's post from every client: one like row; Like is
    /// idempotent, so every reply is OK and exactly one says `created = true`.
    Like,
    /// One account's Follow of the round's target user from every client: one follow row; every
    /// reply OK, exactly one with `created = true`.
    Follow,
    /// One participant's CheckIn to the round's event, at the venue, from every client: one
    /// check-in row, one OK, the rest ALREADY_EXISTS `ALREADY_CHECKED_IN`.
    CheckIn,
    /// The leader's DecideApplication(approve) of every user's application for a role with
    /// [`SEAT_CAPACITY`] seats, all at once: exactly the capacity approved, the rest
    /// FAILED_PRECONDITION `ROLE_FULL`.
    Seat,
}

/// Seats of the raced role per round (`--race seat`).
pub const SEAT_CAPACITY: i32 = 3;

/// What one claim got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Won,
    Lost,
    Other,
    /// Not sent: the request budget is spent.
    Skipped,
}

/// One kind of unique key that users race for.
#[async_trait]
pub trait Race: Send + Sync {
    /// Seeds what the race needs for `rounds` rounds (before the users start).
    async fn prepare(&self, _ctx: &Ctx, _rounds: u64) -> anyhow::Result<()> {
        Ok(())
    }
    /// The recorded RPC (`GRPC SignUp`).
    fn rpc(&self) -> &'static str;
    /// The code a loser gets (an idempotent operation would answer OK to everyone).
    fn loser_code(&self) -> &'static str;
    /// Whether exactly [`Race::winners`] claims per round may succeed.
    fn exclusive(&self) -> bool;
    /// Rows (and, where exclusive, winners) per round: 1 for a unique key.
    fn winners(&self) -> u64 {
        1
    }
    /// A further read-back check of the rows, if the race has one.
    async fn agree(&self, _ctx: &Ctx) -> anyhow::Result<Option<Check>> {
        Ok(None)
    }
    /// User `i` claims round `round`'s key.
    async fn claim(&self, ctx: &Ctx, user: &mut GooseUser, channel: Channel, i: usize, round: u64) -> TxResult<Claim>;
    /// Rows per round's key, read back from the database.
    async fn rows(&self, ctx: &Ctx) -> anyhow::Result<BTreeMap<u64, i64>>;
}

/// A claim of a race whose losers are refused with ALREADY_EXISTS (SignUp, CastVote, CheckIn).
fn refused<R>(reply: Result<R, Failed>) -> Claim {
    match reply {
        Ok(_) => Claim::Won,
        Err(f) if f.skipped => Claim::Skipped,
        Err(f) if f.code == Code::AlreadyExists => Claim::Lost,
        Err(_) => Claim::Other,
    }
}

/// A claim of an idempotent race (Like, Follow): everyone gets OK, `created` tells the winner.
fn idempotent<R>(reply: Result<R, Failed>, created: impl Fn(&R) -> bool) -> Claim {
    match reply {
        Ok(r) if created(&r) => Claim::Won,
        Ok(_) => Claim::Lost,
        Err(f) if f.skipped => Claim::Skipped,
        Err(_) => Claim::Other,
    }
}

/// The claimant and round `round`'s key of a seeded race.
fn round_key<C>(seeded: &OnceLock<(C, Vec<String>)>, round: u64) -> Option<(&C, &String)> {
    seeded.get().and_then(|(claimant, keys)| Some((claimant, keys.get(usize::try_from(round).ok()?)?)))
}

struct SignUpRace {
    prefix: String,
}

#[async_trait]
impl Race for SignUpRace {
    fn rpc(&self) -> &'static str {
        "GRPC SignUp"
    }

    fn loser_code(&self) -> &'static str {
        "ALREADY_EXISTS"
    }

    fn exclusive(&self) -> bool {
        true
    }

    async fn claim(&self, ctx: &Ctx, user: &mut GooseUser, channel: Channel, i: usize, round: u64) -> TxResult<Claim> {
        let handle = format!("{}r{round}", self.prefix);
        let msg = pb::SignUpRequest {
            email: format!("{handle}u{i}@example.com"),
            handle,
            password: "contention password".into(),
            display_name: format!("Racer {i}"),
            request_id: String::new(),
        };
        let mut client = AuthServiceClient::new(channel);
        let call = client.sign_up(request(msg, None, None));
        Ok(refused(record(user, &ctx.budget, GRPC, "SignUp", call).await?))
    }

    async fn rows(&self, ctx: &Ctx) -> anyhow::Result<BTreeMap<u64, i64>> {
        let mut db = ctx.db().await?;
        let rows: Vec<(String, i64)> =
            sqlx::query_as("select handle, count(*) from users where handle like $1 || 'r%' group by handle")
                .bind(&self.prefix)
                .fetch_all(&mut db)
                .await?;
        let prefix = format!("{}r", self.prefix);
        Ok(rows.into_iter().filter_map(|(h, n)| Some((h.strip_prefix(&prefix)?.parse().ok()?, n))).collect())
    }
}

/// The voter, their community's poll per round, and who made them.
struct VoteRace {
    prefix: String,
    voter: OnceLock<AsciiMetadataValue>,
    /// (poll id, first option id) per round.
    polls: OnceLock<Vec<(String, String)>>,
}

#[async_trait]
impl Race for VoteRace {
    /// Seeds a manager and a voter through the API, makes them members of a fresh community
    /// ([`seed::community`]), then lets the manager open one poll per round through the API.
    async fn prepare(&self, ctx: &Ctx, rounds: u64) -> anyhow::Result<()> {
        let accounts = seed::accounts(ctx, &seeding(&self.prefix, 2)).await?;
        let (manager, voter) = (&accounts[0], &accounts[1]);
        let community = seed::community(ctx, "CLUB", &self.prefix, &[(manager, "MANAGER"), (voter, "MEMBER")]).await?;
        let mut client = PollServiceClient::new(ctx.channel(0)?);
        let mut polls = Vec::new();
        for round in 0..rounds {
            let msg = pb::CreatePollRequest {
                community_id: community.clone(),
                question: format!("{} round {round}", self.prefix),
                options: vec!["yes".into(), "no".into()],
                ..Default::default()
            };
            let poll = client
                .create_poll(request(msg, Some(&manager.bearer), None))
                .await
                .map_err(|s| anyhow::anyhow!("seeding the round {round} poll: {s}"))?
                .into_inner()
                .poll
                .ok_or_else(|| anyhow::anyhow!("CreatePoll returned no poll"))?;
            let option = poll.options.first().map(|o| o.id.clone()).unwrap_or_default();
            polls.push((poll.id, option));
        }
        let _ = self.voter.set(voter.bearer.clone());
        let _ = self.polls.set(polls);
        Ok(())
    }

    fn rpc(&self) -> &'static str {
        "GRPC CastVote"
    }

    fn loser_code(&self) -> &'static str {
        "ALREADY_EXISTS"
    }

    fn exclusive(&self) -> bool {
        true
    }

    async fn claim(&self, ctx: &Ctx, user: &mut GooseUser, channel: Channel, _i: usize, round: u64) -> TxResult<Claim> {
        let (Some(voter), Some((poll_id, option_id))) =
            (self.voter.get(), self.polls.get().and_then(|p| p.get(round as usize)))
        else {
            return Ok(Claim::Other);
        };
        let msg = pb::CastVoteRequest { poll_id: poll_id.clone(), option_id: option_id.clone(), ..Default::default() };
        let mut client = PollServiceClient::new(channel);
        let call = client.cast_vote(request(msg, Some(voter), None));
        Ok(refused(record(user, &ctx.budget, GRPC, "CastVote", call).await?))
    }

    async fn rows(&self, ctx: &Ctx) -> anyhow::Result<BTreeMap<u64, i64>> {
        let ids: Vec<String> =
            self.polls.get().map(|p| p.iter().map(|(id, _)| id.clone()).collect()).unwrap_or_default();
        let mut db = ctx.db().await?;
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "select poll_id::text, count(*) from community_poll_votes
              where poll_id = any($1::text[]::uuid[]) group by poll_id",
        )
        .bind(&ids)
        .fetch_all(&mut db)
        .await?;
        Ok(per_round(&ids, &counts))
    }
}

/// Rows per round, where round `r` raced `keys[r]` and `counts` holds (key, rows) read back;
/// a key without rows is left out (the check reports it as 0).
fn per_round(keys: &[String], counts: &[(String, i64)]) -> BTreeMap<u64, i64> {
    keys.iter()
        .enumerate()
        .filter_map(|(round, key)| counts.iter().find(|(k, _)| k == key).map(|(_, n)| (round as u64, *n)))
        .collect()
}

/// `count` accounts named after `prefix`, all from the loopback address; a rate limit is waited
/// out rather than failing the seeding.
fn seeding(prefix: &str, count: usize) -> Seeding<'_> {
    Seeding { prefix, count, forwarded: false, fail_on_rate_limit: false }
}

/// The liker's bearer and the round's post ids.
struct LikeRace {
    prefix: String,
    seeded: OnceLock<(AsciiMetadataValue, Vec<String>)>,
}

#[async_trait]
impl Race for LikeRace {
    /// Seeds an author and a liker through the API, makes both members of a fresh club
    /// ([`seed::community`]: community posts are seen by members only), then lets the author
    /// write one post per round through the API. The liker is not the author, as in real use.
    async fn prepare(&self, ctx: &Ctx, rounds: u64) -> anyhow::Result<()> {
        let accounts = seed::accounts(ctx, &seeding(&self.prefix, 2)).await?;
        let (author, liker) = (&accounts[0], &accounts[1]);
        let community = seed::community(ctx, "CLUB", &self.prefix, &[(author, "MEMBER"), (liker, "MEMBER")]).await?;
        let mut client = FeedServiceClient::new(ctx.channel(0)?);
        let mut posts = Vec::new();
        for round in 0..rounds {
            let msg = pb::CreatePostRequest {
                community_id: community.clone(),
                text: format!("{} round {round}", self.prefix),
                ..Default::default()
            };
            let post = client
                .create_post(request(msg, Some(&author.bearer), None))
                .await
                .map_err(|s| anyhow::anyhow!("seeding the round {round} post: {s}"))?
                .into_inner()
                .post
                .ok_or_else(|| anyhow::anyhow!("CreatePost returned no post"))?;
            posts.push(post.id);
        }
        let _ = self.seeded.set((liker.bearer.clone(), posts));
        Ok(())
    }

    fn rpc(&self) -> &'static str {
        "GRPC Like"
    }

    /// Liking again is OK with `created = false`, not a refusal.
    fn loser_code(&self) -> &'static str {
        "OK"
    }

    /// One like row per user and post: exactly one reply may say `created`.
    fn exclusive(&self) -> bool {
        true
    }

    async fn claim(&self, ctx: &Ctx, user: &mut GooseUser, channel: Channel, _i: usize, round: u64) -> TxResult<Claim> {
        let Some((liker, post_id)) = round_key(&self.seeded, round) else {
            return Ok(Claim::Other);
        };
        let msg = pb::LikeRequest { post_id: post_id.clone(), comment_id: String::new(), ..Default::default() };
        let mut client = FeedServiceClient::new(channel);
        let call = client.like(request(msg, Some(liker), None));
        Ok(idempotent(record(user, &ctx.budget, GRPC, "Like", call).await?, |r| r.get_ref().created))
    }

    async fn rows(&self, ctx: &Ctx) -> anyhow::Result<BTreeMap<u64, i64>> {
        let ids: Vec<String> = self.seeded.get().map(|(_, posts)| posts.clone()).unwrap_or_default();
        let mut db = ctx.db().await?;
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "select post_id::text, count(*) from post_likes
              where post_id = any($1::text[]::uuid[]) group by post_id",
        )
        .bind(&ids)
        .fetch_all(&mut db)
        .await?;
        Ok(per_round(&ids, &counts))
    }
}

/// The follower and the round's target handles.
struct FollowRace {
    prefix: String,
    seeded: OnceLock<(Account, Vec<String>)>,
}

#[async_trait]
impl Race for FollowRace {
    /// Seeds the follower and one target account per round through the API: a fresh target per
    /// round, so every round starts with no follow row. Each account costs two argon2 hashes
    /// (SignUp, Login), so seeding grows with the rounds: 10 accounts for a 30 s run.
    async fn prepare(&self, ctx: &Ctx, rounds: u64) -> anyhow::Result<()> {
        let count = usize::try_from(rounds)?.saturating_add(1);
        let mut accounts = seed::accounts(ctx, &seeding(&self.prefix, count)).await?.into_iter();
        let follower = accounts.next().ok_or_else(|| anyhow::anyhow!("seeding returned no follower"))?;
        let targets = accounts.map(|a| a.handle).collect();
        let _ = self.seeded.set((follower, targets));
        Ok(())
    }

    fn rpc(&self) -> &'static str {
        "GRPC Follow"
    }

    /// Following again is OK with `created = false`, not a refusal.
    fn loser_code(&self) -> &'static str {
        "OK"
    }

    /// One follow row per pair: exactly one reply may say `created`.
    fn exclusive(&self) -> bool {
        true
    }

    async fn claim(&self, ctx: &Ctx, user: &mut GooseUser, channel: Channel, _i: usize, round: u64) -> TxResult<Claim> {
        let Some((follower, target)) = round_key(&self.seeded, round) else {
            return Ok(Claim::Other);
        };
        let msg = pb::FollowRequest { handle: target.clone(), ..Default::default() };
        let mut client = SocialServiceClient::new(channel);
        let call = client.follow(request(msg, Some(&follower.bearer), None));
        Ok(idempotent(record(user, &ctx.budget, GRPC, "Follow", call).await?, |r| r.get_ref().created))
    }

    async fn rows(&self, ctx: &Ctx) -> anyhow::Result<BTreeMap<u64, i64>> {
        let Some((follower, targets)) = self.seeded.get() else {
            return Ok(BTreeMap::new());
        };
        // Handles compare case-insensitively (as seeding looks them up).
        let targets: Vec<String> = targets.iter().map(|h| h.to_lowercase()).collect();
        let mut db = ctx.db().await?;
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "select lower(t.handle), count(*) from follows f
               join users a on a.id = f.follower_id
               join users t on t.id = f.followee_id
              where lower(a.handle) = lower($1) and lower(t.handle) = any($2)
              group by lower(t.handle)",
        )
        .bind(&follower.handle)
        .bind(&targets)
        .fetch_all(&mut db)
        .await?;
        Ok(per_round(&targets, &counts))
    }
}

/// Where the check-in events take place (Seoul City Hall); the participant checks in right
/// there, so the distance is 0 m whatever `events.check_in_radius_m` is.
const VENUE: (f64, f64) = (37.5665, 126.978);

/// The participant's bearer and the round's event ids.
struct CheckInRace {
    prefix: String,
    seeded: OnceLock<(AsciiMetadataValue, Vec<String>)>,
}

#[async_trait]
impl Race for CheckInRace {
    /// Seeds a manager and a participant through the API, makes them MANAGER and MEMBER of a
    /// fresh sports club ([`seed::community`]; events belong to sports clubs only), then lets
    /// the manager create one event per round at [`VENUE`] (explicit coordinates: no geocoder)
    /// and add the participant to it: CheckIn refuses non-participants (`NOT_PARTICIPANT`).
    async fn prepare(&self, ctx: &Ctx, rounds: u64) -> anyhow::Result<()> {
        let accounts = seed::accounts(ctx, &seeding(&self.prefix, 2)).await?;
        let (manager, participant) = (&accounts[0], &accounts[1]);
        let members = [(manager, "MANAGER"), (participant, "MEMBER")];
        let community = seed::community(ctx, "SPORTS_CLUB", &self.prefix, &members).await?;
        let channel = ctx.channel(0)?;
        // AddParticipant takes a user id; the seeded account only knows its handle.
        let participant_id = AuthServiceClient::new(channel.clone())
            .who_am_i(request(pb::WhoAmIRequest {}, Some(&participant.bearer), None))
            .await
            .map_err(|s| anyhow::anyhow!("seeding the participant: WhoAmI: {s}"))?
            .into_inner()
            .user
            .ok_or_else(|| anyhow::anyhow!("WhoAmI returned no user"))?
            .id;
        // Starting in 5 minutes: check-in opens `events.check_in_opens_min` (default 60) before
        // the start, so every round's check-in falls inside the window and is ATTEND, well
        // before the end (and settlement).
        let starts_at = SystemTime::now() + Duration::from_secs(5 * 60);
        let ends_at = starts_at + Duration::from_secs(2 * 3600);
        let mut client = EventServiceClient::new(channel);
        let mut events = Vec::new();
        for round in 0..rounds {
            let msg = pb::CreateEventRequest {
                community_id: community.clone(),
                title: format!("{} round {round}", self.prefix),
                address: "load test venue".into(),
                gender_category: pb::GenderCategory::All as i32,
                starts_at: Some(starts_at.into()),
                ends_at: Some(ends_at.into()),
                latitude: Some(VENUE.0),
                longitude: Some(VENUE.1),
                ..Default::default()
            };
            let event = client
                .create_event(request(msg, Some(&manager.bearer), None))
                .await
                .map_err(|s| anyhow::anyhow!("seeding the round {round} event: {s}"))?
                .into_inner()
                .event
                .ok_or_else(|| anyhow::anyhow!("CreateEvent returned no event"))?;
            let msg = pb::AddParticipantRequest {
                event_id: event.id.clone(),
                user_id: participant_id.clone(),
                ..Default::default()
            };
            client
                .add_participant(request(msg, Some(&manager.bearer), None))
                .await
                .map_err(|s| anyhow::anyhow!("seeding the round {round} participant: {s}"))?;
            events.push(event.id);
        }
        let _ = self.seeded.set((participant.bearer.clone(), events));
        Ok(())
    }

    fn rpc(&self) -> &'static str {
        "GRPC CheckIn"
    }

    /// A repeat check-in is refused, not answered with the existing attendance: a participant
    /// already checked in gets ALREADY_EXISTS `ALREADY_CHECKED_IN`, and so does the loser of a
    /// concurrent check-in (the unique key `event_check_ins_event_id_user_id_key` maps to it).
    fn loser_code(&self) -> &'static str {
        "ALREADY_EXISTS"
    }

    fn exclusive(&self) -> bool {
        true
    }

    async fn claim(&self, ctx: &Ctx, user: &mut GooseUser, channel: Channel, _i: usize, round: u64) -> TxResult<Claim> {
        let Some((participant, event_id)) = round_key(&self.seeded, round) else {
            return Ok(Claim::Other);
        };
        let msg = pb::CheckInRequest {
            event_id: event_id.clone(),
            latitude: VENUE.0,
            longitude: VENUE.1,
            ..Default::default()
        };
        let mut client = EventServiceClient::new(channel);
        let call = client.check_in(request(msg, Some(participant), None));
        Ok(refused(record(user, &ctx.budget, GRPC, "CheckIn", call).await?))
    }

    async fn rows(&self, ctx: &Ctx) -> anyhow::Result<BTreeMap<u64, i64>> {
        let ids: Vec<String> = self.seeded.get().map(|(_, events)| events.clone()).unwrap_or_default();
        let mut db = ctx.db().await?;
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "select event_id::text, count(*) from event_check_ins
              where event_id = any($1::text[]::uuid[]) group by event_id",
        )
        .bind(&ids)
        .fetch_all(&mut db)
        .await?;
        Ok(per_round(&ids, &counts))
    }
}

/// One round of the seat race: the team and its applications (one per user).
type SeatRound = (String, Vec<String>);

/// The leader's bearer and the rounds.
struct SeatRace {
    prefix: String,
    seeded: OnceLock<(AsciiMetadataValue, Vec<SeatRound>)>,
}

#[async_trait]
impl Race for SeatRace {
    /// Seeds a manager, a leader and one applicant per user through the API, makes them members
    /// of a fresh club ([`seed::community`]), then per round: the leader proposes a team (BACKEND
    /// 1 for themself, FRONTEND [`SEAT_CAPACITY`]), the manager approves it and every applicant
    /// applies for FRONTEND — all through the API, so the race starts from what the RPCs made.
    async fn prepare(&self, ctx: &Ctx, rounds: u64) -> anyhow::Result<()> {
        let applicants = ctx.users.max(2);
        let accounts = seed::accounts(ctx, &seeding(&self.prefix, applicants + 2)).await?;
        let (manager, leader, applicants) = (&accounts[0], &accounts[1], &accounts[2..]);
        let mut members = vec![(manager, "MANAGER"), (leader, "MEMBER")];
        members.extend(applicants.iter().map(|a| (a, "MEMBER")));
        let club = seed::community(ctx, "CLUB", &self.prefix, &members).await?;
        let teams = TeamServiceClient::new(ctx.channel(0)?);
        let mut seeded = Vec::new();
        for round in 0..rounds {
            let msg = pb::ProposeTeamRequest {
                community_id: club.clone(),
                title: format!("{} round {round}", self.prefix),
                genre: pb::TeamGenre::Web as i32,
                roles: vec![
                    pb::RoleSeats { role: pb::TeamRole::Backend as i32, capacity: 1, filled: 0 },
                    pb::RoleSeats { role: pb::TeamRole::Frontend as i32, capacity: SEAT_CAPACITY, filled: 0 },
                ],
                leader_role: pb::TeamRole::Backend as i32,
                ..Default::default()
            };
            let team = teams
                .clone()
                .propose_team(request(msg, Some(&leader.bearer), None))
                .await
                .map_err(|s| anyhow::anyhow!("seeding the round {round} team: {s}"))?
                .into_inner()
                .team
                .ok_or_else(|| anyhow::anyhow!("ProposeTeam returned no team"))?;
            let approve = pb::ApproveTeamRequest { team_id: team.id.clone(), note: String::new() };
            teams
                .clone()
                .approve_team(request(approve, Some(&manager.bearer), None))
                .await
                .map_err(|s| anyhow::anyhow!("approving the round {round} team: {s}"))?;
            let team_id = &team.id;
            let bearers: Vec<AsciiMetadataValue> = applicants.iter().map(|a| a.bearer.clone()).collect();
            let applications: Vec<String> = futures::stream::iter(bearers)
                .map(|bearer| {
                    let mut client = teams.clone();
                    let team_id = team_id.clone();
                    let msg = pb::ApplyRequest { team_id, role: pb::TeamRole::Frontend as i32, ..Default::default() };
                    async move {
                        let reply = client.apply(request(msg, Some(&bearer), None)).await;
                        let reply =
                            reply.map_err(|s| anyhow::anyhow!("seeding an application in round {round}: {s}"))?;
                        reply.into_inner().application.map(|a| a.id).context("Apply returned no application")
                    }
                })
                .buffered(8)
                .try_collect()
                .await?;
            seeded.push((team.id, applications));
        }
        let _ = self.seeded.set((leader.bearer.clone(), seeded));
        Ok(())
    }

    fn rpc(&self) -> &'static str {
        "GRPC DecideApplication"
    }

    fn loser_code(&self) -> &'static str {
        "FAILED_PRECONDITION"
    }

    fn exclusive(&self) -> bool {
        true
    }

    fn winners(&self) -> u64 {
        SEAT_CAPACITY as u64
    }

    async fn claim(&self, ctx: &Ctx, user: &mut GooseUser, channel: Channel, i: usize, round: u64) -> TxResult<Claim> {
        let seeded =
            self.seeded.get().and_then(|(leader, rounds)| Some((leader, rounds.get(usize::try_from(round).ok()?)?)));
        let Some((leader, (_, applications))) = seeded else {
            return Ok(Claim::Other);
        };
        let Some(application_id) = applications.get(i % applications.len().max(1)) else {
            return Ok(Claim::Other);
        };
        let msg =
            pb::DecideApplicationRequest { application_id: application_id.clone(), approve: true, note: String::new() };
        let mut client = TeamServiceClient::new(channel);
        let call = client.decide_application(request(msg, Some(leader), None));
        Ok(match record(user, &ctx.budget, GRPC, "DecideApplication", call).await? {
            Ok(_) => Claim::Won,
            Err(f) if f.skipped => Claim::Skipped,
            Err(f) if f.code == Code::FailedPrecondition && f.reason == "ROLE_FULL" => Claim::Lost,
            Err(_) => Claim::Other,
        })
    }

    /// FRONTEND members per round's team.
    async fn rows(&self, ctx: &Ctx) -> anyhow::Result<BTreeMap<u64, i64>> {
        let ids: Vec<String> = self.teams();
        let mut db = ctx.db().await?;
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "select team_id::text, count(*) from team_members
              where team_id = any($1::text[]::uuid[]) and role = 'FRONTEND' group by team_id",
        )
        .bind(&ids)
        .fetch_all(&mut db)
        .await?;
        Ok(per_round(&ids, &counts))
    }

    /// The seated members, the approved applications and the role's `filled` agree per team.
    async fn agree(&self, ctx: &Ctx) -> anyhow::Result<Option<Check>> {
        let ids: Vec<String> = self.teams();
        let mut db = ctx.db().await?;
        let rows: Vec<(String, i64, i64, i32)> = sqlx::query_as(
            "select r.team_id::text,
                    (select count(*) from team_members m where m.team_id = r.team_id and m.role = r.role),
                    (select count(*) from team_applications a
                      where a.team_id = r.team_id and a.role = r.role and a.state = 'APPROVED'),
                    r.filled
               from team_roles r where r.team_id = any($1::text[]::uuid[]) and r.role = 'FRONTEND'",
        )
        .bind(&ids)
        .fetch_all(&mut db)
        .await?;
        let bad: Vec<String> = rows
            .iter()
            .filter(|(_, members, approved, filled)| *members != *approved || *members != i64::from(*filled))
            .map(|(id, m, a, f)| format!("team {id}: {m} members, {a} approved, filled {f}"))
            .collect();
        Ok(Some(Check::new(
            "members, approved applications and filled seats agree",
            bad.is_empty() && rows.len() == ids.len(),
            if bad.is_empty() { format!("{} teams", rows.len()) } else { bad.join("; ") },
        )))
    }
}

impl SeatRace {
    fn teams(&self) -> Vec<String> {
        self.seeded.get().map(|(_, rounds)| rounds.iter().map(|(t, _)| t.clone()).collect()).unwrap_or_default()
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    claims: u64,
    won: u64,
    lost: u64,
    other: u64,
}

struct Contention {
    ctx: Arc<Ctx>,
    race: Box<dyn Race>,
    period: Duration,
    rounds: u64,
    /// When round 0 starts: set by the first user to start, a moment ahead so all are up.
    t0: OnceLock<Instant>,
    tally: Mutex<BTreeMap<u64, Tally>>,
}

#[derive(Clone)]
struct Session {
    channel: Channel,
    next_round: u64,
}

impl Contention {
    fn new(ctx: Arc<Ctx>) -> Self {
        let race: Box<dyn Race> = match ctx.options.race {
            RaceKind::Signup => Box::new(SignUpRace { prefix: format!("ct{}", ctx.tag) }),
            RaceKind::Vote => {
                Box::new(VoteRace { prefix: format!("cv{}", ctx.tag), voter: OnceLock::new(), polls: OnceLock::new() })
            }
            RaceKind::Like => Box::new(LikeRace { prefix: format!("cl{}", ctx.tag), seeded: OnceLock::new() }),
            RaceKind::Follow => Box::new(FollowRace { prefix: format!("cf{}", ctx.tag), seeded: OnceLock::new() }),
            RaceKind::CheckIn => Box::new(CheckInRace { prefix: format!("cc{}", ctx.tag), seeded: OnceLock::new() }),
            RaceKind::Seat => Box::new(SeatRace { prefix: format!("cs{}", ctx.tag), seeded: OnceLock::new() }),
        };
        // A round must leave time for every claim: a SignUp race hashes once per claimant.
        let period = if ctx.smoke { Duration::from_secs(1) } else { Duration::from_secs(3) };
        let usable = ctx.duration.saturating_sub(START_DELAY);
        let rounds = (usable.as_millis() / period.as_millis()).max(1) as u64;
        Contention { ctx, race, period, rounds, t0: OnceLock::new(), tally: Mutex::new(BTreeMap::new()) }
    }

    async fn start(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let channel = self.ctx.channel(user.weighted_users_index).map_err(|e| custom(format!("{e:#}")))?;
        user.set_session_data(Session { channel, next_round: 0 });
        Ok(())
    }

    async fn claim(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let mut s = session::<Session>(user)?;
        let t0 = *self.t0.get_or_init(|| Instant::now() + START_DELAY);
        // The next round that has not started yet: a late user waits rather than trickles in.
        let since = Instant::now().saturating_duration_since(t0);
        let due = since.as_millis().div_ceil(self.period.as_millis()) as u64;
        let round = due.max(s.next_round);
        if round >= self.rounds {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(());
        }
        tokio::time::sleep_until(t0 + self.period * round as u32).await;
        let i = user.weighted_users_index;
        let claim = self.race.claim(&self.ctx, user, s.channel.clone(), i, round).await?;
        if claim != Claim::Skipped
            && let Ok(mut tally) = self.tally.lock()
        {
            let t = tally.entry(round).or_default();
            t.claims += 1;
            match claim {
                Claim::Won => t.won += 1,
                Claim::Lost => t.lost += 1,
                Claim::Other | Claim::Skipped => t.other += 1,
            }
        }
        s.next_round = round + 1;
        user.set_session_data(s);
        Ok(())
    }
}

const START_DELAY: Duration = Duration::from_millis(1500);

#[async_trait]
impl LoadScenario for Arc<Contention> {
    async fn prepare(&self) -> anyhow::Result<Vec<Scenario>> {
        self.race.prepare(&self.ctx, self.rounds).await?;
        Ok(vec![
            Scenario::new("racers")
                .register_transaction(tx!(self, "start", start).set_on_start())
                .register_transaction(tx!(self, "claim", claim)),
        ])
    }

    async fn verify(&self, s: &Summary) -> anyhow::Result<Vec<Check>> {
        let tally = self.tally.lock().map(|t| t.clone()).unwrap_or_default();
        let rows = self.race.rows(&self.ctx).await?;
        let raced: Vec<u64> = tally.keys().copied().collect();
        let want = self.race.winners();
        let wrong_rows: Vec<String> = raced
            .iter()
            .map(|r| (r, rows.get(r).copied().unwrap_or(0)))
            .filter(|(_, n)| *n != want as i64)
            .map(|(r, n)| format!("round {r}: {n} rows"))
            .chain(rows.keys().filter(|r| !tally.contains_key(r)).map(|r| format!("round {r}: rows but no claim")))
            .collect();
        let winners: Vec<u64> = tally.values().map(|t| t.won).collect();
        // Totals over the rounds: for an idempotent race (every reply OK) the only place that
        // tells winners from losers.
        let total = tally.values().fold(Tally::default(), |a, t| Tally {
            claims: a.claims + t.claims,
            won: a.won + t.won,
            lost: a.lost + t.lost,
            other: a.other + t.other,
        });
        let max_claims = tally.values().map(|t| t.claims).max().unwrap_or(0);
        let (rpc, loser) = (self.race.rpc(), self.race.loser_code());
        let mut checks = vec![
            Check::no_internal(s),
            Check::only_codes("only OK and the loser's code", s, |r, code| code == "OK" || (r == rpc && code == loser)),
            Check::new(
                "rounds raced with real contention",
                !raced.is_empty() && max_claims >= 2,
                format!("{} of {} rounds raced, up to {max_claims} claims per round", raced.len(), self.rounds),
            ),
            Check::new(
                if want == 1 {
                    "exactly one row per raced key".to_owned()
                } else {
                    format!("exactly {want} rows per raced key")
                },
                wrong_rows.is_empty(),
                if wrong_rows.is_empty() { format!("{} keys", raced.len()) } else { wrong_rows.join("; ") },
            ),
        ];
        if self.race.exclusive() {
            checks.push(Check::new(
                if want == 1 {
                    "exactly one winner per round".to_owned()
                } else {
                    format!("exactly {want} winners per round")
                },
                winners.iter().all(|w| *w == want),
                format!(
                    "winners per round {winners:?}; {} claims: {} won, {} lost, {} other",
                    total.claims, total.won, total.lost, total.other
                ),
            ));
        }
        checks.extend(self.race.agree(&self.ctx).await?);
        Ok(checks)
    }
}
