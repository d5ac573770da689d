//! Dynamic pricing: decided in apply from the section's demand and recent sales, locked by holds,
//! shown in the event, and recorded as a change.

use super::*;

fn rule(demand: &[(u32, i32)], window_minutes: u32, sales: &[(u32, i32)]) -> PriceRule {
    let steps =
        |s: &[(u32, i32)]| s.iter().map(|&(at_least, adjust_percent)| PriceStep { at_least, adjust_percent }).collect();
    PriceRule {
        section: "FLOOR".into(),
        base: usd(5_000),
        floor: usd(4_000),
        ceiling: usd(9_000),
        demand_steps: steps(demand),
        window_minutes,
        sales_steps: steps(sales),
    }
}

fn set(h: &mut Harness, time_ms: i64, rules: Vec<PriceRule>) -> Outcome {
    let event_id = h.event.clone();
    h.run(time_ms, Command::SetPricing { event_id, rules })
}

fn priced(out: Outcome) -> PricingView {
    match out {
        Outcome::Pricing(view) => view,
        other => panic!("expected pricing, got {other:?}"),
    }
}

fn floor_price(h: &Harness, now_ms: i64) -> i64 {
    h.section(now_ms, "FLOOR").price.amount
}

#[test]
fn the_price_follows_demand_and_a_hold_locks_it() {
    let mut h = Harness::new();
    // 20 seats: from 10% taken +20%, from 25% +50%.
    let view = priced(set(&mut h, T0, vec![rule(&[(10, 20), (25, 50)], 0, &[])]));
    assert_eq!(view.prices.iter().find(|p| p.section == "FLOOR").unwrap().price.amount, 5_000);
    assert_eq!(floor_price(&h, T0), 5_000, "nothing taken: the base");
    let first = held(h.hold_seats(T0 + 1, "u1", &["FLOOR-A-1", "FLOOR-A-2"]));
    assert_eq!(first.total.amount, 10_000, "held at the price before it");
    assert_eq!(floor_price(&h, T0 + 1), 6_000, "10% taken");
    let second = held(h.hold_seats(T0 + 2, "u2", &["FLOOR-A-3", "FLOOR-A-4", "FLOOR-A-5"]));
    assert_eq!(second.total.amount, 18_000, "three at 6,000");
    assert_eq!(floor_price(&h, T0 + 2), 7_500, "25% taken");
    // The first hold keeps its price through checkout.
    let order = ordered(h.checkout(T0 + 3, "u1", &first.hold_id));
    assert_eq!(order.total.amount, 10_000);
    // Released seats bring the price back down; an untouched section keeps its own price.
    h.run(T0 + 4, Command::ReleaseHold { hold_id: second.hold_id.clone(), user: user("u2") });
    assert_eq!(floor_price(&h, T0 + 4), 6_000);
    assert_eq!(h.section(T0 + 4, "LAWN").price.amount, 2_000);
}

#[test]
fn recent_sales_raise_the_price_until_they_leave_the_window() {
    let mut h = Harness::new();
    priced(set(&mut h, T0, vec![rule(&[], 10, &[(2, 40)])]));
    h.buy(T0 + 1, "u1", &["FLOOR-A-1"]);
    assert_eq!(floor_price(&h, T0 + 1), 5_000, "one sale");
    h.buy(T0 + 2, "u2", &["FLOOR-A-2"]);
    assert_eq!(floor_price(&h, T0 + 2), 7_000, "two sales in ten minutes: +40%");
    // Eleven minutes on, the next entry finds the sales out of the window.
    let later = T0 + 11 * 60_000;
    h.run(later, Command::Expire);
    assert_eq!(floor_price(&h, later), 5_000);
}

#[test]
fn floor_and_ceiling_bound_the_price_and_rules_can_be_removed() {
    let mut h = Harness::new();
    priced(set(&mut h, T0, vec![rule(&[(5, 200)], 0, &[])]));
    held(h.hold_seats(T0 + 1, "u1", &["FLOOR-A-1"]));
    assert_eq!(floor_price(&h, T0 + 1), 9_000, "held at the ceiling");
    priced(set(&mut h, T0 + 2, vec![rule(&[(5, -90)], 0, &[])]));
    assert_eq!(floor_price(&h, T0 + 2), 4_000, "held at the floor");
    // Without rules the price stays where it is and no longer moves.
    let view = priced(set(&mut h, T0 + 3, vec![]));
    assert!(view.rules.is_empty());
    held(h.hold_seats(T0 + 4, "u2", &["FLOOR-A-2", "FLOOR-A-3", "FLOOR-A-4"]));
    assert_eq!(floor_price(&h, T0 + 4), 4_000);
}

#[test]
fn every_price_change_is_a_change_record_and_bad_rules_change_nothing() {
    let mut h = Harness::new();
    priced(set(&mut h, T0, vec![rule(&[(5, 10)], 0, &[])]));
    let bad = |mutate: fn(&mut PriceRule)| {
        let mut r = rule(&[(5, 10)], 0, &[]);
        mutate(&mut r);
        r
    };
    for r in [
        bad(|r| r.section = "NOPE".into()),
        bad(|r| r.floor = usd(10_000)),
        bad(|r| r.base = Money::new(5_000, Currency::parse("EUR").unwrap())),
        bad(|r| {
            r.demand_steps =
                vec![PriceStep { at_least: 50, adjust_percent: 10 }, PriceStep { at_least: 40, adjust_percent: 20 }]
        }),
        bad(|r| r.demand_steps = vec![PriceStep { at_least: 101, adjust_percent: 10 }]),
        bad(|r| r.demand_steps = vec![PriceStep { at_least: 10, adjust_percent: 501 }]),
        bad(|r| r.sales_steps = vec![PriceStep { at_least: 1, adjust_percent: 10 }]),
    ] {
        assert!(matches!(refusal(set(&mut h, T0 + 1, vec![r])), Refusal::Invalid { .. }));
    }
    assert!(matches!(
        refusal(set(&mut h, T0 + 1, vec![rule(&[], 0, &[]), rule(&[], 0, &[])])),
        Refusal::Invalid { .. }
    ));
    // The refusals left the rules as they were.
    assert_eq!(priced(set(&mut h, T0 + 1, vec![rule(&[(5, 10)], 0, &[])])).rules, vec![rule(&[(5, 10)], 0, &[])]);
    let from = h.index;
    held(h.hold_seats(T0 + 2, "u1", &["FLOOR-A-1"]));
    let Answer::Changes(ChangesPage::Records { changes, .. }) =
        h.q(&Query::Changes { after_index: from, limit: 100 }, T0 + 2)
    else {
        panic!("no changes")
    };
    assert!(changes.iter().any(|c| c.kind == ChangeKind::Event), "the price change is recorded: {changes:?}");
    // The pricing answers queries, and survives a snapshot's encoding.
    let Answer::Pricing(Some(view)) = h.q(&Query::Pricing(h.event.clone()), T0 + 3) else { panic!() };
    assert_eq!(view.rules.len(), 1);
    let bytes = h.m.encode().unwrap();
    assert_eq!(Machine::decode(&bytes).unwrap(), h.m);
}
