//! `grpc-web`: the `feed` journey as a browser makes it, gRPC-web over HTTP/1.1 (Login, then
//! ListPosts ×6, GetPost ×3, CreatePost ×1), recorded as `GRPC-WEB Name`. The same seeded
//! residents and checks as `feed`: every reply OK, one stored post per accepted CreatePost,
//! and in a full run the p99 goal per RPC.

use std::sync::Arc;

use async_trait::async_trait;
use goose::goose::Scenario;

use super::feed::{Feed, Journey, Transport};
use super::{Entry, LoadScenario, Shape, Think};
use crate::report::{Check, Summary};

pub const ENTRY: Entry = Entry {
    name: "grpc-web",
    about: "the feed journey over gRPC-web (HTTP/1.1): Login, ListPosts, GetPost, CreatePost",
    full: Shape::new(100, 30, Think::NONE),
    smoke: Shape::new(4, 4, Think::NONE),
    build: |ctx| Box::new(Web(Arc::new(Feed::new(ctx, Transport::Web, Journey::Feed)))),
};

struct Web(Arc<Feed>);

#[async_trait]
impl LoadScenario for Web {
    async fn prepare(&self) -> anyhow::Result<Vec<Scenario>> {
        self.0.prepare_journey().await
    }

    async fn verify(&self, s: &Summary) -> anyhow::Result<Vec<Check>> {
        self.0.verify_journey(s).await
    }
}
