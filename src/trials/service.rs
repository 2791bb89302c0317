//! `maru.v1.TrialService`: thin handlers over [`super::ops`].

use tonic::{Request, Response, Status};

use super::convert::{revision_to_pb, run_to_pb, trial_id, trial_to_pb};
use super::model::ListTrials;
use super::ops;
use crate::grpc::{caller, maybe_caller, pb};
use crate::state::AppState;

pub struct TrialApi {
    pub state: AppState,
}

#[tonic::async_trait]
impl pb::trial_service_server::TrialService for TrialApi {
    async fn list_trials(
        &self,
        req: Request<pb::ListTrialsRequest>,
    ) -> Result<Response<pb::ListTrialsResponse>, Status> {
        maybe_caller(&req)?;
        let query = ListTrials::try_from(req.into_inner())?;
        let (trials, total, next) = ops::list_trials(&self.state, query).await?;
        Ok(Response::new(pb::ListTrialsResponse {
            trials: trials.into_iter().map(trial_to_pb).collect(),
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
            next_page_token: next,
        }))
    }

    async fn get_trial(&self, req: Request<pb::GetTrialRequest>) -> Result<Response<pb::GetTrialResponse>, Status> {
        maybe_caller(&req)?;
        let trial = ops::get_trial(&self.state, &trial_id(&req.get_ref().trial_id)?).await?;
        Ok(Response::new(pb::GetTrialResponse { trial: Some(trial_to_pb(trial)) }))
    }

    async fn list_trial_revisions(
        &self,
        req: Request<pb::ListTrialRevisionsRequest>,
    ) -> Result<Response<pb::ListTrialRevisionsResponse>, Status> {
        maybe_caller(&req)?;
        let r = req.into_inner();
        let (revisions, next) =
            ops::list_trial_revisions(&self.state, &trial_id(&r.trial_id)?, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListTrialRevisionsResponse {
            revisions: revisions.into_iter().map(revision_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn run_ingest(&self, req: Request<pb::RunIngestRequest>) -> Result<Response<pb::RunIngestResponse>, Status> {
        let caller = caller(&req)?;
        let run = ops::run_ingest(&self.state, &caller).await?;
        Ok(Response::new(pb::RunIngestResponse { run: Some(run_to_pb(run)) }))
    }

    async fn list_ingest_runs(
        &self,
        req: Request<pb::ListIngestRunsRequest>,
    ) -> Result<Response<pb::ListIngestRunsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let (runs, next) = ops::list_ingest_runs(&self.state, &caller, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListIngestRunsResponse {
            runs: runs.into_iter().map(run_to_pb).collect(),
            next_page_token: next,
        }))
    }
}
