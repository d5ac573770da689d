"""A stand-in for Stripe's hosted payment page, for scripts/browser-test.

Usage: stripe_stand_in.py SECRET_KEY WEBHOOK_SECRET

Listens on a free port of 127.0.0.1 and prints `stripe stand-in: listening on URL` once it does;
`boxoffice dev --stripe-api-base URL` then sends it the api's Stripe requests:

- `POST /v1/checkout/sessions` (form-encoded, `Authorization: Bearer SECRET_KEY`): the fields the
  api sends are checked, the session answered as Stripe does (`{"id": "cs_…", "url",
  "client_secret", …}`). The same `Idempotency-Key` answers the same session; with other
  parameters, Stripe's `idempotency_error`.
- `POST /v1/refunds`: a refund (`re_…`), so cancelling a paid order works.
- `GET /pay/{session}`: the hosted page, a "Pay" button. `POST /pay/{session}`: the buyer pays: a
  new PaymentIntent carrying the session's `payment_intent_data[metadata]`, its signed
  `payment_intent.succeeded` sent to the api's webhook (Stripe-Signature: t=…,v1=HMAC-SHA256 of
  "{t}.{body}"), then 303 to the session's `success_url`.

The test drives it through `/_stand_in/…`: `POST config` `{"webhook_url", "defer_webhooks"}` (the
api's webhook URL is known only once the api runs; deferred webhooks wait for `POST deliver`, as
Stripe's may arrive after the buyer is back), `GET sessions` (what was made and paid).
Standard library only.
"""

import hashlib
import hmac
import html
import json
import secrets
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET_KEY, WEBHOOK_SECRET = sys.argv[1], sys.argv[2]
# The largest request body read, in bytes: the api's forms are well under 8 KiB.
BODY_BYTES_MAX = 64 * 1024
# Stripe's bounds on a session's `expires_at`, from now.
SESSION_LIFETIME_S = (30 * 60, 24 * 3600)
SESSION_FIELDS = (
    "mode", "line_items[0][price_data][currency]", "line_items[0][price_data][unit_amount]",
    "line_items[0][price_data][product_data][name]", "line_items[0][quantity]", "success_url", "cancel_url",
    "client_reference_id", "metadata[order_id]", "payment_intent_data[metadata][order_id]", "expires_at",
)

lock = threading.Lock()
state = {"webhook_url": None, "defer": False, "pending": [], "sessions": {}, "replies": {}, "base": None}


def new_id(prefix):
    return prefix + secrets.token_hex(12)


def stripe_error(status, kind, message, code=None):
    return status, {"error": {"type": kind, "code": code, "message": message}}


def create_session(form):
    missing = [f for f in SESSION_FIELDS if not form.get(f)]
    if missing:
        return stripe_error(400, "invalid_request_error", f"Missing required param: {missing[0]}.", "parameter_missing")
    try:
        amount = int(form["line_items[0][price_data][unit_amount]"])
        expires_in = int(form["expires_at"]) - int(time.time())
    except ValueError:
        return stripe_error(400, "invalid_request_error", "Invalid integer.", "parameter_invalid_integer")
    lo, hi = SESSION_LIFETIME_S
    if form["mode"] != "payment" or form["line_items[0][quantity]"] != "1" or not lo <= expires_in <= hi:
        return stripe_error(400, "invalid_request_error", "Invalid mode, quantity or expires_at.", "parameter_invalid")
    sid = new_id("cs_test_")
    session = {
        "id": sid, "object": "checkout.session", "mode": "payment", "status": "open", "payment_status": "unpaid",
        "amount_total": amount, "currency": form["line_items[0][price_data][currency]"],
        "name": form["line_items[0][price_data][product_data][name]"],
        "client_reference_id": form["client_reference_id"], "metadata": {"order_id": form["metadata[order_id]"]},
        "intent_metadata": {"order_id": form["payment_intent_data[metadata][order_id]"]},
        "success_url": form["success_url"], "cancel_url": form["cancel_url"], "expires_at": int(form["expires_at"]),
        "client_secret": f"{sid}_secret_{secrets.token_hex(8)}", "payment_intent": None,
        "url": f"{state['base']}/pay/{sid}",
    }
    state["sessions"][sid] = session
    return 200, session


def create_refund(form):
    if not form.get("payment_intent", "").startswith("pi_"):
        return stripe_error(400, "invalid_request_error", "Missing required param: payment_intent.", "parameter_missing")
    return 200, {"id": new_id("re_"), "object": "refund", "payment_intent": form["payment_intent"], "status": "succeeded"}


