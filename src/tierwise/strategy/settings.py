"""The [strategy] section and the [[playbook]] rules of tierwise.toml, with the default playbook.

A rule says *when* (a condition in the rule language of docs/rules.md over snapshot columns) and *what*: an
action code, a service level, a channel, how often to get in touch and a share of the marketing budget. The
rules are checked here as far as that needs no data (codes, shares, reason templates); their conditions are
checked against the snapshot's columns by `tierwise.strategy.playbook`, which applies them. Docs:
docs/strategy.md.
"""

from __future__ import annotations

import difflib
import string
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tierwise.checks import settings_name
from tierwise.i18n import CHANNEL_LABELS

# code → (English, Chinese), as the class labels of tierwise.classify.
# The codes a rule may give; their display words are in tierwise.i18n.
ACTIONS: tuple[str, ...] = (
    "vip_care",
    "personalised_recommendation",
    "cross_sell",
    "up_sell",
    "loyalty_invitation",
    "nurture",
    "win_back",
    "service_recovery",
    "reduce_spend",
    "maintain",
)
SERVICE_LEVELS: tuple[str, ...] = ("premium", "priority", "standard", "basic")
# Channels are free text (each company has its own): the ones with labels are the suggestions.
CHANNELS: tuple[str, ...] = tuple(CHANNEL_LABELS)


def _fail(rule: str, problem: str) -> PydanticCustomError:
    # No context: the message is not formatted, so braces in it (templates) are shown as written.
    return PydanticCustomError("playbook", f"playbook rule '{rule}': {problem}")


def template_fields(template: str) -> list[str]:
    """The {column} placeholders of a reason template; ValueError when it is malformed."""
    fields = []
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if not field or spec or conversion or any(c in field for c in ".[]"):
            raise ValueError(f"'{{{field}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}'")
        fields.append(field)
    return fields


class PlaybookRule(BaseModel):
    """One `[[playbook]]` entry."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = Field(min_length=1, description="Strategy code, stored in the snapshot's `strategy` column")
    label_zh: str = Field("", description="Strategy name shown in Chinese")
    label_en: str = Field("", description="Strategy name shown in English")
    when: str = Field(min_length=1, description="Condition over snapshot columns (docs/rules.md); 'true' = all")
    action: str = Field(description="Marketing action: " + ", ".join(ACTIONS))
    service_level: str = Field("standard", description="Service level: " + ", ".join(SERVICE_LEVELS))
    channel: str = Field("email", description="Contact channel, e.g. " + ", ".join(CHANNELS))
    contact_every_days: int = Field(30, description="Contact the customer every this many days (0 = no contact)")
    budget_share: float = Field(0.0, description="Share (0–1) of [strategy] budget, split over matched customers")
    reason_zh: str = Field("", description="Why, in Chinese; {column} inserts the customer's value")
    reason_en: str = Field("", description="Why, in English; {column} inserts the customer's value")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return settings_name(value, "playbook rule name")

    @model_validator(mode="after")
    def _check(self) -> PlaybookRule:
        if self.action not in ACTIONS:
            close = difflib.get_close_matches(self.action, ACTIONS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise _fail(self.name, f"unknown action '{self.action}'; {hint}allowed: {', '.join(ACTIONS)}")
        if self.service_level not in SERVICE_LEVELS:
            raise _fail(
                self.name, f"unknown service_level '{self.service_level}'; allowed: {', '.join(SERVICE_LEVELS)}"
            )
        if not self.channel.strip():
            raise _fail(self.name, "channel is empty; e.g. " + ", ".join(CHANNELS))
        if self.contact_every_days < 0:
            raise _fail(self.name, f"contact_every_days must be 0 or more, got {self.contact_every_days}")
        if not 0 <= self.budget_share <= 1:
            raise _fail(self.name, f"budget_share must be between 0 and 1, got {self.budget_share}")
        for key in ("reason_zh", "reason_en"):
            try:
                template_fields(getattr(self, key))
            except ValueError as exc:
                raise _fail(
                    self.name, f"{key}: bad placeholder {exc}; write {{column}}, and {{{{ }}}} for a brace"
                ) from None
        return self

    def display_label(self, language: str) -> str:
        return (self.label_zh if language == "zh" else self.label_en) or self.name


def _check_rules(rules: list[PlaybookRule]) -> list[PlaybookRule]:
    if not rules:
        raise PydanticCustomError(
            "playbook", 'the playbook is empty; give at least one [[playbook]] rule (end with when = "true")'
        )
    seen: set[str] = set()
    total = 0.0
    for rule in rules:
        if rule.name in seen:
            raise _fail(rule.name, "the name is used twice; give every rule its own name")
        seen.add(rule.name)
        total += rule.budget_share
        if total > 1 + 1e-9:
            raise _fail(
                rule.name,
                f"budget shares add up to {total:.4g} by this rule, more than 1; lower the budget_share values",
            )
    return rules


Playbook = Annotated[list[PlaybookRule], AfterValidator(_check_rules)]


class StrategySettings(BaseModel):
    """The [strategy] section."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    budget: float = Field(
        0.0, ge=0, description="Marketing budget per period, split by the rules' budget_share; 0 = no budget"
    )
    cross_sell_top: int = Field(3, ge=0, description="Cross-sell suggestions per customer in the worklist")
    cross_sell_by: str = Field(
        "auto", description="Similar customers share this column; auto = cluster if clustered, else rfm_segment"
    )
    cross_sell_min_support: float = Field(
        0.1, ge=0, le=1, description="Suggest a category only if at least this share of similar customers bought it"
    )


