//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes and the
//! DTOs' schemas, so it cannot drift from the code. It declares every rule of a request the
//! server checks before anything else (`dto::rules`): a schema-valid request is never answered
//! 400. Rules it cannot state (between fields, against other records, the clock) answer 422 and
//! are described in words. Its links lead from each create operation to the operations that use
//! the id it returns, so a client (or schemathesis's stateful phase) can walk from a venue to an
//! event, a hold, an order.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi};

use crate::dto::rules::{Shape, EVENT_ID, HOLD_ID, IDEMPOTENCY_KEY, ORDER_ID, TICKET_ID, VENUE_ID, WEBHOOK_ID};
use crate::dto::*;
use crate::error::ApiError;
use crate::routes::{
    auth, booking, events, ops, orders, payments, pricing, queue, search, seats, tickets, venues, webhooks,
};
use crate::state::ApiState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Boxoffice API", version = "1", description = "Ticketing: venues, events, holds, orders, tickets."),
    paths(
        auth::dev_token,
        venues::create,
        venues::get,
        events::create,
        events::update,
        events::list,
        events::get,
        seats::map,
        seats::stream,
        booking::hold,
        booking::get_hold,
        booking::release,
        booking::checkout,
        orders::get,
        orders::cancel,
        orders::mine,
        orders::my_tickets,
        pricing::get,
        pricing::set,
        tickets::checkin_key,
        tickets::check_in,
        tickets::transfer,
        payments::stripe_webhook,
        webhooks::create,
        webhooks::list,
        webhooks::delete,
        search::search,
        queue::join,
        queue::status,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        document,
    ),
    components(schemas(
        MoneyJson, ProblemJson, VenueBody, VenueJson, SectionJson, RowJson, LocationJson, EventBody, EventPatchBody,
        EventJson, EventSummaryJson, SeatMapJson, HoldBody, HoldJson, CheckoutBody, OrderJson, TicketJson,
        DevTokenBody, DevTokenJson, ReadinessJson, search::SearchItemJson, search::SearchPageJson,
        CheckoutJson, ProviderCheckoutJson, PaymentJson, PaymentStatusJson, ReceivedJson,
        queue::QueueStatusJson, queue::JoinedJson, CheckinBody, CheckinJson, TransferBody, CheckinKeyJson,
        PricingBody, PricingJson, PriceRuleJson, DemandStepJson, SalesStepJson,
        WebhookBody, WebhookCreatedJson, WebhookJson,
    )),
    modifiers(&BearerAuth, &Parameters, &Links),
    tags(
        (name = "auth", description = "Development tokens"),
        (name = "venues"),
        (name = "events"),
        (name = "booking", description = "Holds, checkout, orders and tickets"),
        (name = "tickets", description = "Signed ticket codes: check-in at the door, transfers"),
        (name = "waiting room", description = "Queues of high-traffic events: join, wait, get an access token"),
        (name = "payments", description = "What payment providers report (signed, no bearer token)"),
        (name = "webhooks", description = "Outgoing webhooks: endpoints that receive signed order and ticket events"),
        (name = "operations"),
    )
)]
pub(crate) struct ApiDoc;

/// Declares the `bearer` scheme the paths' `security` refers to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// Path ids and headers by name, wherever an operation takes them: one rule each.
struct Parameters;

/// The grammar of each path id and checked header (`extract.rs`, `identity.rs` check the same).
const PARAMETER_SHAPES: [(ParameterIn, &str, Shape); 7] = [
    (ParameterIn::Path, "venue_id", VENUE_ID),
    (ParameterIn::Path, "event_id", EVENT_ID),
    (ParameterIn::Path, "hold_id", HOLD_ID),
    (ParameterIn::Path, "order_id", ORDER_ID),
    (ParameterIn::Path, "ticket_id", TICKET_ID),
    (ParameterIn::Path, "webhook_id", WEBHOOK_ID),
    (ParameterIn::Header, "Idempotency-Key", IDEMPOTENCY_KEY),
];

impl Modify for Parameters {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for operation in operations(openapi) {
            for parameter in operation.parameters.iter_mut().flatten() {
                let RefOr::T(parameter) = parameter else { continue };
                shape_parameter(parameter);
            }
        }
    }
}

