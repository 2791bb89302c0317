//! `maru.v1.ChatService`: thin handlers over [`super::ops`].

use tonic::{Request, Response, Status};

use super::convert::{self, handle_field, message_to_pb, room_to_pb};
use super::model::{CreateRoom, SendMessage};
use super::ops;
use crate::fields::required_id;
use crate::grpc::{caller, pb};
use crate::state::AppState;

pub struct ChatApi {
    pub state: AppState,
    /// This replica's Subscribe streams and their pub/sub feed.
    pub hub: std::sync::Arc<super::hub::Hub>,
}

#[tonic::async_trait]
impl pb::chat_service_server::ChatService for ChatApi {
    type SubscribeStream = super::stream::EventStream;

    async fn subscribe(&self, req: Request<pb::SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = caller(&req)?;
        let resume = convert::resume(req.get_ref())?;
        Ok(Response::new(super::stream::open(&self.state, &self.hub, &caller, resume).await?))
    }

    async fn create_room(
        &self,
        req: Request<pb::CreateRoomRequest>,
    ) -> Result<Response<pb::CreateRoomResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = CreateRoom::try_from(req.into_inner())?;
        let (room, created) = ops::create_room(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::CreateRoomResponse { room: Some(room_to_pb(room)), created }))
    }

    async fn get_room(&self, req: Request<pb::GetRoomRequest>) -> Result<Response<pb::GetRoomResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("room_id", &req.get_ref().room_id)?;
        let room = ops::get_room(&self.state, &caller, id).await?;
        Ok(Response::new(pb::GetRoomResponse { room: Some(room_to_pb(room)) }))
    }

    async fn list_my_rooms(
        &self,
        req: Request<pb::ListMyRoomsRequest>,
    ) -> Result<Response<pb::ListMyRoomsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        let (rooms, next) = ops::list_my_rooms(&self.state, &caller, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListMyRoomsResponse {
            rooms: rooms.into_iter().map(room_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn invite_to_room(
        &self,
        req: Request<pb::InviteToRoomRequest>,
    ) -> Result<Response<pb::InviteToRoomResponse>, Status> {
        let caller = caller(&req)?;
        let (room, handles) = convert::invite(req.get_ref())?;
        let room = ops::invite_to_room(&self.state, &caller, room, &handles).await?;
        Ok(Response::new(pb::InviteToRoomResponse { room: Some(room_to_pb(room)) }))
    }

    async fn leave_room(&self, req: Request<pb::LeaveRoomRequest>) -> Result<Response<pb::LeaveRoomResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("room_id", &req.get_ref().room_id)?;
        ops::leave_room(&self.state, &caller, id).await?;
        Ok(Response::new(pb::LeaveRoomResponse {}))
    }

    async fn remove_from_room(
        &self,
        req: Request<pb::RemoveFromRoomRequest>,
    ) -> Result<Response<pb::RemoveFromRoomResponse>, Status> {
        let caller = caller(&req)?;
        let (room, handle) = convert::remove(req.get_ref())?;
        ops::remove_from_room(&self.state, &caller, room, handle).await?;
        Ok(Response::new(pb::RemoveFromRoomResponse {}))
    }

    async fn rename_room(
        &self,
        req: Request<pb::RenameRoomRequest>,
    ) -> Result<Response<pb::RenameRoomResponse>, Status> {
        let caller = caller(&req)?;
        let (room, title) = convert::rename(req.get_ref())?;
        let room = ops::rename_room(&self.state, &caller, room, title).await?;
        Ok(Response::new(pb::RenameRoomResponse { room: Some(room_to_pb(room)) }))
    }

    async fn block_user(&self, req: Request<pb::BlockUserRequest>) -> Result<Response<pb::BlockUserResponse>, Status> {
        let caller = caller(&req)?;
        let handle = handle_field(&req.get_ref().handle)?;
        ops::block_user(&self.state, &caller, handle).await?;
        Ok(Response::new(pb::BlockUserResponse {}))
    }

    async fn unblock_user(
        &self,
        req: Request<pb::UnblockUserRequest>,
    ) -> Result<Response<pb::UnblockUserResponse>, Status> {
        let caller = caller(&req)?;
        let handle = handle_field(&req.get_ref().handle)?;
        ops::unblock_user(&self.state, &caller, handle).await?;
        Ok(Response::new(pb::UnblockUserResponse {}))
    }

    async fn send_message(
        &self,
        req: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = SendMessage::try_from(req.into_inner())?;
        let m = ops::send_message(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::SendMessageResponse { message: Some(message_to_pb(m)) }))
    }

    async fn edit_message(
        &self,
        req: Request<pb::EditMessageRequest>,
    ) -> Result<Response<pb::EditMessageResponse>, Status> {
        let caller = caller(&req)?;
        let (id, text) = convert::edit(req.get_ref())?;
        let m = ops::edit_message(&self.state, &caller, id, text).await?;
        Ok(Response::new(pb::EditMessageResponse { message: Some(message_to_pb(m)) }))
    }

    async fn delete_message(
        &self,
        req: Request<pb::DeleteMessageRequest>,
    ) -> Result<Response<pb::DeleteMessageResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("message_id", &req.get_ref().message_id)?;
        ops::delete_message(&self.state, &caller, id).await?;
        Ok(Response::new(pb::DeleteMessageResponse {}))
    }

    async fn mark_read(&self, req: Request<pb::MarkReadRequest>) -> Result<Response<pb::MarkReadResponse>, Status> {
        let caller = caller(&req)?;
        let (room, seq) = convert::mark_read(req.get_ref())?;
        let read_seq = ops::mark_read(&self.state, &caller, room, seq).await?;
        Ok(Response::new(pb::MarkReadResponse { read_seq }))
    }

    async fn list_messages(
        &self,
        req: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        let (room, window) = convert::list_messages(r)?;
        let (rows, has_more) = ops::list_messages(&self.state, &caller, room, window, r.page_size).await?;
        Ok(Response::new(pb::ListMessagesResponse {
            messages: rows.into_iter().map(message_to_pb).collect(),
            has_more,
        }))
    }
}
