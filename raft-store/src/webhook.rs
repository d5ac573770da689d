//! Outgoing webhooks as the meta group keeps them: the endpoints an admin registers for order and
//! ticket events, each with the secret that signs its deliveries. The dispatcher (the indexer
//! crate) reads them with `Query::Webhooks`; the rules here are the ones apply enforces.

use serde::{Deserialize, Serialize};

use crate::ids::{UserId, WebhookId};
use crate::limits::{WEBHOOK_SECRET_LEN_MAX, WEBHOOK_URL_LEN_MAX};

/// What an endpoint subscribes to. Appended only: bincode numbers variants by position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WebhookEventType {
    OrderConfirmed,
    OrderPaymentFailed,
    OrderCancelled,
    /// An order marked refunded: a payment approved after the order lapsed.
    OrderRefunded,
    TicketTransferred,
    TicketCheckedIn,
}

impl WebhookEventType {
    pub const ALL: [WebhookEventType; 6] = [
        WebhookEventType::OrderConfirmed,
        WebhookEventType::OrderPaymentFailed,
        WebhookEventType::OrderCancelled,
        WebhookEventType::OrderRefunded,
        WebhookEventType::TicketTransferred,
        WebhookEventType::TicketCheckedIn,
    ];

    /// The name clients see: a payload's `type`, an endpoint's `events`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEventType::OrderConfirmed => "order.confirmed",
            WebhookEventType::OrderPaymentFailed => "order.payment_failed",
            WebhookEventType::OrderCancelled => "order.cancelled",
            WebhookEventType::OrderRefunded => "order.refunded",
            WebhookEventType::TicketTransferred => "ticket.transferred",
            WebhookEventType::TicketCheckedIn => "ticket.checked_in",
        }
    }

    pub fn parse(name: &str) -> Option<WebhookEventType> {
        WebhookEventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// A registered endpoint. The secret is part of the replicated state because every dispatcher
/// signs with it; clients see it once, in the answer to the registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub webhook_id: WebhookId,
    pub url: String,
    /// Distinct, in the order of [`WebhookEventType::ALL`].
    pub events: Vec<WebhookEventType>,
    pub secret: String,
    /// The log time of the registration: events before it are not delivered to the endpoint.
    pub created_at_ms: i64,
    pub created_by: UserId,
}

impl Webhook {
    pub fn subscribes_to(&self, event: WebhookEventType) -> bool {
        self.events.contains(&event)
    }
}

/// Checks an endpoint URL: at most [`WEBHOOK_URL_LEN_MAX`] bytes of visible ASCII; `https://`, or
/// `http://` to a loopback host (`localhost`, `127.x.y.z`, `[::1]`: for development and tests,
/// where no certificate is at hand); a host, an optional port 1 to 65535; no credentials
/// (`user@`) and no fragment. Schemes are lower case.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    if url.len() > WEBHOOK_URL_LEN_MAX {
        return Err(format!("a webhook URL is at most {WEBHOOK_URL_LEN_MAX} bytes"));
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a webhook URL is visible ASCII: no spaces or other characters (percent-encode them)".into());
    }
    let (secure, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return Err("a webhook URL starts with https:// (or http:// to a loopback host)".into()),
    };
    if url.contains('#') {
        return Err("a webhook URL has no fragment (#…)".into());
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("a webhook URL carries no credentials (user@host)".into());
    }
    let (host, port) = split_host_port(authority)?;
    if let Some(port) = port {
        let valid = (1..=5).contains(&port.len())
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65_535).contains(&p));
        if !valid {
            return Err("a webhook URL's port is 1 to 65535".into());
        }
    }
    if !secure && !is_loopback(host) {
        return Err("a webhook URL is https://, or http:// to localhost, 127.0.0.0/8 or [::1] (tests)".into());
    }
    Ok(())
}

/// The host (an IPv6 literal keeps its brackets) and the port's digits, if any.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    let no_host = || "a webhook URL names a host".to_string();
    let (host, after) = if authority.starts_with('[') {
        let end = authority.find(']').ok_or_else(no_host)?;
        let literal = &authority[1..end];
        if literal.is_empty() || !literal.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err("a webhook URL's IPv6 address is hex digits and colons".into());
        }
        (&authority[..=end], &authority[end + 1..])
    } else {
        let end = authority.find(':').unwrap_or(authority.len());
        let host = &authority[..end];
        if host.is_empty() {
            return Err(no_host());
        }
        if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err("a webhook URL's host is letters, digits, `-` and `.`".into());
        }
        (host, &authority[end..])
    };
    match after {
        "" => Ok((host, None)),
        _ => match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None => Err("a webhook URL's host is followed by a port, a path or nothing".into()),
        },
    }
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") || host == "[::1]" {
        return true;
    }
    let octets: Vec<&str> = host.split('.').collect();
    octets.len() == 4
        && octets[0] == "127"
        && octets.iter().all(|o| (1..=3).contains(&o.len()) && o.bytes().all(|b| b.is_ascii_digit()))
        && octets.iter().all(|o| o.parse::<u16>().is_ok_and(|v| v <= 255))
}

/// A signing secret: 1 to [`WEBHOOK_SECRET_LEN_MAX`] bytes of visible ASCII.
pub fn check_webhook_secret(secret: &str) -> Result<(), String> {
    let ok = (1..=WEBHOOK_SECRET_LEN_MAX).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(()).ok_or_else(|| format!("a webhook secret is 1 to {WEBHOOK_SECRET_LEN_MAX} visible ASCII bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_https_or_http_to_loopback() {
        for good in [
            "https://hooks.example.com/boxoffice",
            "https://hooks.example.com:8443/a?b=c",
            "https://10.0.0.7",
            "https://[2001:db8::1]:443/x",
            "http://127.0.0.1:8080/hook",
            "http://127.1.2.3/",
            "http://localhost:9000",
            "http://LOCALHOST/x",
            "http://[::1]:1/x",
        ] {
            assert_eq!(check_webhook_url(good), Ok(()), "{good}");
        }
        let long = format!("https://example.com/{}", "a".repeat(WEBHOOK_URL_LEN_MAX));
        for bad in [
            "",
            "ftp://example.com",
            "HTTPS://example.com",
            "https://",
            "https:///path",
            "https://exa mple.com",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
            "https://example.com:0/",
            "https://example.com:65536/",
            "https://example.com:/",
            "https://example.com:80x/",
            "https://[::1/",
            "https://[]/",
            "https://ex_ample.com",
            "http://example.com/hook",
            "http://10.0.0.1/hook",
            "http://127.0.0.256/",
            "http://127.0.0/",
            "http://localhost.example.com/",
            "https://é.example.com",
            long.as_str(),
        ] {
            assert!(check_webhook_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_types_round_trip_by_name() {
        for t in WebhookEventType::ALL {
            assert_eq!(WebhookEventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(WebhookEventType::parse("order.created"), None);
    }

    #[test]
    fn secrets_are_bounded_visible_ascii() {
        assert!(check_webhook_secret("whsec_abc").is_ok());
        assert!(check_webhook_secret("").is_err());
        assert!(check_webhook_secret("a b").is_err());
        assert!(check_webhook_secret(&"s".repeat(WEBHOOK_SECRET_LEN_MAX + 1)).is_err());
    }
}