fn shape_parameter(parameter: &mut Parameter) {
    let shape = PARAMETER_SHAPES
        .iter()
        .find(|(place, name, _)| *place == parameter.parameter_in && *name == parameter.name)
        .map(|(_, _, shape)| shape);
    if let Some(shape) = shape {
        parameter.schema = Some(RefOr::T(Schema::Object(shape.schema(false))));
    }
}

fn operations(openapi: &mut utoipa::openapi::OpenApi) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch]
            .into_iter()
            .filter_map(Option::as_mut)
    })
}

/// The links from each create operation (and from the seat map, which names the seats) to the
/// operations that take the id it returns.
struct Links;

/// A link: from an operation's answer (id, status) to another operation, with its parameters
/// and, where given, a whole request body (`x-schemathesis.merge_body: false`: used as it is,
/// not merged into a generated one).
struct LinkSpec {
    from: &'static str,
    status: &'static str,
    name: &'static str,
    to: &'static str,
    parameters: &'static [(&'static str, &'static str)],
    body: Option<fn() -> Value>,
    description: &'static str,
}

/// An event a linked venue can hold: its first section priced, on sale since long ago, starting
/// in 2099. It is valid whenever the venue has exactly that one section; with more, the answer
/// is 422 (a price missing), as it would be for a client.
fn event_at_linked_venue() -> Value {
    json!({
        "name": "Linked event",
        "category": "music",
        "venue_id": "$response.body#/venue_id",
        "starts_at": "2099-06-01T20:00:00Z",
        "on_sale_at": "2000-01-01T00:00:00Z",
        "prices": [{"section": "$response.body#/sections/0/id", "price": {"amount": 2500, "currency": "USD"}}],
    })
}

fn first_seat() -> Value {
    json!({"seats": ["$response.body#/seats/0/id"]})
}

fn first_general_section_of_map() -> Value {
    json!({"section": "$response.body#/general/0/section", "quantity": 1})
}

fn first_section_of_event() -> Value {
    json!({"section": "$response.body#/sections/0/section", "quantity": 1})
}

fn sandbox_payment() -> Value {
    json!({"payment_method": "sandbox_ok"})
}

const EVENT_FROM_BODY: (&str, &str) = ("event_id", "$response.body#/event_id");

fn high_traffic() -> Value {
    json!({"high_traffic": true})
}