DEFAULT_PLAYBOOK: list[dict[str, Any]] = [
    {
        "name": "key_account_rescue",
        "label_zh": "重点客户挽回",
        "label_en": "Key account rescue",
        "when": "grade in ('A', 'B') and lifecycle_stage in ('at_risk', 'churned')",
        "action": "win_back",
        "service_level": "premium",
        "channel": "visit",
        "contact_every_days": 7,
        "budget_share": 0.15,
        "reason_zh": "{grade}级重点客户已 {recency_days} 天未购买，有流失风险："
        "客户经理上门拜访，了解原因并给出挽回方案",
        "reason_en": "Grade {grade} key account without a purchase for {recency_days} days (at risk): "
        "the account manager visits, finds the cause and offers a win-back plan",
    },
    {
        "name": "key_account_recovery",
        "label_zh": "重点客户服务补救",
        "label_en": "Key account service recovery",
        "when": "grade in ('A', 'B') and satisfaction_level = 'dissatisfied'",
        "action": "service_recovery",
        "service_level": "premium",
        "channel": "phone",
        "contact_every_days": 7,
        "budget_share": 0.03,
        "reason_zh": "{grade}级重点客户满意度低（{satisfaction} 分）：服务补救，解决投诉并回访",
        "reason_en": "Grade {grade} key account with low satisfaction ({satisfaction}): "
        "service recovery, resolve the complaints and follow up",
    },
    {
        "name": "vip_care",
        "label_zh": "重点客户尊享服务",
        "label_en": "VIP care",
        "when": "grade = 'A'",
        "action": "vip_care",
        "service_level": "premium",
        "channel": "account_manager",
        "contact_every_days": 14,
        "budget_share": 0.25,
        "reason_zh": "A级重点客户（综合得分 {composite_score}，第 {priority_rank} 位）："
        "专属客户经理、优先服务与忠诚权益",
        "reason_en": "Grade A key account (score {composite_score}, rank {priority_rank}): "
        "dedicated account manager, priority service and loyalty perks",
    },
    {
        "name": "important_personalised",
        "label_zh": "重要客户个性化经营",
        "label_en": "Personalised offers for important customers",
        "when": "grade = 'B'",
        "action": "personalised_recommendation",
        "service_level": "priority",
        "channel": "phone",
        "contact_every_days": 30,
        "budget_share": 0.15,
        "reason_zh": "B级重要客户（综合得分 {composite_score}）：个性化推荐与追加销售，争取升为A级",
        "reason_en": "Grade B important customer (score {composite_score}): "
        "personalised recommendations and up-sell, aiming for grade A",
    },
    {
        "name": "cant_lose_win_back",
        "label_zh": "不能失去的客户挽回",
        "label_en": "Win back customers we can't lose",
        "when": "rfm_segment = 'cant_lose_them'",
        "action": "win_back",
        "service_level": "priority",
        "channel": "phone",
        "contact_every_days": 14,
        "budget_share": 0.04,
        "reason_zh": "曾频繁购买（{frequency} 次）但已 {recency_days} 天未购买：电话回访并提供挽回优惠",
        "reason_en": "Used to buy often ({frequency} purchases) but not for {recency_days} days: "
        "call and make a win-back offer",
    },
    {
        "name": "at_risk_win_back",
        "label_zh": "流失风险客户挽回",
        "label_en": "At-risk win-back",
        "when": "lifecycle_stage = 'at_risk' or rfm_segment in ('at_risk', 'about_to_sleep')",
        "action": "win_back",
        "service_level": "standard",
        "channel": "phone",
        "contact_every_days": 30,
        "budget_share": 0.08,
        "reason_zh": "已 {recency_days} 天未购买，有流失风险：发送挽回优惠，唤醒购买",
        "reason_en": "No purchase for {recency_days} days, at risk of churning: send a win-back offer",
    },
    {
        "name": "cultivate_loyalty",
        "label_zh": "潜在忠诚客户培养",
        "label_en": "Cultivate the potentially loyal",
        "when": "loyalty = 'potential_loyal' or rfm_segment in ('potential_loyalists', 'promising')",
        "action": "loyalty_invitation",
        "service_level": "standard",
        "channel": "wechat",
        "contact_every_days": 30,
        "budget_share": 0.08,
        "reason_zh": "潜在忠诚客户（已购买 {frequency} 次，{recency_days} 天前最近一次）："
        "邀请加入会员忠诚计划，培养为忠诚客户",
        "reason_en": "Potentially loyal ({frequency} purchases, the last {recency_days} days ago): "
        "invite to the loyalty programme",
    },
    {
        "name": "new_customer_nurture",
        "label_zh": "新客户培育",
        "label_en": "New customer nurture",
        "when": "lifecycle_stage = 'new' or rfm_segment = 'new_customers'",
        "action": "nurture",
        "service_level": "standard",
        "channel": "wechat",
        "contact_every_days": 30,
        "budget_share": 0.05,
        "reason_zh": "新客户（首次购买于 {tenure_days} 天前）：欢迎礼遇与使用指导，促成第二次购买",
        "reason_en": "New customer (first purchase {tenure_days} days ago): "
        "welcome offer and onboarding, aiming for the second purchase",
    },
    {
        "name": "ordinary_cross_sell",
        "label_zh": "一般客户交叉销售",
        "label_en": "Cross-sell to ordinary customers",
        "when": "grade = 'C'",
        "action": "cross_sell",
        "service_level": "standard",
        "channel": "email",
        "contact_every_days": 60,
        "budget_share": 0.06,
        "reason_zh": "C级一般客户（主要购买 {top_category}）：推荐同类客户常买的其他品类，提高客户价值",
        "reason_en": "Grade C ordinary customer (mostly buys {top_category}): "
        "recommend the categories similar customers buy",
    },
    {
        "name": "low_value_up_sell",
        "label_zh": "低价值活跃客户提升",
        "label_en": "Up-sell to active low-value customers",
        "when": "grade = 'D' and lifecycle_stage in ('new', 'active', 'mature')",
        "action": "up_sell",
        "service_level": "basic",
        "channel": "sms",
        "contact_every_days": 90,
        "budget_share": 0.02,
        "reason_zh": "D级低价值但仍在购买：低成本渠道推荐升级产品或组合，有回应再加大投入",
        "reason_en": "Grade D low value but still buying: low-cost up-sell of upgrades and bundles; "
        "invest more only if they respond",
    },
    {
        "name": "lapsed_reduce_spend",
        "label_zh": "流失低价值客户减少投入",
        "label_en": "Reduce spend on lapsed low-value customers",
        "when": "lifecycle_stage = 'churned'",
        "action": "reduce_spend",
        "service_level": "basic",
        "channel": "email",
        "contact_every_days": 180,
        "budget_share": 0.01,
        "reason_zh": "低价值且已流失（{recency_days} 天未购买）：减少投入，只保留自动化的低成本触达",
        "reason_en": "Low value and churned ({recency_days} days without a purchase): "
        "reduce spend, automated low-cost contact only",
    },
    {
        "name": "prospect_nurture",
        "label_zh": "潜在客户转化",
        "label_en": "Convert prospects",
        "when": "grade is null",
        "action": "nurture",
        "service_level": "basic",
        "channel": "email",
        "contact_every_days": 60,
        "budget_share": 0.05,
        "reason_zh": "潜在客户（尚无购买）：发送产品介绍与首单优惠，培育转化",
        "reason_en": "Prospect (no purchase yet): product information and a first-order offer to convert",
    },
    {
        "name": "maintain",
        "label_zh": "常规维护",
        "label_en": "Maintain",
        "when": "true",
        "action": "maintain",
        "service_level": "basic",
        "channel": "email",
        "contact_every_days": 90,
        "budget_share": 0.03,
        "reason_zh": "其他客户：常规维护，定期推送资讯与关怀",
        "reason_en": "Everyone else: regular newsletters and care",
    },
]


def default_playbook() -> list[PlaybookRule]:
    return [PlaybookRule(**rule) for rule in DEFAULT_PLAYBOOK]
