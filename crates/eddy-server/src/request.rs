//! What every handler shares: the largest request body read whole, and the error answered with
//! ksqlDB's error body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use eddy_common::rest::ErrorMessage;

/// Largest request body read whole (a script, a query, a schema): larger ones get 413.
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// An error answered with ksqlDB's error body.
pub(crate) struct ApiError(pub(crate) ErrorMessage);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.0)).into_response()
    }
}
