//! The payment provider seam: what a provider is asked ([`Charge`], [`Refund`]), what it answers
//! ([`Charged`]), and the composite ([`Payments`]) that puts the providers of one deployment
//! behind one [`PaymentGateway`].
//!
//! - `sandbox`: development and tests; settles at once.
//! - `stripe`: Stripe's PaymentIntents over HTTPS, or its hosted payment page (a Checkout Session)
//!   when the checkout gives a [`HostedPage`]; the buyer completes the payment, and the result
//!   arrives later, signed, at the webhook (`routes::payments`, `signature`).
//!
//! A gateway is called with the order id as its idempotency key, so a retried checkout or
//! cancellation never charges or refunds twice at a real provider.

mod sandbox;
pub(crate) mod signature;
mod stripe;

use std::sync::Arc;

use raft_store::{Money, OrderId};

use seams::BoxFuture;

pub use sandbox::SandboxPayments;
pub use stripe::{
    check_stripe_api_base, check_stripe_request_timeout, check_stripe_tolerance, StripeConfig, StripeGateway,
    STRIPE_API_BASE_DEFAULT, STRIPE_REQUEST_TIMEOUT_DEFAULT, STRIPE_TOLERANCE_DEFAULT,
};

/// Charge an order's total with a payment method.
#[derive(Clone, Debug)]
pub struct Charge {
    pub order_id: OrderId,
    pub amount: Money,
    pub payment_method: String,
    /// Pay on the provider's own page rather than in the buyer's client, where the provider has
    /// one (Stripe); others ignore it.
    pub hosted: Option<HostedPage>,
}

/// A payment on the provider's hosted page: the buyer is sent there and comes back to
/// `return_url`, paid or not; the result still arrives by webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostedPage {
    /// Where the buyer returns, with the order's id already in it: an absolute http(s) URL
    /// (`dto::rules::RETURN_URL`).
    pub return_url: String,
    /// The order's payment deadline (ms since the epoch, the store's log time): the page's own
    /// expiry is derived from it, so that a retried checkout asks for the same page.
    pub payment_deadline_ms: i64,
}

/// The provider's answer to a charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Charged {
    /// Decided now (the sandbox): the caller records the result on the order.
    Settled {
        approved: bool,
        /// The provider's reference for the attempt, recorded on the order.
        reference: String,
    },
    /// Decided later, with the buyer (Stripe): the buyer's client completes the payment with
    /// `client_secret`, or the buyer does on the provider's page at `url` (a [`HostedPage`] was
    /// asked for), and the provider reports the result by webhook. Nothing is recorded until
    /// then; the order stays `pending_payment` until its deadline.
    Pending { reference: String, client_secret: String, url: Option<String> },
}

impl Charged {
    pub fn reference(&self) -> &str {
        match self {
            Charged::Settled { reference, .. } | Charged::Pending { reference, .. } => reference,
        }
    }
}

/// Refund a cancelled order (or a payment that arrived after its order lapsed).
#[derive(Clone, Debug)]
pub struct Refund {
    pub order_id: OrderId,
    pub amount: Money,
    /// The reference of the charge being refunded, when known: it names the provider.
    pub charge_reference: Option<String>,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum PaymentError {
    /// The provider could not be reached, timed out or asked us to slow down; the client may
    /// retry (503).
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the request for a reason the client cannot fix (a rejected key, a
    /// malformed request, no provider for a reference): a bug or a misconfiguration, logged and
    /// answered 500.
    #[error("the payment provider refused the request: {0}")]
    Refused(String),
    /// The provider already made this order's payment with other parameters (its idempotency
    /// key was used with another request): a checkout of the same order asked for something
    /// else, such as another `return_url` (422).
    #[error("{0}")]
    Mismatch(String),
}

pub trait PaymentGateway: Send + Sync + 'static {
    /// The payment methods this gateway takes, as a checkout names them.
    fn methods(&self) -> Vec<&'static str>;

    /// Whether `method` names a payment method this gateway takes; checked before anything is
    /// submitted, so an unknown method changes nothing.
    fn accepts(&self, method: &str) -> bool {
        self.methods().contains(&method)
    }

    /// Whether `reference` names a charge this gateway made (and so can refund).
    fn owns(&self, reference: &str) -> bool;

    fn charge(&self, charge: Charge) -> BoxFuture<'_, Result<Charged, PaymentError>>;

    /// Refunds the charge in full, at most once per order however often it is asked; returns
    /// the refund's reference.
    fn refund(&self, refund: Refund) -> BoxFuture<'_, Result<String, PaymentError>>;
}

/// The gateways of one deployment: a charge goes to the first that accepts its method, a refund
/// to the one that owns its charge's reference.
#[derive(Clone)]
pub struct Payments {
    gateways: Vec<Arc<dyn PaymentGateway>>,
}

impl Payments {
    pub fn new(gateways: Vec<Arc<dyn PaymentGateway>>) -> Payments {
        Payments { gateways }
    }

    /// The sandbox, and Stripe when `config.stripe` is set.
    pub fn for_config(config: &crate::ApiConfig) -> Result<Payments, crate::ConfigError> {
        let sandbox: Arc<dyn PaymentGateway> = match config.sandbox_payments {
            true => Arc::new(SandboxPayments),
            false => Arc::new(RefundsOnly(SandboxPayments)),
        };
        let mut gateways: Vec<Arc<dyn PaymentGateway>> = vec![sandbox];
        if let Some(stripe) = &config.stripe {
            gateways.push(Arc::new(StripeGateway::new(stripe)?));
        }
        Ok(Payments::new(gateways))
    }
}

impl PaymentGateway for Payments {
    fn methods(&self) -> Vec<&'static str> {
        self.gateways.iter().flat_map(|g| g.methods()).collect()
    }

