//! The protobuf codec of every generated service and client (`build.rs` names it as the
//! `codec_path`): tonic's prost codec, with a small encode buffer for the responses of
//! long-lived server streams.
//!
//! tonic gives each response an encode buffer of 8 KiB, kept for the whole response. For a unary
//! call that is a moment; for a `ChatService/Subscribe` stream it is for as long as the client
//! stays connected, mostly idle — one buffer per open stream (docs/chat.md#memory). Those
//! streams start with [`STREAM_BUFFER`] bytes instead; the buffer grows when an event needs more,
//! so nothing is refused or split differently.

use std::any::TypeId;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use super::pb;

/// Initial encode buffer of a long-lived stream's responses: a chat event with a short message
/// fits; longer ones grow it.
pub const STREAM_BUFFER: usize = 512;

/// tonic's default yield threshold (32 KiB), kept.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with [`encode_buffer`]'s initial size.
#[derive(Debug)]
pub struct MaruCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for MaruCodec<T, U> {
    fn default() -> Self {
        MaruCodec(ProstCodec::default())
    }
}

/// The initial encode buffer for responses of type `T`: [`STREAM_BUFFER`] for the messages of
/// long-lived server streams, tonic's default otherwise.
pub fn encode_buffer<T: 'static>() -> BufferSettings {
    if TypeId::of::<T>() == TypeId::of::<pb::SubscribeResponse>() {
        BufferSettings::new(STREAM_BUFFER, YIELD_THRESHOLD)
    } else {
        BufferSettings::default()
    }
}

impl<T, U> Codec for MaruCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(encode_buffer::<T>())
    }

    fn decoder(&mut self) -> Self::Decoder {
        self.0.decoder()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_responses_start_small_and_others_keep_the_default() {
        let small = format!("{:?}", encode_buffer::<pb::SubscribeResponse>());
        assert!(small.contains(&format!("buffer_size: {STREAM_BUFFER}")), "{small}");
        let default = format!("{:?}", encode_buffer::<pb::WhoAmIResponse>());
        assert!(default.contains("buffer_size: 8192"), "{default}");
    }
}