const LINKS: [LinkSpec; 17] = [
    LinkSpec {
        from: "create_venue",
        status: "201",
        name: "GetVenue",
        to: "get_venue",
        parameters: &[("venue_id", "$response.body#/venue_id")],
        body: None,
        description: "The venue just created.",
    },
    LinkSpec {
        from: "create_venue",
        status: "201",
        name: "CreateEvent",
        to: "create_event",
        parameters: &[],
        body: Some(event_at_linked_venue),
        description: "An event at the venue: `venue_id` from the answer, a price for each of its sections.",
    },
    LinkSpec {
        from: "create_event",
        status: "201",
        name: "GetEvent",
        to: "get_event",
        parameters: &[EVENT_FROM_BODY],
        body: None,
        description: "The event just created.",
    },
    LinkSpec {
        from: "create_event",
        status: "201",
        name: "GetSeatMap",
        to: "get_seat_map",
        parameters: &[EVENT_FROM_BODY],
        body: None,
        description: "The event's seats, whose ids a hold names.",
    },
    LinkSpec {
        from: "create_event",
        status: "201",
        name: "StreamSeats",
        to: "stream_seats",
        parameters: &[EVENT_FROM_BODY],
        body: None,
        description: "The event's seat changes as they happen.",
    },
    LinkSpec {
        from: "create_event",
        status: "201",
        name: "HoldFirstSection",
        to: "create_hold",
        parameters: &[EVENT_FROM_BODY],
        body: Some(first_section_of_event),
        description: "One admission of the event's first section (a general-admission one).",
    },
    LinkSpec {
        from: "create_event",
        status: "201",
        name: "SellThroughWaitingRoom",
        to: "update_event",
        parameters: &[EVENT_FROM_BODY],
        body: Some(high_traffic),
        description: "Make the event high-traffic: it then sells through its waiting room.",
    },
    // From the event as patched, not as created: only a high-traffic event has a waiting room
    // (another answers 404, as for an unknown event).
    LinkSpec {
        from: "update_event",
        status: "200",
        name: "JoinQueue",
        to: "join_queue",
        parameters: &[EVENT_FROM_BODY],
        body: None,
        description: "The event's waiting room, if it is high-traffic.",
    },
    LinkSpec {
        from: "get_seat_map",
        status: "200",
        name: "HoldFirstSeat",
        to: "create_hold",
        parameters: &[EVENT_FROM_BODY],
        body: Some(first_seat),
        description: "The map's first seat.",
    },
    LinkSpec {
        from: "get_seat_map",
        status: "200",
        name: "HoldGeneralAdmission",
        to: "create_hold",
        parameters: &[EVENT_FROM_BODY],
        body: Some(first_general_section_of_map),
        description: "One admission of the map's first general-admission section.",
    },
    LinkSpec {
        from: "join_queue",
        status: "201",
        name: "QueueStatus",
        to: "queue_status",
        parameters: &[("event_id", "$request.path.event_id"), ("header.X-Queue-Token", "$response.body#/queue_token")],
        body: None,
        description: "Where the caller stands, with the queue token just given.",
    },
    LinkSpec {
        from: "create_hold",
        status: "201",
        name: "GetHold",
        to: "get_hold",
        parameters: &[("hold_id", "$response.body#/hold_id")],
        body: None,
        description: "The hold just made.",
    },
    LinkSpec {
        from: "create_hold",
        status: "201",
        name: "ReleaseHold",
        to: "release_hold",
        parameters: &[("hold_id", "$response.body#/hold_id")],
        body: None,
        description: "Release the hold.",
    },
    LinkSpec {
        from: "create_hold",
        status: "201",
        name: "CheckoutHold",
        to: "checkout_hold",
        parameters: &[("hold_id", "$response.body#/hold_id")],
        body: Some(sandbox_payment),
        description: "Buy what the hold holds.",
    },
    LinkSpec {
        from: "checkout_hold",
        status: "201",
        name: "GetOrder",
        to: "get_order",
        parameters: &[("order_id", "$response.body#/order_id")],
        body: None,
        description: "The order just made.",
    },
    LinkSpec {
        from: "checkout_hold",
        status: "201",
        name: "CancelOrder",
        to: "cancel_order",
        parameters: &[("order_id", "$response.body#/order_id")],
        body: None,
        description: "Cancel the order.",
    },
    LinkSpec {
        from: "create_webhook",
        status: "201",
        name: "DeleteWebhook",
        to: "delete_webhook",
        parameters: &[("webhook_id", "$response.body#/webhook_id")],
        body: None,
        description: "Delete the endpoint just registered.",
    },
];

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for operation in operations(openapi) {
            let Some(id) = operation.operation_id.clone() else { continue };
            for spec in LINKS.iter().filter(|spec| spec.from == id) {
                let Some(RefOr::T(response)) = operation.responses.responses.get_mut(spec.status) else { continue };
                response.links.insert(spec.name.to_owned(), RefOr::T(link(spec)));
            }
        }
    }
}

fn link(spec: &LinkSpec) -> utoipa::openapi::link::Link {
    let mut link = LinkBuilder::new().operation_id(spec.to).description(spec.description);
    for (name, expression) in spec.parameters {
        link = link.parameter(*name, *expression);
    }
    if let Some(body) = spec.body {
        link = link
            .request_body(Some(body()))
            .extensions(Some(ExtensionsBuilder::new().add("x-schemathesis", json!({"merge_body": false})).build()));
    }
    link.build()
}

/// This API's OpenAPI document, generated from the code, with the payment methods this server's
/// gateway takes.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, body = Object)))]
pub(crate) async fn document(State(state): State<ApiState>) -> Response {
    let mut doc = ApiDoc::openapi();
    narrow_payment_methods(&mut doc, &state.payments().methods());
    match doc.to_json() {
        Ok(text) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], text).into_response(),
        Err(e) => ApiError::Internal(format!("OpenAPI document: {e}")).into_response(),
    }
}

/// The checkout's `payment_method` enum as the gateway takes it: the document lists every method
/// this build knows (`dto::PAYMENT_METHODS`), a server only those it is configured for, so that a
/// method the document allows is never refused.
fn narrow_payment_methods(doc: &mut utoipa::openapi::OpenApi, methods: &[&str]) {
    let body = doc.components.as_mut().and_then(|c| c.schemas.get_mut("CheckoutBody"));
    let Some(RefOr::T(Schema::Object(body))) = body else { return };
    if let Some(RefOr::T(Schema::Object(method))) = body.properties.get_mut("payment_method") {
        method.enum_values = Some(methods.iter().map(|m| json!(m)).collect());
    }
}
