//! Dynamic pricing rules as admins write them (`PUT /v1/events/{event_id}/pricing`) and read them.

use raft_store::{PriceRule, PriceStep, PricingView};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::catalog::price_money;
use super::rules::{
    self, ADJUST_PERCENT, DEMAND_AT_LEAST, PART_ID, PRICE_AMOUNT, PRICE_RULES, PRICE_STEPS, SALES_AT_LEAST,
    WINDOW_MINUTES,
};
use super::{MoneyJson, PriceJson};
use crate::error::ApiError;

/// From `at_least` percent of the section held or sold, the base price moves by `adjust_percent`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DemandStepJson {
    #[schema(schema_with = rules::demand_at_least)]
    #[serde(deserialize_with = "super::integer::i64")]
    pub at_least: i64,
    #[schema(schema_with = rules::adjust_percent)]
    #[serde(deserialize_with = "super::integer::i64")]
    pub adjust_percent: i64,
}

/// From `at_least` sales within the rule's window, the base price moves by `adjust_percent`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SalesStepJson {
    #[schema(schema_with = rules::sales_at_least)]
    #[serde(deserialize_with = "super::integer::i64")]
    pub at_least: i64,
    #[schema(schema_with = rules::adjust_percent)]
    #[serde(deserialize_with = "super::integer::i64")]
    pub adjust_percent: i64,
}

/// How one section is priced: the base, moved by the highest demand step and the highest sales
/// step reached, within `floor` and `ceiling` (all in the event's currency). Steps' `at_least`
/// increase strictly; sales steps need a window.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PriceRuleJson {
    #[schema(schema_with = rules::part_id)]
    pub section: String,
    #[schema(schema_with = price_money)]
    pub base: MoneyJson,
    #[schema(schema_with = price_money)]
    pub floor: MoneyJson,
    #[schema(schema_with = price_money)]
    pub ceiling: MoneyJson,
    #[serde(default)]
    #[schema(schema_with = rules::demand_steps)]
    pub demand_steps: Vec<DemandStepJson>,
    /// Minutes of recent sales the sales steps count: 1 to 1,440 with sales steps.
    #[serde(default, deserialize_with = "super::integer::i64")]
    #[schema(schema_with = rules::window_minutes)]
    pub window_minutes: i64,
    #[serde(default)]
    #[schema(schema_with = rules::sales_steps)]
    pub sales_steps: Vec<SalesStepJson>,
}

/// Body of `PUT /v1/events/{event_id}/pricing`: the event's rules, replacing any. An empty list
/// stops prices moving (they stay where they are).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PricingBody {
    #[schema(schema_with = rules::price_rules)]
    pub rules: Vec<PriceRuleJson>,
}

/// An event's pricing rules and the prices they give now.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct PricingJson {
    pub event_id: String,
    pub rules: Vec<PriceRuleJson>,
    pub prices: Vec<PriceJson>,
}

fn money(field: &str, m: &MoneyJson) -> Result<raft_store::Money, ApiError> {
    PRICE_AMOUNT.check(&format!("{field}.amount"), m.amount)?;
    rules::CURRENCY.check(&format!("{field}.currency"), &m.currency)?;
    m.to_money(field)
}

fn step(field: &str, at_least: i64, adjust_percent: i64, at_least_range: rules::Range) -> Result<PriceStep, ApiError> {
    at_least_range.check(&format!("{field}.at_least"), at_least)?;
    ADJUST_PERCENT.check(&format!("{field}.adjust_percent"), adjust_percent)?;
    // Both ranges fit their types.
    Ok(PriceStep { at_least: at_least as u32, adjust_percent: adjust_percent as i32 })
}

impl PricingBody {
    /// The rules, if each meets the document (400 otherwise). Rules between fields and against
    /// the event are the store's to judge (422).
    pub(crate) fn into_rules(self) -> Result<Vec<PriceRule>, ApiError> {
        PRICE_RULES.check("rules", self.rules.len())?;
        self.rules
            .into_iter()
            .map(|r| {
                PART_ID.check("rules[].section", &r.section)?;
                PRICE_STEPS.check("rules[].demand_steps", r.demand_steps.len())?;
                PRICE_STEPS.check("rules[].sales_steps", r.sales_steps.len())?;
                WINDOW_MINUTES.check("rules[].window_minutes", r.window_minutes)?;
                let demand_steps = r
                    .demand_steps
                    .iter()
                    .map(|s| step("rules[].demand_steps[]", s.at_least, s.adjust_percent, DEMAND_AT_LEAST))
                    .collect::<Result<_, _>>()?;
                let sales_steps = r
                    .sales_steps
                    .iter()
                    .map(|s| step("rules[].sales_steps[]", s.at_least, s.adjust_percent, SALES_AT_LEAST))
                    .collect::<Result<_, _>>()?;
                Ok(PriceRule {
                    section: r.section,
                    base: money("rules[].base", &r.base)?,
                    floor: money("rules[].floor", &r.floor)?,
                    ceiling: money("rules[].ceiling", &r.ceiling)?,
                    demand_steps,
                    window_minutes: r.window_minutes as u32,
                    sales_steps,
                })
            })
            .collect()
    }
}

impl From<&PricingView> for PricingJson {
    fn from(v: &PricingView) -> Self {
        let steps = |steps: &[PriceStep]| {
            steps.iter().map(|s| (i64::from(s.at_least), i64::from(s.adjust_percent))).collect::<Vec<_>>()
        };
        PricingJson {
            event_id: v.event_id.to_string(),
            rules: v
                .rules
                .iter()
                .map(|r| PriceRuleJson {
                    section: r.section.clone(),
                    base: r.base.into(),
                    floor: r.floor.into(),
                    ceiling: r.ceiling.into(),
                    demand_steps: steps(&r.demand_steps)
                        .into_iter()
                        .map(|(at_least, adjust_percent)| DemandStepJson { at_least, adjust_percent })
                        .collect(),
                    window_minutes: i64::from(r.window_minutes),
                    sales_steps: steps(&r.sales_steps)
                        .into_iter()
                        .map(|(at_least, adjust_percent)| SalesStepJson { at_least, adjust_percent })
                        .collect(),
                })
                .collect(),
            prices: v.prices.iter().map(|p| PriceJson { section: p.section.clone(), price: p.price.into() }).collect(),
        }
    }
}