    fn accepts(&self, method: &str) -> bool {
        self.gateways.iter().any(|g| g.accepts(method))
    }

    fn owns(&self, reference: &str) -> bool {
        self.gateways.iter().any(|g| g.owns(reference))
    }

    fn charge(&self, charge: Charge) -> BoxFuture<'_, Result<Charged, PaymentError>> {
        match self.gateways.iter().find(|g| g.accepts(&charge.payment_method)) {
            Some(gateway) => gateway.charge(charge),
            None => {
                let error = PaymentError::Refused(format!("no gateway takes {:?}", charge.payment_method));
                Box::pin(async move { Err(error) })
            }
        }
    }

    fn refund(&self, refund: Refund) -> BoxFuture<'_, Result<String, PaymentError>> {
        let owner = refund.charge_reference.as_deref().and_then(|r| self.gateways.iter().find(|g| g.owns(r)));
        match owner {
            Some(gateway) => gateway.refund(refund),
            None => {
                let error = PaymentError::Refused(format!(
                    "no gateway owns the charge {:?} of order {}",
                    refund.charge_reference, refund.order_id
                ));
                Box::pin(async move { Err(error) })
            }
        }
    }
}

/// A provider that cannot be reached: the client may retry (503). One that refused: a bug or a
/// misconfiguration on this side (500, the detail logged, never sent).
impl From<PaymentError> for crate::error::ApiError {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::Unavailable(_) => crate::error::ApiError::Unavailable(e.to_string()),
            PaymentError::Refused(_) => crate::error::ApiError::Internal(e.to_string()),
            PaymentError::Mismatch(detail) => crate::error::ApiError::Unprocessable(detail),
        }
    }
}

/// A gateway's refunds without its charges: a deployment that no longer takes the sandbox's
/// methods still refunds the orders paid with them.
struct RefundsOnly<G>(G);

impl<G: PaymentGateway> PaymentGateway for RefundsOnly<G> {
    fn methods(&self) -> Vec<&'static str> {
        Vec::new()
    }

    fn owns(&self, reference: &str) -> bool {
        self.0.owns(reference)
    }

    fn charge(&self, charge: Charge) -> BoxFuture<'_, Result<Charged, PaymentError>> {
        let method = charge.payment_method;
        Box::pin(async move { Err(PaymentError::Refused(format!("payment method {method:?} is not taken here"))) })
    }

    fn refund(&self, refund: Refund) -> BoxFuture<'_, Result<String, PaymentError>> {
        self.0.refund(refund)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> OrderId {
        OrderId { event_id: raft_store::EventId::from_u64(1), seq: 7 }
    }

    /// Takes `card`, owns `card-` references, and says what it was asked.
    struct Card;

    impl PaymentGateway for Card {
        fn methods(&self) -> Vec<&'static str> {
            vec!["card"]
        }

        fn owns(&self, reference: &str) -> bool {
            reference.starts_with("card-")
        }

        fn charge(&self, charge: Charge) -> BoxFuture<'_, Result<Charged, PaymentError>> {
            let reference = format!("card-{}", charge.order_id);
            Box::pin(async move { Ok(Charged::Pending { reference, client_secret: "s".into(), url: None }) })
        }

        fn refund(&self, _: Refund) -> BoxFuture<'_, Result<String, PaymentError>> {
            Box::pin(async { Ok("card-refund".into()) })
        }
    }

    fn refund(reference: Option<&str>) -> Refund {
        Refund {
            order_id: order(),
            amount: Money::new(100, raft_store::Currency::USD),
            charge_reference: reference.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn the_composite_routes_charges_by_method_and_refunds_by_reference() {
        let payments = Payments::new(vec![Arc::new(SandboxPayments), Arc::new(Card)]);
        assert_eq!(payments.methods(), ["sandbox_ok", "sandbox_decline", "card"]);
        assert!(payments.accepts("card") && payments.accepts("sandbox_ok") && !payments.accepts("cash"));
        let charge = |method: &str| Charge {
            order_id: order(),
            amount: Money::new(100, raft_store::Currency::USD),
            payment_method: method.into(),
            hosted: None,
        };
        assert!(matches!(payments.charge(charge("card")).await, Ok(Charged::Pending { .. })));
        assert!(matches!(payments.charge(charge("sandbox_ok")).await, Ok(Charged::Settled { approved: true, .. })));
        assert!(matches!(payments.charge(charge("cash")).await, Err(PaymentError::Refused(_))));

        assert_eq!(payments.refund(refund(Some("card-x"))).await.unwrap(), "card-refund");
        let sandbox = payments.refund(refund(Some("sandbox-ok-or-ev0000000000000001-7"))).await.unwrap();
        assert!(sandbox.starts_with("sandbox-refund-"), "{sandbox}");
        assert!(matches!(payments.refund(refund(Some("pi_unknown"))).await, Err(PaymentError::Refused(_))));
        assert!(matches!(payments.refund(refund(None)).await, Err(PaymentError::Refused(_))));
    }
}
