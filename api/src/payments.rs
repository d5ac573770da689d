//! The payment provider seam, and the sandbox provider of development and tests.
//!
//! A gateway is called with the order id as its idempotency key, so a retried checkout or
//! cancellation never charges or refunds twice at a real provider.

use raft_store::{Money, OrderId};

use seams::BoxFuture;

/// Charge an order's total with a payment method.
#[derive(Clone, Debug)]
pub struct Charge {
    pub order_id: OrderId,
    pub amount: Money,
    pub payment_method: String,
}

/// The provider's answer to a charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charged {
    pub approved: bool,
    /// The provider's reference for the attempt, recorded on the order.
    pub reference: String,
}

/// Refund a cancelled order (or a payment that arrived after its order lapsed).
#[derive(Clone, Debug)]
pub struct Refund {
    pub order_id: OrderId,
    pub amount: Money,
    /// The reference of the charge being refunded, when known.
    pub charge_reference: Option<String>,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum PaymentError {
    /// The provider could not be reached or timed out; the client may retry (503).
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
}

pub trait PaymentGateway: Send + Sync + 'static {
    /// Whether `method` names a payment method this gateway takes; checked before anything is
    /// submitted, so an unknown method changes nothing.
    fn accepts(&self, method: &str) -> bool;

    fn charge(&self, charge: Charge) -> BoxFuture<'_, Result<Charged, PaymentError>>;

    /// Returns the refund's reference.
    fn refund(&self, refund: Refund) -> BoxFuture<'_, Result<String, PaymentError>>;
}

/// Approves `sandbox_ok`, declines `sandbox_decline`; references are derived from the order id,
/// so the same order always gets the same reference.
#[derive(Clone, Copy, Debug, Default)]
pub struct SandboxPayments;

impl SandboxPayments {
    pub const APPROVE: &'static str = "sandbox_ok";
    pub const DECLINE: &'static str = "sandbox_decline";
}

impl PaymentGateway for SandboxPayments {
    fn accepts(&self, method: &str) -> bool {
        method == Self::APPROVE || method == Self::DECLINE
    }

    fn charge(&self, charge: Charge) -> BoxFuture<'_, Result<Charged, PaymentError>> {
        let approved = charge.payment_method == Self::APPROVE;
        let outcome = if approved { "ok" } else { "declined" };
        let reference = format!("sandbox-{outcome}-{}", charge.order_id);
        Box::pin(async move { Ok(Charged { approved, reference }) })
    }

    fn refund(&self, refund: Refund) -> BoxFuture<'_, Result<String, PaymentError>> {
        let reference = format!("sandbox-refund-{}", refund.order_id);
        Box::pin(async move { Ok(reference) })
    }
}

/// A provider that cannot be reached or answers nonsense: the client may retry (503).
impl From<PaymentError> for crate::error::ApiError {
    fn from(e: PaymentError) -> Self {
        crate::error::ApiError::Unavailable(e.to_string())
    }
}
