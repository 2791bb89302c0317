//! Media rules, no SQL, no transport: purposes and their limits, states, type sniffing, the
//! variants made of each image.

use crate::grpc::pb;

/// What a media is for (`maru.v1.MediaPurpose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Purpose {
    PostImage,
    NoticeImage,
    ComplaintImage,
    ProductImage,
    TeamImage,
    Avatar,
}

impl Purpose {
    pub const ALL: [Purpose; 6] = [
        Purpose::PostImage,
        Purpose::NoticeImage,
        Purpose::ComplaintImage,
        Purpose::ProductImage,
        Purpose::TeamImage,
        Purpose::Avatar,
    ];

    /// The name stored in the database and used as the `purpose` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::PostImage => "post_image",
            Purpose::NoticeImage => "notice_image",
            Purpose::ComplaintImage => "complaint_image",
            Purpose::ProductImage => "product_image",
            Purpose::TeamImage => "team_image",
            Purpose::Avatar => "avatar",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn from_pb(v: i32) -> Option<Self> {
        match pb::MediaPurpose::try_from(v).ok()? {
            pb::MediaPurpose::PostImage => Some(Purpose::PostImage),
            pb::MediaPurpose::NoticeImage => Some(Purpose::NoticeImage),
            pb::MediaPurpose::ComplaintImage => Some(Purpose::ComplaintImage),
            pb::MediaPurpose::ProductImage => Some(Purpose::ProductImage),
            pb::MediaPurpose::TeamImage => Some(Purpose::TeamImage),
            pb::MediaPurpose::Avatar => Some(Purpose::Avatar),
            pb::MediaPurpose::Unspecified => None,
        }
    }

    pub fn to_pb(self) -> pb::MediaPurpose {
        match self {
            Purpose::PostImage => pb::MediaPurpose::PostImage,
            Purpose::NoticeImage => pb::MediaPurpose::NoticeImage,
            Purpose::ComplaintImage => pb::MediaPurpose::ComplaintImage,
            Purpose::ProductImage => pb::MediaPurpose::ProductImage,
            Purpose::TeamImage => pb::MediaPurpose::TeamImage,
            Purpose::Avatar => pb::MediaPurpose::Avatar,
        }
    }

    /// The largest upload of this purpose, bytes, before the global `media.max_upload_bytes` cap.
    pub fn max_bytes(self) -> u64 {
        match self {
            Purpose::PostImage | Purpose::NoticeImage | Purpose::ComplaintImage => 10 * 1024 * 1024,
            Purpose::ProductImage | Purpose::TeamImage => 8 * 1024 * 1024,
            Purpose::Avatar => 2 * 1024 * 1024,
        }
    }

    /// The image types this purpose accepts (an avatar is a still image: no GIF).
    pub fn types(self) -> &'static [ImageType] {
        match self {
            Purpose::Avatar => &[ImageType::Jpeg, ImageType::Png, ImageType::Webp],
            _ => &ImageType::ALL,
        }
    }
}

/// The life of a media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Uploading,
    Processing,
    Ready,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Uploading => "UPLOADING",
            State::Processing => "PROCESSING",
            State::Ready => "READY",
            State::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [State::Uploading, State::Processing, State::Ready, State::Failed].into_iter().find(|x| x.as_str() == s)
    }

    pub fn to_pb(self) -> pb::MediaState {
        match self {
            State::Uploading => pb::MediaState::Uploading,
            State::Processing => pb::MediaState::Processing,
            State::Ready => pb::MediaState::Ready,
            State::Failed => pb::MediaState::Failed,
        }
    }
}

/// The image types maru accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    Jpeg,
    Png,
    Webp,
    Gif,
}

impl ImageType {
    pub const ALL: [ImageType; 4] = [ImageType::Jpeg, ImageType::Png, ImageType::Webp, ImageType::Gif];

    pub fn mime(self) -> &'static str {
        match self {
            ImageType::Jpeg => "image/jpeg",
            ImageType::Png => "image/png",
            ImageType::Webp => "image/webp",
            ImageType::Gif => "image/gif",
        }
    }

    pub fn from_mime(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.mime() == s)
    }

    /// The type of an image from its first bytes (at least 12 of them), whatever its name or
    /// declared type says.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageType::Jpeg)
        } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageType::Png)
        } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
            Some(ImageType::Webp)
        } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
            Some(ImageType::Gif)
        } else {
            None
        }
    }
}

/// How many bytes [`ImageType::sniff`] looks at.
pub const SNIFF_BYTES: u64 = 16;

