//! `maru.v1.ReportService`: thin handlers over [`super::ops`].

use tonic::{Request, Response, Status};

use super::convert::{action_to_pb_msg, reinstatement, report_to_pb, reported_target_to_pb, stats_since, stats_to_pb};
use super::model::{CreateReport, ReportFilter, ResolveReport};
use super::ops;
use crate::grpc::{caller, pb};
use crate::state::AppState;

pub struct ReportApi {
    pub state: AppState,
}

#[tonic::async_trait]
impl pb::report_service_server::ReportService for ReportApi {
    async fn create_report(
        &self,
        req: Request<pb::CreateReportRequest>,
    ) -> Result<Response<pb::CreateReportResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = CreateReport::try_from(req.into_inner())?;
        let r = ops::create_report(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::CreateReportResponse { report: Some(report_to_pb(r)) }))
    }

    async fn list_reports(
        &self,
        req: Request<pb::ListReportsRequest>,
    ) -> Result<Response<pb::ListReportsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let filter = ReportFilter::try_from(&r)?;
        let (rows, next) = ops::list_reports(&self.state, &caller, filter, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListReportsResponse {
            targets: rows.into_iter().map(|(t, reports)| reported_target_to_pb(t, reports)).collect(),
            next_page_token: next,
        }))
    }

    async fn resolve_report(
        &self,
        req: Request<pb::ResolveReportRequest>,
    ) -> Result<Response<pb::ResolveReportResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = ResolveReport::try_from(req.into_inner())?;
        let a = ops::resolve_report(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::ResolveReportResponse { action: Some(action_to_pb_msg(a)) }))
    }

    async fn reinstate_user(
        &self,
        req: Request<pb::ReinstateUserRequest>,
    ) -> Result<Response<pb::ReinstateUserResponse>, Status> {
        let caller = caller(&req)?;
        let (handle, note) = reinstatement(req.get_ref())?;
        let a = ops::reinstate_user(&self.state, &caller, &handle, &note).await?;
        Ok(Response::new(pb::ReinstateUserResponse { action: Some(action_to_pb_msg(a)) }))
    }

    async fn get_report_stats(
        &self,
        req: Request<pb::GetReportStatsRequest>,
    ) -> Result<Response<pb::GetReportStatsResponse>, Status> {
        let caller = caller(&req)?;
        let since = stats_since(req.get_ref())?;
        Ok(Response::new(stats_to_pb(ops::get_report_stats(&self.state, &caller, since).await?)))
    }

    async fn list_moderation_actions(
        &self,
        req: Request<pb::ListModerationActionsRequest>,
    ) -> Result<Response<pb::ListModerationActionsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let (rows, next) = ops::list_moderation_actions(&self.state, &caller, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListModerationActionsResponse {
            actions: rows.into_iter().map(action_to_pb_msg).collect(),
            next_page_token: next,
        }))
    }
}
