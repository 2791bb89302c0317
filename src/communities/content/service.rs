//! `maru.v1.{Notice,Complaint,Contact,Schedule,Poll}Service`: thin handlers over the use cases
//! of [`super`]. Each: caller (UNAUTHENTICATED without one), request → command (every bad
//! field reported), use case, result → message.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{complaints, contacts, notices, polls, schedules};
use crate::fields::required_id;
use crate::grpc::{caller, pb};
use crate::media::attach;
use crate::state::AppState;

/// Notices with their attached images (one query for all of them).
async fn notices_pb(state: &AppState, rows: Vec<notices::Notice>) -> Result<Vec<pb::Notice>, Status> {
    let ids: Vec<Uuid> = rows.iter().map(|n| n.id).collect();
    let mut media = attach::shown(state, attach::Kind::Notice, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|n| {
            let m = media.remove(&n.id).unwrap_or_default();
            notices::to_pb(n, m)
        })
        .collect())
}

async fn notice_pb(state: &AppState, n: notices::Notice) -> Result<pb::Notice, Status> {
    Ok(notices_pb(state, vec![n]).await?.into_iter().next().unwrap_or_default())
}

/// Complaints with their attached photos (one query for all of them).
async fn complaints_pb(state: &AppState, rows: Vec<complaints::Complaint>) -> Result<Vec<pb::Complaint>, Status> {
    let ids: Vec<Uuid> = rows.iter().map(|c| c.id).collect();
    let mut media = attach::shown(state, attach::Kind::Complaint, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|c| {
            let m = media.remove(&c.id).unwrap_or_default();
            complaints::to_pb(c, m)
        })
        .collect())
}

async fn complaint_pb(state: &AppState, c: complaints::Complaint) -> Result<pb::Complaint, Status> {
    Ok(complaints_pb(state, vec![c]).await?.into_iter().next().unwrap_or_default())
}

pub struct NoticeApi {
    pub state: AppState,
}

#[tonic::async_trait]
impl pb::notice_service_server::NoticeService for NoticeApi {
    async fn create_notice(
        &self,
        req: Request<pb::CreateNoticeRequest>,
    ) -> Result<Response<pb::CreateNoticeResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = notices::CreateNotice::try_from(req.into_inner())?;
        let notice = notices::create_notice(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::CreateNoticeResponse { notice: Some(notice_pb(&self.state, notice).await?) }))
    }

    async fn get_notice(&self, req: Request<pb::GetNoticeRequest>) -> Result<Response<pb::GetNoticeResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("notice_id", &req.get_ref().notice_id)?;
        let notice = notices::get_notice(&self.state, &caller, id).await?;
        Ok(Response::new(pb::GetNoticeResponse { notice: Some(notice_pb(&self.state, notice).await?) }))
    }

    async fn list_notices(
        &self,
        req: Request<pb::ListNoticesRequest>,
    ) -> Result<Response<pb::ListNoticesResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let community = required_id("community_id", &r.community_id)?;
        let (rows, next) = notices::list_notices(&self.state, &caller, community, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListNoticesResponse {
            notices: notices_pb(&self.state, rows).await?,
            next_page_token: next,
        }))
    }

    async fn update_notice(
        &self,
        req: Request<pb::UpdateNoticeRequest>,
    ) -> Result<Response<pb::UpdateNoticeResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = notices::UpdateNotice::try_from(req.into_inner())?;
        let notice = notices::update_notice(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::UpdateNoticeResponse { notice: Some(notice_pb(&self.state, notice).await?) }))
    }

    async fn delete_notice(
        &self,
        req: Request<pb::DeleteNoticeRequest>,
    ) -> Result<Response<pb::DeleteNoticeResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("notice_id", &req.get_ref().notice_id)?;
        notices::delete_notice(&self.state, &caller, id).await?;
        Ok(Response::new(pb::DeleteNoticeResponse {}))
    }
}

pub struct ComplaintApi {
    pub state: AppState,
}

#[tonic::async_trait]
impl pb::complaint_service_server::ComplaintService for ComplaintApi {
    async fn file_complaint(
        &self,
        req: Request<pb::FileComplaintRequest>,
    ) -> Result<Response<pb::FileComplaintResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = complaints::FileComplaint::try_from(req.into_inner())?;
        let c = complaints::file_complaint(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::FileComplaintResponse { complaint: Some(complaint_pb(&self.state, c).await?) }))
    }

    async fn get_complaint(
        &self,
        req: Request<pb::GetComplaintRequest>,
    ) -> Result<Response<pb::GetComplaintResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("complaint_id", &req.get_ref().complaint_id)?;
        let c = complaints::get_complaint(&self.state, &caller, id).await?;
        Ok(Response::new(pb::GetComplaintResponse { complaint: Some(complaint_pb(&self.state, c).await?) }))
    }

    async fn list_complaints(
        &self,
        req: Request<pb::ListComplaintsRequest>,
    ) -> Result<Response<pb::ListComplaintsResponse>, Status> {
        let caller = caller(&req)?;
        let q = complaints::ListComplaints::try_from(req.into_inner())?;
        let (rows, next) = complaints::list_complaints(&self.state, &caller, q).await?;
        Ok(Response::new(pb::ListComplaintsResponse {
            complaints: complaints_pb(&self.state, rows).await?,
            next_page_token: next,
        }))
    }

    async fn update_complaint_status(
        &self,
        req: Request<pb::UpdateComplaintStatusRequest>,
    ) -> Result<Response<pb::UpdateComplaintStatusResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = complaints::UpdateStatus::try_from(req.into_inner())?;
        let c = complaints::update_complaint_status(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::UpdateComplaintStatusResponse { complaint: Some(complaint_pb(&self.state, c).await?) }))
    }

    async fn withdraw_complaint(
        &self,
        req: Request<pb::WithdrawComplaintRequest>,
    ) -> Result<Response<pb::WithdrawComplaintResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("complaint_id", &req.get_ref().complaint_id)?;
        let c = complaints::withdraw_complaint(&self.state, &caller, id).await?;
        Ok(Response::new(pb::WithdrawComplaintResponse { complaint: Some(complaint_pb(&self.state, c).await?) }))
    }
}

