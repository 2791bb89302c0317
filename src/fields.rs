//! Request fields: the one module that reads ids, free text, URLs, times, update masks, request
//! ids and protobuf enums out of requests, and renders times back. Every domain's conversions
//! use it, so a rule that holds for every field of a kind is written once, here: every free
//! text goes through [`check_chars`] (by [`parse_text`] or [`text`]).
//!
//! Two forms. `parse_*` return the description a field violation carries (`Err(String)`), for
//! model value types (`Handle::parse` style). The others take the request's [`Violations`],
//! record the violation under the field's name and return a placeholder, so one request reports
//! every bad field at once; callers use the values only after [`Violations::finish`].

use chrono::{DateTime, Datelike, Utc};
use prost_types::{FieldMask, Timestamp};
use uuid::Uuid;

use crate::error::{AppResult, Violations, echo};
use crate::idempotency::RequestId;

/// Longest URL accepted (links, images).
pub const MAX_URL_CHARS: usize = 2048;

// ---- ids

/// A required UUID.
pub fn parse_id(raw: &str) -> Result<Uuid, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("is required".into());
    }
    Uuid::parse_str(s).map_err(|_| "must be a UUID".to_owned())
}

/// A required id field (the nil UUID when bad).
pub fn id(v: &mut Violations, field: &str, raw: &str) -> Uuid {
    v.check(field, parse_id(raw)).unwrap_or_else(Uuid::nil)
}

/// An optional id field: empty is none.
pub fn opt_id(v: &mut Violations, field: &str, raw: &str) -> Option<Uuid> {
    if raw.trim().is_empty() { None } else { Some(id(v, field, raw)) }
}

/// A required id field on its own (a request with no other field to check).
pub fn required_id(field: &str, raw: &str) -> AppResult<Uuid> {
    let mut v = Violations::new();
    let id = id(&mut v, field, raw);
    v.finish()?;
    Ok(id)
}

// ---- text

/// The characters no text field may hold: control characters (NUL among them, which
/// PostgreSQL cannot store in text), except line breaks and tabs in `multiline` text. Every
/// free-text field is checked here.
pub fn check_chars(s: &str, multiline: bool) -> Result<(), String> {
    if s.chars().any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t'))) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// A string used as given (a login, a search), not stored: still only characters the database
/// can take ([`check_chars`]), so a lookup with it never fails in PostgreSQL.
pub fn lookup(v: &mut Violations, field: &str, raw: &str) {
    v.check(field, check_chars(raw, false));
}

/// Trimmed text of `min..=max` characters that passes [`check_chars`].
pub fn parse_text(raw: &str, min: usize, max: usize, multiline: bool) -> Result<String, String> {
    let s = raw.trim();
    let n = s.chars().count();
    if n < min {
        return Err(if min == 1 { "is required".to_owned() } else { format!("must be at least {min} characters") });
    }
    if n > max {
        return Err(format!("must be at most {max} characters"));
    }
    check_chars(s, multiline)?;
    Ok(s.to_owned())
}

/// A text field (see [`parse_text`]); the trimmed input when bad.
pub fn text(v: &mut Violations, field: &str, raw: &str, min: usize, max: usize, multiline: bool) -> String {
    v.check(field, parse_text(raw, min, max, multiline)).unwrap_or_else(|| raw.trim().to_owned())
}

/// An optional http(s) URL with a host; empty is allowed (it clears the field).
pub fn parse_url(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    if s.chars().count() > MAX_URL_CHARS {
        return Err(format!("must be at most {MAX_URL_CHARS} characters"));
    }
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(s.to_owned()),
        _ => Err("must be an http(s) URL".into()),
    }
}

/// An optional list of at most `max` http(s) URLs (`what` names one in messages: "link",
/// "image"), none empty, in order.
pub fn parse_urls(raw: &[String], max: usize, what: &str) -> Result<Vec<String>, String> {
    if raw.len() > max {
        return Err(format!("at most {max} {what}s"));
    }
    raw.iter()
        .enumerate()
        .map(|(i, u)| match parse_url(u) {
            Ok(u) if !u.is_empty() => Ok(u),
            Ok(_) => Err(format!("{what} {}: must not be empty", i + 1)),
            Err(e) => Err(format!("{what} {}: {e}", i + 1)),
        })
        .collect()
}

// ---- search queries, tags, etags

/// Shortest search query (one bigram).
pub const MIN_QUERY_CHARS: usize = 2;
/// Longest search query.
pub const MAX_QUERY_CHARS: usize = 100;
/// Longest tag.
pub const MAX_TAG_CHARS: usize = 30;

