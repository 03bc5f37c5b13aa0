//! Who may change what (SPEC §10, §11): a node registering itself or someone else, the
//! network it names, `--verify_source`, the registration token buckets, and the admin token
//! for `POST`/`DELETE /nodes/`.

use std::net::IpAddr;
use std::sync::PoisonError;

use super::{ApiConfig, Context, Request};
use crate::membership::Change;
use crate::nodes::{Host, Node};
use crate::response::Response;

/// A registration that passed every rule of the API: of a node already known (nothing to
/// write), or the change to commit: a node registering itself (new, or known only as
/// learned or referred), or a caller registering another node (a referral).
pub(super) enum Registration {
    Known(Node),
    New(Change, Node),
}

/// Checks a node registering itself (`POST /`, or a `GET /nodes/` with a body): its network,
/// `--verify_source`, and the caller's token bucket when the node is new (SPEC §10, §11).
pub(super) fn registration(
    context: &mut Context<'_>,
    request: &Request<'_>,
    node: Node,
) -> Result<Registration, Response> {
    let config = context.config;
    if let (Some(ours), Some(theirs)) = (&config.network, request.network)
        && theirs != ours
    {
        return Err(Response::error(
            403,
            format!("this is network {ours:?}, not {theirs:?} (Seedmesh-Network)"),
        ));
    }
    if config.verify_source && !is_own_address(&node, request.caller) {
        return Err(Response::error(
            403,
            format!(
                "--verify_source is on: you may register only your own address {}, not {}",
                request.caller.to_canonical(),
                node.host
            ),
        ));
    }
    // A node registering itself, or someone else registering it (another address, or a
    // name, which a caller cannot be shown to be): a referral, counted against the caller's
    // address group and not vouched for until checked (SPEC §11: one source must not own the
    // answers by registering an address in every group).
    // A loopback caller stands for the operator, as for `POST /nodes/` (SPEC §10).
    let trusted = request.caller.to_canonical().is_loopback();
    let change = if trusted || is_own_address(&node, request.caller) {
        Change::Register(node.clone())
    } else {
        let by = Host::Ip(request.caller.to_canonical()).group();
        Change::Refer {
            node: node.clone(),
            by,
        }
    };
    // A registration of a known node changes nothing (unless a node registers itself where
    // it was only learned or referred): no need to wait for the disk, and re-announcing
    // costs no token.
    match context.snapshot.table.entry(&node) {
        Some(entry) if entry.source().vouches() || matches!(change, Change::Refer { .. }) => {
            return Ok(Registration::Known(node));
        }
        Some(_) => return Ok(Registration::New(change, node)),
        None => {}
    }
    let taken = context
        .buckets
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .try_take(request.caller, context.now);
    if let Err(wait) = taken {
        return Err(Response {
            retry_after: Some(wait.seconds),
            ..Response::error(
                429,
                format!(
                    "{} adds new nodes too fast (--reg_rate); try again in {} s",
                    request.caller.to_canonical(),
                    wait.seconds
                ),
            )
        });
    }
    Ok(Registration::New(change, node))
}

/// Whether `node` is the caller's own address (for `--verify_source`).
pub(super) fn is_own_address(node: &Node, caller: IpAddr) -> bool {
    matches!(node.host, Host::Ip(ip) if ip.to_canonical() == caller.to_canonical())
}

/// `POST`/`DELETE /nodes/` act on someone else's behalf: loopback callers, or the admin token
/// (SPEC §10).
pub(super) fn may_change_list(config: &ApiConfig, request: &Request<'_>) -> bool {
    if request.caller.to_canonical().is_loopback() {
        return true;
    }
    let (Some(expected), Some(header)) = (&config.admin_token, request.authorization) else {
        return false;
    };
    let presented = match header.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return false,
    };
    constant_time_eq(presented.as_bytes(), expected.as_bytes())
}

/// Compares without stopping at the first difference, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