/// A variant made of every image: its name and the longest side it is scaled down to.
#[derive(Debug, Clone, Copy)]
pub struct VariantSpec {
    pub name: &'static str,
    pub max_side: u32,
}

pub const VARIANTS: [VariantSpec; 2] =
    [VariantSpec { name: "thumbnail", max_side: 256 }, VariantSpec { name: "display", max_side: 1080 }];

/// `(w, h)` scaled to fit `max_side` on its longer side, keeping the aspect ratio; never
/// scaled up; never below 1 px.
pub fn fit(w: u32, h: u32, max_side: u32) -> (u32, u32) {
    let longer = w.max(h);
    if longer <= max_side {
        return (w, h);
    }
    let scale =
        |x: u32| ((u64::from(x) * u64::from(max_side) + u64::from(longer) / 2) / u64::from(longer)).max(1) as u32;
    (scale(w), scale(h))
}

/// A lowercase hex SHA-256, or an error for the field violation.
pub fn parse_sha256(raw: &str) -> Result<Option<[u8; 32]>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    let bytes = hex::decode(raw).map_err(|_| "must be 64 hexadecimal characters".to_owned())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map(Some).map_err(|_| "must be 64 hexadecimal characters".to_owned())
}

/// What media can be attached to (`media.attached_kind`; see `super::attach`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachKind {
    Post,
    Product,
    Notice,
    Complaint,
    Team,
    /// A user's profile picture (the target is the user id).
    Profile,
}

impl AttachKind {
    /// Stored in `media.attached_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachKind::Post => "post",
            AttachKind::Product => "product",
            AttachKind::Notice => "notice",
            AttachKind::Complaint => "complaint",
            AttachKind::Team => "team",
            AttachKind::Profile => "profile",
        }
    }
    /// The purpose a media must have been uploaded for.
    pub fn purpose(self) -> Purpose {
        match self {
            AttachKind::Post => Purpose::PostImage,
            AttachKind::Product => Purpose::ProductImage,
            AttachKind::Notice => Purpose::NoticeImage,
            AttachKind::Complaint => Purpose::ComplaintImage,
            AttachKind::Team => Purpose::TeamImage,
            AttachKind::Profile => Purpose::Avatar,
        }
    }
    /// How many media one target carries: a post's, notice's or complaint's photos; a
    /// product's, team's or profile's one image.
    pub fn max(self) -> usize {
        match self {
            AttachKind::Post | AttachKind::Notice | AttachKind::Complaint => 10,
            AttachKind::Product | AttachKind::Team | AttachKind::Profile => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_the_four_types_and_nothing_else() {
        assert_eq!(ImageType::sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0, 0, 0, 0, 0, 0, 0]), Some(ImageType::Jpeg));
        assert_eq!(ImageType::sniff(b"\x89PNG\r\n\x1a\n\0\0\0\0"), Some(ImageType::Png));
        assert_eq!(ImageType::sniff(b"RIFF\x10\0\0\0WEBPVP8 "), Some(ImageType::Webp));
        assert_eq!(ImageType::sniff(b"GIF89a\x01\0\x01\0\0\0"), Some(ImageType::Gif));
        assert_eq!(ImageType::sniff(b"hello, I am a .jpg"), None);
        assert_eq!(ImageType::sniff(b"RIFF\x10\0\0\0WAVEfmt "), None);
        assert_eq!(ImageType::sniff(b""), None);
    }

    #[test]
    fn fit_keeps_aspect_and_never_upscales() {
        assert_eq!(fit(4000, 3000, 1080), (1080, 810));
        assert_eq!(fit(3000, 4000, 256), (192, 256));
        assert_eq!(fit(100, 50, 256), (100, 50));
        assert_eq!(fit(10_000, 1, 256), (256, 1));
    }

    #[test]
    fn sha256_is_64_hex_or_empty() {
        assert_eq!(parse_sha256(""), Ok(None));
        assert!(parse_sha256(&"ab".repeat(32)).unwrap().is_some());
        assert!(parse_sha256("abc").is_err());
        assert!(parse_sha256(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn purposes_round_trip() {
        for p in Purpose::ALL {
            assert_eq!(Purpose::parse(p.as_str()), Some(p));
            assert_eq!(Purpose::from_pb(p.to_pb() as i32), Some(p));
            assert!(p.max_bytes() > 0);
        }
        assert_eq!(Purpose::from_pb(0), None);
        assert_eq!(Purpose::from_pb(99), None);
    }
}