/// Search text: trimmed, 2 to 100 characters, no control characters.
pub fn parse_query(raw: &str) -> Result<String, String> {
    parse_text(raw, MIN_QUERY_CHARS, MAX_QUERY_CHARS, false)
}

/// A tag: trimmed, a leading '#' dropped, lower case, 1–30 characters without spaces.
pub fn parse_tag(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    let t = t.strip_prefix('#').unwrap_or(t).to_lowercase();
    let n = t.chars().count();
    if n == 0 {
        return Err("must not be empty".into());
    }
    if n > MAX_TAG_CHARS {
        return Err(format!("must be at most {MAX_TAG_CHARS} characters"));
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control() || c == '#') {
        return Err("must not contain spaces, control characters or '#'".into());
    }
    Ok(t)
}

/// Up to `max` tags ([`parse_tag`]), deduplicated in order.
pub fn parse_tags(raw: &[String], max: usize) -> Result<Vec<String>, String> {
    if raw.len() > max {
        return Err(format!("at most {max} tags"));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        let t = parse_tag(t).map_err(|e| format!("tag {}: {e}", i + 1))?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// An etag as the resources make it (`"v<version>"`, quotes optional); empty = none. `what`
/// names the resource in the message ("post", "team").
pub fn parse_etag(raw: &str, what: &str) -> Result<Option<i64>, String> {
    let e = raw.trim().trim_matches('"');
    if e.is_empty() {
        return Ok(None);
    }
    e.strip_prefix('v')
        .and_then(|n| n.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| format!("is not an etag of a {what}"))
}

// ---- times

/// A timestamp field: `None` when unset and not `required`. Years 1900–9999 only.
pub fn time(v: &mut Violations, field: &str, ts: Option<&Timestamp>, required: bool) -> Option<DateTime<Utc>> {
    let Some(ts) = ts else {
        if required {
            v.add(field, "is required");
        }
        return None;
    };
    let parsed = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .and_then(|n| DateTime::from_timestamp(ts.seconds, n))
        .filter(|t| (1900..=9999).contains(&t.year()));
    if parsed.is_none() {
        v.add(field, "must be a valid time between the years 1900 and 9999");
    }
    parsed
}

/// A time for the wire.
pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

// ---- update masks, request ids, enums

/// The paths of a required `update_mask`, each one of `allowed`.
pub fn mask(v: &mut Violations, mask: Option<&FieldMask>, allowed: &[&str]) -> Vec<String> {
    let paths: Vec<String> = mask.map(|m| m.paths.iter().map(|p| p.trim().to_owned()).collect()).unwrap_or_default();
    if paths.is_empty() {
        v.add("update_mask", format!("is required: name the fields to change, of {}", allowed.join(", ")));
    }
    for p in &paths {
        if !allowed.contains(&p.as_str()) {
            v.add("update_mask", format!("unknown field {:?}; allowed: {}", echo(p), allowed.join(", ")));
        }
    }
    paths
}

/// The `request_id` field of a create (empty = none).
pub fn request_id(v: &mut Violations, raw: &str) -> Option<RequestId> {
    v.check("request_id", RequestId::parse(raw)).flatten()
}

/// The `request_id` of a request with no other field to collect violations with.
pub fn request_id_field(raw: &str) -> AppResult<Option<RequestId>> {
    let mut v = Violations::new();
    let rid = request_id(&mut v, raw);
    v.finish()?;
    Ok(rid)
}

/// A protobuf enum field: numbers the enum does not define are "not a known `what`".
pub fn enum_value<E: TryFrom<i32>>(raw: i32, what: &str) -> Result<E, String> {
    E::try_from(raw).map_err(|_| format!("is not a known {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_tags_etags() {
        assert!(parse_query("판").is_err());
        assert_eq!(parse_query(" 판교 ").unwrap(), "판교");
        assert!(parse_query(&"가".repeat(101)).is_err());
        assert!(parse_query("a\u{0}b").is_err());
        assert_eq!(parse_tag(" #맛집 ").unwrap(), "맛집");
        assert_eq!(parse_tag("Rust").unwrap(), "rust");
        assert!(parse_tag("#").is_err());
        assert!(parse_tag("two words").is_err());
        assert!(parse_tag(&"가".repeat(31)).is_err());
        assert_eq!(parse_tags(&["a".into(), "A".into(), "b".into()], 10).unwrap(), ["a", "b"]);
        assert!(parse_tags(&vec!["a".to_string(); 11], 10).is_err());
        assert_eq!(parse_etag("", "post").unwrap(), None);
        assert_eq!(parse_etag("v3", "post").unwrap(), Some(3));
        assert_eq!(parse_etag("\"v3\"", "team").unwrap(), Some(3));
        assert!(parse_etag("3", "post").unwrap_err().contains("post"));
    }

    #[test]
    fn url_lists() {
        assert!(parse_urls(&["https://github.com/maru".into()], 5, "link").is_ok());
        assert!(parse_urls(&["".into()], 5, "link").is_err());
        assert!(parse_urls(&["javascript:alert(1)".into()], 5, "link").is_err());
        assert_eq!(parse_urls(&vec!["https://a.example".to_string(); 6], 5, "link").unwrap_err(), "at most 5 links");
    }
    use crate::grpc::pb;

    #[test]
    fn ids() {
        let mut v = Violations::new();
        let good = Uuid::now_v7();
        assert_eq!(id(&mut v, "a", &format!(" {good} ")), good);
        assert_eq!(opt_id(&mut v, "b", " "), None);
        assert!(v.is_empty());
        assert_eq!(id(&mut v, "c", ""), Uuid::nil());
        assert_eq!(opt_id(&mut v, "d", "nope"), Some(Uuid::nil()));
        let err = v.into_error().to_string();
        assert!(err.contains("c: is required") && err.contains("d: must be a UUID"), "{err}");
        assert!(required_id("e", "x").unwrap_err().to_string().contains("e: must be a UUID"));
    }

    #[test]
    fn text_rules() {
        let mut v = Violations::new();
        assert_eq!(text(&mut v, "a", "  hi  ", 1, 5, false), "hi");
        assert!(v.is_empty());
        text(&mut v, "b", "   ", 1, 5, false);
        text(&mut v, "c", "toolong", 1, 5, false);
        text(&mut v, "d", "a\nb", 1, 5, false);
        assert_eq!(text(&mut v, "e", "a\nb", 1, 5, true), "a\nb");
        text(&mut v, "f", "", 0, 5, false);
        text(&mut v, "g", "x", 2, 5, false);
        text(&mut v, "h", "a\u{0}b", 1, 5, true);
        let err = v.into_error();
        assert!(err.to_string().contains("b: is required"));
        assert!(err.to_string().contains("c: must be at most 5"));
        assert!(err.to_string().contains("d: must not contain control"));
        assert!(err.to_string().contains("g: must be at least 2 characters"));
        assert!(err.to_string().contains("h: must not contain control"));
        assert!(!err.to_string().contains("e:") && !err.to_string().contains("f:"));
    }

    #[test]
    fn urls() {
        assert_eq!(parse_url("").unwrap(), "");
        assert_eq!(parse_url(" https://maru.example/a ").unwrap(), "https://maru.example/a");
        assert!(parse_url("javascript:alert(1)").is_err());
        assert!(parse_url("ftp://x.example").is_err());
        assert!(parse_url("not a url").is_err());
        assert!(parse_url(&format!("https://x.example/{}", "a".repeat(MAX_URL_CHARS))).is_err());
    }

    #[test]
    fn times_and_masks() {
        let mut v = Violations::new();
        assert!(time(&mut v, "t", None, false).is_none());
        assert!(v.is_empty());
        let at = time(&mut v, "t", Some(&Timestamp { seconds: 1_800_000_000, nanos: 5 }), true).unwrap();
        assert_eq!(timestamp(at), Timestamp { seconds: 1_800_000_000, nanos: 5 });
        assert!(time(&mut v, "t", Some(&Timestamp { seconds: 0, nanos: -1 }), true).is_none());
        assert!(time(&mut v, "t", Some(&Timestamp { seconds: i64::MAX, nanos: 0 }), true).is_none());
        assert!(!v.is_empty());
        let mut v = Violations::new();
        mask(&mut v, Some(&FieldMask { paths: vec!["title".into()] }), &["title", "body"]);
        assert!(v.is_empty());
        mask(&mut v, None, &["title"]);
        mask(&mut v, Some(&FieldMask { paths: vec!["nope".into()] }), &["title"]);
        assert_eq!(v.into_error().to_string().matches("update_mask").count(), 2);
    }

    #[test]
    fn request_ids_and_enums() {
        let mut v = Violations::new();
        assert!(request_id(&mut v, "").is_none());
        assert!(request_id(&mut v, "abc").is_some());
        assert!(v.is_empty());
        assert!(request_id(&mut v, "has space").is_none());
        assert!(v.into_error().to_string().contains("request_id:"));
        assert_eq!(enum_value::<pb::Role>(2, "role"), Ok(pb::Role::Admin));
        assert_eq!(enum_value::<pb::Role>(99, "role"), Err("is not a known role".to_owned()));
    }
}
