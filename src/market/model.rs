//! Products, likes and recommendations: rows, commands and the rules of their fields.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::idempotency::RequestId;

/// A product name: 2–15 characters (Unicode scalar values, trimmed).
pub const MIN_NAME_CHARS: usize = 2;
pub const MAX_NAME_CHARS: usize = 15;
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;
pub const MAX_TAGS: usize = 10;
/// Most recommendations per call, and the default.
pub const MAX_RECOMMENDATIONS: i64 = 50;
pub const DEFAULT_RECOMMENDATIONS: i64 = 10;

/// Sale and moderation status of a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProductStatus {
    OnSale,
    SoldOut,
    Suspended,
}

impl ProductStatus {
    pub fn as_db(self) -> &'static str {
        match self {
            ProductStatus::OnSale => "ON_SALE",
            ProductStatus::SoldOut => "SOLD_OUT",
            ProductStatus::Suspended => "SUSPENDED",
        }
    }
    pub fn from_db(s: &str) -> Self {
        match s {
            "SOLD_OUT" => ProductStatus::SoldOut,
            "SUSPENDED" => ProductStatus::Suspended,
            _ => ProductStatus::OnSale,
        }
    }
}

/// A product as stored, with its seller and like count; the same for every viewer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Product {
    pub id: Uuid,
    pub seller_id: Uuid,
    pub seller_handle: String,
    pub seller_display_name: String,
    pub seller_image_url: String,
    pub name: String,
    pub description: String,
    pub price: i64,
    pub tags: Vec<String>,
    pub image_url: String,
    pub sale_link: String,
    pub status: String,
    pub view_count: i64,
    pub like_count: i64,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Product {
    pub fn status(&self) -> ProductStatus {
        ProductStatus::from_db(&self.status)
    }
    /// The etag clients send back with UpdateProduct.
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }
}

/// Who is reading: a user (`Uuid::nil()` when anonymous) and whether they are an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reader {
    pub user_id: Uuid,
    pub is_admin: bool,
}

impl Reader {
    pub fn of(caller: Option<&crate::caller::Caller>) -> Self {
        Reader { user_id: caller.map_or(Uuid::nil(), |c| c.user_id), is_admin: caller.is_some_and(|c| c.is_admin()) }
    }
}

/// The visibility rule: a SUSPENDED product is seen by its seller and admins only. Its SQL twin
/// is `store::VISIBLE`; `store::tests::visibility_rule_and_sql_agree` checks they agree.
pub fn sees(reader: Reader, p: &Product) -> bool {
    p.status() != ProductStatus::Suspended || reader.is_admin || reader.user_id == p.seller_id
}

/// A product for one viewer.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductView {
    pub product: Product,
    pub liked_by_me: bool,
}

#[derive(Debug, Serialize)]
pub struct CreateProduct {
    pub name: String,
    pub price: i64,
    pub description: String,
    pub tags: Vec<String>,
    pub image_url: String,
    pub sale_link: String,
    /// The image, attached in the same transaction (`crate::media::attach`): none or one.
    pub media_ids: Vec<Uuid>,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

#[derive(Debug, Default, PartialEq)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub price: Option<i64>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub image_url: Option<String>,
    pub sale_link: Option<String>,
    /// The image from now on (empty: none), detaching the one before.
    pub media_ids: Option<Vec<Uuid>>,
}

#[derive(Debug)]
pub struct UpdateProduct {
    pub product_id: Uuid,
    pub patch: ProductPatch,
    /// The version the client read (`None`: no check).
    pub expected_version: Option<i64>,
}

/// The filters of ListProducts, combined with AND (also what a page token is bound to).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProductFilter {
    pub tag: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub query: Option<String>,
    pub seller_handle: Option<String>,
}

/// A price: KRW, not negative.
pub fn parse_price(raw: i64) -> Result<i64, String> {
    if raw < 0 { Err("must not be negative".into()) } else { Ok(raw) }
}

/// A sale link: an optional http(s) URL of an external store (no `javascript:`, `data:`, …).
pub fn parse_sale_link(raw: &str) -> Result<String, String> {
    crate::fields::parse_url(raw)
}

/// Why a product is recommended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Tags,
    CoLikes,
    TagsAndCoLikes,
    Newest,
}

impl Source {
    /// The `source` label of `maru_product_recommendations_total`.
    pub fn label(self) -> &'static str {
        match self {
            Source::Tags => "tags",
            Source::CoLikes => "co_likes",
            Source::TagsAndCoLikes => "tags_and_co_likes",
            Source::Newest => "newest",
        }
    }
}

/// One recommendation as the ranking query returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Ranked {
    pub product_id: Uuid,
    pub score: i64,
    pub shared_tags: Vec<String>,
    pub co_likers: i64,
    pub co_liked_with: Vec<Uuid>,
}

impl Ranked {
    pub fn source(&self) -> Source {
        match (self.shared_tags.is_empty(), self.co_likers == 0) {
            (false, true) => Source::Tags,
            (true, false) => Source::CoLikes,
            (false, false) => Source::TagsAndCoLikes,
            (true, true) => Source::Newest,
        }
    }
}

/// A recommendation for one viewer.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub product: ProductView,
    pub ranked: Ranked,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_and_links() {
        assert_eq!(parse_price(0), Ok(0));
        assert!(parse_price(-1).is_err());
        assert!(parse_sale_link("https://smartstore.example/p/1").is_ok());
        assert_eq!(parse_sale_link(""), Ok(String::new()));
        for bad in ["javascript:alert(1)", "data:text/html,<b>x</b>", "ftp://x.example/a", "//x.example"] {
            assert!(parse_sale_link(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sources() {
        let r = |tags: &[&str], co: i64| Ranked {
            product_id: Uuid::nil(),
            score: 0,
            shared_tags: tags.iter().map(|t| t.to_string()).collect(),
            co_likers: co,
            co_liked_with: vec![],
        };
        assert_eq!(r(&["a"], 0).source(), Source::Tags);
        assert_eq!(r(&[], 2).source(), Source::CoLikes);
        assert_eq!(r(&["a"], 1).source(), Source::TagsAndCoLikes);
        assert_eq!(r(&[], 0).source(), Source::Newest);
    }
}
