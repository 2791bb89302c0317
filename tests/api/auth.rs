//! AuthService end to end.

use maru::grpc::pb;
use sqlx::PgPool;
use tonic::Code;

use crate::helpers::*;

fn sign_up_req(handle: &str, email: &str) -> pb::SignUpRequest {
    pb::SignUpRequest {
        handle: handle.into(),
        email: email.into(),
        password: PASSWORD.into(),
        display_name: "Someone".into(),
        request_id: String::new(),
    }
}

#[sqlx::test]
async fn sign_up_login_who_am_i(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user = app.sign_up("minsu").await;
    assert_eq!(user.handle, "minsu");
    assert_eq!(user.email, "minsu@example.com");
    assert_eq!(user.role, pb::Role::User as i32);

    let login = app.login("MINSU@example.com").await;
    assert!(!login.access_token.is_empty() && !login.refresh_token.is_empty());
    assert_eq!(login.user.as_ref().unwrap().id, user.id);

    let me = app.auth().who_am_i(bearer(&login.access_token, pb::WhoAmIRequest {})).await.unwrap().into_inner();
    assert_eq!(me.user.unwrap().id, user.id);
}
