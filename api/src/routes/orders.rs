//! Orders and tickets: one order, its cancellation, and the caller's lists over every shard.

use std::cmp::Reverse;

use axum::extract::State;
use axum::Json;
use raft_store::{Answer, Command, OrderId, OrderStatus, OrderView, Outcome, Query, TicketCard};
use serde::Deserialize;

use crate::dto::{EmptyBody, OrderJson, Page, ProblemJson, TicketJson};
use crate::error::ApiError;
use crate::extract::{ApiQuery, Caller, IdPath, Posted};
use crate::pagination::{gather, limit_schema, merge, per_shard_limit, Cursor, OrderCursor, PageParams, TicketCursor};
use crate::payments::Refund;
use crate::routes::tickets::holder_json;
use crate::state::ApiState;
use seams::Consistency;

/// The order if the caller owns it or is an admin; anyone else's answers 404.
pub(crate) async fn read_order(state: &ApiState, order_id: &OrderId, caller: &Caller) -> Result<OrderView, ApiError> {
    let query = Query::Order { order_id: order_id.clone(), actor: caller.actor() };
    match state.cluster().query(state.group_of(&order_id.event_id), query, Consistency::Linearizable).await? {
        Answer::Order(Some(order)) => Ok(order),
        Answer::Order(None) => Err(ApiError::NotFound("no order has this id".into())),
        other => Err(ApiError::unexpected(other)),
    }
}

#[utoipa::path(
    get, path = "/v1/orders/{order_id}", operation_id = "get_order", tag = "booking",
    params(("order_id" = String, Path)),
    responses(
        (status = 200, body = OrderJson),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 404, body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    IdPath(order_id): IdPath<OrderId>,
) -> Result<Json<OrderJson>, ApiError> {
    let order = read_order(&state, &order_id, &caller).await?;
    Ok(Json(OrderJson::from(&order)))
}

/// Cancels a confirmed order (owner or admin) and refunds it; its seats are on sale again.
/// Cancelling a cancelled order answers it again.
#[utoipa::path(
    post, path = "/v1/orders/{order_id}/cancel", operation_id = "cancel_order", tag = "booking",
    params(
        ("order_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry"),
    ),
    responses(
        (status = 200, body = OrderJson),
        (status = 400, description = "A malformed Idempotency-Key", body = ProblemJson, content_type = "application/problem+json"),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
        (status = 404, body = ProblemJson, content_type = "application/problem+json"),
        (status = 409, description = "order_not_cancellable", body = ProblemJson, content_type = "application/problem+json"),
        (status = 422, description = "idempotency_key_reused", body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn cancel(
    State(state): State<ApiState>,
    caller: Caller,
    IdPath(order_id): IdPath<OrderId>,
    posted: Posted<EmptyBody>,
) -> Result<Json<OrderJson>, ApiError> {
    let command = Command::CancelOrder { order_id, actor: caller.actor() };
    let order = match state.submit(command, posted.request_id(&caller.user), posted.fingerprint()).await? {
        Outcome::Order(order) => order,
        other => return Err(ApiError::unexpected(other)),
    };
    // After the command, never before: a refund for an order still valid would be money lost.
    // Repeated cancellations refund again; the gateway deduplicates by order id.
    if order.status == OrderStatus::Cancelled && order.refunded {
        let refund = Refund {
            order_id: order.order_id.clone(),
            amount: order.total,
            charge_reference: order.payment_reference.clone(),
        };
        state.payments().refund(refund).await?;
    }
    Ok(Json(OrderJson::from(&order)))
}

/// `?limit=&cursor=` of the caller's orders.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct OrderPageParams {
    /// 1 to 100, default 20.
    #[param(schema_with = limit_schema)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    #[param(schema_with = order_cursor)]
    pub cursor: Option<String>,
}

fn order_cursor() -> utoipa::openapi::schema::Object {
    OrderCursor::SHAPE.schema(false)
}

/// `?limit=&cursor=` of the caller's tickets.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TicketPageParams {
    /// 1 to 100, default 20.
    #[param(schema_with = limit_schema)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    #[param(schema_with = ticket_cursor)]
    pub cursor: Option<String>,
}

fn ticket_cursor() -> utoipa::openapi::schema::Object {
    TicketCursor::SHAPE.schema(false)
}

/// The caller's orders, newest first.
#[utoipa::path(
    get, path = "/v1/me/orders", operation_id = "list_my_orders", tag = "booking",
    params(OrderPageParams),
    responses(
        (status = 200, body = Page<OrderJson>),
        (status = 400, body = ProblemJson, content_type = "application/problem+json"),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn mine(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<OrderPageParams>,
) -> Result<Json<Page<OrderJson>>, ApiError> {
    let page = PageParams { limit: params.limit, cursor: params.cursor };
    let limit = page.limit()?;
    let before = page.cursor::<OrderCursor>()?.map(|c| (c.created_at_ms, c.order_id));
    let asked = per_shard_limit(limit);
    let query = |_| Query::UserOrders { user: caller.user.clone(), before: before.clone(), limit: asked };
    let unpack = |answer| match answer {
        Answer::Orders(orders) => Some(orders),
        _ => None,
    };
    let pages = gather(state.cluster(), Consistency::Linearizable, query, unpack).await?;
    let (items, more) = merge(pages, asked, limit, |o: &OrderView| Reverse((o.created_at_ms, o.order_id.clone())));
    let next_cursor = more
        .then(|| {
            items.last().map(|o| OrderCursor { created_at_ms: o.created_at_ms, order_id: o.order_id.clone() }.encode())
        })
        .flatten();
    Ok(Json(Page { items: items.iter().map(OrderJson::from).collect(), next_cursor }))
}

/// The caller's tickets, newest order first.
#[utoipa::path(
    get, path = "/v1/me/tickets", operation_id = "list_my_tickets", tag = "booking",
    params(TicketPageParams),
    responses(
        (status = 200, body = Page<TicketJson>),
        (status = 400, body = ProblemJson, content_type = "application/problem+json"),
        (status = 401, body = ProblemJson, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn my_tickets(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<TicketPageParams>,
) -> Result<Json<Page<TicketJson>>, ApiError> {
    let page = PageParams { limit: params.limit, cursor: params.cursor };
    let limit = page.limit()?;
    let before = page.cursor::<TicketCursor>()?.map(|c| (c.created_at_ms, c.order_id, c.n));
    let asked = per_shard_limit(limit);
    let query = |_| Query::UserTickets { user: caller.user.clone(), before: before.clone(), limit: asked };
    let unpack = |answer| match answer {
        Answer::Tickets(tickets) => Some(tickets),
        _ => None,
    };
    let pages = gather(state.cluster(), Consistency::Linearizable, query, unpack).await?;
    let key =
        |(created_at_ms, t): &(i64, TicketCard)| Reverse((*created_at_ms, t.view.order_id.clone(), t.view.ticket_id.n));
    let (items, more) = merge(pages, asked, limit, key);
    let next_cursor = more
        .then(|| {
            items.last().map(|(created_at_ms, t)| {
                let (order_id, n) = (t.view.order_id.clone(), t.view.ticket_id.n);
                TicketCursor { created_at_ms: *created_at_ms, order_id, n }.encode()
            })
        })
        .flatten();
    let items = items.iter().map(|(_, card)| holder_json(&state, card, true)).collect::<Result<_, _>>()?;
    Ok(Json(Page { items, next_cursor }))
}
