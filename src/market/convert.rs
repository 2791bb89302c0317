//! Protobuf ⇄ model conversions for the market. Requests become commands or every bad field is
//! reported at once.

use super::model::{
    CreateProduct, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, MAX_TAGS, MIN_NAME_CHARS, ProductFilter, ProductPatch,
    ProductStatus, ProductView, Recommendation, Source, UpdateProduct, parse_price, parse_sale_link,
};
use crate::accounts::Handle;
use crate::error::{AppError, AppResult, Violations};
use crate::fields::{id, mask, parse_etag, parse_query, parse_tag, parse_tags, parse_url, request_id, text, timestamp};
use crate::grpc::pb;
use crate::media::attach;

fn name(v: &mut Violations, raw: &str) -> String {
    text(v, "name", raw, MIN_NAME_CHARS, MAX_NAME_CHARS, false)
}

fn description(v: &mut Violations, raw: &str) -> String {
    text(v, "description", raw, 0, MAX_DESCRIPTION_CHARS, true)
}

impl TryFrom<pb::CreateProductRequest> for CreateProduct {
    type Error = AppError;
    fn try_from(r: pb::CreateProductRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let cmd = CreateProduct {
            name: name(&mut v, &r.name),
            price: v.check("price", parse_price(r.price)).unwrap_or_default(),
            description: description(&mut v, &r.description),
            tags: v.check("tags", parse_tags(&r.tags, MAX_TAGS)).unwrap_or_default(),
            image_url: v.check("image_url", parse_url(&r.image_url)).unwrap_or_default(),
            sale_link: v.check("sale_link", parse_sale_link(&r.sale_link)).unwrap_or_default(),
            media_ids: attach::parse_one(&mut v, "media_id", &r.media_id),
            request_id: request_id(&mut v, &r.request_id),
        };
        v.finish()?;
        Ok(cmd)
    }
}

impl TryFrom<pb::UpdateProductRequest> for UpdateProduct {
    type Error = AppError;
    fn try_from(r: pb::UpdateProductRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let product_id = id(&mut v, "product_id", &r.product_id);
        let mut patch = ProductPatch::default();
        let allowed = ["name", "price", "description", "tags", "image_url", "sale_link", "media_id"];
        for path in mask(&mut v, r.update_mask.as_ref(), &allowed) {
            match path.as_str() {
                "name" => patch.name = Some(name(&mut v, &r.name)),
                "price" => patch.price = v.check("price", parse_price(r.price)),
                "description" => patch.description = Some(description(&mut v, &r.description)),
                "tags" => patch.tags = v.check("tags", parse_tags(&r.tags, MAX_TAGS)),
                "image_url" => patch.image_url = v.check("image_url", parse_url(&r.image_url)),
                "sale_link" => patch.sale_link = v.check("sale_link", parse_sale_link(&r.sale_link)),
                "media_id" => patch.media_ids = Some(attach::parse_one(&mut v, "media_id", &r.media_id)),
                _ => {}
            }
        }
        let expected_version = v.check("etag", parse_etag(&r.etag, "product")).flatten();
        v.finish()?;
        Ok(UpdateProduct { product_id, patch, expected_version })
    }
}

pub fn status_from_pb(raw: i32) -> AppResult<ProductStatus> {
    match pb::ProductStatus::try_from(raw) {
        Ok(pb::ProductStatus::OnSale) => Ok(ProductStatus::OnSale),
        Ok(pb::ProductStatus::SoldOut) => Ok(ProductStatus::SoldOut),
        Ok(pb::ProductStatus::Suspended) => Ok(ProductStatus::Suspended),
        _ => Err(AppError::invalid("status", "must be ON_SALE, SOLD_OUT or SUSPENDED")),
    }
}

fn handle(v: &mut Violations, field: &str, raw: &str) -> Option<String> {
    v.check(field, Handle::parse(raw)).map(|h| h.as_str().to_owned())
}

impl TryFrom<&pb::ListProductsRequest> for ProductFilter {
    type Error = AppError;
    fn try_from(r: &pb::ListProductsRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let f = ProductFilter {
            tag: if r.tag.trim().is_empty() { None } else { v.check("tag", parse_tag(&r.tag)) },
            min_price: r.min_price.and_then(|p| v.check("min_price", parse_price(p))),
            max_price: r.max_price.and_then(|p| v.check("max_price", parse_price(p))),
            query: if r.query.is_empty() { None } else { v.check("query", parse_query(&r.query)) },
            seller_handle: if r.seller_handle.trim().is_empty() {
                None
            } else {
                handle(&mut v, "seller_handle", &r.seller_handle)
            },
        };
        if let (Some(lo), Some(hi)) = (f.min_price, f.max_price)
            && lo > hi
        {
            v.add("max_price", "must not be below min_price");
        }
        v.finish()?;
        Ok(f)
    }
}

/// The handle of ListUserProducts.
pub fn user_handle(raw: &str) -> AppResult<String> {
    let mut v = Violations::new();
    let h = handle(&mut v, "handle", raw);
    v.finish()?;
    Ok(h.unwrap_or_default())
}

/// `page_size` of RecommendProducts: 1–50, 0 = the default.
pub fn recommendation_limit(raw: i32) -> AppResult<i64> {
    use super::model::{DEFAULT_RECOMMENDATIONS, MAX_RECOMMENDATIONS};
    match raw {
        0 => Ok(DEFAULT_RECOMMENDATIONS),
        n if n < 0 => Err(AppError::invalid("page_size", "must not be negative")),
        n => Ok(i64::from(n).min(MAX_RECOMMENDATIONS)),
    }
}

pub fn product_to_pb(v: ProductView) -> pb::Product {
    let p = v.product;
    let etag = p.etag();
    let status = match p.status() {
        ProductStatus::OnSale => pb::ProductStatus::OnSale,
        ProductStatus::SoldOut => pb::ProductStatus::SoldOut,
        ProductStatus::Suspended => pb::ProductStatus::Suspended,
    };
    pb::Product {
        id: p.id.to_string(),
        seller: Some(pb::Author {
            user_id: p.seller_id.to_string(),
            handle: p.seller_handle,
            display_name: p.seller_display_name,
            image_url: p.seller_image_url,
        }),
        name: p.name,
        description: p.description,
        price: p.price,
        tags: p.tags,
        image_url: p.image_url,
        sale_link: p.sale_link,
        status: status as i32,
        view_count: p.view_count,
        like_count: p.like_count,
        liked_by_me: v.liked_by_me,
        etag,
        created_at: Some(timestamp(p.created_at)),
        updated_at: Some(timestamp(p.updated_at)),
        // Filled by the service (`crate::media::attach::shown`).
        media: None,
    }
}

pub fn recommendation_to_pb(r: Recommendation) -> pb::Recommendation {
    let source = match r.ranked.source() {
        Source::Tags => pb::RecommendationSource::Tags,
        Source::CoLikes => pb::RecommendationSource::CoLikes,
        Source::TagsAndCoLikes => pb::RecommendationSource::TagsAndCoLikes,
        Source::Newest => pb::RecommendationSource::Newest,
    };
    pb::Recommendation {
        product: Some(product_to_pb(r.product)),
        source: source as i32,
        score: r.ranked.score,
        shared_tags: r.ranked.shared_tags,
        co_likers: r.ranked.co_likers,
        co_liked_with: r.ranked.co_liked_with.iter().map(|u| u.to_string()).collect(),
    }
}