pub struct ContactApi {
    pub state: AppState,
}

#[tonic::async_trait]
impl pb::contact_service_server::ContactService for ContactApi {
    async fn create_contact(
        &self,
        req: Request<pb::CreateContactRequest>,
    ) -> Result<Response<pb::CreateContactResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = contacts::CreateContact::try_from(req.into_inner())?;
        let c = contacts::create_contact(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::CreateContactResponse { contact: Some(contacts::to_pb(c)) }))
    }

    async fn list_contacts(
        &self,
        req: Request<pb::ListContactsRequest>,
    ) -> Result<Response<pb::ListContactsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let community = required_id("community_id", &r.community_id)?;
        let (rows, next) = contacts::list_contacts(&self.state, &caller, community, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListContactsResponse {
            contacts: rows.into_iter().map(contacts::to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn update_contact(
        &self,
        req: Request<pb::UpdateContactRequest>,
    ) -> Result<Response<pb::UpdateContactResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = contacts::UpdateContact::try_from(req.into_inner())?;
        let c = contacts::update_contact(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::UpdateContactResponse { contact: Some(contacts::to_pb(c)) }))
    }

    async fn delete_contact(
        &self,
        req: Request<pb::DeleteContactRequest>,
    ) -> Result<Response<pb::DeleteContactResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("contact_id", &req.get_ref().contact_id)?;
        contacts::delete_contact(&self.state, &caller, id).await?;
        Ok(Response::new(pb::DeleteContactResponse {}))
    }
}

pub struct ScheduleApi {
    pub state: AppState,
}

#[tonic::async_trait]
impl pb::schedule_service_server::ScheduleService for ScheduleApi {
    async fn create_schedule(
        &self,
        req: Request<pb::CreateScheduleRequest>,
    ) -> Result<Response<pb::CreateScheduleResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = schedules::CreateSchedule::try_from(req.into_inner())?;
        let s = schedules::create_schedule(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::CreateScheduleResponse { schedule: Some(schedules::to_pb(s)) }))
    }

    async fn list_schedules(
        &self,
        req: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        let caller = caller(&req)?;
        let q = schedules::ListSchedules::try_from(req.into_inner())?;
        let (rows, next) = schedules::list_schedules(&self.state, &caller, q).await?;
        Ok(Response::new(pb::ListSchedulesResponse {
            schedules: rows.into_iter().map(schedules::to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn update_schedule(
        &self,
        req: Request<pb::UpdateScheduleRequest>,
    ) -> Result<Response<pb::UpdateScheduleResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = schedules::UpdateSchedule::try_from(req.into_inner())?;
        let s = schedules::update_schedule(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::UpdateScheduleResponse { schedule: Some(schedules::to_pb(s)) }))
    }

    async fn delete_schedule(
        &self,
        req: Request<pb::DeleteScheduleRequest>,
    ) -> Result<Response<pb::DeleteScheduleResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("schedule_id", &req.get_ref().schedule_id)?;
        schedules::delete_schedule(&self.state, &caller, id).await?;
        Ok(Response::new(pb::DeleteScheduleResponse {}))
    }
}

pub struct PollApi {
    pub state: AppState,
}

#[tonic::async_trait]
impl pb::poll_service_server::PollService for PollApi {
    async fn create_poll(
        &self,
        req: Request<pb::CreatePollRequest>,
    ) -> Result<Response<pb::CreatePollResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = polls::CreatePoll::try_from(req.into_inner())?;
        let p = polls::create_poll(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::CreatePollResponse { poll: Some(polls::to_pb(p)) }))
    }

    async fn get_poll(&self, req: Request<pb::GetPollRequest>) -> Result<Response<pb::GetPollResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("poll_id", &req.get_ref().poll_id)?;
        let p = polls::get_poll(&self.state, &caller, id).await?;
        Ok(Response::new(pb::GetPollResponse { poll: Some(polls::to_pb(p)) }))
    }

    async fn list_polls(&self, req: Request<pb::ListPollsRequest>) -> Result<Response<pb::ListPollsResponse>, Status> {
        let caller = caller(&req)?;
        let q = polls::ListPolls::try_from(req.into_inner())?;
        let (rows, next) = polls::list_polls(&self.state, &caller, q).await?;
        Ok(Response::new(pb::ListPollsResponse {
            polls: rows.into_iter().map(polls::to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn close_poll(&self, req: Request<pb::ClosePollRequest>) -> Result<Response<pb::ClosePollResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("poll_id", &req.get_ref().poll_id)?;
        let p = polls::close_poll(&self.state, &caller, id).await?;
        Ok(Response::new(pb::ClosePollResponse { poll: Some(polls::to_pb(p)) }))
    }

    async fn cast_vote(&self, req: Request<pb::CastVoteRequest>) -> Result<Response<pb::CastVoteResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = polls::CastVote::try_from(req.into_inner())?;
        let p = polls::cast_vote(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::CastVoteResponse { poll: Some(polls::to_pb(p)) }))
    }
}
