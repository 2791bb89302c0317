//! Image processing, CPU-bound and synchronous (the worker runs it in `spawn_blocking`): decode
//! with limits (the pixel count is checked from the header before any pixel is decoded, so a
//! decompression bomb costs nothing), apply the EXIF orientation, and encode each variant
//! afresh — which drops EXIF (location) and every other metadata. A variant is JPEG (quality
//! 85) for opaque images, PNG for those with transparency, or lossless WebP when that is smaller.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageReader, Limits};

use super::model::{VARIANTS, fit};

/// One encoded variant.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub name: &'static str,
    pub content_type: &'static str,
    pub ext: &'static str,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// Why an image was refused: final, retrying does not help. `label` is the closed set of the
/// `reason` label of `maru_media_processing_failures_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub label: &'static str,
    pub reason: String,
}

/// The labels [`Refused::label`] takes.
pub const FAILURE_LABELS: [&str; 4] = ["too_many_pixels", "undecodable", "encode", "attempts_exhausted"];

fn refused(label: &'static str, reason: String) -> Refused {
    Refused { label, reason }
}

/// The variants of `bytes`, or why the image is refused.
pub fn process(bytes: &[u8], max_pixels: u64) -> Result<Vec<Encoded>, Refused> {
    let img = decode(bytes, max_pixels)?;
    VARIANTS
        .iter()
        .map(|spec| {
            let (w, h) = fit(img.width(), img.height(), spec.max_side);
            let scaled = if (w, h) == (img.width(), img.height()) {
                img.clone()
            } else {
                img.resize_exact(w, h, FilterType::Triangle)
            };
            let (content_type, ext, bytes) = encode(&scaled).map_err(|e| refused("encode", e))?;
            Ok(Encoded { name: spec.name, content_type, ext, width: w, height: h, bytes })
        })
        .collect()
}

/// Decodes within limits and applies the EXIF orientation. A GIF gives its first frame.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<DynamicImage, Refused> {
    let undecodable = |e: &dyn std::fmt::Display| refused("undecodable", format!("the image cannot be decoded: {e}"));
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| undecodable(&e))?;
    let mut limits = Limits::default();
    // RGBA with 16 bits per channel at most, plus the decoder's own buffers.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| undecodable(&e))?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(refused(
            "too_many_pixels",
            format!("the image is {w}x{h} = {pixels} pixels; at most {max_pixels} are accepted"),
        ));
    }
    if w == 0 || h == 0 {
        return Err(refused("undecodable", "the image has no pixels".into()));
    }
    let orientation = decoder.orientation().map_err(|e| undecodable(&e))?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| undecodable(&e))?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// The smaller of the image's natural encoding (JPEG, or PNG with transparency) and lossless WebP.
fn encode(img: &DynamicImage) -> Result<(&'static str, &'static str, Vec<u8>), String> {
    let (w, h) = (img.width(), img.height());
    let err = |e: image::ImageError| format!("encoding a variant failed: {e}");
    let alpha = img.color().has_alpha();
    let mut natural = Vec::new();
    let (ct, ext) = if alpha {
        let rgba = img.to_rgba8();
        PngEncoder::new(&mut natural).write_image(&rgba, w, h, ExtendedColorType::Rgba8).map_err(err)?;
        ("image/png", "png")
    } else {
        let rgb = img.to_rgb8();
        JpegEncoder::new_with_quality(&mut natural, 85)
            .write_image(&rgb, w, h, ExtendedColorType::Rgb8)
            .map_err(err)?;
        ("image/jpeg", "jpg")
    };
    let mut webp = Vec::new();
    let webp_ok = if alpha {
        WebPEncoder::new_lossless(&mut webp).write_image(&img.to_rgba8(), w, h, ExtendedColorType::Rgba8)
    } else {
        WebPEncoder::new_lossless(&mut webp).write_image(&img.to_rgb8(), w, h, ExtendedColorType::Rgb8)
    };
    if webp_ok.is_ok() && webp.len() < natural.len() {
        return Ok(("image/webp", "webp", webp));
    }
    Ok((ct, ext, natural))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
        let mut out = Vec::new();
        PngEncoder::new(&mut out).write_image(&img, w, h, ExtendedColorType::Rgb8).unwrap();
        out
    }

    #[test]
    fn variants_fit_and_never_upscale() {
        let v = process(&png(2000, 1000), 50_000_000).unwrap();
        let dims: Vec<_> = v.iter().map(|e| (e.name, e.width, e.height)).collect();
        assert_eq!(dims, vec![("thumbnail", 256, 128), ("display", 1080, 540)]);
        let v = process(&png(100, 40), 50_000_000).unwrap();
        assert!(v.iter().all(|e| (e.width, e.height) == (100, 40)));
        for e in v {
            let back = image::load_from_memory(&e.bytes).unwrap();
            assert_eq!((back.width(), back.height()), (e.width, e.height));
        }
    }

    #[test]
    fn a_header_claiming_too_many_pixels_is_refused_before_decoding() {
        // A PNG whose IHDR claims 100000 x 100000 and has no image data at all.
        let mut bomb = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        bomb.extend_from_slice(&13u32.to_be_bytes());
        bomb.extend_from_slice(&ihdr);
        let crc = crc32(&ihdr);
        bomb.extend_from_slice(&crc.to_be_bytes());
        // An IDAT with an empty zlib stream, then IEND.
        for (kind, data) in
            [(&b"IDAT"[..], &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01][..]), (&b"IEND"[..], &[][..])]
        {
            let mut chunk = kind.to_vec();
            chunk.extend_from_slice(data);
            bomb.extend_from_slice(&(data.len() as u32).to_be_bytes());
            bomb.extend_from_slice(&chunk);
            bomb.extend_from_slice(&crc32(&chunk).to_be_bytes());
        }
        let err = process(&bomb, 50_000_000).unwrap_err();
        assert_eq!(err.label, "too_many_pixels", "{err:?}");
        assert!(err.reason.contains("100000x100000"), "{}", err.reason);
    }

    #[test]
    fn garbage_is_undecodable() {
        let err = process(b"\x89PNG\r\n\x1a\nthis is not a png", 50_000_000).unwrap_err();
        assert_eq!(err.label, "undecodable");
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
}
