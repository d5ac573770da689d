//! The sandbox provider of development and tests: no money moves.

use seams::BoxFuture;

use super::{Charge, Charged, PaymentError, PaymentGateway, Refund};

/// Approves `sandbox_ok`, declines `sandbox_decline`, at once; references are derived from the
/// order id, so the same order always gets the same reference.
#[derive(Clone, Copy, Debug, Default)]
pub struct SandboxPayments;

impl SandboxPayments {
    pub const APPROVE: &'static str = "sandbox_ok";
    pub const DECLINE: &'static str = "sandbox_decline";
    /// Every reference the sandbox makes starts so.
    const REFERENCE_PREFIX: &'static str = "sandbox-";
}

impl PaymentGateway for SandboxPayments {
    fn methods(&self) -> Vec<&'static str> {
        vec![Self::APPROVE, Self::DECLINE]
    }

    fn owns(&self, reference: &str) -> bool {
        reference.starts_with(Self::REFERENCE_PREFIX)
    }

    fn charge(&self, charge: Charge) -> BoxFuture<'_, Result<Charged, PaymentError>> {
        let approved = charge.payment_method == Self::APPROVE;
        let outcome = if approved { "ok" } else { "declined" };
        let reference = format!("{}{outcome}-{}", Self::REFERENCE_PREFIX, charge.order_id);
        Box::pin(async move { Ok(Charged::Settled { approved, reference }) })
    }

    fn refund(&self, refund: Refund) -> BoxFuture<'_, Result<String, PaymentError>> {
        let reference = format!("{}refund-{}", Self::REFERENCE_PREFIX, refund.order_id);
        Box::pin(async move { Ok(reference) })
    }
}
