//! The client's address, as the per-address limits count it: the connection's peer, or, when
//! the peer is one of the configured trusted proxies (`http_trusted_proxies`), the nearest
//! address in `X-Forwarded-For` that is not itself a trusted proxy. A client cannot pick its
//! own address by sending the header: it is read only from a trusted peer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::request::Parts,
};

use super::error::ApiError;
use crate::state::AppState;

/// The address a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok());
        Ok(Self(state.limits.trusted_proxies.client(peer, forwarded)))
    }
}