def sign(body):
    t = str(int(time.time()))
    v1 = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={v1}"


def deliver(event):
    """POSTs a signed event to the api's webhook; (status, body)."""
    body = json.dumps(event)
    request = urllib.request.Request(state["webhook_url"], body.encode(), {
        "Content-Type": "application/json; charset=utf-8", "Stripe-Signature": sign(body),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def pay(sid):
    """The buyer pays the session: its PaymentIntent and the event Stripe sends for it."""
    session = state["sessions"][sid]
    intent = {
        "id": new_id("pi_"), "object": "payment_intent", "amount": session["amount_total"],
        "amount_received": session["amount_total"], "currency": session["currency"],
        "metadata": session["intent_metadata"], "status": "succeeded",
    }
    session.update(status="complete", payment_status="paid", payment_intent=intent["id"])
    return {"id": new_id("evt_"), "object": "event", "type": "payment_intent.succeeded", "created": int(time.time()),
            "livemode": False, "data": {"object": intent}}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json", headers=()):
        data = (json.dumps(body) if content_type == "application/json" else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(min(length, BODY_BYTES_MAX)).decode()

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        with lock:
            if path == "/_stand_in/sessions":
                return self.reply(200, list(state["sessions"].values()))
            session = state["sessions"].get(path.removeprefix("/pay/")) if path.startswith("/pay/") else None
            if not session:
                return self.reply(404, {"error": {"message": "no such page"}})
            amount = f"{session['amount_total'] / 100:.2f} {session['currency'].upper()}"
            page = (
                "<!doctype html><html lang=en><head><meta charset=utf-8><title>Stand-in Checkout</title></head>"
                f"<body><h1>Pay {html.escape(amount)}</h1><p class=item>{html.escape(session['name'])}</p>"
                f"<p class=status>{html.escape(session['status'])}</p>"
                f"<form method=post action=\"/pay/{html.escape(session['id'])}\"><button id=pay type=submit>Pay</button></form>"
                f"<p><a id=cancel href=\"{html.escape(session['cancel_url'])}\">Back</a></p></body></html>"
            )
            return self.reply(200, page, "text/html; charset=utf-8")

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        raw = self.body()
        if path == "/_stand_in/config":
            config = json.loads(raw)
            with lock:
                state["webhook_url"] = config["webhook_url"]
                state["defer"] = bool(config.get("defer_webhooks"))
            return self.reply(200, {"ok": True})
        if path == "/_stand_in/deliver":
            with lock:
                pending, state["pending"] = state["pending"], []
            return self.reply(200, [deliver(event)[0] for event in pending])
        if path.startswith("/pay/"):
            with lock:
                session = state["sessions"].get(path.removeprefix("/pay/"))
                if not session or session["status"] != "open":
                    return self.reply(409, "<p>This session cannot be paid.</p>", "text/html; charset=utf-8")
                event = pay(session["id"])
                if state["defer"]:
                    state["pending"].append(event)
            if not state["defer"]:
                status, answer = deliver(event)
                if status != 200:
                    return self.reply(502, f"<p>The webhook answered {status}: {html.escape(answer)}</p>",
                                      "text/html; charset=utf-8")
            return self.reply(303, "", "text/plain", [("Location", session["success_url"])])
        if self.headers.get("Authorization") != f"Bearer {SECRET_KEY}":
            return self.reply(*stripe_error(401, "invalid_request_error", "Invalid API Key provided."))
        create = {"/v1/checkout/sessions": create_session, "/v1/refunds": create_refund}.get(path)
        if not create:
            return self.reply(*stripe_error(404, "invalid_request_error", f"Unrecognized request URL: {path}"))
        form = dict(urllib.parse.parse_qsl(raw, keep_blank_values=True))
        key = self.headers.get("Idempotency-Key")
        with lock:
            seen = state["replies"].get(key) if key else None
            if seen and seen[0] == (path, form):
                status, answer = seen[1]
            elif seen:
                status, answer = stripe_error(400, "idempotency_error", "Keys for idempotent requests can only be "
                                              "used with the same parameters they were first used with.")
            else:
                status, answer = create(form)
                if key:
                    state["replies"][key] = ((path, form), (status, answer))
        public = {k: v for k, v in answer.items() if k not in ("name", "intent_metadata")}
        return self.reply(status, public)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["base"] = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"stripe stand-in: listening on {state['base']}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
