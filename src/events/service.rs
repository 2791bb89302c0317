//! `maru.v1.EventService`: thin handlers over [`super::ops`]. Each: caller (UNAUTHENTICATED
//! without one), request → command (every bad field reported), use case, result → message.

use tonic::{Request, Response, Status};

use super::convert::{self, attendance_to_pb, event_user, fee_to_pb};
use super::model::{CheckIn, CreateEvent, ListEvents, UpdateEvent};
use super::ops;
use crate::fields::{request_id_field, required_id};
use crate::grpc::{caller, pb};
use crate::state::AppState;

pub struct EventApi {
    pub state: AppState,
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::event_service_server::EventService for EventApi {
    async fn create_event(&self, req: Request<pb::CreateEventRequest>) -> Reply<pb::CreateEventResponse> {
        let caller = caller(&req)?;
        let cmd = CreateEvent::try_from(req.into_inner())?;
        let event = ops::create_event(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::CreateEventResponse { event: Some(event.into()) }))
    }

    async fn update_event(&self, req: Request<pb::UpdateEventRequest>) -> Reply<pb::UpdateEventResponse> {
        let caller = caller(&req)?;
        let cmd = UpdateEvent::try_from(req.into_inner())?;
        let event = ops::update_event(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::UpdateEventResponse { event: Some(event.into()) }))
    }

    async fn delete_event(&self, req: Request<pb::DeleteEventRequest>) -> Reply<pb::DeleteEventResponse> {
        let caller = caller(&req)?;
        let id = required_id("event_id", &req.get_ref().event_id)?;
        ops::delete_event(&self.state, &caller, id).await?;
        Ok(Response::new(pb::DeleteEventResponse {}))
    }

    async fn get_event(&self, req: Request<pb::GetEventRequest>) -> Reply<pb::GetEventResponse> {
        let caller = caller(&req)?;
        let id = required_id("event_id", &req.get_ref().event_id)?;
        let event = ops::get_event(&self.state, &caller, id).await?;
        Ok(Response::new(pb::GetEventResponse { event: Some(event.into()) }))
    }

    async fn list_events(&self, req: Request<pb::ListEventsRequest>) -> Reply<pb::ListEventsResponse> {
        let caller = caller(&req)?;
        let q = ListEvents::try_from(req.into_inner())?;
        let (rows, next) = ops::list_events(&self.state, &caller, q).await?;
        Ok(Response::new(pb::ListEventsResponse {
            events: rows.into_iter().map(Into::into).collect(),
            next_page_token: next,
        }))
    }

    async fn add_participant(&self, req: Request<pb::AddParticipantRequest>) -> Reply<pb::AddParticipantResponse> {
        let caller = caller(&req)?;
        let rid = request_id_field(&req.get_ref().request_id)?;
        let cmd = event_user(&req.get_ref().event_id, &req.get_ref().user_id)?;
        let p = ops::add_participant(&self.state, &caller, cmd, rid.as_ref()).await?;
        Ok(Response::new(pb::AddParticipantResponse { participant: Some(p.into()) }))
    }

    async fn remove_participant(
        &self,
        req: Request<pb::RemoveParticipantRequest>,
    ) -> Reply<pb::RemoveParticipantResponse> {
        let caller = caller(&req)?;
        let cmd = event_user(&req.get_ref().event_id, &req.get_ref().user_id)?;
        ops::remove_participant(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::RemoveParticipantResponse {}))
    }

    async fn list_participants(
        &self,
        req: Request<pb::ListParticipantsRequest>,
    ) -> Reply<pb::ListParticipantsResponse> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let id = required_id("event_id", &r.event_id)?;
        let (rows, next) = ops::list_participants(&self.state, &caller, id, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListParticipantsResponse {
            participants: rows.into_iter().map(Into::into).collect(),
            next_page_token: next,
        }))
    }

    async fn list_non_participants(
        &self,
        req: Request<pb::ListNonParticipantsRequest>,
    ) -> Reply<pb::ListNonParticipantsResponse> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let id = required_id("event_id", &r.event_id)?;
        let (rows, next) = ops::list_non_participants(&self.state, &caller, id, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListNonParticipantsResponse {
            members: rows.into_iter().map(Into::into).collect(),
            next_page_token: next,
        }))
    }

    async fn set_member_gender(&self, req: Request<pb::SetMemberGenderRequest>) -> Reply<pb::SetMemberGenderResponse> {
        let caller = caller(&req)?;
        let (community, user, gender) = convert::member_gender(req.get_ref())?;
        ops::set_member_gender(&self.state, &caller, community, user, gender).await?;
        Ok(Response::new(pb::SetMemberGenderResponse {}))
    }

    async fn check_in(&self, req: Request<pb::CheckInRequest>) -> Reply<pb::CheckInResponse> {
        let caller = caller(&req)?;
        let cmd = CheckIn::try_from(req.into_inner())?;
        let (attendance, distance_m) = ops::check_in(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::CheckInResponse { attendance: attendance_to_pb(attendance) as i32, distance_m }))
    }

    async fn force_attend(&self, req: Request<pb::ForceAttendRequest>) -> Reply<pb::ForceAttendResponse> {
        let caller = caller(&req)?;
        let cmd = event_user(&req.get_ref().event_id, &req.get_ref().user_id)?;
        let p = ops::force_attend(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::ForceAttendResponse { participant: Some(p.into()) }))
    }

    async fn report_fee_paid(&self, req: Request<pb::ReportFeePaidRequest>) -> Reply<pb::ReportFeePaidResponse> {
        let caller = caller(&req)?;
        let rid = request_id_field(&req.get_ref().request_id)?;
        let id = required_id("event_id", &req.get_ref().event_id)?;
        let s = ops::report_fee_paid(&self.state, &caller, id, rid.as_ref()).await?;
        Ok(Response::new(pb::ReportFeePaidResponse { fee_status: fee_to_pb(s) as i32 }))
    }

    async fn list_pending_fees(&self, req: Request<pb::ListPendingFeesRequest>) -> Reply<pb::ListPendingFeesResponse> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let id = required_id("community_id", &r.community_id)?;
        let (rows, next) = ops::list_pending_fees(&self.state, &caller, id, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListPendingFeesResponse {
            fees: rows.into_iter().map(Into::into).collect(),
            next_page_token: next,
        }))
    }

    async fn confirm_fee(&self, req: Request<pb::ConfirmFeeRequest>) -> Reply<pb::ConfirmFeeResponse> {
        let caller = caller(&req)?;
        let cmd = event_user(&req.get_ref().event_id, &req.get_ref().user_id)?;
        let s = ops::confirm_fee(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::ConfirmFeeResponse { fee_status: fee_to_pb(s) as i32 }))
    }

    async fn reject_fee(&self, req: Request<pb::RejectFeeRequest>) -> Reply<pb::RejectFeeResponse> {
        let caller = caller(&req)?;
        let cmd = event_user(&req.get_ref().event_id, &req.get_ref().user_id)?;
        let s = ops::reject_fee(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::RejectFeeResponse { fee_status: fee_to_pb(s) as i32 }))
    }

    async fn get_member_stats(&self, req: Request<pb::GetMemberStatsRequest>) -> Reply<pb::GetMemberStatsResponse> {
        let caller = caller(&req)?;
        let (community, user) = convert::community_user(&req.get_ref().community_id, &req.get_ref().user_id, true)?;
        let user = user.unwrap_or(caller.user_id);
        let s = ops::get_member_stats(&self.state, &caller, community, user).await?;
        Ok(Response::new(pb::GetMemberStatsResponse { stats: Some(s.into()) }))
    }

    async fn list_member_stats(&self, req: Request<pb::ListMemberStatsRequest>) -> Reply<pb::ListMemberStatsResponse> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let id = required_id("community_id", &r.community_id)?;
        let (rows, next) = ops::list_member_stats(&self.state, &caller, id, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListMemberStatsResponse {
            stats: rows.into_iter().map(Into::into).collect(),
            next_page_token: next,
        }))
    }

    async fn list_penalties(&self, req: Request<pb::ListPenaltiesRequest>) -> Reply<pb::ListPenaltiesResponse> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let (community, user) = convert::community_user(&r.community_id, &r.user_id, true)?;
        let (rows, next) =
            ops::list_penalties(&self.state, &caller, community, user, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListPenaltiesResponse {
            penalties: rows.into_iter().map(Into::into).collect(),
            next_page_token: next,
        }))
    }
}
