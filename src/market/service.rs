//! `maru.v1.ProductService`: thin handlers over [`super::ops`].

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::{product_to_pb, recommendation_limit, recommendation_to_pb, status_from_pb, user_handle};
use super::model::{CreateProduct, ProductFilter, UpdateProduct};
use super::ops;
use crate::fields::{request_id_field, required_id};
use crate::grpc::admission::client_ip;
use crate::grpc::{caller, maybe_caller, pb};
use crate::media::attach;
use crate::state::AppState;

pub struct ProductApi {
    pub state: AppState,
}

/// Products with their attached image (`crate::media::attach`; one query for all of them).
async fn with_media<'a>(
    state: &AppState,
    products: impl IntoIterator<Item = &'a mut pb::Product>,
) -> Result<(), Status> {
    let mut products: Vec<&mut pb::Product> = products.into_iter().collect();
    let ids: Vec<Uuid> = products.iter().filter_map(|p| p.id.parse().ok()).collect();
    let mut media = attach::shown(state, attach::Kind::Product, &ids).await?;
    for p in &mut products {
        if let Ok(id) = p.id.parse::<Uuid>() {
            p.media = media.remove(&id).and_then(|m| m.into_iter().next());
        }
    }
    Ok(())
}

async fn page(state: &AppState, rows: Vec<super::model::ProductView>) -> Result<Vec<pb::Product>, Status> {
    let mut out: Vec<pb::Product> = rows.into_iter().map(product_to_pb).collect();
    with_media(state, out.iter_mut()).await?;
    Ok(out)
}

async fn one(state: &AppState, row: super::model::ProductView) -> Result<pb::Product, Status> {
    let mut p = product_to_pb(row);
    with_media(state, [&mut p]).await?;
    Ok(p)
}

#[tonic::async_trait]
impl pb::product_service_server::ProductService for ProductApi {
    async fn create_product(
        &self,
        req: Request<pb::CreateProductRequest>,
    ) -> Result<Response<pb::CreateProductResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = CreateProduct::try_from(req.into_inner())?;
        let p = ops::create_product(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::CreateProductResponse { product: Some(one(&self.state, p).await?) }))
    }

    async fn get_product(
        &self,
        req: Request<pb::GetProductRequest>,
    ) -> Result<Response<pb::GetProductResponse>, Status> {
        let who = maybe_caller(&req)?;
        let trusted = &self.state.settings.rate_limit.trusted_proxies;
        let ip = req.remote_addr().map(|a| client_ip(trusted, a.ip(), req.metadata().as_ref()).to_string());
        let id = required_id("product_id", &req.get_ref().product_id)?;
        let p = ops::get_product(&self.state, who.as_ref(), id, ip.as_deref()).await?;
        Ok(Response::new(pb::GetProductResponse { product: Some(one(&self.state, p).await?) }))
    }

    async fn update_product(
        &self,
        req: Request<pb::UpdateProductRequest>,
    ) -> Result<Response<pb::UpdateProductResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = UpdateProduct::try_from(req.into_inner())?;
        let p = ops::update_product(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::UpdateProductResponse { product: Some(one(&self.state, p).await?) }))
    }

    async fn delete_product(
        &self,
        req: Request<pb::DeleteProductRequest>,
    ) -> Result<Response<pb::DeleteProductResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("product_id", &req.get_ref().product_id)?;
        ops::delete_product(&self.state, &caller, id).await?;
        Ok(Response::new(pb::DeleteProductResponse {}))
    }

    async fn set_product_status(
        &self,
        req: Request<pb::SetProductStatusRequest>,
    ) -> Result<Response<pb::SetProductStatusResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let id = required_id("product_id", &r.product_id)?;
        let status = status_from_pb(r.status)?;
        let p = ops::set_product_status(&self.state, &caller, id, status).await?;
        Ok(Response::new(pb::SetProductStatusResponse { product: Some(one(&self.state, p).await?) }))
    }

    async fn list_products(
        &self,
        req: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        let who = maybe_caller(&req)?;
        let r = req.into_inner();
        let filter = ProductFilter::try_from(&r)?;
        let (rows, next) = ops::list_products(&self.state, who.as_ref(), filter, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListProductsResponse { products: page(&self.state, rows).await?, next_page_token: next }))
    }

    async fn list_user_products(
        &self,
        req: Request<pb::ListUserProductsRequest>,
    ) -> Result<Response<pb::ListUserProductsResponse>, Status> {
        let who = maybe_caller(&req)?;
        let r = req.into_inner();
        let handle = user_handle(&r.handle)?;
        let (rows, next) =
            ops::list_user_products(&self.state, who.as_ref(), handle, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListUserProductsResponse {
            products: page(&self.state, rows).await?,
            next_page_token: next,
        }))
    }

    async fn like_product(
        &self,
        req: Request<pb::LikeProductRequest>,
    ) -> Result<Response<pb::LikeProductResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        let id = required_id("product_id", &r.product_id)?;
        let rid = request_id_field(&r.request_id)?;
        let (created, like_count) = ops::like_product(&self.state, &caller, id, rid.as_ref()).await?;
        Ok(Response::new(pb::LikeProductResponse { created, like_count }))
    }

    async fn unlike_product(
        &self,
        req: Request<pb::UnlikeProductRequest>,
    ) -> Result<Response<pb::UnlikeProductResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("product_id", &req.get_ref().product_id)?;
        let (removed, like_count) = ops::unlike_product(&self.state, &caller, id).await?;
        Ok(Response::new(pb::UnlikeProductResponse { removed, like_count }))
    }

    async fn recommend_products(
        &self,
        req: Request<pb::RecommendProductsRequest>,
    ) -> Result<Response<pb::RecommendProductsResponse>, Status> {
        let who = maybe_caller(&req)?;
        let r = req.get_ref();
        let product =
            if r.product_id.trim().is_empty() { None } else { Some(required_id("product_id", &r.product_id)?) };
        let limit = recommendation_limit(r.page_size)?;
        let rows = ops::recommend_products(&self.state, who.as_ref(), product, limit).await?;
        let mut recommendations: Vec<pb::Recommendation> = rows.into_iter().map(recommendation_to_pb).collect();
        with_media(&self.state, recommendations.iter_mut().filter_map(|r| r.product.as_mut())).await?;
        Ok(Response::new(pb::RecommendProductsResponse { recommendations }))
    }
}
