//! `grpc-web`: the auth journey as a browser makes it, gRPC-web over HTTP/1.1: SignUp, Login,
//! WhoAmI ×3, Refresh, WhoAmI with the new token, Logout, and again with a fresh handle.
//! Every reply must be OK. Until the feed lands this is the browser journey there is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use goose::goose::{GooseUser, Scenario, TransactionResult};
use maru::grpc::pb;

use super::whoami::custom;
use super::{Entry, LoadScenario, Shape, Think, session, tx, with_think};
use crate::report::{Check, Summary};
use crate::rpc::{GRPC_WEB, fire, record};
use crate::scenarios::Ctx;
use crate::web::WebClient;

pub const ENTRY: Entry = Entry {
    name: "grpc-web",
    about: "the auth journey over gRPC-web (HTTP/1.1): SignUp, Login, WhoAmI, Refresh, Logout",
    full: Shape::new(20, 30, Think::NONE),
    smoke: Shape::new(4, 4, Think::NONE),
    build: |ctx| Box::new(Arc::new(Web { ctx, journeys: AtomicU64::new(0) })),
};

const AUTH: &str = "/maru.v1.AuthService";

struct Web {
    ctx: Arc<Ctx>,
    journeys: AtomicU64,
}

#[derive(Clone)]
struct Session {
    client: WebClient,
    done: u64,
}

impl Web {
    async fn start(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let target = self.ctx.target(user.weighted_users_index).to_owned();
        let client = WebClient::new(&target, self.ctx.request_timeout).map_err(|e| custom(format!("{e:#}")))?;
        user.set_session_data(Session { client, done: 0 });
        Ok(())
    }

    async fn journey(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let mut s = session::<Session>(user)?;
        let (c, budget) = (&s.client.clone(), &self.ctx.budget);
        let handle = format!("gw{}u{}n{}", self.ctx.tag, user.weighted_users_index, s.done);
        let password = "grpc-web password".to_owned();
        s.done += 1;
        user.set_session_data(s.clone());

        let signup = pb::SignUpRequest {
            handle: handle.clone(),
            email: format!("{handle}@example.com"),
            password: password.clone(),
            display_name: "Browser".into(),
            request_id: String::new(),
        };
        let call = c.unary::<_, pb::SignUpResponse>(&format!("{AUTH}/SignUp"), &signup, &[]);
        if record(user, budget, GRPC_WEB, "SignUp", call).await?.is_err() {
            return Ok(());
        }
        let login = pb::LoginRequest { login: handle, password };
        let call = c.unary::<_, pb::LoginResponse>(&format!("{AUTH}/Login"), &login, &[]);
        let Ok(tokens) = record(user, budget, GRPC_WEB, "Login", call).await? else { return Ok(()) };

        let mut bearer = format!("Bearer {}", tokens.access_token);
        for _ in 0..3 {
            let call = c.unary::<_, pb::WhoAmIResponse>(
                &format!("{AUTH}/WhoAmI"),
                &pb::WhoAmIRequest {},
                &[("authorization", bearer.as_str())],
            );
            fire(user, budget, GRPC_WEB, "WhoAmI", call).await?;
        }
        let refresh = pb::RefreshRequest { refresh_token: tokens.refresh_token };
        let call = c.unary::<_, pb::RefreshResponse>(&format!("{AUTH}/Refresh"), &refresh, &[]);
        let Ok(rotated) = record(user, budget, GRPC_WEB, "Refresh", call).await? else { return Ok(()) };
        bearer = format!("Bearer {}", rotated.access_token);
        let call = c.unary::<_, pb::WhoAmIResponse>(
            &format!("{AUTH}/WhoAmI"),
            &pb::WhoAmIRequest {},
            &[("authorization", bearer.as_str())],
        );
        fire(user, budget, GRPC_WEB, "WhoAmI", call).await?;
        let logout = pb::LogoutRequest { refresh_token: rotated.refresh_token };
        let call = c.unary::<_, pb::LogoutResponse>(&format!("{AUTH}/Logout"), &logout, &[]);
        if record(user, budget, GRPC_WEB, "Logout", call).await?.is_ok() {
            self.journeys.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[async_trait]
impl LoadScenario for Arc<Web> {
    async fn prepare(&self) -> anyhow::Result<Vec<Scenario>> {
        let s = Scenario::new("browsers")
            .register_transaction(tx!(self, "start", start).set_on_start())
            .register_transaction(tx!(self, "journey", journey));
        Ok(vec![with_think(s, self.ctx.think)?])
    }

    async fn verify(&self, s: &Summary) -> anyhow::Result<Vec<Check>> {
        let journeys = self.journeys.load(Ordering::Relaxed);
        let ctx: &Ctx = &self.ctx;
        let mut checks = vec![
            Check::no_internal(s),
            Check::only_codes("every reply OK", s, |_, code| code == "OK"),
            Check::new("journeys completed", journeys > 0, format!("{journeys} complete journeys")),
        ];
        if let Some(limit) = ctx.options.p99_ms.filter(|_| !ctx.smoke) {
            checks.push(Check::p99(s, "GRPC-WEB WhoAmI", limit));
        }
        Ok(checks)
    }
}
